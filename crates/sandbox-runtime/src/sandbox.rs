//! The sandbox: catalog, policies, store and the SQL job pipeline (the
//! analysis job's path is in `analysis_job.rs`).

mod analysis_job;
mod defaults_count;
mod publication;
mod row_bounds;
mod sql_trial;
mod trial_job;
pub use analysis_job::DEFAULTS_ROW;
pub use defaults_count::DEFAULTS_PART;
use defaults_count::defaults_note;
pub use row_bounds::DeclaredRowBounds;
pub use sql_trial::{FailedCall, FunctionTrial, MAX_SHOWN_FAILURES, MAX_TRIAL_ROWS, SqlTrialReport};
pub use trial_job::{AnalysisDryRun, OutputNoise, TrialBlock, TrialReport};

use crate::release::{bounds, epsilon_split, release_counting_defaults};
use crate::rules::ReleaseRules;
use crate::{DataDir, RuntimeError};
use arrow::datatypes::{DataType, Field as ArrowField, Schema};
use sandbox_dp::accounting::Composition;
use sandbox_dp::aggregate::NoiseForecast;
use sandbox_dp::partition::PartitionSelector;
use sandbox_dp::sample_aggregate::DEFAULT_COUNT_SHARE;
pub use sandbox_governance::BudgetLine;
use sandbox_governance::{Grant, JobCharge, Store};
use sandbox_model::{Catalog, DatasetId, FieldType, JobOutcome, OpenClass, ReleasedTable, UsageRecord};
use sandbox_policy::{Policy, PolicySet};
use sandbox_sql::checker::PolicyLookup;
use sandbox_sql::contribution::compute_totals;
use sandbox_sql::guest::RowFunction;
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
    /// Spend the smallest ε that gives every aggregate an expected 95%
    /// interval of ± this much (output units); refused above the cap and
    /// together with `epsilon` (see `crate::forecast`).
    pub target_ci: Option<f64>,
    /// The rows per group the analyst expects, for the intervals of means
    /// (dry run and `target_ci`).
    pub target_rows: Option<u64>,
}

/// Who names a job and hears how it goes: the server passes its queue id
/// (so a job interrupted by a restart resumes under its first charge) and
/// a progress callback; local callers take [`JobContext::default`]'s fresh
/// id.
#[derive(Clone, Default)]
pub struct JobContext {
    /// The job's id; a fresh one when `None`.
    pub id: Option<String>,
    /// Called with each stage a job reaches: `checking`, `computing`,
    /// `releasing`.
    pub progress: Option<Arc<dyn Fn(&'static str) + Send + Sync>>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext").field("id", &self.id).finish()
    }
}

impl JobContext {
    /// A job named `id`.
    pub fn with_id(id: &str) -> Self {
        JobContext {
            id: Some(id.to_string()),
            progress: None,
        }
    }

    fn report(&self, stage: &'static str) {
        if let Some(progress) = &self.progress {
            progress(stage);
        }
    }
}

/// The result of an analysis job.
#[derive(Debug, Clone, Serialize)]
pub struct AnalysisResult {
    pub job_id: String,
    pub table: ReleasedTable,
    pub budget: Vec<BudgetLine>,
}

/// What a dry run reports.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunReport {
    pub epsilon: f64,
    pub delta: f64,
    pub mode: &'static str,
    /// How the query's ε composes: `basic` (the split's ε's add up to ε) or
    /// `zcdp` (ρ = ε²/2, the split's parts are pure-equivalent ε_i with
    /// Σ ε_i² = ε²), from the grant's budget lines.
    pub composition: Composition,
    pub split: Vec<(String, f64)>,
    pub aggregates: Vec<(String, NoiseForecast)>,
    /// The noisy unit count a group needs, when groups are not public.
    pub selection_threshold: Option<i64>,
    pub public_groups: Option<usize>,
    /// Each aggregate's expected 95% interval at this ε, with its bounds.
    pub intervals: Vec<crate::forecast::ExpectedInterval>,
    /// The target half-width asked for, when ε was chosen by it.
    pub target_ci: Option<f64>,
    /// The rows per group the intervals of means assume.
    pub target_rows: Option<u64>,
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
    /// Swapped whole when [`Sandbox::refresh`] finds a registered (or
    /// changed) catalog entry; a job keeps the catalog it started with.
    catalog: std::sync::RwLock<Arc<Catalog>>,
    /// What the catalog and policy directories held when last loaded.
    loaded: std::sync::Mutex<Option<DirFingerprint>>,
    /// Swapped whole when an owner installs a new policy version; a job
    /// keeps the set it started with.
    policies: std::sync::RwLock<Arc<PolicySet>>,
    store: Arc<Store>,
    limits: EngineLimits,
    jobs: AtomicU64,
    wasm: std::sync::OnceLock<Arc<sandbox_wasm::SandboxEngine>>,
    running: crate::governance::RunningJobs,
    /// Where jobs' physical plans run: embedded (this process) unless
    /// [`Sandbox::with_runner`] set a cluster.
    runner: Arc<dyn sandbox_sql::runner::PlanRunner>,
    /// Where jobs read the datasets' tables: published to an object store
    /// (`--tables`), or (`None`) the data directory's own files.
    tables: Option<crate::PublishedTables>,
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

