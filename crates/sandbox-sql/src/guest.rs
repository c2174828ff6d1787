//! Row functions supplied by a job (WebAssembly UDFs), as DataFusion
//! scalar functions registered for that job only.
//!
//! This crate does not know WebAssembly: the runtime wraps a guest module in
//! a [`RowFunction`] and the session registers it. Outputs are row-level
//! values, so the checker treats them as measures whose public bounds are
//! the ones the job declared; the adapter clamps every value to them.
//!
//! # What a function's value may depend on
//!
//! A differentially private release needs a unit's contribution to be a
//! function of that unit's rows. A guest can compute anything from the
//! rows one call gives it, so the guarantee is made **by construction**,
//! not by checking: one [`RowFunction::evaluate`] call runs in one fresh
//! instance (nothing survives between calls), and no call is ever given
//! rows of two privacy units.
//!
//! * [`unit_scoped_udf`] is the form that runs: its first argument is the
//!   row's privacy unit (any type, compared as text), the rest are the
//!   function's arguments. Each batch is split by unit, and each unit's rows
//!   (in their order in the batch) go to their own call. Rows whose unit is
//!   NULL carry no protected data (public lookup rows) and share one call.
//!   [`crate::guest_scope::scope_guest_calls`] rewrites a plan's calls of
//!   job functions into this form.
//! * [`GuestUdf`] is the form the user's SQL is planned and checked against
//!   (the function's own arity). Executed directly, it evaluates every row
//!   alone: still sound, but slow; the job path uses the scoped form.
//!
//! A function never fails the job: a call that fails (trap, timeout, error,
//! a wrong number of values) gives each of its rows the default, the
//! midpoint of the bounds. Every other value is clamped to the bounds; NaN
//! becomes NULL. Failure details go to the operator log only.
//!
//! Residual: a unit's rows that the engine delivers in two batches are
//! evaluated in two calls, so a function that looks at more than one row
//! can see where batch boundaries fall, which depends on the rows around
//! them. Functions written with the SDK (`fn(f64, …) -> f64` per row)
//! cannot see other rows at all; see docs/privacy.md.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, RecordBatchOptions, UInt32Array};
use datafusion::arrow::compute::{CastOptions, cast, cast_with_options, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A row-level function of Float64 arguments with public output bounds.
pub trait RowFunction: Send + Sync + fmt::Debug {
    /// The SQL name.
    fn name(&self) -> &str;
    /// Number of arguments (all Float64).
    fn arity(&self) -> usize;
    /// Public bounds of the output; outputs are clamped to them.
    fn bounds(&self) -> (f64, f64);
    /// An identity for caching and audit (e.g. the module's SHA-256).
    fn identity(&self) -> &str;
    /// Evaluates a batch whose columns are the arguments (`arg0`, `arg1`,
    /// …); returns one value per row. Each call must run in a fresh,
    /// stateless context (a fresh WebAssembly instance): the adapters rely
    /// on it to keep privacy units apart. The error text is for the
    /// operator log only.
    fn evaluate(&self, args: &RecordBatch) -> Result<Vec<f64>, String>;
}

/// The default of a row whose call failed: the midpoint of the bounds.
fn default_value(function: &dyn RowFunction) -> f64 {
    let (lo, hi) = function.bounds();
    (lo + hi) / 2.0
}

/// Clamps to the bounds; NaN becomes NULL.
fn clamp(function: &dyn RowFunction, v: f64) -> Option<f64> {
    let (lo, hi) = function.bounds();
    (!v.is_nan()).then(|| v.clamp(lo, hi))
}

/// The Float64 argument columns of a call, from the invocation's arrays.
fn argument_batch(arrays: Vec<ArrayRef>, n: usize) -> DfResult<RecordBatch> {
    let options = CastOptions::default();
    let mut columns = Vec::with_capacity(arrays.len());
    let mut fields = Vec::with_capacity(arrays.len());
    for (i, a) in arrays.into_iter().enumerate() {
        // `safe` casting: a value that does not convert becomes NULL (NaN
        // for the guest); only an impossible type pair is an error, and
        // that depends on the query, not on the data.
        columns.push(cast_with_options(&a, &DataType::Float64, &options)?);
        fields.push(Field::new(format!("arg{i}"), DataType::Float64, true));
    }
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )?)
}

