use thiserror::Error;

/// Errors from calibration and release. None of them carries a data value.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DpError {
    #[error("ε must be positive and finite, got {0}")]
    InvalidEpsilon(f64),
    #[error("δ must be in (0, 1) for partition selection, got {0}")]
    InvalidDelta(f64),
    #[error("measure bounds must be finite with lower < upper, got [{0}, {1}]")]
    InvalidBounds(f64, f64),
    #[error("a quantile needs α in [0, 1] and between 2 and 10 000 candidates")]
    InvalidQuantile,
    #[error("contribution bound {name} must be at least 1")]
    InvalidContributionBound { name: &'static str },
    #[error("the system random source failed: {0}")]
    Entropy(String),
    #[error("a sensitivity or total overflowed the fixed-point range")]
    Overflow,
    #[error("the zCDP to (ε, δ) conversion failed: {0}")]
    Conversion(String),
    #[error("internal error in the DP release: {0}")]
    Internal(&'static str),
}
