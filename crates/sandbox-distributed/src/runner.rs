//! [`BallistaRunner`]: a job's finished physical plans executed on a
//! Ballista cluster.

use crate::DistributedError;
use crate::codec::SandboxCodec;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::protobuf::KeyValuePair;
use datafusion::arrow::array::RecordBatch;
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::AsExecutionPlan;
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::future::BoxFuture;
use sandbox_sql::SqlError;
use sandbox_sql::runner::PlanRunner;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Sends each finished plan to a Ballista scheduler as a serialized
/// physical plan (never SQL, never a logical plan to be re-planned there)
/// and collects its output.
///
/// The scheduler splits the plan into stages at its repartitions; the
/// executors run the scans, the per-(privacy unit, group) aggregation and
/// the contribution bounding of the plan, and only the plan's output (the
/// bounded per-group partials) returns here, where noise, partition
/// selection and the release rules run.
#[derive(Debug)]
pub struct BallistaRunner {
    scheduler_url: String,
    codec: Arc<SandboxCodec>,
    /// Rows and bytes shuffled by every job this runner ran (benchmarks).
    shuffled_rows: Arc<AtomicU64>,
    shuffled_bytes: Arc<AtomicU64>,
}

impl BallistaRunner {
    /// A runner for the scheduler at `scheduler` (`host:port`, or
    /// `df://host:port` as Ballista's clients write it). Errors: an address
    /// without a host or a numeric port. Nothing is contacted until a plan
    /// runs.
    pub fn new(scheduler: &str) -> Result<Self, DistributedError> {
        let (host, port) = crate::host_and_port(scheduler)?;
        Ok(BallistaRunner {
            scheduler_url: format!("http://{host}:{port}"),
            codec: Arc::new(SandboxCodec::default()),
            shuffled_rows: Arc::default(),
            shuffled_bytes: Arc::default(),
        })
    }

    /// Checks that the scheduler accepts connections within `timeout`, so
    /// that a sandbox started with a wrong address says so at once instead
    /// of failing its first job. Errors: the address does not resolve or
    /// nothing listens there.
    pub fn check_reachable(&self, timeout: std::time::Duration) -> Result<(), DistributedError> {
        use std::net::ToSocketAddrs;
        let address = self.scheduler_url.trim_start_matches("http://");
        let unreachable = |why: String| DistributedError::Unreachable {
            scheduler: address.to_string(),
            why,
        };
        let addrs = address.to_socket_addrs().map_err(|e| unreachable(e.to_string()))?;
        let mut last = String::from("the address resolves to nothing");
        for addr in addrs {
            match std::net::TcpStream::connect_timeout(&addr, timeout) {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(unreachable(last))
    }

    /// Rows and bytes (Arrow, decoded) shuffled between stages by every
    /// job this runner ran so far, from the scheduler's job metrics.
    pub fn shuffled(&self) -> crate::client::Shuffled {
        crate::client::Shuffled {
            rows: self.shuffled_rows.load(Ordering::Relaxed),
            bytes: self.shuffled_bytes.load(Ordering::Relaxed),
        }
    }

    /// The scheduler's URL (`http://host:port`).
    pub fn scheduler_url(&self) -> &str {
        &self.scheduler_url
    }
}

impl PlanRunner for BallistaRunner {
    fn mode(&self) -> &'static str {
        "ballista"
    }

    /// Dynamic filters (join, TopK and aggregate filters pushed into scans
    /// at run time) live in one process's memory: a plan holding them
    /// cannot be split into stages (Ballista's scheduler fails such a
    /// join's stage), so jobs sent to the cluster are planned without them.
    fn configure(&self, options: &mut datafusion::config::ConfigOptions) {
        options.optimizer.enable_dynamic_filter_pushdown = false;
        options.optimizer.enable_join_dynamic_filter_pushdown = false;
        options.optimizer.enable_topk_dynamic_filter_pushdown = false;
        options.optimizer.enable_aggregate_dynamic_filter_pushdown = false;
    }

    /// Serializes the plan with the cluster's codec: a function without a
    /// portable description (a WebAssembly row function) is refused by
    /// its rule before anything runs.
    fn admit(&self, plan: &Arc<dyn ExecutionPlan>) -> Result<(), SqlError> {
        let codec = SandboxCodec::admitting();
        let encoded = PhysicalPlanNode::try_from_physical_plan(plan.clone(), &codec);
        if let Some(refusal) = codec.take_refusal() {
            return Err(refusal);
        }
        encoded.map(|_| ()).map_err(|e| {
            SqlError::Internal(format!(
                "the plan cannot be sent to the cluster: {}",
                e.strip_backtrace()
            ))
        })
    }

    fn run(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        context: Arc<TaskContext>,
    ) -> BoxFuture<'static, DfResult<Vec<RecordBatch>>> {
        let url = self.scheduler_url.clone();
        let codec = self.codec.clone();
        let (rows, bytes_total) = (self.shuffled_rows.clone(), self.shuffled_bytes.clone());
        Box::pin(async move {
            // Ballista's adaptive planner stays off: stages run as the
            // coordinator split them (the scheduler may still choose join
            // sides and distribution per stage from the sizes of earlier
            // stages' outputs; that changes where work runs, not results).
            let session_config = context
                .session_config()
                .clone()
                .upgrade_for_ballista()
                .with_ballista_adaptive_query_planner(false);
            let max_message_size = session_config.ballista_config().grpc_client_max_message_size();
            let settings = session_config
                .options()
                .entries()
                .into_iter()
                .map(|entry| KeyValuePair {
                    key: entry.key,
                    value: entry.value,
                })
                .collect();
            let output_partitions = plan.properties().output_partitioning().partition_count();
            let mut bytes = Vec::new();
            PhysicalPlanNode::try_from_physical_plan(plan, codec.as_ref())?.try_encode(&mut bytes)?;
            let (batches, shuffled) = crate::client::run_plan(
                &url,
                bytes,
                context.session_id(),
                settings,
                max_message_size,
                output_partitions,
            )
            .await?;
            rows.fetch_add(shuffled.rows, Ordering::Relaxed);
            bytes_total.fetch_add(shuffled.bytes, Ordering::Relaxed);
            tracing::debug!(rows = shuffled.rows, bytes = shuffled.bytes, "cluster job shuffled");
            Ok(batches)
        })
    }
}
