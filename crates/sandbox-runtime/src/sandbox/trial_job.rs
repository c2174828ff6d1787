//! What a developer runs before spending budget on an analysis: a **trial
//! run** on the datasets' public DP samples (everything shown: per-block
//! outputs, each failure with the guest's own message, timing; nothing
//! charged) and a **dry run** (the noise each output will get for the
//! declared ranges, k and ε, and the ε split; nothing read or charged).

use super::{Lookup, Sandbox};
use crate::RuntimeError;
use crate::analysis::{AnalysisOptions, AnalysisProgram, MAX_BLOCKS, block_schema, split_into_blocks};
use crate::rules::combine;
use sandbox_dp::sample_aggregate::{DEFAULT_COUNT_SHARE, SampleAggregate};
use sandbox_model::DatasetId;
use sandbox_sql::partials::collect_rows;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// One block of a trial run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialBlock {
    /// Rows in the block.
    pub rows: usize,
    /// The program's raw outputs (not clamped), when it succeeded.
    pub outputs: Option<Vec<f64>>,
    /// Why the block would use the default: the failure with the guest's
    /// message, `empty block`, or a NaN output.
    pub default_reason: Option<String>,
    /// Wall-clock time of the call, milliseconds.
    pub elapsed_ms: f64,
}

/// A trial run on the public samples: nothing charged, nothing recorded as
/// a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialReport {
    /// The samples read (`dataset@sample directory`).
    pub samples: Vec<String>,
    /// The input query's columns, as the program sees them.
    pub columns: Vec<String>,
    /// Each output: (name, lower, upper).
    pub outputs: Vec<(String, f64, f64)>,
    /// One entry per block (k).
    pub blocks: Vec<TrialBlock>,
    /// Per output, the average of the clamped block outputs (defaults
    /// included) — what the release's noise is added to.
    pub clamped_mean: Vec<f64>,
    /// Blocks that would use the default.
    pub defaults: usize,
    /// Wall-clock time of the whole trial, milliseconds.
    pub elapsed_ms: f64,
}

/// The noise one output of an analysis will get.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputNoise {
    pub name: String,
    pub lower: f64,
    pub upper: f64,
    /// Discrete Laplace scale in output units: `(upper − lower) · d / (k · 0.9 ε)`.
    pub scale: f64,
    /// Half-width of the 95 % noise interval, output units.
    pub half_width_95: f64,
}

/// A dry run of an analysis: nothing read, nothing charged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalysisDryRun {
    pub epsilon: f64,
    pub blocks: usize,
    /// ε for the outputs (90 %), split equally over them.
    pub epsilon_outputs: f64,
    /// ε for the noisy count of blocks that use the default (10 %).
    pub epsilon_default_count: f64,
    pub outputs: Vec<OutputNoise>,
    /// Scale of the count of defaults, in blocks: `1 / (0.1 ε)`.
    pub default_count_scale: f64,
    pub default_count_half_width_95: f64,
}

