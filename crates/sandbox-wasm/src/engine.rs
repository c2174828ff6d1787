//! The engine: one wasmtime `Engine` configured from a [`RuntimeConfig`],
//! the module cache, and the two entry points a job uses (UDF calls and
//! analysis calls).

use crate::admission;
use crate::cache::{Digest, ModuleCache};
use crate::call::{self, Call};
use crate::config::{AllocationStrategy, RuntimeConfig};
use crate::epoch::EpochTicker;
use crate::error::WasmError;
use crate::ipc;
use crate::limiter::CallState;
use crate::manifest;
use crate::module::ModuleHandle;
use crate::slots::Slots;
use crate::stateless::{self, RowExport};
use crate::trial::{GuestFailure, TRIAL_MESSAGE_BYTES};
use arrow::array::{Float64Array, RecordBatch};
use sandbox_abi::{EXPORT_ANALYZE, EXPORT_MANIFEST, ROW_PREFIX, UDF_PREFIX};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Linker, Module, OptLevel, PoolingAllocationConfig, Strategy,
    WasmBacktraceDetails,
};

/// Runs job guests: admits modules and calls them under the configured
/// limits. `Send + Sync`; share one per process (behind an `Arc`).
pub struct SandboxEngine {
    config: RuntimeConfig,
    engine: Engine,
    linker: Linker<CallState>,
    cache: ModuleCache<ModuleHandle>,
    slots: Slots,
    pooled: bool,
    compilations: AtomicU64,
    _ticker: EpochTicker,
}

