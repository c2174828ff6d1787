//! `sandbox sql --trial` (and `"trial": true` over HTTP): a SQL job, with
//! its WebAssembly row functions, run **as written** on the datasets'
//! public DP samples. Nothing is charged or recorded as a job; the query
//! passes the same checks as a real job first (grant, policies, job kind,
//! the functions' trial calls), so what a trial accepts a real job
//! accepts.
//!
//! What it shows is what a real job hides: the query's exact result on
//! the sample (public data), and for each function every call's fate —
//! how many rows fell back to the default, with the guest's own message
//! and the arguments of the first failures, how many outputs were NaN
//! (NULL in the job) or outside the declared bounds (clamped), and the
//! time spent in the guest.

use super::{Lookup, Sandbox};
use crate::RuntimeError;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use arrow::util::display::array_value_to_string;
use sandbox_sql::guest::RowFunction;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Rows of the result a trial shows (the rest are counted).
pub const MAX_TRIAL_ROWS: usize = 200;
/// Failed calls a trial shows per function (the rest are counted).
pub const MAX_SHOWN_FAILURES: usize = 5;

/// One call of a function that failed in a trial run: its row takes the
/// default (the midpoint of the bounds) in a real job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedCall {
    /// The row's arguments as the guest received them (`None`: NULL, NaN to the guest).
    pub arguments: Vec<Option<f64>>,
    /// The guest's message and a hint.
    pub message: String,
}

/// What one of the job's functions did during a trial run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionTrial {
    pub name: String,
    /// Declared bounds; outputs are clamped to them.
    pub lower: f64,
    pub upper: f64,
    /// Rows the function was called on.
    pub calls: u64,
    /// Rows whose call failed (they take the default, `(lower + upper) / 2`).
    pub failed: u64,
    /// Outputs that were NaN (NULL in the job).
    pub nan: u64,
    /// Outputs outside `[lower, upper]` (clamped in the job).
    pub clamped: u64,
    /// The first [`MAX_SHOWN_FAILURES`] failed calls.
    pub failures: Vec<FailedCall>,
    /// Time spent in the function's calls, milliseconds.
    pub elapsed_ms: f64,
}

/// A SQL trial run on the public samples.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SqlTrialReport {
    /// The samples read (`dataset@sample directory`).
    pub samples: Vec<String>,
    /// The result's columns.
    pub columns: Vec<String>,
    /// The first [`MAX_TRIAL_ROWS`] rows of the exact result on the
    /// samples, as text (`NULL` for a null).
    pub rows: Vec<Vec<String>>,
    /// Rows in the whole result.
    pub total_rows: usize,
    /// One entry per function of the job the query calls.
    pub functions: Vec<FunctionTrial>,
    /// Wall-clock time of the whole trial, milliseconds.
    pub elapsed_ms: f64,
}

#[derive(Debug, Default)]
struct CallLog {
    calls: u64,
    failed: u64,
    nan: u64,
    clamped: u64,
    failures: Vec<FailedCall>,
    elapsed: Duration,
}

/// A job's function as a trial runs it: evaluated the way a job evaluates
/// it (the session's adapter applies the job's own default, clamp and
/// NULL rules), every row's fate logged, and a failed row's call repeated
/// through [`RowFunction::trial`] to keep the guest's own message.
#[derive(Debug)]
struct LoggedFunction {
    inner: Arc<dyn RowFunction>,
    log: Mutex<CallLog>,
}

impl LoggedFunction {
    fn log(&self) -> std::sync::MutexGuard<'_, CallLog> {
        // A poisoned log only means a panic elsewhere mid-update: its counts stay usable.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn report(&self) -> FunctionTrial {
        let (lower, upper) = self.inner.bounds();
        let log = self.log();
        FunctionTrial {
            name: self.inner.name().to_string(),
            lower,
            upper,
            calls: log.calls,
            failed: log.failed,
            nan: log.nan,
            clamped: log.clamped,
            failures: log.failures.clone(),
            elapsed_ms: log.elapsed.as_secs_f64() * 1e3,
        }
    }
}

fn arguments(args: &RecordBatch, row: usize) -> Vec<Option<f64>> {
    args.columns()
        .iter()
        .map(|c| {
            c.as_primitive_opt::<Float64Type>()
                .and_then(|a| (a.is_valid(row)).then(|| a.value(row)))
        })
        .collect()
}

impl LoggedFunction {
    /// Logs one evaluation: `values[i]` is row i's value, `None` where it failed.
    fn record(&self, args: &RecordBatch, values: &[Option<f64>], whole_failure: Option<&str>, elapsed: Duration) {
        let (lower, upper) = self.inner.bounds();
        let mut log = self.log();
        log.calls += args.num_rows() as u64;
        log.elapsed += elapsed;
        for (row, value) in values.iter().enumerate() {
            match value {
                Some(v) if v.is_nan() => log.nan += 1,
                Some(v) if *v < lower || *v > upper => log.clamped += 1,
                Some(_) => {}
                None => {
                    log.failed += 1;
                    if log.failures.len() < MAX_SHOWN_FAILURES {
                        // Called again on its own for the guest's message
                        // (sample data: nothing to hide).
                        let message = match whole_failure {
                            Some(m) => m.to_string(),
                            None => match self.inner.trial(&args.slice(row, 1)) {
                                Err(m) => m,
                                Ok(_) => "failed in the job's evaluation (it passed when called alone: \
                                          a time or fuel limit?)"
                                    .to_string(),
                            },
                        };
                        log.failures.push(FailedCall {
                            arguments: arguments(args, row),
                            message,
                        });
                    }
                }
            }
        }
    }
}

