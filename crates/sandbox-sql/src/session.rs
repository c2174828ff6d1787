//! One hardened DataFusion session per job.
//!
//! The session is built from nothing (`SessionStateBuilder::new()`, not the
//! defaults): scalar, aggregate and window functions are registered so that
//! queries plan and the checker can refuse what it must by name, but no
//! table functions (`generate_series`, `range`), no table factories (no
//! `CREATE EXTERNAL TABLE`), no URL tables and no information schema. Tables
//! are registered by the runtime from the catalog, as listing tables over
//! object-store paths, and only those the job's grant covers.

use crate::checker::{Checker, PolicyLookup};
use crate::guest::{GuestUdf, RowFunction};
use crate::query::CheckedRows;
use crate::runner::{Embedded, PlanRunner};
use crate::{CheckedQuery, EngineLimits, SqlError, guard};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::SessionStateDefaults;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionConfig;
use sandbox_model::DatasetId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The catalog name every job session uses; tables are `namespace.table`.
pub const CATALOG: &str = "sandbox";

/// A dataset the job may read: where its files are and their schema.
#[derive(Debug, Clone)]
pub struct TableBinding {
    pub dataset: DatasetId,
    /// A directory path or URL of Parquet files (`/…/gov/tax_payments/`, or
    /// a published version: `s3://bucket/prefix/gov/tax_payments/v000002/`,
    /// read through [`crate::storage`]).
    pub location: String,
    /// The files the job reads, pinned when the session is built (absolute
    /// paths or URLs), so that what the runtime verifies about them is
    /// exactly what the job scans; empty: every Parquet file under
    /// `location`, listed when the job scans.
    pub files: Vec<String>,
    /// The identities of `files` where they are objects of a store (empty
    /// for local paths): every read of one gets exactly this object or
    /// fails ([`crate::storage::ObjectPin`]).
    pub pins: Vec<crate::storage::ObjectPin>,
    pub schema: SchemaRef,
    /// The catalog's `max_rows_per_value` declarations, not yet verified:
    /// [`crate::multiplicity::count_max_rows_per_value`] counts them on
    /// the pinned files and the runtime installs the ones that hold with
    /// [`JobSession::set_verified_max_rows_per_value`].
    pub declared_max_rows_per_value: BTreeMap<String, u64>,
    /// The desensitization rules applied beneath every job (column →
    /// rule, every column's rule whatever its role):
    /// [`crate::desensitize::scan_rules`] of the dataset's policy. The
    /// table's scan yields these columns as their coarsened values; the
    /// checker refuses a job whose datasets are not bound with their
    /// policies' rules.
    pub desensitize: BTreeMap<String, sandbox_policy::Desensitization>,
}

/// A job's session: its tables and its limits.
#[derive(Clone)]
pub struct JobSession {
    state: SessionState,
    limits: EngineLimits,
    datasets: BTreeMap<DatasetId, TableBinding>,
    /// Verified `max_rows_per_value` bounds per dataset.
    verified: BTreeMap<DatasetId, BTreeMap<String, u64>>,
    /// Columns found to hold no NULL in the pinned files, per dataset.
    null_free: BTreeMap<DatasetId, std::collections::BTreeSet<String>>,
    /// The job's row functions: name → output bounds.
    guests: BTreeMap<String, (f64, f64)>,
    /// The job's row functions by name.
    functions: BTreeMap<String, Arc<dyn RowFunction>>,
    /// Every table is a public sample dataset (a trial run): only then may
    /// a query run as written ([`crate::trial`]).
    public_samples: bool,
    /// Where the finished physical plans run (embedded by default).
    runner: Arc<dyn PlanRunner>,
}

impl std::fmt::Debug for JobSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSession")
            .field("datasets", &self.datasets.keys().collect::<Vec<_>>())
            .field("limits", &self.limits)
            .finish()
    }
}

