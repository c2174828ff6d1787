//! Trial runs: a job's SQL run **as written** — no rewrite, no bounding,
//! no noise — on a session whose tables are public sample datasets, so
//! that a developer sees exactly what the query and its functions compute
//! before spending budget on the real data.
//!
//! Only a session marked with [`JobSession::mark_public_samples`] is
//! accepted: the runtime marks the sessions it builds over the samples'
//! directories and no other. Because the data is public, an engine error
//! is shown whole (a real job withholds it: [`SqlError::Execution`]).

use crate::{JobSession, SqlError};
use datafusion::arrow::array::RecordBatch;
use datafusion::physical_plan::collect;

/// Plans `sql` (the same statement guard as a job) and runs it on the
/// sample tables within the session's deadline and memory pool.
///
/// # Errors
/// [`SqlError::Internal`] for a session not over public samples;
/// [`SqlError::Invalid`] for a query that does not plan, or that fails on
/// the samples (with the engine's message); [`SqlError::Deadline`] and
/// [`SqlError::Memory`] from the session's limits.
pub async fn run_on_public_samples(session: &JobSession, sql: &str) -> Result<Vec<RecordBatch>, SqlError> {
    if !session.is_over_public_samples() {
        return Err(SqlError::Internal(
            "a query runs as written only on public sample data".into(),
        ));
    }
    let plan = session.plan(sql)?;
    let limits = session.limits();
    let state = session.state().clone();
    let run = async move {
        let physical = state.create_physical_plan(&plan).await?;
        collect(physical, state.task_ctx()).await
    };
    match tokio::time::timeout(limits.deadline, run).await {
        Err(_) => Err(SqlError::Deadline(limits.deadline)),
        Ok(Err(e)) => match e.find_root() {
            datafusion::error::DataFusionError::ResourcesExhausted(_) => Err(SqlError::Memory(limits.memory_bytes)),
            _ => Err(SqlError::Invalid(format!(
                "the query failed on the sample data: {}",
                e.strip_backtrace()
            ))),
        },
        Ok(Ok(batches)) => Ok(batches),
    }
}
