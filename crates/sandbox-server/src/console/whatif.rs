//! The data owner's what-if view: before a policy draft is installed, a
//! few typical queries run on the owner's own data under the policy in
//! force and under the draft, and the page shows, side by side, how many
//! groups each releases and withholds (by which rule: k, dominance,
//! rounding, partition selection) and how wide the 95% intervals are.
//!
//! Both runs go through the runtime's own release path, each on a scratch
//! copy of the data directory (catalog and policies copied, the tables
//! linked, a fresh store), under a grant that covers only the owner's
//! datasets: a query that reads another owner's data is refused as any job
//! would be. Nothing is charged to a real budget and nothing is written to
//! the real store or ledger; the scratch copy is removed afterwards. The
//! results are shown to the dataset's owner only.

use crate::error::ApiError;
use crate::state::AppState;
use sandbox_governance::Grant;
use sandbox_model::{DatasetId, OpenClass, ReleasedCell, ReleasedTable};
use sandbox_runtime::{DataDir, RuntimeError, Sandbox, SqlJobOptions, SqlJobResult};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Queries run per what-if, at most.
pub(crate) const MAX_QUERIES: usize = 5;
/// The scratch grant the queries run under.
const WHAT_IF_GRANT: &str = "what-if";

/// What-if runs at a time: they run inside the request, beside the job
/// pool, so one at a time keeps them from crowding out applicants' jobs.
static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// A scratch data directory, removed when dropped.
struct Scratch {
    root: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // The table link first, so nothing below it can be reached.
        let _ = std::fs::remove_file(self.root.join("data"));
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            tracing::warn!(error = %e, root = %self.root.display(), "a what-if scratch directory was not removed");
        }
    }
}

fn io(what: &str, e: std::io::Error) -> ApiError {
    tracing::error!(error = %e, what, "what-if scratch copy failed");
    ApiError::internal("the what-if view could not prepare its scratch copy; the operator's log has the details")
}

/// Copies the `.toml` files of `from` into `to`.
fn copy_toml_files(from: &Path, to: &Path) -> Result<(), ApiError> {
    std::fs::create_dir_all(to).map_err(|e| io("create", e))?;
    for entry in std::fs::read_dir(from).map_err(|e| io("read", e))? {
        let path = entry.map_err(|e| io("read", e))?.path();
        if path.is_file()
            && path.extension().is_some_and(|x| x == "toml")
            && let Some(name) = path.file_name()
        {
            std::fs::copy(&path, to.join(name)).map_err(|e| io("copy", e))?;
        }
    }
    Ok(())
}

impl Scratch {
    /// A copy of `real` whose policy of `dataset` is `draft` (or the one in
    /// force when `None`).
    fn new(real: &DataDir, dataset: &DatasetId, draft: Option<&str>) -> Result<Scratch, ApiError> {
        let root = std::env::temp_dir().join(format!("sandbox-what-if-{}", super::random_hex(8)?));
        let scratch = Scratch { root };
        copy_toml_files(&real.catalog_dir(), &scratch.root.join("catalog"))?;
        copy_toml_files(&real.policies_dir(), &scratch.root.join("policies"))?;
        if let Some(text) = draft {
            std::fs::write(scratch.root.join("policies").join(format!("{dataset}.toml")), text)
                .map_err(|e| io("write", e))?;
        }
        let tables = std::fs::canonicalize(real.tables_dir()).map_err(|e| io("tables", e))?;
        std::os::unix::fs::symlink(tables, scratch.root.join("data")).map_err(|e| io("link", e))?;
        Ok(scratch)
    }

    /// The sandbox over the copy, with the scratch grant on `provider`'s
    /// conditionally open datasets.
    fn open(&self, provider: &str, holder: &str) -> Result<Sandbox, RuntimeError> {
        let sandbox = Sandbox::open(DataDir::open(self.root.clone())?)?;
        let policies = sandbox.policies();
        let budgets = sandbox
            .catalog()
            .iter()
            .filter(|d| d.provider.id == provider && d.open_class == OpenClass::Conditional)
            .filter_map(|d| {
                let budget = policies.get(&d.id)?.dp.map_or(0.0, |dp| dp.epsilon_budget);
                Some((d.id.clone(), budget))
            })
            .collect();
        sandbox
            .store()
            .upsert_grant(&Grant::new(WHAT_IF_GRANT, holder, budgets))?;
        Ok(sandbox)
    }
}

