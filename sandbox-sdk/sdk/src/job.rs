//! A job's declaration ([`Job`]), its manifest, and the typed calls that the
//! generated exports (and host-side tests) go through.

use std::fmt::Write as _;

use arrow_array::RecordBatch;

use crate::SdkError;
use crate::ipc;

/// Everything a guest declares: its UDFs and at most one analysis.
///
/// Built by [`export!`](crate::export), which names it `SANDBOX_JOB`; a job's
/// host-side tests can call it directly ([`Job::call_udf`], [`Job::analyze`]).
#[derive(Debug, Clone, Copy)]
pub struct Job {
    /// The scalar functions, exported as `sandbox_udf_<name>`.
    pub udfs: &'static [Udf],
    /// The analysis, exported as `sandbox_analyze`, if any.
    pub analysis: Option<Analysis>,
}

/// A declared UDF: `name(args...) -> f64`, every result clamped by the host to
/// `[lower, upper]`.
#[derive(Debug, Clone, Copy)]
pub struct Udf {
    /// The function's name (the export is `sandbox_udf_<name>`).
    pub name: &'static str,
    /// Names of its arguments, in input-column order (all `float64`).
    pub args: &'static [&'static str],
    /// Lower bound of every result.
    pub lower: f64,
    /// Upper bound of every result.
    pub upper: f64,
    /// Computes one result per input row from the input batch.
    pub run: fn(&RecordBatch) -> Result<Vec<f64>, SdkError>,
}

/// A declared analysis: one batch in, a fixed list of bounded `f64` outputs.
#[derive(Debug, Clone, Copy)]
pub struct Analysis {
    /// The analysis's name (informational; the export is `sandbox_analyze`).
    pub name: &'static str,
    /// Its outputs, in the order it returns them.
    pub outputs: &'static [Output],
    /// Computes the outputs from the input batch.
    pub run: fn(&RecordBatch) -> Result<Vec<f64>, SdkError>,
}

/// One declared analysis output and the bounds the host clamps it to.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// The output's name.
    pub name: &'static str,
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
}

impl Job {
    /// The UDF named `name`, if declared.
    pub fn udf(&self, name: &str) -> Option<&Udf> {
        self.udfs.iter().find(|u| u.name == name)
    }

