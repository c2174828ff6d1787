//! Accounts: who am I, and the operator creating accounts (the very first
//! account, the operator's own, needs no token).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::Body;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sandbox_governance::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The caller's account.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub account: String,
    /// `operator`, `applicant` or `data_owner`.
    pub role: String,
    /// The provider whose datasets the account owns: a data owner's, or
    /// the enterprise provider an applicant claimed by registering its own
    /// data.
    pub provider: Option<String>,
}

fn role_name(role: &Role) -> (&'static str, Option<String>) {
    match role {
        Role::Operator => ("operator", None),
        Role::Applicant => ("applicant", None),
        Role::DataOwner { provider } => ("data_owner", Some(provider.clone())),
    }
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = crate::ErrorBody)))]
pub async fn me(caller: Caller) -> Json<Me> {
    let (role, _) = role_name(&caller.role);
    Json(Me {
        provider: caller.provider().map(str::to_string),
        account: caller.account,
        role: role.into(),
    })
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub id: String,
    /// `operator`, `applicant` or `data_owner`.
    pub role: String,
    /// The catalog provider id a data owner manages.
    #[serde(default)]
    pub provider: Option<String>,
}

/// The new account and its API token, shown only once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedAccount {
    pub account: String,
    pub token: String,
}

const MAX_ID: usize = 64;

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Creates an account (operator only; `sandbox serve` creates the
/// operator's own account when the store has none and prints its token).
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])),
    request_body = NewAccount,
    responses((status = 201, body = CreatedAccount), (status = 400, body = crate::ErrorBody),
              (status = 403, body = crate::ErrorBody)))]
pub async fn create_account(
    State(state): State<AppState>,
    caller: Caller,
    Body(new): Body<NewAccount>,
) -> ApiResult<(StatusCode, Json<CreatedAccount>)> {
    caller.require_operator()?;
    let store = state.sandbox.store();
    if !valid_id(&new.id) {
        return Err(ApiError::invalid(format!(
            "an account id has 1 to {MAX_ID} letters, digits, `-`, `_` or `.`"
        )));
    }
    let mut enterprise_provider = None;
    let role = match (new.role.as_str(), new.provider) {
        ("operator", None) => Role::Operator,
        ("applicant", None) => Role::Applicant,
        // An enterprise that brings its own data: its provider is new to
        // the catalog (no look-alike: the store checks the id's form).
        ("applicant", Some(provider)) => {
            if state.sandbox.catalog().iter().any(|d| d.provider.id == provider) {
                return Err(ApiError::invalid(format!(
                    "provider `{provider}` is in the catalog already; an applicant's enterprise provider is its own"
                )));
            }
            enterprise_provider = Some(provider);
            Role::Applicant
        }
        ("data_owner", Some(provider)) if state.sandbox.catalog().iter().any(|d| d.provider.id == provider) => {
            Role::DataOwner { provider }
        }
        ("data_owner", Some(provider)) if !provider.trim().is_empty() => {
            return Err(ApiError::invalid(format!(
                "no provider `{}` in the catalog; a data owner manages a catalog provider",
                provider.chars().take(64).collect::<String>()
            )));
        }
        ("data_owner", _) => {
            return Err(ApiError::invalid(
                "a data owner needs `provider` (a catalog provider id)",
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                "`provider` goes with the data_owner and applicant roles only",
            ));
        }
        (other, None) => {
            return Err(ApiError::invalid(format!(
                "unknown role `{other}`: operator, applicant or data_owner"
            )));
        }
    };
    let by = caller.account;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(format!("no randomness for a token: {e}")))?;
    let token = format!("sbx_{}", hex::encode(bytes));
    match &enterprise_provider {
        Some(provider) => store.create_enterprise_applicant(&new.id, &token, provider, &by)?,
        None => store.create_account(&new.id, &role, &token, &by)?,
    }
    Ok((StatusCode::CREATED, Json(CreatedAccount { account: new.id, token })))
}
