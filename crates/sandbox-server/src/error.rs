//! Errors, converted once into responses: a status code and a JSON body
//! `{"error": {"code", "rule", "message"}}`. Refusals name their rule;
//! storage failures are logged and answered without their details.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sandbox_governance::GovernanceError;
use sandbox_runtime::RuntimeError;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for people and programs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `unauthenticated`, `forbidden`, `not_found`, `invalid`, `refused`,
    /// `conflict`, `busy`, `too_large` or `internal`.
    pub code: &'static str,
    /// The rule that refused the request, when a rule did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'static str>,
    pub message: String,
}

/// An error of the HTTP API.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub rule: Option<&'static str>,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            rule: None,
            message: message.into(),
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// The caller's role may not use this route.
    pub fn forbidden(rule: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            rule: Some(rule),
            ..Self::new(StatusCode::FORBIDDEN, "forbidden", message)
        }
    }

    /// Not found, or not the caller's to see (the two are not told apart).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// A rule refused the request.
    pub fn refused(rule: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            rule: Some(rule),
            ..Self::new(StatusCode::FORBIDDEN, "refused", message)
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                rule: self.rule,
                message: self.message.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        if let Some(rule) = e.rule() {
            return ApiError::refused(rule, e.refusal_message());
        }
        match e {
            RuntimeError::Governance(g) => g.into(),
            RuntimeError::Sql(e) => ApiError::invalid(e.to_string()),
            RuntimeError::Wasm(_) => ApiError::invalid(e.to_string()),
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::internal("the sandbox could not complete the request; the operator's log has the details")
            }
        }
    }
}

impl From<GovernanceError> for ApiError {
    fn from(e: GovernanceError) -> Self {
        match e {
            GovernanceError::Unauthenticated => ApiError::unauthenticated(e.to_string()),
            GovernanceError::Forbidden(m) => ApiError::forbidden("not-allowed", m),
            GovernanceError::Invalid(m) => ApiError::invalid(m),
            GovernanceError::DuplicateJob(_) => ApiError::conflict(e.to_string()),
            GovernanceError::NotRunning(_) => ApiError::conflict(e.to_string()),
            e @ (GovernanceError::NoGrant(_)
            | GovernanceError::NotCovered { .. }
            | GovernanceError::BudgetExhausted { .. }
            | GovernanceError::DeltaBudgetExhausted { .. }
            | GovernanceError::OverPolicyBudget { .. }
            | GovernanceError::AgreementInactive { .. }
            | GovernanceError::DatasetSuspended { .. }
            | GovernanceError::AccountingChanged { .. }) => RuntimeError::from(e).into(),
            other => {
                tracing::error!(error = %other, "storage failed");
                ApiError::internal("the sandbox database failed; the operator's log has the details")
            }
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
