//! One call into a guest: a fresh store and instance under the call's
//! limits, input copied in through `sandbox_alloc`, the packed result read
//! back with bounds checks, and every wasmtime failure mapped to a
//! [`WasmError`] kind.

use crate::config::RuntimeConfig;
use crate::error::WasmError;
use crate::limiter::{CallLimiter, CallState, LimitExceeded};
use crate::slots::SlotGuard;
use sandbox_abi::{EXPORT_ALLOC, EXPORT_MEMORY};
use wasmtime::{Instance, InstancePre, Memory, Store, Trap};

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
