//! Who runs a Flight SQL job: a seam, so the HTTP server can route Flight
//! jobs through its job pool, and the direct path used on its own.

use futures::FutureExt;
use futures::future::BoxFuture;
use sandbox_model::ReleasedTable;
use sandbox_runtime::{RuntimeError, Sandbox, SqlJobOptions, SqlJobResult};
use std::sync::Arc;

/// A job that ran and released its table.
#[derive(Debug, Clone)]
pub struct ReleasedJob {
    /// The job's id, as recorded in the ledger.
    pub job_id: String,
    pub table: ReleasedTable,
}

/// The kinds of error every interface of the sandbox shares (the HTTP API
/// names them in `error.code`; docs/api.md has the table of their HTTP and
/// gRPC statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or out of range (`INVALID_ARGUMENT`).
    Invalid,
    /// The request is larger than accepted (`INVALID_ARGUMENT`).
    TooLarge,
    Unauthenticated,
    /// The caller's role may not do this (`PERMISSION_DENIED`).
    Forbidden,
    /// A rule refused it (`PERMISSION_DENIED`, naming the rule).
    Refused,
    NotFound,
    /// The record is in a state that does not allow it (`FAILED_PRECONDITION`).
    Conflict,
    /// The queue is full; try again shortly (`RESOURCE_EXHAUSTED`).
    Busy,
    Internal,
}

impl ErrorKind {
    /// The kind an HTTP API error code names; unknown codes are internal.
    pub fn from_code(code: &str) -> Self {
        match code {
            "invalid" => ErrorKind::Invalid,
            "too_large" => ErrorKind::TooLarge,
            "unauthenticated" => ErrorKind::Unauthenticated,
            "forbidden" => ErrorKind::Forbidden,
            "refused" => ErrorKind::Refused,
            "not_found" => ErrorKind::NotFound,
            "conflict" => ErrorKind::Conflict,
            "busy" => ErrorKind::Busy,
            _ => ErrorKind::Internal,
        }
    }
}

/// Why a job released nothing.
#[derive(Debug)]
pub enum JobError {
    /// The runtime's own error (refusals name their rule).
    Runtime(RuntimeError),
    /// The runner turned the job away, or the job ended without a release,
    /// with the kind of error (and the rule, for a refusal) it reported.
    Rejected {
        kind: ErrorKind,
        rule: Option<&'static str>,
        message: String,
    },
}

impl From<RuntimeError> for JobError {
    fn from(e: RuntimeError) -> Self {
        JobError::Runtime(e)
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Runtime(e) => e.fmt(f),
            JobError::Rejected { message, .. } => f.write_str(message),
        }
    }
}

impl JobError {
    /// The rule that refused the job, if a rule did.
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            JobError::Runtime(e) => e.rule(),
            JobError::Rejected { rule, .. } => *rule,
        }
    }
}

/// Runs one SQL job for an account under a grant (an agreement the account
/// holds: the endpoint has checked that). Implementations pass the job
/// through the sandbox's checker, budget and ledger like every other path;
/// the future is `'static` so the endpoint can spawn it and let it finish
/// (and record its outcome) even when the client goes away.
pub trait FlightJobs: Send + Sync + 'static {
    fn run_sql(&self, account: &str, grant: &str, sql: &str) -> BoxFuture<'static, Result<ReleasedJob, JobError>>;
}

/// Runs jobs directly on a [`Sandbox`] with the default options (the
/// policies' ε per query, never a dry run).
#[derive(Debug, Clone)]
pub struct DirectJobs {
    sandbox: Arc<Sandbox>,
}

impl DirectJobs {
    pub fn new(sandbox: Arc<Sandbox>) -> Self {
        DirectJobs { sandbox }
    }
}

impl FlightJobs for DirectJobs {
    fn run_sql(&self, account: &str, grant: &str, sql: &str) -> BoxFuture<'static, Result<ReleasedJob, JobError>> {
        let sandbox = Arc::clone(&self.sandbox);
        let (account, grant, sql) = (account.to_string(), grant.to_string(), sql.to_string());
        async move {
            tracing::debug!(%account, %grant, "flight job starting");
            match sandbox.run_sql(&grant, &sql, &SqlJobOptions::default()).await? {
                SqlJobResult::Released { job_id, table, .. } => Ok(ReleasedJob { job_id, table }),
                SqlJobResult::DryRun(_) => Err(JobError::Runtime(RuntimeError::Setup(
                    "the job was dry-run; Flight SQL jobs always run".into(),
                ))),
            }
        }
        .boxed()
    }
}
