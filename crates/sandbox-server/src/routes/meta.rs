//! Health, the OpenAPI document and the metrics.

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::openapi::ApiDoc;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;

/// Liveness: the server answers and its store is readable.
#[utoipa::path(get, path = "/health", tag = "meta",
    responses((status = 200, description = "Serving", body = Object)))]
pub async fn health(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let backend = state.sandbox.store().backend_name();
    state.sandbox.store().account_count()?;
    Ok(Json(serde_json::json!({"status": "ok", "store": backend})))
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Prometheus metrics (operator only; configure the scraper's bearer token).
#[utoipa::path(get, path = "/metrics", tag = "meta", security(("bearer" = [])),
    responses((status = 200, description = "Text exposition format", body = String),
              (status = 403, description = "Not the operator", body = crate::ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> ApiResult<impl IntoResponse> {
    caller.require_operator()?;
    let text = state.metrics.render(state.pool.waiting(), state.pool.running());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
