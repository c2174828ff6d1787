//! Write data-sandbox jobs as plain Rust functions.
//!
//! A *job* is a WebAssembly module (`wasm32-unknown-unknown`, crate type
//! `cdylib`) that the sandbox runs next to conditionally open data. It may
//! declare
//!
//! * **UDFs** — scalar functions of numeric columns, called on batches of rows,
//!   one `f64` result per row, each result clamped by the host to the UDF's
//!   declared bounds;
//! * one **analysis** — a function of a whole batch returning a fixed list of
//!   named `f64` outputs, each clamped to its declared bounds (the host then
//!   adds the privacy noise it is configured for before anything is released).
//!
//! This crate hides the ABI ([`sandbox_abi`], version 1): you write ordinary
//! functions and list them in [`export!`], which generates the exports
//! (`sandbox_manifest`, `sandbox_udf_<name>`, `sandbox_analyze`); the SDK
//! itself exports the allocator (`sandbox_alloc`, `sandbox_dealloc`, see
//! [`mem`]). The guest imports nothing, so it has no file system, clock,
//! network or randomness: jobs must be deterministic.
//!
//! # Example
//!
//! ```
//! use sandbox_sdk::{RecordBatch, SdkError, column_f64};
//!
//! /// Per-row UDF: a plain `fn(f64, f64) -> f64`. Nulls arrive as NaN.
//! fn ratio(a: f64, b: f64) -> f64 {
//!     if b > 0.0 { (a / b).clamp(0.0, 1.0) } else { 0.0 }
//! }
//!
//! /// Analysis: a plain function of the batch returning the declared outputs
//! /// in order (`Vec<f64>`, `[f64; N]`, or a `Result` of either).
//! fn mean_a(batch: &RecordBatch) -> Result<[f64; 2], SdkError> {
//!     let a = column_f64(batch, "a")?;
//!     let seen: Vec<f64> = a.into_iter().filter(|v| !v.is_nan()).collect();
//!     let n = seen.len() as f64;
//!     let mean = if n > 0.0 { seen.iter().sum::<f64>() / n } else { 0.0 };
//!     Ok([mean, n])
//! }
//!
//! sandbox_sdk::export! {
//!     udf ratio(a: f64, b: f64) -> f64 in [0.0, 1.0] => ratio;
//!     analysis summary(batch: &RecordBatch) -> [mean in [-100.0, 100.0], n in [0.0, 1e6]] => mean_a;
//! }
//!
//! # fn main() {
//! // The same declaration is callable on the host, which is how a job is
//! // unit-tested before it is compiled to wasm:
//! assert_eq!(
//!     SANDBOX_JOB.manifest_json(),
//!     r#"{"abi":1,"udfs":[{"name":"ratio","args":["float64","float64"],"returns":"float64","bounds":[0.0,1.0]}],"analysis":{"name":"summary","outputs":[{"name":"mean","lower":-100.0,"upper":100.0},{"name":"n","lower":0.0,"upper":1000000.0}]}}"#
//! );
//! use std::sync::Arc;
//! use sandbox_sdk::arrow_array::{ArrayRef, Float64Array};
//! let batch = RecordBatch::try_from_iter([
//!     ("a", Arc::new(Float64Array::from(vec![Some(1.0), None, Some(3.0)])) as ArrayRef),
//!     ("b", Arc::new(Float64Array::from(vec![2.0, 2.0, 2.0])) as ArrayRef),
//! ]).unwrap();
//! let r = SANDBOX_JOB.call_udf("ratio", &batch).unwrap();
//! assert_eq!(r[0], 0.5);
//! assert_eq!(SANDBOX_JOB.analyze(&batch).unwrap(), vec![2.0, 2.0]);
//! # }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-unknown-unknown` from
//! a crate with `crate-type = ["cdylib"]` and a release profile with
//! `panic = "abort"` (see `docs/wasm.md` and `scripts/build-guests.sh` in the
//! repository).
//!
//! # Data conventions
//!
//! * Inputs arrive as an Arrow IPC stream of one record batch.
//! * UDF arguments are the batch's columns **by position** (the host sends
//!   exactly one column per declared argument, in order; names are ignored).
//!   Numeric columns of any integer or float type, Boolean (1.0/0.0) and Null
//!   are converted to `f64`; **nulls become NaN**. Any other type, or the wrong
//!   number of columns, fails the call with [`sandbox_abi::ERR_BAD_INPUT`].
//! * An analysis gets the whole [`RecordBatch`]; [`column_f64`] reads a column
//!   by name with the same conversion (nulls → NaN).
//! * Outputs may be any `f64`; the host clamps them to the declared bounds and
//!   decides what a NaN means (see the host's documentation). A UDF must
//!   return exactly one value per row and an analysis exactly one value per
//!   declared output, or the call fails with [`sandbox_abi::ERR_OUTPUT`].
//!
//! # Panics
//!
//! A panic in a job is not caught: guests are built with `panic = "abort"`, so
//! it traps the wasm instance, which the host reports as a failed call. The
//! SDK records the panic's message and location first (see [`diagnostics`]),
//! and the host shows it on trial calls (generated inputs before a job is
//! charged, and trial runs on a dataset's public sample). The
//! SDK's own code paths that run in the guest do not `unwrap`; the only
//! aborts they can reach are those of the Rust allocator on memory exhaustion
//! (also a trap).
#![deny(unsafe_op_in_unsafe_fn)]

