//! Test against guests built with the Rust SDK (`examples/wasm`). Runs when
//! `SANDBOX_WASM_GUESTS` names their directory (the test command builds
//! them and sets it), and says it skipped otherwise:
//!
//! ```text
//! SANDBOX_WASM_GUESTS=$CARGO_TARGET_DIR/wasm-guests \
//!   cargo test -p sandbox-wasm --test real_guests -- --nocapture
//! ```

use arrow::array::Array;
use arrow::array::{ArrayRef, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use sandbox_wasm::{RowExport, RuntimeConfig, SandboxEngine};
use std::sync::Arc;
use std::time::Instant;

fn batch(columns: usize, rows: usize) -> RecordBatch {
    let fields: Vec<Field> = (0..columns)
        .map(|i| Field::new(format!("arg{i}"), DataType::Float64, true))
        .collect();
    let arrays: Vec<ArrayRef> = (0..columns)
        .map(|c| Arc::new(Float64Array::from_iter_values((0..rows).map(|r| (r * (c + 1)) as f64))) as ArrayRef)
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("batch")
}

#[test]
fn admit_and_call_sdk_guests() {
    let Ok(dir) = std::env::var("SANDBOX_WASM_GUESTS") else {
        eprintln!("skipped: set SANDBOX_WASM_GUESTS to a directory of guests built for wasm32-unknown-unknown");
        return;
    };
    let engine = SandboxEngine::new(RuntimeConfig::builder().build().expect("config")).expect("engine");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("readable directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        // The `mistakes` guest fails on purpose (tests/integration/wasm_debugging.rs).
        if path.file_stem().is_some_and(|s| s == "mistakes") {
            continue;
        }
        seen += 1;
        let bytes = std::fs::read(&path).expect("readable module");
        let started = Instant::now();
        let module = engine.admit(&bytes).expect("admitted");
        println!(
            "{}: {} bytes admitted in {:?} (sha256 {})",
            path.display(),
            bytes.len(),
            started.elapsed(),
            module.digest_hex()
        );
        let started = Instant::now();
        engine.admit(&bytes).expect("cache hit");
        println!("  cache hit in {:?}", started.elapsed());
        for udf in &module.manifest().udfs {
            let input = batch(udf.args.len(), 8192);
            let started = Instant::now();
            let out = engine.call_udf(&module, &udf.name, &input).expect("UDF runs");
            println!("  udf {} on 8192 rows in {:?}", udf.name, started.elapsed());
            assert_eq!(out.len(), 8192);
            // The SDK's per-row export is proven stateless and gives the
            // batch export's values bit for bit (nulls as NaN both ways).
            assert_eq!(
                module.row_export(&udf.name),
                &RowExport::Stateless,
                "an SDK-built UDF must be provably stateless"
            );
            let started = Instant::now();
            let rows = engine.call_udf_rows(&module, &udf.name, &input).expect("rows run");
            println!(
                "  udf {} row by row in one instance, 8192 rows in {:?}",
                udf.name,
                started.elapsed()
            );
            assert_eq!(rows.len(), out.len());
            for (i, row) in rows.iter().enumerate() {
                let row = row.expect("no row fails");
                let batch_value = if out.is_null(i) { f64::NAN } else { out.value(i) };
                assert_eq!(row.to_bits(), batch_value.to_bits(), "row {i}");
            }
        }
        if let Some(analysis) = &module.manifest().analysis {
            let input = batch(3, 1000);
            let started = Instant::now();
            let out = engine.call_analyze(&module, &input).map_err(|e| e.to_string());
            println!(
                "  analysis {} on 1000 rows in {:?}: {out:?}",
                analysis.name,
                started.elapsed()
            );
        }
    }
    assert!(seen > 0, "no .wasm files in {dir}");
}
