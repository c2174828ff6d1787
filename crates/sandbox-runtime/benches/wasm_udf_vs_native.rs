//! Benchmark: the example `risk_score` WebAssembly UDF over 10M rows against
//! the same logic as a native Rust function in the same SQL aggregate, in
//! one run. The WebAssembly function runs as jobs run it: its per-row
//! export is proven stateless at admission, so each batch gets one instance
//! and each row one call. The native baseline is a plain DataFusion UDF
//! over whole batches. Prints both times and their ratio (goal: at most
//! 2×), the query without a function, the native function through the job
//! function adapter (the adapter's cost alone), the fallback for guests
//! that are not provably stateless (a fresh instance per row; one run), and
//! the native function with the C library's math; checks that every row
//! scores the same bits natively and in WebAssembly.
//! `SANDBOX_BENCH_ENTITIES` sets the scale (24 rows per entity; default
//! 416 667, just over 10M rows).
//!
//! Needs the guest: `scripts/build-guests.sh`, then
//! `SANDBOX_WASM_GUESTS=~/.cache/sandbox-target/wasm-guests cargo bench -p sandbox-runtime --bench wasm_udf_vs_native`.

use sandbox_runtime::{DataDir, Sandbox};
use sandbox_sql::datafusion::arrow::array::{Array, Float64Array, Int64Array, RecordBatch};
use sandbox_sql::datafusion::arrow::datatypes::DataType;
use sandbox_sql::datafusion::common::Result as DfResult;
use sandbox_sql::datafusion::execution::FunctionRegistry;
use sandbox_sql::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use sandbox_sql::datafusion::physical_plan::collect;
use sandbox_sql::guest::RowFunction;
use std::sync::Arc;
use std::time::Instant;

/// The guest's formula (examples/wasm/risk-score), natively: the same Rust
/// code, with the same portable math (`libm`), so the same bits.
#[derive(Debug)]
struct NativeRisk {
    name: &'static str,
    log1p: fn(f64) -> f64,
    exp: fn(f64) -> f64,
}

impl NativeRisk {
    /// Same source, same math library as the guest.
    fn portable() -> Self {
        NativeRisk {
            name: "native_risk",
            log1p: libm::log1p,
            exp: libm::exp,
        }
    }

    /// The platform C library's `log1p`/`exp` (what `f64::ln_1p`/`f64::exp`
    /// call natively): faster, but different last bits.
    fn platform() -> Self {
        NativeRisk {
            name: "native_risk_libc",
            log1p: f64::ln_1p,
            exp: f64::exp,
        }
    }

    fn score(&self, kwh: f64, tax: f64) -> f64 {
        let z = -2.7 - 0.6 * ((self.log1p)(kwh.max(0.0)) - 7.5) - 0.5 * ((self.log1p)(tax.max(0.0)) - 3.5);
        if kwh.is_nan() || tax.is_nan() {
            return f64::NAN;
        }
        1.0 / (1.0 + (self.exp)(-z))
    }
}

impl RowFunction for NativeRisk {
    fn name(&self) -> &str {
        self.name
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
        Ok(a.values()
            .iter()
            .zip(b.values())
            .map(|(&k, &t)| self.score(k, t))
            .collect())
    }
    fn rows_are_independent(&self) -> bool {
        true
    }
}

/// A job function evaluated as if its per-row export were not provably
/// stateless: a fresh instance per row (the fallback path).
#[derive(Debug)]
struct InstancePerRow(Arc<dyn RowFunction>);

impl RowFunction for InstancePerRow {
    fn name(&self) -> &str {
        "risk_score_instance_per_row"
    }
    fn arity(&self) -> usize {
        self.0.arity()
    }
    fn bounds(&self) -> (f64, f64) {
        self.0.bounds()
    }
    fn identity(&self) -> &str {
        self.0.identity()
    }
    fn evaluate(&self, args: &RecordBatch) -> Result<Vec<f64>, String> {
        self.0.evaluate(args)
    }
}

/// The native function as a plain DataFusion UDF over whole batches: what
/// one would write without a sandbox (the baseline).
#[derive(Debug)]
struct Plain {
    risk: NativeRisk,
    signature: Signature,
}

impl PartialEq for Plain {
    fn eq(&self, other: &Self) -> bool {
        self.risk.name == other.risk.name
    }
}
impl Eq for Plain {}
impl std::hash::Hash for Plain {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.risk.name.hash(state);
    }
}

