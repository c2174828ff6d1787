//! The owner's budget for DP sample datasets (样本数据): each dataset's
//! samples spend ε (and δ) from a budget of their own, set by the
//! dataset's policy (`[sample] epsilon_budget`), never from an agreement's.
//! A sample's cost is charged, and recorded in the ledger
//! (`sample_charged`), in one transaction before the sample is made; a
//! sample that fails afterwards keeps its charge (as a job's does). The
//! published files are recorded after (`sample_published`).

use crate::GovernanceError;
use crate::amount::{Delta, Epsilon};
use crate::audit;
use crate::store::Store;
use crate::suspension::ensure_not_suspended;
use serde_json::json;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sample_budgets (
    dataset TEXT PRIMARY KEY,
    epsilon_spent BIGINT NOT NULL DEFAULT 0,
    delta_spent BIGINT NOT NULL DEFAULT 0
);
";

/// What one sample costs, and on whose authority.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleCharge {
    /// A fresh id naming the sample in the ledger.
    pub sample_id: String,
    pub dataset: String,
    /// The account that asked for it (the owner or the operator).
    pub by: String,
    /// ε of the model and of the fidelity report.
    pub epsilon_model: f64,
    pub epsilon_fidelity: f64,
    pub delta: f64,
    /// The policy's sample budget (total ε over all samples of the dataset).
    pub epsilon_budget: f64,
    /// The data version sampled (`None`: generated, unversioned data).
    pub data_version: Option<u64>,
    /// The policy's digest.
    pub policy_digest: String,
}

/// A dataset's sample budget as spent so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleBudget {
    pub epsilon_spent: Epsilon,
    pub delta_spent: Delta,
}

impl Store {
    /// Charges a sample's ε against its dataset's sample budget and records
    /// it (`sample_charged`), atomically; refuses with
    /// [`GovernanceError::BudgetExhausted`] (grant `sample budget`) when
    /// the budget cannot pay, and with
    /// [`GovernanceError::DatasetSuspended`] on a suspended dataset.
    pub fn charge_sample(&self, c: &SampleCharge) -> Result<SampleBudget, GovernanceError> {
        let epsilon = Epsilon::charge(c.epsilon_model)?
            .checked_add(Epsilon::charge(c.epsilon_fidelity)?)
            .ok_or_else(|| GovernanceError::Invalid("a sample's ε overflows".into()))?;
        let delta = Delta::charge(c.delta)?;
        let total = Epsilon::total(c.epsilon_budget)?;
        self.write(|tx| {
            ensure_not_suspended(tx, [c.dataset.as_str()])?;
            let row = tx.query_opt(
                "SELECT epsilon_spent, delta_spent FROM sample_budgets WHERE dataset = ?1",
                &[(&c.dataset).into()],
            )?;
            let (spent, delta_spent) = match row {
                Some(r) => (Epsilon::from_units(r.int(0)?), Delta::from_units(r.int(1)?)),
                None => (Epsilon::ZERO, Delta::ZERO),
            };
            let after = spent
                .checked_add(epsilon)
                .ok_or_else(|| GovernanceError::Invalid("a sample budget overflows".into()))?;
            if after.units() > total.units() {
                return Err(GovernanceError::BudgetExhausted {
                    grant: "sample budget".into(),
                    dataset: c.dataset.clone(),
                    spent,
                    total,
                    requested: epsilon,
                });
            }
            let delta_after = delta_spent
                .checked_add(delta)
                .ok_or_else(|| GovernanceError::Invalid("a sample δ overflows".into()))?;
            tx.execute(
                "INSERT INTO sample_budgets (dataset, epsilon_spent, delta_spent) VALUES (?1, ?2, ?3)
                 ON CONFLICT(dataset) DO UPDATE SET epsilon_spent = excluded.epsilon_spent,
                   delta_spent = excluded.delta_spent",
                &[(&c.dataset).into(), after.units().into(), delta_after.units().into()],
            )?;
            audit::append(
                tx,
                &c.by,
                "sample_charged",
                json!({
                    "sample": c.sample_id, "dataset": c.dataset,
                    "epsilon_model": c.epsilon_model, "epsilon_fidelity": c.epsilon_fidelity,
                    "epsilon": epsilon, "delta": delta,
                    "epsilon_spent": after, "epsilon_budget": total,
                    "data_version": c.data_version, "policy_digest": c.policy_digest,
                }),
            )?;
            Ok(SampleBudget {
                epsilon_spent: after,
                delta_spent: delta_after,
            })
        })
    }

