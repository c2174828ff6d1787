//! Request bodies: JSON that fails to parse is answered with the parser's
//! message as an `invalid` error, never a bare rejection.

use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, QueryRejection};

/// A JSON body.
#[derive(Debug, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Body<T>(pub T);

/// Query parameters.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Params<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        match e {
            JsonRejection::BytesRejection(b) if b.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError {
                status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                code: "too_large",
                rule: None,
                message: "the request body is larger than the server accepts".into(),
            },
            other => ApiError::invalid(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::invalid(e.body_text())
    }
}