impl RowFunction for LoggedFunction {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn arity(&self) -> usize {
        self.inner.arity()
    }

    fn bounds(&self) -> (f64, f64) {
        self.inner.bounds()
    }

    fn identity(&self) -> &str {
        self.inner.identity()
    }

    /// One call in a fresh instance (how a job calls a function whose rows
    /// are not provably independent): through `trial`, for its message.
    fn evaluate(&self, args: &RecordBatch) -> Result<Vec<f64>, String> {
        let started = Instant::now();
        let result = self.inner.trial(args);
        let rows = args.num_rows();
        let (values, failure): (Vec<Option<f64>>, Option<String>) = match &result {
            Ok(v) if v.len() == rows => (v.iter().copied().map(Some).collect(), None),
            Ok(v) => (
                vec![None; rows],
                Some(format!(
                    "returned {} values for {rows} rows (one value per row)",
                    v.len()
                )),
            ),
            Err(m) => (vec![None; rows], Some(m.clone())),
        };
        self.record(args, &values, failure.as_deref(), started.elapsed());
        match failure {
            None => result,
            Some(m) => Err(m),
        }
    }

    fn rows_are_independent(&self) -> bool {
        self.inner.rows_are_independent()
    }

    /// A batch in one instance, one call per row (a function whose rows are
    /// provably independent), exactly as a job evaluates it.
    fn evaluate_rows(&self, args: &RecordBatch) -> Result<Vec<Option<f64>>, String> {
        let started = Instant::now();
        let values = self.inner.evaluate_rows(args);
        match &values {
            Ok(v) => self.record(args, v, None, started.elapsed()),
            Err(m) => self.record(args, &vec![None; args.num_rows()], Some(m), started.elapsed()),
        }
        values
    }

    fn trial(&self, args: &RecordBatch) -> Result<Vec<f64>, String> {
        self.inner.trial(args)
    }
}

fn as_text(batches: &[RecordBatch]) -> Result<(Vec<Vec<String>>, usize), RuntimeError> {
    let mut rows = Vec::new();
    let mut total = 0;
    for batch in batches {
        total += batch.num_rows();
        for row in 0..batch.num_rows() {
            if rows.len() >= MAX_TRIAL_ROWS {
                break;
            }
            let cells = batch
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(row) {
                        Ok("NULL".to_string())
                    } else {
                        array_value_to_string(c, row)
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| RuntimeError::Setup(format!("a trial result could not be shown: {e}")))?;
            rows.push(cells);
        }
    }
    Ok((rows, total))
}

impl Sandbox {
    /// Runs a SQL job as written on the current public samples of the
    /// datasets it reads, after the checks of a real job, logging every
    /// call of its functions. Charges nothing.
    ///
    /// # Errors
    /// The refusals of a real job before its charge (the grant, the
    /// policies, the job kind, a function's trial call);
    /// `trial-needs-sample` when the query reads a dataset without a
    /// sample; [`sandbox_sql::SqlError::Invalid`] with the engine's
    /// message when the query fails on the samples.
    pub async fn trial_sql(
        &self,
        grant: &str,
        sql: &str,
        functions: Vec<Arc<dyn RowFunction>>,
    ) -> Result<SqlTrialReport, RuntimeError> {
        let started = Instant::now();
        let (granted, _) = self.admit(grant).await?;
        let mut session = self.session_over(&granted, true).await?;
        session.mark_public_samples();
        let logged: Vec<Arc<LoggedFunction>> = functions
            .into_iter()
            .map(|inner| {
                Arc::new(LoggedFunction {
                    inner,
                    log: Mutex::default(),
                })
            })
            .collect();
        let has_functions = !logged.is_empty();
        session.register_row_functions(logged.iter().map(|f| f.clone() as Arc<dyn RowFunction>).collect())?;
        let policies = self.policies();
        let catalog = self.catalog();
        let lookup = Lookup {
            catalog: &catalog,
            policies: &policies,
            granted: &granted,
        };
        let query = session
            .plan_and_check(sql, &lookup)
            .map_err(|e| self.explain_missing_samples(&granted, e))?;
        let kinds: &[&str] = if has_functions { &["sql", "wasm"] } else { &["sql"] };
        self.check_job_allowed(grant, kinds, &query.datasets, &query.usage)?;
        let called: Vec<Arc<LoggedFunction>> = logged
            .into_iter()
            .filter(|f| query.usage.functions.contains(&format!("wasm:{}", f.name())))
            .collect();
        let preflight: Vec<Arc<dyn RowFunction>> = called.iter().map(|f| f.inner.clone()).collect();
        if !preflight.is_empty() {
            tokio::task::spawn_blocking(move || crate::preflight::udfs(&preflight))
                .await
                .map_err(|_| RuntimeError::Setup("the trial call's worker stopped".into()))??;
        }
        let batches = sandbox_sql::trial::run_on_public_samples(&session, sql).await?;
        let (rows, total_rows) = as_text(&batches)?;
        let columns = match batches.first() {
            Some(b) => b.schema().fields().iter().map(|f| f.name().clone()).collect(),
            None => session
                .plan(sql)?
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
        };
        let functions: Vec<FunctionTrial> = called.iter().map(|f| f.report()).collect();
        let failed: u64 = functions.iter().map(|f| f.failed).sum();
        tracing::info!(grant, failed, "SQL trial run on sample data");
        Ok(SqlTrialReport {
            samples: self.sample_names(&query.datasets),
            columns,
            rows,
            total_rows,
            functions,
            elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}
