//! Benchmark: the example `risk_score` WebAssembly UDF over 10M rows against
//! the same logic as a native Rust function, both as DataFusion scalar
//! functions in the same SQL aggregate, in one run. Prints both times and
//! their ratio (goal: at most 2×).
//!
//! Needs the guest: `scripts/build-guests.sh`, then
//! `SANDBOX_WASM_GUESTS=~/.cache/sandbox-target/wasm-guests cargo bench -p sandbox-runtime --bench wasm_udf_vs_native`.

use sandbox_runtime::{DataDir, Sandbox};
use sandbox_sql::datafusion::arrow::array::{Array, Float64Array, RecordBatch};
use sandbox_sql::datafusion::physical_plan::collect;
use sandbox_sql::guest::RowFunction;
use std::sync::Arc;
use std::time::Instant;

/// The guest's formula (examples/wasm/risk-score), natively.
#[derive(Debug)]
struct NativeRisk;

impl RowFunction for NativeRisk {
    fn name(&self) -> &str {
        "native_risk"
    }
    fn arity(&self) -> usize {
        2
    }
    fn bounds(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn identity(&self) -> &str {
        "native"
    }
    fn evaluate(&self, args: &RecordBatch) -> Result<Vec<f64>, String> {
        let a = args.column(0).as_any().downcast_ref::<Float64Array>().ok_or("type")?;
        let b = args.column(1).as_any().downcast_ref::<Float64Array>().ok_or("type")?;
        Ok((0..a.len())
            .map(|i| {
                let (k, t) = (a.value(i), b.value(i));
                let z = -2.7 - 0.6 * (k.max(0.0).ln_1p() - 7.5) - 0.5 * (t.max(0.0).ln_1p() - 3.5);
                1.0 / (1.0 + (-z).exp())
            })
            .collect())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let guests =
        std::env::var("SANDBOX_WASM_GUESTS").map_err(|_| "set SANDBOX_WASM_GUESTS to the built guests' directory")?;
    let bytes = std::fs::read(std::path::Path::new(&guests).join("risk_score.wasm"))?;
    let tmp = tempfile::tempdir()?;
    let dir = DataDir::open(tmp.path().join("data"))?;
    let entities = std::env::var("SANDBOX_BENCH_ENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(416_667);
    let mut opts =
        sandbox_datagen::GenerateOptions::new(11, sandbox_datagen::Scale::with_entities(entities), dir.tables_dir());
    opts.only = Some(vec!["gov.legal_entities".into(), "gov.utility_usage".into()]);
    sandbox_datagen::generate(&opts)?;
    let sandbox = Sandbox::open(dir)?;
    let job = sandbox.load_wasm(&bytes)?;
    let mut session = sandbox.session_for_grant(sandbox_runtime::sandbox::DEMO_GRANT)?;
    session.register_row_functions(job.row_functions())?;
    session.register_row_functions(vec![Arc::new(NativeRisk)])?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let time = |f: &str| -> Result<f64, Box<dyn std::error::Error>> {
        let sql = format!("SELECT month, AVG({f}(electricity_kwh, gas_m3)) FROM gov.utility_usage GROUP BY month");
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            runtime.block_on(async {
                let state = session.state();
                let plan = state.create_logical_plan(&sql).await?;
                let physical = state.create_physical_plan(&plan).await?;
                collect(physical, state.task_ctx()).await.map(|_| ())
            })?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let native = time("native_risk")?;
    let wasm = time("risk_score")?;
    println!(
        "{} rows: native UDF {native:.3} s   WebAssembly UDF {wasm:.3} s   ratio {:.2}x (best of 3, same adapter and plan)",
        entities * 24,
        wasm / native
    );
    Ok(())
}
