use thiserror::Error;

#[derive(Debug, Error)]
pub enum GovernanceError {
    #[error("no grant `{0}`: apply for access to the datasets first")]
    NoGrant(String),
    #[error("grant `{grant}` does not cover dataset {dataset}")]
    NotCovered { grant: String, dataset: String },
    #[error(
        "privacy budget exhausted for {dataset} under grant `{grant}`: {spent:.3} of ε = {total:.3} spent, this job needs {requested:.3}"
    )]
    BudgetExhausted {
        grant: String,
        dataset: String,
        spent: f64,
        total: f64,
        requested: f64,
    },
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
    #[error("the sandbox database failed: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("cannot encode a record: {0}")]
    Encoding(#[from] serde_json::Error),
}
