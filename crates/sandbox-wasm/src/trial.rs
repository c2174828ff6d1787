//! Trial calls: a guest run on inputs that carry no real data (generated
//! from a schema, or a dataset's public DP sample), reporting everything —
//! the guest's own panic or error message (`sandbox_last_error`), with a
//! hint when the cause is something the sandbox does not provide (a clock,
//! randomness, files). Never use these on real data: the message may
//! depend on the input.

use crate::engine::SandboxEngine;
use crate::error::WasmError;
use crate::ipc;
use crate::module::ModuleHandle;
use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
    new_null_array,
};
use arrow::datatypes::{DataType, SchemaRef};
use sandbox_abi::{EXPORT_ANALYZE, UDF_PREFIX};
use std::fmt;
use std::sync::Arc;

/// The longest guest message kept (bytes).
pub(crate) const TRIAL_MESSAGE_BYTES: usize = 4096;

/// A failed trial call: the failure's kind and, when the guest left one,
/// its own message (a panic's text and location, or the error it returned).
#[derive(Debug)]
pub struct GuestFailure {
    /// What failed (trap, error code, malformed output, limit…).
    pub error: WasmError,
    /// The guest's message, from `sandbox_last_error` (SDK guests).
    pub guest_message: Option<String>,
}

impl GuestFailure {
    pub(crate) fn new(error: WasmError, guest_message: Option<String>) -> Self {
        GuestFailure { error, guest_message }
    }

    pub(crate) fn plain(error: WasmError) -> Self {
        GuestFailure::new(error, None)
    }

    /// What to do about it, when the cause is recognisable: something the
    /// sandbox does not provide (a clock, randomness, files, network,
    /// environment) or a limit.
    pub fn hint(&self) -> Option<&'static str> {
        let message = self.guest_message.as_deref().unwrap_or("").to_ascii_lowercase();
        if message.contains("time not implemented") || message.contains("systemtime") || message.contains("instant") {
            return Some(
                "a job has no clock (std::time panics on wasm32-unknown-unknown): take dates and times from \
                 input columns, and measure nothing by time",
            );
        }
        if message.contains("getrandom") || message.contains("random") || message.contains("hashmap keys") {
            return Some(
                "a job has no source of randomness: use a seeded generator (e.g. \
                 `rand_chacha::ChaCha8Rng::seed_from_u64(SEED)`) whose seed is a constant of the job, so that \
                 its results are reproducible",
            );
        }
        if message.contains("operation not supported on this platform") || message.contains("unsupported") {
            return Some(
                "a job has no files, network, environment or threads: everything it reads arrives in its input",
            );
        }
        match &self.error {
            WasmError::Timeout { .. } | WasmError::FuelExhausted { .. } => {
                Some("the job's code ran too long on a small input: look for a loop that does not end")
            }
            WasmError::StackOverflow { .. } => Some("look for unbounded recursion"),
            WasmError::MemoryLimit { .. } => Some("the job's code allocates more memory than a call may use"),
            _ => None,
        }
    }
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error.public_message())?;
        if let Some(message) = &self.guest_message {
            write!(f, ": {message}")?;
        }
        if let Some(hint) = self.hint() {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for GuestFailure {}

impl SandboxEngine {
    /// [`call_udf`](Self::call_udf) on an input that carries no real data,
    /// reporting the guest's own message on failure. Also fails when the
    /// function returns NaN for a row without a null argument.
    pub fn trial_udf(&self, module: &ModuleHandle, name: &str, input: &RecordBatch) -> Result<Vec<f64>, GuestFailure> {
        let spec = module
            .manifest()
            .udf(name)
            .ok_or_else(|| GuestFailure::plain(WasmError::UnknownUdf(name.to_string())))?;
        let bytes = ipc::encode(input, self.config().max_input_bytes()).map_err(GuestFailure::plain)?;
        let export = format!("{UDF_PREFIX}{name}");
        let output = self.run_traced(module, &export, &bytes, self.config().max_output_bytes())?;
        let values = ipc::decode_udf_output(&output, input.num_rows(), spec.bounds).map_err(GuestFailure::plain)?;
        Ok((0..values.len())
            .map(|i| if values.is_null(i) { f64::NAN } else { values.value(i) })
            .collect())
    }

    /// [`call_analyze`](Self::call_analyze) on an input that carries no real
    /// data, reporting the guest's own message on failure. Outputs are
    /// **not** clamped, so a developer sees what the code returned.
    pub fn trial_analyze(&self, module: &ModuleHandle, input: &RecordBatch) -> Result<Vec<f64>, GuestFailure> {
        let spec = module
            .manifest()
            .analysis
            .as_ref()
            .ok_or_else(|| GuestFailure::plain(WasmError::NoAnalysis))?;
        let bytes = ipc::encode(input, self.config().max_input_bytes()).map_err(GuestFailure::plain)?;
        let expected = spec.outputs.len() * 8;
        let output = self.run_traced(module, EXPORT_ANALYZE, &bytes, expected)?;
        if output.len() != expected {
            return Err(GuestFailure::plain(WasmError::BadOutput {
                detail: format!(
                    "the analysis returned {} bytes, not {expected} (8 per declared output)",
                    output.len()
                ),
            }));
        }
        Ok(output
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }
}

/// A batch of `rows` rows with `schema`, made up without any data: numeric
/// columns cycle through small positive values (different per column, so no
/// two columns are equal), a Boolean alternates, a string is `trial-<row>`,
/// a date steps by days from 2024-01-01, and any other type is null. Every
/// column is non-null. Used for the trial call before a job is charged.
pub fn trial_batch(schema: &SchemaRef, rows: usize) -> Result<RecordBatch, WasmError> {
    let encode = |e: arrow::error::ArrowError| WasmError::Encode(e.to_string());
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(c, field)| {
            let t = field.data_type();
            let array: ArrayRef = if t.is_floating() {
                let values: Float64Array = (0..rows).map(|r| Some(trial_number(r, c))).collect();
                arrow::compute::cast(&values, t).map_err(encode)?
            } else if t.is_integer() {
                let values: Int64Array = (0..rows).map(|r| Some(trial_number(r, c) as i64)).collect();
                arrow::compute::cast(&values, t).map_err(encode)?
            } else if t.is_numeric() {
                let values: Float64Array = (0..rows).map(|r| Some(trial_number(r, c))).collect();
                arrow::compute::cast(&values, t).map_err(encode)?
            } else {
                match t {
                    DataType::Boolean => Arc::new((0..rows).map(|r| Some(r % 2 == 1)).collect::<BooleanArray>()),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                        let values: StringArray = (0..rows).map(|r| Some(format!("trial-{r}"))).collect();
                        arrow::compute::cast(&values, t).map_err(encode)?
                    }
                    DataType::Date32 => {
                        // 2024-01-01 is day 19 723 since the epoch.
                        let values: Date32Array = (0..rows).map(|r| Some(19_723 + r as i32)).collect();
                        Arc::new(values)
                    }
                    other => new_null_array(other, rows),
                }
            };
            Ok(array)
        })
        .collect::<Result<_, WasmError>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(encode)
}

