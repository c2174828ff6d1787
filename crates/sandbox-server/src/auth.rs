//! Who is calling: the bearer token of every request resolves to an
//! account and its role (tokens are kept only as SHA-256 in the store);
//! handlers state the roles they admit with the `require_*` helpers.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sandbox_governance::Role;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: String,
    pub role: Role,
    /// The provider whose datasets the caller owns: a data owner's, or the
    /// enterprise provider an applicant claimed by bringing its own data.
    owned_provider: Option<String>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthenticated("send `Authorization: Bearer <token>`"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(sandbox_governance::bearer_token)
            .ok_or_else(|| ApiError::unauthenticated("the Authorization header must be `Bearer <token>`"))?;
        let (account, role) = state.sandbox.store().authenticate(token)?;
        Ok(Caller::new(state, account, role)?)
    }
}

impl Caller {
    /// The caller `account` with `role`, and the provider it owns.
    pub fn new(state: &AppState, account: String, role: Role) -> Result<Caller, sandbox_governance::GovernanceError> {
        let owned_provider = match &role {
            Role::DataOwner { provider } => Some(provider.clone()),
            Role::Applicant => state.sandbox.store().enterprise_provider_of(&account)?,
            Role::Operator => None,
        };
        Ok(Caller {
            account,
            role,
            owned_provider,
        })
    }

    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// The provider this caller owns data for: a data owner's, or an
    /// applicant's own enterprise provider.
    pub fn provider(&self) -> Option<&str> {
        self.owned_provider.as_deref()
    }

    /// Whether the caller owns the dataset `entry` describes: a data owner
    /// of its provider, or the applicant whose enterprise provider it is,
    /// for a dataset of kind `enterprise` only.
    pub fn owns(&self, entry: &sandbox_model::Dataset) -> bool {
        let kind_ok = match self.role {
            Role::DataOwner { .. } => true,
            Role::Applicant => entry.provider.kind == sandbox_model::ProviderKind::Enterprise,
            Role::Operator => false,
        };
        kind_ok && self.provider() == Some(entry.provider.id.as_str())
    }

    pub fn require_applicant(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Applicant => Ok(()),
            _ => Err(ApiError::forbidden("role-applicant", "only applicants do this")),
        }
    }

    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Operator => Ok(()),
            _ => Err(ApiError::forbidden(
                "role-operator",
                "only the platform operator does this",
            )),
        }
    }

    pub fn require_owner(&self) -> Result<&str, ApiError> {
        self.provider()
            .ok_or_else(|| ApiError::forbidden("role-data-owner", "only data owners do this"))
    }

    pub fn require_owner_or_operator(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Operator | Role::DataOwner { .. } => Ok(()),
            Role::Applicant if self.owned_provider.is_some() => Ok(()),
            Role::Applicant => Err(ApiError::forbidden(
                "role-owner-or-operator",
                "only data owners and the operator do this",
            )),
        }
    }
}
