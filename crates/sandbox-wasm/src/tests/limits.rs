//! One test per setting: the default, the range the builder accepts, and
//! (for limits) that the engine enforces it.

use super::guests::{BLOB_AT, Guest, analysis_guest, analysis_manifest, f64_batch, good_guest, ret};
use super::{assert_healthy, engine_with, refused, test_config};
use crate::{AllocationStrategy, RuntimeConfig, WasmError};
use std::time::Duration;

const MIB: usize = 1 << 20;

fn invalid(builder: crate::RuntimeConfigBuilder, setting: &str) {
    match builder.build() {
        Err(WasmError::InvalidConfig(msg)) => assert!(msg.contains(setting), "{msg}"),
        other => panic!("{setting}: expected InvalidConfig, got {other:?}"),
    }
}

fn valid(builder: crate::RuntimeConfigBuilder) -> RuntimeConfig {
    builder.build().expect("valid config")
}

#[test]
fn defaults_are_as_documented() {
    let c = valid(RuntimeConfig::builder());
    assert_eq!(c.call_deadline(), Duration::from_secs(5));
    assert_eq!(c.epoch_tick(), Duration::from_millis(10));
    assert_eq!(c.fuel_per_call(), None);
    assert_eq!(c.max_memory_bytes(), 64 * MIB);
    assert_eq!(c.max_wasm_stack_bytes(), 512 * 1024);
    assert_eq!(c.max_table_elements(), 10_000);
    assert_eq!(c.max_instances(), 16);
    assert_eq!(c.max_module_bytes(), 16 * MIB);
    assert_eq!(c.max_input_bytes(), 16 * MIB);
    assert_eq!(c.max_output_bytes(), 16 * MIB);
    assert_eq!(c.max_manifest_bytes(), 64 * 1024);
    assert_eq!(c.max_analysis_outputs(), 1024);
    assert_eq!(c.module_cache_entries(), 32);
    assert_eq!(c.allocation(), AllocationStrategy::PoolingWithFallback);
    assert_eq!(c.memory_guard_bytes(), 2 * MIB);
    assert_eq!(c.max_instance_metadata_bytes(), MIB);
    assert_eq!(c.keep_resident_bytes(), 8 * MIB);
    assert!(!c.canonicalize_nans());
    // 16 × (64 MiB + 2 MiB): about 1 GiB of address space, not memory.
    assert_eq!(c.pool_reservation_bytes(), 16 * 66 * MIB as u64);
    // 5 s / 10 ms = 500 ticks, plus one for the tick in progress.
    assert_eq!(c.deadline_ticks(), 501);
}

#[test]
fn call_deadline_range_and_enforcement() {
    invalid(RuntimeConfig::builder().call_deadline(Duration::ZERO), "call_deadline");
    invalid(
        RuntimeConfig::builder().call_deadline(Duration::from_secs(3601)),
        "call_deadline",
    );
    let c = valid(
        RuntimeConfig::builder()
            .call_deadline(Duration::from_millis(25))
            .epoch_tick(Duration::from_millis(10)),
    );
    assert_eq!(c.deadline_ticks(), 4);
    // Enforcement: see hostile::infinite_loop_stops_within_twice_its_deadline.
}

#[test]
fn epoch_tick_range() {
    invalid(
        RuntimeConfig::builder().epoch_tick(Duration::from_micros(500)),
        "epoch_tick",
    );
    invalid(
        RuntimeConfig::builder()
            .call_deadline(Duration::from_millis(100))
            .epoch_tick(Duration::from_millis(200)),
        "epoch_tick",
    );
    let engine = engine_with(
        test_config()
            .epoch_tick(Duration::from_millis(1))
            .call_deadline(Duration::from_millis(20))
            .fuel_per_call(None),
    );
    let module = engine
        .admit(&analysis_guest("(loop $l (br $l)) (i64.const 0)"))
        .expect("admitted");
    let err = engine
        .call_analyze(&module, &f64_batch(&[&[1.0]]))
        .expect_err("times out");
    assert!(matches!(err, WasmError::Timeout { .. }), "{err:?}");
}

#[test]
fn fuel_range_and_off() {
    invalid(RuntimeConfig::builder().fuel_per_call(Some(999)), "fuel_per_call");
    valid(RuntimeConfig::builder().fuel_per_call(Some(1000)));
    // Fuel off still runs guests (enforcement: hostile::fuel_stops_a_loop_deterministically).
    assert_healthy(&engine_with(test_config().fuel_per_call(None)));
}