impl Sandbox {
    /// Runs an analysis on the current public samples of the datasets its
    /// input reads (same checks as a real job: the grant, the policies, the
    /// job kind), with the whole story of every block. Charges nothing.
    ///
    /// # Errors
    /// The refusals of a real job; `trial-needs-sample` when the input
    /// reads a dataset that has no sample.
    pub async fn trial_analysis(
        &self,
        grant: &str,
        program: Arc<dyn AnalysisProgram>,
        input_sql: &str,
        options: &AnalysisOptions,
    ) -> Result<TrialReport, RuntimeError> {
        let started = Instant::now();
        let (granted, _) = self.admit(grant).await?;
        let mut session = self.session_over(&granted, true).await?;
        session.mark_public_samples();
        let policies = self.policies();
        let catalog = self.catalog();
        let lookup = Lookup {
            catalog: &catalog,
            policies: &policies,
            granted: &granted,
        };
        let rows = session
            .plan_and_check_rows(input_sql, &lookup)
            .map_err(|e| self.explain_missing_samples(&granted, e))?;
        self.check_job_allowed(grant, &["wasm"], &rows.datasets, &rows.usage)?;
        check_blocks(options.blocks)?;
        let schema = block_schema(&rows);
        let batches = collect_rows(&session, &rows).await?;
        // A fixed key: a trial is reproducible, and sample rows need no secret.
        let blocks = split_into_blocks(&batches, &schema, options.blocks, &[0u8; 32])?;
        let outputs = program.outputs();
        let program_for_blocks = program.clone();
        let trial = tokio::task::spawn_blocking(move || {
            blocks
                .iter()
                .map(|b| {
                    if b.num_rows() == 0 {
                        return TrialBlock {
                            rows: 0,
                            outputs: None,
                            default_reason: Some("empty block (the program is not called)".into()),
                            elapsed_ms: 0.0,
                        };
                    }
                    let t = Instant::now();
                    let result = program_for_blocks.trial_block(b);
                    let elapsed_ms = t.elapsed().as_secs_f64() * 1e3;
                    match result {
                        Ok(values) => {
                            let reason = values
                                .iter()
                                .position(|v| v.is_nan())
                                .map(|i| format!("output {i} is NaN"));
                            TrialBlock {
                                rows: b.num_rows(),
                                outputs: Some(values),
                                default_reason: reason,
                                elapsed_ms,
                            }
                        }
                        Err(message) => TrialBlock {
                            rows: b.num_rows(),
                            outputs: None,
                            default_reason: Some(message),
                            elapsed_ms,
                        },
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|_| RuntimeError::Setup("the trial worker stopped".into()))?;
        let ranges: Vec<(f64, f64)> = outputs.iter().map(|(_, lo, hi)| (*lo, *hi)).collect();
        // ε does not matter for the exact mean (no noise is drawn).
        let aggregate = SampleAggregate::new(ranges, options.blocks, 1.0)?;
        let as_outputs: Vec<Option<Vec<f64>>> = trial.iter().map(|b| b.outputs.clone()).collect();
        let clamped_mean = aggregate.exact_mean(&as_outputs)?;
        let defaults = as_outputs.iter().filter(|o| aggregate.uses_default(o)).count();
        let samples = self.sample_names(&rows.datasets);
        tracing::info!(grant, defaults, "trial run on sample data");
        Ok(TrialReport {
            samples,
            columns: rows.columns.clone(),
            outputs,
            blocks: trial,
            clamped_mean,
            defaults,
            elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// A check that failed on a session over the samples: when some
    /// dataset the query names has no sample, or one made under other terms
    /// than its policy now sets (so its table is missing from the session),
    /// says so and what its owner must do.
    pub(super) fn explain_missing_samples(&self, granted: &[DatasetId], e: sandbox_sql::SqlError) -> RuntimeError {
        // The datasets a job could read (granted, or open to all) whose
        // table a trial's session lacks: without a sample, or with a
        // sample that may not be used.
        let policies = self.policies();
        let mut without_sample = Vec::new();
        let mut stale = Vec::new();
        for d in self
            .catalog()
            .iter()
            .filter(|d| d.open_class == sandbox_model::OpenClass::Open || granted.contains(&d.id))
        {
            match self.data_dir().current_sample(&d.id, policies.get(&d.id)) {
                Ok(Some(_)) => {}
                Err(e) if e.rule() == Some("sample-stale") => stale.push(d.id.clone()),
                Ok(None) | Err(_) => without_sample.push(d.id.to_string()),
            }
        }
        // Only a table that is missing because it has no usable sample: any
        // other error (a refusal, a typo) is the query's own.
        let sandbox_sql::SqlError::Invalid(m) = &e else {
            return RuntimeError::from(e);
        };
        let stale_named: Vec<String> = stale
            .iter()
            .filter(|d| m.contains(d.as_str()))
            .map(sandbox_ingest::stale_sample_message)
            .collect();
        if !stale_named.is_empty() {
            return RuntimeError::refused(
                "sample-stale",
                format!(
                    "{e}. A trial run reads the datasets' public samples, and {}",
                    stale_named.join("; ")
                ),
            );
        }
        if !without_sample.iter().any(|d| m.contains(d.as_str())) {
            return RuntimeError::from(e);
        }
        RuntimeError::refused(
            "trial-needs-sample",
            format!(
                "{e}. A trial run reads the datasets' public samples; these have none yet: {} (their owner \
                 makes one with `sandbox sample DATASET --generate`)",
                without_sample.join(", ")
            ),
        )
    }

    /// `dataset@sample directory` of each dataset read (from a sample that
    /// may be used: the session read no other).
    pub(super) fn sample_names<'a>(&self, datasets: impl IntoIterator<Item = &'a DatasetId>) -> Vec<String> {
        let policies = self.policies();
        datasets
            .into_iter()
            .filter_map(|d| {
                let (dir, _) = self.data_dir().current_sample(d, policies.get(d)).ok()??;
                Some(format!(
                    "{d}@{}",
                    dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
                ))
            })
            .collect()
    }

    /// The noise an analysis will get for its declared ranges, k and ε
    /// (the policies' cap when `options.epsilon` is `None`), with the ε
    /// split. Reads and charges nothing; the input query is checked.
    ///
    /// # Errors
    /// The refusals of a real job before its charge.
    pub async fn dry_run_analysis(
        &self,
        grant: &str,
        program: &dyn AnalysisProgram,
        input_sql: &str,
        options: &AnalysisOptions,
    ) -> Result<AnalysisDryRun, RuntimeError> {
        let (granted, session) = self.admit(grant).await?;
        let policies = self.policies();
        let catalog = self.catalog();
        let lookup = Lookup {
            catalog: &catalog,
            policies: &policies,
            granted: &granted,
        };
        let rows = session.plan_and_check_rows(input_sql, &lookup)?;
        self.check_job_allowed(grant, &["wasm"], &rows.datasets, &rows.usage)?;
        let rules = combine(rows.protected.iter().filter_map(|d| policies.get(d)))?;
        check_blocks(options.blocks)?;
        let epsilon = self.choose_epsilon(&rules, options.epsilon)?;
        let declared = program.outputs();
        let ranges: Vec<(f64, f64)> = declared.iter().map(|(_, lo, hi)| (*lo, *hi)).collect();
        let aggregate = SampleAggregate::new(ranges, options.blocks, epsilon)?;
        let outputs = declared
            .iter()
            .enumerate()
            .map(|(i, (name, lower, upper))| {
                let scale = aggregate.scale(i);
                OutputNoise {
                    name: name.clone(),
                    lower: *lower,
                    upper: *upper,
                    scale,
                    // Laplace: P(|X| > w) = e^(−w/b), so w = b · ln(1/0.05).
                    half_width_95: scale * (1.0f64 / 0.05).ln(),
                }
            })
            .collect();
        Ok(AnalysisDryRun {
            epsilon,
            blocks: options.blocks,
            epsilon_outputs: epsilon * (1.0 - DEFAULT_COUNT_SHARE),
            epsilon_default_count: epsilon * DEFAULT_COUNT_SHARE,
            outputs,
            default_count_scale: aggregate.default_count_scale(),
            default_count_half_width_95: aggregate.default_count_half_width(),
        })
    }
}

fn check_blocks(blocks: usize) -> Result<(), RuntimeError> {
    if (2..=MAX_BLOCKS).contains(&blocks) {
        Ok(())
    } else {
        Err(RuntimeError::refused(
            "blocks-out-of-range",
            format!("the number of blocks must be between 2 and {MAX_BLOCKS}"),
        ))
    }
}
