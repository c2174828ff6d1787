//! `sandbox cluster`: the processes of a Ballista cluster for the
//! distributed mode (`--ballista`), built with the sandbox's plan codec.

use crate::commands::{CliError, fail};

/// `sandbox cluster scheduler|executor`: runs until the process is stopped.
pub async fn run(command: crate::ClusterCommand) -> Result<(), CliError> {
    let failed = |e: sandbox_distributed::DistributedError| fail(e.to_string());
    match command {
        crate::ClusterCommand::Scheduler { bind } => {
            let listener = tokio::net::TcpListener::bind(&bind)
                .await
                .map_err(|e| fail(format!("cannot listen on {bind}: {e}")))?;
            let address = listener.local_addr().map_err(|e| fail(e.to_string()))?;
            println!("scheduler listening on {address}");
            sandbox_distributed::cluster::run_scheduler(listener)
                .await
                .map_err(failed)
        }
        crate::ClusterCommand::Executor {
            scheduler,
            host,
            flight_port,
            grpc_port,
            work_dir,
            slots,
            memory_mib,
        } => {
            println!("executor on {host}:{flight_port}, polling the scheduler at {scheduler}");
            sandbox_distributed::cluster::run_executor(sandbox_distributed::cluster::ExecutorOptions {
                scheduler,
                bind_host: host,
                flight_port,
                grpc_port,
                work_dir: work_dir.map(|d| d.display().to_string()),
                vcores: slots,
                memory_pool_bytes: memory_mib.map(|m| m.saturating_mul(1 << 20)),
            })
            .await
            .map_err(failed)
        }
    }
}
