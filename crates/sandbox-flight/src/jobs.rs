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

/// Runs one SQL job for an account under a grant (an agreement the account
/// holds: the endpoint has checked that). Implementations pass the job
/// through the sandbox's checker, budget and ledger like every other path;
/// the future is `'static` so the endpoint can spawn it and let it finish
/// (and record its outcome) even when the client goes away.
pub trait FlightJobs: Send + Sync + 'static {
    fn run_sql(&self, account: &str, grant: &str, sql: &str) -> BoxFuture<'static, Result<ReleasedJob, RuntimeError>>;
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
    fn run_sql(&self, account: &str, grant: &str, sql: &str) -> BoxFuture<'static, Result<ReleasedJob, RuntimeError>> {
        let sandbox = Arc::clone(&self.sandbox);
        let (account, grant, sql) = (account.to_string(), grant.to_string(), sql.to_string());
        async move {
            tracing::debug!(%account, %grant, "flight job starting");
            match sandbox.run_sql(&grant, &sql, &SqlJobOptions::default()).await? {
                SqlJobResult::Released { job_id, table, .. } => Ok(ReleasedJob { job_id, table }),
                SqlJobResult::DryRun(_) => Err(RuntimeError::Setup(
                    "the job was dry-run; Flight SQL jobs always run".into(),
                )),
            }
        }
        .boxed()
    }
}