/// Row `r`, column `c`: 0 and 1 (a 0/1 label stays one) then growing
/// positive values; integers for integer columns.
fn trial_number(r: usize, c: usize) -> f64 {
    match r % 4 {
        0 => 0.0,
        1 => 1.0,
        _ => ((r * 7 + c * 13) % 97 + 2) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn trial_batches_follow_the_schema_and_need_no_data() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("n", DataType::Int32, true),
            Field::new("flag", DataType::Boolean, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("day", DataType::Date32, true),
            Field::new("t", DataType::Binary, true),
        ]));
        let batch = trial_batch(&schema, 16).expect("batch");
        assert_eq!(batch.num_rows(), 16);
        assert_eq!(batch.schema(), schema);
        assert_eq!(batch.column(0).null_count(), 0);
        assert_eq!(batch.column(5).null_count(), 16);
        let empty = trial_batch(&schema, 0).expect("empty");
        assert_eq!(empty.num_rows(), 0);
    }

    #[test]
    fn hints_name_what_the_sandbox_does_not_provide() {
        let trap = || WasmError::Trap { detail: String::new() };
        let clock = GuestFailure::new(
            trap(),
            Some("panicked at src/lib.rs:3:5:\ntime not implemented on this platform".into()),
        );
        assert!(clock.to_string().contains("has no clock"), "{clock}");
        assert!(clock.to_string().contains("time not implemented"), "{clock}");
        let random = GuestFailure::new(trap(), Some("getrandom: this target is not supported".into()));
        assert!(random.to_string().contains("seeded generator"), "{random}");
        let plain = GuestFailure::new(trap(), Some("index out of bounds".into()));
        assert_eq!(plain.hint(), None);
    }
}
