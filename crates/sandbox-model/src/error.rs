use thiserror::Error;

/// Errors raised while building or validating model values.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    #[error("invalid dataset id `{0}`: expected `namespace.table`, lower-case letters, digits and `_`")]
    InvalidDatasetId(String),
    #[error("invalid unified social credit code: {0}")]
    InvalidCreditCode(String),
    #[error("catalog entry {dataset}: {message}")]
    InvalidDataset { dataset: String, message: String },
    #[error("duplicate dataset `{0}` in the catalog")]
    DuplicateDataset(String),
}
