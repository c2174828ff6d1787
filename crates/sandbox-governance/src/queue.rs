//! The job queue of the server: what was submitted, by whom, and where it
//! stands (queued → running → succeeded / refused / failed / cancelled),
//! kept in the store so that a restart loses nothing. Released results are
//! written by [`Store::finish_with_result`] in the transaction that records
//! the release, so a result exists exactly when the ledger says it was
//! released, and its SHA-256 is the ledger's `result_digest`.

use crate::GovernanceError;
use crate::db::now;
use crate::store::Store;
use serde::Serialize;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS job_queue (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS job_results (
    job_id TEXT PRIMARY KEY,
    result TEXT NOT NULL
);
";

/// Where a queued job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    Queued,
    Running,
    Succeeded,
    Refused,
    Failed,
    Cancelled,
}

impl QueueState {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Queued => "queued",
            QueueState::Running => "running",
            QueueState::Succeeded => "succeeded",
            QueueState::Refused => "refused",
            QueueState::Failed => "failed",
            QueueState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<Self, GovernanceError> {
        Ok(match s {
            "queued" => QueueState::Queued,
            "running" => QueueState::Running,
            "succeeded" => QueueState::Succeeded,
            "refused" => QueueState::Refused,
            "failed" => QueueState::Failed,
            "cancelled" => QueueState::Cancelled,
            other => return Err(GovernanceError::Storage(format!("unknown job state `{other}`"))),
        })
    }

    /// Every state a job can be in.
    pub const ALL: [QueueState; 6] = [
        QueueState::Queued,
        QueueState::Running,
        QueueState::Succeeded,
        QueueState::Refused,
        QueueState::Failed,
        QueueState::Cancelled,
    ];

    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, QueueState::Queued | QueueState::Running)
    }
}

/// What a compare-and-set on a job's state did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The job was in one of the expected states and has moved.
    Moved,
    /// The job was not in an expected state: the state it is in, or `None`
    /// when there is no such job. Nothing changed.
    Found(Option<QueueState>),
}

/// A job in the queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuedJob {
    pub id: String,
    /// The account that submitted it (the only one that may see it).
    pub account: String,
    pub grant: String,
    /// `sql` or `analysis`.
    pub kind: String,
    /// The request as submitted (JSON), to run it again after a restart.
    #[serde(skip)]
    pub request: String,
    pub state: QueueState,
    /// Why a job was refused or failed (JSON: rule and message).
    pub error: Option<serde_json::Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// What the store recorded of a charged job, for recovery after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedJob {
    /// `running`, `released`, `refused`, `failed`, `cancelled` or `dry_run`.
    pub status: String,
    pub outcome: Option<serde_json::Value>,
}

const JOB_SELECT: &str =
    "SELECT id, account, grant_id, kind, request, state, error, created_at, updated_at FROM job_queue";

fn job_from_row(r: &crate::db::Row) -> Result<QueuedJob, GovernanceError> {
    Ok(QueuedJob {
        id: r.text(0)?,
        account: r.text(1)?,
        grant: r.text(2)?,
        kind: r.text(3)?,
        request: r.text(4)?,
        state: QueueState::parse(&r.text(5)?)?,
        error: r.opt_text(6)?.map(|e| serde_json::from_str(&e)).transpose()?,
        created_at: r.text(7)?,
        updated_at: r.text(8)?,
    })
}

