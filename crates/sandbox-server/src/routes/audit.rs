//! The audit ledger: export and verification (the operator).

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use sandbox_governance::{AuditReport, Integrity};
use serde::Serialize;
use utoipa::ToSchema;

/// Every ledger entry, oldest first (operator).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = [Object]), (status = 403, body = crate::ErrorBody)))]
pub async fn export_audit(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<serde_json::Value>> {
    caller.require_operator()?;
    let entries = state.sandbox.store().audit_entries()?;
    Ok(Json(
        serde_json::to_value(entries).map_err(|e| crate::ApiError::internal(e.to_string()))?,
    ))
}

/// What a check of the ledger found.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verification {
    pub intact: bool,
    pub entries: Option<u64>,
    pub head: Option<String>,
    /// The first bad entry's position (1-based) and what is wrong with it.
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
    /// The database file's own check: `ok`, `damaged: …`, or
    /// `not available` (PostgreSQL).
    pub integrity: String,
}

/// Checks the hash chain, the stored head, the head file outside the
/// database when the server has one, and the database file (operator).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = Verification), (status = 403, body = crate::ErrorBody)))]
pub async fn verify_audit(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Verification>> {
    caller.require_operator()?;
    let integrity = match state.sandbox.store().integrity() {
        Ok(Integrity::Ok) => "ok".to_string(),
        Ok(Integrity::Damaged(lines)) => format!("damaged: {}", lines.join("; ")),
        Ok(Integrity::NotAvailable) => "not available".to_string(),
        Err(e) => format!("damaged: {e}"),
    };
    Ok(Json(match state.sandbox.store().verify_audit()? {
        AuditReport::Intact { entries, head } => Verification {
            intact: true,
            entries: Some(entries),
            head: Some(head),
            first_bad_seq: None,
            problem: None,
            integrity,
        },
        AuditReport::Broken(broken) => Verification {
            intact: false,
            entries: None,
            head: None,
            first_bad_seq: Some(broken.seq),
            problem: Some(broken.reason),
            integrity,
        },
    }))
}
