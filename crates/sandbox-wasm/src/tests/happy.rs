//! Well-behaved guests: the UDF and analysis paths, clamping, the module
//! cache and the handle's metadata.

use super::guests::{
    BLOB_AT, Guest, analysis_manifest, f64_batch, f64_bytes, good_guest, i64_batch, ipc_bytes, ret, udf_manifest,
};
use super::{assert_healthy, engine, engine_with, test_config};
use crate::{AllocationStrategy, ArgType, Bounds, WasmError};
use arrow::array::Array;
use sha2::{Digest, Sha256};

#[test]
fn analysis_returns_clamped_values() {
    let engine = engine();
    assert_healthy(&engine);
}

#[test]
fn udf_with_a_canned_ipc_result() {
    let engine = engine();
    let canned = ipc_bytes(&f64_batch(&[&[0.25, 0.5, 2.0]]));
    let bytes = Guest::new(&udf_manifest("score", 2))
        .blob(&canned)
        .udf("score", &ret(BLOB_AT, canned.len() as u32))
        .build();
    let module = engine.admit(&bytes).expect("admitted");
    let out = engine
        .call_udf(&module, "score", &f64_batch(&[&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]]))
        .expect("runs");
    assert_eq!(out.values().to_vec(), vec![0.25, 0.5, 1.0]);
}

#[test]
fn udf_echo_round_trips_real_input_with_nulls_nan_and_infinities() {
    let engine = engine();
    let module = engine.admit(&good_guest()).expect("admitted");
    let input = {
        use arrow::array::Float64Array;
        use arrow::datatypes::{DataType, Field, Schema};
        let values = Float64Array::from(vec![Some(0.5), None, Some(f64::NAN), Some(f64::INFINITY), Some(-3.0)]);
        let schema = Schema::new(vec![Field::new("x", DataType::Float64, true)]);
        arrow::array::RecordBatch::try_new(std::sync::Arc::new(schema), vec![std::sync::Arc::new(values)])
            .expect("batch")
    };
    let out = engine.call_udf(&module, "echo", &input).expect("runs");
    assert_eq!(out.len(), 5);
    assert_eq!(out.value(0), 0.5);
    assert!(out.is_null(1));
    assert!(out.value(2).is_nan(), "NaN passes through");
    assert_eq!(out.value(3), 1.0, "infinity is clamped");
    assert_eq!(out.value(4), 0.0);
}

#[test]
fn udf_on_a_large_batch() {
    let engine = engine();
    let module = engine.admit(&good_guest()).expect("admitted");
    let values: Vec<f64> = (0..100_000).map(|i| (i % 100) as f64 / 100.0).collect();
    let out = engine.call_udf(&module, "echo", &f64_batch(&[&values])).expect("runs");
    assert_eq!(out.values().to_vec(), values);
}

#[test]
fn analysis_nan_passes_and_infinity_is_clamped() {
    let engine = engine();
    let bytes = Guest::new(&analysis_manifest(3))
        .blob(&f64_bytes(&[f64::NAN, f64::NEG_INFINITY, 42.0]))
        .analyze(&ret(BLOB_AT, 24))
        .build();
    let module = engine.admit(&bytes).expect("admitted");
    let out = engine.call_analyze(&module, &f64_batch(&[&[1.0]])).expect("runs");
    assert!(out[0].is_nan());
    assert_eq!(&out[1..], &[-100.0, 42.0]);
}

#[test]
fn analysis_reads_its_input() {
    // Returns the input length in bytes as its single output: proves the
    // input arrives through sandbox_alloc intact enough to be measured.
    let engine = engine();
    let bytes = Guest::new(&analysis_manifest(1))
        .analyze(&format!(
            "(f64.store (i32.const {BLOB_AT}) (f64.convert_i32_u (local.get $len))) {}",
            ret(BLOB_AT, 8)
        ))
        .build();
    let module = engine.admit(&bytes).expect("admitted");
    let block = f64_batch(&[&[1.0, 2.0, 3.0]]);
    let expected = ipc_bytes(&block).len() as f64;
    let out = engine.call_analyze(&module, &block).expect("runs");
    // Clamped to the declared upper bound of 100.
    assert_eq!(out, vec![expected.min(100.0)]);
    assert!(expected > 100.0);
}

#[test]
fn manifest_is_exposed() {
    let engine = engine();
    let module = engine.admit(&good_guest()).expect("admitted");
    let manifest = module.manifest();
    assert_eq!(manifest.abi, 1);
    let echo = manifest.udf("echo").expect("declared");
    assert_eq!(echo.args, vec![ArgType::Float64]);
    assert_eq!(echo.bounds, Bounds { lower: 0.0, upper: 1.0 });
    let analysis = manifest.analysis.as_ref().expect("declared");
    assert_eq!(analysis.name, "const");
    assert_eq!(analysis.outputs.len(), 3);
    assert_eq!(analysis.outputs[2].name, "c");
}