impl SandboxEngine {
    /// Builds the engine (Cranelift; threads, GC, exceptions, memory64,
    /// multi-memory, tail calls and relaxed SIMD off; SIMD, bulk memory,
    /// multi-value and reference types on), reserves the instance pool and
    /// starts the epoch ticker thread.
    pub fn new(config: RuntimeConfig) -> Result<Self, WasmError> {
        let (engine, pooled) = match config.allocation() {
            AllocationStrategy::OnDemand => (build_engine(&config, false)?, false),
            AllocationStrategy::PoolingOnly => (build_engine(&config, true)?, true),
            AllocationStrategy::PoolingWithFallback => match build_engine(&config, true) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        reservation_bytes = config.pool_reservation_bytes(),
                        "cannot reserve the WebAssembly instance pool; allocating instances on demand \
                         (lower max_instances or max_memory_bytes to fit the pool)"
                    );
                    (build_engine(&config, false)?, false)
                }
            },
        };
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick())
            .map_err(|e| WasmError::Engine(format!("cannot start the epoch ticker thread: {e}")))?;
        tracing::debug!(pooled, ?config, "WebAssembly engine ready");
        Ok(SandboxEngine {
            linker: Linker::new(&engine),
            cache: ModuleCache::new(config.module_cache_entries()),
            slots: Slots::new(config.max_instances()),
            compilations: AtomicU64::new(0),
            config,
            engine,
            pooled,
            _ticker: ticker,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// True when instances come from the pre-reserved pool (false after a
    /// fallback or with [`AllocationStrategy::OnDemand`]).
    pub fn is_pooled(&self) -> bool {
        self.pooled
    }

    /// Modules compiled since the engine started (cache hits compile nothing).
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// Modules in the cache now.
    pub fn cached_modules(&self) -> usize {
        self.cache.len()
    }

    /// Instances alive now (calls in progress).
    pub fn live_instances(&self) -> usize {
        self.slots.live()
    }

    /// Admits a module: size cap, validation, import and export checks,
    /// compilation (or a cache hit on the SHA-256 of `bytes`), then the
    /// manifest, read from a fresh instance under the call limits and
    /// checked against the exports.
    pub fn admit(&self, bytes: &[u8]) -> Result<ModuleHandle, WasmError> {
        if bytes.len() > self.config.max_module_bytes() {
            return Err(WasmError::ModuleTooLarge {
                size: bytes.len(),
                max: self.config.max_module_bytes(),
                cause: admission::size_cause(bytes),
            });
        }
        let digest: Digest = Sha256::digest(bytes).into();
        if let Some(handle) = self.cache.get(&digest) {
            tracing::debug!(digest = handle.digest_hex(), "module cache hit");
            return Ok(handle);
        }
        let started = Instant::now();
        Module::validate(&self.engine, bytes).map_err(|e| WasmError::InvalidModule(format!("{e:#}")))?;
        let inspection = admission::inspect(bytes, &self.config)?;
        let module = Module::from_binary(&self.engine, bytes).map_err(|e| WasmError::Compile(format!("{e:#}")))?;
        self.compilations.fetch_add(1, Ordering::Relaxed);
        admission::check_abi_signatures(&module)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| WasmError::Instantiate(format!("{e:#}")))?;

        let raw = {
            let mut call = Call::start(&self.config, &pre, self.slots.acquire()?)?;
            call.call_nullary(EXPORT_MANIFEST, self.config.max_manifest_bytes())?
        };
        let manifest = manifest::parse(&raw, self.config.max_analysis_outputs())?;
        for udf in &manifest.udfs {
            let export = format!("{UDF_PREFIX}{}", udf.name);
            if !inspection.has_func(&export) {
                return Err(WasmError::MissingExport {
                    name: export,
                    expected: "a function (i32, i32) -> i64 for the declared UDF",
                });
            }
            admission::check_entry_point(&module, &export)?;
        }
        if manifest.analysis.is_some() {
            if !inspection.has_func(EXPORT_ANALYZE) {
                return Err(WasmError::MissingExport {
                    name: EXPORT_ANALYZE.into(),
                    expected: "a function (i32, i32) -> i64 for the declared analysis",
                });
            }
            admission::check_entry_point(&module, EXPORT_ANALYZE)?;
        }
        let row_names: Vec<String> = manifest
            .udfs
            .iter()
            .map(|udf| format!("{ROW_PREFIX}{}", udf.name))
            .collect();
        let mut row_exports = HashMap::new();
        let mut row_windows = HashMap::new();
        for ((udf, export), verdict) in manifest
            .udfs
            .iter()
            .zip(&row_names)
            .zip(stateless::check_exports(bytes, &row_names))
        {
            let row_export = match verdict {
                None => RowExport::Absent,
                Some(verdict) => {
                    admission::check_row_export(&module, export, udf.args.len())?;
                    match verdict {
                        Ok(window) => {
                            row_windows.insert(udf.name.clone(), window);
                            RowExport::Stateless
                        }
                        Err(reason) => {
                            tracing::info!(
                                udf = %udf.name,
                                reason = %reason,
                                "per-row export is not provably stateless; each row gets its own instance"
                            );
                            RowExport::NotStateless(reason)
                        }
                    }
                }
            };
            row_exports.insert(udf.name.clone(), row_export);
        }
        for name in inspection.udf_exports() {
            if manifest.udf(name).is_none() {
                tracing::debug!(
                    name,
                    "module exports a UDF its manifest does not declare; it cannot be called"
                );
            }
        }
        let hex = hex::encode(digest);
        tracing::info!(
            digest = %hex,
            bytes = bytes.len(),
            udfs = manifest.udfs.len(),
            analysis = manifest.analysis.is_some(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "WebAssembly module admitted"
        );
        let handle = ModuleHandle::new(hex, bytes.len(), manifest, module, pre, row_exports, row_windows);
        Ok(self.cache.insert(digest, handle))
    }

    /// Calls UDF `name` on `input` (its columns are the arguments, in order
    /// and of the declared types). Returns one value per input row, clamped
    /// to the declared bounds; nulls and NaN are passed through (decide what
    /// a NaN becomes before aggregating). A fresh instance serves the call.
    pub fn call_udf(&self, module: &ModuleHandle, name: &str, input: &RecordBatch) -> Result<Float64Array, WasmError> {
        self.check_owner(module)?;
        let spec = module
            .manifest()
            .udf(name)
            .ok_or_else(|| WasmError::UnknownUdf(name.to_string()))?;
        if input.num_columns() != spec.args.len() {
            return Err(WasmError::InputMismatch(format!(
                "UDF `{name}` takes {} arguments but the batch has {} columns",
                spec.args.len(),
                input.num_columns()
            )));
        }
        for (i, (arg, column)) in spec.args.iter().zip(input.columns()).enumerate() {
            if column.data_type() != &arg.data_type() {
                return Err(WasmError::InputMismatch(format!(
                    "argument {} of UDF `{name}` is declared {} but the column is {}",
                    i + 1,
                    arg.data_type(),
                    column.data_type()
                )));
            }
        }
        let bytes = ipc::encode(input, self.config.max_input_bytes())?;
        let export = format!("{UDF_PREFIX}{name}");
        let output = self.run(module, &export, &bytes, self.config.max_output_bytes())?;
        ipc::decode_udf_output(&output, input.num_rows(), spec.bounds)
    }

    /// Evaluates UDF `name` on every row of `input` through its per-row
    /// export, in **one** instance, one call per row, each call with the
    /// full per-call fuel and deadline. Only for UDFs whose
    /// [`ModuleHandle::row_export`] is [`RowExport::Stateless`] (anything
    /// else is [`WasmError::NotStateless`]): since the export provably
    /// writes no state, a row's value depends on that row's arguments only,
    /// exactly as with one instance per row.
    ///
    /// `input`'s columns are the arguments in order, all Float64 (a null
    /// is passed as NaN). Returns one entry per row: `Some(v)` with `v`
    /// clamped to the declared bounds (NaN passed through), or `None` where
    /// that row's call trapped, ran out of fuel or hit the deadline. An
    /// `Err` means no row was evaluated (the instance could not start).
    pub fn call_udf_rows(
        &self,
        module: &ModuleHandle,
        name: &str,
        input: &RecordBatch,
    ) -> Result<Vec<Option<f64>>, WasmError> {
        self.check_owner(module)?;
        let spec = module
            .manifest()
            .udf(name)
            .ok_or_else(|| WasmError::UnknownUdf(name.to_string()))?;
        let (RowExport::Stateless, Some(window)) = (module.row_export(name), module.row_window(name)) else {
            return Err(WasmError::NotStateless(name.to_string()));
        };
        if input.num_columns() != spec.args.len() {
            return Err(WasmError::InputMismatch(format!(
                "UDF `{name}` takes {} arguments but the batch has {} columns",
                spec.args.len(),
                input.num_columns()
            )));
        }
        let mut columns = Vec::with_capacity(input.num_columns());
        for (i, column) in input.columns().iter().enumerate() {
            let Some(values) = column.as_any().downcast_ref::<Float64Array>() else {
                return Err(WasmError::InputMismatch(format!(
                    "argument {} of UDF `{name}` must be float64 for the per-row export, not {}",
                    i + 1,
                    column.data_type()
                )));
            };
            columns.push(values);
        }
        let started = Instant::now();
        let export = format!("{ROW_PREFIX}{name}");
        let start = |slot: Option<_>| {
            let slot = match slot {
                Some(slot) => slot,
                None => self.slots.acquire()?,
            };
            Call::start(&self.config, module.pre(), slot)
        };
        let values = call::call_rows(start, &export, window, &columns, input.num_rows())?;
        let failed = values.iter().filter(|v| v.is_none()).count();
        tracing::debug!(
            digest = module.digest_hex(),
            export,
            rows = input.num_rows(),
            failed,
            elapsed_us = started.elapsed().as_micros() as u64,
            "guest rows"
        );
        Ok(values.into_iter().map(|v| v.map(|v| spec.bounds.clamp(v))).collect())
    }

    /// Runs the module's analysis on one block. Returns one value per
    /// declared output, clamped to its bounds (NaN passed through). A fresh
    /// instance serves the call.
    pub fn call_analyze(&self, module: &ModuleHandle, input: &RecordBatch) -> Result<Vec<f64>, WasmError> {
        self.check_owner(module)?;
        let spec = module.manifest().analysis.as_ref().ok_or(WasmError::NoAnalysis)?;
        let bytes = ipc::encode(input, self.config.max_input_bytes())?;
        let expected = spec.outputs.len() * 8;
        let output = self.run(module, EXPORT_ANALYZE, &bytes, expected)?;
        let bounds: Vec<_> = spec.outputs.iter().map(|o| o.bounds).collect();
        ipc::decode_analysis_output(&output, &bounds)
    }

    /// Instantiates the module under the call limits and drops the instance:
    /// a readiness check, and what the instantiation benchmark measures.
    pub fn check_instantiation(&self, module: &ModuleHandle) -> Result<(), WasmError> {
        self.check_owner(module)?;
        Call::start(&self.config, module.pre(), self.slots.acquire()?).map(drop)
    }

    fn run(&self, module: &ModuleHandle, export: &str, input: &[u8], max_output: usize) -> Result<Vec<u8>, WasmError> {
        let started = Instant::now();
        let result = (|| {
            let mut call = Call::start(&self.config, module.pre(), self.slots.acquire()?)?;
            let (ptr, len) = call.write_input(input)?;
            call.call_entry(export, ptr, len, max_output)
        })();
        tracing::debug!(
            digest = module.digest_hex(),
            export,
            input_bytes = input.len(),
            ok = result.is_ok(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "guest call"
        );
        result
    }

    /// As [`run`](Self::run), but on a failure also reads the guest's own
    /// message (`sandbox_last_error`) from the failed instance. Trial calls
    /// only (see [`crate::trial`]).
    pub(crate) fn run_traced(
        &self,
        module: &ModuleHandle,
        export: &str,
        input: &[u8],
        max_output: usize,
    ) -> Result<Vec<u8>, GuestFailure> {
        self.check_owner(module).map_err(GuestFailure::plain)?;
        let mut call = Call::start(
            &self.config,
            module.pre(),
            self.slots.acquire().map_err(GuestFailure::plain)?,
        )
        .map_err(GuestFailure::plain)?;
        let result = call
            .write_input(input)
            .and_then(|(ptr, len)| call.call_entry(export, ptr, len, max_output));
        result.map_err(|error| {
            let guest_message = if error.is_guest_fault() {
                call.last_error(TRIAL_MESSAGE_BYTES)
            } else {
                None
            };
            GuestFailure::new(error, guest_message)
        })
    }

    fn check_owner(&self, module: &ModuleHandle) -> Result<(), WasmError> {
        if Engine::same(module.module().engine(), &self.engine) {
            Ok(())
        } else {
            Err(WasmError::ForeignModule)
        }
    }

    #[cfg(test)]
    pub(crate) fn slots(&self) -> &Slots {
        &self.slots
    }
}

impl std::fmt::Debug for SandboxEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxEngine")
            .field("config", &self.config)
            .field("pooled", &self.pooled)
            .field("cached_modules", &self.cache.len())
            .finish_non_exhaustive()
    }
}

