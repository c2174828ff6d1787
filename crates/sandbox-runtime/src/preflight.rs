//! Checks of a job's code that need no data, run after the query is checked
//! and **before anything is charged**: each UDF and the analysis is called
//! once on a small generated input with the shape the job will give it (the
//! checked input query's columns and types for an analysis, float64
//! arguments for a UDF). A panic, a trap, an error the guest returns, a
//! wrong number of outputs, a missing input column or a NaN output on that
//! input refuses the job with the guest's own message. The input is made up
//! from the declared types alone, so the verdict cannot depend on the data.

use crate::RuntimeError;
use crate::analysis::AnalysisProgram;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sandbox_sql::guest::RowFunction;
use std::sync::Arc;

/// Rows of the generated trial input.
pub const TRIAL_ROWS: usize = 16;

/// Calls the analysis once on a generated block of [`TRIAL_ROWS`] rows with
/// `schema` (the block schema of the checked input query).
///
/// # Errors
/// A refusal, rule `wasm-trial-call` (the call failed: the guest's message
/// follows) or `wasm-trial-output` (an output is NaN), naming the analysis,
/// the input's columns and the output.
pub fn analysis(program: &dyn AnalysisProgram, schema: &SchemaRef) -> Result<(), RuntimeError> {
    let block = sandbox_wasm::trial_batch(schema, TRIAL_ROWS).map_err(|e| RuntimeError::Setup(e.to_string()))?;
    let columns: Vec<String> = schema.fields().iter().map(|f| format!("`{}`", f.name())).collect();
    let context = format!(
        "the analysis `{}` failed its trial call on {TRIAL_ROWS} generated rows with the input query's columns \
         ({}), before any budget was spent",
        program.name(),
        columns.join(", ")
    );
    let outputs = program
        .trial_block(&block)
        .map_err(|message| RuntimeError::refused("wasm-trial-call", format!("{context}: {message}")))?;
    let declared = program.outputs();
    if outputs.len() != declared.len() {
        return Err(RuntimeError::refused(
            "wasm-trial-call",
            format!(
                "{context}: it returned {} values but declares {} outputs",
                outputs.len(),
                declared.len()
            ),
        ));
    }
    if let Some(((name, _, _), _)) = declared.iter().zip(&outputs).find(|(_, v)| v.is_nan()) {
        return Err(RuntimeError::refused(
            "wasm-trial-output",
            format!(
                "{context}: output `{name}` is NaN. On real data a NaN output makes its block use the default (the \
                 midpoint of each range); return a number for every input, e.g. 0 for an empty or constant block"
            ),
        ));
    }
    Ok(())
}

/// Calls each of `functions` once on [`TRIAL_ROWS`] generated rows of
/// float64 arguments (no nulls).
///
/// # Errors
/// A refusal, rule `wasm-trial-call`, naming the function, with the
/// guest's message.
pub fn udfs(functions: &[Arc<dyn RowFunction>]) -> Result<(), RuntimeError> {
    for function in functions {
        let fields: Vec<Field> = (0..function.arity())
            .map(|i| Field::new(format!("arg{i}"), DataType::Float64, true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let args = sandbox_wasm::trial_batch(&schema, TRIAL_ROWS).map_err(|e| RuntimeError::Setup(e.to_string()))?;
        let values = function.trial(&args).map_err(|message| {
            RuntimeError::refused(
                "wasm-trial-call",
                format!(
                    "the function `{}` failed its trial call on {TRIAL_ROWS} generated rows of {} float64 \
                     arguments, before any budget was spent: {message}",
                    function.name(),
                    function.arity()
                ),
            )
        })?;
        if values.len() != TRIAL_ROWS {
            return Err(RuntimeError::refused(
                "wasm-trial-call",
                format!(
                    "the function `{}` returned {} values for {TRIAL_ROWS} rows in its trial call",
                    function.name(),
                    values.len()
                ),
            ));
        }
    }
    Ok(())
}
