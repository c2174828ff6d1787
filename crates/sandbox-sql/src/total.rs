//! Total semantics: once a job is admitted, evaluating its expressions
//! cannot fail on data.
//!
//! Whether a job is released or fails is visible to the analyst. An
//! expression that fails on some values (`CAST('x' AS BIGINT)`, `1 / 0`,
//! `to_date` of a malformed string, …) would answer a yes/no question about
//! one row exactly, at any ε. So the plan that runs is rewritten, after
//! DataFusion's analyzer has inserted its implicit casts and its optimizer
//! has run, and right before physical planning:
//!
//! * every `CAST` becomes `TRY_CAST` (a value that does not convert is NULL);
//! * arithmetic (`+ - * / %` and unary `-`) becomes [`SafeArithmetic`]:
//!   integers wrap as in DataFusion, and wherever the engine's kernels would
//!   fail — division by zero, `i64::MIN / -1`, date and timestamp arithmetic
//!   out of range, decimal overflow — the row is NULL;
//! * every scalar function is wrapped in [`TotalFunction`]: a batch that
//!   fails (an error or a panic) is evaluated again row by row, and a row
//!   that fails on its own is NULL;
//! * every string a function or `||` produces is at most
//!   [`MAX_VALUE_BYTES`] long (a longer one is NULL), so no row's value can
//!   make one row cost more than a bounded amount of memory or time (nested
//!   `concat` would otherwise grow a single row to gigabytes and fail the job
//!   on its memory pool only when that row exists).
//!
//! NULLs then flow through the release like any missing value. What can
//! still stop a job after admission — the deadline and the memory pool —
//! depends on data volume; `docs/threat-model.md` states that residual
//! channel.

use crate::SqlError;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, new_null_array};
use datafusion::arrow::compute::kernels::numeric::{add_wrapping, div, mul_wrapping, neg_wrapping, rem, sub_wrapping};
use datafusion::arrow::compute::{concat, nullif};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, LogicalPlan, Operator, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TryCast, Volatility,
};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// The longest string (in bytes) a function or `||` may produce; a longer
/// value is NULL.
pub const MAX_VALUE_BYTES: usize = 4096;

/// Rewrites every expression of `plan` into its total form (see the module
/// docs). Names of outputs are preserved, so the plan's schema is unchanged.
pub fn make_total(plan: LogicalPlan) -> Result<LogicalPlan, SqlError> {
    plan.transform_up(|node| {
        let preserver = NamePreserver::new(&node);
        let rewritten = node.map_expressions(|e| {
            let saved = preserver.save(&e);
            let total = e.transform_up(total_expr)?;
            Ok(if total.transformed {
                total.update_data(|x| saved.restore(x))
            } else {
                total
            })
        })?;
        if rewritten.transformed {
            rewritten.map_data(|n| n.recompute_schema())
        } else {
            Ok(rewritten)
        }
    })
    .map(|t| t.data)
    .map_err(|e| SqlError::Internal(e.strip_backtrace()))
}

fn total_expr(e: Expr) -> DfResult<Transformed<Expr>> {
    let call = |f: ScalarUDF, args: Vec<Expr>| Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(f), args));
    Ok(match e {
        Expr::Cast(c) => Transformed::yes(Expr::TryCast(TryCast::new_from_field(
            c.expr,
            Arc::new(c.field.as_ref().clone().with_nullable(true)),
        ))),
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                op,
                Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Divide | Operator::Modulo
            ) =>
        {
            Transformed::yes(call(
                ScalarUDF::new_from_impl(SafeArithmetic::new(op)),
                vec![*left, *right],
            ))
        }
        Expr::Negative(x) => Transformed::yes(call(ScalarUDF::new_from_impl(SafeArithmetic::negate()), vec![*x])),
        Expr::BinaryExpr(b) if b.op == Operator::StringConcat => Transformed::yes(call(
            ScalarUDF::new_from_impl(CapStrings::new()),
            vec![Expr::BinaryExpr(b)],
        )),
        Expr::ScalarFunction(f) if !is_total(&f.func) => {
            let udf = Arc::new(ScalarUDF::new_from_impl(TotalFunction { inner: f.func.clone() }));
            Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(udf, f.args)))
        }
        other => Transformed::no(other),
    })
}

