//! Per-call resource limiter: caps linear memory and tables and remembers
//! which cap was hit, so the call's error can say so.

use wasmtime::ResourceLimiter;

/// Store data of one call: its limiter.
pub(crate) struct CallState {
    pub(crate) limiter: CallLimiter,
}

/// Caps one instance's memory and tables. Refusing a growth *traps* instead
/// of making `memory.grow` return -1: a guest that ignores -1 would otherwise
/// keep running, and the trap gives a precise [`MemoryLimit`] error.
///
/// [`MemoryLimit`]: crate::WasmError::MemoryLimit
pub(crate) struct CallLimiter {
    max_memory_bytes: usize,
    max_table_elements: usize,
    pub(crate) memory_limit_hit: bool,
    pub(crate) table_limit_hit: bool,
}

/// The error a refused growth raises inside wasmtime.
#[derive(Debug)]
pub(crate) struct LimitExceeded;

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sandbox resource limit exceeded")
    }
}

impl std::error::Error for LimitExceeded {}

impl CallLimiter {
    pub(crate) fn new(max_memory_bytes: usize, max_table_elements: usize) -> Self {
        CallLimiter {
            max_memory_bytes,
            max_table_elements,
            memory_limit_hit: false,
            table_limit_hit: false,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.memory_limit_hit = true;
            return Err(wasmtime::Error::new(LimitExceeded));
        }
        // Beyond the module's own declared maximum: plain wasm semantics (-1).
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            self.table_limit_hit = true;
            return Err(wasmtime::Error::new(LimitExceeded));
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    // One instance, one memory, one table per store: a call needs no more.
    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}
