//! The SDK's error type and its mapping onto the ABI's error codes.

use core::fmt;

/// Why a job call failed. Each variant maps onto one of the ABI's error codes
/// ([`SdkError::code`]), which is all the host sees of a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkError {
    /// The input could not be decoded, or does not fit the function's
    /// signature (wrong column count, unsupported column type, missing
    /// column, unknown function). Code [`sandbox_abi::ERR_BAD_INPUT`].
    BadInput(String),
    /// The job's own code reported an error (an analysis returned `Err`).
    /// Code [`sandbox_abi::ERR_GUEST`].
    Guest(String),
    /// The job produced an output that breaks its contract (wrong number of
    /// rows or values) or it could not be encoded or allocated.
    /// Code [`sandbox_abi::ERR_OUTPUT`].
    Output(String),
}

impl SdkError {
    /// The ABI error code the host receives for this error.
    pub fn code(&self) -> i64 {
        match self {
            SdkError::BadInput(_) => sandbox_abi::ERR_BAD_INPUT,
            SdkError::Guest(_) => sandbox_abi::ERR_GUEST,
            SdkError::Output(_) => sandbox_abi::ERR_OUTPUT,
        }
    }

    /// The human-readable message (only visible to host-side tests of a job:
    /// across the ABI only [`SdkError::code`] is returned).
    pub fn message(&self) -> &str {
        match self {
            SdkError::BadInput(m) | SdkError::Guest(m) | SdkError::Output(m) => m,
        }
    }
}

impl fmt::Display for SdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdkError::BadInput(m) => write!(f, "bad input: {m}"),
            SdkError::Guest(m) => write!(f, "guest error: {m}"),
            SdkError::Output(m) => write!(f, "bad output: {m}"),
        }
    }
}

impl std::error::Error for SdkError {}

impl From<String> for SdkError {
    /// A job's own error message: [`SdkError::Guest`].
    fn from(message: String) -> Self {
        SdkError::Guest(message)
    }
}

impl From<&str> for SdkError {
    /// A job's own error message: [`SdkError::Guest`].
    fn from(message: &str) -> Self {
        SdkError::Guest(message.to_owned())
    }
}

impl From<Box<dyn std::error::Error + Send + Sync>> for SdkError {
    /// A job's own error: [`SdkError::Guest`].
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        SdkError::Guest(e.to_string())
    }
}

impl From<arrow_schema::ArrowError> for SdkError {
    /// An Arrow error raised by a job's own computation: [`SdkError::Guest`].
    fn from(e: arrow_schema::ArrowError) -> Self {
        SdkError::Guest(e.to_string())
    }
}
