//! Enterprise data brought by an applicant (政企数据融合). The operator
//! gives an applicant account its enterprise provider when it creates the
//! account ([`Store::create_enterprise_applicant`]); while the applicant
//! holds an active agreement, it may register its own tables under that
//! provider, and it owns them as a data owner owns its provider's: it
//! decides applications on them, sets their output policy, suspends and
//! withdraws them. For every other dataset it is an applicant.
//!
//! One provider id, one kind of owner: a provider assigned to an applicant
//! never gets data owner accounts, and a data owner's provider is never
//! assigned (both checked in the transaction that writes the account).
//! Provider ids are plain lower-case ASCII, so that no look-alike of
//! another provider's id can be assigned.

use crate::GovernanceError;
use crate::accounts::Role;
use crate::agreements::Agreement;
use crate::audit;
use crate::db::{Tx, now};
use crate::registry::DatasetVersionRecord;
use crate::store::Store;
use serde_json::json;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS enterprise_owners (
    provider TEXT PRIMARY KEY,
    account TEXT NOT NULL UNIQUE,
    assigned_by TEXT NOT NULL,
    assigned_at TEXT NOT NULL
);
";

/// Checks an enterprise provider id: 2 to 64 characters, lower-case ASCII
/// letters, digits and `-`, starting with a letter (so no blank, capital,
/// invisible or non-Latin look-alike of another id).
pub fn valid_provider_id(provider: &str) -> Result<(), GovernanceError> {
    let ok = (2..=64).contains(&provider.len())
        && provider.starts_with(|c: char| c.is_ascii_lowercase())
        && provider
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(GovernanceError::Invalid(format!(
            "an enterprise provider id has 2 to 64 characters: lower-case ASCII letters, digits and `-`, starting \
             with a letter; `{}` is not one",
            provider.chars().take(64).collect::<String>().escape_debug()
        )))
    }
}

/// Refuses a data owner account for `provider` when an applicant has it.
pub(crate) fn refuse_assigned(tx: &mut dyn Tx, provider: &str) -> Result<(), GovernanceError> {
    let assigned = tx.query_opt(
        "SELECT 1 FROM enterprise_owners WHERE provider = ?1",
        &[provider.into()],
    )?;
    if assigned.is_some() {
        return Err(GovernanceError::Invalid(format!(
            "provider `{provider}` is an applicant's enterprise provider; no data owner account manages it"
        )));
    }
    Ok(())
}

/// Assigns `provider` to the applicant `account` (`enterprise_provider_assigned`).
pub(crate) fn assign(tx: &mut dyn Tx, account: &str, provider: &str, by: &str) -> Result<(), GovernanceError> {
    valid_provider_id(provider)?;
    let owners = tx.query_opt(
        "SELECT 1 FROM accounts WHERE role = 'data_owner' AND provider = ?1",
        &[provider.into()],
    )?;
    if owners.is_some() {
        return Err(GovernanceError::Invalid(format!(
            "provider `{provider}` has data owner accounts; it cannot be an applicant's enterprise provider"
        )));
    }
    let inserted = tx.execute(
        "INSERT INTO enterprise_owners (provider, account, assigned_by, assigned_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
        &[provider.into(), account.into(), by.into(), now().into()],
    )?;
    if inserted == 0 {
        return Err(GovernanceError::Invalid(format!(
            "provider `{provider}` is assigned to another account"
        )));
    }
    audit::append(
        tx,
        by,
        "enterprise_provider_assigned",
        json!({"provider": provider, "account": account}),
    )?;
    Ok(())
}

impl Store {
    /// Creates an applicant account whose enterprise provider is
    /// `provider` (see the module docs), in one transaction. Refused
    /// ([`GovernanceError::Invalid`]) when the id is not a valid provider
    /// id, has data owner accounts, or is assigned already. The caller
    /// checks that no catalog dataset of another provider uses it.
    pub fn create_enterprise_applicant(
        &self,
        id: &str,
        token: &str,
        provider: &str,
        by: &str,
    ) -> Result<(), GovernanceError> {
        valid_provider_id(provider)?;
        self.create_account_with(id, &Role::Applicant, token, by, Some(provider))
    }

