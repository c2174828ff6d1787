//! Applications and decisions: an applicant asks for conditionally open
//! datasets with a usage scenario; the owner of each dataset approves or
//! rejects (with a reason); when every owner has approved, the agreement
//! is signed (see [`crate::agreements`]). Every step is a ledger entry in
//! the same transaction.

use crate::GovernanceError;
use crate::amount::{Delta, Epsilon};
use crate::audit;
use crate::db::Tx;
use crate::fields;
use crate::store::Store;
use sandbox_model::DatasetId;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS applications (
    id TEXT PRIMARY KEY,
    applicant TEXT NOT NULL REFERENCES accounts(id),
    body TEXT NOT NULL,
    revision BIGINT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS approvals (
    application_id TEXT NOT NULL REFERENCES applications(id),
    dataset TEXT NOT NULL,
    owner TEXT NOT NULL,
    epsilon DOUBLE PRECISION NOT NULL,
    expires_at TEXT NOT NULL,
    call_quota BIGINT NOT NULL,
    PRIMARY KEY (application_id, dataset)
);
";

/// What an applicant asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplicationBody {
    pub datasets: Vec<DatasetId>,
    /// `dataset.column` names needed.
    pub columns: Vec<String>,
    /// `sql`, `wasm`.
    pub job_kinds: Vec<String>,
    /// The usage scenario (使用场景).
    pub scenario: String,
    /// The materials the datasets' open conditions ask for, by name.
    pub materials: Vec<String>,
}

/// An application as stored, with its state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplicationRecord {
    pub id: String,
    pub applicant: String,
    pub body: ApplicationBody,
    pub revision: u32,
    /// `submitted`, `rejected` or `approved`.
    pub status: String,
    /// The rejection's reason.
    pub reason: Option<String>,
    /// One per dataset approved so far.
    pub approvals: Vec<Approval>,
}

/// One owner's approval of one dataset of an application.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    pub dataset: String,
    pub owner: String,
    pub epsilon: f64,
    pub expires_at: String,
    pub call_quota: u64,
}

/// An owner's decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Approve with terms: ε per dataset, expiry (RFC 3339, UTC), call quota.
    Approve {
        epsilon: f64,
        expires_at: String,
        call_quota: u64,
    },
    /// Reject; the reason is required and shown to the applicant.
    Reject { reason: String },
}

impl Store {
    /// Submits (or, for a rejected one, resubmits) an application.
    pub fn apply(&self, id: &str, applicant: &str, body: &ApplicationBody) -> Result<u32, GovernanceError> {
        if body.datasets.is_empty() || body.scenario.trim().is_empty() {
            return Err(GovernanceError::Invalid(
                "an application names at least one dataset and describes its usage scenario".into(),
            ));
        }
        fields::text("id", id, fields::MAX_NAME_BYTES, true)?;
        fields::text("scenario", &body.scenario, fields::MAX_SCENARIO_BYTES, true)?;
        fields::list(
            "datasets",
            &body.datasets.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
        )?;
        fields::list("columns", &body.columns)?;
        fields::list("job_kinds", &body.job_kinds)?;
        fields::list("materials", &body.materials)?;
        let text = serde_json::to_string(body)?;
        self.write(|tx| {
            let role = tx.query_opt("SELECT role FROM accounts WHERE id = ?1", &[applicant.into()])?;
            if role.map(|r| r.text(0)).transpose()?.as_deref() != Some("applicant") {
                return Err(GovernanceError::Forbidden(format!("`{applicant}` is not an applicant account")));
            }
            let existing = tx.query_opt(
                "SELECT applicant, status, revision FROM applications WHERE id = ?1",
                &[id.into()],
            )?;
            let existing = match existing {
                Some(r) => Some((r.text(0)?, r.text(1)?, r.int(2)?)),
                None => None,
            };
            let revision = match existing {
                None => {
                    tx.execute(
                        "INSERT INTO applications (id, applicant, body, revision, status) VALUES (?1, ?2, ?3, 1, 'submitted')",
                        &[id.into(), applicant.into(), (&text).into()],
                    )?;
                    1
                }
                Some((owner, status, revision)) if owner == applicant && status == "rejected" => {
                    tx.execute("DELETE FROM approvals WHERE application_id = ?1", &[id.into()])?;
                    tx.execute(
                        "UPDATE applications SET body = ?2, revision = ?3, status = 'submitted', reason = NULL WHERE id = ?1",
                        &[id.into(), (&text).into(), (revision + 1).into()],
                    )?;
                    revision + 1
                }
                Some((owner, _, _)) if owner != applicant => {
                    return Err(GovernanceError::Forbidden(format!("application `{id}` is not yours")));
                }
                Some((_, status, _)) => {
                    return Err(GovernanceError::Invalid(format!(
                        "application `{id}` is {status}; only a rejected application can be resubmitted"
                    )));
                }
            };
            audit::append(
                tx,
                applicant,
                "application_submitted",
                json!({"application": id, "revision": revision, "body": body}),
            )?;
            Ok(u32::try_from(revision).unwrap_or(u32::MAX))
        })
    }