    /// The manifest the guest returns from `sandbox_manifest`, e.g.
    ///
    /// ```json
    /// {"abi":1,"udfs":[{"name":"risk_score","args":["float64","float64"],"returns":"float64","bounds":[0.0,1.0]}],
    ///  "analysis":{"name":"default_model","outputs":[{"name":"intercept","lower":-10.0,"upper":10.0}]}}
    /// ```
    ///
    /// (on one line; `"analysis"` is left out when there is none).
    pub fn manifest_json(&self) -> String {
        let mut s = String::with_capacity(256);
        let _ = write!(s, "{{\"abi\":{},\"udfs\":[", sandbox_abi::ABI_VERSION);
        for (i, u) in self.udfs.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"name\":");
            json_str(&mut s, u.name);
            s.push_str(",\"args\":[");
            for j in 0..u.args.len() {
                if j > 0 {
                    s.push(',');
                }
                s.push_str("\"float64\"");
            }
            s.push_str("],\"returns\":\"float64\",\"bounds\":[");
            json_num(&mut s, u.lower);
            s.push(',');
            json_num(&mut s, u.upper);
            s.push_str("]}");
        }
        s.push(']');
        if let Some(a) = &self.analysis {
            s.push_str(",\"analysis\":{\"name\":");
            json_str(&mut s, a.name);
            s.push_str(",\"outputs\":[");
            for (i, o) in a.outputs.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str("{\"name\":");
                json_str(&mut s, o.name);
                s.push_str(",\"lower\":");
                json_num(&mut s, o.lower);
                s.push_str(",\"upper\":");
                json_num(&mut s, o.upper);
                s.push('}');
            }
            s.push_str("]}");
        }
        s.push('}');
        s
    }

    /// Run UDF `name` on a decoded batch: one value per row.
    pub fn call_udf(&self, name: &str, batch: &RecordBatch) -> Result<Vec<f64>, SdkError> {
        let udf = self
            .udf(name)
            .ok_or_else(|| SdkError::BadInput(format!("no UDF named `{name}`")))?;
        let out = (udf.run)(batch)?;
        if out.len() != batch.num_rows() {
            return Err(SdkError::Output(format!(
                "UDF `{name}` returned {} values for {} rows",
                out.len(),
                batch.num_rows()
            )));
        }
        Ok(out)
    }

    /// Run UDF `name` on an Arrow IPC stream, returning the result stream —
    /// exactly what `sandbox_udf_<name>` does inside the guest.
    pub fn call_udf_ipc(&self, name: &str, input: &[u8]) -> Result<Vec<u8>, SdkError> {
        let batch = ipc::decode_batch(input)?;
        ipc::encode_result(self.call_udf(name, &batch)?)
    }

    /// Run the analysis on a decoded batch: one value per declared output.
    pub fn analyze(&self, batch: &RecordBatch) -> Result<Vec<f64>, SdkError> {
        let a = self
            .analysis
            .as_ref()
            .ok_or_else(|| SdkError::BadInput("this job declares no analysis".into()))?;
        let out = (a.run)(batch)?;
        if out.len() != a.outputs.len() {
            return Err(SdkError::Output(format!(
                "analysis `{}` returned {} values but declares {} outputs",
                a.name,
                out.len(),
                a.outputs.len()
            )));
        }
        Ok(out)
    }

    /// Run the analysis on an Arrow IPC stream, returning raw little-endian
    /// `f64`s — exactly what `sandbox_analyze` does inside the guest.
    pub fn analyze_ipc(&self, input: &[u8]) -> Result<Vec<u8>, SdkError> {
        let batch = ipc::decode_batch(input)?;
        Ok(ipc::encode_f64s(&self.analyze(&batch)?))
    }
}

fn json_str(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

/// Bounds are checked finite at compile time; `{:?}` of a finite `f64` is a
/// valid JSON number (`1.0`, `-10.0`, `1e-7`, `1e300`).
fn json_num(s: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(s, "{v:?}");
    } else {
        s.push_str("null");
    }
}

/// What an analysis function may return: the values of its declared outputs
/// in order. Implemented for `Vec<f64>`, `[f64; N]`, and `Result<T, E>` of
/// those where `E: Into<SdkError>` — an [`SdkError`] keeps its code (so `?` on
/// [`column_f64`](crate::column_f64) reports a missing column as bad input),
/// while a `String`, `&str`, boxed error or Arrow error becomes
/// [`SdkError::Guest`].
pub trait IntoOutputs {
    /// Convert into the output values.
    fn into_outputs(self) -> Result<Vec<f64>, SdkError>;
}

impl IntoOutputs for Vec<f64> {
    fn into_outputs(self) -> Result<Vec<f64>, SdkError> {
        Ok(self)
    }
}

impl<const N: usize> IntoOutputs for [f64; N] {
    fn into_outputs(self) -> Result<Vec<f64>, SdkError> {
        Ok(self.to_vec())
    }
}

impl<T: IntoOutputs, E: Into<SdkError>> IntoOutputs for Result<T, E> {
    fn into_outputs(self) -> Result<Vec<f64>, SdkError> {
        match self {
            Ok(v) => v.into_outputs(),
            Err(e) => Err(e.into()),
        }
    }
}

/// A per-row UDF: a plain `fn(f64, ..., f64) -> f64` (1 to 12 arguments),
/// called once per input row.
///
/// UDFs are per-row by design: the sandbox's privacy argument needs each
/// row's value to depend on that row only (the host re-evaluates sampled rows
/// alone and fails a job whose values differ), and a function of one row's
/// `f64`s cannot see the rest of its batch.
pub trait RowFn: Copy {
    /// Number of arguments.
    const ARITY: usize;
    /// Call on row `row` of `cols` (one column per argument).
    fn call_row(self, cols: &[Vec<f64>], row: usize) -> f64;
}