/// The names, sizes, modification times and content digests of the files
/// in the catalog and policy directories: what [`Sandbox::refresh`]
/// compares. The loaded catalog and policies are derived from these files,
/// so they are keyed by their contents, not only their metadata: a policy
/// edited in place (a rule added) within one tick of the file system's
/// clock and at the same size is still reloaded. The files are small
/// (policies are read with a size limit), so reading them is cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DirFingerprint(Vec<(String, u64, Option<std::time::SystemTime>, Option<String>)>);

impl DirFingerprint {
    fn of(dir: &DataDir) -> Self {
        let mut files = Vec::new();
        for d in [dir.catalog_dir(), dir.policies_dir()] {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let meta = e.metadata().ok();
                let content = meta
                    .as_ref()
                    .filter(|m| m.is_file())
                    .and_then(|_| std::fs::read(e.path()).ok())
                    .map(|bytes| digest(&bytes));
                files.push((
                    e.path().display().to_string(),
                    meta.as_ref().map_or(0, |m| m.len()),
                    meta.and_then(|m| m.modified().ok()),
                    content,
                ));
            }
        }
        files.sort();
        DirFingerprint(files)
    }
}

/// The policies of `dir`, validated, and each zCDP policy able to hold one
/// query at its own per-query cap
/// ([`crate::governance::zcdp_budget_fits_one_query`]): a file that cannot
/// is refused like any invalid policy.
/// A local table directory's location (with a final `/`) and its pinned
/// Parquet files ([`crate::multiplicity::pinned_files`]), if it has any.
fn pinned_local(dir: &std::path::Path) -> Option<(String, Vec<String>)> {
    let files = match crate::multiplicity::pinned_files(dir) {
        Ok(files) if !files.is_empty() => files,
        _ => return None,
    };
    let mut location = dir.display().to_string();
    if !location.ends_with('/') {
        location.push('/');
    }
    Some((location, files.iter().map(|f| f.display().to_string()).collect()))
}