    /// Decides a submitted application for all its datasets (an
    /// application to one owner). See [`decide_for`](Self::decide_for).
    pub fn decide(&self, application: &str, owner: &str, decision: &Decision) -> Result<(), GovernanceError> {
        let body = self
            .application(application)?
            .ok_or_else(|| GovernanceError::Invalid(format!("no application `{application}`")))?;
        self.decide_for(application, owner, decision, &body.datasets)
    }

    /// An owner's decision on the datasets of an application it manages
    /// (the caller checks ownership against the catalog). A rejection by
    /// any owner rejects the application (with its reason). An approval
    /// sets that owner's terms for its datasets; when every dataset has
    /// been approved, the agreement `agreement-<application>` is created:
    /// ε per dataset as each owner set it, the earliest expiry and the
    /// smallest call quota. A resubmission clears earlier approvals.
    pub fn decide_for(
        &self,
        application: &str,
        owner: &str,
        decision: &Decision,
        datasets: &[DatasetId],
    ) -> Result<(), GovernanceError> {
        if datasets.is_empty() {
            return Err(GovernanceError::Forbidden(format!(
                "`{owner}` manages none of the datasets of application `{application}`"
            )));
        }
        // Typed terms, checked before anything is read or written.
        let expires_at = match decision {
            Decision::Reject { reason } => {
                fields::text("reason", reason, fields::MAX_REASON_BYTES, true)?;
                None
            }
            Decision::Approve { expires_at, .. } => Some(fields::future_timestamp("expires_at", expires_at)?),
        };
        self.write(|tx| {
            let row = tx.query_opt(
                "SELECT applicant, body, status FROM applications WHERE id = ?1",
                &[application.into()],
            )?;
            let Some(row) = row else {
                return Err(GovernanceError::Invalid(format!("no application `{application}`")));
            };
            let (applicant, body, status) = (row.text(0)?, row.text(1)?, row.text(2)?);
            if status != "submitted" {
                return Err(GovernanceError::Invalid(format!(
                    "application `{application}` is {status}, not submitted"
                )));
            }
            let body: ApplicationBody = serde_json::from_str(&body)?;
            if let Some(d) = datasets.iter().find(|d| !body.datasets.contains(d)) {
                return Err(GovernanceError::Invalid(format!(
                    "application `{application}` does not ask for {d}"
                )));
            }
            match decision {
                Decision::Reject { reason } => {
                    if reason.trim().is_empty() {
                        return Err(GovernanceError::Invalid("a rejection must give its reason".into()));
                    }
                    tx.execute(
                        "UPDATE applications SET status = 'rejected', reason = ?2 WHERE id = ?1",
                        &[application.into(), reason.into()],
                    )?;
                    tx.execute("DELETE FROM approvals WHERE application_id = ?1", &[application.into()])?;
                    audit::append(
                        tx,
                        owner,
                        "application_rejected",
                        json!({"application": application, "datasets": datasets, "reason": reason}),
                    )?;
                }
                Decision::Approve {
                    epsilon, call_quota, ..
                } => {
                    let expires_at = expires_at.as_deref().unwrap_or_default();
                    if *call_quota == 0 {
                        return Err(GovernanceError::Invalid("`call_quota` must be at least 1".into()));
                    }
                    if !(epsilon.is_finite() && *epsilon > 0.0) {
                        return Err(GovernanceError::Invalid("ε must be a positive number".into()));
                    }
                    let approved = Epsilon::charge(*epsilon)?;
                    if Epsilon::total(*epsilon)?.is_zero() {
                        return Err(GovernanceError::Invalid(format!(
                            "ε = {epsilon} is below the smallest budget, {}",
                            Epsilon::from_units(1)
                        )));
                    }
                    // The owner's policy caps what any approval grants.
                    for d in datasets {
                        let cap = tx.query_opt(
                            "SELECT epsilon_budget FROM policy_budgets WHERE dataset = ?1",
                            &[d.as_str().into()],
                        )?;
                        if let Some(cap) = cap.map(|r| r.int(0)).transpose()?.map(Epsilon::from_units)
                            && approved > cap
                        {
                            return Err(GovernanceError::OverPolicyBudget {
                                dataset: d.to_string(),
                                approved,
                                cap,
                            });
                        }
                    }
                    let quota = i64::try_from(*call_quota)
                        .map_err(|_| GovernanceError::Invalid("the call quota is too large".into()))?;
                    for d in datasets {
                        tx.execute(
                            "INSERT INTO approvals (application_id, dataset, owner, epsilon, expires_at, call_quota)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                             ON CONFLICT(application_id, dataset) DO UPDATE SET owner = excluded.owner,
                               epsilon = excluded.epsilon, expires_at = excluded.expires_at,
                               call_quota = excluded.call_quota",
                            &[
                                application.into(),
                                d.as_str().into(),
                                owner.into(),
                                (*epsilon).into(),
                                expires_at.into(),
                                quota.into(),
                            ],
                        )?;
                    }
                    audit::append(
                        tx,
                        owner,
                        "application_approved",
                        json!({
                            "application": application, "datasets": datasets, "epsilon": epsilon,
                            "expires_at": expires_at, "call_quota": call_quota,
                        }),
                    )?;
                    let approvals = tx.query(
                        "SELECT dataset, epsilon, expires_at, call_quota FROM approvals WHERE application_id = ?1",
                        &[application.into()],
                    )?;
                    let mut budgets = Vec::new();
                    let (mut expiry, mut quota) = (String::new(), i64::MAX);
                    for r in &approvals {
                        budgets.push((r.text(0)?, r.real(1)?));
                        let e = r.text(2)?;
                        if expiry.is_empty() || e < expiry {
                            expiry = e;
                        }
                        quota = quota.min(r.int(3)?);
                    }
                    if body
                        .datasets
                        .iter()
                        .all(|d| budgets.iter().any(|(b, _)| b == d.as_str()))
                    {
                        sign(tx, application, owner, &applicant, &body, &budgets, &expiry, quota)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Every application with its state and the approvals given so far
    /// (callers filter by who may see them).
    pub fn applications(&self) -> Result<Vec<ApplicationRecord>, GovernanceError> {
        let (apps, approvals) = self.read(|tx| {
            let apps = tx.query(
                "SELECT id, applicant, body, revision, status, reason FROM applications ORDER BY id",
                &[],
            )?;
            let approvals = tx.query(
                "SELECT application_id, dataset, owner, epsilon, expires_at, call_quota FROM approvals",
                &[],
            )?;
            Ok((apps, approvals))
        })?;
        apps.iter()
            .map(|r| {
                let id = r.text(0)?;
                let approvals = approvals
                    .iter()
                    .filter(|a| a.text(0).is_ok_and(|x| x == id))
                    .map(|a| {
                        Ok(Approval {
                            dataset: a.text(1)?,
                            owner: a.text(2)?,
                            epsilon: a.real(3)?,
                            expires_at: a.text(4)?,
                            call_quota: u64::try_from(a.int(5)?).unwrap_or(0),
                        })
                    })
                    .collect::<Result<Vec<_>, GovernanceError>>()?;
                Ok(ApplicationRecord {
                    id,
                    applicant: r.text(1)?,
                    body: serde_json::from_str(&r.text(2)?)?,
                    revision: u32::try_from(r.int(3)?).unwrap_or(0),
                    status: r.text(4)?,
                    reason: r.opt_text(5)?,
                    approvals,
                })
            })
            .collect()
    }

    /// What an application asks for (its latest revision).
    pub fn application(&self, id: &str) -> Result<Option<ApplicationBody>, GovernanceError> {
        let row = self.read(|tx| tx.query_opt("SELECT body FROM applications WHERE id = ?1", &[id.into()]))?;
        match row {
            Some(r) => Ok(Some(serde_json::from_str(&r.text(0)?)?)),
            None => Ok(None),
        }
    }
}

/// Creates the agreement once every dataset is approved.
#[allow(clippy::too_many_arguments)]
fn sign(
    tx: &mut dyn Tx,
    application: &str,
    owner: &str,
    applicant: &str,
    body: &ApplicationBody,
    budgets: &[(String, f64)],
    expires_at: &str,
    quota: i64,
) -> Result<(), GovernanceError> {
    let grant = format!("agreement-{application}");
    tx.execute(
        "UPDATE applications SET status = 'approved' WHERE id = ?1",
        &[application.into()],
    )?;
    tx.execute(
        "INSERT INTO grants (id, holder) VALUES (?1, ?2)",
        &[(&grant).into(), applicant.into()],
    )?;
    let mut lines = Vec::with_capacity(budgets.len());
    for (dataset, epsilon) in budgets {
        let epsilon = Epsilon::total(*epsilon)?;
        // δ as the policy allows at signing; a later policy lowers it.
        let delta = tx
            .query_opt(
                "SELECT delta_budget FROM policy_budgets WHERE dataset = ?1",
                &[dataset.into()],
            )?
            .map(|r| r.int(0))
            .transpose()?
            .map(Delta::from_units);
        match delta {
            Some(delta) => tx.execute(
                "INSERT INTO budgets (grant_id, dataset, epsilon_total, delta_total) VALUES (?1, ?2, ?3, ?4)",
                &[
                    (&grant).into(),
                    dataset.into(),
                    epsilon.units().into(),
                    delta.units().into(),
                ],
            )?,
            None => tx.execute(
                "INSERT INTO budgets (grant_id, dataset, epsilon_total) VALUES (?1, ?2, ?3)",
                &[(&grant).into(), dataset.into(), epsilon.units().into()],
            )?,
        };
        lines.push(json!({"dataset": dataset, "epsilon": epsilon, "delta": delta}));
    }
    tx.execute(
        "INSERT INTO agreements (grant_id, application_id, expires_at, call_quota, status)
         VALUES (?1, ?2, ?3, ?4, 'active')",
        &[(&grant).into(), application.into(), expires_at.into(), quota.into()],
    )?;
    let smallest = budgets.iter().map(|(_, e)| *e).fold(f64::INFINITY, f64::min);
    audit::append(
        tx,
        owner,
        "agreement_signed",
        json!({
            "agreement": grant, "application": application, "holder": applicant,
            "datasets": body.datasets, "columns": body.columns, "job_kinds": body.job_kinds,
            "scenario": body.scenario,
            "budgets": lines,
            "epsilon": smallest, "expires_at": expires_at, "call_quota": quota,
        }),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
