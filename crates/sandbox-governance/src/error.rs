use crate::amount::{AmountError, Delta, Epsilon};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GovernanceError {
    #[error("no grant `{0}`: apply for access to the datasets first")]
    NoGrant(String),
    #[error("grant `{grant}` does not cover dataset {dataset}")]
    NotCovered { grant: String, dataset: String },
    #[error(
        "privacy budget exhausted for {dataset} under grant `{grant}`: ε = {spent} of {total} spent, this job needs ε = {requested}"
    )]
    BudgetExhausted {
        grant: String,
        dataset: String,
        spent: Epsilon,
        total: Epsilon,
        requested: Epsilon,
    },
    #[error(
        "δ budget exhausted for {dataset} under grant `{grant}`: δ = {spent} of {total} spent, this job needs δ = {requested}"
    )]
    DeltaBudgetExhausted {
        grant: String,
        dataset: String,
        spent: Delta,
        total: Delta,
        requested: Delta,
    },
    #[error(
        "an approval cannot grant more than the policy of {dataset} allows: ε = {approved} asked, the policy's epsilon_budget is {cap}"
    )]
    OverPolicyBudget {
        dataset: String,
        approved: Epsilon,
        cap: Epsilon,
    },

    #[error(
        "the budget accounting of {dataset} changed while the job was being planned (its policy switched between pure and zcdp); nothing was charged, run it again"
    )]
    AccountingChanged { dataset: String },

    #[error("job `{0}` is already recorded")]
    DuplicateJob(String),
    #[error("agreement `{agreement}` does not allow new jobs: {why}")]
    AgreementInactive { agreement: String, why: String },
    #[error("dataset {dataset} is suspended ({reason}); no job may use it until it is resumed")]
    DatasetSuspended { dataset: String, reason: String },
    #[error("no account holds this token")]
    Unauthenticated,
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("job `{0}` is not running (unknown, or already finished)")]
    NotRunning(String),
    #[error("the sandbox database failed: {0}")]
    Storage(String),
    /// The database is not the one its head file records (emptied,
    /// truncated or replaced); nothing was opened.
    #[error("{0}")]
    Discontinuous(String),
    #[error("the sandbox database failed: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("cannot encode a record: {0}")]
    Encoding(#[from] serde_json::Error),
}

impl From<AmountError> for GovernanceError {
    fn from(e: AmountError) -> Self {
        GovernanceError::Invalid(e.0)
    }
}
