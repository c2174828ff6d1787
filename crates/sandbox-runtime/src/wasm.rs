//! WebAssembly jobs: a module admitted by `sandbox-wasm`, seen by the
//! pipeline as row functions (UDFs inside SQL) and an analysis program
//! (sample and aggregate). Guest failures never reach the analyst as text:
//! a UDF row that fails takes its default, a block that fails contributes
//! the default output, and the detail goes to the operator log.

use crate::RuntimeError;
use crate::analysis::AnalysisProgram;
use arrow::array::{Array, RecordBatch};
use sandbox_sql::guest::RowFunction;
use sandbox_wasm::{ArgType, ModuleHandle, RowExport, SandboxEngine, UdfSpec};
use std::sync::Arc;

/// An admitted module and the engine that runs it.
#[derive(Clone)]
pub struct WasmJob {
    engine: Arc<SandboxEngine>,
    module: ModuleHandle,
}

impl std::fmt::Debug for WasmJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmJob")
            .field("digest", &self.module.digest_hex())
            .finish()
    }
}

impl WasmJob {
    /// Admits a module (validation, import check, compilation, manifest).
    pub fn load(engine: Arc<SandboxEngine>, bytes: &[u8]) -> Result<Self, RuntimeError> {
        let module = engine.admit(bytes).map_err(RuntimeError::Wasm)?;
        for udf in &module.manifest().udfs {
            if udf.args.iter().any(|a| *a != ArgType::Float64) {
                return Err(RuntimeError::refused(
                    "udf-signature",
                    format!(
                        "function `{}` must take float64 arguments only (SQL values are cast to float64)",
                        udf.name
                    ),
                ));
            }
        }
        Ok(WasmJob { engine, module })
    }

    /// SHA-256 of the module.
    pub fn digest(&self) -> &str {
        self.module.digest_hex()
    }

    /// The module's UDFs, for registration in a SQL job.
    pub fn row_functions(&self) -> Vec<Arc<dyn RowFunction>> {
        self.module
            .manifest()
            .udfs
            .iter()
            .map(|spec| {
                Arc::new(WasmUdf {
                    engine: self.engine.clone(),
                    module: self.module.clone(),
                    spec: spec.clone(),
                }) as Arc<dyn RowFunction>
            })
            .collect()
    }

    /// The module's analysis, if it declares one.
    pub fn analysis(&self) -> Option<Arc<dyn AnalysisProgram>> {
        let spec = self.module.manifest().analysis.clone()?;
        Some(Arc::new(WasmAnalysis {
            engine: self.engine.clone(),
            module: self.module.clone(),
            name: spec.name.clone(),
            outputs: spec
                .outputs
                .iter()
                .map(|o| (o.name.clone(), o.bounds.lower, o.bounds.upper))
                .collect(),
        }))
    }
}

struct WasmUdf {
    engine: Arc<SandboxEngine>,
    module: ModuleHandle,
    spec: UdfSpec,
}

impl std::fmt::Debug for WasmUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmUdf").field("name", &self.spec.name).finish()
    }
}

impl RowFunction for WasmUdf {
    fn name(&self) -> &str {
        &self.spec.name
    }
    fn arity(&self) -> usize {
        self.spec.args.len()
    }
    fn bounds(&self) -> (f64, f64) {
        (self.spec.bounds.lower, self.spec.bounds.upper)
    }
    fn identity(&self) -> &str {
        self.module.digest_hex()
    }
    fn evaluate(&self, args: &RecordBatch) -> Result<Vec<f64>, String> {
        let out = self
            .engine
            .call_udf(&self.module, &self.spec.name, args)
            .map_err(|e| format!("{e}"))?;
        Ok((0..out.len())
            .map(|i| if out.is_null(i) { f64::NAN } else { out.value(i) })
            .collect())
    }
    fn trial(&self, args: &RecordBatch) -> Result<Vec<f64>, String> {
        if !self.rows_are_independent() {
            // Jobs call such a function's batch export on one row at a
            // time, each in a fresh instance (`sandbox_sql::guest`): so
            // does its trial.
            let mut values = Vec::with_capacity(args.num_rows());
            for row in 0..args.num_rows() {
                let one = self
                    .engine
                    .trial_udf(&self.module, &self.spec.name, &args.slice(row, 1))
                    .map_err(|e| e.to_string())?;
                values.extend(one);
            }
            return Ok(values);
        }
        // The batch export first: on failure it carries the guest's message.
        let batch = self
            .engine
            .trial_udf(&self.module, &self.spec.name, args)
            .map_err(|e| e.to_string());
        if batch.is_ok() {
            return batch;
        }
        // Jobs evaluate a stateless function through its per-row export:
        // that is the path the trial must pass.
        let rows = self
            .engine
            .call_udf_rows(&self.module, &self.spec.name, args)
            .map_err(|e| e.public_message())?;
        match rows.iter().position(Option::is_none) {
            None => Ok(rows.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect()),
            Some(row) => Err(format!(
                "its per-row export failed on generated row {row}; {}",
                batch.err().unwrap_or_default()
            )),
        }
    }
    fn rows_are_independent(&self) -> bool {
        self.module.row_export(&self.spec.name) == &RowExport::Stateless
    }
    fn evaluate_rows(&self, args: &RecordBatch) -> Result<Vec<Option<f64>>, String> {
        self.engine
            .call_udf_rows(&self.module, &self.spec.name, args)
            .map_err(|e| format!("{e}"))
    }
}

struct WasmAnalysis {
    engine: Arc<SandboxEngine>,
    module: ModuleHandle,
    name: String,
    outputs: Vec<(String, f64, f64)>,
}

impl AnalysisProgram for WasmAnalysis {
    fn name(&self) -> &str {
        &self.name
    }
    fn outputs(&self) -> Vec<(String, f64, f64)> {
        self.outputs.clone()
    }
    fn digest(&self) -> String {
        self.module.digest_hex().to_string()
    }
    fn run_block(&self, block: &RecordBatch) -> Result<Vec<f64>, String> {
        self.engine
            .call_analyze(&self.module, block)
            .map_err(|e| format!("{e}"))
    }
    fn trial_block(&self, block: &RecordBatch) -> Result<Vec<f64>, String> {
        self.engine
            .trial_analyze(&self.module, block)
            .map_err(|e| e.to_string())
    }
}
