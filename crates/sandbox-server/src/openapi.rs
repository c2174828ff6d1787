//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

/// The API's OpenAPI document (`ApiDoc::openapi()`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Data sandbox API",
        description = "Conditionally open government data, fused with enterprise data, used in place: apply, be approved, run SQL and WebAssembly jobs, receive only released (noisy, desensitized) results. Every route but /health, /openapi.json and /v1/samples… needs `Authorization: Bearer <token>`. Errors are `{\"error\": {\"code\", \"rule\", \"message\"}}`.",
    ),
    paths(
        crate::routes::health,
        crate::routes::openapi,
        crate::routes::metrics,
        crate::routes::me,
        crate::routes::create_account,
        crate::routes::list_catalog,
        crate::routes::dataset_page,
        crate::routes::get_policy,
        crate::routes::put_policy,
        crate::routes::suspend_dataset,
        crate::routes::resume_dataset,
        crate::routes::file_complaint,
        crate::routes::list_complaints,
        crate::routes::submit_application,
        crate::routes::resubmit_application,
        crate::routes::list_applications,
        crate::routes::get_application,
        crate::routes::decide_application,
        crate::routes::list_agreements,
        crate::routes::get_agreement,
        crate::routes::revoke_agreement,
        crate::routes::agreement_budget,
        crate::routes::agreement_report,
        crate::routes::submit_job,
        crate::routes::list_jobs,
        crate::routes::get_job,
        crate::routes::job_result,
        crate::routes::cancel_job,
        crate::routes::export_audit,
        crate::routes::verify_audit,
        crate::routes::upload_data,
        crate::routes::register_upload,
        crate::routes::list_samples,
        crate::routes::sample_report,
        crate::routes::sample_csv,
        crate::routes::sample_parquet,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "meta", description = "Health, this document, metrics"),
        (name = "accounts", description = "Accounts and roles"),
        (name = "catalog", description = "The catalog, dataset pages and owners' output policies"),
        (name = "complaints", description = "Complaints and dataset suspension"),
        (name = "applications", description = "Applications and owners' decisions"),
        (name = "agreements", description = "Agreements, revocation, budgets and usage reports"),
        (name = "jobs", description = "SQL and WebAssembly jobs"),
        (name = "audit", description = "The hash-chained audit ledger"),
        (name = "samples", description = "DP sample datasets (样本数据): public, no token or application needed"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}
