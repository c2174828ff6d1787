//! # sandbox-wasm
//!
//! The WebAssembly host runtime: the only crate that names wasmtime. It
//! owns everything between a job's module bytes and the numbers that come
//! back — admission, limits, instances and the host side of the guest ABI
//! (`sandbox-abi`). It knows nothing of SQL, policies or privacy budgets.
//!
//! Where it sits on a job's path:
//!
//! ```text
//! job submitted with a .wasm ── admit(bytes) ──► ModuleHandle (SHA-256 for the audit record,
//!                                                 validated manifest with public bounds)
//! SQL UDF (DataFusion adapter, sandbox-sql/runtime) ── call_udf(batch) ──► Float64 per row, clamped
//! analysis block (sample and aggregate, sandbox-runtime) ── call_analyze(block) ──► Vec<f64>, clamped
//!                                                 ──► noise and release elsewhere (sandbox-dp)
//! ```
//!
//! Every call gets a fresh instance (no state survives between calls or
//! blocks); the one exception is a UDF whose per-row export is proven, from
//! its code, unable to write state ([`RowExport::Stateless`]), whose rows
//! share one instance per batch, one call each. Calls run under a wall-clock deadline (epoch interruption), an optional fuel cap, a
//! memory and table cap and a stack cap; see [`RuntimeConfig`] for every
//! limit and its default. Guests may import nothing: no files, clock,
//! network, environment or randomness. Failures are [`WasmError`]s; show
//! analysts only [`WasmError::public_message`].
//!
//! ```
//! use arrow::array::{Float64Array, RecordBatch};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use sandbox_wasm::{RuntimeConfig, SandboxEngine};
//! use std::sync::Arc;
//!
//! // A guest whose analysis returns the constant vector [1.5, 20.0]
//! // (20.0 is clamped to its declared upper bound, 10.0).
//! let manifest = concat!(
//!     r#"{"abi":1,"udfs":[],"analysis":{"name":"demo","outputs":["#,
//!     r#"{"name":"a","lower":0.0,"upper":10.0},{"name":"b","lower":0.0,"upper":10.0}]}}"#
//! );
//! let wat = format!(
//!     r#"(module
//!       (memory (export "memory") 2)
//!       (data (i32.const 1024) "{json}")
//!       (data (i32.const 4096) "\00\00\00\00\00\00\f8\3f\00\00\00\00\00\00\34\40")
//!       (func (export "sandbox_alloc") (param i32) (result i32) (i32.const 65536))
//!       (func (export "sandbox_dealloc") (param i32 i32))
//!       (func (export "sandbox_manifest") (result i64)
//!         (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const {len})))
//!       (func (export "sandbox_analyze") (param i32 i32) (result i64)
//!         (i64.or (i64.shl (i64.const 4096) (i64.const 32)) (i64.const 16))))"#,
//!     json = manifest.replace('"', "\\\""),
//!     len = manifest.len(),
//! );
//! let bytes = wat::parse_str(&wat)?;
//!
//! let engine = SandboxEngine::new(RuntimeConfig::builder().max_instances(2).build()?)?;
//! let module = engine.admit(&bytes)?;
//! assert_eq!(module.digest_hex().len(), 64);
//!
//! let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, false)]));
//! let block = RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(vec![1.0, 2.0]))])?;
//! assert_eq!(engine.call_analyze(&module, &block)?, vec![1.5, 10.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod admission;
mod cache;
mod call;
mod config;
mod engine;
mod epoch;
mod error;
mod ipc;
mod limiter;
mod manifest;
mod module;
mod slots;
mod stateless;
mod trial;

#[cfg(test)]
mod tests;

pub use admission::ALLOWED_HOST_IMPORTS;
pub use config::{AllocationStrategy, RuntimeConfig, RuntimeConfigBuilder, WASM_PAGE_BYTES};
pub use engine::SandboxEngine;
pub use error::WasmError;
pub use manifest::{AnalysisSpec, ArgType, Bounds, MAX_NAME_LEN, MAX_UDF_ARGS, Manifest, OutputSpec, UdfSpec};
pub use module::ModuleHandle;
pub use stateless::RowExport;
pub use trial::{GuestFailure, trial_batch};
