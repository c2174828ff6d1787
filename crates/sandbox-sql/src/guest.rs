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
//! not by checking: jobs run [`GuestUdf`], which gives every row a call of
//! its own — either one fresh instance per row ([`RowFunction::evaluate`]
//! on a one-row batch), or, when the function says its rows are
//! independent ([`RowFunction::rows_are_independent`]: its WebAssembly
//! per-row export is proven, from the module's code, to write no memory,
//! global or table), one instance per batch and one call per row
//! ([`RowFunction::evaluate_rows`]). Either way a row's value is a function
//! of that row's arguments alone, the same in both forms.
//!
//! A function never fails the job: a call that fails (trap, timeout, error,
//! a wrong number of values) gives each of its rows the default, the
//! midpoint of the bounds. Every other value is clamped to the bounds; NaN
//! becomes NULL. Failure details go to the operator log only.

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::Column;
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::functions::expr_fn::coalesce;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, lit,
};
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

    /// Evaluates arguments that carry **no real data** (generated before a
    /// job is charged, or a public sample's rows in a trial run), returning
    /// one value per row (NaN for a null) or the whole failure — the
    /// guest's own message and a hint — for the developer.
    fn trial(&self, args: &RecordBatch) -> Result<Vec<f64>, String> {
        self.evaluate(args)
    }

    /// True when each row's value is provably a function of that row's
    /// arguments alone even when many rows share one call (a WebAssembly
    /// UDF whose per-row export writes no state). Then
    /// [`RowFunction::evaluate_rows`] is called on whole batches.
    fn rows_are_independent(&self) -> bool {
        false
    }

    /// For functions whose [`rows_are_independent`](Self::rows_are_independent):
    /// one entry per row of `args`, `None` where that row's evaluation
    /// failed (it takes the default). An `Err` means nothing was evaluated
    /// for a reason that does not depend on the rows (e.g. no instance
    /// could start). The default evaluates the rows in one call.
    fn evaluate_rows(&self, args: &RecordBatch) -> Result<Vec<Option<f64>>, String> {
        Ok(self.evaluate(args)?.into_iter().map(Some).collect())
    }
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

/// Evaluates every row of `batch` in a call of its own (a fresh instance
/// each): each row's value, `None` where its call failed.
fn evaluate_each_row(function: &dyn RowFunction, batch: &RecordBatch) -> Vec<Option<f64>> {
    let mut failed = 0usize;
    let values = (0..batch.num_rows())
        .map(|row| {
            let value = match function.evaluate(&batch.slice(row, 1)) {
                Ok(v) if v.len() == 1 => Some(v[0]),
                Ok(v) => {
                    tracing::debug!(
                        function = function.name(),
                        got = v.len(),
                        "a call returned the wrong number of values"
                    );
                    None
                }
                Err(e) => {
                    tracing::debug!(function = function.name(), error = %e, "a call failed");
                    None
                }
            };
            failed += usize::from(value.is_none());
            value
        })
        .collect();
    if failed > 0 {
        // One line per batch, not per row: a function that fails on
        // purpose must not flood the operator log.
        tracing::warn!(
            function = function.name(),
            failed,
            rows = batch.num_rows(),
            "rows took the default"
        );
    }
    values
}

/// Evaluates a job function on the arguments of one call, row by row as its
/// kind requires (see the module docs): each row's raw value (NaN
/// possible, not clamped), `None` where the row's call failed.
///
/// # Errors
/// An argument array that cannot be cast to Float64 (a planning mistake,
/// independent of the data).
fn evaluate_call(function: &dyn RowFunction, args: ScalarFunctionArgs) -> DfResult<Vec<Option<f64>>> {
    let n = args.number_rows;
    let arrays = args
        .args
        .into_iter()
        .map(|a| a.into_array(n))
        .collect::<DfResult<Vec<_>>>()?;
    let batch = argument_batch(arrays, n)?;
    Ok(if function.rows_are_independent() {
        evaluate_independent_rows(function, &batch)
    } else {
        evaluate_each_row(function, &batch)
    })
}

/// The planning form of a job function (the function's own arity): the
/// user's SQL is planned and checked against it. Executed directly, each
/// row is evaluated alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GuestUdf {
    function: JobFunction,
    signature: Signature,
}

/// A job function, equal to another exactly when both have the same name
/// and module identity (so two calls of one function in a plan are one
/// function to DataFusion, and functions of two modules never are).
#[derive(Debug, Clone)]
struct JobFunction(Arc<dyn RowFunction>);

impl PartialEq for JobFunction {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name() && self.0.identity() == other.0.identity()
    }
}
impl Eq for JobFunction {}
impl Hash for JobFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name().hash(state);
        self.0.identity().hash(state);
    }
}

impl GuestUdf {
    pub fn new(function: Arc<dyn RowFunction>) -> Self {
        let signature = Signature::exact(vec![DataType::Float64; function.arity()], Volatility::Volatile);
        GuestUdf {
            function: JobFunction(function),
            signature,
        }
    }

