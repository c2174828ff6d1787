//! The store: grants, budgets, jobs, charges and usage records, and the
//! audit ledger entry of every change, written in the same transaction. The
//! rules are written once against [`crate::db`] and run on SQLite (default)
//! or PostgreSQL.

use crate::GovernanceError;
use crate::amount::{Delta, Epsilon};
use crate::anchor::{Anchor, Checkpoint, Continuity};
use crate::audit::{self, AuditReport, Integrity};
use crate::db::{Backend, PostgresBackend, SqliteBackend, Tx, now};
use crate::zcdp::{ZcdpConversion, ZcdpLine};
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
#[derive(Debug, Clone)]
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
    /// ρ to (ε, δ) for zCDP lines (see [`crate::zcdp`]); a job charging
    /// ε > 0 to a zCDP line without it is refused with a storage error.
    pub zcdp_conversion: Option<ZcdpConversion>,
    /// The job was calibrated for zCDP composition (Gaussian noise): every
    /// line it charges must be a zCDP line at charge time, or it is refused
    /// ([`GovernanceError::AccountingChanged`]) before it runs, since its
    /// noise is not pure ε-DP.
    pub calibrated_for_zcdp: bool,
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
            zcdp_conversion: None,
            calibrated_for_zcdp: false,
        }
    }

    /// Marks the job as calibrated for zCDP composition (see
    /// [`JobCharge::calibrated_for_zcdp`]).
    pub fn calibrated_for_zcdp(mut self, zcdp: bool) -> Self {
        self.calibrated_for_zcdp = zcdp;
        self
    }

    /// The conversion zCDP lines use to turn their ρ into ε.
    pub fn with_zcdp_conversion(mut self, convert: ZcdpConversion) -> Self {
        self.zcdp_conversion = Some(convert);
        self
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
    /// `"pure"` (ε's add up) or `"zcdp"` (ρ's add up; `epsilon_spent` is
    /// `rho_spent` converted to (ε, δ) at `conversion_delta`), see
    /// [`crate::zcdp`].
    pub accounting: &'static str,
    /// ρ spent (zCDP lines; 0 for pure ones).
    pub rho_spent: f64,
    /// δ at which ρ converts to ε (zCDP lines).
    pub conversion_delta: Option<f64>,
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
    /// Set when the line is accounted under zCDP.
    pub zcdp: Option<ZcdpLine>,
}

impl BudgetLine {
    fn new(dataset: String, exact: ExactBudget) -> Self {
        BudgetLine {
            dataset,
            epsilon_total: exact.epsilon_total.as_f64(),
            epsilon_spent: exact.epsilon_spent.as_f64(),
            delta_total: exact.delta_total.as_f64(),
            delta_spent: exact.delta_spent.as_f64(),
            accounting: if exact.zcdp.is_some() { "zcdp" } else { "pure" },
            rho_spent: exact.zcdp.map_or(0.0, |z| z.rho_spent_f64()),
            conversion_delta: exact.zcdp.map(|z| z.conversion_delta.as_f64()),
            exact,
        }
    }

