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
    if engine.compilations() != 1 {
        return Err(format!("expected one compilation, saw {}", engine.compilations()).into());
    }
    Ok(())
}
