//! `CLAMP_AUTO(x [, quantile])`: the analyst asks the sandbox to choose the
//! upper clamping bound of a SUM, AVG, VARIANCE or STDDEV argument by DP
//! bound estimation (default quantile 0.99).
//!
//! Only the checker reads it: it must be the whole argument of one of
//! those aggregates, around a measure (or an expression of measures) with
//! public bounds; the checker strips it and marks the aggregate
//! (`AggregateRequest::auto_bound`). The runtime then spends a stated share
//! of the aggregate's ε on a DP quantile of the values over the whole
//! table (no grouping) within the public bounds and clamps to `[lower,
//! that quantile]` (see `sandbox_runtime::estimation`). Evaluated anywhere
//! else (it cannot be, the checker refuses it) it is the identity.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use std::sync::Arc;

/// The SQL name.
pub const NAME: &str = "clamp_auto";

/// The quantile the bound is estimated at when the query gives none.
pub const DEFAULT_QUANTILE: f64 = 0.99;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ClampAuto {
    signature: Signature,
}

impl Default for ClampAuto {
    fn default() -> Self {
        ClampAuto {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Uniform(1, vec![DataType::Float64]),
                    TypeSignature::Uniform(2, vec![DataType::Float64]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

/// The function, for registration in a session.
pub fn udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(ClampAuto::default()))
}

impl ScalarUDFImpl for ClampAuto {
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
        match args.args.into_iter().next() {
            Some(x) => Ok(x),
            None => datafusion::common::exec_err!("clamp_auto takes one or two arguments"),
        }
    }
}