    pub fn into_udf(self) -> ScalarUDF {
        ScalarUDF::new_from_impl(self)
    }

    /// The job function behind this UDF.
    pub fn function(&self) -> &Arc<dyn RowFunction> {
        &self.function.0
    }
}

impl ScalarUDFImpl for GuestUdf {
    fn name(&self) -> &str {
        self.function.0.name()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let function = self.function.0.as_ref();
        let default = default_value(function);
        let values = evaluate_call(function, args)?
            .into_iter()
            .map(|v| clamp(function, v.unwrap_or(default)));
        Ok(ColumnarValue::Array(Arc::new(values.collect::<Float64Array>())))
    }
}

/// The raw form of a job function, which [`split_calls`] puts in the
/// plans the runtime builds: each row's value as the function returned it
/// (NaN possible, not clamped), **NULL where the row's call failed**. The
/// released value (the default for a failed row, clamped) and the flag of
/// a defaulted row (`crate::defaults`) are both computed from this one
/// column: [`hoist_raw_calls`] evaluates each call once per row in a
/// projection of its own, so both uses read the same evaluation. Volatile,
/// like [`GuestUdf`], so the optimizer never evaluates it at planning
/// (literal arguments) nor duplicates it. Never registered in a session.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct GuestRaw {
    function: JobFunction,
    name: String,
    signature: Signature,
}

impl GuestRaw {
    /// The job function behind this call.
    pub(crate) fn function(&self) -> &Arc<dyn RowFunction> {
        &self.function.0
    }
}

impl ScalarUDFImpl for GuestRaw {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let values = evaluate_call(self.function.0.as_ref(), args)?;
        Ok(ColumnarValue::Array(Arc::new(
            values.into_iter().collect::<Float64Array>(),
        )))
    }
}

/// A call of `function`'s raw form ([`GuestRaw`]) on `args`.
pub(crate) fn raw_call(function: &Arc<dyn RowFunction>, args: Vec<Expr>) -> Expr {
    let raw = GuestRaw {
        function: JobFunction(function.clone()),
        name: format!("__sandbox_raw_{}", function.name()),
        signature: Signature::exact(vec![DataType::Float64; function.arity()], Volatility::Volatile),
    };
    Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(ScalarUDF::new_from_impl(raw)), args))
}

/// Whether `e` is a call of a job function's raw form.
fn is_raw_call(e: &Expr) -> bool {
    matches!(e, Expr::ScalarFunction(call) if call.func.inner().is::<GuestRaw>())
}

/// Whether any of `exprs` calls a job function in its raw form
/// ([`split_calls`]).
pub fn has_raw_calls(exprs: &[Expr]) -> bool {
    exprs.iter().any(|e| e.exists(|x| Ok(is_raw_call(x))).unwrap_or(true))
}

