//! Every limit the runtime enforces, as one validated value.
//!
//! Built with [`RuntimeConfig::builder`]; each setter documents its default
//! and the builder's [`build`](RuntimeConfigBuilder::build) refuses settings
//! that contradict each other (for example an input cap larger than the
//! memory it must fit in).

use crate::error::WasmError;
use std::time::Duration;

/// One WebAssembly page (64 KiB): memories grow in whole pages.
pub const WASM_PAGE_BYTES: usize = 64 * 1024;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// How instances get their memory, tables and metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocationStrategy {
    /// Reserve a pool of `max_instances` slots when the engine starts (fast
    /// instantiation); if the operating system refuses the reservation, log
    /// a warning and allocate on demand instead, under the same limits.
    PoolingWithFallback,
    /// Reserve the pool or fail [`SandboxEngine::new`](crate::SandboxEngine::new).
    PoolingOnly,
    /// Allocate each instance's memory when it is created (slower, no
    /// up-front reservation).
    OnDemand,
}

/// The runtime's limits and settings. Every field has an accessor; see the
/// builder's setters for meanings and defaults.
///
/// | setting | default |
/// | --- | --- |
/// | [`call_deadline`](RuntimeConfigBuilder::call_deadline) | 5 s |
/// | [`epoch_tick`](RuntimeConfigBuilder::epoch_tick) | 10 ms |
/// | [`fuel_per_call`](RuntimeConfigBuilder::fuel_per_call) | off (`None`) |
/// | [`max_memory_bytes`](RuntimeConfigBuilder::max_memory_bytes) | 64 MiB |
/// | [`max_wasm_stack_bytes`](RuntimeConfigBuilder::max_wasm_stack_bytes) | 512 KiB |
/// | [`max_table_elements`](RuntimeConfigBuilder::max_table_elements) | 10 000 |
/// | [`max_instances`](RuntimeConfigBuilder::max_instances) | 16 |
/// | [`max_module_bytes`](RuntimeConfigBuilder::max_module_bytes) | 16 MiB |
/// | [`max_input_bytes`](RuntimeConfigBuilder::max_input_bytes) | 16 MiB |
/// | [`max_output_bytes`](RuntimeConfigBuilder::max_output_bytes) | 16 MiB |
/// | [`max_manifest_bytes`](RuntimeConfigBuilder::max_manifest_bytes) | 64 KiB |
/// | [`max_analysis_outputs`](RuntimeConfigBuilder::max_analysis_outputs) | 1 024 |
/// | [`module_cache_entries`](RuntimeConfigBuilder::module_cache_entries) | 32 |
/// | [`allocation`](RuntimeConfigBuilder::allocation) | [`AllocationStrategy::PoolingWithFallback`] |
/// | [`memory_guard_bytes`](RuntimeConfigBuilder::memory_guard_bytes) | 2 MiB |
/// | [`max_instance_metadata_bytes`](RuntimeConfigBuilder::max_instance_metadata_bytes) | 1 MiB |
/// | [`keep_resident_bytes`](RuntimeConfigBuilder::keep_resident_bytes) | 8 MiB |
/// | [`canonicalize_nans`](RuntimeConfigBuilder::canonicalize_nans) | false |
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    call_deadline: Duration,
    epoch_tick: Duration,
    fuel_per_call: Option<u64>,
    max_memory_bytes: usize,
    max_wasm_stack_bytes: usize,
    max_table_elements: usize,
    max_instances: usize,
    max_module_bytes: usize,
    max_input_bytes: usize,
    max_output_bytes: usize,
    max_manifest_bytes: usize,
    max_analysis_outputs: usize,
    module_cache_entries: usize,
    allocation: AllocationStrategy,
    memory_guard_bytes: usize,
    max_instance_metadata_bytes: usize,
    keep_resident_bytes: usize,
    canonicalize_nans: bool,
}

impl RuntimeConfig {
    /// A builder holding the documented defaults.
    pub fn builder() -> RuntimeConfigBuilder {
        RuntimeConfigBuilder::new()
    }

