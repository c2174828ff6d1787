//! The crate's one error type.
//!
//! `Display` is for the operator log and for the module's author at
//! admission. [`WasmError::public_message`] is what an analyst may see about
//! a *call*: it depends only on the kind of failure and the configuration,
//! never on the data the guest saw (raw trap text goes to `tracing` only).

use std::time::Duration;
use thiserror::Error;

/// Everything that can go wrong while configuring the engine, admitting a
/// module or calling a guest.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WasmError {
    /// A [`RuntimeConfig`](crate::RuntimeConfig) setting is out of range.
    #[error("invalid WebAssembly runtime configuration: {0}")]
    InvalidConfig(String),

    /// The engine could not be created (for example the instance pool could
    /// not be reserved with [`AllocationStrategy::PoolingOnly`](crate::AllocationStrategy::PoolingOnly)).
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),

    /// The module is larger than `max_module_bytes`.
    #[error("the module is {size} bytes, over the limit of {max} bytes: {cause}")]
    ModuleTooLarge {
        /// Size of the submitted module.
        size: usize,
        /// The configured limit.
        max: usize,
        /// What makes it large and what to do, from its sections (debug
        /// information, names, or the code and data themselves).
        cause: String,
    },

    /// The bytes are not a WebAssembly module this sandbox accepts (malformed,
    /// or using a disabled proposal such as threads, GC or memory64).
    #[error(
        "the file is not a WebAssembly module this sandbox accepts: {0}. Build for \
         wasm32-unknown-unknown with sandbox-sdk; threads, GC, exceptions, memory64 and multiple \
         memories are not available"
    )]
    InvalidModule(String),

    /// The module imports something the host does not provide.
    #[error("import {module}.{name} is not allowed: {reason}")]
    ImportRefused {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
        /// Why, in words the author can act on.
        reason: String,
    },

    /// A required export is missing.
    #[error("the module does not export `{name}` ({expected}); guests built with sandbox-sdk export it")]
    MissingExport {
        /// The export's name.
        name: String,
        /// What it must be.
        expected: &'static str,
    },

    /// An export has the wrong kind or signature.
    #[error("export `{name}` must be {expected}, but it is {found}")]
    ExportType {
        /// The export's name.
        name: String,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        found: String,
    },

    /// The module's declared memory or table does not fit the limits.
    #[error("the module does not fit the sandbox's limits: {0}")]
    ModuleLimits(String),

    /// Compilation failed after validation succeeded (an engine limit).
    #[error("cannot compile the module: {0}")]
    Compile(String),

    /// The guest's manifest is missing, malformed or inconsistent.
    #[error("the module's manifest is invalid: {0}")]
    InvalidManifest(String),

    /// A [`ModuleHandle`](crate::ModuleHandle) from another engine was used.
    #[error("the module was admitted by another engine; admit it again on this one")]
    ForeignModule,

    /// No UDF of that name in the manifest.
    #[error("the module declares no UDF named `{0}`")]
    UnknownUdf(String),

    /// The UDF has no per-row export proven stateless, so its rows cannot
    /// share an instance (call it through `call_udf`, one row per call).
    #[error("UDF `{0}` has no provably stateless per-row export (sandbox_row_{0})")]
    NotStateless(String),

    /// The manifest declares no analysis.
    #[error("the module declares no analysis (`analysis` in its manifest)")]
    NoAnalysis,

    /// The input batch does not match the UDF's declared arguments.
    #[error("the input does not match the declaration: {0}")]
    InputMismatch(String),

    /// The encoded input is larger than `max_input_bytes`.
    #[error(
        "the input is {size} bytes as Arrow IPC, over the limit of {max} bytes: use smaller batches or more blocks"
    )]
    InputTooLarge {
        /// Encoded size.
        size: usize,
        /// The configured limit.
        max: usize,
    },

    /// Arrow could not encode the input.
    #[error("cannot encode the input as Arrow IPC: {0}")]
    Encode(String),

    /// All `max_instances` slots are in use.
    #[error("all {max} WebAssembly instance slots are in use; retry when running calls finish")]
    Busy {
        /// The configured limit.
        max: usize,
    },

    /// The call ran past its wall-clock deadline (epoch interruption).
    #[error("the guest ran past its deadline of {deadline:?}")]
    Timeout {
        /// The configured deadline.
        deadline: Duration,
    },

    /// The call used all its fuel.
    #[error("the guest used all its fuel ({fuel} units)")]
    FuelExhausted {
        /// The configured fuel per call.
        fuel: u64,
    },

    /// The guest tried to grow its linear memory past the limit.
    #[error("the guest tried to use more than {limit} bytes of linear memory")]
    MemoryLimit {
        /// The configured limit.
        limit: usize,
    },

    /// The guest tried to grow a table past the limit.
    #[error("the guest tried to grow a table beyond {limit} elements")]
    TableLimit {
        /// The configured limit.
        limit: usize,
    },

    /// The guest exhausted its stack (usually unbounded recursion).
    #[error("the guest exhausted its {limit}-byte stack")]
    StackOverflow {
        /// The configured stack limit.
        limit: usize,
    },

    /// Any other trap (unreachable, out-of-bounds access, division by zero…).
    #[error("the guest trapped: {detail}")]
    Trap {
        /// Raw trap text, for the operator log only.
        detail: String,
    },

    /// The guest returned one of the ABI's error codes.
    #[error("the guest reported an error: code {code} ({})", guest_code_meaning(*code))]
    Guest {
        /// `ERR_BAD_INPUT`, `ERR_GUEST` or `ERR_OUTPUT`.
        code: i64,
    },

    /// The guest's result breaks the ABI (pointer or length out of range,
    /// unparsable Arrow IPC, wrong type or row count…).
    #[error("the guest returned malformed output: {detail}")]
    BadOutput {
        /// What was wrong, for the operator log only.
        detail: String,
    },

    /// Instantiation failed for a reason other than the limits above.
    #[error("cannot instantiate the module: {0}")]
    Instantiate(String),
}