impl ScalarUDFImpl for Plain {
    fn name(&self) -> &str {
        "native_plain"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (Some(a), Some(b)) = (
            arrays[0].as_any().downcast_ref::<Float64Array>(),
            arrays[1].as_any().downcast_ref::<Float64Array>(),
        ) else {
            return Err(sandbox_sql::datafusion::common::DataFusionError::Internal(
                "float64".into(),
            ));
        };
        let out: Float64Array = (0..n)
            .map(|i| {
                let v = self.risk.score(a.value(i), b.value(i));
                (!(a.is_null(i) || b.is_null(i) || v.is_nan())).then(|| v.clamp(0.0, 1.0))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
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
    let wasm_functions = job.row_functions();
    let risk = wasm_functions
        .iter()
        .find(|f| f.name() == "risk_score")
        .ok_or("the guest has no risk_score")?
        .clone();
    if !risk.rows_are_independent() {
        return Err("risk_score's per-row export is not provably stateless; rebuild the guest".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut session = runtime.block_on(sandbox.session_for_grant(sandbox_runtime::sandbox::DEMO_GRANT))?;
    session.register_row_functions(wasm_functions)?;
    session.register_row_functions(vec![
        Arc::new(NativeRisk::portable()),
        Arc::new(NativeRisk::platform()),
        Arc::new(InstancePerRow(risk)),
    ])?;
    let plain = ScalarUDF::new_from_impl(Plain {
        risk: NativeRisk::portable(),
        signature: Signature::exact(vec![DataType::Float64; 2], Volatility::Volatile),
    });
    let mut state = session.state().clone();
    state.register_udf(Arc::new(plain))?;
    // Plans straight on the session state: no checker, no noise, so the
    // exact comparison below is possible; job functions run as in jobs.
    let run = |sql: &str| -> Result<Vec<RecordBatch>, Box<dyn std::error::Error>> {
        runtime.block_on(async {
            let plan = state.create_logical_plan(sql).await?;
            let physical = state.create_physical_plan(&plan).await?;
            Ok(collect(physical, state.task_ctx()).await?)
        })
    };
    let time_runs = |expr: &str, runs: usize| -> Result<f64, Box<dyn std::error::Error>> {
        let sql = format!("SELECT month, AVG({expr}) FROM gov.utility_usage GROUP BY month");
        let mut best = f64::INFINITY;
        for _ in 0..runs {
            let t = Instant::now();
            run(&sql)?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let time = |expr: &str| time_runs(expr, 3);
    // Same logic means same results: every row's score must match bit for bit.
    let differing = run("SELECT COUNT(*) FROM gov.utility_usage \
         WHERE risk_score(electricity_kwh, gas_m3) <> native_plain(electricity_kwh, gas_m3)")?;
    let differing = differing
        .first()
        .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>().map(|a| a.value(0)))
        .ok_or("no count")?;
    if differing != 0 {
        return Err(format!("{differing} rows score differently in WebAssembly and natively").into());
    }
    let rows = entities * 24;
    // The same query without a function: the scan and aggregation that
    // both UDF runs share, so the functions' own cost can be read off.
    let base = time("electricity_kwh + gas_m3")?;
    let native = time("native_plain(electricity_kwh, gas_m3)")?;
    let adapter = time("native_risk(electricity_kwh, gas_m3)")?;
    let libc = time("native_risk_libc(electricity_kwh, gas_m3)")?;
    let wasm = time("risk_score(electricity_kwh, gas_m3)")?;
    println!(
        "{rows} rows: native UDF {native:.3} s   WebAssembly UDF as jobs run it (stateless row export: one instance per batch, one call per row) {wasm:.3} s   ratio {:.2}x (best of 3)",
        wasm / native
    );
    println!(
        "  query without a function {base:.3} s: the functions add native {:.3} s, WebAssembly {:.3} s ({:.1}x)",
        native - base,
        wasm - base,
        (wasm - base) / (native - base).max(1e-9)
    );
    println!(
        "  native through the job-function adapter {adapter:.3} s ({:.2}x the plain UDF); WebAssembly {:.2}x that",
        adapter / native,
        wasm / adapter
    );
    println!(
        "  every row scores the same bits in both; with the C library's log1p/exp instead of libm, natively {libc:.3} s"
    );
    // The fallback for guests whose row export is absent or not provably
    // stateless: one instance per row. Slow; one run, on the same rows.
    let per_row = time_runs("risk_score_instance_per_row(electricity_kwh, gas_m3)", 1)?;
    println!(
        "  fallback, a fresh instance per row (guests not provably stateless) {per_row:.3} s   ratio {:.1}x (one run)",
        per_row / native
    );
    Ok(())
}
