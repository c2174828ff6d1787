//! Datasets and policy versions as the ledger knows them: when the sandbox
//! opens, each catalog entry and its output policy are recorded by digest,
//! so the ledger says which policy version was in force for every job
//! after it (`dataset_registered`, `policy_version`). Registered data
//! versions and withdrawals are recorded too (`dataset_version`,
//! `dataset_withdrawn`).

use crate::GovernanceError;
use crate::amount::{Delta, Epsilon};
use crate::audit;
use crate::db::Tx;
use crate::db::now;
use crate::store::Store;
use serde_json::json;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS registrations (
    dataset TEXT PRIMARY KEY,
    catalog_digest TEXT NOT NULL,
    policy_digest TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
";

/// One dataset's catalog entry and policy, by SHA-256 of their canonical
/// forms.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub dataset: String,
    pub provider: String,
    pub open_class: String,
    pub catalog_digest: String,
    /// Empty when the dataset has no policy (closed datasets).
    pub policy_digest: String,
    /// The policy's `epsilon_budget` and `delta_budget` (DP policies only):
    /// they cap every grant's budget line on the dataset, and every
    /// approval.
    pub epsilon_budget: Option<f64>,
    pub delta_budget: Option<f64>,
    /// The policy's zCDP conversion δ when it accounts budgets under zCDP
    /// (`[dp] accounting = "zcdp"`), `None` for pure accounting.
    pub zcdp_delta: Option<f64>,
}

impl Store {
    /// Records datasets not seen before and policy or catalog versions that
    /// changed; returns how many ledger entries it wrote (0 when nothing
    /// changed). Each dataset's policy budgets are kept as given (they cap
    /// grants from now on).
    pub fn register_datasets(&self, datasets: &[Registration], actor: &str) -> Result<usize, GovernanceError> {
        self.write(|tx| {
            let mut written = 0;
            for r in datasets {
                set_policy_budget(tx, r)?;
                crate::zcdp::set_policy(tx, &r.dataset, r.zcdp_delta)?;
                let known = tx.query_opt(
                    "SELECT catalog_digest, policy_digest FROM registrations WHERE dataset = ?1",
                    &[(&r.dataset).into()],
                )?;
                let kind = match known {
                    None => "dataset_registered",
                    Some(row) if row.text(0)? != r.catalog_digest || row.text(1)? != r.policy_digest => {
                        "policy_version"
                    }
                    Some(_) => continue,
                };
                tx.execute(
                    "INSERT INTO registrations (dataset, catalog_digest, policy_digest, updated_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(dataset) DO UPDATE SET catalog_digest = excluded.catalog_digest,
                       policy_digest = excluded.policy_digest, updated_at = excluded.updated_at",
                    &[
                        (&r.dataset).into(),
                        (&r.catalog_digest).into(),
                        (&r.policy_digest).into(),
                        now().into(),
                    ],
                )?;
                audit::append(
                    tx,
                    actor,
                    kind,
                    json!({
                        "dataset": r.dataset, "provider": r.provider, "open_class": r.open_class,
                        "catalog_digest": r.catalog_digest, "policy_digest": r.policy_digest,
                    }),
                )?;
                written += 1;
            }
            Ok(written)
        })
    }
}

/// One registered version of a dataset's data, as the ledger records it
/// (`dataset_version`): who registered it, what it holds (digests of the
/// stored files and of the source file, rows) and under which entry,
/// policy and pseudonymization secret.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DatasetVersionRecord {
    pub dataset: String,
    pub version: u64,
    /// The data owner's account.
    pub owner: String,
    pub rows: u64,
    pub rows_rejected: u64,
    /// SHA-256 over the stored files.
    pub data_sha256: String,
    /// SHA-256 of the file as the owner gave it.
    pub source_sha256: String,
    pub catalog_sha256: String,
    pub policy_sha256: String,
    pub pseudonym_key_id: String,
}

impl Store {
    /// Records a new version of a dataset's data (`dataset_version`),
    /// attributed to its owner.
    pub fn record_dataset_version(&self, record: &DatasetVersionRecord) -> Result<(), GovernanceError> {
        let payload = serde_json::to_value(record)?;
        self.write(|tx| {
            audit::append(tx, &record.owner, "dataset_version", payload.clone())?;
            Ok(())
        })
    }