    /// Records the files of a sample that was charged (`sample_published`).
    pub fn record_sample_published(
        &self,
        sample_id: &str,
        dataset: &str,
        by: &str,
        rows: u64,
        files: &[(String, String)],
    ) -> Result<(), GovernanceError> {
        let files: Vec<serde_json::Value> = files
            .iter()
            .map(|(name, sha256)| json!({ "name": name, "sha256": sha256 }))
            .collect();
        self.write(|tx| {
            audit::append(
                tx,
                by,
                "sample_published",
                json!({ "sample": sample_id, "dataset": dataset, "rows": rows, "files": files }),
            )?;
            Ok(())
        })
    }

    /// What a dataset's samples have spent (zero when none was made).
    pub fn sample_budget(&self, dataset: &str) -> Result<SampleBudget, GovernanceError> {
        self.read(|tx| {
            let row = tx.query_opt(
                "SELECT epsilon_spent, delta_spent FROM sample_budgets WHERE dataset = ?1",
                &[dataset.into()],
            )?;
            Ok(match row {
                Some(r) => SampleBudget {
                    epsilon_spent: Epsilon::from_units(r.int(0)?),
                    delta_spent: Delta::from_units(r.int(1)?),
                },
                None => SampleBudget {
                    epsilon_spent: Epsilon::ZERO,
                    delta_spent: Delta::ZERO,
                },
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::SampleCharge;
    use crate::GovernanceError;
    use crate::testing::test_dbs;

    fn charge(id: &str) -> SampleCharge {
        SampleCharge {
            sample_id: id.into(),
            dataset: "gov.a".into(),
            by: "owner-a".into(),
            epsilon_model: 1.0,
            epsilon_fidelity: 0.25,
            delta: 1e-6,
            epsilon_budget: 3.0,
            data_version: Some(2),
            policy_digest: "p".into(),
        }
    }

    #[test]
    fn samples_spend_their_own_budget_and_are_recorded() {
        for db in test_dbs() {
            let s = db.open();
            let b = s.charge_sample(&charge("s1")).expect("first");
            assert_eq!(b.epsilon_spent.as_f64(), 1.25, "{}", db.name());
            s.charge_sample(&charge("s2")).expect("second");
            // 3.75 > 3: refused, nothing spent or recorded.
            let third = s.charge_sample(&charge("s3"));
            assert!(
                matches!(third, Err(GovernanceError::BudgetExhausted { .. })),
                "{}",
                db.name()
            );
            assert_eq!(s.sample_budget("gov.a").expect("budget").epsilon_spent.as_f64(), 2.5);
            assert_eq!(s.sample_budget("gov.b").expect("budget").epsilon_spent.as_f64(), 0.0);
            s.record_sample_published("s1", "gov.a", "owner-a", 10, &[("sample.csv".into(), "d".into())])
                .expect("published");
            let entries = s.audit_entries().expect("entries");
            let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
            assert_eq!(
                kinds,
                ["sample_charged", "sample_charged", "sample_published"],
                "{}",
                db.name()
            );
            assert_eq!(entries[0].actor, "owner-a");
            assert_eq!(entries[1].payload["epsilon_spent"], 2.5);
            assert!(s.verify_audit().expect("verify").is_intact());
            // A suspended dataset makes no sample.
            s.record_dataset_withdrawal("gov.c", "owner-c", "withdrawn", None)
                .expect("withdraw");
            let mut c = charge("s4");
            c.dataset = "gov.c".into();
            assert!(matches!(
                s.charge_sample(&c),
                Err(GovernanceError::DatasetSuspended { .. })
            ));
        }
    }
}