    /// Wall-clock budget of one call (instantiation, input copy and the
    /// guest function together).
    pub fn call_deadline(&self) -> Duration {
        self.call_deadline
    }
    /// Period of the background thread that advances the engine's epoch.
    pub fn epoch_tick(&self) -> Duration {
        self.epoch_tick
    }
    /// Fuel given to each call; `None` when fuel metering is off.
    pub fn fuel_per_call(&self) -> Option<u64> {
        self.fuel_per_call
    }
    /// Largest linear memory one instance may have, in bytes.
    pub fn max_memory_bytes(&self) -> usize {
        self.max_memory_bytes
    }
    /// Largest native stack the guest's frames may use, in bytes.
    pub fn max_wasm_stack_bytes(&self) -> usize {
        self.max_wasm_stack_bytes
    }
    /// Largest table one instance may have, in elements.
    pub fn max_table_elements(&self) -> usize {
        self.max_table_elements
    }
    /// Most instances alive at once across the engine.
    pub fn max_instances(&self) -> usize {
        self.max_instances
    }
    /// Largest module accepted, in bytes.
    pub fn max_module_bytes(&self) -> usize {
        self.max_module_bytes
    }
    /// Largest Arrow IPC input written into a guest, in bytes.
    pub fn max_input_bytes(&self) -> usize {
        self.max_input_bytes
    }
    /// Largest output read back from a guest, in bytes.
    pub fn max_output_bytes(&self) -> usize {
        self.max_output_bytes
    }
    /// Largest manifest read from a guest, in bytes.
    pub fn max_manifest_bytes(&self) -> usize {
        self.max_manifest_bytes
    }
    /// Most outputs an analysis may declare.
    pub fn max_analysis_outputs(&self) -> usize {
        self.max_analysis_outputs
    }
    /// Compiled modules kept in the cache.
    pub fn module_cache_entries(&self) -> usize {
        self.module_cache_entries
    }
    /// How instances are allocated.
    pub fn allocation(&self) -> AllocationStrategy {
        self.allocation
    }
    /// Unmapped bytes after each linear memory.
    pub fn memory_guard_bytes(&self) -> usize {
        self.memory_guard_bytes
    }
    /// Largest per-instance runtime metadata (`VMContext`), in bytes.
    pub fn max_instance_metadata_bytes(&self) -> usize {
        self.max_instance_metadata_bytes
    }
    /// Bytes of each pooled memory kept mapped (reset with `memset`) between
    /// instances (the setting, capped at `max_memory_bytes`).
    pub fn keep_resident_bytes(&self) -> usize {
        self.keep_resident_bytes.min(self.max_memory_bytes)
    }
    /// Whether NaN payloads are canonicalized.
    pub fn canonicalize_nans(&self) -> bool {
        self.canonicalize_nans
    }

    /// Virtual address space the instance pool reserves when pooling:
    /// `max_instances × (max_memory_bytes + memory_guard_bytes)` for memories
    /// (wasmtime adds guards and tables on top). Reserved, not committed:
    /// resident memory grows only with what guests touch.
    pub fn pool_reservation_bytes(&self) -> u64 {
        let per_slot = (self.max_memory_bytes + self.memory_guard_bytes) as u64;
        per_slot * self.max_instances as u64
    }

    /// Epoch ticks that cover [`call_deadline`](Self::call_deadline): the
    /// deadline is relative to the current epoch, which may be about to
    /// advance, so one tick is added to never stop a guest early.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        let ticks = self.call_deadline.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX - 1).saturating_add(1)
    }
}

/// Builds a [`RuntimeConfig`]; [`new`](Self::new) starts from the documented
/// defaults.
#[derive(Debug, Clone)]
pub struct RuntimeConfigBuilder {
    config: RuntimeConfig,
}

