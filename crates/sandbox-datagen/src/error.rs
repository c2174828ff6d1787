//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

use arrow::error::ArrowError;
use parquet::errors::ParquetError;
use sandbox_model::ModelError;
use thiserror::Error;

/// Everything that can go wrong while generating the synthetic data.
#[derive(Debug, Error)]
pub enum DatagenError {
    /// The requested scale cannot be generated.
    #[error("invalid scale: {0}")]
    InvalidScale(String),

    /// A generation option is out of range.
    #[error("invalid generate option: {0}")]
    InvalidOptions(String),

    /// `GenerateOptions::only` named a table this crate does not generate.
    #[error("unknown dataset `{name}` in `only`: expected one of {known}")]
    UnknownDataset {
        /// The name that was asked for.
        name: String,
        /// The datasets this crate knows, comma separated.
        known: String,
    },

    /// A file-system operation failed; `path` is the file or directory involved.
    #[error("cannot {action} `{}`: {source} (check that the output directory is a writable directory)", .path.display())]
    Io {
        /// What was being done, e.g. "create directory".
        action: &'static str,
        /// The path the operation was applied to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The Parquet encoder failed while writing `path`.
    #[error("cannot write Parquet file `{}`: {source}", .path.display())]
    Parquet {
        /// The (temporary) file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: ParquetError,
    },

    /// A generated batch did not match its table's Arrow schema (a bug in
    /// this crate, reported rather than panicking).
    #[error("cannot assemble an Arrow batch for {dataset}: {source}")]
    Arrow {
        /// The dataset being generated.
        dataset: String,
        /// The underlying error.
        #[source]
        source: ArrowError,
    },

    /// A generated unified social credit code was rejected by `sandbox-model`.
    #[error("generated an invalid credit code: {0}")]
    CreditCode(#[from] ModelError),

    /// The writer stopped accepting batches (it failed; its own error is the
    /// one reported to the caller).
    #[error("the Parquet writer for {0} stopped before generation finished")]
    WriterStopped(String),

    /// The generator thread of a table panicked.
    #[error("the generator thread for {0} panicked; this is a bug in sandbox-datagen")]
    GeneratorPanicked(String),
}

impl DatagenError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        DatagenError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
