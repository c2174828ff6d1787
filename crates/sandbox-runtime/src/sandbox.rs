//! The sandbox: catalog, policies, store and the SQL job pipeline.

use crate::release::{bounds, epsilon_split, release};
use crate::rules::{ReleaseRules, combine};
use crate::{DataDir, RuntimeError};
use arrow::datatypes::{DataType, Field as ArrowField, Schema};
use sandbox_dp::aggregate::{CalibratedAggregate, NoiseForecast};
use sandbox_dp::partition::PartitionSelector;
pub use sandbox_governance::BudgetLine;
use sandbox_governance::{Grant, JobCharge, Store};
use sandbox_model::{Catalog, DatasetId, FieldType, JobOutcome, OpenClass, ReleasedTable, UsageRecord};
use sandbox_policy::{Policy, PolicySet};
use sandbox_sql::checker::PolicyLookup;
use sandbox_sql::partials::{compute_partials, plan_measures, public_groups};
use sandbox_sql::{CheckedQuery, EngineLimits, JobSession, TableBinding};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The grant the local CLI and the demo use until the governance workflow
/// issues real ones.
pub const DEMO_GRANT: &str = "demo";

/// Options of one SQL job.
#[derive(Debug, Clone, Default)]
pub struct SqlJobOptions {
    /// ε to spend (default: the policies' per-query cap).
    pub epsilon: Option<f64>,
    /// Report the cost and interval widths without reading data or budget.
    pub dry_run: bool,
}

/// What a dry run reports.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunReport {
    pub epsilon: f64,
    pub delta: f64,
    pub mode: &'static str,
    pub split: Vec<(String, f64)>,
    pub aggregates: Vec<(String, NoiseForecast)>,
    /// The noisy unit count a group needs, when groups are not public.
    pub selection_threshold: Option<i64>,
    pub public_groups: Option<usize>,
}

/// The result of a SQL job.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SqlJobResult {
    Released {
        job_id: String,
        table: ReleasedTable,
        budget: Vec<BudgetLine>,
    },
    DryRun(DryRunReport),
}

struct Lookup<'a> {
    catalog: &'a Catalog,
    policies: &'a PolicySet,
    granted: &'a [DatasetId],
}

impl PolicyLookup for Lookup<'_> {
    fn policy(&self, dataset: &DatasetId) -> Option<&Policy> {
        if !self.granted.contains(dataset) && self.open_class(dataset) != Some(OpenClass::Open) {
            return None;
        }
        self.policies.get(dataset)
    }
    fn open_class(&self, dataset: &DatasetId) -> Option<OpenClass> {
        self.catalog.get(dataset).map(|d| d.open_class)
    }
}

/// A sandbox over one data directory.
pub struct Sandbox {
    dir: DataDir,
    catalog: Catalog,
    policies: PolicySet,
    store: Arc<Store>,
    limits: EngineLimits,
    jobs: AtomicU64,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("dir", &self.dir.root()).finish()
    }
}

