//! `CLAMP(x, lower, upper)`: the analyst's clamping bounds, as a scalar
//! function DataFusion's parser and planner accept like any other call.
//!
//! ZetaSQL's `AVG(x CLAMPED BETWEEN 0 AND 2000)` is not SQL that
//! DataFusion parses; a function needs no parser change, plans everywhere
//! an expression may stand, and is the same form SmartNoise and Tumult
//! users write by hand. The checker reads its literal bounds and
//! intersects them with the bounds it derives from the policies (see
//! `checker::derived`); the engine uses the same function for the clamp
//! of every aggregated value onto its grid (`partials::plan_measures`).
//!
//! Total and NULL-preserving: `CLAMP(NULL, …)` and `CLAMP(NaN, …)` are
//! NULL (DataFusion's `greatest`/`least` skip NULLs, so
//! `least(greatest(NULL, 0), 1)` would be 0: a missing value counted as
//! the lower bound), and so is any row whose bounds are NULL, NaN or
//! reversed. Infinities clamp to the bounds.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::sync::Arc;

/// The SQL name.
pub const NAME: &str = "clamp";

/// `clamp(x, lower, upper)` on Float64 (arguments are coerced).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Clamp {
    signature: Signature,
}

impl Default for Clamp {
    fn default() -> Self {
        Clamp {
            signature: Signature::uniform(3, vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

/// The function, for registration in a session.
pub fn udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(Clamp::default()))
}

/// `clamp(x, lower, upper)` as an expression.
pub fn call(x: Expr, lower: f64, upper: f64) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(
        udf(),
        vec![
            x,
            datafusion::logical_expr::lit(lower),
            datafusion::logical_expr::lit(upper),
        ],
    ))
}

fn clamp_one(x: Option<f64>, lo: Option<f64>, hi: Option<f64>) -> Option<f64> {
    let (x, lo, hi) = (x?, lo?, hi?);
    if x.is_nan() || lo.is_nan() || hi.is_nan() || lo > hi {
        return None;
    }
    Some(x.clamp(lo, hi))
}

impl ScalarUDFImpl for Clamp {
    fn name(&self) -> &str {
        NAME
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let [x, lo, hi] = args.args.as_slice() else {
            return datafusion::common::exec_err!("clamp takes three arguments");
        };
        let scalar_f64 = |v: &ColumnarValue| match v {
            ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Float64) {
                Ok(ScalarValue::Float64(f)) => Some(f),
                _ => Some(None),
            },
            ColumnarValue::Array(_) => None,
        };
        // The usual case (every aggregated value on its way to the grid):
        // literal bounds, one pass over the values.
        if let (ColumnarValue::Array(values), Some(lo), Some(hi)) = (x, scalar_f64(lo), scalar_f64(hi)) {
            let values = datafusion::arrow::compute::cast(values, &DataType::Float64)?;
            let values = values.as_primitive::<Float64Type>();
            let out: Float64Array = values.iter().map(|v| clamp_one(v, lo, hi)).collect();
            return Ok(ColumnarValue::Array(Arc::new(out)));
        }
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { n };
        let arrays: Vec<ArrayRef> = args.args.iter().map(|a| a.to_array(rows)).collect::<DfResult<_>>()?;
        let as_f64 = |a: &ArrayRef| datafusion::arrow::compute::cast(a, &DataType::Float64);
        let (x, lo, hi) = (as_f64(&arrays[0])?, as_f64(&arrays[1])?, as_f64(&arrays[2])?);
        let (x, lo, hi) = (
            x.as_primitive::<Float64Type>(),
            lo.as_primitive::<Float64Type>(),
            hi.as_primitive::<Float64Type>(),
        );
        let get = |a: &datafusion::arrow::array::PrimitiveArray<Float64Type>, i: usize| {
            if a.is_null(i) { None } else { Some(a.value(i)) }
        };
        let out: Float64Array = (0..x.len())
            .map(|i| clamp_one(get(x, i), get(lo, i), get(hi, i)))
            .collect();
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(Arc::new(out)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_and_nans_stay_missing_and_infinities_clamp() {
        assert_eq!(clamp_one(None, Some(0.0), Some(1.0)), None);
        assert_eq!(clamp_one(Some(f64::NAN), Some(0.0), Some(1.0)), None);
        assert_eq!(clamp_one(Some(f64::INFINITY), Some(0.0), Some(1.0)), Some(1.0));
        assert_eq!(clamp_one(Some(-5.0), Some(0.0), Some(1.0)), Some(0.0));
        assert_eq!(clamp_one(Some(0.5), Some(1.0), Some(0.0)), None);
    }
}