    /// The enterprise provider assigned to an applicant, if any.
    pub fn enterprise_provider_of(&self, account: &str) -> Result<Option<String>, GovernanceError> {
        let row = self.read(|tx| {
            tx.query_opt(
                "SELECT provider FROM enterprise_owners WHERE account = ?1",
                &[account.into()],
            )
        })?;
        row.map(|r| r.text(0)).transpose()
    }

    /// The provider whose datasets `account` owns: a data owner's provider,
    /// or an applicant's enterprise provider; `None` for the operator,
    /// unknown accounts and applicants without one.
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

    /// Records a version of an applicant's own table (`dataset_version`)
    /// after checking, in the same transaction, that `provider` is the
    /// version owner's enterprise provider ([`GovernanceError::Forbidden`]
    /// otherwise; nothing is written).
    pub fn record_enterprise_dataset_version(
        &self,
        record: &DatasetVersionRecord,
        provider: &str,
    ) -> Result<(), GovernanceError> {
        let payload = serde_json::to_value(record)?;
        let account = record.owner.as_str();
        self.write(|tx| {
            let assigned = tx.query_opt(
                "SELECT 1 FROM enterprise_owners WHERE provider = ?1 AND account = ?2",
                &[provider.into(), account.into()],
            )?;
            if assigned.is_none() {
                return Err(GovernanceError::Forbidden(format!(
                    "`{account}` registers only for its own enterprise provider, not `{provider}`"
                )));
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
    fn one_provider_id_has_one_kind_of_owner() {
        for db in test_dbs() {
            let s = db.open();
            let token = |c: char| c.to_string().repeat(40);
            s.create_account(
                "tax-office",
                &Role::DataOwner { provider: "tax".into() },
                &token('c'),
                "op",
            )
            .expect("store");
            s.create_enterprise_applicant("fintech", &token('a'), "fintech-co", "op")
                .expect("store");
            assert_eq!(
                s.owned_provider("fintech").expect("store").as_deref(),
                Some("fintech-co")
            );
            assert_eq!(s.owned_provider("tax-office").expect("store").as_deref(), Some("tax"));

            let before = s.audit_entries().expect("store").len();
            for (id, provider, says) in [
                ("rival", "fintech-co", "assigned to another account"),
                ("rival", "tax", "has data owner accounts"),
                ("rival", "Fintech-co", "lower-case ASCII"),
                ("rival", "fintech-co\u{200b}", "lower-case ASCII"),
                ("rival", "fintech-co ", "lower-case ASCII"),
                ("rival", "fint\u{0435}ch", "lower-case ASCII"),
            ] {
                let e = s
                    .create_enterprise_applicant(id, &token('b'), provider, "op")
                    .expect_err("refused")
                    .to_string();
                assert!(e.contains(says), "{provider:?}: {e}");
            }
            let e = s
                .create_account(
                    "owner-2",
                    &Role::DataOwner {
                        provider: "fintech-co".into(),
                    },
                    &token('d'),
                    "op",
                )
                .expect_err("refused")
                .to_string();
            assert!(e.contains("an applicant's enterprise provider"), "{e}");
            assert_eq!(
                s.audit_entries().expect("store").len(),
                before,
                "a refused account writes nothing"
            );
            assert_eq!(s.role("rival").expect("store"), None, "nor is the account created");

            s.record_enterprise_dataset_version(&record("fintech.customers", "fintech"), "fintech-co")
                .expect("store");
            let e = s
                .record_enterprise_dataset_version(&record("x.y", "fintech"), "tax")
                .expect_err("refused")
                .to_string();
            assert!(e.contains("only for its own enterprise provider"), "{e}");
            let kinds: Vec<String> = s.audit_entries().expect("store").into_iter().map(|e| e.kind).collect();
            assert_eq!(kinds.iter().filter(|k| *k == "enterprise_provider_assigned").count(), 1);
            assert_eq!(kinds.iter().filter(|k| *k == "dataset_version").count(), 1);
        }
    }
}
