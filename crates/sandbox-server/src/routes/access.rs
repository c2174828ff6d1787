//! Applications, decisions and agreements: who may see which is decided
//! here once ([`can_see_datasets`]); every rule of the workflow itself is
//! the runtime's.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Params, PathParam};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sandbox_governance::{Agreement, ApplicationBody, ApplicationRecord, BudgetLine, Decision, UsageReport};
use sandbox_model::DatasetId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Whether `caller` may see a record about `datasets` held by `holder`:
/// the holder, an owner of one of the datasets, or the operator.
fn can_see(state: &AppState, caller: &Caller, holder: &str, datasets: &[DatasetId]) -> bool {
    if caller.is_operator() || caller.account == holder {
        return true;
    }
    let catalog = state.sandbox.catalog();
    datasets.iter().any(|d| catalog.get(d).is_some_and(|e| caller.owns(e)))
}

/// An application as submitted (`POST`) or revised (`PUT`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRequest {
    /// Your name for it (letters, digits, `-`, `_`); the agreement will be
    /// `agreement-<id>`. When submitting, omit it for a server-generated id
    /// (`app-<hex>`, answered in `id`): a chosen id that another account
    /// holds answers `409`. When revising, absent or the same as the path's.
    #[serde(default)]
    pub id: Option<String>,
    /// Conditionally open datasets, e.g. `gov.tax_payments`.
    #[schema(value_type = Vec<String>)]
    pub datasets: Vec<DatasetId>,
    /// `dataset.column` names needed (or `dataset.*`).
    pub columns: Vec<String>,
    /// `sql` and/or `wasm`.
    pub job_kinds: Vec<String>,
    /// The usage scenario (使用场景).
    pub scenario: String,
    /// The materials the datasets' open conditions ask for.
    #[serde(default)]
    pub materials: Vec<String>,
}

impl ApplicationRequest {
    fn body(self) -> ApplicationBody {
        ApplicationBody {
            datasets: self.datasets,
            columns: self.columns,
            job_kinds: self.job_kinds,
            scenario: self.scenario,
            materials: self.materials,
        }
    }
}

/// The application's state after a submission.
#[derive(Debug, Serialize, ToSchema)]
pub struct Submitted {
    pub id: String,
    pub revision: u32,
}

fn valid_application_id(id: &str) -> ApiResult<()> {
    let ok =
        !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "an application id has 1 to 64 letters, digits, `-` or `_`",
        ))
    }
}

/// Applies for conditionally open datasets (applicants).
#[utoipa::path(post, path = "/v1/applications", tag = "applications", security(("bearer" = [])),
    request_body = ApplicationRequest,
    responses((status = 201, body = Submitted), (status = 403, body = crate::ErrorBody)))]
pub async fn submit_application(
    State(state): State<AppState>,
    caller: Caller,
    Body(new): Body<ApplicationRequest>,
) -> ApiResult<(StatusCode, Json<Submitted>)> {
    caller.require_applicant()?;
    let id = match new.id.clone() {
        Some(id) => id,
        // A server-generated id never collides, so it reveals nothing
        // about other accounts' applications.
        None => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
            format!("app-{}", hex::encode(bytes))
        }
    };
    valid_application_id(&id)?;
    if state.sandbox.store().application(&id)?.is_some() {
        // The same answer whoever holds the id.
        return Err(ApiError::conflict(format!(
            "the application id `{id}` is taken; choose another, or omit `id` for a server-generated one \
             (resubmit your own rejected application with PUT /v1/applications/{{id}})"
        )));
    }
    let revision = state.sandbox.apply(&caller.account, &id, &new.body())?;
    Ok((StatusCode::CREATED, Json(Submitted { id, revision })))
}

/// Resubmits a rejected application with revisions (its applicant).
#[utoipa::path(put, path = "/v1/applications/{id}", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ApplicationRequest,
    responses((status = 200, body = Submitted), (status = 403, body = crate::ErrorBody),
              (status = 404, body = crate::ErrorBody)))]
