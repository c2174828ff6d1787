//! The store: grants, budgets, jobs, charges and usage records, and the
//! audit ledger entry of every change, written in the same transaction. The
//! rules are written once against [`crate::db`] and run on SQLite (default)
//! or PostgreSQL.

use crate::GovernanceError;
use crate::amount::{Delta, Epsilon};
use crate::audit::{self, AuditReport};
use crate::db::{Backend, PostgresBackend, SqliteBackend, Tx, now};
use sandbox_ledger::Entry;
use sandbox_model::{DatasetId, JobOutcome, UsageRecord};
use serde::Serialize;
use serde_json::json;
use std::path::Path;

/// What an applicant may use: datasets, each with its ε budget, and
/// optionally a δ budget (without one, a line's δ budget is its dataset's
/// policy's `delta_budget`, as registered; with neither, no δ may be
/// charged).
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub id: String,
    pub holder: String,
    pub budgets: Vec<(DatasetId, f64)>,
    pub delta_budgets: Vec<(DatasetId, f64)>,
}

impl Grant {
    pub fn new(id: &str, holder: &str, budgets: Vec<(DatasetId, f64)>) -> Self {
        Grant {
            id: id.to_string(),
            holder: holder.to_string(),
            budgets,
            delta_budgets: Vec::new(),
        }
    }

    /// Sets the δ budget of one dataset's line (the policy's `delta_budget`
    /// still caps it).
    pub fn with_delta_budget(mut self, dataset: DatasetId, delta: f64) -> Self {
        self.delta_budgets.push((dataset, delta));
        self
    }
}

/// The ε and δ a job reserves, per dataset, with the job's record. The
/// amounts are charged rounded up to whole units ([`Epsilon`], [`Delta`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JobCharge {
    pub job_id: String,
    pub grant_id: String,
    pub kind: String,
    pub submission_digest: String,
    /// What was submitted, for the ledger: the SQL text (with the digests
    /// of any WebAssembly functions it may call), or the analysis's input
    /// query and module digest.
    pub submission_text: Option<String>,
    pub charges: Vec<(DatasetId, f64, f64)>,
}

impl JobCharge {
    pub fn new(job_id: &str, grant_id: &str, kind: &str, digest: &str, charges: Vec<(DatasetId, f64, f64)>) -> Self {
        JobCharge {
            job_id: job_id.to_string(),
            grant_id: grant_id.to_string(),
            kind: kind.to_string(),
            submission_digest: digest.to_string(),
            submission_text: None,
            charges,
        }
    }

    /// Records the submitted text in the ledger with the charge.
    pub fn with_text(mut self, text: &str) -> Self {
        self.submission_text = Some(text.to_string());
        self
    }
}

/// A grant's budget for one dataset. The totals are the effective ones:
/// the smaller of what the grant (the approval) set and what the
/// dataset's policy allows now. The `f64` fields are the nearest doubles
/// of the exact amounts ([`BudgetLine::exact`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetLine {
    pub dataset: String,
    pub epsilon_total: f64,
    pub epsilon_spent: f64,
    pub delta_total: f64,
    pub delta_spent: f64,
    #[serde(skip)]
    exact: ExactBudget,
}

/// A budget line in fixed-point units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExactBudget {
    pub epsilon_total: Epsilon,
    pub epsilon_spent: Epsilon,
    pub delta_total: Delta,
    pub delta_spent: Delta,
}

impl BudgetLine {
    fn new(dataset: String, exact: ExactBudget) -> Self {
        BudgetLine {
            dataset,
            epsilon_total: exact.epsilon_total.as_f64(),
            epsilon_spent: exact.epsilon_spent.as_f64(),
            delta_total: exact.delta_total.as_f64(),
            delta_spent: exact.delta_spent.as_f64(),
            exact,
        }
    }

    /// The line in exact units.
    pub fn exact(&self) -> ExactBudget {
        self.exact
    }

    pub fn epsilon_left(&self) -> f64 {
        self.exact
            .epsilon_total
            .saturating_sub(self.exact.epsilon_spent)
            .as_f64()
    }

    pub fn delta_left(&self) -> f64 {
        self.exact.delta_total.saturating_sub(self.exact.delta_spent).as_f64()
    }
}

/// Budgets in fixed-point units: ε in 1e-9 and δ in 1e-15 (see
/// [`crate::amount`]). `delta_total` NULL: the policy's δ budget.
/// `policy_budgets`: each dataset's policy's `epsilon_budget` and
/// `delta_budget` as last registered; they cap every grant's line.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS grants (
    id TEXT PRIMARY KEY,
    holder TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS budgets (
    grant_id TEXT NOT NULL REFERENCES grants(id),
    dataset TEXT NOT NULL,
    epsilon_total BIGINT NOT NULL,
    epsilon_spent BIGINT NOT NULL DEFAULT 0,
    delta_total BIGINT,
    delta_spent BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (grant_id, dataset)
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES grants(id),
    kind TEXT NOT NULL,
    submission_digest TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT,
    usage TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS charges (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    dataset TEXT NOT NULL,
    epsilon BIGINT NOT NULL,
    delta BIGINT NOT NULL,
    PRIMARY KEY (job_id, dataset)
);
CREATE TABLE IF NOT EXISTS policy_budgets (
    dataset TEXT PRIMARY KEY,
    epsilon_budget BIGINT NOT NULL,
    delta_budget BIGINT NOT NULL
);
";

/// The store.
pub struct Store {
    backend: Box<dyn Backend>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.backend.name())
    }
}

