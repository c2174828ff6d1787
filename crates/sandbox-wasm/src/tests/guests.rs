//! Guests written in WAT for the tests: a builder for the ABI's fixed parts
//! (memory, bump allocator, manifest) plus hand-written entry points.

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::writer::StreamWriter;
use std::sync::Arc;

/// Where the manifest JSON lives in guest memory.
pub(crate) const MANIFEST_AT: u32 = 1024;
/// Where a test's blob (canned output) lives.
pub(crate) const BLOB_AT: u32 = 16 * 1024;
/// Start of the bump allocator's heap (page 1).
pub(crate) const HEAP_START: u32 = 64 * 1024;

/// A WAT string literal holding `bytes`.
pub(crate) fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// `(i64.const pack(ptr, len))`.
pub(crate) fn ret(ptr: u32, len: u32) -> String {
    format!("(i64.const {})", sandbox_abi::pack(ptr, len))
}

/// A guest module under construction.
pub(crate) struct Guest {
    manifest: String,
    imports: Vec<String>,
    fields: Vec<String>,
    blob: Vec<u8>,
    memory: String,
    omit: Vec<&'static str>,
}

impl Guest {
    pub(crate) fn new(manifest: &str) -> Self {
        Guest {
            manifest: manifest.to_string(),
            imports: Vec::new(),
            fields: Vec::new(),
            blob: Vec::new(),
            memory: "2".into(),
            omit: Vec::new(),
        }
    }

    /// Adds a module field (a function, table, global…).
    pub(crate) fn field(mut self, wat: &str) -> Self {
        self.fields.push(wat.to_string());
        self
    }

    /// `(func (export "sandbox_analyze") (param i32 i32) (result i64) BODY)`.
    pub(crate) fn analyze(self, body: &str) -> Self {
        self.field(&format!(
            r#"(func (export "sandbox_analyze") (param $ptr i32) (param $len i32) (result i64) {body})"#
        ))
    }

    /// `(func (export "sandbox_udf_NAME") (param i32 i32) (result i64) BODY)`.
    pub(crate) fn udf(self, name: &str, body: &str) -> Self {
        self.field(&format!(
            r#"(func (export "sandbox_udf_{name}") (param $ptr i32) (param $len i32) (result i64) {body})"#
        ))
    }

    pub(crate) fn import(mut self, wat: &str) -> Self {
        self.imports.push(wat.to_string());
        self
    }

    pub(crate) fn blob(mut self, bytes: &[u8]) -> Self {
        self.blob = bytes.to_vec();
        self
    }

    /// The memory's limits, e.g. `"2"` or `"2 4"` (pages).
    pub(crate) fn memory(mut self, limits: &str) -> Self {
        self.memory = limits.to_string();
        self
    }

    /// Leaves out one of the standard exports (`memory`, `sandbox_alloc`,
    /// `sandbox_dealloc`, `sandbox_manifest`).
    pub(crate) fn omit(mut self, export: &'static str) -> Self {
        self.omit.push(export);
        self
    }

    pub(crate) fn wat(&self) -> String {
        let keep = |name: &str| !self.omit.contains(&name);
        let mut w = String::from("(module\n");
        for import in &self.imports {
            w += &format!("  {import}\n");
        }
        let export = |name: &str| {
            if keep(name) {
                format!(r#"(export "{name}")"#)
            } else {
                String::new()
            }
        };
        w += &format!("  (memory {} {})\n", export("memory"), self.memory);
        w += &format!("  (global $bump (mut i32) (i32.const {HEAP_START}))\n");
        // Bump allocator: 8-byte aligned, grows memory when needed, 0 on failure.
        w += &format!(
            r#"  (func {} (param $len i32) (result i32) (local $p i32) (local $end i32)
    (local.set $p (global.get $bump))
    (local.set $end (i32.and (i32.add (i32.add (local.get $p) (local.get $len)) (i32.const 7)) (i32.const -8)))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (i32.shl (memory.size) (i32.const 16))) (i32.const 65535)) (i32.const 16))) (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $bump (local.get $end))
    (local.get $p))
