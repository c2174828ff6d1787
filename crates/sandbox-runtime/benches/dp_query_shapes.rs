//! Benchmark suite: the query shapes analysts run, each as the plain query
//! on DataFusion and as a DP job in-process (check, charge, bounding in the
//! engine, noise, release), printed side by side with their ratio; then the
//! first shape as a whole `sandbox sql` process when the release CLI binary
//! is built.
//!
//! ```text
//! cargo bench -p sandbox-runtime --bench dp_query_shapes
//! SANDBOX_BENCH_ROWS=100000000 cargo bench -p sandbox-runtime --bench dp_query_shapes   # 100M utility rows
//! SANDBOX_WASM_GUESTS=<dir with risk_score.wasm>   # adds the shape with a WebAssembly UDF
//! SANDBOX_BIN=<path to a release `sandbox` binary>  # default: target/release/sandbox
//! SANDBOX_BENCH_ONLY=<text>   # only the shapes whose label contains it (profiling)
//! SANDBOX_BENCH_SQL=<query>    # only this query, as plain and as DP job (profiling)
//! SANDBOX_BENCH_PLAIN_DEADLINE=<seconds>   # per plain run (default 600); a plain query past it is reported, its DP job still timed
//! ```
//!
//! Times are the best of three runs after one warm-up; the warm-up's DP
//! time is printed too (`first DP s`). The catalog's row bounds are
//! verified before the shapes, as registration does, and its time printed. The
//! peak resident memory of the bench process is printed at the end. Jobs
//! get a 6 GiB memory pool (the default is 512 MiB) and a 30-minute
//! deadline; a shape that fails is reported and the suite goes on. The
//! whole-process figure runs with the binary's defaults.

use sandbox_datagen::{GenerateOptions, Scale};
use sandbox_governance::Grant;
use sandbox_runtime::{DataDir, Sandbox, SqlJobOptions};
use sandbox_sql::datafusion::physical_plan::collect;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// (label, SQL). The fusion queries read several datasets.
const SHAPES: &[(&str, &str)] = &[
    (
        "GROUP BY public key: COUNT, AVG",
        "SELECT month, COUNT(*) AS n, AVG(electricity_kwh) AS kwh FROM gov.utility_usage GROUP BY month",
    ),
    (
        "GROUP BY public key: AVG, VARIANCE",
        "SELECT month, AVG(electricity_kwh) AS kwh, VARIANCE(electricity_kwh) AS var FROM gov.utility_usage GROUP BY month",
    ),
    (
        "COUNT(DISTINCT unit)",
        "SELECT month, COUNT(DISTINCT credit_code) AS firms FROM gov.utility_usage GROUP BY month",
    ),
    (
        "high cardinality, partition selection",
        "SELECT age, diagnosis_chapter, COUNT(*) AS visits, AVG(cost) AS cost FROM health.clinic_visits GROUP BY age, diagnosis_chapter",
    ),
    (
        "two-table fusion",
        "SELECT l.district, l.industry, AVG(u.electricity_kwh) AS kwh, COUNT(*) AS n \
         FROM gov.utility_usage u JOIN gov.legal_entities l ON u.credit_code = l.credit_code \
         GROUP BY l.district, l.industry",
    ),
    (
        "three-table fusion",
        "SELECT l.district, b.term_months, SUM(b.amount) AS lent, AVG(u.electricity_kwh) AS kwh \
         FROM bank.loans b JOIN gov.legal_entities l ON b.credit_code = l.credit_code \
         JOIN gov.utility_usage u ON u.credit_code = b.credit_code \
         GROUP BY l.district, b.term_months",
    ),
    (
        "three-table fusion with dominance (tax)",
        "SELECT l.district, t.year, SUM(t.tax_paid) AS tax \
         FROM gov.tax_payments t JOIN gov.legal_entities l ON t.credit_code = l.credit_code \
         JOIN gov.utility_usage u ON u.credit_code = t.credit_code AND u.month = '2024-12' \
         GROUP BY l.district, t.year",
    ),
];

const UDF_SHAPE: (&str, &str) = (
    "WebAssembly UDF (risk_score)",
    "SELECT month, AVG(risk_score(electricity_kwh, gas_m3)) AS risk FROM gov.utility_usage GROUP BY month",
);