impl Store {
    /// The embedded SQLite database at `path` (created if missing).
    pub fn open(path: &Path) -> Result<Self, GovernanceError> {
        Self::with_backend(Box::new(SqliteBackend::open(path)?))
    }

    pub fn open_in_memory() -> Result<Self, GovernanceError> {
        Self::with_backend(Box::new(SqliteBackend::open_in_memory()?))
    }

    /// A PostgreSQL database (`postgresql://user@host:port/db`), in `schema`
    /// if given.
    pub fn open_postgres(url: &str, schema: Option<&str>) -> Result<Self, GovernanceError> {
        Self::with_backend(Box::new(PostgresBackend::connect(url, schema)?))
    }

    /// A store on any backend; creates the tables if missing.
    pub fn with_backend(backend: Box<dyn Backend>) -> Result<Self, GovernanceError> {
        backend.migrate(&format!(
            "{SCHEMA} {} {} {} {} {} {} {} {}",
            audit::SCHEMA,
            crate::complaints::SCHEMA,
            crate::queue::SCHEMA,
            crate::accounts::SCHEMA,
            crate::applications::SCHEMA,
            crate::agreements::SCHEMA,
            crate::suspension::SCHEMA,
            crate::registry::SCHEMA
        ))?;
        let store = Store { backend };
        crate::migrate::upgrade(&store)?;
        Ok(store)
    }

