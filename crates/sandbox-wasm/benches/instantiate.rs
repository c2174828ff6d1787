//! Instantiation cost with the pooling allocator and a warm module cache.
//!
//! `cargo bench -p sandbox-wasm --bench instantiate` (release; the goal is
//! a mean under 10 µs). Prints the mean and the 50th/99th percentiles over
//! 10 000 instantiations of a small guest, plus a full analysis call for
//! comparison.

use arrow::array::{Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use sandbox_wasm::{RuntimeConfig, SandboxEngine};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ITERATIONS: usize = 10_000;

fn guest() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let manifest =
        r#"{"abi":1,"udfs":[],"analysis":{"name":"bench","outputs":[{"name":"x","lower":0.0,"upper":1.0}]}}"#;
    let wat = format!(
        r#"(module
          (memory (export "memory") 17)
          (global $bump (mut i32) (i32.const 65536))
          (data (i32.const 1024) "{json}")
          (data (i32.const 4096) "\00\00\00\00\00\00\e0\3f")
          (func (export "sandbox_alloc") (param $len i32) (result i32) (local $p i32)
            (local.set $p (global.get $bump))
            (global.set $bump (i32.add (local.get $p) (local.get $len)))
            (local.get $p))
          (func (export "sandbox_dealloc") (param i32 i32))
          (func (export "sandbox_manifest") (result i64)
            (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const {len})))
          (func (export "sandbox_analyze") (param i32 i32) (result i64)
            (i64.or (i64.shl (i64.const 4096) (i64.const 32)) (i64.const 8))))"#,
        json = manifest.replace('"', "\\\""),
        len = manifest.len(),
    );
    Ok(wat::parse_str(&wat)?)
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let total: Duration = samples.iter().sum();
    let mean = total.as_secs_f64() * 1e6 / samples.len() as f64;
    let p50 = samples[samples.len() / 2].as_secs_f64() * 1e6;
    let p99 = samples[samples.len() * 99 / 100].as_secs_f64() * 1e6;
    println!("{label:<40} mean {mean:8.2} µs   p50 {p50:8.2} µs   p99 {p99:8.2} µs");
}

/// With `SANDBOX_WASM_GUESTS` set, the example risk-score UDF on batches
/// of DataFusion's default size: the per-call cost a SQL job pays.
fn udf_calls(engine: &SandboxEngine) -> Result<(), Box<dyn std::error::Error>> {
    let Ok(dir) = std::env::var("SANDBOX_WASM_GUESTS") else {
        println!("(set SANDBOX_WASM_GUESTS to also time the risk_score UDF)");
        return Ok(());
    };
    let module = engine.admit(&std::fs::read(std::path::Path::new(&dir).join("risk_score.wasm"))?)?;
    let rows = 8192;
    let schema = Arc::new(Schema::new(vec![
        Field::new("arg0", DataType::Float64, true),
        Field::new("arg1", DataType::Float64, true),
    ]));
    let kwh: Float64Array = (0..rows).map(|i| Some(1000.0 + i as f64)).collect();
    let tax: Float64Array = (0..rows).map(|i| Some(10.0 + (i % 97) as f64)).collect();
    let batch = RecordBatch::try_new(schema, vec![Arc::new(kwh), Arc::new(tax)])?;
    let iterations = std::env::var("SANDBOX_BENCH_UDF_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let mut calls = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        engine.call_udf(&module, "risk_score", &batch)?;
        calls.push(started.elapsed());
    }
    report(&format!("call_udf risk_score, {rows} rows"), calls);
    // Two threads at once, as DataFusion runs a query's partitions: what
    // the kernel work of resetting memory costs under concurrency.
    let started = Instant::now();
    let per_thread = iterations / 2;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    (0..per_thread).try_for_each(|_| engine.call_udf(&module, "risk_score", &batch).map(|_| ()))
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| "a worker panicked".to_string())?
                .map_err(|e| e.to_string())
        })
    })?;
    println!(
        "{:<40} mean {:8.2} µs per call per thread",
        "call_udf on 2 threads at once",
        started.elapsed().as_secs_f64() * 1e6 / per_thread as f64
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = SandboxEngine::new(RuntimeConfig::builder().build()?)?;
    println!(
        "pooling allocator: {} (pool reservation {} MiB of address space)",
        engine.is_pooled(),
        engine.config().pool_reservation_bytes() >> 20
    );
    let bytes = guest()?;
    let module = engine.admit(&bytes)?;

    // Warm cache: admission of known bytes is a SHA-256 and a map lookup.
    let mut admits = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let started = Instant::now();
        engine.admit(&bytes)?;
        admits.push(started.elapsed());
    }
    report("admit (cache hit)", admits);

    for _ in 0..1_000 {
        engine.check_instantiation(&module)?;
    }
    let mut instantiations = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let started = Instant::now();
        engine.check_instantiation(&module)?;
        instantiations.push(started.elapsed());
    }
    report("instantiate + drop (goal < 10 µs)", instantiations);

    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, false)]));
    let block = RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(vec![0.5; 64]))])?;
    let mut calls = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let started = Instant::now();
        engine.call_analyze(&module, &block)?;
        calls.push(started.elapsed());
    }
    report("call_analyze, 64 rows (IPC in, 8 B out)", calls);
    udf_calls(&engine)?;
    if engine.compilations() > 2 {
        return Err(format!("expected one compilation, saw {}", engine.compilations()).into());
    }
    Ok(())
}