    /// Whether the line is accounted under zCDP.
    pub fn is_zcdp(&self) -> bool {
        self.exact.zcdp.is_some()
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
    /// The head file outside the database, when the store has one.
    anchor: Option<Anchor>,
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
            "{SCHEMA} {} {} {} {} {} {} {} {} {} {} {}",
            audit::SCHEMA,
            crate::complaints::SCHEMA,
            crate::queue::SCHEMA,
            crate::accounts::SCHEMA,
            crate::applications::SCHEMA,
            crate::agreements::SCHEMA,
            crate::suspension::SCHEMA,
            crate::registry::SCHEMA,
            crate::samples::SCHEMA,
            crate::enterprise::SCHEMA,
            crate::zcdp::SCHEMA
        ))?;
        let store = Store { backend, anchor: None };
        crate::migrate::upgrade(&store)?;
        Ok(store)
    }

    /// Ties the store to a head file outside the database (see
    /// [`crate::anchor`]): with [`Continuity::Require`] a store that does
    /// not contain the entry the file records is refused
    /// ([`GovernanceError::Discontinuous`]); with `Report` it is opened and
    /// [`verify_audit`](Self::verify_audit) reports it broken; with
    /// `Initialise` the old file is set aside and the store starts its own.
    /// From then on every committed write advances the file.
    pub fn anchored(mut self, head_file: &Path, continuity: Continuity) -> Result<Self, GovernanceError> {
        let recorded = Checkpoint::read(head_file)?;
        let anchor = Anchor::new(head_file, recorded.clone());
        if let Some(checkpoint) = &recorded
            && let Some(broken) = self.read(|tx| audit::discontinuity(tx, checkpoint))?
        {
            match continuity {
                Continuity::Require => {
                    return Err(GovernanceError::Discontinuous(format!(
                        "the {} store is not the one {} records: {}. Restore the database from a backup, \
                         or start a new store deliberately with --init (the old head file is kept aside)",
                        self.backend.name(),
                        head_file.display(),
                        broken.reason
                    )));
                }
                Continuity::Report => {}
                Continuity::Initialise => {
                    let aside = anchor.retire()?;
                    tracing::warn!(old = %aside.display(), "a new store starts where an earlier one was recorded");
                }
            }
        }
        self.anchor = Some(anchor);
        if continuity != Continuity::Report {
            self.advance_anchor()?;
        }
        Ok(self)
    }

    /// Moves the head file to the stored head (forward only).
    fn advance_anchor(&self) -> Result<(), GovernanceError> {
        let Some(anchor) = &self.anchor else { return Ok(()) };
        if let Some((seq, hash)) = self.read(audit::head)? {
            anchor.advance(seq, &hash)?;
        }
        Ok(())
    }

    /// The ledger's head as a checkpoint to keep outside the store; `None`
    /// for an empty ledger.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, GovernanceError> {
        Ok(self
            .read(audit::head)?
            .map(|(seq, hash)| Checkpoint { seq, hash, at: now() }))
    }

    /// Checks the database file with the backend's own check.
    pub fn integrity(&self) -> Result<Integrity, GovernanceError> {
        let backend = self.backend.name();
        self.read(|tx| audit::integrity(tx, backend))
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
        let anchored = self.anchor.is_some();
        let mut head = None;
        self.backend.write(&mut |tx| {
            let f = f
                .take()
                .ok_or_else(|| GovernanceError::Storage("a transaction body ran twice".into()))?;
            out = Some(f(tx)?);
            // The head as this transaction leaves it, read inside it.
            if anchored {
                head = audit::head(tx)?;
            }
            Ok(())
        })?;
        if let (Some(anchor), Some((seq, hash))) = (&self.anchor, head)
            && let Err(e) = anchor.advance(seq, &hash)
        {
            // The write is committed; the next one moves the file again,
            // and verification treats a file left behind as a lower bound.
            tracing::error!(error = %e, "could not advance the ledger head file");
        }
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
                if job.calibrated_for_zcdp && line.zcdp.is_none() && !eps.is_zero() {
                    return Err(GovernanceError::AccountingChanged {
                        dataset: dataset.to_string(),
                    });
                }
                // What the line's spent amounts become: sums (pure), or
                // ρ converted (zCDP, see crate::zcdp).
                let (eps_after, delta_after, rho_after) = match &line.zcdp {
                    None => (
                        line.epsilon_spent.checked_add(eps),
                        line.delta_spent.checked_add(delta),
                        None,
                    ),
                    Some(z) => {
                        let c = crate::zcdp::charge(
                            z,
                            line.epsilon_spent,
                            line.delta_spent,
                            eps,
                            delta,
                            job.zcdp_conversion,
                        )?;
                        // A line is fixed as zCDP by its first charge that
                        // spends ρ (which also charges the conversion δ).
                        let fixes = c.rho_after > 0 || z.fixed;
                        (
                            Some(c.epsilon_after),
                            Some(c.delta_after),
                            fixes.then_some((*z, c.rho_after)),
                        )
                    }
                };
                let over_eps = eps_after.is_none_or(|after| after > line.epsilon_total);
                if !eps.is_zero() && over_eps {
                    return Err(GovernanceError::BudgetExhausted {
                        grant: job.grant_id.clone(),
                        dataset: dataset.to_string(),
                        spent: line.epsilon_spent,
                        total: line.epsilon_total,
                        requested: eps_after.map_or(eps, |a| a.saturating_sub(line.epsilon_spent)),
                    });
                }
                let over_delta = delta_after.is_none_or(|after| after > line.delta_total);
                let delta_grows = delta_after.is_none_or(|after| after > line.delta_spent);
                if delta_grows && over_delta {
                    return Err(GovernanceError::DeltaBudgetExhausted {
                        grant: job.grant_id.clone(),
                        dataset: dataset.to_string(),
                        spent: line.delta_spent,
                        total: line.delta_total,
                        requested: delta_after.map_or(delta, |a| a.saturating_sub(line.delta_spent)),
                    });
                }
                // The recorded charge is what the line's spent amounts grow
                // by (for pure lines, the job's ε and δ).
                let eps_charged = eps_after.map_or(eps, |a| a.saturating_sub(line.epsilon_spent));
                let delta_charged = delta_after.map_or(delta, |a| a.saturating_sub(line.delta_spent));
                amounts.push((dataset, eps_charged, delta_charged, rho_after));
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
            for (dataset, eps, delta, rho_after) in &amounts {
                if let Some((z, rho)) = rho_after {
                    crate::zcdp::record(tx, &job.grant_id, dataset.as_str(), z, *rho)?;
                }
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
                .map(|(d, e, dl, rho)| match rho {
                    None => json!({"dataset": d.as_str(), "epsilon": e, "delta": dl}),
                    Some((_, rho)) => json!({
                        "dataset": d.as_str(), "epsilon": e, "delta": dl,
                        "accounting": "zcdp", "rho_spent_units": rho,
                    }),
                })
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
    /// With a head file, the ledger must also contain the entry it
    /// records.
    pub fn verify_audit(&self) -> Result<AuditReport, GovernanceError> {
        let recorded = self.anchor.as_ref().and_then(Anchor::recorded);
        self.read(|tx| audit::verify(tx, recorded.as_ref()))
    }

    /// [`verify_audit`](Self::verify_audit), and the ledger must contain
    /// `checkpoint` (one the operator exported and kept elsewhere).
    pub fn verify_audit_against(&self, checkpoint: &Checkpoint) -> Result<AuditReport, GovernanceError> {
        match self.read(|tx| audit::verify(tx, Some(checkpoint)))? {
            AuditReport::Intact { .. } => self.verify_audit(),
            broken => Ok(broken),
        }
    }

    /// The head file this store advances, if any.
    pub fn head_file(&self) -> Option<&Path> {
        self.anchor.as_ref().map(Anchor::path)
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
        p.epsilon_budget, p.delta_budget, z.conversion_delta, z.rho_spent, zp.conversion_delta
 FROM budgets b LEFT JOIN policy_budgets p ON p.dataset = b.dataset
 LEFT JOIN zcdp_lines z ON z.grant_id = b.grant_id AND z.dataset = b.dataset
 LEFT JOIN zcdp_policies zp ON zp.dataset = b.dataset";

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
    let (epsilon_spent, delta_spent) = (Epsilon::from_units(r.int(2)?), Delta::from_units(r.int(4)?));
    Ok(ExactBudget {
        epsilon_total: policy_eps.map_or(granted_eps, |p| p.min(granted_eps)),
        epsilon_spent,
        delta_total,
        delta_spent,
        zcdp: ZcdpLine::from_columns(
            (r.opt_int(7)?, r.opt_int(8)?),
            r.opt_int(9)?,
            !(epsilon_spent.is_zero() && delta_spent.is_zero()),
        ),
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
mod tests;
