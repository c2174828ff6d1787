//! Released results: what leaves the sandbox, with the noise and the
//! disclosure controls that were applied to each number.

use serde::{Deserialize, Serialize};

/// One output column of a released table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleasedColumn {
    pub name: String,
    /// `group_key` or the aggregate, e.g. `avg(gov.utility_usage.electricity_kwh)`.
    pub kind: String,
}

/// One released value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ReleasedCell {
    /// A group key value (public, or chosen by DP partition selection).
    Key { value: serde_json::Value },
    /// A differentially private value with its mechanism, noise scale and
    /// 95% confidence interval for the exact (bounded) statistic.
    Noisy {
        value: f64,
        mechanism: String,
        scale: f64,
        ci95: [f64; 2],
    },
    /// A value released under threshold rules only (rounded, not noised).
    Rounded { value: f64, base: f64 },
    /// A value computed after release from released values (an expression
    /// of aggregates in the SELECT list: a ratio, a share, a rounding):
    /// post-processing, no ε. `value` is `None` where the expression has no
    /// value (a division by zero, a NULL). `ci95` is a 95% interval for the
    /// same expression of the exact (bounded) statistics when one can be
    /// derived soundly, `None` when not (see docs/privacy.md).
    Derived { value: Option<f64>, ci95: Option<[f64; 2]> },
    /// Withheld; the reason names the rule, never the value.
    Withheld { rule: String },
}

/// A group that was suppressed, with the rule that suppressed it. The keys
/// are given only when they are public (from the policy's key set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suppression {
    pub rule: String,
    pub groups: u64,
}

/// A released table and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleasedTable {
    pub columns: Vec<ReleasedColumn>,
    pub rows: Vec<Vec<ReleasedCell>>,
    pub epsilon_spent: f64,
    pub delta_spent: f64,
    pub suppressed: Vec<Suppression>,
    /// Plain-language notes on how the numbers were produced.
    pub notes: Vec<String>,
}
