//! One process of a test Ballista cluster, built from the crates with the
//! sandbox's codec (as `sandbox cluster` runs them):
//!
//! ```text
//! cluster_node scheduler <bind host:port>
//! cluster_node executor <scheduler host:port> <flight port> <grpc port> <work dir>
//! ```
//!
//! The distributed-mode tests start a scheduler and executors with it and
//! kill one with SIGKILL mid-job.

use sandbox_distributed::cluster::{ExecutorOptions, run_executor, run_scheduler};

fn usage() -> ! {
    eprintln!(
        "usage: cluster_node scheduler <host:port> | executor <scheduler host:port> <flight port> <grpc port> <work dir>"
    );
    std::process::exit(2)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["scheduler", bind] => match tokio::net::TcpListener::bind(bind).await {
            Ok(listener) => run_scheduler(listener).await,
            Err(e) => {
                eprintln!("cannot listen on {bind}: {e}");
                std::process::exit(1)
            }
        },
        ["executor", scheduler, flight, grpc, work_dir] => {
            let (Ok(flight_port), Ok(grpc_port)) = (flight.parse(), grpc.parse()) else {
                usage()
            };
            run_executor(ExecutorOptions {
                scheduler: scheduler.to_string(),
                bind_host: "127.0.0.1".into(),
                flight_port,
                grpc_port,
                work_dir: Some(work_dir.to_string()),
                vcores: Some(2),
                memory_pool_bytes: Some(1 << 30),
            })
            .await
        }
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
