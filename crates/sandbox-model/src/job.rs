//! Jobs and the usage record each one leaves behind.

use crate::DatasetId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Sql,
    Wasm,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum JobOutcome {
    /// Results were released.
    Released,
    /// A dry run: nothing was read or charged.
    DryRun,
    /// Refused before running; `rule` names the rule that refused it.
    Refused {
        rule: String,
    },
    /// Failed while running (the message never carries data values).
    Failed {
        message: String,
    },
    Cancelled,
}

/// What a job read, filtered on, output and spent: the raw material of the
/// usage report (数据利用报告) and of the audit ledger.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub job_id: String,
    pub grant_id: String,
    pub datasets: Vec<DatasetId>,
    /// `dataset.column` names read by the job.
    pub columns_read: Vec<String>,
    pub columns_filtered: Vec<String>,
    pub columns_grouped: Vec<String>,
    pub columns_aggregated: Vec<String>,
    /// Aggregate and scalar functions used.
    pub functions: Vec<String>,
    pub epsilon: f64,
    pub delta: f64,
    pub groups_released: u64,
    pub groups_suppressed: u64,
    /// SHA-256 of the submitted SQL text or WebAssembly module.
    pub submission_digest: String,
    /// SHA-256 of the released result, when one was released.
    pub result_digest: Option<String>,
    /// For a job with WebAssembly code: how many blocks (analysis) fell back
    /// to their default, as released (a noisy count); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<DefaultsCount>,
}

/// The released, differentially private count of the parts of a job that
/// fell back to their default (an analysis's empty, failed or NaN blocks;
/// a SQL job's rows whose function call failed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefaultsCount {
    /// What is counted: `"blocks"` (an analysis) or `"rows"` (a SQL job's
    /// function calls).
    pub unit: String,
    /// The noisy count, clamped to `[0, out_of]` (to `[0, ∞)` for rows).
    pub noisy: f64,
    /// How many there are in all when that is public (k blocks); `None`
    /// for rows, whose number depends on the data.
    #[serde(default)]
    pub out_of: Option<u64>,
    /// Half-width of the 95 % noise interval of `noisy`: a count above it
    /// is significantly more than zero.
    pub half_width_95: f64,
    /// ε spent on this count (part of the job's ε).
    pub epsilon: f64,
}

impl DefaultsCount {
    /// True when the noisy count is above its 95 % noise half-width, i.e.
    /// defaults were very likely used (a post-processing of the released
    /// count; about 5 % of jobs without any default are flagged too).
    pub fn significant(&self) -> bool {
        self.noisy > self.half_width_95
    }
}
