//! # sandbox-sql
//!
//! SQL jobs on Apache DataFusion: the only crate that names `datafusion`.
//! It owns
//!
//! * [`session`]: one hardened DataFusion session per job, holding only the
//!   tables its grant covers (registered from the catalog through table
//!   providers, never from user input), with a memory pool and no table
//!   functions, URL tables, DDL or information schema;
//! * [`guard`]: statement-level checks before planning (one query, size
//!   caps, no EXPLAIN/DDL/DML/COPY/SET/SHOW, no table functions);
//! * [`checker`]: the policy gate on DataFusion's logical plan, which fails
//!   closed: a plan node or expression it does not know is refused by name;
//! * [`desensitize`]: the owners' desensitization rules, applied beneath
//!   the plan (a column with a rule is its coarsened value in the job's
//!   session);
//! * [`rewrite`] and [`partials`]: the plan that computes per-(privacy unit,
//!   group) partial statistics on an integer grid, which the DP crate then
//!   bounds, noises and releases.
//!
//! Where it sits on the job path: plan → check → (bound, charge, release in
//! other crates) → execute. Exact aggregates never leave the process: this
//! crate returns partial statistics to the runtime, not to a user.

pub mod checker;
pub mod clamp;
pub mod clamp_auto;
pub mod contribution;
pub mod defaults;
pub mod desensitize;
pub mod grid;
pub mod guard;
pub mod guest;
pub mod limits;
pub mod lineage;
pub mod multiplicity;
pub mod partials;
pub mod portable;
pub mod query;
pub mod rewrite;
pub mod runner;
pub mod session;
pub mod storage;
pub mod total;
pub mod trial;

mod error;

/// Re-exported for benchmarks and tests that compare with plain DataFusion.
pub use datafusion;
pub use error::{Refusal, SqlError};
pub use limits::EngineLimits;
pub use query::CheckedQuery;
pub use session::{JobSession, TableBinding};