impl JobSession {
    /// Builds the session and registers the bound tables.
    pub fn new(bindings: &[TableBinding], limits: EngineLimits) -> Result<Self, SqlError> {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, "public")
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(false)
            .with_target_partitions(limits.target_partitions.max(1));
        let options = config.options_mut();
        options.execution.parquet.pushdown_filters = true;
        let pins: Vec<crate::storage::ObjectPin> = bindings.iter().flat_map(|b| b.pins.iter().cloned()).collect();
        let stores: Arc<dyn datafusion::execution::object_store::ObjectStoreRegistry> = if pins.is_empty() {
            crate::storage::table_stores()
        } else {
            Arc::new(crate::storage::SessionStores::new(&pins)?)
        };
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .with_object_store_registry(stores)
            .build_arc()
            .map_err(|e| SqlError::Internal(e.strip_backtrace()))?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_scalar_functions(scalar_functions())
            .with_aggregate_functions(aggregate_functions())
            .with_window_functions(window_functions())
            .with_expr_planners(SessionStateDefaults::default_expr_planners())
            .build();
        let catalog = state
            .catalog_list()
            .catalog(CATALOG)
            .ok_or_else(|| SqlError::Internal("default catalog missing".into()))?;
        let mut schemas: BTreeMap<String, Arc<MemorySchemaProvider>> = BTreeMap::new();
        let mut datasets = BTreeMap::new();
        for b in bindings {
            let schema = schemas
                .entry(b.dataset.namespace().to_string())
                .or_insert_with(|| Arc::new(MemorySchemaProvider::new()));
            let storage = |_| SqlError::Storage(b.dataset.to_string());
            let urls = if b.files.is_empty() {
                vec![ListingTableUrl::parse(&b.location).map_err(storage)?]
            } else {
                b.files
                    .iter()
                    .map(|f| ListingTableUrl::parse(f).map_err(storage))
                    .collect::<Result<Vec<_>, _>>()?
            };
            let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(b.schema.clone());
            let table = ListingTable::try_new(config).map_err(|_| SqlError::Storage(b.dataset.to_string()))?;
            let table: Arc<dyn datafusion::catalog::TableProvider> = if b.desensitize.is_empty() {
                Arc::new(table)
            } else {
                crate::desensitize::desensitized_table(&b.dataset, Arc::new(table), &b.schema, &b.desensitize)?
            };
            schema
                .register_table(b.dataset.table().to_string(), table)
                .map_err(|e| SqlError::Internal(e.strip_backtrace()))?;
            datasets.insert(b.dataset.clone(), b.clone());
        }
        for (name, schema) in schemas {
            catalog
                .register_schema(&name, schema)
                .map_err(|e| SqlError::Internal(e.strip_backtrace()))?;
        }
        Ok(JobSession {
            state,
            limits,
            datasets,
            verified: BTreeMap::new(),
            null_free: BTreeMap::new(),
            guests: BTreeMap::new(),
            functions: BTreeMap::new(),
            public_samples: false,
            runner: Arc::new(Embedded),
        })
    }

    /// Runs this session's physical plans with `runner` (the distributed
    /// mode) instead of in this process.
    pub fn set_runner(&mut self, runner: Arc<dyn PlanRunner>) {
        runner.configure(self.state.config_mut().options_mut());
        self.runner = runner;
    }

    /// Where this session's physical plans run.
    pub fn runner(&self) -> &Arc<dyn PlanRunner> {
        &self.runner
    }

    /// Declares that every table of this session is a public sample
    /// dataset (which anyone may download), so that [`crate::trial`] may
    /// run queries on it as written. The caller vouches for the bindings.
    pub fn mark_public_samples(&mut self) {
        self.public_samples = true;
    }

    /// True after [`JobSession::mark_public_samples`].
    pub fn is_over_public_samples(&self) -> bool {
        self.public_samples
    }

    /// The verified `max_rows_per_value` bounds of a dataset's pinned files
    /// (none until the runtime installed them).
    pub fn max_rows_per_value(&self, dataset: &DatasetId) -> Option<&BTreeMap<String, u64>> {
        self.verified.get(dataset)
    }

    /// Installs the `max_rows_per_value` bounds found to hold on this
    /// session's pinned files of `dataset` (counted by
    /// [`crate::multiplicity::count_max_rows_per_value`] or a cache of that
    /// count for the same files).
    pub fn set_verified_max_rows_per_value(&mut self, dataset: &DatasetId, bounds: BTreeMap<String, u64>) {
        self.verified.insert(dataset.clone(), bounds);
    }

    /// The columns of `dataset` found to hold no NULL in this session's
    /// pinned files (counted by [`crate::multiplicity::count_nulls`] or a
    /// cache of that count for the same files).
    pub fn null_free_columns(&self, dataset: &DatasetId) -> Option<&std::collections::BTreeSet<String>> {
        self.null_free.get(dataset)
    }

    /// Installs the columns of `dataset` found to hold no NULL.
    pub fn set_null_free_columns(&mut self, dataset: &DatasetId, columns: std::collections::BTreeSet<String>) {
        self.null_free.insert(dataset.clone(), columns);
    }

    /// How a dataset is bound in this session.
    pub fn binding(&self, dataset: &DatasetId) -> Option<&TableBinding> {
        self.datasets.get(dataset)
    }

    /// Registers a job's row functions (WebAssembly UDFs) for this job only.
    /// A name that collides with a built-in or another function is refused.
    pub fn register_row_functions(&mut self, functions: Vec<Arc<dyn RowFunction>>) -> Result<(), SqlError> {
        for f in functions {
            let name = f.name().to_string();
            let valid = !name.is_empty()
                && name.len() <= 63
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(SqlError::refused(
                    "udf-name",
                    format!("function name `{name}` must be lower-case letters, digits and `_`"),
                ));
            }
            if self.guests.contains_key(&name) || self.state.scalar_functions().contains_key(&name) {
                return Err(SqlError::refused(
                    "udf-name",
                    format!("function name `{name}` is already taken by a built-in or another function of the job"),
                ));
            }
            let (lo, hi) = f.bounds();
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(SqlError::refused(
                    "udf-bounds",
                    format!("function `{name}` must declare finite bounds with lower < upper"),
                ));
            }
            self.guests.insert(name.clone(), (lo, hi));
            self.functions.insert(name, f.clone());
            self.state
                .register_udf(Arc::new(GuestUdf::new(f).into_udf()))
                .map_err(|e| SqlError::Internal(e.strip_backtrace()))?;
        }
        Ok(())
    }

    /// The job's row functions by name.
    pub fn row_functions(&self) -> &BTreeMap<String, Arc<dyn RowFunction>> {
        &self.functions
    }

    pub fn state(&self) -> &SessionState {
        &self.state
    }

    pub fn limits(&self) -> &EngineLimits {
        &self.limits
    }

    pub fn datasets(&self) -> impl Iterator<Item = &DatasetId> {
        self.datasets.keys()
    }

    /// Plans `sql` (statement checks, then DataFusion's planner) on a thread
    /// with a large stack, without checking the plan against policies.
    pub fn plan(&self, sql: &str) -> Result<LogicalPlan, SqlError> {
        self.on_planner_thread(|| self.plan_here(sql))
    }

    /// Reserved names (`__sandbox…`) are refused by the checker on the
    /// planned plan, where the planner has normalised identifiers.
    fn plan_here(&self, sql: &str) -> Result<LogicalPlan, SqlError> {
        let statement = guard::parse_query(sql, &self.limits)?;
        futures::executor::block_on(self.state.statement_to_plan(statement))
            .map_err(|e| SqlError::Invalid(self.explain_planner_error(e.strip_backtrace())))
    }

    /// DataFusion suggests the closest built-in for an unknown function
    /// ("Did you mean 'btrim'?"), which misleads when the name is a job's
    /// WebAssembly function whose module was not passed: say that instead.
    fn explain_planner_error(&self, message: String) -> String {
        let Some(rest) = message.split("Invalid function '").nth(1) else {
            return message;
        };
        let Some(name) = rest.split('\'').next() else {
            return message;
        };
        let declared: Vec<&str> = self.functions.keys().map(String::as_str).collect();
        if declared.is_empty() {
            format!(
                "`{name}` is not a SQL function; if it is a job's WebAssembly function, pass the module with `--wasm` \
                 (over HTTP, the job's `wasm` field)"
            )
        } else {
            format!(
                "`{name}` is not a SQL function, and the job's module declares only {}",
                declared.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", ")
            )
        }
    }

    /// Plans and checks `sql` against the policies, on the planner thread.
    pub fn plan_and_check(&self, sql: &str, policies: &dyn PolicyLookup) -> Result<CheckedQuery, SqlError> {
        self.on_planner_thread(|| {
            let plan = self.plan_here(sql)?;
            let checked = Checker::new(policies, &self.guests).check(&plan)?;
            crate::desensitize::require_applied(&self.datasets, &checked.datasets, policies)?;
            Ok(checked)
        })
    }

    /// Plans and checks a row-level input query of an analysis job.
    pub fn plan_and_check_rows(&self, sql: &str, policies: &dyn PolicyLookup) -> Result<CheckedRows, SqlError> {
        self.on_planner_thread(|| {
            let plan = self.plan_here(sql)?;
            let checked = Checker::new(policies, &self.guests).check_rows(&plan)?;
            crate::desensitize::require_applied(&self.datasets, &checked.datasets, policies)?;
            Ok(checked)
        })
    }

    fn on_planner_thread<T: Send>(&self, f: impl FnOnce() -> Result<T, SqlError> + Send) -> Result<T, SqlError> {
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name("sandbox-planner".into())
                .stack_size(self.limits.planner_stack_bytes)
                .spawn_scoped(scope, f)
                .map_err(|e| SqlError::Internal(format!("cannot start the planner thread: {e}")))?;
            handle
                .join()
                .map_err(|_| SqlError::Internal("the planner thread failed".into()))?
        })
    }
}

