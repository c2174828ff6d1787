//! Accounts and their roles: who acts. API tokens are kept only as
//! SHA-256; every ledger entry names the account it is attributed to.

use crate::GovernanceError;
use crate::audit;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    provider TEXT,
    token_sha256 TEXT NOT NULL UNIQUE
);
";

/// The three roles of the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum Role {
    /// Manages the datasets and policies of one provider (a government
    /// department or an enterprise bringing data).
    DataOwner { provider: String },
    /// A researcher or an enterprise that applies for data and runs jobs.
    Applicant,
    /// Audits everything and handles complaints.
    Operator,
}

impl Role {
    fn name(&self) -> &'static str {
        match self {
            Role::DataOwner { .. } => "data_owner",
            Role::Applicant => "applicant",
            Role::Operator => "operator",
        }
    }
}

/// The token of an `Authorization` value `Bearer <token>`: the scheme is
/// matched case-insensitively (RFC 9110 §11.1), the token trimmed; `None`
/// for any other scheme or an empty token. HTTP and Flight SQL both use
/// this, so they accept exactly the same headers.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// SHA-256 of a token, hex: all the store keeps.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Creates an account holding `token` (only its SHA-256 is stored).
    /// A data owner's provider must not be an enterprise provider assigned
    /// to an applicant ([`Store::create_enterprise_applicant`]).
    pub fn create_account(&self, id: &str, role: &Role, token: &str, by: &str) -> Result<(), GovernanceError> {
        self.create_account_with(id, role, token, by, None)
    }

    /// [`create_account`](Self::create_account), and for an applicant its
    /// enterprise provider, in one transaction.
    pub(crate) fn create_account_with(
        &self,
        id: &str,
        role: &Role,
        token: &str,
        by: &str,
        enterprise_provider: Option<&str>,
    ) -> Result<(), GovernanceError> {
        if token.len() < 32 {
            return Err(GovernanceError::Invalid(
                "an API token has at least 32 characters".into(),
            ));
        }
        crate::fields::text("id", id, crate::fields::MAX_NAME_BYTES, true)?;
        let provider = match role {
            Role::DataOwner { provider } => Some(provider.as_str()),
            _ => None,
        };
        if let Some(p) = provider {
            crate::fields::text("provider", p, crate::fields::MAX_NAME_BYTES, true)?;
        }
        let digest = token_digest(token);
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO accounts (id, role, provider, token_sha256) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                &[id.into(), role.name().into(), provider.into(), digest.into()],
            )?;
            if inserted == 0 {
                return Err(GovernanceError::Invalid(format!(
                    "account `{id}` (or its token) exists already"
                )));
            }
            if let Some(p) = provider {
                crate::enterprise::refuse_assigned(tx, p)?;
            }
            audit::append(tx, by, "account_created", json!({"account": id, "role": role}))?;
            if let Some(p) = enterprise_provider {
                crate::enterprise::assign(tx, id, p, by)?;
            }
            Ok(())
        })
    }

    /// The account a bearer token belongs to, with its role.
    pub fn authenticate(&self, token: &str) -> Result<(String, Role), GovernanceError> {
        let digest = token_digest(token);
        let row = self.read(|tx| {
            tx.query_opt(
                "SELECT id, role, provider FROM accounts WHERE token_sha256 = ?1",
                &[digest.into()],
            )
        })?;
        let row = row.ok_or(GovernanceError::Unauthenticated)?;
        let (id, role, provider) = (row.text(0)?, row.text(1)?, row.opt_text(2)?);
        let role = match (role.as_str(), provider) {
            ("data_owner", Some(provider)) => Role::DataOwner { provider },
            ("operator", _) => Role::Operator,
            _ => Role::Applicant,
        };
        Ok((id, role))
    }

    /// How many accounts exist (the first one is created without a token).
    pub fn account_count(&self) -> Result<u64, GovernanceError> {
        let n = self.read(|tx| tx.query_opt("SELECT COUNT(*) FROM accounts", &[]))?;
        Ok(n.map(|r| r.int(0))
            .transpose()?
            .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }

    /// An account's role, if the account exists.
    pub fn role(&self, account: &str) -> Result<Option<Role>, GovernanceError> {
        let row =
            self.read(|tx| tx.query_opt("SELECT role, provider FROM accounts WHERE id = ?1", &[account.into()]))?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(match (r.text(0)?.as_str(), r.opt_text(1)?) {
            ("data_owner", Some(provider)) => Role::DataOwner { provider },
            ("operator", _) => Role::Operator,
            _ => Role::Applicant,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_nothing_else_passes() {
        for ok in ["Bearer t0k", "bearer t0k", "BEARER t0k", "Bearer   t0k  "] {
            assert_eq!(bearer_token(ok), Some("t0k"), "{ok:?}");
        }
        for bad in ["Basic t0k", "Bearer", "Bearer ", "Bearer    ", "Bearert0k", "t0k", ""] {
            assert_eq!(bearer_token(bad), None, "{bad:?}");
        }
    }
}
