//! What to generate (`Scale`, `GenerateOptions`) and what was generated
//! (`GenerateReport`).

use std::path::PathBuf;

use crate::DatagenError;

/// The most months of utility data: 2023-01 through 2024-12.
pub const MAX_MONTHS: u32 = 24;

/// How much data to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// Number of legal entities (rows of `gov.legal_entities`).
    pub entities: usize,
    /// Number of distinct persons in `health.clinic_visits`.
    pub persons: usize,
    /// Months of `gov.utility_usage`, counted from 2023-01 (at most 24).
    pub months: u32,
}

impl Scale {
    /// About 2,000 entities, 3,000 persons and 24 months: fast enough for tests.
    pub fn small() -> Self {
        Scale {
            entities: 2_000,
            persons: 3_000,
            months: MAX_MONTHS,
        }
    }

    /// Enough entities that `gov.utility_usage` has just over 10 million rows
    /// (416,667 entities × 24 months = 10,000,008 rows).
    pub fn bench_10m() -> Self {
        Self::with_entities(10_000_000usize.div_ceil(MAX_MONTHS as usize))
    }

    /// `n` entities, 1.5 persons per entity and 24 months.
    pub fn with_entities(n: usize) -> Self {
        Scale {
            entities: n,
            persons: n.saturating_mul(3) / 2,
            months: MAX_MONTHS,
        }
    }

    /// Rows `gov.utility_usage` will have at this scale.
    pub fn utility_rows(&self) -> u64 {
        self.entities as u64 * u64::from(self.months)
    }

    pub(crate) fn validate(&self) -> Result<(), DatagenError> {
        if self.months == 0 || self.months > MAX_MONTHS {
            return Err(DatagenError::InvalidScale(format!(
                "months must be between 1 and {MAX_MONTHS} (2023-01..2024-12), got {}",
                self.months
            )));
        }
        Ok(())
    }
}

/// Everything `generate` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Master seed; each table derives its own random stream from it.
    pub seed: u64,
    /// How much data to generate.
    pub scale: Scale,
    /// Root directory; tables go to `out_dir/<namespace>/<table>/`.
    pub out_dir: PathBuf,
    /// Maximum rows per Parquet part file (at least 1).
    pub rows_per_file: usize,
    /// Generate only these datasets (e.g. `["gov.utility_usage"]`); `None`
    /// generates all. The rows of a table do not depend on which other tables
    /// are generated.
    pub only: Option<Vec<String>>,
}

impl GenerateOptions {
    /// Default part size: one million rows per file.
    pub const DEFAULT_ROWS_PER_FILE: usize = 1_000_000;

    /// Options for all tables with one million rows per file.
    pub fn new(seed: u64, scale: Scale, out_dir: impl Into<PathBuf>) -> Self {
        GenerateOptions {
            seed,
            scale,
            out_dir: out_dir.into(),
            rows_per_file: Self::DEFAULT_ROWS_PER_FILE,
            only: None,
        }
    }

    /// The same options restricted to `datasets`.
    pub fn only<I, S>(mut self, datasets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.only = Some(datasets.into_iter().map(Into::into).collect());
        self
    }

    pub(crate) fn validate(&self) -> Result<(), DatagenError> {
        self.scale.validate()?;
        if self.rows_per_file == 0 {
            return Err(DatagenError::InvalidOptions(
                "rows_per_file must be at least 1 (e.g. 1_000_000)".into(),
            ));
        }
        Ok(())
    }
}

/// One generated table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// Dataset id, e.g. `gov.utility_usage`.
    pub dataset: String,
    /// Rows written across all parts.
    pub rows: u64,
    /// The part files, in order.
    pub files: Vec<PathBuf>,
    /// Total size of the part files in bytes.
    pub bytes: u64,
}

/// What `generate` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateReport {
    /// The generated tables in canonical order (see [`crate::DATASETS`]).
    pub tables: Vec<TableReport>,
    /// Lower-case hex SHA-256 over every generated file, in canonical table
    /// order and part order: for each file its path relative to `out_dir`
    /// (with `/` separators), a newline, its length (8 bytes little endian)
    /// and the SHA-256 of its contents.
    pub digest: String,
}

impl GenerateReport {
    /// The report of one dataset, if it was generated.
    pub fn table(&self, dataset: &str) -> Option<&TableReport> {
        self.tables.iter().find(|t| t.dataset == dataset)
    }
}
