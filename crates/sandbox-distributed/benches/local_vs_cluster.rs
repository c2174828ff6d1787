//! Benchmark: the DP grouped aggregate over a join of ~10M utility rows
//! with the legal-entities table (the `sql_dp_vs_plain` query), in one
//! run: embedded, then on a loopback Ballista cluster with one executor
//! and with two, and what each cluster job shuffled between its stages
//! (rows written by the shuffle writers, bytes decoded by the readers,
//! from the scheduler's job metrics).
//!
//! `cargo bench -p sandbox-distributed --bench local_vs_cluster`
//! (`SANDBOX_BENCH_ENTITIES` sets a smaller run). The scheduler and
//! executors run in this process on their own threads and runtimes; on a
//! machine of 2 cores they share those cores with each other.

use sandbox_datagen::{GenerateOptions, Scale};
use sandbox_distributed::cluster::{ExecutorOptions, run_executor, run_scheduler};
use sandbox_distributed::{BallistaRunner, Shuffled};
use sandbox_governance::Grant;
use sandbox_runtime::{DataDir, Sandbox, SqlJobOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SQL: &str = "SELECT l.district, l.industry, AVG(u.electricity_kwh) AS kwh, COUNT(*) AS n
    FROM gov.utility_usage u JOIN gov.legal_entities l ON u.credit_code = l.credit_code
    GROUP BY l.district, l.industry";

fn free_port() -> Result<u16, std::io::Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `f` on its own thread with its own runtime (a cluster process).
fn spawn_node<F>(name: &str, f: F) -> Result<(), std::io::Error>
where
    F: FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + 'static,
{
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("node runtime");
        runtime.block_on(f());
    })?;
    Ok(())
}

fn start_executor(scheduler: &str, work: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let flight_port = free_port()?;
    let options = ExecutorOptions {
        scheduler: scheduler.to_string(),
        bind_host: "127.0.0.1".into(),
        flight_port,
        grpc_port: free_port()?,
        work_dir: Some(work.display().to_string()),
        vcores: Some(2),
        memory_pool_bytes: Some(4 << 30),
    };
    spawn_node("executor", move || {
        Box::pin(async move {
            if let Err(e) = run_executor(options).await {
                eprintln!("executor: {e}");
            }
        })
    })?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", flight_port)).is_err() {
        if Instant::now() > deadline {
            return Err("the executor did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn best(times: &[f64]) -> f64 {
    times.iter().copied().fold(f64::INFINITY, f64::min)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut scale = Scale::bench_10m();
    if let Some(n) = std::env::var("SANDBOX_BENCH_ENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        scale.entities = n;
    }
    let tmp = tempfile::tempdir()?;
    let dir = DataDir::open(tmp.path().join("data"))?;
    let report = sandbox_datagen::generate(&GenerateOptions {
        seed: 7,
        scale,
        out_dir: dir.tables_dir(),
        rows_per_file: 1_000_000,
        only: Some(vec!["gov.legal_entities".into(), "gov.utility_usage".into()]),
    })?;
    let rows: u64 = report
        .tables
        .iter()
        .filter(|t| t.dataset == "gov.utility_usage")
        .map(|t| t.rows)
        .sum();
    println!("{rows} utility rows");
    let budgets = vec![
        ("gov.legal_entities".parse()?, 1e9),
        ("gov.utility_usage".parse()?, 1e9),
    ];
    let local = Sandbox::open(dir.clone())?;
    local.store().upsert_grant(&Grant::new("bench", "bench", budgets))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // A warm-up, then best of 3; what the last job shuffled.
    let run =
        |sandbox: &Sandbox, runner: Option<&BallistaRunner>| -> Result<(f64, Shuffled), Box<dyn std::error::Error>> {
            let (mut times, mut shuffled) = (Vec::new(), Shuffled::default());
            for i in 0..4 {
                let before = runner.map(BallistaRunner::shuffled).unwrap_or_default();
                let t = Instant::now();
                // A small ε per job: the policies cap each dataset's total.
                let options = SqlJobOptions {
                    epsilon: Some(0.1),
                    ..Default::default()
                };
                runtime.block_on(sandbox.run_sql("bench", SQL, &options))?;
                if i > 0 {
                    times.push(t.elapsed().as_secs_f64());
                    let after = runner.map(BallistaRunner::shuffled).unwrap_or_default();
                    shuffled = Shuffled {
                        rows: after.rows - before.rows,
                        bytes: after.bytes - before.bytes,
                    };
                }
            }
            Ok((best(&times), shuffled))
        };
    let work = tmp.path().join("shuffle");
    std::fs::create_dir_all(&work)?;
    let (embedded, _) = run(&local, None)?;

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let scheduler = listener.local_addr()?.to_string();
    listener.set_nonblocking(true)?;
    spawn_node("scheduler", move || {
        Box::pin(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    if let Err(e) = run_scheduler(l).await {
                        eprintln!("scheduler: {e}");
                    }
                }
                Err(e) => eprintln!("scheduler: {e}"),
            }
        })
    })?;
    start_executor(&scheduler, &work.join("1"))?;
    let runner = Arc::new(BallistaRunner::new(&scheduler)?);
    let distributed = Sandbox::open(dir)?.with_runner(runner.clone());
    let (one, one_shuffle) = run(&distributed, Some(&runner))?;
    start_executor(&scheduler, &work.join("2"))?;
    let (two, two_shuffle) = run(&distributed, Some(&runner))?;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "DP job, best of 3: embedded {embedded:.3} s | cluster, 1 executor {one:.3} s ({:.2}x), shuffled {} rows, {:.1} MiB | \
         cluster, 2 executors {two:.3} s ({:.2}x), shuffled {} rows, {:.1} MiB",
        one / embedded,
        one_shuffle.rows,
        mib(one_shuffle.bytes),
        two / embedded,
        two_shuffle.rows,
        mib(two_shuffle.bytes)
    );
    Ok(())
}