/// Already total: our own wrappers, `clamp` and the grid.
fn is_total(f: &ScalarUDF) -> bool {
    let inner = f.inner();
    inner.is::<TotalFunction>()
        || inner.is::<SafeArithmetic>()
        || inner.is::<CapStrings>()
        || inner.is::<crate::clamp::Clamp>()
        || inner.is::<crate::grid::GridValue>()
        || inner.is::<crate::contribution::public_set::InPublicSets>()
        || inner.is::<crate::contribution::public_set::KeepIf>()
        || inner.is::<crate::contribution::functions::UnitHash>()
}

/// Evaluates `call` on the whole batch; if it fails or panics, evaluates it
/// row by row and gives NULL to each row that fails on its own.
fn evaluate_totally(
    args: ScalarFunctionArgs,
    call: impl Fn(ScalarFunctionArgs) -> DfResult<ColumnarValue>,
) -> DfResult<ColumnarValue> {
    let return_type = args.return_field.data_type().clone();
    let n = args.number_rows;
    if let Ok(Ok(v)) = catch_unwind(AssertUnwindSafe(|| call(args.clone()))) {
        return cap_strings(v);
    }
    tracing::debug!("a batch failed in a function; evaluating it row by row");
    let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    if all_scalar {
        let mut one = args.clone();
        one.number_rows = 1;
        return match catch_unwind(AssertUnwindSafe(|| call(one))) {
            Ok(Ok(v)) => cap_strings(v),
            _ => Ok(ColumnarValue::Scalar(ScalarValue::try_from(&return_type)?)),
        };
    }
    let mut parts: Vec<ArrayRef> = Vec::with_capacity(n);
    for i in 0..n {
        let mut row = args.clone();
        row.number_rows = 1;
        row.args = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Array(array) => ColumnarValue::Array(array.slice(i, 1)),
                ColumnarValue::Scalar(s) => ColumnarValue::Scalar(s.clone()),
            })
            .collect();
        let value = match catch_unwind(AssertUnwindSafe(|| call(row))) {
            Ok(Ok(v)) => v
                .to_array(1)
                .ok()
                .filter(|a| a.len() == 1 && a.data_type() == &return_type),
            _ => None,
        };
        parts.push(value.unwrap_or_else(|| new_null_array(&return_type, 1)));
    }
    if parts.is_empty() {
        return Ok(ColumnarValue::Array(new_null_array(&return_type, 0)));
    }
    let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
    cap_strings(ColumnarValue::Array(concat(&refs)?))
}

/// NULL for every string longer than [`MAX_VALUE_BYTES`]; other values
/// unchanged.
fn cap_strings(v: ColumnarValue) -> DfResult<ColumnarValue> {
    let too_long = |x: Option<&str>| x.is_some_and(|x| x.len() > MAX_VALUE_BYTES);
    match v {
        ColumnarValue::Scalar(s) => match &s {
            ScalarValue::Utf8(x) | ScalarValue::LargeUtf8(x) | ScalarValue::Utf8View(x) if too_long(x.as_deref()) => {
                Ok(ColumnarValue::Scalar(ScalarValue::try_from(&s.data_type())?))
            }
            _ => Ok(ColumnarValue::Scalar(s)),
        },
        ColumnarValue::Array(a) => {
            let flags: Vec<bool> = match a.data_type() {
                DataType::Utf8 => a.as_string::<i32>().iter().map(too_long).collect(),
                DataType::LargeUtf8 => a.as_string::<i64>().iter().map(too_long).collect(),
                DataType::Utf8View => a.as_string_view().iter().map(too_long).collect(),
                _ => return Ok(ColumnarValue::Array(a)),
            };
            if !flags.iter().any(|f| *f) {
                return Ok(ColumnarValue::Array(a));
            }
            let mask = BooleanArray::from(flags);
            Ok(ColumnarValue::Array(nullif(&a, &mask)?))
        }
    }
}

/// Caps the strings of its one argument (see [`cap_strings`]); wraps `||`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CapStrings {
    signature: Signature,
}