impl Store {
    /// Adds a job to the queue.
    pub fn enqueue(
        &self,
        id: &str,
        account: &str,
        grant: &str,
        kind: &str,
        request: &str,
    ) -> Result<(), GovernanceError> {
        let at = now();
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO job_queue (id, account, grant_id, kind, request, state, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6) ON CONFLICT(id) DO NOTHING",
                &[
                    id.into(),
                    account.into(),
                    grant.into(),
                    kind.into(),
                    request.into(),
                    at.into(),
                ],
            )?;
            if inserted == 0 {
                return Err(GovernanceError::DuplicateJob(id.to_string()));
            }
            Ok(())
        })
    }

    /// Moves a job to `to` (with its error) only if it is in one of the
    /// states `from`, as one compare-and-set in one write transaction:
    /// either it moved, or the answer says the state it was found in (none
    /// for an unknown job). Every queue transition goes through here, so a
    /// cancellation and a worker's claim can never both win.
    pub fn transition(
        &self,
        id: &str,
        from: &[QueueState],
        to: QueueState,
        error: Option<&serde_json::Value>,
    ) -> Result<Transition, GovernanceError> {
        let error = error.map(serde_json::to_string).transpose()?;
        // The states are this module's constants, never caller text.
        let allowed = from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        if allowed.is_empty() {
            return Err(GovernanceError::Invalid(
                "a transition needs a state to move from".into(),
            ));
        }
        let sql = format!(
            "UPDATE job_queue SET state = ?2, error = ?3, updated_at = ?4 WHERE id = ?1 AND state IN ({allowed})"
        );
        self.write(|tx| {
            let n = tx.execute(
                &sql,
                &[id.into(), to.as_str().into(), error.as_deref().into(), now().into()],
            )?;
            if n > 0 {
                return Ok(Transition::Moved);
            }
            let found = tx.query_opt("SELECT state FROM job_queue WHERE id = ?1", &[id.into()])?;
            Ok(Transition::Found(
                found
                    .map(|r| r.text(0).and_then(|s| QueueState::parse(&s)))
                    .transpose()?,
            ))
        })
    }

    /// One queued job.
    pub fn queued_job(&self, id: &str) -> Result<Option<QueuedJob>, GovernanceError> {
        let row = self.read(|tx| tx.query_opt(&format!("{JOB_SELECT} WHERE id = ?1"), &[id.into()]))?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// An account's jobs, newest first (at most `limit`).
    pub fn queued_jobs_of(&self, account: &str, limit: u32) -> Result<Vec<QueuedJob>, GovernanceError> {
        let rows = self.read(|tx| {
            tx.query(
                &format!("{JOB_SELECT} WHERE account = ?1 ORDER BY created_at DESC, id LIMIT ?2"),
                &[account.into(), i64::from(limit).into()],
            )
        })?;
        rows.iter().map(job_from_row).collect()
    }

    /// Jobs a restart interrupted (queued or running), oldest first.
    pub fn unfinished_jobs(&self) -> Result<Vec<QueuedJob>, GovernanceError> {
        let rows = self.read(|tx| {
            tx.query(
                &format!("{JOB_SELECT} WHERE state IN ('queued', 'running') ORDER BY created_at, id"),
                &[],
            )
        })?;
        rows.iter().map(job_from_row).collect()
    }

    /// How many jobs are in each queue state.
    pub fn queue_counts(&self) -> Result<Vec<(String, u64)>, GovernanceError> {
        let rows = self.read(|tx| tx.query("SELECT state, COUNT(*) FROM job_queue GROUP BY state", &[]))?;
        rows.iter()
            .map(|r| Ok((r.text(0)?, u64::try_from(r.int(1)?).unwrap_or(0))))
            .collect()
    }

    /// The stored result of a job (a released table, or a dry run's
    /// report), as JSON.
    pub fn job_result(&self, id: &str) -> Result<Option<String>, GovernanceError> {
        let row = self.read(|tx| tx.query_opt("SELECT result FROM job_results WHERE job_id = ?1", &[id.into()]))?;
        row.map(|r| r.text(0)).transpose()
    }

    /// Stores a result that has no charge behind it (a dry run's report).
    pub fn store_uncharged_result(&self, id: &str, result: &str) -> Result<(), GovernanceError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO job_results (job_id, result) VALUES (?1, ?2) ON CONFLICT(job_id) DO NOTHING",
                &[id.into(), result.into()],
            )?;
            Ok(())
        })
    }

    /// The ε a job was charged, per dataset.
    pub fn job_charges(&self, id: &str) -> Result<Vec<(String, f64)>, GovernanceError> {
        let rows = self.read(|tx| {
            tx.query(
                "SELECT dataset, epsilon FROM charges WHERE job_id = ?1 ORDER BY dataset",
                &[id.into()],
            )
        })?;
        rows.iter().map(|r| Ok((r.text(0)?, r.real(1)?))).collect()
    }

    /// What the store recorded of a charged or refused job, if anything.
    pub fn recorded_job(&self, id: &str) -> Result<Option<RecordedJob>, GovernanceError> {
        let row = self.read(|tx| tx.query_opt("SELECT status, outcome FROM jobs WHERE id = ?1", &[id.into()]))?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(RecordedJob {
            status: r.text(0)?,
            outcome: r.opt_text(1)?.map(|o| serde_json::from_str(&o)).transpose()?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_dbs;
    use std::sync::{Arc, Barrier};

    #[test]
    fn a_transition_moves_only_from_the_expected_states() {
        for db in test_dbs() {
            let store = db.open();
            store.enqueue("j", "bank", "g", "sql", "{}").expect("enqueue");
            let running = store
                .transition("j", &[QueueState::Queued], QueueState::Running, None)
                .expect("claim");
            assert_eq!(running, Transition::Moved, "{}", db.name());
            // A cancellation that expects a queued job finds it running.
            let cancel = store
                .transition("j", &[QueueState::Queued], QueueState::Cancelled, None)
                .expect("cancel");
            assert_eq!(cancel, Transition::Found(Some(QueueState::Running)), "{}", db.name());
            assert_eq!(
                store.queued_job("j").expect("job").expect("some").state,
                QueueState::Running
            );
            let error = serde_json::json!({"rule": "r"});
            let end = store
                .transition("j", &[QueueState::Running], QueueState::Refused, Some(&error))
                .expect("end");
            assert_eq!(end, Transition::Moved);
            // An ended job does not move from the unfinished states.
            for to in QueueState::ALL {
                let again = store
                    .transition("j", &[QueueState::Queued, QueueState::Running], to, None)
                    .expect("again");
                assert_eq!(again, Transition::Found(Some(QueueState::Refused)), "{}", db.name());
            }
            let job = store.queued_job("j").expect("job").expect("some");
            assert_eq!(job.error, Some(error), "{}", db.name());
            assert_eq!(
                store
                    .transition("nope", &[QueueState::Queued], QueueState::Running, None)
                    .expect("unknown"),
                Transition::Found(None)
            );
            assert!(store.transition("j", &[], QueueState::Running, None).is_err());
        }
    }

    #[test]
    fn a_claim_and_a_cancellation_never_both_win() {
        for db in test_dbs() {
            let store = Arc::new(db.open());
            for round in 0..60 {
                let id = format!("j{round}");
                store.enqueue(&id, "bank", "g", "sql", "{}").expect("enqueue");
                let barrier = Arc::new(Barrier::new(2));
                let contenders: Vec<_> = [QueueState::Running, QueueState::Cancelled]
                    .into_iter()
                    .map(|to| {
                        let (store, barrier, id) = (store.clone(), barrier.clone(), id.clone());
                        std::thread::spawn(move || {
                            barrier.wait();
                            store
                                .transition(&id, &[QueueState::Queued], to, None)
                                .expect("transition")
                        })
                    })
                    .collect();
                let outcomes: Vec<Transition> = contenders.into_iter().map(|t| t.join().expect("thread")).collect();
                let winners = outcomes.iter().filter(|o| **o == Transition::Moved).count();
                assert_eq!(winners, 1, "{}: round {round}: {outcomes:?}", db.name());
                let state = store.queued_job(&id).expect("job").expect("some").state;
                let loser = outcomes
                    .iter()
                    .find_map(|o| match o {
                        Transition::Found(s) => *s,
                        Transition::Moved => None,
                    })
                    .expect("the loser saw the winner's state");
                assert_eq!(loser, state, "{}: the loser is told what actually happened", db.name());
            }
        }
    }
}