/// DataFusion's scalar functions and the sandbox's `clamp`.
/// The scalar functions a query may name: DataFusion's own and `clamp`,
/// `clamp_auto`.
pub fn scalar_functions() -> Vec<Arc<datafusion::logical_expr::ScalarUDF>> {
    let mut functions = SessionStateDefaults::default_scalar_functions();
    functions.push(crate::clamp::udf());
    functions.push(crate::clamp_auto::udf());
    functions
}

/// DataFusion's window functions (the checker refuses windows in queries;
/// the bounding plan uses `row_number`).
pub fn window_functions() -> Vec<Arc<datafusion::logical_expr::WindowUDF>> {
    SessionStateDefaults::default_window_functions()
}

/// DataFusion's aggregate functions, with `variance` added as a name for
/// the sample variance (as in PostgreSQL).
pub fn aggregate_functions() -> Vec<Arc<datafusion::logical_expr::AggregateUDF>> {
    SessionStateDefaults::default_aggregate_functions()
        .into_iter()
        .map(|f| {
            if f.name() == "var" {
                Arc::new(f.as_ref().clone().with_aliases(["variance"]))
            } else {
                f
            }
        })
        .collect()
}

/// The fixed functions a job session registers, by name, built once per
/// process: the plan codec of the distributed mode looks every function of
/// every plan up here (`crate::portable`, `sandbox-distributed`).
struct FixedFunctions {
    scalar: BTreeMap<String, Arc<datafusion::logical_expr::ScalarUDF>>,
    aggregate: BTreeMap<String, Arc<datafusion::logical_expr::AggregateUDF>>,
    window: BTreeMap<String, Arc<datafusion::logical_expr::WindowUDF>>,
}

fn fixed_functions() -> &'static FixedFunctions {
    static FIXED: std::sync::OnceLock<FixedFunctions> = std::sync::OnceLock::new();
    FIXED.get_or_init(|| FixedFunctions {
        scalar: scalar_functions()
            .into_iter()
            .map(|f| (f.name().to_string(), f))
            .collect(),
        aggregate: aggregate_functions()
            .into_iter()
            .map(|f| (f.name().to_string(), f))
            .collect(),
        window: window_functions()
            .into_iter()
            .map(|f| (f.name().to_string(), f))
            .collect(),
    })
}

/// The scalar function a job session registers under `name` (not an alias).
pub fn scalar_function(name: &str) -> Option<Arc<datafusion::logical_expr::ScalarUDF>> {
    fixed_functions().scalar.get(name).cloned()
}

/// The aggregate function a job session registers under `name` (not an alias).
pub fn aggregate_function(name: &str) -> Option<Arc<datafusion::logical_expr::AggregateUDF>> {
    fixed_functions().aggregate.get(name).cloned()
}

/// The window function a job session registers under `name`.
pub fn window_function(name: &str) -> Option<Arc<datafusion::logical_expr::WindowUDF>> {
    fixed_functions().window.get(name).cloned()
}
