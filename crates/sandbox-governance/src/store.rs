//! The SQLite store: grants, budgets, jobs, charges and usage records, and
//! the audit ledger entry of every change, written in the same transaction.

use crate::GovernanceError;
use crate::audit::{self, AuditReport};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sandbox_ledger::Entry;
use sandbox_model::{DatasetId, JobOutcome, UsageRecord};
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// What an applicant may use: datasets, each with its ε budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub id: String,
    pub holder: String,
    pub budgets: Vec<(DatasetId, f64)>,
}

impl Grant {
    pub fn new(id: &str, holder: &str, budgets: Vec<(DatasetId, f64)>) -> Self {
        Grant {
            id: id.to_string(),
            holder: holder.to_string(),
            budgets,
        }
    }
}

/// The ε and δ a job reserves, per dataset, with the job's record.
#[derive(Debug, Clone, PartialEq)]
pub struct JobCharge {
    pub job_id: String,
    pub grant_id: String,
    pub kind: String,
    pub submission_digest: String,
    pub charges: Vec<(DatasetId, f64, f64)>,
}

impl JobCharge {
    pub fn new(job_id: &str, grant_id: &str, kind: &str, digest: &str, charges: Vec<(DatasetId, f64, f64)>) -> Self {
        JobCharge {
            job_id: job_id.to_string(),
            grant_id: grant_id.to_string(),
            kind: kind.to_string(),
            submission_digest: digest.to_string(),
            charges,
        }
    }
}

/// A grant's budget for one dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetLine {
    pub dataset: String,
    pub epsilon_total: f64,
    pub epsilon_spent: f64,
    pub delta_spent: f64,
}

impl BudgetLine {
    pub fn epsilon_left(&self) -> f64 {
        (self.epsilon_total - self.epsilon_spent).max(0.0)
    }
}