fn guest_code_meaning(code: i64) -> &'static str {
    match code {
        sandbox_abi::ERR_BAD_INPUT => "the guest could not read its input",
        sandbox_abi::ERR_GUEST => "the guest's own code failed",
        sandbox_abi::ERR_OUTPUT => "the guest could not produce its output",
        _ => "unknown code",
    }
}

impl WasmError {
    /// A message an analyst may see. For admission and configuration errors
    /// it is the full message (it depends only on the module's bytes and the
    /// settings). For errors raised while a guest ran on data it names the
    /// kind of failure and the configured limit only: no trap text, offsets,
    /// row counts or guest-chosen values.
    pub fn public_message(&self) -> String {
        use WasmError::*;
        match self {
            Timeout { deadline } => {
                format!("the job's code ran longer than its time limit ({deadline:?} per call)")
            }
            FuelExhausted { fuel } => {
                format!("the job's code ran longer than its instruction budget ({fuel} units per call)")
            }
            MemoryLimit { limit } => {
                format!("the job's code tried to use more than {limit} bytes of memory")
            }
            TableLimit { limit } => {
                format!("the job's code tried to grow a table beyond {limit} elements")
            }
            StackOverflow { limit } => {
                format!("the job's code exhausted its {limit}-byte stack (deep or unbounded recursion)")
            }
            Trap { .. } => "the job's code stopped with a runtime error (a WebAssembly trap)".to_string(),
            Guest { .. } => "the job's code reported an error".to_string(),
            BadOutput { .. } => "the job's code returned output that does not follow the sandbox ABI".to_string(),
            Instantiate(_) => "the job's code could not be started".to_string(),
            Busy { .. } => "the sandbox is busy; retry the job later".to_string(),
            Encode(_) => "the sandbox could not prepare the input for the job's code".to_string(),
            // The size of a block or batch depends on the data; the limit does not.
            InputTooLarge { max, .. } => {
                format!(
                    "an input for the job's code is over the limit of {max} bytes; use smaller batches or more blocks"
                )
            }
            // The rest depend only on the module, the declaration or the settings.
            other => other.to_string(),
        }
    }

    /// True when the failure was caused by the guest while it ran (as
    /// opposed to admission, configuration or input preparation). A
    /// sample-and-aggregate caller typically replaces such a block's output
    /// with a default instead of failing the job.
    pub fn is_guest_fault(&self) -> bool {
        use WasmError::*;
        matches!(
            self,
            Timeout { .. }
                | FuelExhausted { .. }
                | MemoryLimit { .. }
                | TableLimit { .. }
                | StackOverflow { .. }
                | Trap { .. }
                | Guest { .. }
                | BadOutput { .. }
        )
    }
}
