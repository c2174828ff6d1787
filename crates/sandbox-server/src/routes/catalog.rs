//! The catalog and dataset pages, owners' policies, complaints and
//! suspension.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PathParam};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sandbox_governance::{Complaint, Suspension};
use sandbox_model::{Dataset, DatasetId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One line of the catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogLine {
    pub id: String,
    pub title: String,
    pub provider: String,
    /// `open`, `conditional` or `closed`.
    pub open_class: String,
    pub summary: String,
    pub suspended: bool,
}

/// A dataset's page: its catalog entry, what its policy allows in words,
/// and whether it is suspended.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetPage {
    #[schema(value_type = Object)]
    pub dataset: Dataset,
    pub policy_version: Option<String>,
    pub policy_digest: Option<String>,
    /// The policy in plain language.
    pub policy: Vec<String>,
    #[schema(value_type = Option<Object>)]
    pub suspension: Option<Suspension>,
}

pub(crate) fn parse_dataset(state: &AppState, id: &str) -> ApiResult<DatasetId> {
    let parsed: DatasetId = id
        .parse()
        .map_err(|e| ApiError::invalid(format!("`{id}` is not a dataset id: {e}")))?;
    if state.sandbox.catalog().get(&parsed).is_none() {
        return Err(ApiError::not_found(format!("no dataset {id} in the catalog")));
    }
    Ok(parsed)
}

/// The catalog (开放清单).
#[utoipa::path(get, path = "/v1/catalog", tag = "catalog", security(("bearer" = [])),
    responses((status = 200, body = [CatalogLine]), (status = 401, body = crate::ErrorBody)))]
pub async fn list_catalog(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Vec<CatalogLine>>> {
    let suspended = state.sandbox.store().suspensions()?;
    Ok(Json(
        state
            .sandbox
            .catalog()
            .iter()
            .map(|d| CatalogLine {
                id: d.id.to_string(),
                title: d.title.clone(),
                provider: d.provider.id.clone(),
                open_class: format!("{:?}", d.open_class).to_lowercase(),
                summary: d.summary.clone(),
                suspended: suspended.iter().any(|s| s.dataset == d.id.as_str()),
            })
            .collect(),
    ))
}

/// A dataset's page.
#[utoipa::path(get, path = "/v1/catalog/{dataset}", tag = "catalog", security(("bearer" = [])),
    params(("dataset" = String, Path, description = "e.g. gov.tax_payments")),
    responses((status = 200, body = DatasetPage), (status = 404, body = crate::ErrorBody)))]
pub async fn dataset_page(
    State(state): State<AppState>,
    _caller: Caller,
    PathParam(dataset): PathParam<String>,
) -> ApiResult<Json<DatasetPage>> {
    let id = parse_dataset(&state, &dataset)?;
    let entry = state
        .sandbox
        .catalog()
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("no such dataset"))?;
    let policies = state.sandbox.policies();
    let policy = policies.get(&id);
    let suspension = state
        .sandbox
        .store()
        .suspensions()?
        .into_iter()
        .find(|s| s.dataset == id.as_str());
    Ok(Json(DatasetPage {
        policy_version: policy.map(|p| p.version.clone()),
        policy_digest: policy.map(|p| p.digest.clone()),
        policy: policy.map(|p| p.describe(&entry)).unwrap_or_default(),
        dataset: entry,
        suspension,
    }))
}

/// An output policy as its owner wrote it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyText {
    /// The policy file (TOML; see docs/policy.md).
    pub toml: String,
}

/// The policy installed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyInstalled {
    pub dataset: String,
    /// SHA-256 of the policy file, recorded in the ledger.
    pub digest: String,
    pub note: String,
}

/// A dataset's output policy file.
#[utoipa::path(get, path = "/v1/policies/{dataset}", tag = "catalog", security(("bearer" = [])),
    params(("dataset" = String, Path)),
    responses((status = 200, body = PolicyText), (status = 404, body = crate::ErrorBody)))]
pub async fn get_policy(
    State(state): State<AppState>,
    _caller: Caller,
    PathParam(dataset): PathParam<String>,
) -> ApiResult<Json<PolicyText>> {
    let id = parse_dataset(&state, &dataset)?;
    let path = state.sandbox.data_dir().policies_dir().join(format!("{id}.toml"));
    let toml = sandbox_policy::files::read_text(&path, sandbox_policy::files::MAX_POLICY_BYTES)
        .map_err(|_| ApiError::not_found(format!("{id} has no policy")))?;
    Ok(Json(PolicyText { toml }))
}

/// Installs a new version of a dataset's output policy (its owner only).
/// It is validated with every other policy first, recorded in the ledger,
/// and in force for every job that starts afterwards.
#[utoipa::path(put, path = "/v1/policies/{dataset}", tag = "catalog", security(("bearer" = [])),
    params(("dataset" = String, Path)), request_body = PolicyText,
    responses((status = 200, body = PolicyInstalled), (status = 403, body = crate::ErrorBody)))]