fn build_engine(c: &RuntimeConfig, pooled: bool) -> Result<Engine, WasmError> {
    let mut w = Config::new();
    w.strategy(Strategy::Cranelift)
        .cranelift_opt_level(OptLevel::Speed)
        // Off by default: NaN payloads never reach a result (see the setting).
        .cranelift_nan_canonicalization(c.canonicalize_nans())
        .epoch_interruption(true)
        .consume_fuel(c.fuel_per_call().is_some())
        .max_wasm_stack(c.max_wasm_stack_bytes())
        // Not from the environment: trap details stay out of error text.
        .wasm_backtrace_details(WasmBacktraceDetails::Disable);
    // Proposals. GC and threads stay compiled into wasmtime (see the
    // workspace manifest) but no guest may use them.
    w.wasm_threads(false)
        .wasm_shared_everything_threads(false)
        .wasm_gc(false)
        .wasm_function_references(false)
        .wasm_exceptions(false)
        .wasm_stack_switching(false)
        .gc_support(false)
        .wasm_memory64(false)
        .wasm_multi_memory(false)
        .wasm_tail_call(false)
        .wasm_relaxed_simd(false)
        .wasm_custom_page_sizes(false)
        .wasm_wide_arithmetic(false)
        .wasm_extended_const(false)
        // rustc's wasm32-unknown-unknown output uses these.
        .wasm_simd(true)
        .wasm_bulk_memory(true)
        .wasm_multi_value(true)
        .wasm_reference_types(true);
    // Each memory reserves exactly its cap (plus guard) and never moves:
    // bounded virtual memory per instance, bounds checks where needed.
    let max_memory = c.max_memory_bytes() as u64;
    w.memory_reservation(max_memory)
        .memory_guard_size(c.memory_guard_bytes() as u64)
        .memory_reservation_for_growth(0)
        .memory_may_move(false);
    if pooled {
        let instances = u32::try_from(c.max_instances()).unwrap_or(u32::MAX);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(instances)
            .total_memories(instances)
            .total_tables(instances)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .max_memory_size(c.max_memory_bytes())
            .table_elements(c.max_table_elements())
            .max_core_instance_size(c.max_instance_metadata_bytes())
            .max_unused_warm_slots(instances)
            // Reset the pages a call touched with memset rather than
            // unmapping them: no page faults on the next call, and with
            // PAGEMAP_SCAN only dirty pages are written.
            .linear_memory_keep_resident(c.keep_resident_bytes())
            // Tables are small (8 bytes an element): keep them whole, or
            // every call would re-fault its table page.
            .table_keep_resident(c.max_table_elements().saturating_mul(8))
            .pagemap_scan(wasmtime::Enabled::Auto);
        w.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&w).map_err(|e| WasmError::Engine(format!("{e:#}")))
}
