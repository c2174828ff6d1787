//! DP sample datasets (样本数据): public routes, no token and no
//! application needed. They serve the sample a dataset's owner made
//! (`sandbox sample <dataset> --generate`); nothing here computes on the
//! data or spends ε, so any number of downloads cost nothing.

use crate::error::{ApiError, ApiResult};
use crate::extract::PathParam;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One dataset's current sample.
#[derive(Debug, Serialize, ToSchema)]
pub struct SampleLine {
    pub dataset: String,
    pub sample_id: String,
    pub rows: u64,
    pub created_at: String,
    /// ε of the model and of the fidelity report (the owner's).
    pub epsilon_model: f64,
    pub epsilon_fidelity: f64,
    /// Where to download it.
    pub csv: String,
    pub parquet: String,
}

/// The manifest (`sample.json`) of a dataset's current sample, parsed.
fn manifest(state: &AppState, dataset: &str) -> ApiResult<(std::path::PathBuf, serde_json::Value)> {
    let id = super::parse_dataset(state, dataset)?;
    // Served only while its owner's consent stands (the policy in force
    // has a `[sample]` table) and the dataset is not suspended: a sample
    // made earlier is not a licence to keep publishing it once the owner
    // withdrew consent or the dataset was suspended on a complaint.
    let consented = state.sandbox.policies().get(&id).is_some_and(|p| p.sample.is_some());
    let suspended = state
        .sandbox
        .store()
        .suspensions()?
        .iter()
        .any(|s| s.dataset == id.as_str());
    if !consented || suspended {
        return Err(ApiError::not_found(format!(
            "{id} has no sample dataset served: its owner has not allowed one, or the dataset is suspended"
        )));
    }
    // Served only if made under the sample terms of the policy in force: a
    // sample made before a desensitization rule (or another change to its
    // terms) shows what the owner no longer allows.
    let (dir, manifest) = match state.sandbox.current_sample(&id) {
        Ok(Some(found)) => found,
        Ok(None) => return Err(ApiError::not_found(format!("{id} has no sample dataset yet"))),
        Err(e) if e.rule() == Some("sample-stale") => {
            return Err(ApiError {
                rule: e.rule(),
                ..ApiError::not_found(e.refusal_message())
            });
        }
        Err(e) => {
            tracing::error!(dataset = %id, error = %e, "a sample manifest is unreadable");
            return Err(ApiError::internal("the sample's manifest is unreadable"));
        }
    };
    let value = serde_json::to_value(&manifest).map_err(|e| {
        tracing::error!(dataset = %id, error = %e, "a sample manifest does not serialize");
        ApiError::internal("the sample's manifest is unreadable")
    })?;
    Ok((dir, value))
}

/// Every dataset's current sample.
#[utoipa::path(get, path = "/v1/samples", tag = "samples",
    responses((status = 200, body = [SampleLine])))]
pub async fn list_samples(State(state): State<AppState>) -> ApiResult<Json<Vec<SampleLine>>> {
    let mut out = Vec::new();
    for d in state.sandbox.catalog().iter() {
        let Ok((_, m)) = manifest(&state, d.id.as_str()) else {
            continue;
        };
        out.push(SampleLine {
            dataset: d.id.to_string(),
            sample_id: m["sample_id"].as_str().unwrap_or_default().to_string(),
            rows: m["rows"].as_u64().unwrap_or_default(),
            created_at: m["created_at"].as_str().unwrap_or_default().to_string(),
            epsilon_model: m["epsilon_model"].as_f64().unwrap_or_default(),
            epsilon_fidelity: m["epsilon_fidelity"].as_f64().unwrap_or_default(),
            csv: format!("/v1/samples/{}/sample.csv", d.id),
            parquet: format!("/v1/samples/{}/sample.parquet", d.id),
        });
    }
    Ok(Json(out))
}

/// A sample's manifest and fidelity report: its ε and how it was split,
/// per column the released categories, the sample's counts, the real
/// data's noisy counts and their total variation distance.
#[utoipa::path(get, path = "/v1/samples/{dataset}", tag = "samples",
    params(("dataset" = String, Path, description = "e.g. gov.tax_payments")),
    responses((status = 200, description = "the sample manifest (SampleManifest)", content_type = "application/json"), (status = 404, body = crate::ErrorBody)))]
pub async fn sample_report(
    State(state): State<AppState>,
    PathParam(dataset): PathParam<String>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(manifest(&state, &dataset)?.1))
}

async fn file(state: AppState, dataset: String, name: &'static str, content_type: &'static str) -> ApiResult<Response> {
    let (dir, _) = manifest(&state, &dataset)?;
    let path = dir.join(name);
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .map_err(|_| ApiError::internal("reading the sample failed"))?
        .map_err(|_| ApiError::not_found(format!("{dataset} has no sample dataset yet")))?;
    let disposition = format!("attachment; filename=\"{dataset}.{name}\"");
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

/// The sample as CSV (UTF-8, header line).
#[utoipa::path(get, path = "/v1/samples/{dataset}/sample.csv", tag = "samples",
    params(("dataset" = String, Path)),
    responses((status = 200, description = "the sample", content_type = "text/csv"), (status = 404, body = crate::ErrorBody)))]
pub async fn sample_csv(State(state): State<AppState>, PathParam(dataset): PathParam<String>) -> ApiResult<Response> {
    file(state, dataset, "sample.csv", "text/csv; charset=utf-8").await
}

/// The sample as Parquet, with the catalog's column types.
#[utoipa::path(get, path = "/v1/samples/{dataset}/sample.parquet", tag = "samples",
    params(("dataset" = String, Path)),
    responses((status = 200, description = "the sample", content_type = "application/vnd.apache.parquet"), (status = 404, body = crate::ErrorBody)))]
pub async fn sample_parquet(
    State(state): State<AppState>,
    PathParam(dataset): PathParam<String>,
) -> ApiResult<Response> {
    file(state, dataset, "sample.parquet", "application/vnd.apache.parquet").await
}
