use std::path::Path;
use thiserror::Error;

/// Why a registration or withdrawal failed. Every variant names the file,
/// line or column it is about and never quotes a value from the data (the
/// message may be logged or stored; values may be identifiers).
#[derive(Debug, Error)]
pub enum IngestError {
    /// The catalog entry, the policy or the options are not acceptable.
    #[error("{0}")]
    Spec(String),
    /// The file cannot be read as the format it claims.
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    /// The file's columns do not match the catalog entry.
    #[error("{file}: {message}")]
    Schema { file: String, message: String },
    /// The text is not in the declared encoding.
    #[error("{file}: line {line} (byte {offset}) is not valid {encoding}{hint}; nothing was registered")]
    Encoding {
        file: String,
        encoding: &'static str,
        line: u64,
        offset: u64,
        hint: &'static str,
    },
    /// A line (or a quoted field's record) is longer than the limit: the
    /// reader would otherwise hold it whole.
    #[error(
        "{file}: at line {line}, a line or quoted field is longer than {limit} bytes (an unbalanced quote?); nothing was registered"
    )]
    LineTooLong { file: String, line: u64, limit: usize },
    /// The file has no data rows.
    #[error("{file}: {message}; nothing was registered")]
    Empty { file: String, message: String },
    /// The quality report breaks one of the owner's thresholds.
    #[error("registration refused by the quality thresholds: {}; nothing was registered", .reasons.join("; "))]
    Quality {
        reasons: Vec<String>,
        /// The report, for the owner to see what is wrong.
        report: Box<crate::QualityReport>,
    },
    /// The pseudonymization secret is missing, unreadable or exposed.
    #[error("pseudonymization secret {path}: {message}")]
    Secret { path: String, message: String },
    /// Another registration of the same dataset holds its lock.
    #[error("{0}")]
    Busy(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing Parquet: {0}")]
    Parquet(String),
    /// Recording the version (the caller's ledger) failed; nothing was made current.
    #[error("recording the version failed, nothing was registered: {0}")]
    Record(String),
    /// A sample dataset could not be made (the DP step, or the files).
    #[error("sample: {0}")]
    Sample(String),
    /// A failure injected by a test at a given stage.
    #[error("injected failure at {0}")]
    Injected(&'static str),
}

impl IngestError {
    /// A short machine name of the kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            IngestError::Spec(_) => "spec",
            IngestError::Format { .. } => "format",
            IngestError::Schema { .. } => "schema",
            IngestError::Encoding { .. } => "encoding",
            IngestError::LineTooLong { .. } => "line-too-long",
            IngestError::Empty { .. } => "empty",
            IngestError::Quality { .. } => "quality",
            IngestError::Secret { .. } => "secret",
            IngestError::Busy(_) => "busy",
            IngestError::Io { .. } => "io",
            IngestError::Parquet(_) => "parquet",
            IngestError::Record(_) => "record",
            IngestError::Sample(_) => "sample",
            IngestError::Injected(_) => "injected",
        }
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IngestError + '_ {
    move |source| IngestError::Io {
        path: path.display().to_string(),
        source,
    }
}
