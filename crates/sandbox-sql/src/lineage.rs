//! Column lineage: which dataset columns each column of a plan node
//! derives from, and whether it is still the source column itself.

use sandbox_model::DatasetId;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;

/// A column of a catalog dataset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SourceColumn {
    pub dataset: DatasetId,
    pub column: String,
}

impl fmt::Display for SourceColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.dataset, self.column)
    }
}

/// What a plan column is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnFact {
    /// Every source column the value depends on.
    pub sources: BTreeSet<SourceColumn>,
    /// Set when the value *is* a source column, unchanged.
    pub direct: Option<SourceColumn>,
    /// Set when the value is the output of a job-supplied row function
    /// (a WebAssembly UDF): a measure with the function's declared bounds.
    pub guest: Option<GuestOutput>,
    /// Set when the value *is* the privacy-unit column of the protected scan
    /// with this number (scans are numbered as the checker meets them),
    /// unchanged. Units are tracked by scan, never by column name.
    pub unit_scan: Option<usize>,
    /// The value comes from the null-supplying side of an outer join: it
    /// may be NULL where the other side has a row.
    pub outer_nullable: bool,
    /// The value depends on the output of a job-supplied function.
    pub guest_derived: bool,
}

/// The output of a job-supplied row function.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestOutput {
    pub function: String,
    pub bounds: (f64, f64),
}

impl Eq for GuestOutput {}

impl ColumnFact {
    pub fn direct(source: SourceColumn) -> Self {
        ColumnFact {
            sources: BTreeSet::from([source.clone()]),
            direct: Some(source),
            ..Default::default()
        }
    }

    pub fn derived(sources: BTreeSet<SourceColumn>) -> Self {
        ColumnFact {
            sources,
            ..Default::default()
        }
    }
}