/// Retries an operation that SQLite may refuse with SQLITE_BUSY without
/// calling the busy handler (lock upgrades it resolves by failing fast).
fn retry_busy<T>(mut op: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let mut attempt = 0;
    loop {
        match op() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && attempt < 200 =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Tolerance for comparing sums of ε shares.
const EPS_SLACK: f64 = 1e-9;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS grants (
    id TEXT PRIMARY KEY,
    holder TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS budgets (
    grant_id TEXT NOT NULL REFERENCES grants(id),
    dataset TEXT NOT NULL,
    epsilon_total REAL NOT NULL,
    epsilon_spent REAL NOT NULL DEFAULT 0,
    delta_spent REAL NOT NULL DEFAULT 0,
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
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS charges (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    dataset TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    PRIMARY KEY (job_id, dataset)
);
";

/// The store. One connection behind a mutex per process; SQLite's own
/// locking (`BEGIN IMMEDIATE`, WAL) orders writers across processes.
pub struct Store {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, GovernanceError> {
        let conn = Connection::open(path)?;
        // Wait for other processes before the first statement: switching
        // to WAL needs a lock too.
        conn.busy_timeout(Duration::from_secs(30))?;
        retry_busy(|| conn.pragma_update(None, "journal_mode", "WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Self, GovernanceError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, GovernanceError> {
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Schema creation in an IMMEDIATE transaction: a deferred one can fail
        // at once with SQLITE_BUSY when another process creates it first.
        retry_busy(|| {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} {} {} COMMIT;",
                audit::SCHEMA,
                crate::access::SCHEMA
            ))
        })?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    /// Runs `f` in an IMMEDIATE transaction, committed only if it succeeds.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, GovernanceError>,
    ) -> Result<T, GovernanceError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A poisoned lock only means another thread panicked mid-call; the
        // transaction it held was rolled back by SQLite, so carry on.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a grant, or adds datasets missing from an existing one.
    /// Existing budgets and spending are never changed. What was added is
    /// recorded in the ledger (nothing when nothing changed).
    pub fn upsert_grant(&self, grant: &Grant) -> Result<(), GovernanceError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let created = tx.execute(
            "INSERT INTO grants (id, holder) VALUES (?1, ?2) ON CONFLICT(id) DO NOTHING",
            params![grant.id, grant.holder],
        )? > 0;
        let mut added = Vec::new();
        for (dataset, total) in &grant.budgets {
            let inserted = tx.execute(
                "INSERT INTO budgets (grant_id, dataset, epsilon_total) VALUES (?1, ?2, ?3)
                 ON CONFLICT(grant_id, dataset) DO NOTHING",
                params![grant.id, dataset.as_str(), total],
            )?;
            if inserted > 0 {
                added.push(json!({"dataset": dataset.as_str(), "epsilon": total}));
            }
        }
        if created || !added.is_empty() {
            let kind = if created { "grant_created" } else { "grant_extended" };
            audit::append(
                &tx,
                &grant.holder,
                kind,
                json!({"grant": grant.id, "holder": grant.holder, "budgets": added}),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Datasets a grant covers.
    pub fn grant_datasets(&self, grant_id: &str) -> Result<Vec<String>, GovernanceError> {
        let conn = self.conn();
        let exists: Option<String> = conn
            .query_row("SELECT id FROM grants WHERE id = ?1", params![grant_id], |r| r.get(0))
            .optional()?;
        if exists.is_none() {
            return Err(GovernanceError::NoGrant(grant_id.to_string()));
        }
        let mut stmt = conn.prepare("SELECT dataset FROM budgets WHERE grant_id = ?1 ORDER BY dataset")?;
        let rows = stmt.query_map(params![grant_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the job and reserves its charges atomically, or refuses it
    /// if any dataset's budget would be overspent.
    pub fn reserve(&self, job: &JobCharge) -> Result<(), GovernanceError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        crate::access::enforce_terms(&tx, &job.grant_id)?;
        for (dataset, eps, _delta) in &job.charges {
            let row: Option<(f64, f64)> = tx
                .query_row(
                    "SELECT epsilon_total, epsilon_spent FROM budgets WHERE grant_id = ?1 AND dataset = ?2",
                    params![job.grant_id, dataset.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((total, spent)) = row else {
                return Err(GovernanceError::NotCovered {
                    grant: job.grant_id.clone(),
                    dataset: dataset.to_string(),
                });
            };
            if spent + eps > total + EPS_SLACK {
                return Err(GovernanceError::BudgetExhausted {
                    grant: job.grant_id.clone(),
                    dataset: dataset.to_string(),
                    spent,
                    total,
                    requested: *eps,
                });
            }
        }
        let inserted = tx.execute(
            "INSERT INTO jobs (id, grant_id, kind, submission_digest, status) VALUES (?1, ?2, ?3, ?4, 'running')
             ON CONFLICT(id) DO NOTHING",
            params![job.job_id, job.grant_id, job.kind, job.submission_digest],
        )?;
        if inserted == 0 {
            return Err(GovernanceError::DuplicateJob(job.job_id.clone()));
        }
        for (dataset, eps, delta) in &job.charges {
            tx.execute(
                "INSERT INTO charges (job_id, dataset, epsilon, delta) VALUES (?1, ?2, ?3, ?4)",
                params![job.job_id, dataset.as_str(), eps, delta],
            )?;
            tx.execute(
                "UPDATE budgets SET epsilon_spent = epsilon_spent + ?3, delta_spent = delta_spent + ?4
                 WHERE grant_id = ?1 AND dataset = ?2",
                params![job.grant_id, dataset.as_str(), eps, delta],
            )?;
        }
        let holder = holder(&tx, &job.grant_id)?;
        let charges: Vec<_> = job
            .charges
            .iter()
            .map(|(d, e, dl)| json!({"dataset": d.as_str(), "epsilon": e, "delta": dl}))
            .collect();
        audit::append(
            &tx,
            &holder,
            "job_charged",
            json!({
                "job": job.job_id,
                "grant": job.grant_id,
                "kind": job.kind,
                "submission_digest": job.submission_digest,
                "charges": charges,
            }),
        )?;
        tx.commit()?;
        Ok(())
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
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let holder: Option<String> = tx
            .query_row("SELECT holder FROM grants WHERE id = ?1", params![grant_id], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(holder) = holder else {
            return Ok(());
        };
        let inserted = tx.execute(
            "INSERT INTO jobs (id, grant_id, kind, submission_digest, status, outcome, finished_at)
             VALUES (?1, ?2, ?3, ?4, 'refused', ?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
             ON CONFLICT(id) DO NOTHING",
            params![job_id, grant_id, kind, digest, serde_json::to_string(outcome)?],
        )?;
        if inserted > 0 {
            audit::append(
                &tx,
                &holder,
                "job_refused",
                json!({"job": job_id, "grant": grant_id, "kind": kind, "submission_digest": digest, "outcome": outcome}),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records how a charged job ended, with its usage record.
    pub fn finish(&self, job_id: &str, outcome: &JobOutcome, usage: &UsageRecord) -> Result<(), GovernanceError> {
        let status = match outcome {
            JobOutcome::Released => "released",
            JobOutcome::DryRun => "dry_run",
            JobOutcome::Refused { .. } => "refused",
            JobOutcome::Failed { .. } => "failed",
            JobOutcome::Cancelled => "cancelled",
        };
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let updated = tx.execute(
            "UPDATE jobs SET status = ?2, outcome = ?3, usage = ?4, finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             WHERE id = ?1 AND status = 'running'",
            params![
                job_id,
                status,
                serde_json::to_string(outcome)?,
                serde_json::to_string(usage)?
            ],
        )?;
        if updated == 0 {
            return Err(GovernanceError::NotRunning(job_id.to_string()));
        }
        let holder = holder(&tx, &usage.grant_id)?;
        audit::append(
            &tx,
            &holder,
            "job_finished",
            json!({"job": job_id, "status": status, "outcome": outcome, "usage": usage}),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every ledger entry, oldest first (the operator's export).
    pub fn audit_entries(&self) -> Result<Vec<Entry>, GovernanceError> {
        audit::entries(&self.conn())
    }

    /// Checks the ledger: every entry follows its predecessor and the last
    /// one is the recorded head.
    pub fn verify_audit(&self) -> Result<AuditReport, GovernanceError> {
        audit::verify(&self.conn())
    }

    /// A grant's budget per dataset.
    pub fn budget(&self, grant_id: &str) -> Result<Vec<BudgetLine>, GovernanceError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT dataset, epsilon_total, epsilon_spent, delta_spent FROM budgets WHERE grant_id = ?1 ORDER BY dataset",
        )?;
        let rows = stmt.query_map(params![grant_id], |r| {
            Ok(BudgetLine {
                dataset: r.get(0)?,
                epsilon_total: r.get(1)?,
                epsilon_spent: r.get(2)?,
                delta_spent: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sum of all charges per dataset for a grant (a consistency check:
    /// it must equal the budget's spent column).
    pub fn charged(&self, grant_id: &str) -> Result<Vec<(String, f64)>, GovernanceError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT c.dataset, SUM(c.epsilon) FROM charges c JOIN jobs j ON j.id = c.job_id
             WHERE j.grant_id = ?1 GROUP BY c.dataset ORDER BY c.dataset",
        )?;
        let rows = stmt.query_map(params![grant_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Job counts by status for a grant.
    pub fn job_counts(&self, grant_id: &str) -> Result<Vec<(String, u64)>, GovernanceError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT status, COUNT(*) FROM jobs WHERE grant_id = ?1 GROUP BY status ORDER BY status")?;
        let rows = stmt.query_map(params![grant_id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The account a grant's events are attributed to.
fn holder(tx: &rusqlite::Transaction<'_>, grant_id: &str) -> Result<String, GovernanceError> {
    tx.query_row("SELECT holder FROM grants WHERE id = ?1", params![grant_id], |r| {
        r.get(0)
    })
    .optional()?
    .ok_or_else(|| GovernanceError::NoGrant(grant_id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ds(s: &str) -> DatasetId {
        s.parse().expect("dataset id")
    }

    #[test]
    fn concurrent_reservations_never_overspend() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("s.db")).expect("open"));
        store
            .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 5.0), (ds("gov.b"), 100.0)]))
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
        assert_eq!(ok, 50, "exactly 5.0 / 0.1 jobs fit");
        let budget = store.budget("g").expect("budget");
        assert!(budget[0].epsilon_spent <= 5.0 + 1e-9);
        let charged = store.charged("g").expect("charged");
        assert!((charged[0].1 - budget[0].epsilon_spent).abs() < 1e-9);
        assert!(
            (budget[1].epsilon_spent - 5.0).abs() < 1e-9,
            "a refused job charges nothing anywhere"
        );
        // One ledger entry per admitted job, in one unbroken chain.
        let entries = store.audit_entries().expect("entries");
        assert_eq!(entries.iter().filter(|e| e.kind == "job_charged").count(), 50);
        assert!(matches!(
            store.verify_audit().expect("verify"),
            crate::AuditReport::Intact { entries: 51, .. }
        ));
    }

    #[test]
    fn unknown_grant_and_uncovered_dataset() {
        let store = Store::open_in_memory().expect("open");
        assert!(matches!(store.grant_datasets("nope"), Err(GovernanceError::NoGrant(_))));
        store
            .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 1.0)]))
            .expect("grant");
        let job = JobCharge::new("j", "g", "sql", "d", vec![(ds("gov.z"), 0.1, 0.0)]);
        assert!(matches!(store.reserve(&job), Err(GovernanceError::NotCovered { .. })));
        let job = JobCharge::new("j", "g", "sql", "d", vec![(ds("gov.a"), 0.1, 0.0)]);
        store.reserve(&job).expect("reserve");
        assert!(matches!(store.reserve(&job), Err(GovernanceError::DuplicateJob(_))));
    }

    #[test]
    fn charges_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        {
            let store = Store::open(&path).expect("open");
            store
                .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 1.0)]))
                .expect("grant");
            store
                .reserve(&JobCharge::new("j", "g", "sql", "d", vec![(ds("gov.a"), 0.7, 0.0)]))
                .expect("reserve");
        }
        let store = Store::open(&path).expect("reopen");
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

#[cfg(test)]
mod open_tests {
    use super::*;

    /// Many stores opening one new database at once must all succeed.
    #[test]
    fn concurrent_opens_wait_for_each_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let store = Store::open(&path).expect("open");
                    let id: DatasetId = "gov.a".parse().expect("id");
                    store
                        .upsert_grant(&Grant::new(&format!("g{i}"), "h", vec![(id, 1.0)]))
                        .expect("grant");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
    }
}