/// Rows of one call: a contiguous range of the batch, or scattered rows.
enum Rows {
    Range(usize, usize),
    Indices(Vec<u32>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Range(_, len) => *len,
            Rows::Indices(v) => v.len(),
        }
    }

    fn push(&mut self, row: usize) {
        match self {
            Rows::Range(start, len) if *start + *len == row => *len += 1,
            Rows::Range(start, len) => {
                let mut v: Vec<u32> = (*start..*start + *len).map(|r| r as u32).collect();
                v.push(row as u32);
                *self = Rows::Indices(v);
            }
            Rows::Indices(v) => v.push(row as u32),
        }
    }

    fn for_each(&self, mut f: impl FnMut(usize, usize)) {
        match self {
            Rows::Range(start, len) => (0..*len).for_each(|i| f(i, start + i)),
            Rows::Indices(v) => v.iter().enumerate().for_each(|(i, &r)| f(i, r as usize)),
        }
    }

    fn select(&self, batch: &RecordBatch) -> DfResult<RecordBatch> {
        match self {
            Rows::Range(start, len) => Ok(batch.slice(*start, *len)),
            Rows::Indices(v) => {
                let idx = UInt32Array::from(v.clone());
                let columns = batch
                    .columns()
                    .iter()
                    .map(|c| take(c.as_ref(), &idx, None))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(RecordBatch::try_new_with_options(
                    batch.schema(),
                    columns,
                    &RecordBatchOptions::new().with_row_count(Some(v.len())),
                )?)
            }
        }
    }
}

/// Evaluates `batch` in one call per group of rows and scatters the
/// clamped values back; a failed call gives its rows the default.
fn evaluate_groups(function: &dyn RowFunction, batch: &RecordBatch, groups: &[Rows]) -> DfResult<Vec<Option<f64>>> {
    let mut out = vec![None; batch.num_rows()];
    let default = default_value(function);
    let mut failed = 0usize;
    for group in groups {
        let input = group.select(batch)?;
        let values = match function.evaluate(&input) {
            Ok(v) if v.len() == group.len() => Some(v),
            Ok(v) => {
                tracing::debug!(
                    function = function.name(),
                    expected = group.len(),
                    got = v.len(),
                    "a call returned the wrong number of values; its rows take the default"
                );
                None
            }
            Err(e) => {
                tracing::debug!(function = function.name(), error = %e, "a call failed; its rows take the default");
                None
            }
        };
        if values.is_none() {
            failed += 1;
        }
        group.for_each(|i, row| {
            out[row] = clamp(function, values.as_ref().map_or(default, |v| v[i]));
        });
    }
    if failed > 0 {
        // One line per batch, not per call: a function that fails on
        // purpose must not flood the operator log.
        tracing::warn!(
            function = function.name(),
            failed,
            calls = groups.len(),
            "calls took the default"
        );
    }
    Ok(out)
}

/// Splits rows by unit (NULL units form one group), keeping row order
/// within each unit; a run of equal units costs no hashing.
fn groups_by_unit(units: &dyn Array) -> DfResult<Vec<Rows>> {
    let units = cast(units, &DataType::Utf8)?;
    let units = units.as_string::<i32>();
    let mut groups: Vec<Rows> = Vec::new();
    let mut index: HashMap<Option<&str>, usize, foldhash::fast::RandomState> = HashMap::default();
    let mut previous: Option<(Option<&str>, usize)> = None;
    for row in 0..units.len() {
        let unit = (!units.is_null(row)).then(|| units.value(row));
        let g = match previous {
            Some((p, g)) if p == unit => g,
            _ => *index.entry(unit).or_insert_with(|| {
                groups.push(Rows::Range(row, 0));
                groups.len() - 1
            }),
        };
        groups[g].push(row);
        previous = Some((unit, g));
    }
    Ok(groups)
}

/// The planning form of a job function (the function's own arity): the
/// user's SQL is planned and checked against it. Executed directly, each
/// row is evaluated alone.
#[derive(Debug, Clone)]
pub struct GuestUdf {
    function: Arc<dyn RowFunction>,
    signature: Signature,
}

impl PartialEq for GuestUdf {
    fn eq(&self, other: &Self) -> bool {
        self.function.name() == other.function.name() && self.function.identity() == other.function.identity()
    }
}
impl Eq for GuestUdf {}
impl Hash for GuestUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.function.name().hash(state);
        self.function.identity().hash(state);
    }
}

impl GuestUdf {
    pub fn new(function: Arc<dyn RowFunction>) -> Self {
        let signature = Signature::exact(vec![DataType::Float64; function.arity()], Volatility::Volatile);
        GuestUdf { function, signature }
    }

    pub fn into_udf(self) -> ScalarUDF {
        ScalarUDF::new_from_impl(self)
    }

    /// The job function behind this UDF.
    pub fn function(&self) -> &Arc<dyn RowFunction> {
        &self.function
    }
}

impl ScalarUDFImpl for GuestUdf {
    fn name(&self) -> &str {
        self.function.name()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let arrays = args
            .args
            .into_iter()
            .map(|a| a.into_array(n))
            .collect::<DfResult<Vec<_>>>()?;
        let batch = argument_batch(arrays, n)?;
        let groups: Vec<Rows> = (0..n).map(|row| Rows::Range(row, 1)).collect();
        let values = evaluate_groups(self.function.as_ref(), &batch, &groups)?;
        Ok(ColumnarValue::Array(Arc::new(
            values.into_iter().collect::<Float64Array>(),
        )))
    }
}