macro_rules! impl_fn_traits {
    ($n:literal: $($i:tt)*) => {
        impl RowFn for fn($(impl_fn_traits!(@f64 $i)),*) -> f64 {
            const ARITY: usize = $n;
            fn call_row(self, cols: &[Vec<f64>], row: usize) -> f64 {
                self($(cell(cols, $i, row)),*)
            }
        }
    };
    (@f64 $i:tt) => { f64 };
}

fn cell(cols: &[Vec<f64>], col: usize, row: usize) -> f64 {
    cols.get(col).and_then(|c| c.get(row)).copied().unwrap_or(f64::NAN)
}

impl_fn_traits!(1: 0);
impl_fn_traits!(2: 0 1);
impl_fn_traits!(3: 0 1 2);
impl_fn_traits!(4: 0 1 2 3);
impl_fn_traits!(5: 0 1 2 3 4);
impl_fn_traits!(6: 0 1 2 3 4 5);
impl_fn_traits!(7: 0 1 2 3 4 5 6);
impl_fn_traits!(8: 0 1 2 3 4 5 6 7);
impl_fn_traits!(9: 0 1 2 3 4 5 6 7 8);
impl_fn_traits!(10: 0 1 2 3 4 5 6 7 8 9);
impl_fn_traits!(11: 0 1 2 3 4 5 6 7 8 9 10);
impl_fn_traits!(12: 0 1 2 3 4 5 6 7 8 9 10 11);

/// The argument columns of a UDF call: exactly `arity` numeric columns, taken
/// by position, converted to `f64` with nulls as NaN.
fn argument_columns(batch: &RecordBatch, arity: usize) -> Result<Vec<Vec<f64>>, SdkError> {
    if batch.num_columns() != arity {
        return Err(SdkError::BadInput(format!(
            "the UDF takes {arity} argument columns but the input has {}",
            batch.num_columns()
        )));
    }
    batch
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            ipc::to_f64_vec(c.as_ref()).map_err(|e| SdkError::BadInput(format!("argument {i}: {}", e.message())))
        })
        .collect()
}

/// Run a per-row UDF over a batch (used by [`export!`](crate::export)).
pub fn run_rows<F: RowFn>(batch: &RecordBatch, f: F) -> Result<Vec<f64>, SdkError> {
    let cols = argument_columns(batch, F::ARITY)?;
    Ok((0..batch.num_rows()).map(|row| f.call_row(&cols, row)).collect())
}

/// Longest name (UDF, analysis or output) the host accepts, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Compile-time checks of a job declaration, evaluated by
/// [`export!`](crate::export) in a `const` so that mistakes are build errors
/// rather than a manifest the host refuses at admission. They mirror the
/// host's rules: the job declares at least one UDF or an analysis; UDF names
/// (which become SQL function names) are lowercase ASCII letters, digits and
/// `_`, not starting with a digit; analysis and output names are ASCII
/// letters, digits and `_`; every name has 1 to [`MAX_NAME_LEN`] bytes; UDF
/// names and output names are unique; every bound is finite with
/// `lower < upper`.
pub const fn validate(job: &Job) {
    if job.udfs.is_empty() && job.analysis.is_none() {
        panic!("sandbox_sdk::export!: declare at least one UDF or an analysis");
    }
    let mut i = 0;
    while i < job.udfs.len() {
        let u = &job.udfs[i];
        check_name(u.name, true);
        check_bounds(u.lower, u.upper);
        let mut j = 0;
        while j < i {
            if str_eq(job.udfs[j].name, u.name) {
                panic!("sandbox_sdk::export!: two UDFs have the same name");
            }
            j += 1;
        }
        i += 1;
    }
    if let Some(a) = &job.analysis {
        check_name(a.name, false);
        let mut i = 0;
        while i < a.outputs.len() {
            let o = &a.outputs[i];
            check_name(o.name, false);
            check_bounds(o.lower, o.upper);
            let mut j = 0;
            while j < i {
                if str_eq(a.outputs[j].name, o.name) {
                    panic!("sandbox_sdk::export!: two analysis outputs have the same name");
                }
                j += 1;
            }
            i += 1;
        }
    }
}

