//! Dataset suspension on complaint (中止开放): while a dataset is suspended
//! no job that touches it is charged or released. A job that was already
//! running when the suspension came is cancelled when it tries to release
//! ([`Store::finish`] checks in the same transaction that records the
//! release), so nothing computed after the suspension leaves.

use crate::GovernanceError;
use crate::audit;
use crate::db::{Tx, now};
use crate::store::Store;
use serde_json::json;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS suspensions (
    dataset TEXT PRIMARY KEY,
    suspended_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    suspended_at TEXT NOT NULL
);
";

/// A current suspension.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Suspension {
    pub dataset: String,
    pub suspended_by: String,
    pub reason: String,
    pub suspended_at: String,
}

impl Store {
    /// Suspends `dataset` on a complaint; `reason` is required.
    pub fn suspend_dataset(&self, dataset: &str, by: &str, reason: &str) -> Result<(), GovernanceError> {
        if reason.trim().is_empty() {
            return Err(GovernanceError::Invalid("a suspension must give its reason".into()));
        }
        crate::fields::text("reason", reason, crate::fields::MAX_REASON_BYTES, true)?;
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO suspensions (dataset, suspended_by, reason, suspended_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(dataset) DO NOTHING",
                &[dataset.into(), by.into(), reason.into(), now().into()],
            )?;
            if inserted == 0 {
                return Err(GovernanceError::Invalid(format!("{dataset} is already suspended")));
            }
            audit::append(
                tx,
                by,
                "dataset_suspended",
                json!({"dataset": dataset, "reason": reason}),
            )?;
            Ok(())
        })
    }

    /// Lifts a suspension (`resumed`) or records that the dataset is
    /// withdrawn from opening for good (`withdrawn`: it stays suspended).
    pub fn resume_dataset(&self, dataset: &str, by: &str, note: &str) -> Result<(), GovernanceError> {
        crate::fields::text("reason", note, crate::fields::MAX_REASON_BYTES, false)?;
        self.write(|tx| {
            let removed = tx.execute("DELETE FROM suspensions WHERE dataset = ?1", &[dataset.into()])?;
            if removed == 0 {
                return Err(GovernanceError::Invalid(format!("{dataset} is not suspended")));
            }
            audit::append(tx, by, "dataset_resumed", json!({"dataset": dataset, "note": note}))?;
            Ok(())
        })
    }

    /// Records that a suspended dataset is withdrawn (it stays suspended).
    pub fn withdraw_dataset(&self, dataset: &str, by: &str, note: &str) -> Result<(), GovernanceError> {
        crate::fields::text("reason", note, crate::fields::MAX_REASON_BYTES, false)?;
        self.write(|tx| {
            if tx
                .query_opt("SELECT dataset FROM suspensions WHERE dataset = ?1", &[dataset.into()])?
                .is_none()
            {
                return Err(GovernanceError::Invalid(format!(
                    "suspend {dataset} before withdrawing it"
                )));
            }
            audit::append(tx, by, "dataset_withdrawn", json!({"dataset": dataset, "note": note}))?;
            Ok(())
        })
    }

    /// Current suspensions.
    pub fn suspensions(&self) -> Result<Vec<Suspension>, GovernanceError> {
        self.read(|tx| {
            tx.query(
                "SELECT dataset, suspended_by, reason, suspended_at FROM suspensions ORDER BY dataset",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(Suspension {
                    dataset: r.text(0)?,
                    suspended_by: r.text(1)?,
                    reason: r.text(2)?,
                    suspended_at: r.text(3)?,
                })
            })
            .collect()
        })
    }

    /// Refuses if any of `datasets` is suspended (a check before planning;
    /// the charge and the release check again in their transactions).
    pub fn check_not_suspended<S: AsRef<str> + Sync>(&self, datasets: &[S]) -> Result<(), GovernanceError> {
        self.read(|tx| ensure_not_suspended(tx, datasets.iter().map(|d| d.as_ref())))
    }
}

