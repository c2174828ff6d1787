//! Per-row exports: which are proven stateless at admission, that one
//! instance then serves a batch with a call per row, and that a guest that
//! keeps state between rows is never given that path.

use super::guests::{Guest, f64_batch, udf_manifest};
use super::{assert_healthy, engine};
use crate::{RowExport, WasmError};

/// The batch export every UDF guest needs; these tests never call it.
const UNUSED_BATCH_EXPORT: &str = "(unreachable)";

fn guest(name: &str, args: usize, row_export: &str) -> Vec<u8> {
    Guest::new(&udf_manifest(name, args))
        .udf(name, UNUSED_BATCH_EXPORT)
        .field(row_export)
        .build()
}

#[test]
fn a_stateless_row_export_serves_a_batch_in_one_instance() {
    let engine = engine();
    // f(x, y) = x * y / 10, trapping (unreachable) when x is negative.
    let bytes = guest(
        "scale",
        2,
        r#"(func (export "sandbox_row_scale") (param f64 f64) (result f64)
             (if (f64.lt (local.get 0) (f64.const 0)) (then (unreachable)))
             (f64.div (f64.mul (local.get 0) (local.get 1)) (f64.const 10)))"#,
    );
    let module = engine.admit(&bytes).expect("admitted");
    assert_eq!(module.row_export("scale"), &RowExport::Stateless);
    let x = [1.0, -1.0, 5.0, f64::NAN, 100.0];
    let y = [2.0, 2.0, 1.0, 1.0, 1.0];
    let out = engine
        .call_udf_rows(&module, "scale", &f64_batch(&[&x, &y]))
        .expect("runs");
    assert_eq!(out[0], Some(0.2));
    assert_eq!(out[1], None, "the trapping row fails alone");
    assert_eq!(out[2], Some(0.5), "rows after a trap still run in the same instance");
    assert!(out[3].expect("NaN is a value").is_nan());
    assert_eq!(out[4], Some(1.0), "clamped to the declared bounds [0, 1]");
    assert_healthy(&engine);
}

#[test]
fn arities_beyond_the_typed_fast_paths_work() {
    let engine = engine();
    let bytes = guest(
        "sum5",
        5,
        r#"(func (export "sandbox_row_sum5") (param f64 f64 f64 f64 f64) (result f64)
             (f64.mul (f64.const 0.01)
               (f64.add (local.get 0) (f64.add (local.get 1) (f64.add (local.get 2)
                 (f64.add (local.get 3) (local.get 4)))))))"#,
    );
    let module = engine.admit(&bytes).expect("admitted");
    let c: Vec<f64> = vec![1.0, 10.0];
    let out = engine
        .call_udf_rows(&module, "sum5", &f64_batch(&[&c, &c, &c, &c, &c]))
        .expect("runs");
    assert_eq!(out, vec![Some(0.05), Some(0.5)]);
}

#[test]
fn a_guest_that_remembers_rows_never_shares_an_instance() {
    let engine = engine();
    // Returns the previous row's x: would leak one row into the next if its
    // rows shared an instance.
    let bytes = Guest::new(&udf_manifest("prev", 1))
        .udf("prev", UNUSED_BATCH_EXPORT)
        .field("(global $last (mut f64) (f64.const 0))")
        .field(
            r#"(func (export "sandbox_row_prev") (param f64) (result f64) (local f64)
                 (local.set 1 (global.get $last))
                 (global.set $last (local.get 0))
                 (local.get 1))"#,
        )
        .build();
    let module = engine.admit(&bytes).expect("admitted");
    let RowExport::NotStateless(reason) = module.row_export("prev") else {
        panic!(
            "a global.set must not be called stateless: {:?}",
            module.row_export("prev")
        );
    };
    assert!(reason.contains("GlobalSet"), "{reason}");
    let err = engine
        .call_udf_rows(&module, "prev", &f64_batch(&[&[0.5, 0.7]]))
        .expect_err("refused");
    assert!(matches!(err, WasmError::NotStateless(_)), "{err:?}");
}

