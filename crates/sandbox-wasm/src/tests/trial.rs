//! Trial calls: the guest's own message (`sandbox_last_error`) and the
//! size and import messages that say what to do.

use super::guests::{BLOB_AT, Guest, analysis_manifest, f64_batch, ret, udf_manifest};
use super::{engine, engine_with, refused, test_config};
use crate::WasmError;

/// A guest that writes `message` at BLOB_AT, exports it through
/// `sandbox_last_error`, and fails its analysis with `body`.
fn failing_guest(message: &str, body: &str) -> Vec<u8> {
    Guest::new(&analysis_manifest(2))
        .blob(message.as_bytes())
        .field(&format!(
            r#"(func (export "sandbox_last_error") (result i64) {})"#,
            ret(BLOB_AT, message.len() as u32)
        ))
        .analyze(body)
        .build()
}

#[test]
fn a_trap_in_a_trial_call_carries_the_guest_message_and_a_hint() {
    let engine = engine();
    let panic_text = "panicked at src/lib.rs:7:15:\ntime not implemented on this platform";
    let module = engine
        .admit(&failing_guest(panic_text, "(unreachable)"))
        .expect("admitted");
    let block = f64_batch(&[&[1.0, 2.0]]);
    let failure = engine.trial_analyze(&module, &block).expect_err("traps");
    assert!(matches!(failure.error, WasmError::Trap { .. }), "{failure:?}");
    assert_eq!(failure.guest_message.as_deref(), Some(panic_text));
    let text = failure.to_string();
    assert!(
        text.contains("time not implemented") && text.contains("has no clock"),
        "{text}"
    );
    // The ordinary call on (real) data reports the kind only.
    let plain = engine.call_analyze(&module, &block).expect_err("traps");
    assert!(!plain.public_message().contains("not implemented"), "{plain}");
}

#[test]
fn an_error_code_in_a_trial_call_carries_the_guest_message() {
    let engine = engine();
    let text = "bad input: no column `gas_m3` in the batch";
    let module = engine.admit(&failing_guest(text, "(i64.const -1)")).expect("admitted");
    let failure = engine.trial_analyze(&module, &f64_batch(&[&[1.0]])).expect_err("fails");
    assert!(matches!(failure.error, WasmError::Guest { code: -1 }), "{failure:?}");
    assert!(failure.to_string().contains("no column `gas_m3`"), "{failure}");
}

#[test]
fn a_guest_without_the_export_still_fails_with_its_kind() {
    let engine = engine();
    let bytes = Guest::new(&udf_manifest("f", 1)).udf("f", "(unreachable)").build();
    let module = engine.admit(&bytes).expect("admitted");
    let failure = engine
        .trial_udf(&module, "f", &f64_batch(&[&[1.0]]))
        .expect_err("traps");
    assert_eq!(failure.guest_message, None);
    assert!(failure.to_string().contains("WebAssembly trap"), "{failure}");
}

#[test]
fn a_module_too_large_names_its_debug_information() {
    // 200 KiB of DWARF in a custom section.
    let mut bytes = Guest::new(&analysis_manifest(1)).analyze("(i64.const 0)").build();
    let payload = vec![0u8; 200 * 1024];
    let name = b".debug_info";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    bytes.push(0);
    let mut len = section.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(&section);
    let engine = engine_with(test_config().max_module_bytes(100 * 1024));
    let err = refused(&engine, &bytes).to_string();
    assert!(
        err.contains("debug information") && err.contains("strip = true"),
        "{err}"
    );

    // Large data, no debug information: the message says so, not "debug build".
    let big = Guest::new(&analysis_manifest(1))
        .blob(&vec![7u8; 200 * 1024])
        .memory("8")
        .analyze("(i64.const 0)")
        .build();
    let err = refused(&engine, &big).to_string();
    assert!(
        err.contains("little debug information") && err.contains("its data"),
        "{err}"
    );
}

#[test]
fn a_wasm_bindgen_import_points_to_a_seeded_generator() {
    let engine = engine();
    let bytes = Guest::new(&analysis_manifest(1))
        .import(r#"(import "__wbindgen_placeholder__" "__wbindgen_describe" (func (param i32)))"#)
        .analyze("(i64.const 0)")
        .build();
    let err = refused(&engine, &bytes).to_string();
    assert!(err.contains("getrandom") && err.contains("seeded generator"), "{err}");
}