pub mod diagnostics;

/// The `rust` snippets of the repository's `docs/wasm.md`, compiled and run
/// as doctests so that the guide's code stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/wasm.md")]
mod wasm_guide {}
pub mod error;
pub mod ipc;
pub mod job;
pub mod mem;

pub use arrow_array::{self, RecordBatch};
pub use arrow_buffer;
pub use arrow_ipc;
pub use arrow_schema;
/// Portable math (`exp`, `log1p`, `pow`, …): the same Rust code, and so the
/// same bits, on every platform. `f64::exp` and friends call the platform's
/// C library natively but a different implementation on `wasm32`, so a job
/// that must reproduce its native results exactly (a scoring model checked
/// against the bank's own systems, say) uses these instead.
pub use libm;
pub use sandbox_abi;

pub use error::SdkError;
pub use ipc::{column_f64, to_f64_vec};
pub use job::{Analysis, IntoOutputs, Job, Output, RowFn, Udf};

/// Items used by the code [`export!`] generates. Not a stable API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::job::ffi;
    pub use crate::job::{run_rows, validate};
    pub use core::option::Option::{self, None, Some};
    pub use core::result::Result;
    pub use std::vec::Vec;
}

/// Declare a job's functions and their output contracts, and generate its
/// wasm exports.
///
/// ```text
/// sandbox_sdk::export! {
///     // zero or more UDFs (1 to 12 f64 arguments), in any order with the analysis:
///     udf NAME(ARG: f64, ...) -> f64 in [LOWER, UPPER] => ROW_FN;
///     // at most one analysis:
///     analysis NAME(BATCH: &RecordBatch) -> [OUT in [LOWER, UPPER], ...] => ANALYSIS_FN;
/// }
/// ```
///
/// * `ROW_FN` is any `fn(f64, ..., f64) -> f64` with one parameter per
///   declared argument, called once per row (nulls arrive as NaN). UDFs are
///   per-row by design: a row's value must depend on that row only (see
///   [`RowFn`]).
/// * `ANALYSIS_FN` is any `fn(&RecordBatch) -> R` where `R` is `Vec<f64>`,
///   `[f64; N]` or a `Result` of either whose error converts into [`SdkError`]
///   (e.g. `SdkError` itself, `String`, `&str`; see [`IntoOutputs`]);
///   it returns the outputs in declared order. `RecordBatch` must be in scope
///   (`use sandbox_sdk::RecordBatch;`).
/// * Bounds are constant `f64` expressions; they must be finite with
///   `LOWER < UPPER`. UDF names must be lowercase (`[a-z0-9_]`, they become
///   SQL function names); all names must be unique and at most 64 bytes — all
///   checked at compile time ([`job::validate`]), with the host's own rules.
///
/// A function whose signature does not match its declaration is a type error:
///
/// ```compile_fail
/// fn f(x: f64) -> f64 { x }
/// sandbox_sdk::export! { udf f(x: f64, y: f64) -> f64 in [0.0, 1.0] => f; }
/// # fn main() {}
/// ```
///
/// and so are bad bounds, duplicate or upper-case UDF names and empty jobs:
///
/// ```compile_fail
/// fn f(x: f64) -> f64 { x }
/// sandbox_sdk::export! { udf f(x: f64) -> f64 in [1.0, 1.0] => f; }
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// fn f(x: f64) -> f64 { x }
/// sandbox_sdk::export! { udf Risk(x: f64) -> f64 in [0.0, 1.0] => f; }
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// sandbox_sdk::export! {}
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// fn f(x: f64) -> f64 { x }
/// sandbox_sdk::export! { udf f(x: f64) -> f64 in [1.0, 0.0] => f; }
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// fn f(x: f64) -> f64 { x }
/// sandbox_sdk::export! { udf f(x: f64) -> f64 in [0.0, f64::INFINITY] => f; }
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// use sandbox_sdk::RecordBatch;
/// fn a(_: &RecordBatch) -> Vec<f64> { vec![0.0, 0.0] }
/// sandbox_sdk::export! { analysis a(b: &RecordBatch) -> [x in [0.0, 1.0], x in [0.0, 1.0]] => a; }
/// # fn main() {}
/// ```
///
/// while this compiles (the control case for the examples above):
///
/// ```
/// use sandbox_sdk::RecordBatch;
/// fn a(_: &RecordBatch) -> Vec<f64> { vec![0.0, 0.0] }
/// fn f(x: f64) -> f64 { x }
/// sandbox_sdk::export! {
///     udf f(x: f64) -> f64 in [0.0, 1.0] => f;
///     analysis a(b: &RecordBatch) -> [x in [0.0, 1.0], y in [0.0, 1.0]] => a;
/// }
/// # fn main() {}
/// ```
///
/// The macro defines `pub static SANDBOX_JOB: sandbox_sdk::Job` in the
/// invoking module (use it in host-side tests) and, when compiling for
/// `wasm32`, the exports `sandbox_manifest`, `sandbox_udf_<NAME>` and
/// `sandbox_row_<NAME>` (the same function on one row's values, which the
/// host calls row by row in one instance when it can prove the function
/// keeps no state; see [`sandbox_abi::ROW_PREFIX`]) for each UDF and
/// `sandbox_analyze` if there is an analysis. Invoke it once per guest.
#[macro_export]
macro_rules! export {
    ($($body:tt)*) => {
        $crate::__export_parse! { [] [] $($body)* }
    };
}

