//! Row functions supplied by a job (WebAssembly UDFs), as DataFusion
//! scalar functions registered for that job only.
//!
//! This crate does not know WebAssembly: the runtime wraps a guest module in
//! a [`RowFunction`] and the session registers it. Outputs are row-level
//! values, so the checker treats them as measures whose public bounds are
//! the ones the job declared; the adapter clamps every value to them.
//!
//! A differentially private release needs each row's value to depend on that
//! row only. Functions run in batches for speed, so the adapter (1) replaces
//! the results of a batch that fails by per-row evaluation, with a fixed
//! default (the midpoint of the bounds) for each row that fails on its own,
//! and (2) re-evaluates one randomly chosen row of every batch alone and
//! fails the job if the value differs (a function that looks at other rows).
//! The check is by sampling: it catches functions that depend on their batch
//! with high probability over many batches, but is not a proof.

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
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
    /// …); returns one value per row. The error text is for the operator
    /// log only.
    fn evaluate(&self, args: &RecordBatch) -> Result<Vec<f64>, String>;
}

/// The DataFusion adapter.
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

    fn default_value(&self) -> f64 {
        let (lo, hi) = self.function.bounds();
        (lo + hi) / 2.0
    }

    fn clamp(&self, v: f64) -> Option<f64> {
        let (lo, hi) = self.function.bounds();
        (!v.is_nan()).then(|| v.clamp(lo, hi))
    }

    fn row(batch: &RecordBatch, i: usize) -> RecordBatch {
        batch.slice(i, 1)
    }

    /// Evaluates one batch under the rules in the module docs.
    fn evaluate(&self, batch: &RecordBatch) -> DfResult<Vec<Option<f64>>> {
        let n = batch.num_rows();
        let values = match self.function.evaluate(batch) {
            Ok(v) if v.len() == n => v,
            other => {
                if let Err(e) = &other {
                    tracing::warn!(function = self.function.name(), error = %e, "batch failed; evaluating rows one by one");
                }
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    let v = match self.function.evaluate(&Self::row(batch, i)) {
                        Ok(v) if v.len() == 1 => v[0],
                        _ => self.default_value(),
                    };
                    out.push(v);
                }
                return Ok(out.into_iter().map(|v| self.clamp(v)).collect());
            }
        };
        if n > 1 {
            let i = (std::collections::hash_map::RandomState::new().hash_one(n) % n as u64) as usize;
            let alone = match self.function.evaluate(&Self::row(batch, i)) {
                Ok(v) if v.len() == 1 => v[0],
                _ => self.default_value(),
            };
            let same = alone.to_bits() == values[i].to_bits() || (alone.is_nan() && values[i].is_nan());
            if !same {
                tracing::warn!(function = self.function.name(), "row value depends on its batch");
                return Err(DataFusionError::Execution(
                    "a WebAssembly function gave a row a different value in a batch than alone; functions must be row-wise".into(),
                ));
            }
        }
        Ok(values.into_iter().map(|v| self.clamp(v)).collect())
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
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(args.args.len());
        let mut fields = Vec::with_capacity(args.args.len());
        for (i, a) in args.args.into_iter().enumerate() {
            let array = cast(&a.into_array(n)?, &DataType::Float64)?;
            fields.push(Field::new(format!("arg{i}"), DataType::Float64, true));
            columns.push(array);
        }
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(n)),
        )?;
        let values = self.evaluate(&batch)?;
        let out: Float64Array = values.into_iter().collect();
        debug_assert_eq!(out.len(), n);
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct Double {
        batch_dependent: bool,
        fail_batches: bool,
        calls: AtomicUsize,
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
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.fail_batches && args.num_rows() > 1 {
                return Err("trap".into());
            }
            let a = args.column(0).as_any().downcast_ref::<Float64Array>().ok_or("type")?;
            let extra = if self.batch_dependent {
                args.num_rows() as f64
            } else {
                0.0
            };
            Ok(a.iter().map(|v| v.map_or(f64::NAN, |v| v * 2.0 + extra)).collect())
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

    fn udf(batch_dependent: bool, fail_batches: bool) -> GuestUdf {
        GuestUdf::new(Arc::new(Double {
            batch_dependent,
            fail_batches,
            calls: AtomicUsize::new(0),
        }))
    }

    #[test]
    fn values_are_clamped_to_the_bounds() {
        let v = udf(false, false).evaluate(&batch(&[1.0, 7.0, -3.0])).expect("eval");
        assert_eq!(v, vec![Some(2.0), Some(10.0), Some(0.0)]);
    }

    #[test]
    fn a_failing_batch_falls_back_to_rows() {
        let v = udf(false, true).evaluate(&batch(&[1.0, 2.0])).expect("eval");
        assert_eq!(v, vec![Some(2.0), Some(4.0)]);
    }

    #[test]
    fn batch_dependent_functions_are_caught() {
        assert!(udf(true, false).evaluate(&batch(&[1.0, 2.0, 3.0])).is_err());
    }
}
