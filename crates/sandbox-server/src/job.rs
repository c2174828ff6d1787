//! What a job submission says and how a job is shown: the request as
//! stored in the queue (so a restart can run it again) and its view.

use crate::error::ApiError;
use base64::Engine;
use sandbox_governance::QueuedJob;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The largest SQL text accepted (the runtime's own guard is the same or
/// smaller; this one answers before anything is stored).
pub const MAX_SQL_BYTES: usize = 100 * 1024;

use sandbox_runtime::analysis::MAX_BLOCKS;

/// The longest agreement name accepted.
const MAX_NAME_BYTES: usize = sandbox_governance::fields::MAX_NAME_BYTES;

/// A job to run under one of the caller's agreements.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobRequest {
    /// A SQL job; it may call the row functions of a WebAssembly module.
    Sql {
        /// The agreement (grant id) the job runs under.
        agreement: String,
        sql: String,
        /// ε to spend (default: the owners' per-query cap).
        #[serde(default)]
        epsilon: Option<f64>,
        /// Report the cost and interval widths only: no data read, no budget spent.
        #[serde(default)]
        dry_run: bool,
        /// A WebAssembly module with row functions (UDFs), base64.
        #[serde(default)]
        wasm_module: Option<String>,
        /// Spend the smallest ε that gives every aggregate an expected 95%
        /// interval of ± this much (output units); refused above the
        /// per-query cap and together with `epsilon`.
        #[serde(default)]
        target_ci: Option<f64>,
        /// Rows per group expected, for the intervals of means.
        #[serde(default)]
        target_rows: Option<u64>,
        /// Run the query as written on the datasets' public DP samples:
        /// its exact result there and every failed call of the module's
        /// functions with the guest's message; nothing charged.
        #[serde(default)]
        trial: bool,
    },
    /// A WebAssembly analysis run by sample and aggregate over the rows
    /// `input_sql` selects.
    Analysis {
        agreement: String,
        input_sql: String,
        /// The WebAssembly module, base64.
        wasm_module: String,
        /// Disjoint blocks of privacy units (default 32).
        #[serde(default)]
        blocks: Option<usize>,
        #[serde(default)]
        epsilon: Option<f64>,
        /// Run on the datasets' public DP samples: every block's outputs and
        /// failures with the guest's message; nothing charged.
        #[serde(default)]
        trial: bool,
        /// Report the noise each output will get (declared ranges, k, ε);
        /// nothing read or charged.
        #[serde(default)]
        dry_run: bool,
    },
}

impl JobRequest {
    pub fn agreement(&self) -> &str {
        match self {
            JobRequest::Sql { agreement, .. } | JobRequest::Analysis { agreement, .. } => agreement,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            JobRequest::Sql { .. } => "sql",
            JobRequest::Analysis { .. } => "analysis",
        }
    }

    /// Checks what can be checked before queueing.
    pub fn validate(&self) -> Result<(), ApiError> {
        let (sql, module) = match self {
            JobRequest::Sql { sql, wasm_module, .. } => (sql, wasm_module.as_deref()),
            JobRequest::Analysis {
                input_sql, wasm_module, ..
            } => (input_sql, Some(wasm_module.as_str())),
        };
        if sql.trim().is_empty() {
            return Err(ApiError::invalid("the job has no SQL"));
        }
        if sql.len() > MAX_SQL_BYTES {
            return Err(ApiError::invalid(format!(
                "the SQL text has {} bytes; at most {MAX_SQL_BYTES} are accepted",
                sql.len()
            )));
        }
        if sql.contains('\0') {
            return Err(ApiError::invalid("the SQL text contains a NUL character"));
        }
        let agreement = self.agreement();
        if agreement.is_empty() || agreement.len() > MAX_NAME_BYTES || agreement.chars().any(char::is_control) {
            return Err(ApiError::invalid(format!(
                "`agreement` names an agreement: 1 to {MAX_NAME_BYTES} bytes, no control characters"
            )));
        }
        let (epsilon, blocks) = match self {
            JobRequest::Sql { epsilon, .. } => (*epsilon, None),
            JobRequest::Analysis { epsilon, blocks, .. } => (*epsilon, *blocks),
        };
        // The policies' caps and minimum are the runtime's to check (and to
        // record as a refusal); a number that is no ε at all stops here.
        if let Some(e) = epsilon
            && !(e.is_finite() && e > 0.0)
        {
            return Err(ApiError::invalid(format!("`epsilon` = {e} is not a positive number")));
        }
        if let Some(b) = blocks
            && !(2..=MAX_BLOCKS).contains(&b)
        {
            return Err(ApiError::invalid(format!("`blocks` = {b}: between 2 and {MAX_BLOCKS}")));
        }
        let conflicting = match self {
            JobRequest::Sql {
                trial,
                dry_run,
                epsilon,
                target_ci,
                ..
            } => *trial && (*dry_run || epsilon.is_some() || target_ci.is_some()),
            JobRequest::Analysis {
                trial,
                dry_run,
                epsilon,
                ..
            } => *trial && (*dry_run || epsilon.is_some()),
        };
        if conflicting {
            return Err(ApiError::invalid(
                "a trial runs on the public samples and spends nothing: it takes no `dry_run`, `epsilon` or `target_ci`",
            ));
        }
        if let Some(m) = module {
            decode_module(m)?;
        }
        Ok(())
    }
}

/// Decodes a base64 WebAssembly module.
pub fn decode_module(base64_text: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(base64_text.trim())
        .map_err(|e| ApiError::invalid(format!("wasm_module is not base64: {e}")))
}

/// A job as its submitter sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    /// `sql` or `analysis`.
    pub kind: String,
    pub agreement: String,
    /// `queued`, `running`, `succeeded`, `refused`, `failed` or `cancelled`.
    pub state: String,
    /// The stage a running job has reached: `checking`, `computing`, `releasing`.
    pub progress: Option<String>,
    /// Why the job was refused or failed: `{"rule", "message"}`.
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
    pub created_at: String,
    pub updated_at: String,
    /// Where the result is, once the job succeeded.
    pub result: Option<String>,
    /// What a cancellation did (only in the answer to `POST …/cancel`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancellation: Option<String>,
}

impl JobView {
    /// The view of `j`, which has reached `stage` if running.
    pub fn new(j: QueuedJob, stage: Option<&str>) -> Self {
        let state = j.state.as_str().to_string();
        JobView {
            result: (state == "succeeded").then(|| format!("/v1/jobs/{}/result", j.id)),
            progress: stage.filter(|_| state == "running").map(str::to_string),
            id: j.id,
            kind: j.kind,
            agreement: j.grant,
            state,
            error: j.error,
            created_at: j.created_at,
            updated_at: j.updated_at,
            cancellation: None,
        }
    }
}
