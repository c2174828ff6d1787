//! Agreements: what an approval grants (datasets and columns, job kinds,
//! ε per dataset, expiry, call quota) and its state. The agreement is a
//! grant; [`Store::reserve`] enforces its terms on every job, and a release
//! re-checks that it was not revoked meanwhile.

use crate::GovernanceError;
use crate::applications::ApplicationBody;
use crate::audit;
use crate::db::Tx;
use crate::store::Store;
use serde::Serialize;
use serde_json::json;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agreements (
    grant_id TEXT PRIMARY KEY REFERENCES grants(id),
    application_id TEXT NOT NULL REFERENCES applications(id),
    expires_at TEXT NOT NULL,
    call_quota BIGINT NOT NULL,
    calls_used BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    status_reason TEXT
);
";

/// An agreement as signed, with its current state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    /// The grant id jobs run under (`agreement-<application>`).
    pub id: String,
    pub application: String,
    pub holder: String,
    pub terms: ApplicationBody,
    pub expires_at: String,
    pub call_quota: u64,
    pub calls_used: u64,
    /// `active` or `revoked`.
    pub status: String,
    pub status_reason: Option<String>,
}

const AGREEMENT_SELECT: &str = "SELECT a.grant_id, a.application_id, p.applicant, p.body, a.expires_at, a.call_quota,
        a.calls_used, a.status, a.status_reason
 FROM agreements a JOIN applications p ON p.id = a.application_id";

fn agreement_from_row(r: &crate::db::Row) -> Result<Agreement, GovernanceError> {
    Ok(Agreement {
        id: r.text(0)?,
        application: r.text(1)?,
        holder: r.text(2)?,
        terms: serde_json::from_str(&r.text(3)?)?,
        expires_at: r.text(4)?,
        call_quota: u64::try_from(r.int(5)?).unwrap_or(0),
        calls_used: u64::try_from(r.int(6)?).unwrap_or(0),
        status: r.text(7)?,
        status_reason: r.opt_text(8)?,
    })
}

impl Store {
    /// The agreement behind a grant, if the grant came from an approval.
    pub fn agreement(&self, grant: &str) -> Result<Option<Agreement>, GovernanceError> {
        let row =
            self.read(|tx| tx.query_opt(&format!("{AGREEMENT_SELECT} WHERE a.grant_id = ?1"), &[grant.into()]))?;
        row.map(|r| agreement_from_row(&r)).transpose()
    }

    /// Every agreement, oldest application first (callers filter by who
    /// may see them).
    pub fn agreements(&self) -> Result<Vec<Agreement>, GovernanceError> {
        let rows = self.read(|tx| tx.query(&format!("{AGREEMENT_SELECT} ORDER BY a.grant_id"), &[]))?;
        rows.iter().map(agreement_from_row).collect()
    }

    /// The agreements an account holds.
    pub fn agreements_held_by(&self, holder: &str) -> Result<Vec<Agreement>, GovernanceError> {
        let rows = self.read(|tx| {
            tx.query(
                &format!("{AGREEMENT_SELECT} WHERE p.applicant = ?1 ORDER BY a.grant_id"),
                &[holder.into()],
            )
        })?;
        rows.iter().map(agreement_from_row).collect()
    }

    /// Revokes an agreement (限制或者关闭数据获取权限): every later job under
    /// it is refused.
    pub fn revoke(&self, agreement: &str, by: &str, reason: &str) -> Result<(), GovernanceError> {
        crate::fields::text("reason", reason, crate::fields::MAX_REASON_BYTES, true)?;
        self.write(|tx| {
            let updated = tx.execute(
                "UPDATE agreements SET status = 'revoked', status_reason = ?2 WHERE grant_id = ?1 AND status = 'active'",
                &[agreement.into(), reason.into()],
            )?;
            if updated == 0 {
                return Err(GovernanceError::Invalid(format!("no active agreement `{agreement}`")));
            }
            audit::append(tx, by, "agreement_revoked", json!({"agreement": agreement, "reason": reason}))?;
            Ok(())
        })
    }
}

/// Fails if the grant's agreement was revoked (checked again when a result
/// is released, so a revocation stops what was running too).
pub(crate) fn ensure_not_revoked(tx: &mut dyn Tx, grant: &str) -> Result<(), GovernanceError> {
    let row = tx.query_opt(
        "SELECT status, status_reason FROM agreements WHERE grant_id = ?1",
        &[grant.into()],
    )?;
    match row {
        Some(r) if r.text(0)? != "active" => Err(GovernanceError::AgreementInactive {
            agreement: grant.to_string(),
            why: format!("it was {}: {}", r.text(0)?, r.opt_text(1)?.unwrap_or_default()),
        }),
        _ => Ok(()),
    }
}

/// Checks an agreement's terms inside the job's charging transaction and
/// counts the call. Grants without an agreement (the operator's demo grant)
/// have no terms.
pub(crate) fn enforce_terms(tx: &mut dyn Tx, grant: &str, now: &str) -> Result<(), GovernanceError> {
    let row = tx.query_opt(
        "SELECT expires_at, call_quota, calls_used, status, status_reason FROM agreements WHERE grant_id = ?1",
        &[grant.into()],
    )?;
    let Some(row) = row else {
        return Ok(());
    };
    let (expires_at, quota, used, status, reason) =
        (row.text(0)?, row.int(1)?, row.int(2)?, row.text(3)?, row.opt_text(4)?);
    let refuse = |why: String| {
        Err(GovernanceError::AgreementInactive {
            agreement: grant.to_string(),
            why,
        })
    };
    if status != "active" {
        return refuse(format!("it was {status}: {}", reason.unwrap_or_default()));
    }
    if now >= expires_at.as_str() {
        return refuse(format!("it expired at {expires_at}"));
    }
    if used >= quota {
        return refuse(format!("its quota of {quota} calls is used up"));
    }
    tx.execute(
        "UPDATE agreements SET calls_used = calls_used + 1 WHERE grant_id = ?1",
        &[grant.into()],
    )?;
    Ok(())
}
