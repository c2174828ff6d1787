//! The crate's error type, and the one place runtime and store errors
//! become gRPC statuses.

use crate::jobs::{ErrorKind, JobError};
use sandbox_governance::GovernanceError;
use sandbox_runtime::RuntimeError;
use sandbox_sql::SqlError;
use std::net::SocketAddr;
use thiserror::Error;
use tonic::Status;

/// Errors of building results and of running the server.
#[derive(Debug, Error)]
pub enum FlightError {
    #[error("cannot build the result batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("cannot encode the release: {0}")]
    Encode(String),
    #[error("cannot draw random bytes for a ticket: {0}")]
    Random(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the Flight SQL server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl From<FlightError> for Status {
    fn from(e: FlightError) -> Self {
        tracing::error!(error = %e, "flight request failed");
        Status::internal("the sandbox could not complete the request; the operator's log has the details")
    }
}

/// A refusal by a named rule: `PERMISSION_DENIED`, the message naming the
/// rule first.
pub(crate) fn refused(rule: &str, message: &str) -> Status {
    Status::permission_denied(format!("refused by rule `{rule}`: {message}"))
}

/// Maps the error of a job run through a [`FlightJobs`](crate::FlightJobs)
/// runner to a status, by its kind (docs/api.md has the table).
pub(crate) fn job_status(e: &JobError) -> Status {
    match e {
        JobError::Runtime(e) => runtime_status(e),
        JobError::Rejected { kind, rule, message } => match kind {
            ErrorKind::Invalid | ErrorKind::TooLarge => Status::invalid_argument(message.clone()),
            ErrorKind::Unauthenticated => Status::unauthenticated(message.clone()),
            ErrorKind::Forbidden | ErrorKind::Refused => refused(rule.unwrap_or("not-allowed"), message),
            ErrorKind::NotFound => Status::not_found(message.clone()),
            ErrorKind::Conflict => Status::failed_precondition(message.clone()),
            ErrorKind::Busy => Status::resource_exhausted(message.clone()),
            ErrorKind::Internal => {
                tracing::error!(error = %message, "flight job failed");
                Status::internal("the job failed; the operator's log has the details")
            }
        },
    }
}

/// Maps a job's error to a status. Refusals name their rule; the runtime's
/// messages never carry data values. Failures whose cause may depend on
/// the data, or on the machine, are logged and answered generically.
pub(crate) fn runtime_status(e: &RuntimeError) -> Status {
    if let Some(rule) = e.rule() {
        return refused(rule, &e.refusal_message());
    }
    match e {
        RuntimeError::Governance(g) => governance_status(g),
        RuntimeError::Sql(sql) => sql_status(sql, e),
        RuntimeError::Wasm(_) => Status::invalid_argument(e.to_string()),
        other => {
            tracing::error!(error = %other, "flight job failed");
            Status::internal("the job failed; the operator's log has the details")
        }
    }
}

fn sql_status(sql: &SqlError, e: &RuntimeError) -> Status {
    match sql {
        SqlError::Invalid(_) => Status::invalid_argument(e.to_string()),
        SqlError::Deadline(_) => Status::deadline_exceeded(e.to_string()),
        SqlError::Memory(_) => Status::resource_exhausted(e.to_string()),
        SqlError::Storage(_) => Status::unavailable(e.to_string()),
        // Execution failures are already generic; internal errors may name
        // implementation details: log them, answer generically.
        SqlError::Execution => Status::internal(e.to_string()),
        _ => {
            tracing::error!(error = %e, "flight job failed");
            Status::internal("the job failed; the operator's log has the details")
        }
    }
}

/// Maps a store error to a status.
pub(crate) fn governance_status(e: &GovernanceError) -> Status {
    match e {
        GovernanceError::Unauthenticated => Status::unauthenticated(e.to_string()),
        GovernanceError::Forbidden(m) => refused("not-allowed", m),
        GovernanceError::Invalid(m) => Status::invalid_argument(m.clone()),
        other => {
            tracing::error!(error = %other, "flight request: storage failed");
            Status::internal("the sandbox database failed; the operator's log has the details")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn rejected(code: &str, rule: Option<&'static str>) -> Status {
        job_status(&JobError::Rejected {
            kind: ErrorKind::from_code(code),
            rule,
            message: "m".into(),
        })
    }

    #[test]
    fn job_errors_map_by_kind_as_the_table_in_api_md_says() {
        for (code, rule, status) in [
            ("invalid", None, Code::InvalidArgument),
            ("too_large", None, Code::InvalidArgument),
            ("unauthenticated", None, Code::Unauthenticated),
            ("forbidden", Some("role-applicant"), Code::PermissionDenied),
            ("refused", Some("budget-exhausted"), Code::PermissionDenied),
            ("not_found", None, Code::NotFound),
            ("conflict", None, Code::FailedPrecondition),
            ("busy", None, Code::ResourceExhausted),
            ("internal", None, Code::Internal),
            ("something new", None, Code::Internal),
        ] {
            let s = rejected(code, rule);
            assert_eq!(s.code(), status, "{code}");
            if let Some(rule) = rule {
                assert!(s.message().contains(rule), "{code}: {}", s.message());
            }
        }
        assert_ne!(
            rejected("internal", None).message(),
            "m",
            "internal details stay in the log"
        );
        let syntax = JobError::Runtime(RuntimeError::Sql(SqlError::Invalid("syntax".into())));
        assert_eq!(job_status(&syntax).code(), Code::InvalidArgument);
    }
}