fn load_policies(dir: &DataDir, catalog: &sandbox_model::Catalog) -> Result<PolicySet, RuntimeError> {
    let policies = PolicySet::load_dir(&dir.policies_dir(), catalog).map_err(|e| RuntimeError::Setup(e.to_string()))?;
    for policy in policies.iter() {
        crate::governance::zcdp_budget_fits_one_query(policy).map_err(|e| {
            RuntimeError::Setup(format!(
                "{}: {}",
                dir.policies_dir().join(format!("{}.toml", policy.dataset)).display(),
                e.refusal_message()
            ))
        })?;
    }
    Ok(policies)
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What a job submitted, as recorded: the text (SQL, plus the digests of
/// the WebAssembly code it may run) and a SHA-256 of that text and of the
/// options that decide its charge and release (ε, a target interval,
/// blocks), one `-- options …` line after the text. A job resumed after a
/// restart runs under its first charge only if the digest matches
/// (`Store::reserve`), so it cannot come back asking for a larger ε.
struct Submission {
    text: String,
    digest: String,
}

impl Submission {
    fn new(text: String, options: &str) -> Self {
        Submission {
            digest: digest(format!("{text}\n-- options {options}").as_bytes()),
            text,
        }
    }
}

impl SqlJobOptions {
    /// The options a submission's digest binds (not `dry_run`: a dry run is
    /// never charged).
    fn digest_line(&self) -> String {
        format!(
            "epsilon={:?} target_ci={:?} target_rows={:?}",
            self.epsilon, self.target_ci, self.target_rows
        )
    }
}

impl Sandbox {
    /// Opens the sandbox: loads and validates catalog and policies, opens
    /// the database and makes sure the demo grant exists.
    pub fn open(dir: DataDir) -> Result<Self, RuntimeError> {
        let store = Store::open(&dir.database())?;
        Self::open_with_store(dir, store)
    }

    /// Opens the sandbox on a given governance store (PostgreSQL, say)
    /// instead of the data directory's SQLite database.
    pub fn open_with_store(dir: DataDir, store: Store) -> Result<Self, RuntimeError> {
        // Taken before reading, so a change made while loading is seen by
        // the next refresh.
        let fingerprint = DirFingerprint::of(&dir);
        let catalog =
            sandbox_policy::load_catalog_dir(&dir.catalog_dir()).map_err(|e| RuntimeError::Setup(e.to_string()))?;
        let policies = load_policies(&dir, &catalog)?;
        let sandbox = Sandbox {
            dir,
            catalog: std::sync::RwLock::new(Arc::new(catalog)),
            loaded: std::sync::Mutex::new(Some(fingerprint)),
            policies: std::sync::RwLock::new(Arc::new(policies)),
            store: Arc::new(store),
            limits: EngineLimits::default(),
            jobs: AtomicU64::new(0),
            wasm: std::sync::OnceLock::new(),
            running: Default::default(),
            runner: Arc::new(sandbox_sql::runner::Embedded),
            tables: None,
        };
        sandbox.register_datasets()?;
        sandbox.ensure_demo_grant()?;
        Ok(sandbox)
    }

    /// Admits a WebAssembly module under the default runtime limits (the
    /// engine is created on first use and shared by later jobs, so compiled
    /// modules are cached by their SHA-256).
    ///
    /// Errors: in distributed mode every module is refused
    /// (`distributed-wasm`): a module runs in this process's engine on rows
    /// the plan would have to bring here whole, which the distributed mode
    /// exists not to do; run WebAssembly jobs on an embedded sandbox.
    pub fn load_wasm(&self, bytes: &[u8]) -> Result<crate::WasmJob, RuntimeError> {
        if self.runner.mode() != "embedded" {
            return Err(RuntimeError::refused(
                "distributed-wasm",
                format!(
                    "WebAssembly jobs and row functions run only in the embedded mode; this sandbox sends jobs to a {} cluster \
                     (run the job on a sandbox started without `--ballista`)",
                    self.runner.mode()
                ),
            ));
        }
        let engine = match self.wasm.get() {
            Some(e) => e.clone(),
            None => {
                let config = sandbox_wasm::RuntimeConfig::builder()
                    .build()
                    .map_err(RuntimeError::Wasm)?;
                let engine = Arc::new(sandbox_wasm::SandboxEngine::new(config).map_err(RuntimeError::Wasm)?);
                self.wasm.get_or_init(|| engine).clone()
            }
        };
        crate::WasmJob::load(engine, bytes)
    }

    pub fn with_limits(mut self, limits: EngineLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Runs every job's physical plans with `runner` (the distributed
    /// mode: `sandbox_distributed::BallistaRunner`). Checking, rewriting,
    /// noise and the budget stay in this process.
    pub fn with_runner(mut self, runner: Arc<dyn sandbox_sql::runner::PlanRunner>) -> Self {
        self.runner = runner;
        self
    }

    /// Reads the datasets' tables from where they are published
    /// ([`crate::published`]) instead of the data directory's own files;
    /// public samples stay in the data directory.
    pub fn with_published_tables(mut self, tables: crate::PublishedTables) -> Self {
        self.tables = Some(tables);
        self
    }

    /// The published tables jobs read, if not the data directory's files.
    pub fn published_tables(&self) -> Option<&crate::PublishedTables> {
        self.tables.as_ref()
    }

    /// Where jobs' plans run: `embedded` or the cluster's kind.
    pub fn execution_mode(&self) -> &'static str {
        self.runner.mode()
    }

    /// The catalog in force (a snapshot: a dataset registered later is in
    /// the catalog of calls after [`Sandbox::refresh`]).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reloads the catalog and the policies when their directories changed
    /// since they were loaded (a dataset registered or withdrawn, a policy
    /// installed, by this process or another: `sandbox dataset register`
    /// while `sandbox serve` runs), and records new datasets and policy
    /// versions in the ledger. Cheap when nothing changed (one directory
    /// listing each). Jobs already running keep their snapshots. Returns
    /// whether anything was reloaded; if the new files do not load, the
    /// old catalog and policies stay in force and the error is returned.
    pub fn refresh(&self) -> Result<bool, RuntimeError> {
        let now = DirFingerprint::of(&self.dir);
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.as_ref() == Some(&now) {
            return Ok(false);
        }
        let catalog = sandbox_policy::load_catalog_dir(&self.dir.catalog_dir())
            .map_err(|e| RuntimeError::Setup(e.to_string()))?;
        let policies = load_policies(&self.dir, &catalog)?;
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(catalog);
        self.replace_policies(policies);
        *loaded = Some(now);
        drop(loaded);
        self.register_datasets()?;
        self.ensure_demo_grant()?;
        tracing::info!("catalog and policies reloaded");
        Ok(true)
    }
    /// The current sample of `dataset`, if it may be served and used under
    /// the policy in force (see [`DataDir::current_sample`]).
    ///
    /// # Errors
    /// `sample-stale` for a sample made under other terms; reading its
    /// manifest.
    pub fn current_sample(
        &self,
        dataset: &DatasetId,
    ) -> Result<Option<(std::path::PathBuf, sandbox_ingest::SampleManifest)>, RuntimeError> {
        self.dir.current_sample(dataset, self.policies().get(dataset))
    }

    /// The output policies in force (a snapshot: a policy installed later
    /// applies to jobs that start later).
    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts a new, validated policy set in force for the jobs that start
    /// from now on.
    pub(crate) fn replace_policies(&self, policies: PolicySet) {
        *self.policies.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policies);
    }
    pub fn store(&self) -> &Store {
        &self.store
    }
    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }
    pub(crate) fn running(&self) -> &crate::governance::RunningJobs {
        &self.running
    }
    /// Jobs between their charge and their release right now.
    pub fn running_jobs(&self) -> usize {
        self.running.count()
    }

    /// Records each dataset and the digest of its policy file in the ledger
    /// (only what is new or changed since the last opening).
    fn register_datasets(&self) -> Result<(), RuntimeError> {
        self.store.register_datasets(&self.registrations()?, "platform")?;
        Ok(())
    }

    /// Each catalog dataset with the digests of its entry and policy.
    pub(crate) fn registrations(&self) -> Result<Vec<sandbox_governance::Registration>, RuntimeError> {
        let policies = self.policies();
        let registrations = self
            .catalog()
            .iter()
            .map(|d| {
                let entry = serde_json::to_vec(d).map_err(|e| RuntimeError::Setup(e.to_string()))?;
                Ok(sandbox_governance::Registration {
                    dataset: d.id.to_string(),
                    provider: d.provider.id.clone(),
                    open_class: format!("{:?}", d.open_class).to_lowercase(),
                    catalog_digest: digest(&entry),
                    policy_digest: policies.get(&d.id).map(|p| p.digest.clone()).unwrap_or_default(),
                    epsilon_budget: policies.get(&d.id).and_then(|p| p.dp).map(|dp| dp.epsilon_budget),
                    delta_budget: policies.get(&d.id).and_then(|p| p.dp).map(|dp| dp.delta_budget),
                    zcdp_delta: policies
                        .get(&d.id)
                        .and_then(|p| p.dp)
                        .and_then(|dp| dp.accounting.conversion_delta()),
                })
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        Ok(registrations)
    }

    fn ensure_demo_grant(&self) -> Result<(), RuntimeError> {
        let policies = self.policies();
        let budgets = self
            .catalog()
            .iter()
            .filter(|d| d.open_class == OpenClass::Conditional)
            .filter_map(|d| {
                let p = policies.get(&d.id)?;
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
    pub async fn session_for_grant(&self, grant: &str) -> Result<JobSession, RuntimeError> {
        Ok(self.admit(grant).await?.1)
    }

    /// Admission: the datasets a grant covers, and a session over them.
    pub(crate) async fn admit(&self, grant: &str) -> Result<(Vec<DatasetId>, JobSession), RuntimeError> {
        let granted: Vec<DatasetId> = self
            .store
            .grant_datasets(grant)?
            .into_iter()
            .filter_map(|d| d.parse().ok())
            .collect();
        let session = self.session_over(&granted, false).await?;
        Ok((granted, session))
    }

    /// Records a job refused by a rule (it was never charged).
    fn record_if_refused<T>(
        &self,
        result: &Result<T, RuntimeError>,
        job_id: &str,
        grant: &str,
        kind: &str,
        submission: &Submission,
    ) {
        if let Err(e) = result
            && let Some(rule) = e.rule()
        {
            let outcome = JobOutcome::Refused { rule: rule.to_string() };
            let recorded = self.store.record_refusal_with_text(
                job_id,
                grant,
                kind,
                &submission.digest,
                Some(&submission.text),
                &outcome,
            );
            if let Err(err) = recorded {
                tracing::warn!(%err, "could not record a refused job");
            }
        }
    }

    /// A session over the grant's datasets: their data, or (`samples`)
    /// their current public DP samples (a dataset without one is left out).
    pub(crate) async fn session_over(&self, granted: &[DatasetId], samples: bool) -> Result<JobSession, RuntimeError> {
        let mut bindings = Vec::new();
        let policies = self.policies();
        let catalog = self.catalog();
        let usable = |d: &&sandbox_model::Dataset| {
            d.open_class == OpenClass::Open || (d.open_class == OpenClass::Conditional && granted.contains(&d.id))
        };
        // Published tables are pinned all at once: a round trip or two to
        // the store per dataset, concurrently.
        let mut published = std::collections::HashMap::new();
        if let (Some(tables), false) = (&self.tables, samples) {
            let pins = catalog.iter().filter(usable).map(|d| async move {
                // The version the data directory names, as published: its
                // entry and policy are the ones in force.
                let version = self.dir.current_version(&d.id);
                let source = self.publication_source(&d.id).ok().flatten().unwrap_or_default();
                let pinned = tables.pin(&d.id, version.as_deref(), &source).await;
                (d.id.clone(), (pinned, version))
            });
            published = futures::future::join_all(pins).await.into_iter().collect();
        }
        for d in catalog.iter() {
            // The owner's desensitization rules, applied beneath the job.
            let policy_rules = policies
                .get(&d.id)
                .map(sandbox_sql::desensitize::scan_rules)
                .unwrap_or_default();
            if !usable(&d) {
                continue;
            }
            // The directory is resolved once: its files are pinned here,
            // and the job scans (and verifies) exactly these. A sample made
            // under other terms than the policy's (a rule added since) is
            // left out like a missing one; a check that then misses its
            // table says why (`explain_missing_samples`).
            let pinned = if samples {
                match self.dir.current_sample(&d.id, policies.get(&d.id)) {
                    Ok(Some((dir, _))) => pinned_local(&dir).map(|(location, files)| (location, files, Vec::new())),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::info!(dataset = %d.id, error = %e, "the sample is not used");
                        None
                    }
                }
            } else if self.tables.is_some() {
                // Never the local files: the executors read the published ones.
                let (pinned, version) = published.remove(&d.id).unwrap_or((Ok(None), None));
                match pinned {
                    Ok(Some(table)) if !table.files.is_empty() => {
                        let urls = table.files.iter().map(|pin| pin.url.clone()).collect();
                        Some((table.location, urls, table.files))
                    }
                    Ok(_) => {
                        tracing::info!(dataset = %d.id, version = version.as_deref().unwrap_or("(unversioned)"), "not published: jobs cannot read it (sandbox dataset publish)");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(dataset = %d.id, error = %e, "the published table is not read");
                        None
                    }
                }
            } else {
                pinned_local(&self.dir.table_dir(&d.id)).map(|(location, files)| (location, files, Vec::new()))
            };
            let Some((location, files, pins)) = pinned else {
                continue;
            };
            let schema = Schema::new(
                d.fields
                    .iter()
                    .map(|f| ArrowField::new(&f.name, arrow_type(f.data_type), true))
                    .collect::<Vec<_>>(),
            );
            bindings.push(TableBinding {
                dataset: d.id.clone(),
                location,
                files,
                pins,
                schema: Arc::new(schema),
                declared_max_rows_per_value: d.max_rows_per_value.clone(),
                desensitize: policy_rules,
            });
        }
        let mut session = JobSession::new(&bindings, self.limits.clone())?;
        session.set_runner(self.runner.clone());
        Ok(session)
    }

    /// Runs (or dry-runs) one SQL job under a grant.
    pub async fn run_sql(&self, grant: &str, sql: &str, options: &SqlJobOptions) -> Result<SqlJobResult, RuntimeError> {
        self.run_sql_with_functions(grant, sql, options, Vec::new()).await
    }

    /// Runs one SQL job that may call the job's own row functions
    /// (WebAssembly UDFs), registered for this job only.
    pub async fn run_sql_with_functions(
        &self,
        grant: &str,
        sql: &str,
        options: &SqlJobOptions,
        functions: Vec<Arc<dyn RowFunction>>,
    ) -> Result<SqlJobResult, RuntimeError> {
        self.run_sql_job(&JobContext::default(), grant, sql, options, functions)
            .await
    }

    /// [`run_sql_with_functions`](Self::run_sql_with_functions) under a
    /// given job id and progress callback.
    pub async fn run_sql_job(
        &self,
        context: &JobContext,
        grant: &str,
        sql: &str,
        options: &SqlJobOptions,
        functions: Vec<Arc<dyn RowFunction>>,
    ) -> Result<SqlJobResult, RuntimeError> {
        let job_id = context.id.clone().unwrap_or_else(|| self.next_job_id());
        let mut submitted = sql.to_string();
        for f in &functions {
            submitted.push_str(&format!("\n-- function {} {}", f.name(), f.identity()));
        }
        let submission = Submission::new(submitted, &options.digest_line());
        let result = self
            .run_sql_inner(context, &job_id, grant, sql, &submission, options, functions)
            .await;
        self.record_if_refused(&result, &job_id, grant, "sql", &submission);
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_sql_inner(
        &self,
        context: &JobContext,
        job_id: &str,
        grant: &str,
        sql: &str,
        submission: &Submission,
        options: &SqlJobOptions,
        functions: Vec<Arc<dyn RowFunction>>,
    ) -> Result<SqlJobResult, RuntimeError> {
        // Admit.
        context.report("checking");
        let (granted, mut session) = self.admit(grant).await?;
        let has_functions = !functions.is_empty();
        session.register_row_functions(functions)?;
        let policies = self.policies();
        let catalog = self.catalog();
        let lookup = Lookup {
            catalog: &catalog,
            policies: &policies,
            granted: &granted,
        };
        // Plan and check.
        let query = session.plan_and_check(sql, &lookup)?;
        let kinds: &[&str] = if has_functions { &["sql", "wasm"] } else { &["sql"] };
        self.check_job_allowed(grant, kinds, &query.datasets, &query.usage)?;
        // The job's functions that the query calls, each called once on
        // generated arguments: a broken function fails loudly, uncharged.
        let called: Vec<Arc<dyn RowFunction>> = session
            .row_functions()
            .iter()
            .filter(|(name, _)| query.usage.functions.contains(&format!("wasm:{name}")))
            .map(|(_, f)| f.clone())
            .collect();
        if !called.is_empty() {
            tokio::task::spawn_blocking(move || crate::preflight::udfs(&called))
                .await
                .map_err(|_| RuntimeError::Setup("the trial call's worker stopped".into()))??;
        }
        let mut rules = crate::rules::for_query(&query, &policies)?;
        rules.composition = self.composition(grant, &query.protected)?;
        let (specs, measures) = plan_measures(&query)?;
        let public_count = public_groups(&query, self.limits.max_groups).map(|g| g.len());
        let public = public_count.is_some();
        // Rows that take a job function's default are counted with DP, with
        // their own share of ε, when the release is DP and the query calls
        // a function where it counts (a fact of the query alone).
        let counts_defaults = rules.dp && sandbox_sql::defaults::defaulted_row_flag(&query)?.is_some();
        // The multipliers of the job's ε that the release and the count get:
        // shares of ε (basic), or of ρ = ε²/2 (zCDP: square roots).
        let (release_share, count_share) = match (counts_defaults, rules.composition) {
            (false, _) => (1.0, 0.0),
            (true, Composition::Basic) => (1.0 - DEFAULT_COUNT_SHARE, DEFAULT_COUNT_SHARE),
            (true, Composition::Zcdp) => ((1.0 - DEFAULT_COUNT_SHARE).sqrt(), DEFAULT_COUNT_SHARE.sqrt()),
        };
        let epsilon = match options.target_ci {
            None => self.choose_epsilon(&rules, options.epsilon)?,
            Some(_) if options.epsilon.is_some() => {
                return Err(RuntimeError::refused(
                    "target-ci-with-epsilon",
                    "give either ε or a target interval, not both",
                ));
            }
            Some(target) => {
                let needed = crate::forecast::epsilon_for_target(
                    &query,
                    &specs,
                    &rules,
                    public_count,
                    target,
                    options.target_rows,
                    release_share,
                )?;
                self.choose_epsilon(&rules, Some(needed))?
            }
        };
        let release_epsilon = epsilon * release_share;
        let count_epsilon = epsilon * count_share;
        if rules.dp && !public && rules.delta <= 0.0 {
            return Err(RuntimeError::refused(
                "partition-selection-needs-delta",
                "grouping by keys without a public key set needs δ > 0 in every policy; group by dimensions with public keys",
            ));
        }
        if options.dry_run {
            let mut report = self.dry_run(&query, &rules, &specs, public_count, release_epsilon)?;
            if rules.dp {
                report.intervals = crate::forecast::expected_intervals(
                    &query,
                    &specs,
                    &rules,
                    public_count,
                    release_epsilon,
                    options.target_rows,
                )?;
            }
            if counts_defaults {
                report.epsilon = epsilon;
                report.split.push((DEFAULTS_PART.to_string(), count_epsilon));
            }
            report.target_ci = options.target_ci;
            report.target_rows = options.target_rows;
            return Ok(SqlJobResult::DryRun(report));
        }
        // Charge before running.
        let delta = if rules.dp && !public { rules.delta } else { 0.0 };
        let charges = query
            .protected
            .iter()
            .map(|d| (d.clone(), if rules.dp { epsilon } else { 0.0 }, delta))
            .collect();
        self.store.reserve(
            &JobCharge::new(job_id, grant, "sql", &submission.digest, charges)
                .with_text(&submission.text)
                .with_zcdp_conversion(crate::governance::zcdp_conversion)
                .calibrated_for_zcdp(rules.composition == Composition::Zcdp),
        )?;
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
            submission_digest: submission.digest.clone(),
            ..Default::default()
        };
        // Execute and release; a failure still keeps the charge. A
        // suspension or revocation meanwhile cancels the computation.
        // The catalog's row bounds, checked on the files this job scans.
        self.verify_row_bounds(&mut session, &query.datasets, &policies).await;
        let running = self.running.register(job_id, grant, &query.datasets);
        context.report("computing");
        let computation = async {
            // The job's key for the keyed choice of each unit's groups.
            let choice_key = sandbox_dp::bounding::choice_key()?;
            // Where to bound: inside the engine, unless the dominance rule
            // needs each unit's partials or the bounding needs a window over
            // each unit's groups (a choice of G, or the total cap L), which
            // is slower in the engine today than in the release step (see
            // docs/benchmarks.md). Both give identical totals (checked by the
            // neighbouring suite); the choice depends on the query and the
            // policies only.
            //
            // Where the catalog's verified row bounds show that no unit can
            // reach a bound, bounding is the identity and the engine skips
            // the per-unit stage altogether (a public fact: the plan and
            // the declarations, never the data, choose it).
            //
            // DP bound estimation (CLAMP_AUTO) first, with its share of ε.
            let (query, specs, measures) = if query.aggregates.iter().any(|a| a.auto_bound.is_some()) {
                let split = epsilon_split(&query, &specs, &rules, public, release_epsilon)?;
                let (estimated, _) =
                    crate::estimation::estimate_bounds(&session, &query, &rules, &split, choice_key).await?;
                let (specs, measures) = plan_measures(&estimated)?;
                (std::borrow::Cow::Owned(estimated), specs, measures)
            } else {
                (std::borrow::Cow::Borrowed(&query), specs.clone(), measures.clone())
            };
            let query = query.as_ref();
            let bounding = crate::release::engine_bounding(&rules, choice_key)?;
            let dominance = crate::release::needs_unit_contributions(&specs, &rules);
            let group_keys: Vec<_> = query.group_keys.iter().map(|k| k.expr.clone()).collect();
            let unit_bounds =
                sandbox_sql::multiplicity::unit_bounds(&query.row_source, &query.unit_columns, &group_keys, &session);
            let cannot_bind = !sandbox_sql::contribution::bounding_can_bind(bounding, public_count, unit_bounds);
            let in_engine = !dominance
                && crate::testing::forced_bounding_in_engine()
                    .unwrap_or_else(|| cannot_bind || !sandbox_sql::contribution::needs_window(bounding, public_count));
            tracing::debug!(?unit_bounds, cannot_bind, in_engine, "where contributions are bounded");
            tracing::trace!(plan = %query.row_source.display_indent(), units = ?query.unit_columns, "row source");
            if in_engine && cannot_bind {
                crate::testing::note_unbounded_totals();
            }
            let defaults_flag = sandbox_sql::defaults::defaulted_row_flag(query)?.filter(|_| counts_defaults);
            // The count of defaulted rows is one more measure of the job's
            // own pass, bounded with the job's statistics (in the engine or
            // in the release step): the same bounding, so the same count,
            // and each row's function call serves both its value and its
            // flag (`sandbox_sql::defaults`).
            let mut defaulted_rows = None;
            let mut defaults_measure = None;
            let statistics = if in_engine {
                let count_units = crate::release::needs_unit_counts(&specs, &rules, public);
                let mut all = measures.clone();
                if let Some(flag) = &defaults_flag {
                    all.push(sandbox_sql::defaults::defaulted_row_measure(flag.clone())?);
                }
                let mut statistics = compute_totals(&session, query, &all, bounding, unit_bounds, count_units).await?;
                if defaults_flag.is_some() {
                    let sandbox_sql::partials::Contributions::Totals { totals, .. } = &mut statistics.contributions
                    else {
                        return Err(RuntimeError::Setup(
                            "compute_totals returned partials, not totals".into(),
                        ));
                    };
                    defaulted_rows = Some(sandbox_sql::defaults::take_defaulted_rows(totals));
                }
                statistics
            } else {
                let mut all = measures.clone();
                if let Some(flag) = &defaults_flag {
                    defaults_measure = Some(all.len());
                    all.push(sandbox_sql::defaults::defaulted_row_measure(flag.clone())?);
                }
                compute_partials(&session, query, &all, choice_key).await?
            };
            context.report("releasing");
            let started = std::time::Instant::now();
            let mut released = release_counting_defaults(
                query,
                &specs,
                &statistics,
                &rules,
                release_epsilon,
                self.limits.max_groups,
                defaults_measure,
            )?;
            tracing::debug!(elapsed = ?started.elapsed(), "released");
            if defaults_measure.is_some() {
                defaulted_rows = released.defaulted_rows;
            }
            let defaults = match defaults_flag {
                Some(_) => {
                    let exact = defaulted_rows.ok_or_else(|| {
                        RuntimeError::Setup("the count of defaulted rows was not computed with the job".into())
                    })?;
                    let d = self.release_defaults(exact, &rules, public_count, count_epsilon)?;
                    released.table.epsilon_spent = epsilon;
                    released.table.notes.push(defaults_note(&d));
                    Some(d)
                }
                None => None,
            };
            Ok::<_, RuntimeError>((released, defaults))
        };
        // One deadline for the whole computation (estimation, bounding, the
        // count of defaults), not one per pass.
        let deadline = self.limits.deadline;
        let computation = async move {
            tokio::time::timeout(deadline, computation)
                .await
                .unwrap_or_else(|_| Err(RuntimeError::from(sandbox_sql::SqlError::Deadline(deadline))))
        };
        let released = tokio::select! {
            r = computation => r,
            () = running.cancelled() => return self.cancelled(job_id, &usage, &query.datasets),
        };
        match released {
            Ok((r, defaults)) => {
                usage.defaults = defaults;
                let bytes = serde_json::to_vec(&r.table).map_err(|e| RuntimeError::Setup(e.to_string()))?;
                usage.result_digest = Some(digest(&bytes));
                usage.groups_released = r.groups_released;
                usage.groups_suppressed = r.groups_suppressed;
                let stored = String::from_utf8_lossy(&bytes);
                self.store
                    .finish_with_result(job_id, &JobOutcome::Released, &usage, Some(&stored))?;
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

    /// Records a job cancelled while running and says why: a suspended
    /// dataset, or a revoked agreement.
    fn cancelled<T>(
        &self,
        job_id: &str,
        usage: &UsageRecord,
        datasets: &std::collections::BTreeSet<DatasetId>,
    ) -> Result<T, RuntimeError> {
        self.store.finish(job_id, &JobOutcome::Cancelled, usage)?;
        let names: Vec<&str> = datasets.iter().map(DatasetId::as_str).collect();
        self.store.check_not_suspended(&names)?;
        let revoked = self
            .store
            .agreement(&usage.grant_id)?
            .is_some_and(|a| a.status != "active");
        Err(RuntimeError::refused(
            "job-cancelled",
            if revoked {
                "the job was cancelled while running (its agreement was revoked); nothing was released"
            } else {
                "the job was cancelled while running at its submitter's request; nothing was released and its charge is kept"
            },
        ))
    }

    /// How a job's ε composes: under zCDP when every protected dataset it
    /// reads has a zCDP budget line in the grant ([`sandbox_governance::zcdp`]),
    /// basic otherwise (a pure job charged to a zCDP line costs it ε²/2 all
    /// the same). A fact of the ledger, never of the data.
    fn composition(
        &self,
        grant: &str,
        protected: &std::collections::BTreeSet<DatasetId>,
    ) -> Result<Composition, RuntimeError> {
        if protected.is_empty() {
            return Ok(Composition::Basic);
        }
        let lines = self.store.budget(grant)?;
        let all_zcdp = protected
            .iter()
            .all(|d| lines.iter().any(|l| l.dataset == d.as_str() && l.is_zcdp()));
        Ok(if all_zcdp {
            Composition::Zcdp
        } else {
            Composition::Basic
        })
    }

    /// The ε a job spends: the one asked for, or the per-query cap; never
    /// above the cap nor below the largest minimum of the policies
    /// (`epsilon-below-minimum`, also when the cap itself is below it).
    pub(crate) fn choose_epsilon(&self, rules: &ReleaseRules, requested: Option<f64>) -> Result<f64, RuntimeError> {
        if !rules.dp {
            return Ok(0.0);
        }
        let below = |e: f64| {
            Err(RuntimeError::refused(
                "epsilon-below-minimum",
                format!(
                    "ε = {e} is below the minimum of {} per query set by the data owners (epsilon_min_per_query)",
                    rules.epsilon_min
                ),
            ))
        };
        match requested {
            None if rules.epsilon_cap < rules.epsilon_min => below(rules.epsilon_cap),
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
            Some(e) if e < rules.epsilon_min => below(e),
            Some(e) => Ok(e),
        }
    }

    fn dry_run(
        &self,
        query: &CheckedQuery,
        rules: &ReleaseRules,
        specs: &[sandbox_dp::aggregate::AggregateSpec],
        public_count: Option<usize>,
        epsilon: f64,
    ) -> Result<DryRunReport, RuntimeError> {
        let public = public_count.is_some();
        if !rules.dp {
            return Ok(DryRunReport {
                epsilon: 0.0,
                delta: 0.0,
                mode: "threshold",
                composition: Composition::Basic,
                split: Vec::new(),
                aggregates: Vec::new(),
                selection_threshold: None,
                public_groups: public_count,
                intervals: Vec::new(),
                target_ci: None,
                target_rows: None,
            });
        }
        let split = epsilon_split(query, specs, rules, public, epsilon)?;
        let b = bounds(rules)?;
        let g_eff = b.effective_groups(public_count);
        let mut aggregates = Vec::new();
        for (j, s) in specs.iter().enumerate() {
            let share = split.share(j).unwrap_or(0.0);
            let c = crate::release::calibrate(s, share, rules, &b, g_eff)?;
            aggregates.push((query.aggregates[j].display.clone(), c.forecast()));
        }
        let selection_threshold = if public {
            None
        } else {
            let share = crate::release::share(&split, crate::release::SELECTION)?;
            Some(PartitionSelector::new(g_eff, share, rules.delta, rules.min_units)?.threshold() as i64)
        };
        Ok(DryRunReport {
            epsilon,
            delta: if public { 0.0 } else { rules.delta },
            mode: if rules.threshold { "dp+threshold" } else { "dp" },
            composition: rules.composition,
            split: split.parts,
            aggregates,
            selection_threshold,
            public_groups: public_count,
            intervals: Vec::new(),
            target_ci: None,
            target_rows: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resumed job runs under its first charge only if its digest matches
    /// (`Store::reserve`), so the digest must bind what decides the charge
    /// and the release, and nothing that is never charged.
    #[test]
    fn the_submission_digest_binds_the_options_that_decide_the_charge() {
        let sql = "SELECT month, COUNT(*) FROM gov.utility_usage GROUP BY month";
        let digest = |options: SqlJobOptions| Submission::new(sql.into(), &options.digest_line()).digest;
        let base = digest(SqlJobOptions {
            epsilon: Some(0.1),
            ..Default::default()
        });
        for changed in [
            SqlJobOptions {
                epsilon: Some(0.5),
                ..Default::default()
            },
            SqlJobOptions::default(),
            SqlJobOptions {
                epsilon: Some(0.1),
                target_ci: Some(10.0),
                ..Default::default()
            },
            SqlJobOptions {
                epsilon: Some(0.1),
                target_rows: Some(100),
                ..Default::default()
            },
        ] {
            assert_ne!(digest(changed.clone()), base, "{changed:?}");
        }
        let dry = SqlJobOptions {
            epsilon: Some(0.1),
            dry_run: true,
            ..Default::default()
        };
        assert_eq!(digest(dry), base);
        assert_ne!(
            Submission::new(format!("{sql} "), "").digest,
            Submission::new(sql.into(), "").digest
        );
    }

    /// The loaded policies are keyed by the files' contents: a policy
    /// rewritten in place at the same size, its modification time set back,
    /// is reloaded all the same (its new rule is in force for the next job).
    #[test]
    fn a_policy_rewritten_in_place_with_the_same_size_and_time_is_reloaded() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::open(tmp.path().join("data")).expect("data dir");
        let path = dir.policies_dir().join("health.clinic_visits.toml");
        let sandbox = Sandbox::open(dir).expect("sandbox");
        let id: DatasetId = "health.clinic_visits".parse().expect("id");
        let rule = |s: &Sandbox| s.policies().get(&id).and_then(|p| p.column("age")?.desensitize.clone());
        assert_eq!(rule(&sandbox).map(|r| r.to_string()), Some("band = 5".to_string()));
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime");
        let text = std::fs::read_to_string(&path).expect("policy");
        assert!(text.contains("age = { band = 5 }"));
        std::fs::write(&path, text.replace("age = { band = 5 }", "age = { band = 9 }")).expect("rewrite");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(modified))
            .expect("set mtime");
        assert!(sandbox.refresh().expect("refresh"));
        assert_eq!(rule(&sandbox).map(|r| r.to_string()), Some("band = 9".to_string()));
    }
}
