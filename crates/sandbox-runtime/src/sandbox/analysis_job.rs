//! The path of an analysis job (a WebAssembly program run by sample and
//! aggregate): admission and checks as for SQL, the charge, the program on
//! disjoint blocks of privacy units, the noisy average released.

use super::{AnalysisResult, JobContext, Lookup, Sandbox, Submission, digest};
use crate::RuntimeError;
use crate::analysis::{AnalysisOptions, AnalysisProgram, MAX_BLOCKS, block_schema, split_into_blocks};
use crate::rules::combine;
use sandbox_dp::sample_aggregate::{DEFAULT_COUNT_SHARE, SampleAggregate, random_key};
use sandbox_governance::JobCharge;
use sandbox_model::{DefaultsCount, JobOutcome, ReleasedTable, UsageRecord};

/// The key of the released table's last row: the noisy count of blocks that
/// used the default (not a possible output name: outputs are identifiers).
pub const DEFAULTS_ROW: &str = "(blocks using the default)";
use sandbox_sql::partials::collect_rows;
use std::sync::Arc;

impl Sandbox {
    /// Runs an analysis job: `input_sql` selects the rows (checked like any
    /// query, but not aggregated), the program runs on disjoint blocks of
    /// privacy units, and the noisy average of its clamped outputs is
    /// released (sample and aggregate).
    pub async fn run_analysis(
        &self,
        grant: &str,
        program: Arc<dyn AnalysisProgram>,
        input_sql: &str,
        options: &AnalysisOptions,
    ) -> Result<AnalysisResult, RuntimeError> {
        self.run_analysis_job(&JobContext::default(), grant, program, input_sql, options)
            .await
    }

    /// [`run_analysis`](Self::run_analysis) under a given job id and
    /// progress callback.
    pub async fn run_analysis_job(
        &self,
        context: &JobContext,
        grant: &str,
        program: Arc<dyn AnalysisProgram>,
        input_sql: &str,
        options: &AnalysisOptions,
    ) -> Result<AnalysisResult, RuntimeError> {
        let job_id = context.id.clone().unwrap_or_else(|| self.next_job_id());
        let submission = Submission::new(
            format!("{}\n-- program {}", input_sql, program.digest()),
            &format!("epsilon={:?} blocks={}", options.epsilon, options.blocks),
        );
        context.report("checking");
        let result = self
            .run_analysis_inner(&job_id, grant, program, input_sql, options, &submission)
            .await;
        self.record_if_refused(&result, &job_id, grant, "wasm", &submission);
        result
    }