pub async fn resubmit_application(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    Body(revised): Body<ApplicationRequest>,
) -> ApiResult<Json<Submitted>> {
    caller.require_applicant()?;
    if revised.id.as_deref().is_some_and(|i| i != id) {
        return Err(ApiError::invalid("the body's `id` differs from the path's"));
    }
    let mine = state
        .sandbox
        .store()
        .applications()?
        .into_iter()
        .any(|a| a.id == id && a.applicant == caller.account);
    if !mine {
        return Err(ApiError::not_found(format!("you have no application `{id}`")));
    }
    let revision = state.sandbox.apply(&caller.account, &id, &revised.body())?;
    Ok(Json(Submitted { id, revision }))
}

fn visible_applications(state: &AppState, caller: &Caller) -> ApiResult<Vec<ApplicationRecord>> {
    Ok(state
        .sandbox
        .store()
        .applications()?
        .into_iter()
        .filter(|a| can_see(state, caller, &a.applicant, &a.body.datasets))
        .collect())
}

/// Applications: an applicant's own, those for an owner's datasets, or all
/// (operator).
#[utoipa::path(get, path = "/v1/applications", tag = "applications", security(("bearer" = [])),
    responses((status = 200, body = [Object])))]
pub async fn list_applications(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ApplicationRecord>>> {
    Ok(Json(visible_applications(&state, &caller)?))
}

/// One application (if the caller may see it).
#[utoipa::path(get, path = "/v1/applications/{id}", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::ErrorBody)))]
pub async fn get_application(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<ApplicationRecord>> {
    visible_applications(&state, &caller)?
        .into_iter()
        .find(|a| a.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no application `{id}` you may see")))
}

/// An owner's decision on its datasets of an application.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "decision", rename_all = "snake_case", deny_unknown_fields)]
pub enum DecisionRequest {
    /// Approve with terms: ε for the owner's datasets, expiry (RFC 3339,
    /// UTC) and call quota.
    Approve {
        epsilon: f64,
        expires_at: String,
        call_quota: u64,
    },
    /// Reject; the reason is shown to the applicant.
    Reject { reason: String },
}

/// Where an application stands after a decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct Decided {
    pub application: String,
    /// The agreement, once every dataset's owner approved.
    pub agreement: Option<String>,
}

/// Approves or rejects an application for the caller's datasets (data
/// owners).
#[utoipa::path(post, path = "/v1/applications/{id}/decision", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = DecisionRequest,
    responses((status = 200, body = Decided), (status = 400, body = crate::ErrorBody),
              (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn decide_application(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    Body(decision): Body<DecisionRequest>,
) -> ApiResult<Json<Decided>> {
    caller.require_owner()?;
    // Another owner's application answers exactly like an unknown one.
    if !visible_applications(&state, &caller)?.iter().any(|a| a.id == id) {
        return Err(ApiError::not_found(format!("no application `{id}` you may see")));
    }
    let decision = match decision {
        DecisionRequest::Approve {
            epsilon,
            expires_at,
            call_quota,
        } => Decision::Approve {
            epsilon,
            expires_at,
            call_quota,
        },
        DecisionRequest::Reject { reason } => Decision::Reject { reason },
    };
    state.sandbox.decide(&caller.account, &id, &decision)?;
    let agreement = format!("agreement-{id}");
    let signed = state.sandbox.store().agreement(&agreement)?.is_some();
    Ok(Json(Decided {
        application: id,
        agreement: signed.then_some(agreement),
    }))
}

fn visible_agreement(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Agreement> {
    state
        .sandbox
        .store()
        .agreement(id)?
        .filter(|a| can_see(state, caller, &a.holder, &a.terms.datasets))
        .ok_or_else(|| ApiError::not_found(format!("no agreement `{id}` you may see")))
}

/// Agreements: the caller's own, those on an owner's datasets, or all
/// (operator).
#[utoipa::path(get, path = "/v1/agreements", tag = "agreements", security(("bearer" = [])),
    responses((status = 200, body = [Object])))]
pub async fn list_agreements(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<Agreement>>> {
    Ok(Json(
        state
            .sandbox
            .store()
            .agreements()?
            .into_iter()
            .filter(|a| can_see(&state, &caller, &a.holder, &a.terms.datasets))
            .collect(),
    ))
}

/// One agreement: terms and state.
#[utoipa::path(get, path = "/v1/agreements/{id}", tag = "agreements", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::ErrorBody)))]
pub async fn get_agreement(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<Agreement>> {
    Ok(Json(visible_agreement(&state, &caller, &id)?))
}

/// What a revocation did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    pub agreement: String,
    pub cancelled_jobs: usize,
}

/// Revokes an agreement (限制或者关闭数据获取权限): later jobs are refused,
/// running ones cancelled (an owner of its datasets, or the operator).
#[utoipa::path(post, path = "/v1/agreements/{id}/revoke", tag = "agreements", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = super::catalog::Reason,
    responses((status = 200, body = Revoked), (status = 403, body = crate::ErrorBody)))]
pub async fn revoke_agreement(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    Body(reason): Body<super::catalog::Reason>,
) -> ApiResult<Json<Revoked>> {
    caller.require_owner_or_operator()?;
    visible_agreement(&state, &caller, &id)?;
    let cancelled_jobs = state.sandbox.revoke_agreement(&caller.account, &id, &reason.reason)?;
    Ok(Json(Revoked {
        agreement: id,
        cancelled_jobs,
    }))
}

/// One dataset's budget under an agreement.
#[derive(Debug, Serialize, ToSchema)]
pub struct Budget {
    pub dataset: String,
    pub epsilon_total: f64,
    pub epsilon_spent: f64,
    pub epsilon_left: f64,
    pub delta_total: f64,
    pub delta_spent: f64,
    pub delta_left: f64,
}

impl From<BudgetLine> for Budget {
    fn from(b: BudgetLine) -> Self {
        Budget {
            epsilon_left: b.epsilon_left(),
            delta_left: b.delta_left(),
            dataset: b.dataset,
            epsilon_total: b.epsilon_total,
            epsilon_spent: b.epsilon_spent,
            delta_total: b.delta_total,
            delta_spent: b.delta_spent,
        }
    }
}

/// An agreement's privacy budget per dataset.
#[utoipa::path(get, path = "/v1/agreements/{id}/budget", tag = "agreements", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = [Budget]), (status = 404, body = crate::ErrorBody)))]
pub async fn agreement_budget(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<Vec<Budget>>> {
    visible_agreement(&state, &caller, &id)?;
    Ok(Json(state.sandbox.budget(&id)?.into_iter().map(Budget::from).collect()))
}

/// The period and format of a usage report.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// Start (RFC 3339, included).
    pub from: Option<String>,
    /// End (RFC 3339, excluded).
    pub to: Option<String>,
    /// `json` (default) or `markdown`.
    pub format: Option<String>,
}

/// An agreement's usage report (数据利用报告), built from the audit ledger.
#[utoipa::path(get, path = "/v1/agreements/{id}/report", tag = "agreements", security(("bearer" = [])),
    params(("id" = String, Path), ReportParams),
    responses((status = 200, description = "JSON or Markdown", body = Object),
              (status = 404, body = crate::ErrorBody)))]
pub async fn agreement_report(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    Params(params): Params<ReportParams>,
) -> ApiResult<Response> {
    visible_agreement(&state, &caller, &id)?;
    let entries = state.sandbox.store().audit_entries()?;
    let report = UsageReport::from_entries(&entries, &id, params.from.as_deref(), params.to.as_deref())?;
    match params.format.as_deref() {
        None | Some("json") => Ok(Json(report).into_response()),
        Some("markdown") => Ok((
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            report.to_markdown(),
        )
            .into_response()),
        Some(other) => Err(ApiError::invalid(format!("unknown format `{other}`: json or markdown"))),
    }
}
