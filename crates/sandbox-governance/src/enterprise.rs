//! Enterprise data brought by an applicant (政企数据融合): an applicant
//! holding an active agreement may register its own table under an
//! enterprise provider, which it claims with its first registration. From
//! then on the account owns that provider's datasets as a data owner owns
//! its provider's: it decides applications on them, sets their output
//! policy, suspends and withdraws them. It stays an applicant for every
//! other dataset.
//!
//! The claim is written in the transaction that records the first version
//! ([`Store::record_enterprise_dataset_version`]), so a registration that
//! fails claims nothing, and two applicants racing for one provider cannot
//! both win: the table's keys make the second claim fail and its version is
//! removed.

use crate::GovernanceError;
use crate::accounts::Role;
use crate::agreements::Agreement;
use crate::audit;
use crate::db::now;
use crate::registry::DatasetVersionRecord;
use crate::store::Store;
use serde_json::json;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS enterprise_owners (
    provider TEXT PRIMARY KEY,
    account TEXT NOT NULL UNIQUE,
    claimed_at TEXT NOT NULL
);
";

impl Store {
    /// The enterprise provider an applicant claimed, if any.
    pub fn enterprise_provider_of(&self, account: &str) -> Result<Option<String>, GovernanceError> {
        let row = self.read(|tx| {
            tx.query_opt(
                "SELECT provider FROM enterprise_owners WHERE account = ?1",
                &[account.into()],
            )
        })?;
        row.map(|r| r.text(0)).transpose()
    }

    /// Whether any account owns `provider`'s datasets: a data owner account
    /// of that provider, or the applicant that claimed it.
    pub fn provider_has_owner(&self, provider: &str) -> Result<bool, GovernanceError> {
        let row = self.read(|tx| {
            tx.query_opt(
                "SELECT 1 FROM accounts WHERE role = 'data_owner' AND provider = ?1
                 UNION ALL SELECT 1 FROM enterprise_owners WHERE provider = ?1",
                &[provider.into()],
            )
        })?;
        Ok(row.is_some())
    }

    /// The provider whose datasets `account` owns: a data owner's provider,
    /// or the enterprise provider an applicant claimed; `None` for the
    /// operator, unknown accounts and applicants without a claim.
    pub fn owned_provider(&self, account: &str) -> Result<Option<String>, GovernanceError> {
        match self.role(account)? {
            Some(Role::DataOwner { provider }) => Ok(Some(provider)),
            Some(Role::Applicant) => self.enterprise_provider_of(account),
            Some(Role::Operator) | None => Ok(None),
        }
    }

    /// The agreements `holder` may run jobs under now: active and not
    /// expired (the call quota is checked per job).
    pub fn active_agreements_held_by(&self, holder: &str) -> Result<Vec<Agreement>, GovernanceError> {
        let now = now();
        Ok(self
            .agreements_held_by(holder)?
            .into_iter()
            .filter(|a| a.status == "active" && now.as_str() < a.expires_at.as_str())
            .collect())
    }