    /// `sqlite` or `postgresql`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Runs `f` in a transaction that excludes every other writer; commits
    /// only if it succeeds.
    pub(crate) fn write<T: Send>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, GovernanceError> + Send,
    ) -> Result<T, GovernanceError> {
        let mut f = Some(f);
        let mut out = None;
        self.backend.write(&mut |tx| {
            let f = f
                .take()
                .ok_or_else(|| GovernanceError::Storage("a transaction body ran twice".into()))?;
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or_else(|| GovernanceError::Storage("a transaction ended without a result".into()))
    }

    /// Runs `f` in a read-only snapshot.
    pub(crate) fn read<T: Send>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, GovernanceError> + Send,
    ) -> Result<T, GovernanceError> {
        let mut f = Some(f);
        let mut out = None;
        self.backend.read(&mut |tx| {
            let f = f
                .take()
                .ok_or_else(|| GovernanceError::Storage("a transaction body ran twice".into()))?;
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or_else(|| GovernanceError::Storage("a transaction ended without a result".into()))
    }

    #[cfg(test)]
    pub(crate) fn raw(&self, sql: &str) -> Result<(), GovernanceError> {
        self.backend.raw(sql)
    }

    /// Creates a grant, or adds datasets missing from an existing one.
    /// Existing budgets and spending are never changed. What was added is
    /// recorded in the ledger (nothing when nothing changed).
    pub fn upsert_grant(&self, grant: &Grant) -> Result<(), GovernanceError> {
        self.write(|tx| {
            let created = tx.execute(
                "INSERT INTO grants (id, holder) VALUES (?1, ?2) ON CONFLICT(id) DO NOTHING",
                &[(&grant.id).into(), (&grant.holder).into()],
            )? > 0;
            let mut added = Vec::new();
            for (dataset, total) in &grant.budgets {
                let epsilon = Epsilon::total(*total)?;
                let delta = grant
                    .delta_budgets
                    .iter()
                    .find(|(d, _)| d == dataset)
                    .map(|(_, x)| Delta::total(*x))
                    .transpose()?;
                let inserted = match delta {
                    Some(delta) => tx.execute(
                        "INSERT INTO budgets (grant_id, dataset, epsilon_total, delta_total) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(grant_id, dataset) DO NOTHING",
                        &[
                            (&grant.id).into(),
                            dataset.as_str().into(),
                            epsilon.units().into(),
                            delta.units().into(),
                        ],
                    )?,
                    None => tx.execute(
                        "INSERT INTO budgets (grant_id, dataset, epsilon_total) VALUES (?1, ?2, ?3)
                         ON CONFLICT(grant_id, dataset) DO NOTHING",
                        &[(&grant.id).into(), dataset.as_str().into(), epsilon.units().into()],
                    )?,
                };
                if inserted > 0 {
                    added.push(json!({"dataset": dataset.as_str(), "epsilon": epsilon, "delta": delta}));
                }
            }
            if created || !added.is_empty() {
                let kind = if created { "grant_created" } else { "grant_extended" };
                audit::append(
                    tx,
                    &grant.holder,
                    kind,
                    json!({"grant": grant.id, "holder": grant.holder, "budgets": added}),
                )?;
            }
            Ok(())
        })
    }

    /// Datasets a grant covers.
    pub fn grant_datasets(&self, grant_id: &str) -> Result<Vec<String>, GovernanceError> {
        self.read(|tx| {
            if tx
                .query_opt("SELECT id FROM grants WHERE id = ?1", &[grant_id.into()])?
                .is_none()
            {
                return Err(GovernanceError::NoGrant(grant_id.to_string()));
            }
            tx.query(
                "SELECT dataset FROM budgets WHERE grant_id = ?1 ORDER BY dataset",
                &[grant_id.into()],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect()
        })
    }

    /// Records the job and reserves its charges atomically, or refuses it
    /// if the grant's agreement does not allow it or any dataset's budget
    /// would be overspent.
    pub fn reserve(&self, job: &JobCharge) -> Result<(), GovernanceError> {
        self.write(|tx| {
            let at = now();
            if resume_charged(tx, job)? {
                return Ok(());
            }
            crate::agreements::enforce_terms(tx, &job.grant_id, &at)?;
            crate::suspension::ensure_not_suspended(tx, job.charges.iter().map(|(d, _, _)| d.as_str()))?;
            let mut amounts = Vec::with_capacity(job.charges.len());
            for (dataset, eps, delta) in &job.charges {
                let (eps, delta) = (Epsilon::charge(*eps)?, Delta::charge(*delta)?);
                let Some(line) = budget_line(tx, &job.grant_id, dataset.as_str())? else {
                    return Err(GovernanceError::NotCovered {
                        grant: job.grant_id.clone(),
                        dataset: dataset.to_string(),
                    });
                };
                let over_eps = line
                    .epsilon_spent
                    .checked_add(eps)
                    .is_none_or(|after| after > line.epsilon_total);
                if !eps.is_zero() && over_eps {
                    return Err(GovernanceError::BudgetExhausted {
                        grant: job.grant_id.clone(),
                        dataset: dataset.to_string(),
                        spent: line.epsilon_spent,
                        total: line.epsilon_total,
                        requested: eps,
                    });
                }
                let over_delta = line
                    .delta_spent
                    .checked_add(delta)
                    .is_none_or(|after| after > line.delta_total);
                if !delta.is_zero() && over_delta {
                    return Err(GovernanceError::DeltaBudgetExhausted {
                        grant: job.grant_id.clone(),
                        dataset: dataset.to_string(),
                        spent: line.delta_spent,
                        total: line.delta_total,
                        requested: delta,
                    });
                }
                amounts.push((dataset, eps, delta));
            }
            let inserted = tx.execute(
                "INSERT INTO jobs (id, grant_id, kind, submission_digest, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5) ON CONFLICT(id) DO NOTHING",
                &[
                    (&job.job_id).into(),
                    (&job.grant_id).into(),
                    (&job.kind).into(),
                    (&job.submission_digest).into(),
                    at.into(),
                ],
            )?;
            if inserted == 0 {
                return Err(GovernanceError::DuplicateJob(job.job_id.clone()));
            }
            for (dataset, eps, delta) in &amounts {
                tx.execute(
                    "INSERT INTO charges (job_id, dataset, epsilon, delta) VALUES (?1, ?2, ?3, ?4)",
                    &[
                        (&job.job_id).into(),
                        dataset.as_str().into(),
                        eps.units().into(),
                        delta.units().into(),
                    ],
                )?;
                tx.execute(
                    "UPDATE budgets SET epsilon_spent = epsilon_spent + ?3, delta_spent = delta_spent + ?4
                     WHERE grant_id = ?1 AND dataset = ?2",
                    &[
                        (&job.grant_id).into(),
                        dataset.as_str().into(),
                        eps.units().into(),
                        delta.units().into(),
                    ],
                )?;
            }
            let holder = holder(tx, &job.grant_id)?;
            let charges: Vec<_> = amounts
                .iter()
                .map(|(d, e, dl)| json!({"dataset": d.as_str(), "epsilon": e, "delta": dl}))
                .collect();
            audit::append(
                tx,
                &holder,
                "job_charged",
                json!({
                    "job": job.job_id,
                    "grant": job.grant_id,
                    "kind": job.kind,
                    "submission_digest": job.submission_digest,
                    "submission": job.submission_text,
                    "charges": charges,
                }),
            )?;
            Ok(())
        })
    }

    /// Records a job that was refused before it could be charged.
    pub fn record_refusal(
        &self,
        job_id: &str,
        grant_id: &str,
        kind: &str,
        digest: &str,
        outcome: &JobOutcome,
    ) -> Result<(), GovernanceError> {
        self.record_refusal_with_text(job_id, grant_id, kind, digest, None, outcome)
    }

    /// [`record_refusal`](Self::record_refusal) with the submitted text
    /// (see [`JobCharge::submission_text`]) in the ledger.
    pub fn record_refusal_with_text(
        &self,
        job_id: &str,
        grant_id: &str,
        kind: &str,
        digest: &str,
        text: Option<&str>,
        outcome: &JobOutcome,
    ) -> Result<(), GovernanceError> {
        let outcome_text = serde_json::to_string(outcome)?;
        self.write(|tx| {
            let Some(row) = tx.query_opt("SELECT holder FROM grants WHERE id = ?1", &[grant_id.into()])? else {
                return Ok(());
            };
            let holder = row.text(0)?;
            let at = now();
            let inserted = tx.execute(
                "INSERT INTO jobs (id, grant_id, kind, submission_digest, status, outcome, created_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, 'refused', ?5, ?6, ?6) ON CONFLICT(id) DO NOTHING",
                &[
                    job_id.into(),
                    grant_id.into(),
                    kind.into(),
                    digest.into(),
                    outcome_text.into(),
                    at.into(),
                ],
            )?;
            if inserted > 0 {
                audit::append(
                    tx,
                    &holder,
                    "job_refused",
                    json!({"job": job_id, "grant": grant_id, "kind": kind, "submission_digest": digest, "submission": text, "outcome": outcome}),
                )?;
            }
            Ok(())
        })
    }

    /// Records how a charged job ended, with its usage record. A release is
    /// checked against suspensions and revocations in the same transaction:
    /// if a dataset the job read was suspended, or its agreement revoked,
    /// meanwhile, the job is recorded as cancelled and the refusal returned,
    /// and the caller must not release anything.
    pub fn finish(&self, job_id: &str, outcome: &JobOutcome, usage: &UsageRecord) -> Result<(), GovernanceError> {
        self.finish_with_result(job_id, outcome, usage, None)
    }

    /// [`finish`](Self::finish), storing a released result (JSON) in the
    /// same transaction, so a result is kept exactly when its release is
    /// recorded.
    pub fn finish_with_result(
        &self,
        job_id: &str,
        outcome: &JobOutcome,
        usage: &UsageRecord,
        result: Option<&str>,
    ) -> Result<(), GovernanceError> {
        let refused = self.write(|tx| {
            let mut outcome = outcome.clone();
            let mut refused = None;
            if outcome == JobOutcome::Released {
                let check = crate::suspension::ensure_not_suspended(tx, usage.datasets.iter().map(|d| d.as_str()))
                    .and_then(|()| crate::agreements::ensure_not_revoked(tx, &usage.grant_id));
                if let Err(e) = check {
                    outcome = JobOutcome::Cancelled;
                    refused = Some(e);
                }
            }
            let status = match outcome {
                JobOutcome::Released => "released",
                JobOutcome::DryRun => "dry_run",
                JobOutcome::Refused { .. } => "refused",
                JobOutcome::Failed { .. } => "failed",
                JobOutcome::Cancelled => "cancelled",
            };
            let updated = tx.execute(
                "UPDATE jobs SET status = ?2, outcome = ?3, usage = ?4, finished_at = ?5
                 WHERE id = ?1 AND status = 'running'",
                &[
                    job_id.into(),
                    status.into(),
                    serde_json::to_string(&outcome)?.into(),
                    serde_json::to_string(usage)?.into(),
                    now().into(),
                ],
            )?;
            if updated == 0 {
                return Err(GovernanceError::NotRunning(job_id.to_string()));
            }
            let holder = holder(tx, &usage.grant_id)?;
            let mut payload = json!({"job": job_id, "status": status, "outcome": outcome, "usage": usage});
            if let Some(e) = &refused {
                payload["cancelled_because"] = json!(e.to_string());
            }
            audit::append(tx, &holder, "job_finished", payload)?;
            if let (Some(result), None, JobOutcome::Released) = (result, &refused, &outcome) {
                tx.execute(
                    "INSERT INTO job_results (job_id, result) VALUES (?1, ?2)",
                    &[job_id.into(), result.into()],
                )?;
            }
            Ok(refused)
        })?;
        match refused {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every ledger entry, oldest first (the operator's export).
    pub fn audit_entries(&self) -> Result<Vec<Entry>, GovernanceError> {
        self.read(audit::entries)
    }

    /// Checks the ledger: every entry follows its predecessor and the last
    /// one is the recorded head.
    pub fn verify_audit(&self) -> Result<AuditReport, GovernanceError> {
        self.read(audit::verify)
    }

    /// A grant's budget per dataset: the effective totals (the smaller of
    /// the grant's and the dataset's policy's) and what was spent.
    pub fn budget(&self, grant_id: &str) -> Result<Vec<BudgetLine>, GovernanceError> {
        self.read(|tx| {
            tx.query(
                &format!("{LINE_SELECT} WHERE b.grant_id = ?1 ORDER BY b.dataset"),
                &[grant_id.into()],
            )?
            .iter()
            .map(|r| Ok(BudgetLine::new(r.text(0)?, exact_line(r)?)))
            .collect()
        })
    }

    /// Sum of all ε charges per dataset for a grant (a consistency check:
    /// it must equal the budget's spent column, exactly).
    pub fn charged(&self, grant_id: &str) -> Result<Vec<(String, f64)>, GovernanceError> {
        Ok(self
            .charged_exact(grant_id)?
            .into_iter()
            .map(|(d, e, _)| (d, e.as_f64()))
            .collect())
    }

    /// Sum of all ε and δ charges per dataset for a grant, in exact units.
    pub fn charged_exact(&self, grant_id: &str) -> Result<Vec<(String, Epsilon, Delta)>, GovernanceError> {
        self.read(|tx| {
            tx.query(
                "SELECT c.dataset, CAST(SUM(c.epsilon) AS BIGINT), CAST(SUM(c.delta) AS BIGINT)
                 FROM charges c JOIN jobs j ON j.id = c.job_id
                 WHERE j.grant_id = ?1 GROUP BY c.dataset ORDER BY c.dataset",
                &[grant_id.into()],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, Epsilon::from_units(r.int(1)?), Delta::from_units(r.int(2)?))))
            .collect()
        })
    }

    /// Job counts by status for a grant.
    pub fn job_counts(&self, grant_id: &str) -> Result<Vec<(String, u64)>, GovernanceError> {
        self.read(|tx| {
            tx.query(
                "SELECT status, COUNT(*) FROM jobs WHERE grant_id = ?1 GROUP BY status ORDER BY status",
                &[grant_id.into()],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.int(1)? as u64)))
            .collect()
        })
    }
}

/// A budget line with the dataset's policy caps beside it (see
/// [`exact_line`]).
const LINE_SELECT: &str = "SELECT b.dataset, b.epsilon_total, b.epsilon_spent, b.delta_total, b.delta_spent,
        p.epsilon_budget, p.delta_budget
 FROM budgets b LEFT JOIN policy_budgets p ON p.dataset = b.dataset";

/// The effective line of a [`LINE_SELECT`] row: ε total = min(granted,
/// policy's), δ total = min(granted, policy's), either alone when the
/// other is missing, 0 when both are (no δ without a δ budget).
fn exact_line(r: &crate::db::Row) -> Result<ExactBudget, GovernanceError> {
    let granted_eps = Epsilon::from_units(r.int(1)?);
    let policy_eps = r.opt_int(5)?.map(Epsilon::from_units);
    let granted_delta = r.opt_int(3)?.map(Delta::from_units);
    let policy_delta = r.opt_int(6)?.map(Delta::from_units);
    let delta_total = match (granted_delta, policy_delta) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => Delta::ZERO,
    };
    Ok(ExactBudget {
        epsilon_total: policy_eps.map_or(granted_eps, |p| p.min(granted_eps)),
        epsilon_spent: Epsilon::from_units(r.int(2)?),
        delta_total,
        delta_spent: Delta::from_units(r.int(4)?),
    })
}

fn budget_line(tx: &mut dyn Tx, grant: &str, dataset: &str) -> Result<Option<ExactBudget>, GovernanceError> {
    tx.query_opt(
        &format!("{LINE_SELECT} WHERE b.grant_id = ?1 AND b.dataset = ?2"),
        &[grant.into(), dataset.into()],
    )?
    .map(|r| exact_line(&r))
    .transpose()
}

/// A job charged before a restart interrupted it runs again under its
/// first charge: the same id, grant and submission, still `running` (no
/// result was released, so the earlier computation was never seen). The
/// ledger records the resumption; nothing is charged twice.
fn resume_charged(tx: &mut dyn Tx, job: &JobCharge) -> Result<bool, GovernanceError> {
    let row = tx.query_opt(
        "SELECT grant_id, submission_digest, status FROM jobs WHERE id = ?1",
        &[(&job.job_id).into()],
    )?;
    let Some(row) = row else { return Ok(false) };
    let (grant, digest, status) = (row.text(0)?, row.text(1)?, row.text(2)?);
    if grant != job.grant_id || digest != job.submission_digest || status != "running" {
        return Err(GovernanceError::DuplicateJob(job.job_id.clone()));
    }
    let holder = holder(tx, &job.grant_id)?;
    audit::append(
        tx,
        &holder,
        "job_resumed",
        json!({"job": job.job_id, "grant": job.grant_id, "submission_digest": job.submission_digest}),
    )?;
    Ok(true)
}

/// The account a grant's events are attributed to.
fn holder(tx: &mut dyn Tx, grant_id: &str) -> Result<String, GovernanceError> {
    tx.query_opt("SELECT holder FROM grants WHERE id = ?1", &[grant_id.into()])?
        .ok_or_else(|| GovernanceError::NoGrant(grant_id.to_string()))?
        .text(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_dbs;
    use std::sync::Arc;

    fn ds(s: &str) -> DatasetId {
        s.parse().expect("dataset id")
    }

    #[test]
    fn concurrent_reservations_never_overspend() {
        for db in test_dbs() {
            let store = Arc::new(db.open());
            store
                .upsert_grant(
                    &Grant::new("g", "h", vec![(ds("gov.a"), 5.0), (ds("gov.b"), 100.0)])
                        .with_delta_budget(ds("gov.b"), 1e-6),
                )
                .expect("grant");
            let threads: Vec<_> = (0..16)
                .map(|t| {
                    let store = store.clone();
                    std::thread::spawn(move || {
                        let mut ok = 0;
                        for i in 0..20 {
                            let job = JobCharge::new(
                                &format!("j{t}-{i}"),
                                "g",
                                "sql",
                                "d",
                                vec![(ds("gov.a"), 0.1, 0.0), (ds("gov.b"), 0.1, 1e-9)],
                            );
                            if store.reserve(&job).is_ok() {
                                ok += 1;
                            }
                        }
                        ok
                    })
                })
                .collect();
            let ok: i32 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
            assert_eq!(ok, 50, "{}: exactly 5.0 / 0.1 jobs fit", db.name());
            let budget = store.budget("g").expect("budget");
            assert_eq!(budget[0].exact().epsilon_spent, Epsilon::from_units(5_000_000_000));
            assert_eq!(budget[0].epsilon_spent, 5.0, "exactly, not about");
            let charged = store.charged_exact("g").expect("charged");
            assert_eq!(charged[0].1, budget[0].exact().epsilon_spent);
            assert_eq!(budget[1].epsilon_spent, 5.0, "a refused job charges nothing anywhere");
            assert_eq!(charged[1].2, Delta::from_units(50 * 1_000_000));
            assert_eq!(budget[1].exact().delta_spent, charged[1].2);
            // One ledger entry per admitted job, in one unbroken chain.
            let entries = store.audit_entries().expect("entries");
            assert_eq!(entries.iter().filter(|e| e.kind == "job_charged").count(), 50);
            assert!(matches!(
                store.verify_audit().expect("verify"),
                crate::AuditReport::Intact { entries: 51, .. }
            ));
        }
    }

    #[test]
    fn unknown_grant_and_uncovered_dataset() {
        for db in test_dbs() {
            let store = db.open();
            assert!(matches!(store.grant_datasets("nope"), Err(GovernanceError::NoGrant(_))));
            store
                .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 1.0)]))
                .expect("grant");
            let job = JobCharge::new("j", "g", "sql", "d", vec![(ds("gov.z"), 0.1, 0.0)]);
            assert!(matches!(store.reserve(&job), Err(GovernanceError::NotCovered { .. })));
            let job = JobCharge::new("j", "g", "sql", "d", vec![(ds("gov.a"), 0.1, 0.0)]);
            store.reserve(&job).expect("reserve");
            // The same job again while it is recorded as running (a restart
            // interrupted it) resumes under its first charge.
            store.reserve(&job).expect("resume");
            assert_eq!(store.charged("g").expect("charged"), vec![("gov.a".to_string(), 0.1)]);
            assert_eq!(store.budget("g").expect("budget")[0].epsilon_spent, 0.1);
            let other = JobCharge::new("j", "g", "sql", "other digest", vec![(ds("gov.a"), 0.1, 0.0)]);
            assert!(matches!(store.reserve(&other), Err(GovernanceError::DuplicateJob(_))));
            let usage = UsageRecord {
                job_id: "j".into(),
                grant_id: "g".into(),
                ..Default::default()
            };
            store.finish("j", &JobOutcome::Released, &usage).expect("finish");
            assert!(
                matches!(
                    store.finish("j", &JobOutcome::Released, &usage),
                    Err(GovernanceError::NotRunning(_))
                ),
                "a job finishes once"
            );
            assert!(
                matches!(store.reserve(&job), Err(GovernanceError::DuplicateJob(_))),
                "a finished job never runs again"
            );
            let kinds: Vec<String> = store
                .audit_entries()
                .expect("entries")
                .into_iter()
                .map(|e| e.kind)
                .collect();
            assert_eq!(kinds.iter().filter(|k| *k == "job_resumed").count(), 1);
            assert!(store.verify_audit().expect("verify").is_intact());
        }
    }

    #[test]
    fn released_results_are_stored_with_their_release_only() {
        for db in test_dbs() {
            let store = db.open();
            store
                .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 1.0)]))
                .expect("grant");
            let usage = |id: &str| UsageRecord {
                job_id: id.into(),
                grant_id: "g".into(),
                datasets: vec![ds("gov.a")],
                ..Default::default()
            };
            for id in ["released", "suspended", "failed"] {
                store
                    .reserve(&JobCharge::new(id, "g", "sql", "d", vec![(ds("gov.a"), 0.1, 0.0)]))
                    .expect("reserve");
            }
            store
                .finish_with_result(
                    "released",
                    &JobOutcome::Released,
                    &usage("released"),
                    Some("{\"rows\":[]}"),
                )
                .expect("finish");
            assert_eq!(
                store.job_result("released").expect("read").as_deref(),
                Some("{\"rows\":[]}")
            );
            store
                .finish_with_result(
                    "failed",
                    &JobOutcome::Failed { message: "x".into() },
                    &usage("failed"),
                    Some("{}"),
                )
                .expect("finish");
            assert_eq!(
                store.job_result("failed").expect("read"),
                None,
                "only releases keep results"
            );
            store.suspend_dataset("gov.a", "ops", "complaint").expect("suspend");
            assert!(
                store
                    .finish_with_result("suspended", &JobOutcome::Released, &usage("suspended"), Some("{}"))
                    .is_err()
            );
            assert_eq!(
                store.job_result("suspended").expect("read"),
                None,
                "a cancelled release keeps nothing"
            );
            assert_eq!(
                store.recorded_job("suspended").expect("read").expect("row").status,
                "cancelled"
            );
        }
    }

    #[test]
    fn charges_survive_reopening() {
        for db in test_dbs() {
            {
                let store = db.open();
                store
                    .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 1.0)]))
                    .expect("grant");
                store
                    .reserve(&JobCharge::new("j", "g", "sql", "d", vec![(ds("gov.a"), 0.7, 0.0)]))
                    .expect("reserve");
            }
            let store = db.open();
            store
                .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 1.0)]))
                .expect("grant again");
            assert!((store.budget("g").expect("budget")[0].epsilon_spent - 0.7).abs() < 1e-12);
            assert!(
                store
                    .reserve(&JobCharge::new("k", "g", "sql", "d", vec![(ds("gov.a"), 0.7, 0.0)]))
                    .is_err()
            );
        }
    }

    /// Racing jobs that each charge δ: exactly as many as the δ budget
    /// holds are admitted, whichever of ε or δ runs out first.
    #[test]
    fn concurrent_reservations_never_overspend_delta() {
        for db in test_dbs() {
            let store = Arc::new(db.open());
            store
                .upsert_grant(
                    &Grant::new("g", "h", vec![(ds("gov.a"), 1000.0), (ds("gov.b"), 0.37)])
                        .with_delta_budget(ds("gov.a"), 3.3e-5),
                )
                .expect("grant");
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let store = store.clone();
                    std::thread::spawn(move || {
                        let mut outcomes = Vec::new();
                        for i in 0..20 {
                            // δ jobs on gov.a; ε-only jobs on gov.b.
                            let charges = if i % 2 == 0 {
                                vec![(ds("gov.a"), 0.01, 1e-6)]
                            } else {
                                vec![(ds("gov.b"), 0.01, 0.0)]
                            };
                            let job = JobCharge::new(&format!("j{t}-{i}"), "g", "sql", "d", charges);
                            outcomes.push((i % 2 == 0, store.reserve(&job)));
                        }
                        outcomes
                    })
                })
                .collect();
            let outcomes: Vec<_> = threads.into_iter().flat_map(|t| t.join().expect("thread")).collect();
            let admitted = |delta: bool| outcomes.iter().filter(|(d, r)| *d == delta && r.is_ok()).count();
            assert_eq!(admitted(true), 33, "{}: 3.3e-5 / 1e-6 δ jobs", db.name());
            assert_eq!(admitted(false), 37, "{}: 0.37 / 0.01 ε jobs", db.name());
            assert!(outcomes.iter().all(|(delta, r)| match r {
                Ok(()) => true,
                Err(GovernanceError::DeltaBudgetExhausted { .. }) => *delta,
                Err(GovernanceError::BudgetExhausted { .. }) => !*delta,
                Err(_) => false,
            }));
            let budget = store.budget("g").expect("budget");
            assert_eq!(budget[0].exact().delta_spent, Delta::from_units(33_000_000_000));
            assert_eq!((budget[0].delta_total, budget[0].delta_left()), (3.3e-5, 0.0));
            assert_eq!(budget[1].exact().epsilon_spent, budget[1].exact().epsilon_total);
            let charged = store.charged_exact("g").expect("charged");
            assert_eq!(charged[0].2, budget[0].exact().delta_spent);
            assert_eq!(charged[1].1, budget[1].exact().epsilon_spent);
        }
    }

    #[test]
    fn budgets_add_up_exactly() {
        for db in test_dbs() {
            let store = db.open();
            store
                .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 0.001), (ds("gov.b"), 1.0)]))
                .expect("grant");
            for i in 0..1000 {
                let job = JobCharge::new(&format!("j{i}"), "g", "sql", "d", vec![(ds("gov.a"), 1e-6, 0.0)]);
                store.reserve(&job).expect("fits");
            }
            let e = store
                .reserve(&JobCharge::new("over", "g", "sql", "d", vec![(ds("gov.a"), 1e-6, 0.0)]))
                .expect_err("the 1001st does not fit");
            assert!(matches!(e, GovernanceError::BudgetExhausted { .. }), "{e}");
            assert!(e.to_string().contains("ε = 0.001 of 0.001 spent"), "{e}");
            let line = &store.budget("g").expect("budget")[0];
            assert_eq!(line.epsilon_spent, 0.001, "1000 × 1e-6, exactly");
            assert_eq!(line.exact().epsilon_spent, Epsilon::from_units(1_000_000));
            // Three charges of 1e-17 are three units, not nothing.
            for i in 0..3 {
                let job = JobCharge::new(&format!("tiny{i}"), "g", "sql", "d", vec![(ds("gov.b"), 1e-17, 0.0)]);
                store.reserve(&job).expect("reserve");
            }
            let line = &store.budget("g").expect("budget")[1];
            assert_eq!(line.exact().epsilon_spent, Epsilon::from_units(3));
            assert!(line.epsilon_spent > 0.0);
            // A negative or NaN charge is an error, not a refund.
            let bad = JobCharge::new("neg", "g", "sql", "d", vec![(ds("gov.b"), -1.0, 0.0)]);
            assert!(matches!(store.reserve(&bad), Err(GovernanceError::Invalid(_))));
            let bad = JobCharge::new("nan", "g", "sql", "d", vec![(ds("gov.b"), f64::NAN, 0.0)]);
            assert!(matches!(store.reserve(&bad), Err(GovernanceError::Invalid(_))));
        }
    }

    #[test]
    fn delta_is_budgeted_and_refused_when_exhausted() {
        for db in test_dbs() {
            let store = db.open();
            store
                .upsert_grant(
                    &Grant::new("g", "h", vec![(ds("gov.a"), 10.0), (ds("gov.b"), 10.0)])
                        .with_delta_budget(ds("gov.a"), 2e-6),
                )
                .expect("grant");
            let job = |id: &str, dataset: &str, delta: f64| {
                JobCharge::new(id, "g", "sql", "d", vec![(ds(dataset), 0.5, delta)])
            };
            store.reserve(&job("j1", "gov.a", 1e-6)).expect("first");
            store.reserve(&job("j2", "gov.a", 1e-6)).expect("second");
            let e = store.reserve(&job("j3", "gov.a", 1e-6)).expect_err("δ spent");
            assert!(matches!(e, GovernanceError::DeltaBudgetExhausted { .. }), "{e}");
            assert!(e.to_string().contains("δ = 0.000002 of 0.000002 spent"), "{e}");
            store.reserve(&job("j4", "gov.a", 0.0)).expect("no δ, still runs");
            // No δ budget at all (no grant δ, no policy): no δ may be charged.
            let e = store.reserve(&job("j5", "gov.b", 1e-9)).expect_err("no δ budget");
            assert!(matches!(e, GovernanceError::DeltaBudgetExhausted { .. }), "{e}");
            let line = &store.budget("g").expect("budget")[0];
            assert_eq!(
                (line.delta_total, line.delta_spent, line.delta_left()),
                (2e-6, 2e-6, 0.0)
            );
            assert_eq!(line.epsilon_spent, 1.5, "refused jobs charge nothing");
        }
    }

    #[test]
    fn the_policy_caps_every_budget_line() {
        for db in test_dbs() {
            let store = db.open();
            let policy = |eps: f64, delta: f64| crate::Registration {
                dataset: "gov.a".into(),
                provider: "p".into(),
                open_class: "conditional".into(),
                catalog_digest: "c".into(),
                policy_digest: format!("p{eps}"),
                epsilon_budget: Some(eps),
                delta_budget: Some(delta),
            };
            store
                .register_datasets(&[policy(10.0, 1e-4)], "platform")
                .expect("register");
            // A grant written above the policy (as the old rule allowed)
            // spends no more than the policy's budget.
            store
                .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 16.0)]))
                .expect("grant");
            let line = &store.budget("g").expect("budget")[0];
            assert_eq!((line.epsilon_total, line.delta_total), (10.0, 1e-4));
            for i in 0..10 {
                let job = JobCharge::new(&format!("j{i}"), "g", "sql", "d", vec![(ds("gov.a"), 1.0, 1e-6)]);
                store.reserve(&job).expect("within the policy");
            }
            let over = JobCharge::new("j10", "g", "sql", "d", vec![(ds("gov.a"), 1.0, 0.0)]);
            assert!(matches!(
                store.reserve(&over),
                Err(GovernanceError::BudgetExhausted { .. })
            ));
            // The owner lowers the policy: the line follows it down.
            store
                .register_datasets(&[policy(4.0, 5e-6)], "platform")
                .expect("lower");
            let line = &store.budget("g").expect("budget")[0];
            assert_eq!((line.epsilon_total, line.epsilon_left()), (4.0, 0.0));
            assert_eq!(
                (line.delta_total, line.delta_spent, line.delta_left()),
                (5e-6, 1e-5, 0.0)
            );
            // A policy without [dp] no longer caps it (nothing is charged ε then).
            let mut open = policy(0.0, 0.0);
            (open.epsilon_budget, open.delta_budget, open.policy_digest) = (None, None, "threshold".into());
            store.register_datasets(&[open], "platform").expect("threshold");
            assert_eq!(store.budget("g").expect("budget")[0].epsilon_total, 16.0);
        }
    }

    /// A database written before fixed-point accounting is converted when
    /// it opens: charges rounded up, spent amounts without float drift.
    #[test]
    fn an_old_floating_point_database_is_migrated_on_open() {
        for db in test_dbs() {
            {
                let store = db.open();
                store
                    .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 1.0)]))
                    .expect("grant");
                store
                    .raw(
                        "DROP TABLE charges; DROP TABLE budgets;
                         CREATE TABLE budgets (grant_id TEXT NOT NULL REFERENCES grants(id), dataset TEXT NOT NULL,
                           epsilon_total DOUBLE PRECISION NOT NULL, epsilon_spent DOUBLE PRECISION NOT NULL DEFAULT 0,
                           delta_spent DOUBLE PRECISION NOT NULL DEFAULT 0, PRIMARY KEY (grant_id, dataset));
                         CREATE TABLE charges (job_id TEXT NOT NULL REFERENCES jobs(id), dataset TEXT NOT NULL,
                           epsilon DOUBLE PRECISION NOT NULL, delta DOUBLE PRECISION NOT NULL,
                           PRIMARY KEY (job_id, dataset));
                         INSERT INTO budgets VALUES ('g', 'gov.a', 1.0, 0.30000000000000004, 3e-6);
                         INSERT INTO budgets VALUES ('g', 'gov.b', 2.0, 0.0, 0.0);
                         INSERT INTO jobs (id, grant_id, kind, submission_digest, status, created_at)
                           VALUES ('j1', 'g', 'sql', 'd', 'released', 't'), ('j2', 'g', 'sql', 'd', 'released', 't'),
                                  ('j3', 'g', 'sql', 'd', 'released', 't'), ('j4', 'g', 'sql', 'd', 'released', 't');
                         INSERT INTO charges VALUES ('j1', 'gov.a', 0.1, 1e-6), ('j2', 'gov.a', 0.1, 1e-6),
                           ('j3', 'gov.a', 0.1, 1e-6), ('j4', 'gov.b', 1e-17, 0.0);",
                    )
                    .expect("old schema");
            }
            let store = db.open();
            let budget = store.budget("g").expect("budget");
            assert_eq!(
                budget[0].exact().epsilon_spent,
                Epsilon::from_units(300_000_000),
                "{}",
                db.name()
            );
            assert_eq!(budget[0].exact().delta_spent, Delta::from_units(3_000_000_000));
            assert_eq!(budget[0].epsilon_total, 1.0);
            assert_eq!(
                budget[1].exact().epsilon_spent,
                Epsilon::from_units(1),
                "a charge the float sum lost is kept"
            );
            let charged = store.charged_exact("g").expect("charged");
            assert_eq!(charged[0].1, budget[0].exact().epsilon_spent);
            // Later charges are exact; reopening converts nothing twice.
            store
                .reserve(&JobCharge::new("j5", "g", "sql", "d", vec![(ds("gov.a"), 0.7, 0.0)]))
                .expect("fits exactly: 0.3 + 0.7 = 1");
            drop(store);
            let store = db.open();
            assert_eq!(store.budget("g").expect("budget")[0].epsilon_left(), 0.0);
            let migrations = store
                .audit_entries()
                .expect("entries")
                .into_iter()
                .filter(|e| e.kind == "schema_migrated")
                .count();
            assert_eq!(migrations, 1);
            assert!(store.verify_audit().expect("verify").is_intact());
        }
    }

    /// Many stores opening one new database at once must all succeed.
    #[test]
    fn concurrent_opens_wait_for_each_other() {
        for db in test_dbs() {
            std::thread::scope(|scope| {
                for i in 0..16 {
                    let db = &db;
                    scope.spawn(move || {
                        let store = db.open();
                        store
                            .upsert_grant(&Grant::new(&format!("g{i}"), "h", vec![(ds("gov.a"), 1.0)]))
                            .expect("grant");
                    });
                }
            });
            assert!(matches!(
                db.open().verify_audit().expect("verify"),
                crate::AuditReport::Intact { entries: 16, .. }
            ));
        }
    }
}