#[test]
fn max_memory_range_and_enforcement() {
    invalid(RuntimeConfig::builder().max_memory_bytes(0), "max_memory_bytes");
    invalid(RuntimeConfig::builder().max_memory_bytes(100_000), "max_memory_bytes");
    invalid(RuntimeConfig::builder().max_memory_bytes(4 << 30), "max_memory_bytes");
    let engine = engine_with(
        test_config()
            .max_memory_bytes(4 * MIB)
            .max_input_bytes(MIB)
            .max_output_bytes(MIB),
    );
    // Growing to exactly the limit is fine (2 pages + 62 = 64 pages = 4 MiB).
    let module = engine
        .admit(&analysis_guest(&format!(
            "(if (i32.eq (memory.grow (i32.const 62)) (i32.const -1)) (then (unreachable))) \
             (f64.store (i32.const {BLOB_AT}) (f64.const 7)) {}",
            ret(BLOB_AT, 8)
        )))
        .expect("admitted");
    assert_eq!(
        engine.call_analyze(&module, &f64_batch(&[&[1.0]])).expect("fits"),
        vec![7.0]
    );
    // One page more is not.
    let module = engine
        .admit(&analysis_guest("(drop (memory.grow (i32.const 63))) (i64.const 0)"))
        .expect("admitted");
    let err = engine.call_analyze(&module, &f64_batch(&[&[1.0]])).expect_err("over");
    assert!(
        matches!(err, WasmError::MemoryLimit { limit } if limit == 4 * MIB),
        "{err:?}"
    );
    // A module whose memory starts over the limit is refused at admission.
    let bytes = Guest::new(&analysis_manifest(1))
        .memory("65")
        .analyze("(i64.const 0)")
        .build();
    let err = refused(&engine, &bytes);
    assert!(matches!(err, WasmError::ModuleLimits(_)), "{err:?}");
    assert_healthy(&engine);
}