/// Puts every raw job-function call of `exprs` ([`split_calls`]) in a
/// projection of its own above `source`, which passes every column of
/// `source` through and adds one column per distinct call (`__raw0`, …),
/// and returns that plan with `exprs` reading the columns. So each call
/// runs once per row however often the expressions use it (a value reads
/// it twice, the defaulted-row flag once more), and every use of it reads
/// the same evaluation. Nested calls (`f(g(x))`) take one projection per
/// level, innermost first.
///
/// # Errors
/// Internal only (a projection DataFusion cannot build).
pub fn hoist_raw_calls(source: LogicalPlan, mut exprs: Vec<Expr>) -> Result<(LogicalPlan, Vec<Expr>), crate::SqlError> {
    let internal = |e: datafusion::error::DataFusionError| crate::SqlError::Internal(e.strip_backtrace());
    let mut plan = source;
    let mut hoisted = 0usize;
    loop {
        // The calls none of whose arguments holds another raw call.
        let mut innermost: Vec<Expr> = Vec::new();
        for e in &exprs {
            e.apply(|node| {
                if is_raw_call(node)
                    && let Expr::ScalarFunction(call) = node
                    && !call
                        .args
                        .iter()
                        .any(|a| a.exists(|x| Ok(is_raw_call(x))).unwrap_or(true))
                    && !innermost.contains(node)
                {
                    innermost.push(node.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .map_err(internal)?;
        }
        if innermost.is_empty() {
            return Ok((plan, exprs));
        }
        let names: Vec<String> = (hoisted..hoisted + innermost.len())
            .map(|i| format!("__sandbox_raw_call_{i}"))
            .collect();
        hoisted += innermost.len();
        let mut projection: Vec<Expr> = plan.schema().columns().into_iter().map(Expr::Column).collect();
        projection.extend(
            innermost
                .iter()
                .zip(&names)
                .map(|(call, name)| call.clone().alias(name)),
        );
        plan = LogicalPlanBuilder::from(plan)
            .project(projection)
            .and_then(|b| b.build())
            .map_err(internal)?;
        exprs = exprs
            .into_iter()
            .map(|e| {
                e.transform_up(|node| {
                    Ok(match innermost.iter().position(|c| c == &node) {
                        Some(i) => Transformed::yes(Expr::Column(Column::from_name(&names[i]))),
                        None => Transformed::no(node),
                    })
                })
                .map(|t| t.data)
            })
            .collect::<DfResult<Vec<_>>>()
            .map_err(internal)?;
    }
}

/// `e` with every call of a job function ([`GuestUdf`]) written as
/// `clamp(coalesce(raw(args), default), lower, upper)` over its raw form:
/// the same value for every row (the default where the call failed, NaN
/// NULL, the rest clamped), with the call itself a subexpression that a
/// plan can share (see [`GuestRaw`]).
///
/// # Errors
/// None in practice (the rewrite cannot fail); an internal error otherwise.
pub fn split_calls(e: Expr) -> Result<Expr, crate::SqlError> {
    e.transform_up(|e| {
        let Expr::ScalarFunction(call) = e else {
            return Ok(Transformed::no(e));
        };
        let Some(guest) = call.func.inner().downcast_ref::<GuestUdf>() else {
            return Ok(Transformed::no(Expr::ScalarFunction(call)));
        };
        let function = guest.function().clone();
        let (lower, upper) = function.bounds();
        let raw = raw_call(&function, call.args);
        Ok(Transformed::yes(crate::clamp::call(
            coalesce(vec![raw, lit(default_value(function.as_ref()))]),
            lower,
            upper,
        )))
    })
    .map(|t| t.data)
    .map_err(|e| crate::SqlError::Internal(e.strip_backtrace()))
}

/// Evaluates a row-independent function on a whole batch: each row's
/// value, `None` where it failed — the same values as one call per row.
fn evaluate_independent_rows(function: &dyn RowFunction, batch: &RecordBatch) -> Vec<Option<f64>> {
    let values = match function.evaluate_rows(batch) {
        Ok(values) if values.len() == batch.num_rows() => values,
        Ok(values) => {
            tracing::warn!(
                function = function.name(),
                expected = batch.num_rows(),
                got = values.len(),
                "the function returned the wrong number of values; every row takes the default"
            );
            vec![None; batch.num_rows()]
        }
        Err(e) => {
            tracing::warn!(function = function.name(), error = %e, "the function could not run; every row takes the default");
            vec![None; batch.num_rows()]
        }
    };
    let failed = values.iter().filter(|v| v.is_none()).count();
    if failed > 0 {
        tracing::warn!(
            function = function.name(),
            failed,
            rows = values.len(),
            "rows took the default"
        );
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
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

    /// A function whose rows are independent, evaluated through
    /// `evaluate_rows`: 99 fails alone.
    #[derive(Debug, Default)]
    struct IndependentDouble(Double);

    impl RowFunction for IndependentDouble {
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
            self.0.evaluate(args)
        }
        fn rows_are_independent(&self) -> bool {
            true
        }
        fn evaluate_rows(&self, args: &RecordBatch) -> Result<Vec<Option<f64>>, String> {
            let a = args
                .column(0)
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
            self.0.calls.lock().map_err(|_| "poisoned")?.push(a.values().to_vec());
            Ok(a.values().iter().map(|&v| (v != 99.0).then_some(v * 2.0)).collect())
        }
    }

    fn invoke(function: Arc<dyn RowFunction>, values: &[f64]) -> Vec<Option<f64>> {
        let udf = GuestUdf::new(function);
        let input: Float64Array = values.iter().copied().map(Some).collect();
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(Arc::new(input))],
            arg_fields: vec![Arc::new(Field::new("x", DataType::Float64, true))],
            number_rows: values.len(),
            return_field: Arc::new(Field::new("r", DataType::Float64, true)),
            config_options: Arc::new(Default::default()),
        };
        let ColumnarValue::Array(out) = udf.invoke_with_args(args).expect("invoke") else {
            panic!("an array");
        };
        out.as_primitive::<datafusion::arrow::datatypes::Float64Type>()
            .iter()
            .collect()
    }

    const INPUT: [f64; 5] = [1.0, 7.0, -3.0, 99.0, f64::NAN];
    /// 7 → 14 clamps to 10, -3 → -6 clamps to 0, 99 fails: the default 5;
    /// NaN becomes NULL.
    const EXPECTED: [Option<f64>; 5] = [Some(2.0), Some(10.0), Some(0.0), Some(5.0), None];

    #[test]
    fn each_row_gets_its_own_call_and_a_failed_row_takes_the_default() {
        let f = Arc::new(Double::default());
        assert_eq!(invoke(f.clone(), &INPUT), EXPECTED);
        let calls = f.calls.lock().expect("lock");
        assert_eq!(calls.len(), 5, "one call per row");
        assert!(calls.iter().all(|c| c.len() == 1));
    }

    #[test]
    fn independent_rows_share_a_call_and_give_the_same_values() {
        let f = Arc::new(IndependentDouble::default());
        assert_eq!(invoke(f.clone(), &INPUT), EXPECTED);
        assert_eq!(f.0.calls.lock().expect("lock").len(), 1, "one call per batch");
    }
}
