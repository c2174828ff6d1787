//! Where a job's physical plans run.
//!
//! The checked, rewritten and bounded plan is built and planned in this
//! process (the trusted coordinator) in every mode; only the execution of
//! the finished physical plan is delegated. Embedded mode (the default)
//! runs it here with DataFusion's `collect`; the distributed mode
//! (`sandbox-distributed`) hands it to an Apache Ballista cluster. Either
//! way what comes back is the plan's output, the per-(unit, group) partial
//! aggregates, never rows the plan did not produce.

use datafusion::arrow::array::RecordBatch;
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use futures::future::BoxFuture;
use std::sync::Arc;

/// Runs finished physical plans of a job.
pub trait PlanRunner: Send + Sync + std::fmt::Debug {
    /// A short name for logs and the job record: `embedded`, `ballista`.
    fn mode(&self) -> &'static str;

    /// Adjusts the job session's options for this runner, once, before
    /// any plan is made (the distributed mode turns off what the cluster
    /// cannot carry).
    fn configure(&self, _options: &mut datafusion::config::ConfigOptions) {}

    /// Checks a physical plan before anything of it runs: a plan this
    /// runner cannot execute faithfully is refused here (for instance a
    /// WebAssembly row function in distributed mode), never midway.
    fn admit(&self, plan: &Arc<dyn ExecutionPlan>) -> Result<(), crate::SqlError>;

    /// Executes `plan` to completion and returns its output batches.
    /// Errors are execution errors of the engine or the cluster; the caller
    /// maps them to [`crate::SqlError`] without showing their text.
    fn run(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        context: Arc<TaskContext>,
    ) -> BoxFuture<'static, DfResult<Vec<RecordBatch>>>;
}

/// The embedded mode: DataFusion in this process.
#[derive(Debug, Default)]
pub struct Embedded;

impl PlanRunner for Embedded {
    fn mode(&self) -> &'static str {
        "embedded"
    }

    fn admit(&self, _plan: &Arc<dyn ExecutionPlan>) -> Result<(), crate::SqlError> {
        Ok(())
    }

    fn run(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        context: Arc<TaskContext>,
    ) -> BoxFuture<'static, DfResult<Vec<RecordBatch>>> {
        Box::pin(datafusion::physical_plan::collect(plan, context))
    }
}