impl Default for RuntimeConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RuntimeConfigBuilder {
    /// The defaults listed on [`RuntimeConfig`].
    pub fn new() -> Self {
        RuntimeConfigBuilder {
            config: RuntimeConfig {
                call_deadline: Duration::from_secs(5),
                epoch_tick: Duration::from_millis(10),
                fuel_per_call: None,
                max_memory_bytes: 64 * MIB,
                max_wasm_stack_bytes: 512 * KIB,
                max_table_elements: 10_000,
                max_instances: 16,
                max_module_bytes: 16 * MIB,
                max_input_bytes: 16 * MIB,
                max_output_bytes: 16 * MIB,
                max_manifest_bytes: 64 * KIB,
                max_analysis_outputs: 1024,
                module_cache_entries: 32,
                allocation: AllocationStrategy::PoolingWithFallback,
                memory_guard_bytes: 2 * MIB,
                max_instance_metadata_bytes: MIB,
                keep_resident_bytes: 8 * MIB,
                canonicalize_nans: false,
            },
        }
    }

    /// Wall-clock budget of one call, enforced by epoch interruption: a
    /// background thread advances the engine's epoch every
    /// [`epoch_tick`](Self::epoch_tick) and compiled code checks it at loop
    /// headers and function entries, so a guest stops between `deadline` and
    /// `deadline + tick` after the call starts (later only if the machine
    /// does not schedule the ticker). Default 5 s; between 1 ms and 1 h.
    pub fn call_deadline(mut self, deadline: Duration) -> Self {
        self.config.call_deadline = deadline;
        self
    }

