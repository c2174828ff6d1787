//! Jobs: submit (applicants, under their own agreements), follow, fetch
//! the result, cancel. A job is visible to the account that submitted it
//! and to no one else; another account's job answers 404, like a job that
//! does not exist.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Params};
use crate::job::{JobRequest, JobView};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sandbox_governance::{QueueState, QueuedJob};
use serde::Deserialize;
use utoipa::IntoParams;

fn own_job(state: &AppState, caller: &Caller, id: &str) -> ApiResult<QueuedJob> {
    state
        .sandbox
        .store()
        .queued_job(id)?
        .filter(|j| j.account == caller.account)
        .ok_or_else(|| ApiError::not_found(format!("you have no job `{id}`")))
}

/// Queues a job; poll `GET /v1/jobs/{id}` until it ends.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", security(("bearer" = [])),
    request_body = JobRequest,
    responses((status = 202, body = JobView), (status = 400, body = crate::ErrorBody),
              (status = 403, body = crate::ErrorBody), (status = 503, body = crate::ErrorBody)))]
pub async fn submit_job(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<JobRequest>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    caller.require_applicant()?;
    let job = state.pool.submit(&caller.account, &request)?;
    Ok((StatusCode::ACCEPTED, Json(state.pool.view(job))))
}

/// How many jobs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// At most this many, newest first (default 50, at most 500).
    pub limit: Option<u32>,
}

/// The caller's jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = [JobView])))]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params<ListParams>,
) -> ApiResult<Json<Vec<JobView>>> {
    let limit = params.limit.unwrap_or(50).clamp(1, 500);
    Ok(Json(
        state
            .sandbox
            .store()
            .queued_jobs_of(&caller.account, limit)?
            .into_iter()
            .map(|j| state.pool.view(j))
            .collect(),
    ))
}

/// One of the caller's jobs.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 404, body = crate::ErrorBody)))]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    Ok(Json(state.pool.view(own_job(&state, &caller, &id)?)))
}

/// The released result of one of the caller's jobs:
/// `{"kind": "released", "table": …}` or `{"kind": "dry_run", "report": …}`.
#[utoipa::path(get, path = "/v1/jobs/{id}/result", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::ErrorBody),
              (status = 409, description = "The job has not succeeded", body = crate::ErrorBody)))]
pub async fn job_result(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let job = own_job(&state, &caller, &id)?;
    if job.state != QueueState::Succeeded {
        return Err(ApiError::conflict(format!(
            "job `{id}` is {}; only a succeeded job has a result",
            job.state.as_str()
        )));
    }
    let text = state
        .sandbox
        .store()
        .job_result(&id)?
        .ok_or_else(|| ApiError::internal("a succeeded job has no stored result"))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ApiError::internal(format!("a stored result is unreadable: {e}")))?;
    if value.get("kind").is_some() {
        return Ok(Json(value));
    }
    Ok(Json(serde_json::json!({"kind": "released", "table": value})))
}

/// Cancels one of the caller's jobs: a queued one at once; a running one
/// releases nothing (ε already charged stays charged).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 202, body = JobView), (status = 404, body = crate::ErrorBody),
              (status = 409, description = "The job has ended", body = crate::ErrorBody)))]
pub async fn cancel_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let job = own_job(&state, &caller, &id)?;
    state.pool.cancel(&job)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(state.pool.view(own_job(&state, &caller, &id)?)),
    ))
}
