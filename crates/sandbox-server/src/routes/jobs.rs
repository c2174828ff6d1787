//! Jobs: submit (applicants, under their own agreements), follow, fetch
//! the result, cancel. A job is visible to the account that submitted it
//! and to no one else; another account's job answers 404, like a job that
//! does not exist.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Params, PathParam};
use crate::job::{JobRequest, JobView};
use crate::pool::Cancellation;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sandbox_governance::{QueueState, QueuedJob};
use serde::Deserialize;
use std::time::{Duration, Instant};
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
    PathParam(id): PathParam<String>,
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
    PathParam(id): PathParam<String>,
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

/// How long a cancellation of a running job waits for the job to end, so
/// that its answer can say how it ended.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// Cancels one of the caller's jobs and answers what actually happened:
/// a queued job is cancelled at once with nothing charged; a running job is
/// asked to stop and the answer waits (a few seconds at most) for its end:
/// `cancelled` (with its charge kept if it had been charged), `succeeded`
/// when it was already releasing, or still `running` with the request
/// noted. `cancellation` says which in words.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The job has ended (see `state`)", body = JobView),
              (status = 202, description = "Still running: cancellation requested", body = JobView),
              (status = 404, body = crate::ErrorBody),
              (status = 409, description = "The job had ended before the request", body = crate::ErrorBody)))]
pub async fn cancel_job(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let job = own_job(&state, &caller, &id)?;
    if state.pool.cancel(&job)? == Cancellation::Cancelled {
        let mut view = state.pool.view(own_job(&state, &caller, &id)?);
        view.cancellation = Some("cancelled before it ran: nothing was charged".into());
        return Ok((StatusCode::OK, Json(view)));
    }
    let deadline = Instant::now() + CANCEL_WAIT;
    let job = loop {
        let job = own_job(&state, &caller, &id)?;
        if job.state.is_final() || Instant::now() >= deadline {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let charged = !state.sandbox.store().job_charges(&id)?.is_empty();
    let (status, words) = match (job.state, charged) {
        (QueueState::Cancelled, false) => (
            StatusCode::OK,
            "cancelled while running, before it was charged: nothing was charged",
        ),
        (QueueState::Cancelled, true) => (
            StatusCode::OK,
            "cancelled while running: nothing was released; the charge stands",
        ),
        (QueueState::Running, _) => (
            StatusCode::ACCEPTED,
            "running: cancellation requested; a charge already made stands",
        ),
        (_, _) => (
            StatusCode::OK,
            "too late: the job ended before it could be stopped (see its state)",
        ),
    };
    let mut view = state.pool.view(job);
    view.cancellation = Some(words.into());
    Ok((status, Json(view)))
}
