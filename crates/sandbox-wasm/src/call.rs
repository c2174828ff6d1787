//! One call into a guest: a fresh store and instance under the call's
//! limits, input copied in through `sandbox_alloc`, the packed result read
//! back with bounds checks, and every wasmtime failure mapped to a
//! [`WasmError`] kind.

use crate::config::RuntimeConfig;
use crate::error::WasmError;
use crate::limiter::{CallLimiter, CallState, LimitExceeded};
use crate::slots::SlotGuard;
use crate::stateless::StackWindow;
use arrow::array::{Array, Float64Array};
use sandbox_abi::{EXPORT_ALLOC, EXPORT_LAST_ERROR, EXPORT_MEMORY};
use wasmtime::{Func, Instance, InstancePre, Memory, Store, Trap, TypedFunc, Val};

const INSTANTIATE: &str = "instantiation";

/// A live instance for one call. Dropping it returns its pool slot.
pub(crate) struct Call<'a> {
    config: &'a RuntimeConfig,
    // Field order matters: the store (and its pool slot) is dropped before
    // the engine-wide slot count is released.
    store: Store<CallState>,
    instance: Instance,
    memory: Memory,
    _slot: SlotGuard,
}

impl<'a> Call<'a> {
    /// Instantiates `module` in a fresh store with fuel, deadline and
    /// limiter set, so a start function is bounded too.
    pub(crate) fn start(
        config: &'a RuntimeConfig,
        pre: &InstancePre<CallState>,
        slot: SlotGuard,
    ) -> Result<Self, WasmError> {
        let state = CallState {
            limiter: CallLimiter::new(config.max_memory_bytes(), config.max_table_elements()),
        };
        let mut store = Store::try_new(pre.module().engine(), state)
            .map_err(|e| WasmError::Instantiate(format!("cannot create a store: {e}")))?;
        store.limiter(|state| &mut state.limiter);
        if let Some(fuel) = config.fuel_per_call() {
            store
                .set_fuel(fuel)
                .map_err(|e| WasmError::Engine(format!("cannot set fuel: {e}")))?;
        }
        store.set_epoch_deadline(config.deadline_ticks());
        store.epoch_deadline_trap();
        let instance = match pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => return Err(classify(config, &store, e, INSTANTIATE)),
        };
        let Some(memory) = instance.get_memory(&mut store, EXPORT_MEMORY) else {
            return Err(WasmError::MissingExport {
                name: EXPORT_MEMORY.into(),
                expected: "its linear memory",
            });
        };
        Ok(Call {
            config,
            store,
            instance,
            memory,
            _slot: slot,
        })
    }

    /// Copies `input` into memory the guest allocates; returns `(ptr, len)`.
    pub(crate) fn write_input(&mut self, input: &[u8]) -> Result<(i32, i32), WasmError> {
        let len = i32::try_from(input.len()).map_err(|_| WasmError::InputTooLarge {
            size: input.len(),
            max: self.config.max_input_bytes(),
        })?;
        let alloc = self
            .instance
            .get_typed_func::<i32, i32>(&mut self.store, EXPORT_ALLOC)
            .map_err(|e| WasmError::Instantiate(format!("{EXPORT_ALLOC}: {e}")))?;
        let ptr = match alloc.call(&mut self.store, len) {
            Ok(ptr) => ptr,
            Err(e) => return Err(classify(self.config, &self.store, e, EXPORT_ALLOC)),
        };
        if ptr == 0 {
            return Err(WasmError::BadOutput {
                detail: format!("{EXPORT_ALLOC}({len}) returned 0 (allocation failed)"),
            });
        }
        // ptr is an unsigned address on the wasm side.
        if self.memory.write(&mut self.store, ptr as u32 as usize, input).is_err() {
            return Err(WasmError::BadOutput {
                detail: format!("{EXPORT_ALLOC}({len}) returned {ptr:#x}, outside the guest's memory"),
            });
        }
        Ok((ptr, len))
    }

    /// Calls `export(ptr, len) -> i64` and returns the output bytes it
    /// points to, at most `max_len` of them.
    pub(crate) fn call_entry(
        &mut self,
        export: &str,
        ptr: i32,
        len: i32,
        max_len: usize,
    ) -> Result<Vec<u8>, WasmError> {
        let func = self
            .instance
            .get_typed_func::<(i32, i32), i64>(&mut self.store, export)
            .map_err(|e| WasmError::Instantiate(format!("{export}: {e}")))?;
        let packed = match func.call(&mut self.store, (ptr, len)) {
            Ok(packed) => packed,
            Err(e) => return Err(classify(self.config, &self.store, e, export)),
        };
        self.read_packed(export, packed, max_len)
    }

    /// Calls `export(f64, …) -> f64` on rows `from..rows` of `columns`, in
    /// this instance, restoring `window` to `snapshot` after each call;
    /// pushes one entry per row to `out`. Stops after the first row whose
    /// call fails (pushed as `None`): the instance may then hold state the
    /// call left half-done, so the caller starts a fresh one. Returns the
    /// next row to evaluate.
    fn rows(
        &mut self,
        export: &str,
        window: StackWindow,
        snapshot: &[u8],
        columns: &[&Float64Array],
        (from, rows): (usize, usize),
        out: &mut Vec<Option<f64>>,
    ) -> Result<usize, WasmError> {
        let func = RowFunc::new(&mut self.store, &self.instance, export, columns.len())?;
        let mut params = vec![Val::F64(0); columns.len()];
        for row in from..rows {
            self.reset_limits()?;
            match func.call(&mut self.store, columns, row, &mut params) {
                Ok(value) => {
                    if !snapshot.is_empty() {
                        self.memory
                            .write(&mut self.store, window.start as usize, snapshot)
                            .map_err(|e| WasmError::Engine(format!("cannot restore the stack window: {e}")))?;
                    }
                    out.push(Some(value));
                }
                Err(e) => {
                    tracing::debug!(export, error = format!("{e:?}"), "a row's call failed");
                    out.push(None);
                    return Ok(row + 1);
                }
            }
        }
        Ok(rows)
    }

    /// Drops the instance (returning its pool slot) but keeps the
    /// engine-wide slot, so the next instance of the same batch cannot be
    /// refused for want of one: whether a batch fails must not depend on
    /// whether one of its rows trapped.
    fn into_slot(self) -> SlotGuard {
        let Call { store, _slot, .. } = self;
        drop(store);
        _slot
    }

    /// The bytes of `window` as instantiation left them.
    fn snapshot(&self, window: StackWindow) -> Result<Vec<u8>, WasmError> {
        let mut bytes = vec![0u8; window.len as usize];
        self.memory
            .read(&self.store, window.start as usize, &mut bytes)
            .map_err(|e| WasmError::Instantiate(format!("the stack window is outside the guest's memory: {e}")))?;
        Ok(bytes)
    }

    /// Gives the next call the full per-call fuel and deadline.
    fn reset_limits(&mut self) -> Result<(), WasmError> {
        if let Some(fuel) = self.config.fuel_per_call() {
            self.store
                .set_fuel(fuel)
                .map_err(|e| WasmError::Engine(format!("cannot set fuel: {e}")))?;
        }
        self.store.set_epoch_deadline(self.config.deadline_ticks());
        Ok(())
    }

    /// The guest's own message about its latest failure, read through the
    /// optional export `sandbox_last_error` (see `sandbox-abi`), under fresh
    /// call limits, at most `max_len` bytes. `None` when the module does not
    /// export it, it fails, or it has no message. For trial calls only: the
    /// text may depend on the input.
    pub(crate) fn last_error(&mut self, max_len: usize) -> Option<String> {
        let func = self
            .instance
            .get_typed_func::<(), i64>(&mut self.store, EXPORT_LAST_ERROR)
            .ok()?;
        self.reset_limits().ok()?;
        let packed = func.call(&mut self.store, ()).ok()?;
        if packed < 0 {
            return None;
        }
        let (ptr, len) = sandbox_abi::unpack(packed);
        let len = (len as usize).min(max_len);
        if len == 0 {
            return None;
        }
        let mut bytes = vec![0u8; len];
        self.memory.read(&self.store, ptr as usize, &mut bytes).ok()?;
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        (!text.is_empty()).then_some(text)
    }

    /// Calls `export() -> i64` (the manifest) and returns the bytes.
    pub(crate) fn call_nullary(&mut self, export: &str, max_len: usize) -> Result<Vec<u8>, WasmError> {
        let func = self
            .instance
            .get_typed_func::<(), i64>(&mut self.store, export)
            .map_err(|e| WasmError::Instantiate(format!("{export}: {e}")))?;
        let packed = match func.call(&mut self.store, ()) {
            Ok(packed) => packed,
            Err(e) => return Err(classify(self.config, &self.store, e, export)),
        };
        self.read_packed(export, packed, max_len)
    }

    fn read_packed(&mut self, export: &str, packed: i64, max_len: usize) -> Result<Vec<u8>, WasmError> {
        if packed < 0 {
            return Err(match packed {
                sandbox_abi::ERR_BAD_INPUT | sandbox_abi::ERR_GUEST | sandbox_abi::ERR_OUTPUT => {
                    WasmError::Guest { code: packed }
                }
                other => WasmError::BadOutput {
                    detail: format!("{export} returned {other}, neither a pointer/length nor an error code"),
                },
            });
        }
        let (ptr, len) = sandbox_abi::unpack(packed);
        let (ptr, len) = (ptr as usize, len as usize);
        if len > max_len {
            return Err(WasmError::BadOutput {
                detail: format!("{export} returned {len} bytes, over the limit of {max_len}"),
            });
        }
        let size = self.memory.data_size(&self.store);
        if ptr.checked_add(len).is_none_or(|end| end > size) {
            return Err(WasmError::BadOutput {
                detail: format!("{export} returned bytes {ptr:#x}..+{len}, outside its {size}-byte memory"),
            });
        }
        let mut out = vec![0u8; len];
        self.memory
            .read(&self.store, ptr, &mut out)
            .map_err(|e| WasmError::BadOutput {
                detail: format!("{export}: cannot read its output ({e})"),
            })?;
        Ok(out)
    }
}