const fn check_name(name: &str, udf: bool) {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME_LEN {
        panic!("sandbox_sdk::export!: names have 1 to 64 bytes");
    }
    if udf && b[0].is_ascii_digit() {
        panic!("sandbox_sdk::export!: UDF names do not start with a digit");
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let ok = if udf {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'
        } else {
            c.is_ascii_alphanumeric() || c == b'_'
        };
        if !ok {
            if udf {
                panic!(
                    "sandbox_sdk::export!: UDF names are lowercase ASCII letters, digits and `_` (they become SQL names)"
                );
            }
            panic!(
                "sandbox_sdk::export!: analysis and output names are ASCII letters, digits and `_` (no raw identifiers)"
            );
        }
        i += 1;
    }
}

const fn check_bounds(lower: f64, upper: f64) {
    if !(lower.is_finite() && upper.is_finite() && lower < upper) {
        panic!("sandbox_sdk::export!: bounds must be finite with lower < upper");
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The bodies of the generated wasm exports.
#[cfg(target_arch = "wasm32")]
pub mod ffi {
    use super::Job;
    use crate::SdkError;

    /// Hand `bytes` to the host as a packed pointer/length (see [`crate::mem`]).
    fn hand_over(bytes: Vec<u8>) -> i64 {
        let (ptr, len) = crate::mem::leak_buffer(bytes);
        sandbox_abi::pack(ptr as usize as u32, len as u32)
    }

    /// Borrow the host's input buffer.
    ///
    /// # Safety
    ///
    /// `(ptr, len)` must describe readable guest memory for the duration of
    /// the call (the host got it from `sandbox_alloc` and wrote the input).
    unsafe fn input<'a>(ptr: i32, len: i32) -> Option<&'a [u8]> {
        let len = usize::try_from(len).ok()?;
        if len == 0 {
            return Some(&[]);
        }
        if ptr == 0 {
            return None;
        }
        // SAFETY: guaranteed by the caller.
        Some(unsafe { core::slice::from_raw_parts(ptr as u32 as usize as *const u8, len) })
    }

    fn finish(result: Result<Vec<u8>, SdkError>) -> i64 {
        match result {
            Ok(bytes) => hand_over(bytes),
            Err(e) => {
                // For the host's trial calls (`sandbox_last_error`).
                crate::diagnostics::record(format_args!("{e}"));
                e.code()
            }
        }
    }

    /// Every entry point starts here: a fresh message, and the panic hook
    /// that records a panic's message before the instance traps.
    fn begin() {
        crate::diagnostics::install_panic_hook();
        crate::diagnostics::clear();
    }

    /// Body of `sandbox_manifest`.
    pub fn manifest(job: &Job) -> i64 {
        hand_over(job.manifest_json().into_bytes())
    }

    /// Body of `sandbox_udf_<name>`.
    ///
    /// # Safety
    ///
    /// As for [`input`]: the host passes a buffer it allocated and filled.
    pub unsafe fn udf(job: &Job, name: &str, ptr: i32, len: i32) -> i64 {
        begin();
        // SAFETY: forwarded from the caller.
        match unsafe { input(ptr, len) } {
            Some(bytes) => finish(job.call_udf_ipc(name, bytes)),
            None => sandbox_abi::ERR_BAD_INPUT,
        }
    }

    /// Body of `sandbox_analyze`.
    ///
    /// # Safety
    ///
    /// As for [`input`]: the host passes a buffer it allocated and filled.
    pub unsafe fn analyze(job: &Job, ptr: i32, len: i32) -> i64 {
        begin();
        // SAFETY: forwarded from the caller.
        match unsafe { input(ptr, len) } {
            Some(bytes) => finish(job.analyze_ipc(bytes)),
            None => sandbox_abi::ERR_BAD_INPUT,
        }
    }
}