/// What one query released under one policy.
fn outcome(result: Result<SqlJobResult, RuntimeError>) -> Value {
    let table: ReleasedTable = match result {
        Ok(SqlJobResult::Released { table, .. }) => table,
        Ok(SqlJobResult::DryRun(_)) => return json!({"error": {"message": "a dry run releases nothing"}}),
        Err(e) => {
            let message = if e.rule().is_some() {
                e.refusal_message()
            } else {
                e.to_string()
            };
            return json!({"error": {"rule": e.rule(), "message": message}});
        }
    };
    let suppressed: u64 = table.suppressed.iter().map(|s| s.groups).sum();
    let mut rules: Vec<String> = table.suppressed.iter().map(|s| s.rule.clone()).collect();
    let (mut released, mut withheld) = (0usize, 0usize);
    let mut widths = Vec::new();
    for cell in table.rows.iter().flatten() {
        match cell {
            ReleasedCell::Withheld { rule } => {
                withheld += 1;
                // The suppression list names the rule briefly; a cell's own
                // words only when the list is empty.
                if table.suppressed.is_empty() {
                    rules.push(rule.clone());
                }
            }
            ReleasedCell::Noisy { ci95, .. } => {
                released += 1;
                widths.push((ci95[1] - ci95[0]) / 2.0);
            }
            ReleasedCell::Rounded { .. } => released += 1,
            ReleasedCell::Derived { ci95, .. } => {
                released += 1;
                if let Some(c) = ci95 {
                    widths.push((c[1] - c[0]) / 2.0);
                }
            }
            ReleasedCell::Key { .. } => {}
        }
    }
    rules.sort();
    rules.dedup();
    let mean_half_width = (!widths.is_empty()).then(|| widths.iter().sum::<f64>() / widths.len() as f64);
    json!({
        "released": released,
        "withheld": withheld,
        "suppressed": suppressed,
        "rules": rules,
        "half_width": mean_half_width.map(super::number),
        "epsilon": super::number(table.epsilon_spent),
    })
}

/// Runs `queries` on `provider`'s data under the policy of `dataset` in
/// force and under `draft`: one `{"sql", "current", "draft"}` per query.
/// A draft that does not validate is refused (`policy-invalid`).
pub(crate) async fn compare(
    state: &AppState,
    provider: &str,
    holder: &str,
    dataset: &DatasetId,
    draft: &str,
    queries: &[String],
) -> Result<Vec<Value>, ApiError> {
    let _turn = RUNNING
        .try_acquire()
        .map_err(|_| ApiError::busy("another what-if preview is running; try again in a moment"))?;
    let real = state.sandbox.data_dir();
    let current_copy = Scratch::new(real, dataset, None)?;
    let draft_copy = Scratch::new(real, dataset, Some(draft))?;
    let current = current_copy.open(provider, holder)?;
    let drafted = draft_copy.open(provider, holder).map_err(|e| match e {
        RuntimeError::Setup(message) => ApiError::refused("policy-invalid", message),
        other => other.into(),
    })?;
    let options = SqlJobOptions::default();
    let mut rows = Vec::with_capacity(queries.len());
    for sql in queries.iter().take(MAX_QUERIES) {
        let before = outcome(current.run_sql(WHAT_IF_GRANT, sql, &options).await);
        let after = outcome(drafted.run_sql(WHAT_IF_GRANT, sql, &options).await);
        rows.push(json!({"sql": sql, "current": before, "draft": after}));
    }
    Ok(rows)
}

/// Typical queries for a dataset: its count, and an average of its first
/// numeric field by its first time or district field, when it has them.
pub(crate) fn typical_queries(dataset: &sandbox_model::Dataset) -> Vec<String> {
    let id = &dataset.id;
    let mut queries = vec![format!("SELECT COUNT(*) FROM {id} t")];
    let key = dataset.fields.iter().find(|f| {
        ["year", "month", "district", "industry"]
            .iter()
            .any(|k| f.name.contains(k))
    });
    let measure = dataset
        .fields
        .iter()
        .find(|f| f.data_type.is_numeric() && key.is_none_or(|k| k.name != f.name) && f.name != "year");
    if let (Some(k), Some(m)) = (key, measure) {
        queries.push(format!(
            "SELECT t.{k}, AVG(t.{m}) FROM {id} t GROUP BY t.{k}",
            k = k.name,
            m = m.name
        ));
        queries.push(format!("SELECT t.{k}, COUNT(*) FROM {id} t GROUP BY t.{k}", k = k.name));
    }
    queries
}