/// Evaluates a provably stateless per-row export on every row of
/// `columns` (a null is passed as NaN): one instance serves rows until one
/// fails, then a fresh instance (from `start`) serves the rest. Returns one
/// entry per row, `None` where that row's call failed. `start` is given
/// the slot of the instance it replaces (none for the first).
pub(crate) fn call_rows<'a>(
    mut start: impl FnMut(Option<SlotGuard>) -> Result<Call<'a>, WasmError>,
    export: &str,
    window: StackWindow,
    columns: &[&Float64Array],
    rows: usize,
) -> Result<Vec<Option<f64>>, WasmError> {
    let mut out = Vec::with_capacity(rows);
    let mut next = 0;
    let mut slot = None;
    while next < rows {
        let mut call = start(slot.take())?;
        let snapshot = call.snapshot(window)?;
        next = call.rows(export, window, &snapshot, columns, (next, rows), &mut out)?;
        slot = Some(call.into_slot());
    }
    Ok(out)
}

/// A per-row export, typed for the common arities (no per-call type
/// checks); the general form checks each call's values dynamically.
enum RowFunc {
    One(TypedFunc<f64, f64>),
    Two(TypedFunc<(f64, f64), f64>),
    Three(TypedFunc<(f64, f64, f64), f64>),
    Any(Func),
}