const DATASETS: &[&str] = &[
    "gov.legal_entities",
    "gov.utility_usage",
    "gov.tax_payments",
    "bank.loans",
    "health.clinic_visits",
];

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BenchResult<()> {
    if std::env::var_os("SANDBOX_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("SANDBOX_LOG"))
            .init();
    }
    let rows: u64 = std::env::var("SANDBOX_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let scale = Scale::with_entities(rows.div_ceil(24) as usize);
    let tmp = tempfile::tempdir()?;
    let dir = DataDir::open(tmp.path().join("data"))?;
    let t = Instant::now();
    let report = sandbox_datagen::generate(&GenerateOptions {
        seed: 7,
        scale,
        out_dir: dir.tables_dir(),
        rows_per_file: 1_000_000,
        only: Some(DATASETS.iter().map(|d| d.to_string()).collect()),
    })?;
    for table in &report.tables {
        println!("generated {:>11} rows of {}", table.rows, table.dataset);
    }
    println!("generation took {:.1} s", t.elapsed().as_secs_f64());

    let data_root = dir.root().to_path_buf();
    // The per-(unit, group) stage of a 10M-row table holds ~10M groups: more
    // than the default 512 MiB job pool. The bench gives jobs 6 GiB and
    // prints the process's peak at the end.
    // The deadline is raised too (the slowest shapes at 100M rows).
    let limits = sandbox_sql::EngineLimits {
        memory_bytes: 6 << 30,
        deadline: std::time::Duration::from_secs(1800),
        ..Default::default()
    };
    let sandbox = Sandbox::open(dir)?.with_limits(limits);
    let plain_deadline = std::time::Duration::from_secs(
        std::env::var("SANDBOX_BENCH_PLAIN_DEADLINE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600),
    );
    // One grant per shape: a grant's budget on a dataset is capped by the
    // policy's `epsilon_budget` (10), which four runs of several shapes on
    // one table would exceed.
    let grant = |name: &str| -> BenchResult<()> {
        let budgets = DATASETS
            .iter()
            .map(|d| Ok((d.parse()?, 1e6)))
            .collect::<BenchResult<Vec<_>>>()?;
        sandbox.store().upsert_grant(&Grant::new(name, name, budgets))?;
        Ok(())
    };
    grant("bench")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The catalog's row bounds are verified when data is registered
    // (`sandbox dataset register`), not by the first job: here, once, before
    // anything is timed.
    let t = Instant::now();
    for dataset in DATASETS {
        let verified = runtime.block_on(sandbox.verify_declared_row_bounds(&dataset.parse()?))?;
        if !verified.violated.is_empty() {
            return Err(format!(
                "{dataset}: declarations violated by the generated data: {:?}",
                verified.violated
            )
            .into());
        }
    }
    println!(
        "verifying the catalog's row bounds (at registration) took {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let functions = match std::env::var("SANDBOX_WASM_GUESTS") {
        Ok(dir) => {
            let bytes = std::fs::read(Path::new(&dir).join("risk_score.wasm"))?;
            Some(sandbox.load_wasm(&bytes)?.row_functions())
        }
        Err(_) => None,
    };
    let mut shapes: Vec<(&str, &str)> = SHAPES.to_vec();
    if functions.is_some() {
        shapes.push(UDF_SHAPE);
    }
    // For profiling one shape: `SANDBOX_BENCH_ONLY=<text in its label>`.
    if let Ok(only) = std::env::var("SANDBOX_BENCH_ONLY") {
        shapes.retain(|(label, _)| label.contains(only.as_str()));
    }
    // For profiling a query of one's own: `SANDBOX_BENCH_SQL=<query>`.
    let own_sql = std::env::var("SANDBOX_BENCH_SQL")
        .ok()
        .map(|q| &*Box::leak(q.into_boxed_str()));
    if let Some(sql) = own_sql {
        shapes = vec![("SANDBOX_BENCH_SQL", sql)];
    }

    println!();
    println!(
        "{:<42} {:>10} {:>10} {:>7} {:>12}",
        "shape", "plain s", "DP job s", "ratio", "first DP s"
    );
    let mut table = Vec::new();
    for (i, (label, sql)) in shapes.into_iter().enumerate() {
        let name = format!("bench{i}");
        grant(&name)?;
        // Only the UDF shape registers the module: a job with functions is
        // a WebAssembly job, which some datasets' policies do not allow.
        let job_functions = if sql == UDF_SHAPE.1 {
            functions.clone().unwrap_or_default()
        } else {
            Vec::new()
        };
        let plain = best_of_three(|| {
            let mut session = runtime.block_on(sandbox.session_for_grant(&name))?;
            session.register_row_functions(job_functions.clone())?;
            runtime.block_on(async {
                let state = session.state();
                let plan = state.create_logical_plan(sql).await?;
                let physical = state.create_physical_plan(&plan).await?;
                // The plain query has no job deadline of its own: at 100M
                // rows `COUNT(DISTINCT code) … GROUP BY month` spills past
                // the pool and sorts for more than 25 minutes.
                tokio::time::timeout(plain_deadline, collect(physical.clone(), state.task_ctx()))
                    .await
                    .map_err(|_| {
                        sandbox_sql::datafusion::error::DataFusionError::Execution(format!(
                            "no answer within {} s (SANDBOX_BENCH_PLAIN_DEADLINE)",
                            plain_deadline.as_secs()
                        ))
                    })??;
                // The plain plan's operators, to set beside the DP plan's
                // (`SANDBOX_LOG=sandbox_sql::partials=trace,dp_query_shapes=trace`).
                tracing::trace!(
                    plan = %sandbox_sql::datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(physical.as_ref()).indent(true),
                    "plain plan with its metrics"
                );
                Ok::<(), sandbox_sql::datafusion::error::DataFusionError>(())
            })?;
            Ok(())
        });
        let dp = best_of_three(|| {
            runtime.block_on(sandbox.run_sql_with_functions(
                &name,
                sql,
                &SqlJobOptions::default(),
                job_functions.clone(),
            ))?;
            Ok(())
        });
        // A shape that fails (its deadline or memory pool at 100M rows) is
        // reported and the suite goes on.
        let (plain, dp) = match (plain, dp) {
            (Ok(plain), Ok(dp)) => (plain, dp),
            (Err(e), Ok(dp)) => {
                println!(
                    "{label:<42} {:>10} {:>10.3} {:>7} {:>12.3}   (plain: {e})",
                    "-", dp.1, "-", dp.0
                );
                continue;
            }
            (plain, dp) => {
                let why = |r: BenchResult<(f64, f64)>| r.err().map(|e| e.to_string()).unwrap_or_else(|| "ok".into());
                println!("{label:<42} failed: plain {}; DP job {}", why(plain), why(dp));
                continue;
            }
        };
        println!(
            "{label:<42} {:>10.3} {:>10.3} {:>6.2}x {:>12.3}",
            plain.1,
            dp.1,
            dp.1 / plain.1,
            dp.0
        );
        table.push((label, plain.1, dp.1));
    }

    let binary = std::env::var_os("SANDBOX_BIN")
        .map(PathBuf::from)
        .or_else(release_binary);
    match binary {
        Some(bin) if bin.exists() => {
            let (label, sql) = SHAPES[0];
            let whole = best_of_three(|| {
                let out = std::process::Command::new(&bin)
                    .arg("--data-dir")
                    .arg(&data_root)
                    .args(["sql", "--grant", "bench", sql])
                    .output()?;
                if !out.status.success() {
                    return Err(format!("sandbox sql failed: {}", String::from_utf8_lossy(&out.stderr)).into());
                }
                Ok(())
            })?
            .1;
            println!("{:<42} {:>10} {whole:>10.3}   (whole `sandbox sql` process)", label, "");
        }
        _ => {
            println!("(whole-process figure skipped: build `cargo build --release -p sandbox-cli` or set SANDBOX_BIN)")
        }
    }
    if let Some(peak) = peak_resident_bytes() {
        println!(
            "peak resident memory of the bench process: {:.0} MiB",
            peak as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}

/// The first run and the best of three timed runs after it, in seconds.
fn best_of_three(mut run: impl FnMut() -> BenchResult<()>) -> BenchResult<(f64, f64)> {
    let t = Instant::now();
    run()?;
    let first = t.elapsed().as_secs_f64();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        run()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((first, best))
}

/// `target/release/sandbox` beside this bench's `target/release/deps/`.
fn release_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.join("sandbox"))
}

/// VmHWM from /proc (Linux), in bytes.
fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