    /// Records that `by` withdrew a dataset's data (`dataset_withdrawn`,
    /// with the version withdrawn, its digest and rows when it had one)
    /// and keeps the dataset suspended, in one transaction, so that no job
    /// is charged or released on it from now on.
    pub fn record_dataset_withdrawal(
        &self,
        dataset: &str,
        by: &str,
        reason: &str,
        withdrawn: Option<&DatasetVersionRecord>,
    ) -> Result<(), GovernanceError> {
        if reason.trim().is_empty() {
            return Err(GovernanceError::Invalid("a withdrawal must give its reason".into()));
        }
        self.write(|tx| {
            tx.execute(
                "INSERT INTO suspensions (dataset, suspended_by, reason, suspended_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(dataset) DO NOTHING",
                &[dataset.into(), by.into(), reason.into(), now().into()],
            )?;
            audit::append(
                tx,
                by,
                "dataset_withdrawn",
                json!({
                    "dataset": dataset, "reason": reason,
                    "version": withdrawn.map(|w| w.version),
                    "rows": withdrawn.map(|w| w.rows),
                    "data_sha256": withdrawn.map(|w| w.data_sha256.clone()),
                }),
            )?;
            Ok(())
        })
    }
}

/// Keeps a dataset's policy budgets (ε rounded down to 1e-9, δ to 1e-15),
/// or removes them when its policy has no `[dp]`.
fn set_policy_budget(tx: &mut dyn Tx, r: &Registration) -> Result<(), GovernanceError> {
    match (r.epsilon_budget, r.delta_budget) {
        (Some(eps), delta) => {
            let eps = Epsilon::total(eps)?;
            let delta = Delta::total(delta.unwrap_or(0.0))?;
            tx.execute(
                "INSERT INTO policy_budgets (dataset, epsilon_budget, delta_budget) VALUES (?1, ?2, ?3)
                 ON CONFLICT(dataset) DO UPDATE SET epsilon_budget = excluded.epsilon_budget,
                   delta_budget = excluded.delta_budget",
                &[(&r.dataset).into(), eps.units().into(), delta.units().into()],
            )?;
        }
        (None, _) => {
            tx.execute("DELETE FROM policy_budgets WHERE dataset = ?1", &[(&r.dataset).into()])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Registration;
    use crate::testing::test_dbs;

    fn reg(policy: &str) -> Registration {
        Registration {
            dataset: "gov.a".into(),
            provider: "p".into(),
            open_class: "conditional".into(),
            catalog_digest: "c1".into(),
            policy_digest: policy.into(),
            epsilon_budget: None,
            delta_budget: None,
            zcdp_delta: None,
        }
    }

    #[test]
    fn datasets_and_policy_versions_are_recorded_once() {
        for db in test_dbs() {
            let s = db.open();
            assert_eq!(s.register_datasets(&[reg("p1")], "platform").expect("register"), 1);
            assert_eq!(s.register_datasets(&[reg("p1")], "platform").expect("again"), 0);
            assert_eq!(s.register_datasets(&[reg("p2")], "platform").expect("new policy"), 1);
            let kinds: Vec<String> = s
                .audit_entries()
                .expect("entries")
                .into_iter()
                .map(|e| e.kind)
                .collect();
            assert_eq!(kinds, ["dataset_registered", "policy_version"], "{}", db.name());
        }
    }

    #[test]
    fn data_versions_and_withdrawals_are_recorded_and_withdrawal_suspends() {
        for db in test_dbs() {
            let s = db.open();
            let v = super::DatasetVersionRecord {
                dataset: "gov.a".into(),
                version: 2,
                owner: "owner-a".into(),
                rows: 300,
                rows_rejected: 1,
                data_sha256: "d".into(),
                source_sha256: "s".into(),
                catalog_sha256: "c".into(),
                policy_sha256: "p".into(),
                pseudonym_key_id: "k".into(),
            };
            s.record_dataset_version(&v).expect("version");
            assert!(s.record_dataset_withdrawal("gov.a", "owner-a", " ", Some(&v)).is_err());
            s.record_dataset_withdrawal("gov.a", "owner-a", "superseded", Some(&v))
                .expect("withdraw");
            assert!(s.check_not_suspended(&["gov.a"]).is_err(), "{}", db.name());
            let entries = s.audit_entries().expect("entries");
            let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
            assert_eq!(kinds, ["dataset_version", "dataset_withdrawn"], "{}", db.name());
            assert_eq!(entries[0].actor, "owner-a");
            assert_eq!(entries[0].payload["rows"], 300);
            assert_eq!(entries[1].payload["data_sha256"], "d");
            assert!(s.verify_audit().expect("verify").is_intact());
        }
    }
}
