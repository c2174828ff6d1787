//! `desensitize(column)`: one column's rule as a scalar function, used only
//! inside a desensitized table's scan (never registered in a session, so
//! no query can name it).

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Date32Array, Float64Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use sandbox_policy::Desensitization;
use std::sync::Arc;

/// The rule of one column of one type. Total: every value maps to a value
/// (or NULL to NULL); nothing here fails or panics on data.
#[derive(Debug, PartialEq, Hash, Eq)]
pub(crate) struct Desensitize {
    /// The rule, as its TOML form (the rule holds floats, which are
    /// neither `Eq` nor `Hash`; the form identifies it).
    form: String,
    rule: Rule,
    data_type: DataType,
    signature: Signature,
}

#[derive(Debug)]
struct Rule(Desensitization);

impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Rule {}
impl std::hash::Hash for Rule {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_string().hash(state);
    }
}

impl Desensitize {
    /// `None` when the rule does not apply to `data_type` (validation
    /// rules that out; the caller fails closed).
    /// The rule and the column type it was built for.
    pub(crate) fn parts(&self) -> (&Desensitization, &DataType) {
        (&self.rule.0, &self.data_type)
    }

    pub(crate) fn new(rule: &Desensitization, data_type: &DataType) -> Option<Self> {
        let fits = match rule {
            // A fixed-width band only on integers (exact); validation
            // refuses it on a float column.
            Desensitization::Band(_) => *data_type == DataType::Int64,
            Desensitization::Bands(_) => matches!(data_type, DataType::Int64 | DataType::Float64),
            Desensitization::TruncateDate(_) => *data_type == DataType::Date32,
            Desensitization::TruncateChars(_)
            | Desensitization::MaskKeepFirst(_)
            | Desensitization::MaskKeepLast(_) => *data_type == DataType::Utf8,
        };
        fits.then(|| Desensitize {
            form: rule.to_string(),
            rule: Rule(rule.clone()),
            data_type: data_type.clone(),
            signature: Signature::exact(vec![data_type.clone()], Volatility::Immutable),
        })
    }

    fn apply(&self, values: &ArrayRef) -> DfResult<ArrayRef> {
        let rule = &self.rule.0;
        Ok(match &self.data_type {
            DataType::Int64 => Arc::new(
                values
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| v.map(|x| rule.apply_i64(x)))
                    .collect::<Int64Array>(),
            ),
            DataType::Float64 => Arc::new(
                values
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| v.map(|x| rule.apply_f64(x)))
                    .collect::<Float64Array>(),
            ),
            DataType::Date32 => Arc::new(
                values
                    .as_primitive::<Date32Type>()
                    .iter()
                    .map(|v| v.map(|x| rule.apply_date(x)))
                    .collect::<Date32Array>(),
            ),
            DataType::Utf8 => Arc::new(
                values
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(|x| rule.apply_str(x)))
                    .collect::<StringArray>(),
            ),
            other => return datafusion::common::exec_err!("desensitize: unsupported type {other}"),
        })
    }
}

impl ScalarUDFImpl for Desensitize {
    fn name(&self) -> &str {
        "desensitize"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(self.data_type.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [x] = args.args.as_slice() else {
            return datafusion::common::exec_err!("desensitize takes one argument");
        };
        match x {
            ColumnarValue::Array(a) => {
                let a = if a.data_type() == &self.data_type {
                    a.clone()
                } else {
                    datafusion::arrow::compute::cast(a, &self.data_type)?
                };
                Ok(ColumnarValue::Array(self.apply(&a)?))
            }
            ColumnarValue::Scalar(s) => {
                let a = s.cast_to(&self.data_type)?.to_array()?;
                let out = self.apply(&a)?;
                Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(
                    &out, 0,
                )?))
            }
        }
    }
}
