//! Guests that misbehave while running: each must end in its own error kind
//! and leave the engine able to run a good guest.

use super::guests::{
    BLOB_AT, Guest, MANIFEST_AT, analysis_guest, analysis_manifest, f64_batch, i64_batch, ipc_bytes, ret, udf_guest,
    udf_manifest,
};
use super::{assert_healthy, engine, engine_with, test_config};
use crate::WasmError;
use std::time::{Duration, Instant};

fn block() -> arrow::array::RecordBatch {
    f64_batch(&[&[1.0, 2.0, 3.0]])
}

#[test]
fn infinite_loop_stops_within_twice_its_deadline() {
    let deadline = Duration::from_millis(300);
    // Fuel off: the epoch deadline alone must stop it.
    let engine = engine_with(test_config().call_deadline(deadline).fuel_per_call(None));
    let module = engine
        .admit(&analysis_guest("(loop $l (br $l)) (i64.const 0)"))
        .expect("admitted");
    let started = Instant::now();
    let err = engine.call_analyze(&module, &block()).expect_err("must time out");
    let elapsed = started.elapsed();
    assert!(
        matches!(err, WasmError::Timeout { deadline: d } if d == deadline),
        "{err:?}"
    );
    assert!(elapsed >= deadline, "stopped early: {elapsed:?}");
    assert!(
        elapsed < deadline * 2,
        "stopped after {elapsed:?}, deadline {deadline:?}"
    );
    assert_healthy(&engine);
}

#[test]
fn infinite_loop_in_a_udf_times_out() {
    let engine = engine_with(
        test_config()
            .call_deadline(Duration::from_millis(200))
            .fuel_per_call(None),
    );
    let module = engine
        .admit(&udf_guest("(loop $l (br $l)) (i64.const 0)"))
        .expect("admitted");
    let err = engine.call_udf(&module, "f", &block()).expect_err("must time out");
    assert!(matches!(err, WasmError::Timeout { .. }), "{err:?}");
    assert_healthy(&engine);
}

#[test]
fn start_function_loop_is_stopped_at_admission() {
    let engine = engine_with(
        test_config()
            .call_deadline(Duration::from_millis(200))
            .fuel_per_call(None),
    );
    let bytes = Guest::new(&analysis_manifest(1))
        .field("(func $spin (loop $l (br $l)))")
        .field("(start $spin)")
        .analyze("(i64.const 0)")
        .build();
    let err = engine.admit(&bytes).expect_err("start loops");
    assert!(matches!(err, WasmError::Timeout { .. }), "{err:?}");
    assert_healthy(&engine);
}