impl CapStrings {
    pub(crate) fn new() -> Self {
        CapStrings {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for CapStrings {
    fn name(&self) -> &str {
        "sandbox_cap_strings"
    }
    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        match args {
            [x] => Ok(x.schema_name().to_string()),
            _ => Ok(self.name().to_string()),
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types {
            [t] => Ok(t.clone()),
            _ => datafusion::common::plan_err!("{} takes one argument", self.name()),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        match args.args.into_iter().next() {
            Some(v) => cap_strings(v),
            None => datafusion::common::exec_err!("one argument expected"),
        }
    }
}

/// A scalar function that never fails: see [`evaluate_totally`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TotalFunction {
    inner: Arc<ScalarUDF>,
}

impl TotalFunction {
    pub(crate) fn new(inner: Arc<ScalarUDF>) -> Self {
        TotalFunction { inner }
    }

    /// The function made total.
    pub(crate) fn inner(&self) -> &Arc<ScalarUDF> {
        &self.inner
    }
}

impl ScalarUDFImpl for TotalFunction {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        self.inner.inner().schema_name(args)
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let field = self.inner.return_field_from_args(args)?;
        Ok(Arc::new(field.as_ref().clone().with_nullable(true)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        evaluate_totally(args, |a| self.inner.invoke_with_args(a))
    }
}

/// Arithmetic that gives NULL where the engine's kernels fail: binary
/// `+ - * / %` (integers wrap, as DataFusion's own operators do) and unary
/// `-` (when `op` is `None`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SafeArithmetic {
    op: Option<Operator>,
    signature: Signature,
}

impl SafeArithmetic {
    fn new(op: Operator) -> Self {
        SafeArithmetic {
            op: Some(op),
            signature: Signature::any(2, Volatility::Immutable),
        }
    }

    fn negate() -> Self {
        SafeArithmetic {
            op: None,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    /// `op`'s total form; `None`: unary minus.
    pub(crate) fn for_operator(op: Option<Operator>) -> Self {
        match op {
            Some(op) => Self::new(op),
            None => Self::negate(),
        }
    }

    /// The operator; `None`: unary minus.
    pub(crate) fn operator(&self) -> Option<Operator> {
        self.op
    }
}

impl ScalarUDFImpl for SafeArithmetic {
    fn name(&self) -> &str {
        match self.op {
            Some(Operator::Plus) => "sandbox_add",
            Some(Operator::Minus) => "sandbox_subtract",
            Some(Operator::Multiply) => "sandbox_multiply",
            Some(Operator::Divide) => "sandbox_divide",
            Some(_) => "sandbox_modulo",
            None => "sandbox_negate",
        }
    }
    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        match (self.op, args) {
            (Some(op), [l, r]) => Ok(format!("{} {op} {}", l.schema_name(), r.schema_name())),
            (None, [x]) => Ok(format!("(- {})", x.schema_name())),
            _ => Ok(self.name().to_string()),
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match (self.op, arg_types) {
            (Some(op), [l, r]) => BinaryTypeCoercer::new(l, &op, r).get_result_type(),
            (None, [t]) => Ok(t.clone()),
            _ => datafusion::common::plan_err!("{}: wrong number of arguments", self.name()),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let op = self.op;
        evaluate_totally(args, |a| {
            let scalar = a.args.iter().all(|x| matches!(x, ColumnarValue::Scalar(_)));
            let out = match (op, a.args.as_slice()) {
                (Some(op), [l, r]) => {
                    let (l, r) = (datum(l)?, datum(r)?);
                    let (l, r) = (l.as_ref(), r.as_ref());
                    match op {
                        Operator::Plus => add_wrapping(l, r)?,
                        Operator::Minus => sub_wrapping(l, r)?,
                        Operator::Multiply => mul_wrapping(l, r)?,
                        Operator::Divide => div(l, r)?,
                        _ => rem(l, r)?,
                    }
                }
                (None, [x]) => neg_wrapping(x.to_array(a.number_rows)?.as_ref())?,
                _ => return datafusion::common::exec_err!("wrong number of arguments"),
            };
            let out = if out.data_type() == a.return_field.data_type() {
                out
            } else {
                datafusion::arrow::compute::cast(&out, a.return_field.data_type())?
            };
            Ok(if scalar {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            } else {
                ColumnarValue::Array(out)
            })
        })
    }
}

fn datum(v: &ColumnarValue) -> DfResult<Box<dyn datafusion::arrow::array::Datum>> {
    Ok(match v {
        ColumnarValue::Array(a) => Box::new(a.clone()),
        ColumnarValue::Scalar(s) => Box::new(s.to_scalar()?),
    })
}