impl RowFunc {
    fn new(store: &mut Store<CallState>, instance: &Instance, export: &str, arity: usize) -> Result<Self, WasmError> {
        let func = instance
            .get_func(&mut *store, export)
            .ok_or_else(|| WasmError::MissingExport {
                name: export.into(),
                expected: "a function (f64, …) -> f64",
            })?;
        let typed_error = |e: wasmtime::Error| WasmError::Instantiate(format!("{export}: {e}"));
        Ok(match arity {
            1 => RowFunc::One(func.typed(&*store).map_err(typed_error)?),
            2 => RowFunc::Two(func.typed(&*store).map_err(typed_error)?),
            3 => RowFunc::Three(func.typed(&*store).map_err(typed_error)?),
            _ => RowFunc::Any(func),
        })
    }

    fn call(
        &self,
        store: &mut Store<CallState>,
        columns: &[&Float64Array],
        row: usize,
        params: &mut [Val],
    ) -> Result<f64, wasmtime::Error> {
        let arg = |i: usize| {
            let column = columns[i];
            if column.is_null(row) {
                f64::NAN
            } else {
                column.value(row)
            }
        };
        match self {
            RowFunc::One(f) => f.call(store, arg(0)),
            RowFunc::Two(f) => f.call(store, (arg(0), arg(1))),
            RowFunc::Three(f) => f.call(store, (arg(0), arg(1), arg(2))),
            RowFunc::Any(f) => {
                for (i, param) in params.iter_mut().enumerate() {
                    *param = Val::F64(arg(i).to_bits());
                }
                let mut results = [Val::F64(0)];
                f.call(store, params, &mut results)?;
                results[0]
                    .f64()
                    .ok_or_else(|| wasmtime::Error::msg("the row export returned a non-f64 value"))
            }
        }
    }
}

/// Maps a wasmtime error to the crate's kinds; the raw text goes to the log.
fn classify(config: &RuntimeConfig, store: &Store<CallState>, error: wasmtime::Error, during: &str) -> WasmError {
    tracing::warn!(during, error = format!("{error:?}"), "WebAssembly guest failed");
    let limiter = &store.data().limiter;
    if limiter.memory_limit_hit {
        return WasmError::MemoryLimit {
            limit: config.max_memory_bytes(),
        };
    }
    if limiter.table_limit_hit {
        return WasmError::TableLimit {
            limit: config.max_table_elements(),
        };
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => WasmError::Timeout {
                deadline: config.call_deadline(),
            },
            Trap::OutOfFuel => WasmError::FuelExhausted {
                fuel: config.fuel_per_call().unwrap_or(0),
            },
            Trap::StackOverflow => WasmError::StackOverflow {
                limit: config.max_wasm_stack_bytes(),
            },
            other => WasmError::Trap {
                detail: format!("{other} in {during}"),
            },
        };
    }
    if error.downcast_ref::<LimitExceeded>().is_some() {
        // Unreachable in practice (the flags above are set first); kept so a
        // limiter refusal can never be reported as a plain trap.
        return WasmError::MemoryLimit {
            limit: config.max_memory_bytes(),
        };
    }
    if error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
        return WasmError::Busy {
            max: config.max_instances(),
        };
    }
    if during == INSTANTIATE {
        WasmError::Instantiate(error.to_string())
    } else {
        WasmError::Trap {
            detail: format!("{error} in {during}"),
        }
    }
}
