//! # sandbox-runtime
//!
//! The job pipeline: the one place that knows a job's whole path.
//!
//! ```text
//! admit (grant covers the datasets) → plan + check (sandbox-sql)
//!   → combine the owners' policies → dry run stops here (cost, intervals)
//!   → charge ε, δ atomically with the job record (sandbox-governance)
//!   → compute per-(unit, group) partials (sandbox-sql, with deadline and memory pool)
//!   → bound, noise, select, suppress, round (sandbox-dp)
//!   → record outcome and usage → released table
//! ```
//!
//! It also owns the data directory (datasets, catalog, policies and the
//! database in one place, created on first use).

pub mod analysis;
pub mod assets;
pub mod data_dir;
pub mod estimation;
pub mod forecast;
mod governance;
mod multiplicity;
pub mod postprocess;
pub mod preflight;
pub mod published;
pub mod registrant;
pub mod release;
pub mod rules;
pub mod sandbox;
pub mod testing;
pub mod wasm;

mod error;

pub use analysis::{AnalysisOptions, AnalysisProgram};
pub use data_dir::DataDir;
pub use error::RuntimeError;
pub use published::PublishedTables;
pub use sandbox::{
    AnalysisDryRun, AnalysisResult, DeclaredRowBounds, DryRunReport, JobContext, OutputNoise, Sandbox, SqlJobOptions,
    SqlJobResult, SqlTrialReport, TrialBlock, TrialReport,
};
/// How a job's ε composes (shown in dry runs), from `sandbox-dp`.
pub use sandbox_dp::accounting::Composition;
pub use wasm::WasmJob;