#[test]
fn digest_is_the_sha256_of_the_bytes() {
    let engine = engine();
    let bytes = good_guest();
    let module = engine.admit(&bytes).expect("admitted");
    assert_eq!(module.digest_hex(), hex::encode(Sha256::digest(&bytes)));
    assert_eq!(module.size_bytes(), bytes.len());
}

#[test]
fn cache_returns_the_same_compiled_module() {
    let engine = engine();
    let bytes = good_guest();
    let first = engine.admit(&bytes).expect("admitted");
    let second = engine.admit(&bytes).expect("admitted");
    assert!(first.same_compiled(&second));
    assert_eq!(engine.compilations(), 1);
    let other = Guest::new(&analysis_manifest(1)).analyze("(i64.const -2)").build();
    let third = engine.admit(&other).expect("admitted");
    assert!(!first.same_compiled(&third));
    assert_eq!(engine.compilations(), 2);
    assert_eq!(engine.cached_modules(), 2);
}

#[test]
fn refused_modules_are_not_cached() {
    let engine = engine();
    let bytes = Guest::new(&udf_manifest("f", 1)).build();
    for _ in 0..2 {
        assert!(engine.admit(&bytes).is_err());
    }
    assert_eq!(engine.cached_modules(), 0);
}

#[test]
fn input_must_match_the_declaration() {
    let engine = engine();
    let module = engine.admit(&good_guest()).expect("admitted");
    let err = engine
        .call_udf(&module, "nope", &f64_batch(&[&[1.0]]))
        .expect_err("unknown");
    assert!(matches!(err, WasmError::UnknownUdf(_)), "{err:?}");
    let err = engine
        .call_udf(&module, "echo", &f64_batch(&[&[1.0], &[2.0]]))
        .expect_err("two columns");
    assert!(matches!(err, WasmError::InputMismatch(_)), "{err:?}");
    let err = engine.call_udf(&module, "echo", &i64_batch(&[1])).expect_err("Int64");
    assert!(matches!(err, WasmError::InputMismatch(_)), "{err:?}");
    let analysis_only = engine
        .admit(&Guest::new(&udf_manifest("f", 1)).udf("f", "(i64.const 0)").build())
        .expect("admitted");
    let err = engine
        .call_analyze(&analysis_only, &f64_batch(&[&[1.0]]))
        .expect_err("no analysis");
    assert!(matches!(err, WasmError::NoAnalysis), "{err:?}");
}

#[test]
fn a_handle_from_another_engine_is_refused() {
    let a = engine();
    let b = engine();
    let module = a.admit(&good_guest()).expect("admitted");
    let err = b.call_analyze(&module, &f64_batch(&[&[1.0]])).expect_err("foreign");
    assert!(matches!(err, WasmError::ForeignModule), "{err:?}");
}

#[test]
fn pooling_is_used_and_on_demand_works_too() {
    let pooled = engine();
    assert!(pooled.is_pooled(), "the pool should fit on this machine");
    let required = engine_with(test_config().allocation(AllocationStrategy::PoolingOnly));
    assert!(required.is_pooled());
    assert_healthy(&required);
    let on_demand = engine_with(test_config().allocation(AllocationStrategy::OnDemand));
    assert!(!on_demand.is_pooled());
    assert_healthy(&on_demand);
}

#[test]
fn concurrent_calls_from_threads() {
    let engine = std::sync::Arc::new(engine());
    let module = engine.admit(&good_guest()).expect("admitted");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let engine = std::sync::Arc::clone(&engine);
            let module = module.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let out = engine.call_analyze(&module, &f64_batch(&[&[1.0]])).expect("runs");
                    assert_eq!(out, vec![1.0, -2.5, 100.0]);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("thread");
    }
    assert_eq!(engine.live_instances(), 0);
}

#[test]
fn check_instantiation_leaves_nothing_behind() {
    let engine = engine();
    let module = engine.admit(&good_guest()).expect("admitted");
    for _ in 0..100 {
        engine.check_instantiation(&module).expect("instantiates");
    }
    assert_eq!(engine.live_instances(), 0);
}

#[test]
fn public_messages_carry_no_guest_detail() {
    let secret = "row 17 value 12345.678";
    let call_errors = [
        WasmError::Trap { detail: secret.into() },
        WasmError::BadOutput { detail: secret.into() },
        WasmError::Instantiate(secret.into()),
        WasmError::Encode(secret.into()),
        WasmError::Guest { code: -2 },
        WasmError::InputTooLarge {
            size: 12345678,
            max: 4096,
        },
    ];
    for err in call_errors {
        assert!(
            err.to_string().contains(secret)
                || matches!(err, WasmError::Guest { .. } | WasmError::InputTooLarge { .. })
        );
        assert!(!err.public_message().contains(secret), "{err:?}");
        assert!(!err.public_message().contains("12345"), "{err:?}");
    }
    let timeout = WasmError::Timeout {
        deadline: std::time::Duration::from_secs(5),
    };
    assert!(timeout.is_guest_fault());
    assert!(timeout.public_message().contains("5s"));
    assert!(!WasmError::NoAnalysis.is_guest_fault());
}