    async fn run_analysis_inner(
        &self,
        job_id: &str,
        grant: &str,
        program: Arc<dyn AnalysisProgram>,
        input_sql: &str,
        options: &AnalysisOptions,
        submission: &Submission,
    ) -> Result<AnalysisResult, RuntimeError> {
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
        if !rules.dp {
            return Err(RuntimeError::refused(
                "analysis-needs-dp",
                "analysis jobs are released with differential privacy; a dataset in the input allows threshold release only",
            ));
        }
        if !(2..=MAX_BLOCKS).contains(&options.blocks) {
            return Err(RuntimeError::refused(
                "blocks-out-of-range",
                format!("the number of blocks must be between 2 and {MAX_BLOCKS}"),
            ));
        }
        let epsilon = self.choose_epsilon(&rules, options.epsilon)?;
        // The program once on a generated block of the input's shape: a
        // broken program is refused with its own message, uncharged.
        let schema = block_schema(&rows);
        {
            let (program, schema) = (program.clone(), schema.clone());
            tokio::task::spawn_blocking(move || crate::preflight::analysis(program.as_ref(), &schema))
                .await
                .map_err(|_| RuntimeError::Setup("the trial call's worker stopped".into()))??;
        }
        let outputs = program.outputs();
        let ranges: Vec<(f64, f64)> = outputs.iter().map(|(_, lo, hi)| (*lo, *hi)).collect();
        let release = SampleAggregate::new(ranges, options.blocks, epsilon)?;
        let charges = rows.protected.iter().map(|d| (d.clone(), epsilon, 0.0)).collect();
        self.store.reserve(
            &JobCharge::new(job_id, grant, "wasm", &submission.digest, charges)
                .with_text(&submission.text)
                .with_zcdp_conversion(crate::governance::zcdp_conversion),
        )?;
        let mut usage = UsageRecord {
            job_id: job_id.to_string(),
            grant_id: grant.to_string(),
            datasets: rows.datasets.iter().cloned().collect(),
            columns_read: rows.usage.read.iter().cloned().collect(),
            columns_filtered: rows.usage.filtered.iter().cloned().collect(),
            functions: vec![format!("wasm:analysis:{}", program.name())],
            epsilon,
            submission_digest: submission.digest.clone(),
            ..Default::default()
        };
        let running = self.running.register(job_id, grant, &rows.datasets);
        let computation = async {
            let batches = collect_rows(&session, &rows).await?;
            let key = random_key()?;
            // Exactly k blocks, with the schema of the checked query, even
            // when the query selects no rows: the number of blocks and
            // whether the job runs never depend on the data.
            let blocks = split_into_blocks(&batches, &schema, options.blocks, &key)?;
            let program = program.clone();
            let results = tokio::task::spawn_blocking(move || {
                blocks
                    .iter()
                    .map(|b| {
                        // An empty block contributes the default without
                        // running the program. Sound: a block's output is a
                        // function of its own rows, and with no rows the
                        // default is as good a constant as any; adding or
                        // removing one unit still changes one block only.
                        if b.num_rows() == 0 {
                            return None;
                        }
                        match program.run_block(b) {
                            Ok(v) => Some(v),
                            Err(e) => {
                                tracing::warn!(error = %e, "an analysis block failed; it contributes the default");
                                None
                            }
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|_| RuntimeError::Setup("the analysis worker stopped".into()))?;
            let defaulted = results.iter().filter(|r| release.uses_default(r)).count();
            if defaulted > 0 {
                tracing::info!(defaulted, "analysis blocks used the default output");
            }
            // Both releases from the same block outputs: 90 % of ε for the
            // outputs, 10 % for the count of blocks that used the default.
            Ok::<_, RuntimeError>((release.release(&results)?, release.release_default_count(&results)?))
        };
        let computed = tokio::select! {
            r = computation => r,
            () = running.cancelled() => return self.cancelled(job_id, &usage, &rows.datasets),
        };
        let (values, defaults) = match computed {
            Ok(v) => v,
            Err(e) => {
                self.store
                    .finish(job_id, &JobOutcome::Failed { message: e.to_string() }, &usage)?;
                return Err(e);
            }
        };
        let table = ReleasedTable {
            columns: vec![
                sandbox_model::ReleasedColumn {
                    name: "output".into(),
                    kind: "group_key".into(),
                },
                sandbox_model::ReleasedColumn {
                    name: "value".into(),
                    kind: format!("sample_and_aggregate({})", program.name()),
                },
            ],
            rows: outputs
                .iter()
                .zip(&values)
                .map(|((name, _, _), v)| {
                    vec![
                        sandbox_model::ReleasedCell::Key {
                            value: serde_json::Value::from(name.clone()),
                        },
                        sandbox_model::ReleasedCell::Noisy {
                            value: v.value,
                            mechanism: "discrete_laplace".into(),
                            scale: v.scale,
                            ci95: [v.ci95.0, v.ci95.1],
                        },
                    ]
                })
                .chain(std::iter::once(vec![
                    sandbox_model::ReleasedCell::Key {
                        value: serde_json::Value::from(DEFAULTS_ROW),
                    },
                    sandbox_model::ReleasedCell::Noisy {
                        value: defaults.value,
                        mechanism: "discrete_laplace".into(),
                        scale: defaults.scale,
                        ci95: [defaults.ci95.0, defaults.ci95.1],
                    },
                ]))
                .collect(),
            epsilon_spent: epsilon,
            delta_spent: 0.0,
            suppressed: Vec::new(),
            notes: vec![
                format!(
                    "sample and aggregate over {} disjoint blocks of privacy units; outputs clamped to their declared ranges; an empty or failed block, or a NaN output, contributes the midpoint",
                    options.blocks
                ),
                format!(
                    "ε {epsilon}: {:.0} % for the outputs (split equally over {}), {:.0} % for `{DEFAULTS_ROW}`, the noisy count of blocks that used the default (out of {})",
                    100.0 * (1.0 - DEFAULT_COUNT_SHARE),
                    outputs.len(),
                    100.0 * DEFAULT_COUNT_SHARE,
                    options.blocks
                ),
            ],
        };
        let bytes = serde_json::to_vec(&table).map_err(|e| RuntimeError::Setup(e.to_string()))?;
        usage.result_digest = Some(digest(&bytes));
        usage.groups_released = outputs.len() as u64;
        usage.defaults = Some(DefaultsCount {
            unit: "blocks".into(),
            noisy: defaults.value,
            out_of: Some(options.blocks as u64),
            half_width_95: release.default_count_half_width(),
            epsilon: release.default_count_epsilon(),
        });
        let stored = String::from_utf8_lossy(&bytes);
        self.store
            .finish_with_result(job_id, &JobOutcome::Released, &usage, Some(&stored))?;
        Ok(AnalysisResult {
            job_id: job_id.to_string(),
            table,
            budget: self.store.budget(grant)?,
        })
    }
}
