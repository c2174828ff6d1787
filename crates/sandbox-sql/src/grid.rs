//! The integer grid of a bounded measure as one vectorised function.
//!
//! Every aggregated value goes through [`Quantizer::to_grid`]: clamped to
//! its public bounds, centred, divided by the grid's quantum, rounded half
//! away from zero and cast to `Int64` (see `sandbox_dp::fixed_point`). As
//! separate DataFusion expressions (`clamp`, `-`, `/`, `round`, `CAST`) that
//! was five passes over every value, each allocating a column, on the
//! hottest path of a DP job; this function is one pass with the same
//! arithmetic, operation for operation, so every grid value is
//! bit-identical to [`Quantizer::to_grid`] (checked by the tests below and
//! by the neighbouring-database suite).
//!
//! Total: NULL and NaN give NULL (a missing value, not counted), infinities
//! clamp to the bounds, and no input can fail.

use datafusion::arrow::array::{Array, AsArray, Int64Array};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use sandbox_dp::fixed_point::Quantizer;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// `__sandbox_grid(x)`: the grid value of a Float64 under one
/// [`Quantizer`]. Only the engine builds calls of it (never registered in
/// a session, so a query cannot name it).
#[derive(Debug)]
pub struct GridValue {
    grid: Quantizer,
    signature: Signature,
}

impl PartialEq for GridValue {
    fn eq(&self, other: &Self) -> bool {
        bits(&self.grid) == bits(&other.grid)
    }
}
impl Eq for GridValue {}
impl Hash for GridValue {
    fn hash<H: Hasher>(&self, state: &mut H) {
        bits(&self.grid).hash(state);
    }
}

/// The quantizer's parameters as bits (f64 has no `Eq`).
fn bits(g: &Quantizer) -> [u64; 5] {
    [
        g.lower.to_bits(),
        g.upper.to_bits(),
        g.center.to_bits(),
        g.quantum.to_bits(),
        g.max_abs as u64,
    ]
}

impl GridValue {
    /// The function of `grid`.
    pub fn new(grid: Quantizer) -> Self {
        GridValue {
            grid,
            signature: Signature::exact(vec![DataType::Float64], Volatility::Immutable),
        }
    }

    /// The grid it maps onto.
    pub fn quantizer(&self) -> Quantizer {
        self.grid
    }
}

/// `__sandbox_grid(x)` on `x` (cast to Float64 by the caller).
pub fn call(x: Expr, grid: Quantizer) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(GridValue::new(grid))),
        vec![x],
    ))
}

/// The grid value of one finite or infinite value: [`Quantizer::to_grid`]
/// without its NaN test (the kernel masks NaN separately).
///
/// Rounds half away from zero as `f64::round` does, without calling it:
/// on baseline x86-64 (no SSE4.1) `round` is a libm call per value, which
/// made this function half the cost of a measure (`docs/benchmarks.md`).
/// The quotient is first held to ±(max_abs + 1), so its integer part fits
/// an `i64` and the fraction `y - trunc(y)` is exact (a double's fraction
/// is representable); a NaN quotient gives 0, as `NaN.round() as i64` does.
#[inline]
fn on_grid(g: &Quantizer, x: f64) -> i64 {
    let reach = (g.max_abs + 1) as f64;
    let y = ((x.clamp(g.lower, g.upper) - g.center) / g.quantum).clamp(-reach, reach);
    let whole = y as i64;
    let fraction = y - whole as f64;
    let v = whole + i64::from(fraction >= 0.5) - i64::from(fraction <= -0.5);
    v.clamp(-g.max_abs, g.max_abs)
}

