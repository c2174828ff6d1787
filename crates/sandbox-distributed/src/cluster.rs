//! The cluster's processes, built from the Ballista crates with the
//! sandbox's codec: `sandbox cluster scheduler` and `sandbox cluster
//! executor` run these.
//!
//! The scheduler and executors are trusted components: they read the raw
//! data. Their ports must be reachable only from the coordinator and each
//! other (Ballista has no authentication of its own; see
//! docs/distributed.md).

use crate::DistributedError;
use crate::codec::SandboxCodec;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Seconds between an executor's heartbeats to the scheduler.
pub const EXECUTOR_HEARTBEAT_SECONDS: u64 = 5;
/// Seconds without a heartbeat after which the scheduler counts an
/// executor lost and reschedules its tasks.
pub const EXECUTOR_TIMEOUT_SECONDS: u64 = 20;

fn cluster_error(e: impl std::fmt::Display) -> DistributedError {
    DistributedError::Cluster(e.to_string())
}

/// Runs a scheduler on `listener` until the process ends. Errors: the
/// scheduler's state cannot be created or its service stops.
pub async fn run_scheduler(listener: TcpListener) -> Result<(), DistributedError> {
    let address = listener.local_addr().map_err(cluster_error)?;
    let mut config = SchedulerConfig::default()
        .with_hostname(address.ip().to_string())
        .with_port(address.port())
        .with_scheduler_policy(TaskSchedulingPolicy::PushStaged);
    // Push scheduling: the scheduler hands tasks to executors' gRPC
    // services, which is also how it cancels running tasks (in pull mode
    // an executor runs no service and a cancelled job's running tasks ran
    // on, red team 2026-12-01).
    // Executors beat every EXECUTOR_HEARTBEAT; one silent for four beats is
    // lost and its tasks go to the others (Ballista's default, 180 s,
    // would outlast a job's deadline).
    config.executor_timeout_seconds = EXECUTOR_TIMEOUT_SECONDS;
    config.expire_dead_executor_interval_seconds = EXECUTOR_HEARTBEAT_SECONDS;
    config.no_executors_grace_period_seconds = EXECUTOR_TIMEOUT_SECONDS;
    config.override_physical_codec = Some(Arc::new(SandboxCodec::default()));
    // Plans name tables as file:// or s3:// URLs; the scheduler resolves
    // them through the same stores as the coordinator and executors.
    config.override_session_builder = Some(Arc::new(|config| {
        let state = ballista_core::utils::default_session_builder(config)?;
        Ok(SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(table_store_runtime(None)?)
            .build())
    }));
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(cluster_error)?;
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
        .await
        .map_err(cluster_error)?;
    tracing::info!(%address, "sandbox cluster scheduler listening");
    start_grpc_service_with_listener(listener, scheduler)
        .await
        .map_err(cluster_error)
}

/// A runtime whose object stores are the sandbox's table stores
/// (`file://`, and `s3://` from this process's environment), spilling to
/// `temp_dir` where given.
fn table_store_runtime(temp_dir: Option<String>) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let mut builder = RuntimeEnvBuilder::new().with_object_store_registry(sandbox_sql::storage::table_stores());
    if let Some(dir) = temp_dir {
        builder = builder.with_temp_file_path(dir);
    }
    builder.build_arc()
}

/// Where an executor listens and which scheduler it polls.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `host:port`.
    pub scheduler: String,
    /// The address the executor binds and advertises (loopback in tests).
    pub bind_host: String,
    /// Arrow Flight port (shuffle reads by other executors and the client).
    pub flight_port: u16,
    /// gRPC port of the executor's own service.
    pub grpc_port: u16,
    /// Directory for shuffle files (created if missing); `None`: a
    /// temporary directory.
    pub work_dir: Option<String>,
    /// Task slots (defaults to the machine's cores).
    pub vcores: Option<usize>,
    /// Memory pool in bytes shared by the executor's tasks; `None`:
    /// Ballista's default share of the host's memory.
    pub memory_pool_bytes: Option<u64>,
}

/// Runs an executor until the process ends (or it is told to stop).
/// Errors: a malformed scheduler address, a port in use, or the executor
/// failing.
pub async fn run_executor(options: ExecutorOptions) -> Result<(), DistributedError> {
    let (host, port) = crate::host_and_port(&options.scheduler)?;
    let mut config = ExecutorProcessConfig {
        bind_host: options.bind_host.clone(),
        external_host: Some(options.bind_host.clone()),
        port: options.flight_port,
        grpc_port: options.grpc_port,
        scheduler_host: host,
        scheduler_port: port,
        scheduler_connect_timeout_seconds: 30,
        task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
        work_dir: options.work_dir.clone(),
        memory_pool_size: options.memory_pool_bytes,
        executor_heartbeat_interval_seconds: EXECUTOR_HEARTBEAT_SECONDS,
        // Shuffle files hold raw partials: the scheduler has a finished
        // job's files removed after 5 minutes; this sweep removes any left
        // behind (a job whose scheduler died) after an hour.
        job_data_ttl_seconds: 3600,
        job_data_clean_up_interval_seconds: 600,
        override_physical_codec: Some(Arc::new(SandboxCodec::default())),
        // Tables at s3:// URLs are read with this executor's own AWS_*
        // settings (`sandbox_sql::storage`): no credential is in a plan.
        override_runtime_producer: Some({
            let work_dir = options.work_dir.clone();
            Arc::new(move |_| table_store_runtime(work_dir.clone()))
        }),
        ..Default::default()
    };
    if let Some(vcores) = options.vcores {
        config.vcores = vcores.max(1);
    }
    tracing::info!(scheduler = %options.scheduler, flight_port = options.flight_port, "sandbox cluster executor starting");
    start_executor_process(Arc::new(config)).await.map_err(cluster_error)
}