fn arrow_type(t: FieldType) -> DataType {
    match t {
        FieldType::Utf8 => DataType::Utf8,
        FieldType::Int64 => DataType::Int64,
        FieldType::Float64 => DataType::Float64,
        FieldType::Boolean => DataType::Boolean,
        FieldType::Date => DataType::Date32,
    }
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Sandbox {
    /// Opens the sandbox: loads and validates catalog and policies, opens
    /// the database and makes sure the demo grant exists.
    pub fn open(dir: DataDir) -> Result<Self, RuntimeError> {
        let catalog =
            sandbox_policy::load_catalog_dir(&dir.catalog_dir()).map_err(|e| RuntimeError::Setup(e.to_string()))?;
        let policies =
            PolicySet::load_dir(&dir.policies_dir(), &catalog).map_err(|e| RuntimeError::Setup(e.to_string()))?;
        let store = Store::open(&dir.database())?;
        let sandbox = Sandbox {
            dir,
            catalog,
            policies,
            store: Arc::new(store),
            limits: EngineLimits::default(),
            jobs: AtomicU64::new(0),
        };
        sandbox.ensure_demo_grant()?;
        Ok(sandbox)
    }

    pub fn with_limits(mut self, limits: EngineLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }
    pub fn store(&self) -> &Store {
        &self.store
    }
    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }

    fn ensure_demo_grant(&self) -> Result<(), RuntimeError> {
        let budgets = self
            .catalog
            .iter()
            .filter(|d| d.open_class == OpenClass::Conditional)
            .filter_map(|d| {
                let p = self.policies.get(&d.id)?;
                let total = p.dp.map_or(0.0, |dp| dp.epsilon_budget);
                Some((d.id.clone(), total))
            })
            .collect();
        self.store.upsert_grant(&Grant::new(DEMO_GRANT, "demo-bank", budgets))?;
        Ok(())
    }

    pub fn budget(&self, grant: &str) -> Result<Vec<BudgetLine>, RuntimeError> {
        Ok(self.store.budget(grant)?)
    }

    fn next_job_id(&self) -> String {
        let n = self.jobs.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!(
            "job-{}",
            &digest(format!("{nanos}-{n}-{}", std::process::id()).as_bytes())[..16]
        )
    }

    /// A job session over a grant's datasets (for benchmarks and tools;
    /// jobs go through [`Sandbox::run_sql`]).
    pub fn session_for_grant(&self, grant: &str) -> Result<JobSession, RuntimeError> {
        let granted: Vec<DatasetId> = self
            .store
            .grant_datasets(grant)?
            .into_iter()
            .filter_map(|d| d.parse().ok())
            .collect();
        self.session_for(&granted)
    }

    fn session_for(&self, granted: &[DatasetId]) -> Result<JobSession, RuntimeError> {
        let mut bindings = Vec::new();
        for d in self.catalog.iter() {
            let usable =
                d.open_class == OpenClass::Open || (d.open_class == OpenClass::Conditional && granted.contains(&d.id));
            if !usable || !self.dir.has_table(&d.id) {
                continue;
            }
            let schema = Schema::new(
                d.fields
                    .iter()
                    .map(|f| ArrowField::new(&f.name, arrow_type(f.data_type), true))
                    .collect::<Vec<_>>(),
            );
            let mut location = self.dir.table_dir(&d.id).display().to_string();
            if !location.ends_with('/') {
                location.push('/');
            }
            bindings.push(TableBinding {
                dataset: d.id.clone(),
                location,
                schema: Arc::new(schema),
            });
        }
        Ok(JobSession::new(&bindings, self.limits.clone())?)
    }

    /// Runs (or dry-runs) one SQL job under a grant.
    pub async fn run_sql(&self, grant: &str, sql: &str, options: &SqlJobOptions) -> Result<SqlJobResult, RuntimeError> {
        let job_id = self.next_job_id();
        let submission = digest(sql.as_bytes());
        let result = self.run_sql_inner(&job_id, grant, sql, &submission, options).await;
        if let Err(e) = &result
            && let Some(rule) = e.rule()
        {
            let outcome = JobOutcome::Refused { rule: rule.to_string() };
            if let Err(err) = self.store.record_refusal(&job_id, grant, "sql", &submission, &outcome) {
                tracing::warn!(%err, "could not record a refused job");
            }
        }
        result
    }

    async fn run_sql_inner(
        &self,
        job_id: &str,
        grant: &str,
        sql: &str,
        submission: &str,
        options: &SqlJobOptions,
    ) -> Result<SqlJobResult, RuntimeError> {
        // Admit.
        let granted: Vec<DatasetId> = self
            .store
            .grant_datasets(grant)?
            .into_iter()
            .filter_map(|d| d.parse().ok())
            .collect();
        let session = self.session_for(&granted)?;
        let lookup = Lookup {
            catalog: &self.catalog,
            policies: &self.policies,
            granted: &granted,
        };
        // Plan and check.
        let query = session.plan_and_check(sql, &lookup)?;
        let rules = combine(query.protected.iter().filter_map(|d| self.policies.get(d)))?;
        let (specs, measures) = plan_measures(&query)?;
        let public = public_groups(&query, self.limits.max_groups).is_some();
        let epsilon = self.choose_epsilon(&rules, options.epsilon)?;
        if rules.dp && !public && rules.delta <= 0.0 {
            return Err(RuntimeError::refused(
                "partition-selection-needs-delta",
                "grouping by keys without a public key set needs δ > 0 in every policy; group by dimensions with public keys",
            ));
        }
        if options.dry_run {
            return Ok(SqlJobResult::DryRun(
                self.dry_run(&query, &rules, &specs, public, epsilon)?,
            ));
        }
        // Charge before running.
        let delta = if rules.dp && !public { rules.delta } else { 0.0 };
        let charges = query
            .protected
            .iter()
            .map(|d| (d.clone(), if rules.dp { epsilon } else { 0.0 }, delta))
            .collect();
        self.store
            .reserve(&JobCharge::new(job_id, grant, "sql", submission, charges))?;
        let mut usage = UsageRecord {
            job_id: job_id.to_string(),
            grant_id: grant.to_string(),
            datasets: query.datasets.iter().cloned().collect(),
            columns_read: query.usage.read.iter().cloned().collect(),
            columns_filtered: query.usage.filtered.iter().cloned().collect(),
            columns_grouped: query.usage.grouped.iter().cloned().collect(),
            columns_aggregated: query.usage.aggregated.iter().cloned().collect(),
            functions: query.usage.functions.iter().cloned().collect(),
            epsilon: if rules.dp { epsilon } else { 0.0 },
            delta,
            submission_digest: submission.to_string(),
            ..Default::default()
        };
        // Execute and release; a failure still keeps the charge.
        let released = async {
            let partials = compute_partials(&session, &query, &measures).await?;
            release(&query, &specs, &partials, &rules, epsilon)
        }
        .await;
        match released {
            Ok(r) => {
                let bytes = serde_json::to_vec(&r.table).map_err(|e| RuntimeError::Setup(e.to_string()))?;
                usage.result_digest = Some(digest(&bytes));
                usage.groups_released = r.groups_released;
                usage.groups_suppressed = r.groups_suppressed;
                self.store.finish(job_id, &JobOutcome::Released, &usage)?;
                Ok(SqlJobResult::Released {
                    job_id: job_id.to_string(),
                    table: r.table,
                    budget: self.store.budget(grant)?,
                })
            }
            Err(e) => {
                self.store
                    .finish(job_id, &JobOutcome::Failed { message: e.to_string() }, &usage)?;
                Err(e)
            }
        }
    }

    fn choose_epsilon(&self, rules: &ReleaseRules, requested: Option<f64>) -> Result<f64, RuntimeError> {
        if !rules.dp {
            return Ok(0.0);
        }
        match requested {
            None => Ok(rules.epsilon_cap),
            Some(e) if !(e.is_finite() && e > 0.0) => {
                Err(RuntimeError::refused("epsilon-invalid", "ε must be a positive number"))
            }
            Some(e) if e > rules.epsilon_cap + 1e-12 => Err(RuntimeError::refused(
                "epsilon-over-cap",
                format!(
                    "ε = {e} exceeds the per-query cap of {} set by the data owners",
                    rules.epsilon_cap
                ),
            )),
            Some(e) => Ok(e),
        }
    }

    fn dry_run(
        &self,
        query: &CheckedQuery,
        rules: &ReleaseRules,
        specs: &[sandbox_dp::aggregate::AggregateSpec],
        public: bool,
        epsilon: f64,
    ) -> Result<DryRunReport, RuntimeError> {
        let public_count = public_groups(query, self.limits.max_groups).map(|g| g.len());
        if !rules.dp {
            return Ok(DryRunReport {
                epsilon: 0.0,
                delta: 0.0,
                mode: "threshold",
                split: Vec::new(),
                aggregates: Vec::new(),
                selection_threshold: None,
                public_groups: public_count,
            });
        }
        let split = epsilon_split(query, !public, epsilon)?;
        let b = bounds(rules)?;
        let g_eff = b.effective_groups(public_count);
        let mut aggregates = Vec::new();
        for (j, s) in specs.iter().enumerate() {
            let share = split.share(j).unwrap_or(0.0);
            let c = CalibratedAggregate::new(s.clone(), share, g_eff, b.max_rows_per_group as u64)?;
            aggregates.push((query.aggregates[j].display.clone(), c.forecast()));
        }
        let selection_threshold = if public {
            None
        } else {
            let share = split.share(specs.len()).unwrap_or(0.0);
            Some(PartitionSelector::new(g_eff, share, rules.delta, rules.min_units)?.threshold() as i64)
        };
        Ok(DryRunReport {
            epsilon,
            delta: if public { 0.0 } else { rules.delta },
            mode: if rules.threshold { "dp+threshold" } else { "dp" },
            split: split.parts,
            aggregates,
            selection_threshold,
            public_groups: public_count,
        })
    }
}
