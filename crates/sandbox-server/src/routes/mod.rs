//! The routes, one file per area; each handler states the roles it admits.

mod access;
mod accounts;
mod audit;
mod catalog;
mod jobs;
mod meta;
mod refresh;
mod samples;
mod uploads;

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};

pub(crate) use access::*;
pub(crate) use accounts::*;
pub(crate) use audit::*;
pub(crate) use catalog::*;
pub(crate) use jobs::*;
pub(crate) use meta::*;
pub(crate) use samples::*;
pub(crate) use uploads::*;

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/v1/me", get(me))
        .route("/v1/accounts", post(create_account))
        .route("/v1/catalog", get(list_catalog))
        .route("/v1/catalog/{dataset}", get(dataset_page))
        .route("/v1/policies/{dataset}", get(get_policy).put(put_policy))
        .route("/v1/datasets/{dataset}/suspend", post(suspend_dataset))
        .route("/v1/datasets/{dataset}/resume", post(resume_dataset))
        .route("/v1/complaints", get(list_complaints).post(file_complaint))
        .route("/v1/applications", get(list_applications).post(submit_application))
        .route("/v1/applications/{id}", get(get_application).put(resubmit_application))
        .route("/v1/applications/{id}/decision", post(decide_application))
        .route("/v1/agreements", get(list_agreements))
        .route("/v1/agreements/{id}", get(get_agreement))
        .route("/v1/agreements/{id}/revoke", post(revoke_agreement))
        .route("/v1/agreements/{id}/budget", get(agreement_budget))
        .route("/v1/agreements/{id}/report", get(agreement_report))
        .route("/v1/jobs", get(list_jobs).post(submit_job))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/result", get(job_result))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/audit", get(export_audit))
        .route("/v1/audit/verify", get(verify_audit))
        .route(
            "/v1/datasets/{dataset}/upload",
            axum::routing::put(upload_data).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/datasets/{dataset}/register", post(register_upload))
        .route("/v1/samples", get(list_samples))
        .route("/v1/samples/{dataset}", get(sample_report))
        .route("/v1/samples/{dataset}/sample.csv", get(sample_csv))
        .route("/v1/samples/{dataset}/sample.parquet", get(sample_parquet))
        // The web console: pages over the handlers above (src/console).
        .merge(crate::console::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refresh::refresh_catalog,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        rule: None,
        message: "this route does not take that method; see /openapi.json".into(),
    }
}

/// Logs every request and counts responses by status.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.http_response(status);
    tracing::info!(%method, route = %path, status, elapsed = ?started.elapsed(), "request");
    response
}