"#,
            export("sandbox_alloc")
        );
        w += &format!("  (func {} (param i32 i32))\n", export("sandbox_dealloc"));
        w += &format!(
            "  (func {} (result i64) {})\n",
            export("sandbox_manifest"),
            ret(MANIFEST_AT, self.manifest.len() as u32)
        );
        w += &format!(
            "  (data (i32.const {MANIFEST_AT}) \"{}\")\n",
            wat_bytes(self.manifest.as_bytes())
        );
        if !self.blob.is_empty() {
            w += &format!("  (data (i32.const {BLOB_AT}) \"{}\")\n", wat_bytes(&self.blob));
        }
        for field in &self.fields {
            w += &format!("  {field}\n");
        }
        w += ")\n";
        w
    }

    pub(crate) fn build(&self) -> Vec<u8> {
        wat::parse_str(self.wat()).expect("test guest WAT parses")
    }
}

/// A manifest with an analysis of `n` outputs `o0…` bounded by [-100, 100].
pub(crate) fn analysis_manifest(n: usize) -> String {
    let outputs: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"name":"o{i}","lower":-100.0,"upper":100.0}}"#))
        .collect();
    format!(
        r#"{{"abi":1,"udfs":[],"analysis":{{"name":"test","outputs":[{}]}}}}"#,
        outputs.join(",")
    )
}

/// A manifest with one Float64 UDF of `args` arguments bounded by [0, 1].
pub(crate) fn udf_manifest(name: &str, args: usize) -> String {
    let args: Vec<&str> = vec![r#""float64""#; args];
    format!(
        r#"{{"abi":1,"udfs":[{{"name":"{name}","args":[{}],"returns":"float64","bounds":[0.0,1.0]}}]}}"#,
        args.join(",")
    )
}

/// An analysis guest whose `sandbox_analyze` runs `body`.
pub(crate) fn analysis_guest(body: &str) -> Vec<u8> {
    Guest::new(&analysis_manifest(1)).analyze(body).build()
}

/// A one-argument UDF guest `f` whose body is `body`.
pub(crate) fn udf_guest(body: &str) -> Vec<u8> {
    Guest::new(&udf_manifest("f", 1)).udf("f", body).build()
}

/// Little-endian bytes of `values`.
pub(crate) fn f64_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The well-behaved guest: UDF `echo` (returns its input, which for one
/// Float64 column is a valid result) and an analysis returning
/// [1.0, -2.5, 1000.0] (the last clamped to 100).
pub(crate) fn good_guest() -> Vec<u8> {
    let manifest = r#"{"abi":1,"udfs":[{"name":"echo","args":["float64"],"returns":"float64","bounds":[0.0,1.0]}],"analysis":{"name":"const","outputs":[{"name":"a","lower":-100.0,"upper":100.0},{"name":"b","lower":-100.0,"upper":100.0},{"name":"c","lower":-100.0,"upper":100.0}]}}"#;
    Guest::new(manifest)
        .blob(&f64_bytes(&[1.0, -2.5, 1000.0]))
        .udf(
            "echo",
            "(i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len)))",
        )
        .analyze(&ret(BLOB_AT, 24))
        .build()
}

/// One batch of Float64 columns `c0…`.
pub(crate) fn f64_batch(columns: &[&[f64]]) -> RecordBatch {
    let fields: Vec<Field> = (0..columns.len())
        .map(|i| Field::new(format!("c{i}"), DataType::Float64, true))
        .collect();
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|c| Arc::new(Float64Array::from(c.to_vec())) as ArrayRef)
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("test batch")
}

/// One batch with an Int64 column.
pub(crate) fn i64_batch(values: &[i64]) -> RecordBatch {
    let schema = Schema::new(vec![Field::new("n", DataType::Int64, true)]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(Int64Array::from(values.to_vec())) as ArrayRef],
    )
    .expect("test batch")
}

/// `batch` as an Arrow IPC stream (a canned guest output).
pub(crate) fn ipc_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema()).expect("ipc writer");
    writer.write(batch).expect("ipc write");
    writer.finish().expect("ipc finish");
    writer.into_inner().expect("ipc bytes")
}