/// The muncher behind [`export!`]: collects UDFs in the first bracket and the
/// analysis in the second, then emits everything.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_parse {
    // A per-row UDF.
    ([$($u:tt)*] [$($a:tt)*]
        udf $name:ident ( $($arg:ident : f64),+ $(,)? ) -> f64 in [ $lo:expr , $hi:expr $(,)? ]
        => $f:path ; $($rest:tt)*) => {
        $crate::__export_parse! { [$($u)* { $name ($($arg)+) ($lo) ($hi) ($f) }] [$($a)*] $($rest)* }
    };
    // The analysis.
    ([$($u:tt)*] []
        analysis $name:ident ( $batch:ident : $bty:ty $(,)? )
        -> [ $( $out:ident in [ $olo:expr , $ohi:expr $(,)? ] ),+ $(,)? ]
        => $f:path ; $($rest:tt)*) => {
        $crate::__export_parse! { [$($u)*] [{ $name ($bty) ($f) $( ($out ($olo) ($ohi)) )+ }] $($rest)* }
    };
    ([$($u:tt)*] [$($a:tt)+] analysis $($rest:tt)*) => {
        ::core::compile_error!("sandbox_sdk::export!: a job declares at most one analysis");
    };
    // Everything parsed: emit (the last rule handles anything unparsable).
    ([$( { $name:ident ($($arg:ident)+) ($lo:expr) ($hi:expr) ($f:path) } )*]
     [$( { $aname:ident ($bty:ty) ($af:path) $( ($out:ident ($olo:expr) ($ohi:expr)) )+ } )?]) => {
        /// This guest's declaration, generated by `sandbox_sdk::export!`.
        pub static SANDBOX_JOB: $crate::Job = {
            const JOB: $crate::Job = $crate::Job {
                udfs: &[$(
                    $crate::Udf {
                        name: ::core::stringify!($name),
                        args: &[$(::core::stringify!($arg)),+],
                        lower: $lo,
                        upper: $hi,
                        run: |batch| {
                            let f: fn($($crate::__export_f64!($arg)),+) -> f64 = $f;
                            $crate::__private::run_rows(batch, f)
                        },
                    }
                ),*],
                analysis: {
                    let analysis: $crate::__private::Option<$crate::Analysis> = $crate::__private::None;
                    $(
                        let analysis = $crate::__private::Some($crate::Analysis {
                            name: ::core::stringify!($aname),
                            outputs: &[$(
                                $crate::Output { name: ::core::stringify!($out), lower: $olo, upper: $ohi }
                            ),+],
                            run: |batch| {
                                let f: fn($bty) -> _ = $af;
                                $crate::IntoOutputs::into_outputs(f(batch))
                            },
                        });
                    )?
                    analysis
                },
            };
            const _: () = $crate::__private::validate(&JOB);
            JOB
        };

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(export_name = "sandbox_manifest")]
            extern "C" fn __sandbox_manifest() -> i64 {
                $crate::__private::ffi::manifest(&SANDBOX_JOB)
            }
            $(
                const _: () = {
                    #[unsafe(export_name = ::core::concat!("sandbox_udf_", ::core::stringify!($name)))]
                    extern "C" fn __sandbox_udf(ptr: i32, len: i32) -> i64 {
                        // SAFETY: the host calls this with a buffer it got from
                        // `sandbox_alloc` and filled (ABI version 1).
                        unsafe { $crate::__private::ffi::udf(&SANDBOX_JOB, ::core::stringify!($name), ptr, len) }
                    }
                    // The same function on one row's values: no memory, no
                    // allocation, so the host can prove it stateless and
                    // call it row by row in one instance.
                    #[unsafe(export_name = ::core::concat!("sandbox_row_", ::core::stringify!($name)))]
                    extern "C" fn __sandbox_row($($arg: f64),+) -> f64 {
                        let f: fn($($crate::__export_f64!($arg)),+) -> f64 = $f;
                        f($($arg),+)
                    }
                };
            )*
            $(
                #[unsafe(export_name = "sandbox_analyze")]
                extern "C" fn __sandbox_analyze(ptr: i32, len: i32) -> i64 {
                    let _ = ::core::stringify!($aname);
                    // SAFETY: the host calls this with a buffer it got from
                    // `sandbox_alloc` and filled (ABI version 1).
                    unsafe { $crate::__private::ffi::analyze(&SANDBOX_JOB, ptr, len) }
                }
            )?
        };
    };
    ([$($u:tt)*] [$($a:tt)*] $($rest:tt)+) => {
        ::core::compile_error!(::core::concat!(
            "sandbox_sdk::export!: expected `udf NAME(ARG: f64, ...) -> f64 in [LOWER, UPPER] => FN;` or ",
            "`analysis NAME(BATCH: &RecordBatch) -> [OUT in [LOWER, UPPER], ...] => FN;`, found: ",
            ::core::stringify!($($rest)+)
        ));
    };
}

/// `f64`, once per argument (for the function-pointer type of a UDF).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_f64 {
    ($arg:ident) => {
        f64
    };
}