/// The executing form of a job function: `f(unit, args…)`, one call per
/// privacy unit of each batch (see the module docs).
#[derive(Debug, Clone)]
pub struct UnitScopedUdf {
    function: Arc<dyn RowFunction>,
    signature: Signature,
}

impl PartialEq for UnitScopedUdf {
    fn eq(&self, other: &Self) -> bool {
        self.function.name() == other.function.name() && self.function.identity() == other.function.identity()
    }
}
impl Eq for UnitScopedUdf {}
impl Hash for UnitScopedUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "unit-scoped".hash(state);
        self.function.name().hash(state);
        self.function.identity().hash(state);
    }
}

impl UnitScopedUdf {
    /// The job function behind this UDF.
    pub fn function(&self) -> &Arc<dyn RowFunction> {
        &self.function
    }
}

/// The unit-scoped form of `function`: a scalar UDF of the same name and
/// arity n+1 whose first argument is the row's privacy unit (any type;
/// NULL for public rows) followed by the function's n arguments.
pub fn unit_scoped_udf(function: Arc<dyn RowFunction>) -> ScalarUDF {
    let signature = Signature::any(function.arity() + 1, Volatility::Volatile);
    ScalarUDF::new_from_impl(UnitScopedUdf { function, signature })
}

impl ScalarUDFImpl for UnitScopedUdf {
    fn name(&self) -> &str {
        self.function.name()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let mut arrays = args
            .args
            .into_iter()
            .map(|a| a.into_array(n))
            .collect::<DfResult<Vec<_>>>()?;
        if arrays.is_empty() {
            return Err(datafusion::common::DataFusionError::Internal(
                "a unit-scoped function needs the unit as its first argument".into(),
            ));
        }
        let units = arrays.remove(0);
        let groups = groups_by_unit(units.as_ref())?;
        let batch = argument_batch(arrays, n)?;
        let values = evaluate_groups(self.function.as_ref(), &batch, &groups)?;
        Ok(ColumnarValue::Array(Arc::new(
            values.into_iter().collect::<Float64Array>(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use std::sync::Mutex;

    /// Doubles its argument; records the rows of every call.
    #[derive(Debug, Default)]
    struct Double {
        calls: Mutex<Vec<Vec<f64>>>,
    }

    impl RowFunction for Double {
        fn name(&self) -> &str {
            "double"
        }
        fn arity(&self) -> usize {
            1
        }
        fn bounds(&self) -> (f64, f64) {
            (0.0, 10.0)
        }
        fn identity(&self) -> &str {
            "test"
        }
        fn evaluate(&self, args: &RecordBatch) -> Result<Vec<f64>, String> {
            let a = args
                .column(0)
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
            let rows: Vec<f64> = a.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
            self.calls.lock().map_err(|_| "poisoned")?.push(rows.clone());
            if rows.contains(&99.0) {
                return Err("trap".into());
            }
            Ok(rows.iter().map(|v| v * 2.0).collect())
        }
    }

    fn batch(values: &[f64]) -> RecordBatch {
        let a: Float64Array = values.iter().copied().map(Some).collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("arg0", DataType::Float64, true)])),
            vec![Arc::new(a)],
        )
        .expect("batch")
    }

    #[test]
    fn values_are_clamped_and_failed_calls_take_the_default() {
        let f = Double::default();
        let groups = [Rows::Range(0, 2), Rows::Indices(vec![2, 4]), Rows::Range(3, 1)];
        let v = evaluate_groups(&f, &batch(&[1.0, 7.0, -3.0, 99.0, f64::NAN]), &groups).expect("eval");
        // 99 fails its call: default 5; NaN becomes NULL.
        assert_eq!(v, vec![Some(2.0), Some(10.0), Some(0.0), Some(5.0), None]);
        let calls = f.calls.lock().expect("lock");
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[1][0], -3.0);
        assert!(calls[1][1].is_nan());
    }

    #[test]
    fn rows_are_grouped_by_unit_in_order() {
        let units = StringArray::from(vec![Some("a"), Some("a"), Some("b"), None, Some("a"), None, Some("b")]);
        let groups = groups_by_unit(&units).expect("groups");
        let rows: Vec<Vec<usize>> = groups
            .iter()
            .map(|g| {
                let mut v = Vec::new();
                g.for_each(|_, r| v.push(r));
                v
            })
            .collect();
        assert_eq!(rows, vec![vec![0, 1, 4], vec![2, 6], vec![3, 5]]);
        assert!(matches!(
            groups_by_unit(&StringArray::from(vec!["x", "x", "x"])).expect("groups")[..],
            [Rows::Range(0, 3)]
        ));
    }
}