#[test]
fn fuel_stops_a_loop_deterministically() {
    let engine = engine_with(
        test_config()
            .call_deadline(Duration::from_secs(30))
            .fuel_per_call(Some(1_000_000)),
    );
    let module = engine
        .admit(&analysis_guest("(loop $l (br $l)) (i64.const 0)"))
        .expect("admitted");
    let started = Instant::now();
    for _ in 0..2 {
        let err = engine.call_analyze(&module, &block()).expect_err("runs out of fuel");
        assert!(matches!(err, WasmError::FuelExhausted { fuel: 1_000_000 }), "{err:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_healthy(&engine);
}

#[test]
fn memory_growth_bomb_hits_the_memory_limit() {
    let engine = engine();
    let module = engine
        .admit(&analysis_guest(
            "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (i64.const -2)",
        ))
        .expect("admitted");
    let err = engine.call_analyze(&module, &block()).expect_err("limit");
    assert!(
        matches!(err, WasmError::MemoryLimit { limit } if limit == 64 << 20),
        "{err:?}"
    );
    assert_healthy(&engine);
}

#[test]
fn one_huge_grow_hits_the_memory_limit() {
    let engine = engine();
    let module = engine
        .admit(&analysis_guest("(drop (memory.grow (i32.const 60000))) (i64.const 0)"))
        .expect("admitted");
    let err = engine.call_analyze(&module, &block()).expect_err("limit");
    assert!(matches!(err, WasmError::MemoryLimit { .. }), "{err:?}");
    assert_healthy(&engine);
}

#[test]
fn deep_recursion_overflows_the_stack() {
    let engine = engine();
    let bytes = Guest::new(&analysis_manifest(1))
        .field("(func $rec (param i64) (result i64) (i64.add (call $rec (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))")
        .analyze("(call $rec (i64.const 0))")
        .build();
    let module = engine.admit(&bytes).expect("admitted");
    let err = engine.call_analyze(&module, &block()).expect_err("overflows");
    assert!(
        matches!(err, WasmError::StackOverflow { limit } if limit == 512 * 1024),
        "{err:?}"
    );
    assert_healthy(&engine);
}

#[test]
fn unreachable_in_the_middle_is_a_trap() {
    let engine = engine();
    let module = engine
        .admit(&analysis_guest("(drop (memory.size)) (unreachable)"))
        .expect("admitted");
    let err = engine.call_analyze(&module, &block()).expect_err("traps");
    match &err {
        WasmError::Trap { detail } => assert!(detail.contains("unreachable"), "{detail}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(!err.public_message().contains("unreachable"));
    assert_healthy(&engine);
}

#[test]
fn division_by_zero_and_out_of_bounds_are_traps() {
    let engine = engine();
    for body in [
        "(drop (i32.div_s (i32.const 1) (i32.const 0))) (i64.const 0)",
        "(drop (i64.load (i32.const 0x7ffffff0))) (i64.const 0)",
        "(drop (i32.trunc_f64_s (f64.const nan))) (i64.const 0)",
    ] {
        let module = engine.admit(&analysis_guest(body)).expect("admitted");
        let err = engine.call_analyze(&module, &block()).expect_err("traps");
        assert!(matches!(err, WasmError::Trap { .. }), "{body}: {err:?}");
    }
    assert_healthy(&engine);
}

#[test]
fn table_growth_hits_the_table_limit() {
    let engine = engine_with(test_config().max_table_elements(100));
    let bytes = Guest::new(&analysis_manifest(1))
        .field("(table $t 1 funcref)")
        .analyze("(drop (table.grow $t (ref.null func) (i32.const 1000))) (i64.const 0)")
        .build();
    let module = engine.admit(&bytes).expect("admitted");
    let err = engine.call_analyze(&module, &block()).expect_err("limit");
    assert!(matches!(err, WasmError::TableLimit { limit: 100 }), "{err:?}");
    assert_healthy(&engine);
}

#[test]
fn output_length_over_the_cap_is_bad_output() {
    let engine = engine();
    let module = engine.admit(&udf_guest(&ret(0, 0x7fff_ffff))).expect("admitted");
    let err = engine.call_udf(&module, "f", &block()).expect_err("too long");
    assert!(matches!(err, WasmError::BadOutput { .. }), "{err:?}");
    // Analysis: any length other than 8 per output is refused before reading.
    let module = engine.admit(&analysis_guest(&ret(0, u32::MAX))).expect("admitted");
    let err = engine.call_analyze(&module, &block()).expect_err("too long");
    assert!(matches!(err, WasmError::BadOutput { .. }), "{err:?}");
    assert_healthy(&engine);
}

#[test]
fn output_outside_memory_is_bad_output() {
    let engine = engine();
    for packed in [ret(0x00f0_0000, 16), ret(0x7fff_fff0, 8), ret(0x0001_fff8, 16)] {
        let module = engine.admit(&udf_guest(&packed)).expect("admitted");
        let err = engine.call_udf(&module, "f", &block()).expect_err("outside");
        match &err {
            WasmError::BadOutput { detail } => assert!(detail.contains("outside"), "{detail}"),
            other => panic!("{packed}: {other:?}"),
        }
        assert!(!err.public_message().contains("0x"), "{}", err.public_message());
    }
    assert_healthy(&engine);
}

#[test]
fn malformed_ipc_output_is_bad_output() {
    let engine = engine();
    let garbage: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases = [
        // The manifest's JSON text is not Arrow IPC.
        Guest::new(&udf_manifest("f", 1))
            .udf("f", &ret(MANIFEST_AT, 40))
            .build(),
        // Pseudo-random bytes.
        Guest::new(&udf_manifest("f", 1))
            .blob(&garbage)
            .udf("f", &ret(BLOB_AT, 512))
            .build(),
        // Empty output.
        udf_guest(&ret(BLOB_AT, 0)),
        // A valid stream cut short.
        {
            let full = ipc_bytes(&f64_batch(&[&[1.0, 2.0, 3.0]]));
            Guest::new(&udf_manifest("f", 1))
                .blob(&full)
                .udf("f", &ret(BLOB_AT, (full.len() / 2) as u32))
                .build()
        },
    ];
    for bytes in cases {
        let module = engine.admit(&bytes).expect("admitted");
        let err = engine.call_udf(&module, "f", &block()).expect_err("malformed");
        assert!(matches!(err, WasmError::BadOutput { .. }), "{err:?}");
    }
    assert_healthy(&engine);
}

#[test]
fn well_formed_but_wrong_output_is_bad_output() {
    let engine = engine();
    let cases = [
        ("two rows for three", ipc_bytes(&f64_batch(&[&[1.0, 2.0]]))),
        ("Int64 column", ipc_bytes(&i64_batch(&[1, 2, 3]))),
        (
            "two columns",
            ipc_bytes(&f64_batch(&[&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]])),
        ),
    ];
    for (what, blob) in cases {
        let bytes = Guest::new(&udf_manifest("f", 1))
            .blob(&blob)
            .udf("f", &ret(BLOB_AT, blob.len() as u32))
            .build();
        let module = engine.admit(&bytes).expect("admitted");
        let err = engine.call_udf(&module, "f", &block()).expect_err(what);
        assert!(matches!(err, WasmError::BadOutput { .. }), "{what}: {err:?}");
    }
    assert_healthy(&engine);
}

#[test]
fn guest_error_codes_and_stray_negatives() {
    let engine = engine();
    for code in [
        sandbox_abi::ERR_BAD_INPUT,
        sandbox_abi::ERR_GUEST,
        sandbox_abi::ERR_OUTPUT,
    ] {
        let module = engine
            .admit(&analysis_guest(&format!("(i64.const {code})")))
            .expect("admitted");
        let err = engine.call_analyze(&module, &block()).expect_err("guest error");
        assert!(matches!(err, WasmError::Guest { code: c } if c == code), "{err:?}");
        assert_eq!(err.public_message(), "the job's code reported an error");
    }
    let module = engine.admit(&analysis_guest("(i64.const -7)")).expect("admitted");
    let err = engine.call_analyze(&module, &block()).expect_err("stray");
    assert!(matches!(err, WasmError::BadOutput { .. }), "{err:?}");
    assert_healthy(&engine);
}

#[test]
fn misbehaving_allocator_is_bad_output() {
    let engine = engine();
    for alloc in ["(i32.const 0)", "(i32.const 0x7fff0000)", "(i32.const -8)"] {
        let bytes = Guest::new(&analysis_manifest(1))
            .omit("sandbox_alloc")
            .field(&format!(
                r#"(func (export "sandbox_alloc") (param i32) (result i32) {alloc})"#
            ))
            .analyze("(i64.const 0)")
            .build();
        let module = engine.admit(&bytes).expect("admitted");
        let err = engine.call_analyze(&module, &block()).expect_err("bad alloc");
        assert!(matches!(err, WasmError::BadOutput { .. }), "{alloc}: {err:?}");
    }
    // An allocator that traps.
    let bytes = Guest::new(&analysis_manifest(1))
        .omit("sandbox_alloc")
        .field(r#"(func (export "sandbox_alloc") (param i32) (result i32) (unreachable))"#)
        .analyze("(i64.const 0)")
        .build();
    let module = engine.admit(&bytes).expect("admitted");
    let err = engine.call_analyze(&module, &block()).expect_err("trap");
    assert!(matches!(err, WasmError::Trap { .. }), "{err:?}");
    assert_healthy(&engine);
}

#[test]
fn no_state_survives_between_calls() {
    let engine = engine();
    // Returns the number of earlier calls as a counter in memory: always 0
    // with a fresh instance per call.
    let bytes = Guest::new(&analysis_manifest(1))
        .analyze(&format!(
            "(i64.store (i32.const 8192) (i64.add (i64.load (i32.const 8192)) (i64.const 1)))
             (f64.store (i32.const 8200) (f64.convert_i64_u (i64.load (i32.const 8192))))
             {}",
            ret(8200, 8)
        ))
        .build();
    let module = engine.admit(&bytes).expect("admitted");
    for _ in 0..3 {
        assert_eq!(engine.call_analyze(&module, &block()).expect("runs"), vec![1.0]);
    }
}

#[test]
fn many_hostile_calls_in_a_row_leave_no_instances() {
    let engine = engine_with(
        test_config()
            .call_deadline(Duration::from_millis(50))
            .fuel_per_call(None),
    );
    let looping = engine
        .admit(&analysis_guest("(loop $l (br $l)) (i64.const 0)"))
        .expect("admitted");
    let trapping = engine.admit(&analysis_guest("(unreachable)")).expect("admitted");
    for _ in 0..5 {
        assert!(engine.call_analyze(&looping, &block()).is_err());
        assert!(engine.call_analyze(&trapping, &block()).is_err());
    }
    assert_eq!(engine.live_instances(), 0);
    assert_healthy(&engine);
}
