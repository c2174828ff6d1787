//! # sandbox-governance
//!
//! Grants and privacy budgets, job records and usage records, kept in an
//! embedded SQLite database. The budget is the one piece of state that
//! must never be wrong: a job's ε and δ are reserved in the same
//! transaction that records the job, before it runs, and are never
//! refunded, so a crash can leave a charge for a job that released nothing
//! but never a release without its charge.
//!
//! Where it sits on the job path: admission (is there a grant, does it
//! cover the datasets), charge (reserve ε, δ), record (outcome and usage).
//!
//! ```
//! use sandbox_governance::{Grant, Store, JobCharge};
//! let store = Store::open_in_memory().unwrap();
//! let grant = Grant::new("g1", "demo-bank", vec![("gov.tax_payments".parse().unwrap(), 1.0)]);
//! store.upsert_grant(&grant).unwrap();
//! let charge = JobCharge::new("job-1", "g1", "sql", "digest", vec![("gov.tax_payments".parse().unwrap(), 0.6, 0.0)]);
//! store.reserve(&charge).unwrap();
//! assert!(store.reserve(&JobCharge { job_id: "job-2".into(), ..charge }).is_err()); // 1.2 > 1.0
//! ```

mod accounts;
mod agreements;
pub mod amount;
mod anchor;
mod applications;
mod audit;
mod complaints;
pub mod db;
mod enterprise;
mod error;
pub mod fields;
mod migrate;
mod queue;
mod registry;
mod report;
mod samples;
mod store;
mod suspension;
#[cfg(test)]
mod testing;
pub mod zcdp;

pub use accounts::{Role, bearer_token, token_digest};
pub use agreements::Agreement;
pub use amount::{Delta, Epsilon};
pub use anchor::{Checkpoint, Continuity};
pub use applications::{ApplicationBody, ApplicationRecord, Approval, Decision};
pub use audit::{AuditReport, Integrity};
pub use complaints::{Complaint, MAX_COMPLAINT_BYTES};
pub use error::GovernanceError;
pub use queue::{QueueState, QueuedJob, RecordedJob, Transition};
pub use registry::{DatasetVersionRecord, Registration};
pub use report::{
    AgreementTerms, Calls, DatasetBudget, FieldUse, GrantStatus, JobCounts, JobLine, LedgerRange, Period, UsageReport,
    WasmUse,
};
pub use samples::{SampleBudget, SampleCharge};
pub use sandbox_ledger::{Broken, Entry};
pub use store::{BudgetLine, ExactBudget, Grant, JobCharge, Store};
pub use suspension::Suspension;
