//! Benchmark: a DP grouped aggregate over a join of ~10M utility rows with
//! the legal-entities table, against the same plain query on DataFusion,
//! in one run. Prints both times and their ratio (goal: at most 1.5×).
//!
//! `cargo bench -p sandbox-runtime --bench sql_dp_vs_plain`
//! (set `SANDBOX_BENCH_ENTITIES` for a smaller run).

use sandbox_datagen::{GenerateOptions, Scale};
use sandbox_governance::Grant;
use sandbox_runtime::{DataDir, Sandbox, SqlJobOptions};
use sandbox_sql::datafusion::physical_plan::collect;
use std::time::{Duration, Instant};

const SQL: &str = "SELECT l.district, l.industry, AVG(u.electricity_kwh) AS kwh, COUNT(*) AS n
    FROM gov.utility_usage u JOIN gov.legal_entities l ON u.credit_code = l.credit_code
    GROUP BY l.district, l.industry";

fn best(times: &[Duration]) -> f64 {
    times.iter().map(|d| d.as_secs_f64()).fold(f64::INFINITY, f64::min)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("SANDBOX_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("SANDBOX_LOG"))
            .init();
    }
    let mut scale = Scale::bench_10m();
    if let Some(n) = std::env::var("SANDBOX_BENCH_ENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        scale.entities = n;
    }
    let tmp = tempfile::tempdir()?;
    let dir = DataDir::open(tmp.path().join("data"))?;
    let t = Instant::now();
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
    println!("generated {rows} utility rows in {:.1} s", t.elapsed().as_secs_f64());

    let sandbox = Sandbox::open(dir)?;
    let budgets = vec![
        ("gov.legal_entities".parse()?, 1e9),
        ("gov.utility_usage".parse()?, 1e9),
    ];
    sandbox.store().upsert_grant(&Grant::new("bench", "bench", budgets))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    let mut plain = Vec::new();
    let mut dp = Vec::new();
    for _ in 0..3 {
        let session = runtime.block_on(sandbox.session_for_grant("bench"))?;
        let t = Instant::now();
        runtime.block_on(async {
            let state = session.state();
            let plan = state.create_logical_plan(SQL).await?;
            let physical = state.create_physical_plan(&plan).await?;
            collect(physical, state.task_ctx()).await.map(|_| ())
        })?;
        plain.push(t.elapsed());
        let t = Instant::now();
        runtime.block_on(sandbox.run_sql("bench", SQL, &SqlJobOptions::default()))?;
        dp.push(t.elapsed());
    }
    let (p, d) = (best(&plain), best(&dp));
    println!(
        "plain DataFusion: {p:.3} s   DP job (check, charge, partials, bound, noise): {d:.3} s   ratio {:.2}x (best of 3)",
        d / p
    );
    Ok(())
}