    /// Records a version of an applicant's own dataset: claims `provider`
    /// for the version's owner if nobody owns it yet
    /// (`enterprise_provider_claimed`), then records the version
    /// (`dataset_version`), in one transaction. Refused
    /// ([`GovernanceError::Forbidden`]) when another account owns the
    /// provider or the owner claimed another one; then nothing is written.
    pub fn record_enterprise_dataset_version(
        &self,
        record: &DatasetVersionRecord,
        provider: &str,
    ) -> Result<(), GovernanceError> {
        crate::fields::text("provider", provider, crate::fields::MAX_NAME_BYTES, true)?;
        let payload = serde_json::to_value(record)?;
        let account = record.owner.as_str();
        self.write(|tx| {
            let claimed = tx.query_opt(
                "SELECT provider, account FROM enterprise_owners WHERE provider = ?1 OR account = ?2",
                &[provider.into(), account.into()],
            )?;
            match claimed {
                Some(r) if r.text(0)? == provider && r.text(1)? == account => {}
                Some(r) if r.text(1)? == account => {
                    return Err(GovernanceError::Forbidden(format!(
                        "`{account}` owns the enterprise provider `{}` and registers only its datasets",
                        r.text(0)?
                    )));
                }
                Some(_) => {
                    return Err(GovernanceError::Forbidden(format!(
                        "provider `{provider}` is owned by another account"
                    )));
                }
                None => {
                    let owner_accounts = tx.query_opt(
                        "SELECT 1 FROM accounts WHERE role = 'data_owner' AND provider = ?1",
                        &[provider.into()],
                    )?;
                    if owner_accounts.is_some() {
                        return Err(GovernanceError::Forbidden(format!(
                            "provider `{provider}` has data owner accounts of its own; an applicant cannot claim it"
                        )));
                    }
                    tx.execute(
                        "INSERT INTO enterprise_owners (provider, account, claimed_at) VALUES (?1, ?2, ?3)",
                        &[provider.into(), account.into(), now().into()],
                    )?;
                    audit::append(
                        tx,
                        account,
                        "enterprise_provider_claimed",
                        json!({"provider": provider, "account": account, "dataset": record.dataset}),
                    )?;
                }
            }
            audit::append(tx, account, "dataset_version", payload.clone())?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::Role;
    use crate::registry::DatasetVersionRecord;
    use crate::testing::test_dbs;

    fn record(dataset: &str, owner: &str) -> DatasetVersionRecord {
        DatasetVersionRecord {
            dataset: dataset.into(),
            version: 1,
            owner: owner.into(),
            rows: 10,
            rows_rejected: 0,
            data_sha256: "d".into(),
            source_sha256: "s".into(),
            catalog_sha256: "c".into(),
            policy_sha256: "p".into(),
            pseudonym_key_id: "k".into(),
        }
    }

    #[test]
    fn the_first_version_claims_the_provider_once_and_for_one_account() {
        for db in test_dbs() {
            let s = db.open();
            let token = |c: char| c.to_string().repeat(40);
            s.create_account("fintech", &Role::Applicant, &token('a'), "op")
                .unwrap();
            s.create_account("rival", &Role::Applicant, &token('b'), "op").unwrap();
            s.create_account(
                "tax-office",
                &Role::DataOwner { provider: "tax".into() },
                &token('c'),
                "op",
            )
            .unwrap();
            assert_eq!(s.owned_provider("fintech").unwrap(), None);
            assert!(!s.provider_has_owner("fintech-co").unwrap());

            s.record_enterprise_dataset_version(&record("fintech.customers", "fintech"), "fintech-co")
                .unwrap();
            assert_eq!(s.owned_provider("fintech").unwrap().as_deref(), Some("fintech-co"));
            assert!(s.provider_has_owner("fintech-co").unwrap());
            // A second version and a second dataset of the same provider.
            s.record_enterprise_dataset_version(&record("fintech.customers", "fintech"), "fintech-co")
                .unwrap();
            s.record_enterprise_dataset_version(&record("fintech.loans", "fintech"), "fintech-co")
                .unwrap();

            let before = s.audit_entries().unwrap().len();
            for (owner, provider, says) in [
                ("rival", "fintech-co", "owned by another account"),
                ("fintech", "other-co", "owns the enterprise provider `fintech-co`"),
                ("rival", "tax", "has data owner accounts of its own"),
            ] {
                let e = s
                    .record_enterprise_dataset_version(&record("x.y", owner), provider)
                    .unwrap_err()
                    .to_string();
                assert!(e.contains(says), "{owner} {provider}: {e}");
            }
            assert_eq!(
                s.audit_entries().unwrap().len(),
                before,
                "a refused claim writes nothing"
            );
            assert_eq!(s.owned_provider("rival").unwrap(), None);
            assert_eq!(s.owned_provider("tax-office").unwrap().as_deref(), Some("tax"));
            let kinds: Vec<String> = s.audit_entries().unwrap().into_iter().map(|e| e.kind).collect();
            assert_eq!(kinds.iter().filter(|k| *k == "enterprise_provider_claimed").count(), 1);
            assert_eq!(kinds.iter().filter(|k| *k == "dataset_version").count(), 3);
        }
    }
}
