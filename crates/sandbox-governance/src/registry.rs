//! Datasets and policy versions as the ledger knows them: when the sandbox
//! opens, each catalog entry and its output policy are recorded by digest,
//! so the ledger says which policy version was in force for every job
//! after it (`dataset_registered`, `policy_version`).

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
}