    /// Resolution of the deadline. Shorter ticks stop guests closer to the
    /// deadline at the cost of a thread waking more often. Default 10 ms;
    /// between 1 ms and the call deadline.
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.config.epoch_tick = tick;
        self
    }

    /// Fuel per call, an optional deterministic secondary cap: roughly one
    /// unit per WebAssembly instruction, so the same call on the same input
    /// either always finishes or always runs out. Off by default: the
    /// deadline already stops every runaway guest, and metering makes
    /// compiled guests about 20 % slower (every basic block updates the
    /// counter; measured on the risk-score UDF, see docs/benchmarks.md).
    /// With fuel on, 10 000 000 000 units is several seconds of
    /// straight-line code. Must be at least 1 000.
    pub fn fuel_per_call(mut self, fuel: Option<u64>) -> Self {
        self.config.fuel_per_call = fuel;
        self
    }

    /// Largest linear memory of one instance, enforced when the guest grows
    /// its memory (the call then fails with
    /// [`WasmError::MemoryLimit`]). Default 64 MiB; a whole number of 64 KiB
    /// pages, at most 4 GiB − 64 KiB.
    pub fn max_memory_bytes(mut self, bytes: usize) -> Self {
        self.config.max_memory_bytes = bytes;
        self
    }

    /// Native stack the guest's frames may use before the call fails with
    /// [`WasmError::StackOverflow`]. Guests run on the caller's thread, which
    /// needs this much stack plus room for the host (keep it well under the
    /// thread's stack: 2 MiB for Rust and Tokio threads by default). Default
    /// 512 KiB; between 64 KiB and 8 MiB.
    pub fn max_wasm_stack_bytes(mut self, bytes: usize) -> Self {
        self.config.max_wasm_stack_bytes = bytes;
        self
    }

    /// Largest table (indirect-call targets) of one instance, in elements.
    /// Default 10 000; between 1 and 1 000 000.
    pub fn max_table_elements(mut self, elements: usize) -> Self {
        self.config.max_table_elements = elements;
        self
    }

    /// Instances alive at once across the engine (one per running call);
    /// further calls fail with [`WasmError::Busy`]. Also the size of the
    /// instance pool. Default 16; between 1 and 64.
    pub fn max_instances(mut self, count: usize) -> Self {
        self.config.max_instances = count;
        self
    }

    /// Largest module accepted by [`admit`](crate::SandboxEngine::admit).
    /// Default 16 MiB; between 8 bytes and 256 MiB.
    pub fn max_module_bytes(mut self, bytes: usize) -> Self {
        self.config.max_module_bytes = bytes;
        self
    }

    /// Largest input (one record batch as an Arrow IPC stream) written into a
    /// guest. Default 16 MiB; at least 1 KiB and less than
    /// `max_memory_bytes` (the input must fit in guest memory).
    pub fn max_input_bytes(mut self, bytes: usize) -> Self {
        self.config.max_input_bytes = bytes;
        self
    }

    /// Largest output read back from a guest. Default 16 MiB; at least 1 KiB
    /// and at most `max_memory_bytes`.
    pub fn max_output_bytes(mut self, bytes: usize) -> Self {
        self.config.max_output_bytes = bytes;
        self
    }

    /// Largest manifest read from a guest at admission. Default 64 KiB;
    /// between 256 bytes and 16 MiB.
    pub fn max_manifest_bytes(mut self, bytes: usize) -> Self {
        self.config.max_manifest_bytes = bytes;
        self
    }

    /// Most outputs (the dimension) an analysis may declare. Default 1 024;
    /// between 1 and `max_output_bytes / 8`.
    pub fn max_analysis_outputs(mut self, count: usize) -> Self {
        self.config.max_analysis_outputs = count;
        self
    }

    /// Compiled modules kept, keyed by SHA-256 of their bytes; the least
    /// recently used is dropped first. Default 32; between 1 and 4 096.
    pub fn module_cache_entries(mut self, entries: usize) -> Self {
        self.config.module_cache_entries = entries;
        self
    }

    /// How instances are allocated. Default
    /// [`AllocationStrategy::PoolingWithFallback`].
    pub fn allocation(mut self, strategy: AllocationStrategy) -> Self {
        self.config.allocation = strategy;
        self
    }

    /// Unmapped bytes after each linear memory: an access that escapes a
    /// bounds check faults there. Part of the pool's virtual reservation
    /// (see [`RuntimeConfig::pool_reservation_bytes`]). Default 2 MiB; a
    /// whole number of 64 KiB pages, at most 64 MiB.
    pub fn memory_guard_bytes(mut self, bytes: usize) -> Self {
        self.config.memory_guard_bytes = bytes;
        self
    }

    /// Largest runtime metadata (`VMContext`) of one instance; grows with the
    /// module's number of functions, globals and types. Pool sizing only: a
    /// module that needs more fails admission with [`WasmError::Compile`]
    /// naming the size it needs. Default 1 MiB; between 4 KiB
    /// and 64 MiB.
    pub fn max_instance_metadata_bytes(mut self, bytes: usize) -> Self {
        self.config.max_instance_metadata_bytes = bytes;
        self
    }

    /// Bytes at the bottom of each pooled linear memory that stay mapped
    /// between instances. When an instance ends, the pages it touched in
    /// this range are reset to the module's initial contents with `memset`
    /// (found with Linux's `PAGEMAP_SCAN` where the kernel has it, 6.7+)
    /// instead of being unmapped, so the next call does not page-fault them
    /// back in; pages above it are released with `madvise`. Either way no
    /// byte of one call is visible to the next. Costs up to this much
    /// resident memory per pool slot (`max_instances` slots). Default 8 MiB
    /// (a Rust guest's stack, data and the heap of an 8 192-row batch); at
    /// most 4 GiB, of which no more than `max_memory_bytes` is used; 0
    /// releases everything.
    pub fn keep_resident_bytes(mut self, bytes: usize) -> Self {
        self.config.keep_resident_bytes = bytes;
        self
    }

    /// Canonicalize the bits of every NaN a floating-point instruction
    /// produces, so NaN payloads are the same on every CPU architecture.
    /// Off by default: the host treats every NaN a guest returns alike (a
    /// UDF's NaN becomes SQL NULL, an analysis output's NaN the midpoint
    /// of its range), so payload bits never reach a result, and the check after
    /// each float operation makes float-heavy guests about 40 % slower.
    pub fn canonicalize_nans(mut self, on: bool) -> Self {
        self.config.canonicalize_nans = on;
        self
    }

    /// Checks the settings against each other and returns the configuration.
    pub fn build(self) -> Result<RuntimeConfig, WasmError> {
        let c = self.config;
        let bad = |msg: String| Err(WasmError::InvalidConfig(msg));
        let ms = Duration::from_millis(1);
        if c.call_deadline < ms || c.call_deadline > Duration::from_secs(3600) {
            return bad(format!(
                "call_deadline is {:?}; it must be between 1 ms and 1 h",
                c.call_deadline
            ));
        }
        if c.epoch_tick < ms || c.epoch_tick > c.call_deadline {
            return bad(format!(
                "epoch_tick is {:?}; it must be between 1 ms and call_deadline ({:?})",
                c.epoch_tick, c.call_deadline
            ));
        }
        if let Some(fuel) = c.fuel_per_call
            && fuel < 1_000
        {
            return bad(format!(
                "fuel_per_call is {fuel}; it must be at least 1000 (or None to turn fuel off)"
            ));
        }
        let max_memory = 4 * 1024 * MIB as u64 - WASM_PAGE_BYTES as u64;
        if c.max_memory_bytes == 0
            || !c.max_memory_bytes.is_multiple_of(WASM_PAGE_BYTES)
            || c.max_memory_bytes as u64 > max_memory
        {
            return bad(format!(
                "max_memory_bytes is {}; it must be a non-zero multiple of 65536 (one page) up to {max_memory}",
                c.max_memory_bytes
            ));
        }
        if !(64 * KIB..=8 * MIB).contains(&c.max_wasm_stack_bytes) {
            return bad(format!(
                "max_wasm_stack_bytes is {}; it must be between 64 KiB and 8 MiB",
                c.max_wasm_stack_bytes
            ));
        }
        if !(1..=1_000_000).contains(&c.max_table_elements) {
            return bad(format!(
                "max_table_elements is {}; it must be between 1 and 1000000",
                c.max_table_elements
            ));
        }
        if !(1..=64).contains(&c.max_instances) {
            return bad(format!(
                "max_instances is {}; it must be between 1 and 64",
                c.max_instances
            ));
        }
        if !(8..=256 * MIB).contains(&c.max_module_bytes) {
            return bad(format!(
                "max_module_bytes is {}; it must be between 8 bytes and 256 MiB",
                c.max_module_bytes
            ));
        }
        if c.max_input_bytes < KIB || c.max_input_bytes >= c.max_memory_bytes {
            return bad(format!(
                "max_input_bytes is {}; it must be at least 1 KiB and below max_memory_bytes ({})",
                c.max_input_bytes, c.max_memory_bytes
            ));
        }
        if c.max_output_bytes < KIB || c.max_output_bytes > c.max_memory_bytes {
            return bad(format!(
                "max_output_bytes is {}; it must be at least 1 KiB and at most max_memory_bytes ({})",
                c.max_output_bytes, c.max_memory_bytes
            ));
        }
        if !(256..=16 * MIB).contains(&c.max_manifest_bytes) {
            return bad(format!(
                "max_manifest_bytes is {}; it must be between 256 bytes and 16 MiB",
                c.max_manifest_bytes
            ));
        }
        if c.max_analysis_outputs == 0 || c.max_analysis_outputs > c.max_output_bytes / 8 {
            return bad(format!(
                "max_analysis_outputs is {}; it must be between 1 and max_output_bytes / 8 ({})",
                c.max_analysis_outputs,
                c.max_output_bytes / 8
            ));
        }
        if !(1..=4096).contains(&c.module_cache_entries) {
            return bad(format!(
                "module_cache_entries is {}; it must be between 1 and 4096",
                c.module_cache_entries
            ));
        }
        if !c.memory_guard_bytes.is_multiple_of(WASM_PAGE_BYTES) || c.memory_guard_bytes > 64 * MIB {
            return bad(format!(
                "memory_guard_bytes is {}; it must be a multiple of 65536 up to 64 MiB",
                c.memory_guard_bytes
            ));
        }
        if !(4 * KIB..=64 * MIB).contains(&c.max_instance_metadata_bytes) {
            return bad(format!(
                "max_instance_metadata_bytes is {}; it must be between 4 KiB and 64 MiB",
                c.max_instance_metadata_bytes
            ));
        }
        if c.keep_resident_bytes > 4 * 1024 * MIB {
            return bad(format!(
                "keep_resident_bytes is {}; it must be at most 4 GiB (only max_memory_bytes of it is used)",
                c.keep_resident_bytes
            ));
        }
        Ok(c)
    }
}