#[test]
fn a_guest_that_writes_memory_between_rows_is_not_stateless() {
    let engine = engine();
    let bytes = guest(
        "prev",
        1,
        r#"(func (export "sandbox_row_prev") (param f64) (result f64) (local f64)
             (local.set 1 (f64.load (i32.const 32)))
             (f64.store (i32.const 32) (local.get 0))
             (local.get 1))"#,
    );
    let module = engine.admit(&bytes).expect("admitted");
    assert!(matches!(module.row_export("prev"), RowExport::NotStateless(_)));
}

#[test]
fn a_guest_without_row_exports_uses_the_batch_path() {
    let engine = engine();
    let bytes = Guest::new(&udf_manifest("f", 1)).udf("f", UNUSED_BATCH_EXPORT).build();
    let module = engine.admit(&bytes).expect("admitted");
    assert_eq!(module.row_export("f"), &RowExport::Absent);
    assert_eq!(module.row_export("no_such_udf"), &RowExport::Absent);
}

#[test]
fn a_row_export_of_the_wrong_shape_is_refused_at_admission() {
    let engine = engine();
    for row_export in [
        r#"(func (export "sandbox_row_f") (param f64 f64) (result f64) (local.get 0))"#,
        r#"(func (export "sandbox_row_f") (param i32) (result f64) (f64.const 0))"#,
        r#"(func (export "sandbox_row_f") (param f64) (result i64) (i64.const 0))"#,
    ] {
        let err = engine.admit(&guest("f", 1, row_export)).expect_err("refused");
        assert!(
            matches!(&err, WasmError::ExportType { name, .. } if name == "sandbox_row_f"),
            "{err:?}"
        );
    }
}

/// A row export with a 16-byte shadow-stack frame that **reads its frame
/// before writing it**: it returns what the frame held (0 after
/// instantiation) plus x/100, then stores x there. Called in one instance
/// without restoring the frame, each row would return the previous row's
/// x; it traps on a negative x after its store.
fn stale_frame_guest() -> Vec<u8> {
    Guest::new(&udf_manifest("stale", 1))
        .udf("stale", UNUSED_BATCH_EXPORT)
        .field("(global $sp (mut i32) (i32.const 4096))")
        .field(
            r#"(func (export "sandbox_row_stale") (param f64) (result f64) (local i32 f64)
                 (global.set $sp (local.tee 1 (i32.sub (global.get $sp) (i32.const 16))))
                 (local.set 2 (f64.add (f64.load (local.get 1)) (f64.div (local.get 0) (f64.const 100))))
                 (f64.store (local.get 1) (local.get 0))
                 (block (br_if 0 (f64.ge (local.get 0) (f64.const 0))) (unreachable))
                 (global.set $sp (i32.add (local.get 1) (i32.const 16)))
                 (local.get 2))"#,
        )
        .build()
}

#[test]
fn a_frame_is_restored_after_every_row_and_a_trap_gets_a_fresh_instance() {
    let engine = engine();
    let module = engine.admit(&stale_frame_guest()).expect("admitted");
    assert_eq!(module.row_export("stale"), &RowExport::Stateless);
    let x = [50.0, 30.0, -10.0, 20.0, 40.0];
    let out = engine.call_udf_rows(&module, "stale", &f64_batch(&[&x])).expect("runs");
    // Every row sees the frame as instantiation left it (0): x/100 only,
    // never the previous row's x; the trapping row fails alone and the
    // rows after it run in a fresh instance.
    assert_eq!(out, vec![Some(0.5), Some(0.3), None, Some(0.2), Some(0.4)]);
    // The same rows one instance per row give the same values.
    for (i, &v) in x.iter().enumerate() {
        let alone = engine
            .call_udf_rows(&module, "stale", &f64_batch(&[&[v]]))
            .expect("runs");
        assert_eq!(alone[0], out[i], "row {i}");
    }
    assert_healthy(&engine);
}
