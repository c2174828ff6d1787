use std::fmt;
use thiserror::Error;

/// A refusal: the job breaks a rule. It names the rule and the column and
/// never carries a data value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable rule id, e.g. `identifier-in-group-by`.
    pub rule: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            rule,
            message: message.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [rule: {}]", self.message, self.rule)
    }
}

/// Errors of SQL jobs.
#[derive(Debug, Error)]
pub enum SqlError {
    /// The query breaks a sandbox rule.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The SQL does not parse or plan (syntax, unknown column or table).
    /// These messages come from the planner and depend only on the query
    /// text and the public schemas.
    #[error("invalid query: {0}")]
    Invalid(String),
    /// The job ran past its wall-clock deadline and was stopped.
    #[error("the job exceeded its deadline of {0:?} and was stopped")]
    Deadline(std::time::Duration),
    /// Execution failed. The cause may depend on the data (an overflow, a
    /// bad cast), so it is never shown: the detail goes to the operator log.
    #[error("the job failed while computing on the data (details withheld; the operator log has a reference)")]
    Execution,
    /// The job needed more memory than its pool allows.
    #[error("the job exceeded its memory limit of {0} bytes")]
    Memory(usize),
    /// A table registered for the job could not be opened.
    #[error("dataset {0} could not be opened; ask the operator to check its storage")]
    Storage(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl SqlError {
    pub fn refused(rule: &'static str, message: impl Into<String>) -> Self {
        SqlError::Refused(Refusal::new(rule, message))
    }

    /// The rule id for refusals.
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            SqlError::Refused(r) => Some(r.rule),
            _ => None,
        }
    }
}