pub async fn put_policy(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(dataset): PathParam<String>,
    Body(policy): Body<PolicyText>,
) -> ApiResult<Json<PolicyInstalled>> {
    caller.require_owner()?;
    let id = parse_dataset(&state, &dataset)?;
    let digest = state
        .sandbox
        .set_policy_of(&caller.account, Some(&id), &format!("{id}.toml"), &policy.toml)?;
    Ok(Json(PolicyInstalled {
        dataset: id.to_string(),
        digest,
        note: "installed and recorded in the ledger; in force for every job that starts from now on".into(),
    }))
}

/// Why a dataset is suspended or resumed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    pub reason: String,
}

/// What a suspension did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Suspended {
    pub dataset: String,
    /// Running jobs cancelled (they release nothing).
    pub cancelled_jobs: usize,
}

/// Suspends a dataset (中止开放): new jobs are refused, running ones are
/// cancelled (its owner or the operator).
#[utoipa::path(post, path = "/v1/datasets/{dataset}/suspend", tag = "complaints", security(("bearer" = [])),
    params(("dataset" = String, Path)), request_body = Reason,
    responses((status = 200, body = Suspended), (status = 403, body = crate::ErrorBody)))]
pub async fn suspend_dataset(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(dataset): PathParam<String>,
    Body(reason): Body<Reason>,
) -> ApiResult<Json<Suspended>> {
    caller.require_owner_or_operator()?;
    let id = parse_dataset(&state, &dataset)?;
    let cancelled_jobs = state.sandbox.suspend_dataset(&caller.account, &id, &reason.reason)?;
    Ok(Json(Suspended {
        dataset: id.to_string(),
        cancelled_jobs,
    }))
}

/// Lifts a suspension (its owner or the operator).
#[utoipa::path(post, path = "/v1/datasets/{dataset}/resume", tag = "complaints", security(("bearer" = [])),
    params(("dataset" = String, Path)), request_body = Reason,
    responses((status = 204), (status = 403, body = crate::ErrorBody)))]
pub async fn resume_dataset(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(dataset): PathParam<String>,
    Body(reason): Body<Reason>,
) -> ApiResult<StatusCode> {
    caller.require_owner_or_operator()?;
    let id = parse_dataset(&state, &dataset)?;
    state.sandbox.resume_dataset(&caller.account, &id, &reason.reason)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A complaint about a dataset.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComplaint {
    pub dataset: String,
    pub text: String,
}

/// A complaint as filed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComplaintView {
    pub id: String,
    pub dataset: String,
    pub filed_by: String,
    pub text: String,
    pub filed_at: String,
}

impl From<Complaint> for ComplaintView {
    fn from(c: Complaint) -> Self {
        ComplaintView {
            id: c.id,
            dataset: c.dataset,
            filed_by: c.filed_by,
            text: c.text,
            filed_at: c.filed_at,
        }
    }
}

/// Files a complaint (any account); the operator and the dataset's owner
/// see it.
#[utoipa::path(post, path = "/v1/complaints", tag = "complaints", security(("bearer" = [])),
    request_body = NewComplaint,
    responses((status = 201, body = ComplaintView), (status = 400, body = crate::ErrorBody)))]
pub async fn file_complaint(
    State(state): State<AppState>,
    caller: Caller,
    Body(new): Body<NewComplaint>,
) -> ApiResult<(StatusCode, Json<ComplaintView>)> {
    let id = parse_dataset(&state, &new.dataset)?;
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    let complaint = format!("complaint-{}", hex::encode(bytes));
    let store = state.sandbox.store();
    store.file_complaint(&complaint, id.as_str(), &caller.account, &new.text)?;
    let filed = store
        .complaints()?
        .into_iter()
        .find(|c| c.id == complaint)
        .ok_or_else(|| ApiError::internal("a filed complaint vanished"))?;
    Ok((StatusCode::CREATED, Json(filed.into())))
}

/// Complaints: the operator sees all, an owner those about its datasets,
/// anyone else those it filed.
#[utoipa::path(get, path = "/v1/complaints", tag = "complaints", security(("bearer" = [])),
    responses((status = 200, body = [ComplaintView])))]
pub async fn list_complaints(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ComplaintView>>> {
    let catalog = state.sandbox.catalog();
    let owns = |dataset: &str| {
        dataset
            .parse::<DatasetId>()
            .ok()
            .and_then(|id| catalog.get(&id))
            .is_some_and(|d| caller.owns(d))
    };
    Ok(Json(
        state
            .sandbox
            .store()
            .complaints()?
            .into_iter()
            .filter(|c| caller.is_operator() || owns(&c.dataset) || c.filed_by == caller.account)
            .map(ComplaintView::from)
            .collect(),
    ))
}