#[test]
fn max_wasm_stack_range_and_enforcement() {
    invalid(
        RuntimeConfig::builder().max_wasm_stack_bytes(1024),
        "max_wasm_stack_bytes",
    );
    invalid(
        RuntimeConfig::builder().max_wasm_stack_bytes(16 * MIB),
        "max_wasm_stack_bytes",
    );
    // Recursion to depth 5000 fits in 512 KiB but not in 64 KiB.
    let bytes = Guest::new(&analysis_manifest(1))
        .field(
            "(func $rec (param i64) (result i64)
               (if (result i64) (i64.ge_u (local.get 0) (i64.const 5000))
                 (then (i64.const 0))
                 (else (i64.add (call $rec (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))))",
        )
        .analyze(&format!(
            "(f64.store (i32.const {BLOB_AT}) (f64.convert_i64_u (call $rec (i64.const 0)))) {}",
            ret(BLOB_AT, 8)
        ))
        .build();
    let roomy = engine_with(test_config());
    let module = roomy.admit(&bytes).expect("admitted");
    // 5000 clamped to the declared upper bound of 100.
    assert_eq!(
        roomy.call_analyze(&module, &f64_batch(&[&[1.0]])).expect("fits"),
        vec![100.0]
    );
    let tight = engine_with(test_config().max_wasm_stack_bytes(64 * 1024));
    let module = tight.admit(&bytes).expect("admitted");
    let err = tight
        .call_analyze(&module, &f64_batch(&[&[1.0]]))
        .expect_err("overflows");
    assert!(matches!(err, WasmError::StackOverflow { limit: 65536 }), "{err:?}");
    assert_healthy(&tight);
}

#[test]
fn max_table_elements_range_and_enforcement() {
    invalid(RuntimeConfig::builder().max_table_elements(0), "max_table_elements");
    invalid(
        RuntimeConfig::builder().max_table_elements(1_000_001),
        "max_table_elements",
    );
    let engine = engine_with(test_config().max_table_elements(100));
    let bytes = Guest::new(&analysis_manifest(1))
        .field("(table 101 funcref)")
        .analyze("(i64.const 0)")
        .build();
    let err = refused(&engine, &bytes);
    assert!(matches!(err, WasmError::ModuleLimits(_)), "{err:?}");
    // Growth: hostile::table_growth_hits_the_table_limit.
}

#[test]
fn max_instances_range_and_enforcement() {
    invalid(RuntimeConfig::builder().max_instances(0), "max_instances");
    invalid(RuntimeConfig::builder().max_instances(65), "max_instances");
    let engine = engine_with(test_config().max_instances(1));
    let module = engine.admit(&good_guest()).expect("admitted");
    let held = engine.slots().acquire().expect("one slot");
    let err = engine.call_analyze(&module, &f64_batch(&[&[1.0]])).expect_err("busy");
    assert!(matches!(err, WasmError::Busy { max: 1 }), "{err:?}");
    assert!(matches!(
        engine.admit(&analysis_guest("(i64.const 0)")),
        Err(WasmError::Busy { .. })
    ));
    drop(held);
    assert_healthy(&engine);
}

#[test]
fn max_module_bytes_range_and_enforcement() {
    invalid(RuntimeConfig::builder().max_module_bytes(4), "max_module_bytes");
    invalid(RuntimeConfig::builder().max_module_bytes(257 * MIB), "max_module_bytes");
    let bytes = good_guest();
    let engine = engine_with(test_config().max_module_bytes(bytes.len() - 1));
    let err = refused(&engine, &bytes);
    assert!(
        matches!(&err, WasmError::ModuleTooLarge { size, max, .. } if *size == bytes.len() && *max == bytes.len() - 1),
        "{err:?}"
    );
    let engine = engine_with(test_config().max_module_bytes(bytes.len()));
    engine.admit(&bytes).expect("exactly at the limit");
}

#[test]
fn max_input_bytes_range_and_enforcement() {
    invalid(RuntimeConfig::builder().max_input_bytes(100), "max_input_bytes");
    invalid(RuntimeConfig::builder().max_input_bytes(64 * MIB), "max_input_bytes");
    let engine = engine_with(test_config().max_input_bytes(4096));
    let module = engine.admit(&good_guest()).expect("admitted");
    let big: Vec<f64> = vec![0.5; 1000];
    let err = engine.call_analyze(&module, &f64_batch(&[&big])).expect_err("too big");
    assert!(matches!(err, WasmError::InputTooLarge { max: 4096, .. }), "{err:?}");
    let err = engine
        .call_udf(&module, "echo", &f64_batch(&[&big]))
        .expect_err("too big");
    assert!(matches!(err, WasmError::InputTooLarge { .. }), "{err:?}");
    assert_eq!(
        engine.call_analyze(&module, &f64_batch(&[&[1.0]])).expect("small fits"),
        vec![1.0, -2.5, 100.0]
    );
}

#[test]
fn max_output_bytes_range_and_enforcement() {
    invalid(RuntimeConfig::builder().max_output_bytes(100), "max_output_bytes");
    invalid(RuntimeConfig::builder().max_output_bytes(65 * MIB), "max_output_bytes");
    // The echo UDF returns its input: allowed in, too long out.
    let engine = engine_with(
        test_config()
            .max_input_bytes(64 * 1024)
            .max_output_bytes(4096)
            .max_analysis_outputs(16),
    );
    let module = engine.admit(&good_guest()).expect("admitted");
    let err = engine
        .call_udf(&module, "echo", &f64_batch(&[&vec![0.5; 1000]]))
        .expect_err("too long");
    assert!(
        matches!(err, WasmError::BadOutput { ref detail } if detail.contains("4096")),
        "{err:?}"
    );
    engine
        .call_udf(&module, "echo", &f64_batch(&[&[0.5; 10]]))
        .expect("short output fits");
}

#[test]
fn max_manifest_bytes_range_and_enforcement() {
    invalid(RuntimeConfig::builder().max_manifest_bytes(10), "max_manifest_bytes");
    invalid(
        RuntimeConfig::builder().max_manifest_bytes(17 * MIB),
        "max_manifest_bytes",
    );
    let bytes = good_guest();
    let engine = engine_with(test_config().max_manifest_bytes(256));
    let err = refused(&engine, &bytes);
    assert!(matches!(err, WasmError::BadOutput { .. }), "{err:?}");
}

#[test]
fn max_analysis_outputs_range_and_enforcement() {
    invalid(RuntimeConfig::builder().max_analysis_outputs(0), "max_analysis_outputs");
    invalid(
        RuntimeConfig::builder()
            .max_output_bytes(8192)
            .max_analysis_outputs(1025),
        "max_analysis_outputs",
    );
    let engine = engine_with(test_config().max_analysis_outputs(2));
    let err = refused(
        &engine,
        &Guest::new(&analysis_manifest(3)).analyze("(i64.const 0)").build(),
    );
    assert!(matches!(err, WasmError::InvalidManifest(_)), "{err:?}");
}

#[test]
fn module_cache_entries_range_and_eviction() {
    invalid(RuntimeConfig::builder().module_cache_entries(0), "module_cache_entries");
    invalid(
        RuntimeConfig::builder().module_cache_entries(4097),
        "module_cache_entries",
    );
    let engine = engine_with(test_config().module_cache_entries(2));
    let a = analysis_guest("(i64.const -1)");
    let b = analysis_guest("(i64.const -2)");
    let c = analysis_guest("(i64.const -3)");
    engine.admit(&a).expect("a");
    engine.admit(&b).expect("b");
    engine.admit(&a).expect("a again (hit, now most recent)");
    assert_eq!(engine.compilations(), 2);
    engine.admit(&c).expect("c evicts b");
    assert_eq!(engine.cached_modules(), 2);
    engine.admit(&a).expect("a still cached");
    assert_eq!(engine.compilations(), 3);
    engine.admit(&b).expect("b compiled again");
    assert_eq!(engine.compilations(), 4);
}

#[test]
fn memory_guard_range() {
    invalid(RuntimeConfig::builder().memory_guard_bytes(1000), "memory_guard_bytes");
    invalid(
        RuntimeConfig::builder().memory_guard_bytes(128 * MIB),
        "memory_guard_bytes",
    );
    let engine = engine_with(test_config().memory_guard_bytes(0));
    assert_healthy(&engine);
}

#[test]
fn max_instance_metadata_range_and_enforcement() {
    invalid(
        RuntimeConfig::builder().max_instance_metadata_bytes(1024),
        "max_instance_metadata_bytes",
    );
    invalid(
        RuntimeConfig::builder().max_instance_metadata_bytes(65 * MIB),
        "max_instance_metadata_bytes",
    );
    // 2000 globals need more than 4 KiB of instance metadata.
    let globals: String = (0..2000)
        .map(|i| format!("(global $g{i} (mut i64) (i64.const {i}))"))
        .collect();
    let bytes = Guest::new(&analysis_manifest(1))
        .field(&globals)
        .analyze("(i64.const 0)")
        .build();
    let engine = engine_with(
        test_config()
            .allocation(AllocationStrategy::PoolingOnly)
            .max_instance_metadata_bytes(4096),
    );
    let err = refused(&engine, &bytes);
    assert!(
        matches!(err, WasmError::Compile(ref m) if m.contains("4096")),
        "{err:?}"
    );
    assert_healthy(&engine);
}

#[test]
fn pooling_only_reports_an_impossible_pool() {
    // 64 instances × (4 GiB − 64 KiB + 64 MiB guard) is ~260 GiB of address
    // space: usually reservable, so only check that the request either
    // succeeds or fails with a clear Engine error, never a panic.
    let result = crate::SandboxEngine::new(valid(
        RuntimeConfig::builder()
            .allocation(AllocationStrategy::PoolingOnly)
            .max_instances(64)
            .max_memory_bytes((4 << 30) - 65536)
            .memory_guard_bytes(64 * MIB),
    ));
    match result {
        Ok(engine) => assert!(engine.is_pooled()),
        Err(err) => assert!(matches!(err, WasmError::Engine(_)), "{err:?}"),
    }
}

#[test]
fn keep_resident_range_and_reuse() {
    invalid(
        RuntimeConfig::builder().keep_resident_bytes(5 * 1024 * MIB),
        "keep_resident_bytes",
    );
    // Capped at the memory limit, never refused for being larger.
    let c = valid(
        RuntimeConfig::builder()
            .max_memory_bytes(4 * MIB)
            .max_input_bytes(MIB)
            .max_output_bytes(MIB)
            .keep_resident_bytes(8 * MIB),
    );
    assert_eq!(c.keep_resident_bytes(), 4 * MIB);
    // Whatever stays resident, a call never sees what the previous one wrote:
    // the guest returns the word at BLOB_AT, then overwrites it.
    for keep in [0, 64 * 1024, 8 * MIB] {
        let engine = engine_with(test_config().keep_resident_bytes(keep));
        let module = engine
            .admit(&analysis_guest(&format!(
                "(f64.store (i32.const {BLOB_AT}) (f64.load (i32.const {SCRATCH}))) \
                 (f64.store (i32.const {SCRATCH}) (f64.const 99)) {}",
                ret(BLOB_AT, 8),
                SCRATCH = BLOB_AT + 128,
            )))
            .expect("admitted");
        for _ in 0..3 {
            assert_eq!(
                engine.call_analyze(&module, &f64_batch(&[&[1.0]])).expect("runs"),
                vec![0.0],
                "keep_resident_bytes {keep}: a call saw the previous call's write"
            );
        }
        assert_healthy(&engine);
    }
}

#[test]
fn nan_payloads_canonicalized_only_when_asked() {
    // 0x7ff8000000000001 + 0.0: x86 and Arm keep the payload unless
    // canonicalization is on.
    let body = format!(
        "(f64.store (i32.const {BLOB_AT}) (f64.add (f64.reinterpret_i64 (i64.const 0x7ff8000000000001)) (f64.const 0))) {}",
        ret(BLOB_AT, 8)
    );
    let bits = |canonical: bool| {
        let engine = engine_with(test_config().canonicalize_nans(canonical));
        let module = engine.admit(&analysis_guest(&body)).expect("admitted");
        let out = engine.call_analyze(&module, &f64_batch(&[&[1.0]])).expect("runs");
        assert!(out[0].is_nan());
        out[0].to_bits()
    };
    assert_eq!(bits(true), 0x7ff8_0000_0000_0000);
    assert!(f64::from_bits(bits(false)).is_nan());
}