impl ScalarUDFImpl for GridValue {
    fn name(&self) -> &str {
        "__sandbox_grid"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [x] = args.args.as_slice() else {
            return datafusion::common::exec_err!("__sandbox_grid takes one argument");
        };
        let g = &self.grid;
        match x {
            ColumnarValue::Scalar(s) => {
                let v = match s.cast_to(&DataType::Float64)? {
                    ScalarValue::Float64(Some(v)) if !v.is_nan() => Some(on_grid(g, v)),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Int64(v)))
            }
            ColumnarValue::Array(values) => {
                let values = datafusion::arrow::compute::cast(values, &DataType::Float64)?;
                let values = values.as_primitive::<Float64Type>();
                let raw = values.values();
                // NaN is missing: fold it into the validity (one more pass
                // only when the column holds a NaN at all).
                let nulls = if raw.iter().any(|v| v.is_nan()) {
                    let not_nan = BooleanBuffer::collect_bool(raw.len(), |i| !raw[i].is_nan());
                    NullBuffer::union(values.nulls(), Some(&NullBuffer::new(not_nan)))
                } else {
                    values.nulls().cloned()
                };
                // Values under a NULL are arbitrary but finite or NaN; they
                // are computed (branch-free) and masked.
                let out: ScalarBuffer<i64> = raw.iter().map(|&v| on_grid(g, v)).collect();
                Ok(ColumnarValue::Array(Arc::new(Int64Array::new(out, nulls))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Float64Array;
    use datafusion::arrow::datatypes::Field;

    fn invoke(grid: Quantizer, input: Float64Array) -> Vec<Option<i64>> {
        let udf = GridValue::new(grid);
        let n = input.len();
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(Arc::new(input))],
            arg_fields: vec![Arc::new(Field::new("x", DataType::Float64, true))],
            number_rows: n,
            return_field: Arc::new(Field::new("g", DataType::Int64, true)),
            config_options: Arc::new(Default::default()),
        };
        let ColumnarValue::Array(out) = udf.invoke_with_args(args).expect("invoke") else {
            panic!("an array");
        };
        out.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .iter()
            .collect()
    }

    /// Every value, including the edges (bounds, halves, infinities, NaN,
    /// NULL, the largest finite values), lands where the reference puts it.
    #[test]
    fn bit_identical_to_the_reference_grid() {
        let grids = [
            Quantizer::for_sum(0.0, 500_000.0).expect("grid"),
            Quantizer::for_mean(0.0, 500_000.0).expect("grid"),
            Quantizer::for_variance(-3.5, 1e9).expect("grid"),
            Quantizer::for_sum(0.0, 1.0).expect("grid"),
        ];
        let mut values = vec![
            None,
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            Some(f64::MAX),
            Some(f64::MIN),
            Some(-0.0),
            Some(0.0),
            Some(0.5),
            Some(1.0),
            Some(-3.5),
            Some(500_000.0),
            Some(1e9),
            Some(f64::MIN_POSITIVE),
        ];
        // A deterministic sweep: multiples of half a quantum (the rounding
        // ties) and values between them.
        for g in &grids {
            for k in -40..40 {
                values.push(Some(g.center + (k as f64) * g.quantum / 2.0));
                values.push(Some(g.center + (k as f64) * g.quantum / 3.0));
            }
        }
        for g in grids {
            let got = invoke(g, values.iter().copied().collect());
            let want: Vec<Option<i64>> = values.iter().map(|v| v.and_then(|v| g.to_grid(v))).collect();
            assert_eq!(got, want, "grid {g:?}");
        }
    }

    #[test]
    fn a_column_without_nan_keeps_its_nulls() {
        let g = Quantizer::for_sum(0.0, 10.0).expect("grid");
        let got = invoke(g, Float64Array::from(vec![Some(3.0), None, Some(12.0)]));
        assert_eq!(got, vec![Some(g.to_grid(3.0).expect("finite")), None, Some(g.max_abs)]);
    }

    /// Fuzz (red team of 2026-12-01, grid): random bit patterns (subnormals, NaN payloads, ±0, huge), sliced
    /// arrays with nulls, and the scalar path, against `Quantizer::to_grid`
    /// under ordinary and extreme grids; every value within ±max_abs.
    #[test]
    fn grid_matches_the_reference_on_random_bit_patterns() {
        let grids = [
            Quantizer::for_sum(0.0, 500_000.0).expect("g"),
            Quantizer::for_mean(-1e-300, 1e-300).expect("g"),
            Quantizer::for_variance(-1e300, 1e300).expect("g"),
            Quantizer::for_sum(-f64::MAX, f64::MAX).expect("g"),
            Quantizer::for_mean(0.1, 0.30000000000000004).expect("g"),
            Quantizer::for_sum(1e-300, 1e-299).expect("g"),
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut values: Vec<Option<f64>> = Vec::new();
        for i in 0..200_000 {
            let bits = next();
            let v = match i % 5 {
                0 => f64::from_bits(bits),
                1 => f64::from_bits(bits & 0x800F_FFFF_FFFF_FFFF), // subnormals / ±0
                2 => (bits % 2_000_001) as f64 / 2.0 - 250_000.0,  // halves
                3 => f64::from_bits(bits) * 0.0,
                _ => ((bits >> 11) as f64) * (if bits & 1 == 0 { 1.0 } else { -1.0 }),
            };
            values.push(if bits % 17 == 0 { None } else { Some(v) });
        }
        for g in grids {
            let udf = GridValue::new(g);
            for offset in [0usize, 3] {
                let all: Float64Array = values.iter().copied().collect();
                let input = all.slice(offset, all.len() - offset - 1);
                let n = input.len();
                let args = ScalarFunctionArgs {
                    args: vec![ColumnarValue::Array(Arc::new(input))],
                    arg_fields: vec![Arc::new(Field::new("x", DataType::Float64, true))],
                    number_rows: n,
                    return_field: Arc::new(Field::new("g", DataType::Int64, true)),
                    config_options: Arc::new(Default::default()),
                };
                let ColumnarValue::Array(out) = udf.invoke_with_args(args).expect("invoke") else {
                    panic!("an array")
                };
                let out = out.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                for i in 0..n {
                    let want = values[offset + i].and_then(|v| g.to_grid(v));
                    let got = out.is_valid(i).then(|| out.value(i));
                    assert_eq!(got, want, "grid {g:?} value {:?}", values[offset + i]);
                    if let Some(v) = got {
                        assert!(v.abs() <= g.max_abs);
                    }
                }
            }
            for v in values.iter().take(2000) {
                let args = ScalarFunctionArgs {
                    args: vec![ColumnarValue::Scalar(ScalarValue::Float64(*v))],
                    arg_fields: vec![Arc::new(Field::new("x", DataType::Float64, true))],
                    number_rows: 1,
                    return_field: Arc::new(Field::new("g", DataType::Int64, true)),
                    config_options: Arc::new(Default::default()),
                };
                let ColumnarValue::Scalar(ScalarValue::Int64(got)) = udf.invoke_with_args(args).expect("invoke") else {
                    panic!("a scalar")
                };
                assert_eq!(got, v.and_then(|v| g.to_grid(v)));
            }
        }
    }
}