/// Fails with [`GovernanceError::DatasetSuspended`] for the first suspended
/// dataset.
pub(crate) fn ensure_not_suspended<'a>(
    tx: &mut dyn Tx,
    datasets: impl IntoIterator<Item = &'a str>,
) -> Result<(), GovernanceError> {
    for d in datasets {
        if let Some(r) = tx.query_opt("SELECT reason FROM suspensions WHERE dataset = ?1", &[d.into()])? {
            return Err(GovernanceError::DatasetSuspended {
                dataset: d.to_string(),
                reason: r.text(0)?,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testing::test_dbs;
    use crate::{AuditReport, GovernanceError, Grant, JobCharge};
    use sandbox_model::{DatasetId, JobOutcome, UsageRecord};

    fn ds(s: &str) -> DatasetId {
        s.parse().expect("dataset id")
    }

    fn usage(job: &str) -> UsageRecord {
        UsageRecord {
            job_id: job.into(),
            grant_id: "g".into(),
            datasets: vec![ds("gov.a"), ds("gov.open")],
            ..Default::default()
        }
    }

    #[test]
    fn suspension_refuses_new_jobs_and_cancels_a_running_one_at_release() {
        for db in test_dbs() {
            let s = db.open();
            s.upsert_grant(&Grant::new("g", "bank", vec![(ds("gov.a"), 5.0)]))
                .expect("grant");
            let charge = |id: &str| JobCharge::new(id, "g", "sql", "d", vec![(ds("gov.a"), 0.1, 0.0)]);
            s.reserve(&charge("running")).expect("charged before the complaint");
            assert!(s.suspend_dataset("gov.a", "ops", " ").is_err(), "a reason is required");
            s.suspend_dataset("gov.a", "ops", "complaint 2026-17: rights of a data subject")
                .expect("suspend");
            assert!(s.suspend_dataset("gov.a", "ops", "again").is_err());
            // The running job computed its result, but may not release it.
            let e = s
                .finish("running", &JobOutcome::Released, &usage("running"))
                .expect_err("cancelled");
            assert!(matches!(e, GovernanceError::DatasetSuspended { .. }), "{e}");
            assert_eq!(s.job_counts("g").expect("counts"), [("cancelled".to_string(), 1)]);
            // New jobs are refused, and charge nothing.
            let e = s.reserve(&charge("new")).expect_err("suspended");
            assert!(e.to_string().contains("complaint 2026-17"), "{e}");
            assert!(matches!(
                s.check_not_suspended(&["gov.open", "gov.a"]),
                Err(GovernanceError::DatasetSuspended { .. })
            ));
            assert!((s.budget("g").expect("budget")[0].epsilon_spent - 0.1).abs() < 1e-12);
            assert_eq!(s.suspensions().expect("list").len(), 1);
            // Resumed: jobs run again.
            s.resume_dataset("gov.a", "ops", "complaint resolved").expect("resume");
            s.check_not_suspended(&["gov.a"]).expect("open again");
            s.reserve(&charge("after")).expect("runs");
            s.finish("after", &JobOutcome::Released, &usage("after"))
                .expect("released");
            s.suspend_dataset("gov.a", "ops", "second complaint").expect("suspend");
            s.withdraw_dataset("gov.a", "ops", "withdrawn from opening")
                .expect("withdraw");
            let kinds: Vec<String> = s
                .audit_entries()
                .expect("entries")
                .into_iter()
                .map(|e| e.kind)
                .collect();
            for k in ["dataset_suspended", "dataset_resumed", "dataset_withdrawn"] {
                assert!(kinds.iter().any(|x| x == k), "{k}");
            }
            assert!(
                matches!(s.verify_audit().expect("verify"), AuditReport::Intact { .. }),
                "{}",
                db.name()
            );
        }
    }
}
