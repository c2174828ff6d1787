//! Modules refused at admission: malformed bytes, disabled proposals,
//! forbidden imports, missing or mistyped exports, bad manifests.

use super::guests::{Guest, MANIFEST_AT, analysis_manifest, good_guest, ret, udf_manifest};
use super::{assert_healthy, engine, refused};
use crate::WasmError;

#[test]
fn wasi_import_is_refused_and_named() {
    let engine = engine();
    let bytes = Guest::new(&analysis_manifest(1))
        .import(r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#)
        .analyze("(i64.const 0)")
        .build();
    let err = refused(&engine, &bytes);
    let message = err.to_string();
    assert!(matches!(err, WasmError::ImportRefused { .. }), "{err:?}");
    assert!(
        message.starts_with(
            "import wasi_snapshot_preview1.fd_write is not allowed: jobs get no files, clock, network, \
             environment or randomness"
        ),
        "{message}"
    );
    assert_eq!(err.public_message(), message, "admission errors are shown in full");
    assert_healthy(&engine);
}

#[test]
fn env_and_unknown_imports_are_refused() {
    let engine = engine();
    for (import, named) in [
        (r#"(import "env" "foo" (func))"#, "env.foo"),
        (r#"(import "sandbox" "log" (func (param i32 i32)))"#, "sandbox.log"),
        (r#"(import "js" "tbl" (table 1 funcref))"#, "js.tbl"),
        (
            r#"(import "wasi:clocks/wall-clock" "now" (func))"#,
            "wasi:clocks/wall-clock.now",
        ),
        (r#"(import "env" "g" (global i32))"#, "env.g"),
    ] {
        let bytes = Guest::new(&analysis_manifest(1))
            .import(import)
            .analyze("(i64.const 0)")
            .build();
        let err = refused(&engine, &bytes);
        assert!(matches!(err, WasmError::ImportRefused { .. }), "{import}: {err:?}");
        assert!(
            err.to_string().starts_with(&format!("import {named} is not allowed")),
            "{err}"
        );
    }
    assert_healthy(&engine);
}

#[test]
fn malformed_bytes_are_refused() {
    let engine = engine();
    let good = good_guest();
    let mut random = Vec::with_capacity(4096);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        random.push(x as u8);
    }
    let mut flipped = good.clone();
    // The first section's length (a LEB128 right after its id at offset 8).
    flipped[9] = 0xff;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("random bytes", random.clone()),
        (
            "random bytes after the magic",
            [b"\0asm\x01\0\0\0".as_slice(), &random].concat(),
        ),
        ("truncated module", good[..good.len() / 2].to_vec()),
        ("truncated by one byte", good[..good.len() - 1].to_vec()),
        ("corrupted section length", flipped),
        ("text instead of binary", b"(module)".to_vec()),
        ("component header", b"\0asm\x0d\0\x01\0".to_vec()),
    ];
    for (what, bytes) in cases {
        let err = refused(&engine, &bytes);
        assert!(matches!(err, WasmError::InvalidModule(_)), "{what}: {err:?}");
    }
    // A valid but empty module lacks the ABI's exports.
    let err = refused(&engine, b"\0asm\x01\0\0\0");
    assert!(
        matches!(err, WasmError::MissingExport { ref name, .. } if name == "memory"),
        "{err:?}"
    );
    assert_healthy(&engine);
}

#[test]
fn disabled_proposals_are_refused() {
    let engine = engine();
    let cases = [
        (
            "threads (shared memory)",
            Guest::new(&analysis_manifest(1))
                .memory("2 4 shared")
                .analyze("(i64.const 0)")
                .wat(),
        ),
        (
            "memory64",
            Guest::new(&analysis_manifest(1))
                .memory("i64 2")
                .analyze("(i64.const 0)")
                .wat(),
        ),
        (
            "multi-memory",
            Guest::new(&analysis_manifest(1))
                .field("(memory $second 1)")
                .analyze("(i64.const 0)")
                .wat(),
        ),
        (
            "GC",
            Guest::new(&analysis_manifest(1))
                .field("(type $s (struct (field i32)))")
                .analyze("(drop (struct.new $s (i32.const 1))) (i64.const 0)")
                .wat(),
        ),
        (
            "exceptions",
            Guest::new(&analysis_manifest(1))
                .field("(tag $e)")
                .analyze("(throw $e)")
                .wat(),
        ),
        (
            "tail calls",
            Guest::new(&analysis_manifest(1))
                .field("(func $t (result i64) (i64.const 0))")
                .analyze("(return_call $t)")
                .wat(),
        ),
        (
            "atomics",
            Guest::new(&analysis_manifest(1))
                .analyze("(drop (i32.atomic.load (i32.const 0))) (i64.const 0)")
                .wat(),
        ),
    ];
    for (what, wat) in cases {
        let bytes = wat::parse_str(&wat).expect("WAT parses");
        let err = refused(&engine, &bytes);
        assert!(matches!(err, WasmError::InvalidModule(_)), "{what}: {err:?}");
    }
    assert_healthy(&engine);
}

#[test]
fn missing_or_mistyped_exports_are_refused() {
    let engine = engine();
    for export in ["memory", "sandbox_alloc", "sandbox_dealloc", "sandbox_manifest"] {
        let bytes = Guest::new(&analysis_manifest(1))
            .omit(export)
            .analyze("(i64.const 0)")
            .build();
        let err = refused(&engine, &bytes);
        assert!(
            matches!(err, WasmError::MissingExport { ref name, .. } if name == export),
            "{export}: {err:?}"
        );
    }
    // Declared analysis without its export; declared UDF without its export.
    let err = refused(&engine, &Guest::new(&analysis_manifest(1)).build());
    assert!(
        matches!(err, WasmError::MissingExport { ref name, .. } if name == "sandbox_analyze"),
        "{err:?}"
    );
    let err = refused(&engine, &Guest::new(&udf_manifest("score", 2)).build());
    assert!(
        matches!(err, WasmError::MissingExport { ref name, .. } if name == "sandbox_udf_score"),
        "{err:?}"
    );
    // Wrong signatures.
    let bytes = Guest::new(&analysis_manifest(1))
        .omit("sandbox_alloc")
        .field(r#"(func (export "sandbox_alloc") (param i64) (result i32) (i32.const 0))"#)
        .analyze("(i64.const 0)")
        .build();
    let err = refused(&engine, &bytes);
    assert!(
        matches!(err, WasmError::ExportType { ref name, .. } if name == "sandbox_alloc"),
        "{err:?}"
    );
    let bytes = Guest::new(&analysis_manifest(1))
        .field(r#"(func (export "sandbox_analyze") (param i32) (result i64) (i64.const 0))"#)
        .build();
    let err = refused(&engine, &bytes);
    assert!(
        matches!(err, WasmError::ExportType { ref name, .. } if name == "sandbox_analyze"),
        "{err:?}"
    );
    // `memory` exported as something else.
    let bytes = Guest::new(&analysis_manifest(1))
        .omit("memory")
        .field(r#"(global (export "memory") i32 (i32.const 0))"#)
        .analyze("(i64.const 0)")
        .build();
    let err = refused(&engine, &bytes);
    assert!(
        matches!(err, WasmError::MissingExport { ref name, .. } if name == "memory"),
        "{err:?}"
    );
    assert_healthy(&engine);
}

#[test]
fn bad_manifests_are_refused() {
    let engine = engine();
    let udf = |name: &str, returns: &str, bounds: &str| {
        format!(
            r#"{{"abi":1,"udfs":[{{"name":"{name}","args":["float64"],"returns":"{returns}","bounds":{bounds}}}]}}"#
        )
    };
    let cases = [
        ("not JSON", "hello".to_string()),
        ("wrong ABI", r#"{"abi":2,"udfs":[]}"#.to_string()),
        ("nothing declared", r#"{"abi":1,"udfs":[]}"#.to_string()),
        ("inverted bounds", udf("f", "float64", "[1.0,0.0]")),
        ("empty bounds", udf("f", "float64", "[1.0,1.0]")),
        ("huge bounds", udf("f", "float64", "[-1e400,0.0]")),
        ("int return", udf("f", "int64", "[0.0,1.0]")),
        ("uppercase name", udf("Score", "float64", "[0.0,1.0]")),
        ("name with a dash", udf("a-b", "float64", "[0.0,1.0]")),
        ("leading digit", udf("1f", "float64", "[0.0,1.0]")),
        (
            "duplicate UDF",
            r#"{"abi":1,"udfs":[{"name":"f","args":["float64"],"returns":"float64","bounds":[0,1]},{"name":"f","args":["float64"],"returns":"float64","bounds":[0,1]}]}"#
                .to_string(),
        ),
        (
            "no arguments",
            r#"{"abi":1,"udfs":[{"name":"f","args":[],"returns":"float64","bounds":[0,1]}]}"#.to_string(),
        ),
        (
            "unknown argument type",
            r#"{"abi":1,"udfs":[{"name":"f","args":["decimal"],"returns":"float64","bounds":[0,1]}]}"#.to_string(),
        ),
        (
            "no outputs",
            r#"{"abi":1,"analysis":{"name":"a","outputs":[]}}"#.to_string(),
        ),
        (
            "duplicate output",
            r#"{"abi":1,"analysis":{"name":"a","outputs":[{"name":"x","lower":0,"upper":1},{"name":"x","lower":0,"upper":1}]}}"#
                .to_string(),
        ),
        (
            "output name with a space",
            r#"{"abi":1,"analysis":{"name":"a","outputs":[{"name":"x y","lower":0,"upper":1}]}}"#.to_string(),
        ),
    ];
    for (what, manifest) in cases {
        let bytes = Guest::new(&manifest)
            .udf("f", "(i64.const 0)")
            .analyze("(i64.const 0)")
            .build();
        let err = refused(&engine, &bytes);
        assert!(matches!(err, WasmError::InvalidManifest(_)), "{what}: {err:?}");
    }
    // Invalid UTF-8.
    let bytes = Guest::new("\u{0}")
        .blob(&[0xff, 0xfe, 0xfd])
        .omit("sandbox_manifest")
        .field(&format!(
            r#"(func (export "sandbox_manifest") (result i64) {})"#,
            ret(16 * 1024, 3)
        ))
        .analyze("(i64.const 0)")
        .build();
    let err = refused(&engine, &bytes);
    assert!(matches!(err, WasmError::InvalidManifest(_)), "{err:?}");
    assert_healthy(&engine);
}

#[test]
fn manifest_pointing_outside_memory_or_trapping_is_refused() {
    let engine = engine();
    for body in [
        ret(0x7fff_0000, 100),
        ret(MANIFEST_AT, 0x00ff_ffff),
        "(unreachable)".to_string(),
    ] {
        let bytes = Guest::new(&analysis_manifest(1))
            .omit("sandbox_manifest")
            .field(&format!(r#"(func (export "sandbox_manifest") (result i64) {body})"#))
            .analyze("(i64.const 0)")
            .build();
        let err = refused(&engine, &bytes);
        assert!(
            matches!(err, WasmError::BadOutput { .. } | WasmError::Trap { .. }),
            "{body}: {err:?}"
        );
    }
    assert_healthy(&engine);
}

#[test]
fn undeclared_udf_exports_are_tolerated() {
    let engine = engine();
    let bytes = Guest::new(&analysis_manifest(1))
        .udf("hidden", "(i64.const 0)")
        .analyze(&ret(16 * 1024, 8))
        .blob(&1.0f64.to_le_bytes())
        .build();
    let module = engine.admit(&bytes).expect("admitted");
    let err = engine
        .call_udf(&module, "hidden", &super::guests::f64_batch(&[&[1.0]]))
        .expect_err("undeclared");
    assert!(matches!(err, WasmError::UnknownUdf(ref n) if n == "hidden"), "{err:?}");
}
