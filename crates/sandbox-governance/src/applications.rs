//! Applications and decisions: an applicant asks for conditionally open
//! datasets with a usage scenario; the owner of each dataset approves or
//! rejects (with a reason); when every owner has approved, the agreement
//! is signed (see [`crate::agreements`]). Every step is a ledger entry in
//! the same transaction.

use crate::GovernanceError;
use crate::amount::{Delta, Epsilon};
use crate::audit;
use crate::db::Tx;
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
                    epsilon,
                    expires_at,
                    call_quota,
                } => {
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
mod tests {
    use super::*;
    use crate::testing::test_dbs;
    use crate::{AuditReport, GovernanceError, JobCharge, Role};

    const BANK_TOKEN: &str = "bank-token-0123456789abcdef0123456789";
    const TAX_TOKEN: &str = "tax-owner-token-0123456789abcdef012345";

    fn ds(s: &str) -> DatasetId {
        s.parse().expect("dataset id")
    }

    fn accounts(s: &Store) {
        s.create_account("ops", &Role::Operator, "operator-token-0123456789abcdef0123", "ops")
            .expect("operator");
        s.create_account("bank", &Role::Applicant, BANK_TOKEN, "ops")
            .expect("bank");
        s.create_account(
            "tax-bureau",
            &Role::DataOwner { provider: "tax".into() },
            TAX_TOKEN,
            "ops",
        )
        .expect("owner");
    }

    fn body(scenario: &str) -> ApplicationBody {
        ApplicationBody {
            datasets: vec![ds("gov.tax_payments")],
            columns: vec!["gov.tax_payments.tax_paid".into()],
            job_kinds: vec!["sql".into()],
            scenario: scenario.into(),
            materials: vec!["business licence".into()],
        }
    }

    fn job(id: &str, grant: &str) -> JobCharge {
        JobCharge::new(id, grant, "sql", "digest", vec![(ds("gov.tax_payments"), 0.1, 0.0)])
    }

    fn approve(quota: u64, expires_at: &str) -> Decision {
        Decision::Approve {
            epsilon: 1.0,
            expires_at: expires_at.into(),
            call_quota: quota,
        }
    }

    #[test]
    fn tokens_are_stored_as_hashes_and_authenticate() {
        for db in test_dbs() {
            let s = db.open();
            accounts(&s);
            tokens(&s);
        }
    }

    fn tokens(s: &Store) {
        assert_eq!(
            s.authenticate(BANK_TOKEN).expect("auth"),
            ("bank".into(), Role::Applicant)
        );
        assert_eq!(
            s.authenticate(TAX_TOKEN).expect("auth").1,
            Role::DataOwner { provider: "tax".into() }
        );
        assert!(matches!(s.authenticate("nope"), Err(GovernanceError::Unauthenticated)));
        let stored: Vec<String> = s
            .read(|tx| {
                tx.query("SELECT token_sha256 FROM accounts", &[])?
                    .iter()
                    .map(|r| r.text(0))
                    .collect()
            })
            .expect("tokens");
        assert!(stored.iter().all(|t| t.len() == 64 && t != BANK_TOKEN));
        assert!(s.create_account("short", &Role::Applicant, "short", "ops").is_err());
    }

    #[test]
    fn apply_reject_resubmit_approve_run_then_quota_revoke_and_expiry_refuse() {
        for db in test_dbs() {
            let s = db.open();
            accounts(&s);
            lifecycle(&s);
        }
    }

    fn lifecycle(s: &Store) {
        assert!(matches!(
            s.apply("a1", "tax-bureau", &body("x")),
            Err(GovernanceError::Forbidden(_))
        ));
        assert_eq!(s.apply("a1", "bank", &body("credit model")).expect("apply"), 1);
        // A rejection must say why.
        let blank = Decision::Reject { reason: "  ".into() };
        assert!(matches!(
            s.decide("a1", "tax-bureau", &blank),
            Err(GovernanceError::Invalid(_))
        ));
        let reason = Decision::Reject {
            reason: "describe how scores are used".into(),
        };
        s.decide("a1", "tax-bureau", &reason).expect("reject");
        // Nothing runs without an agreement.
        assert!(matches!(
            s.reserve(&job("j0", "agreement-a1")),
            Err(GovernanceError::NotCovered { .. })
        ));
        assert_eq!(
            s.apply(
                "a1",
                "bank",
                &body("credit model for SME loans, scores stay in the sandbox")
            )
            .expect("resubmit"),
            2
        );
        s.decide("a1", "tax-bureau", &approve(2, "2999-01-01T00:00:00Z"))
            .expect("approve");
        assert!(matches!(
            s.apply("a1", "bank", &body("again")),
            Err(GovernanceError::Invalid(_))
        ));
        let agreement = s.agreement("agreement-a1").expect("read").expect("exists");
        assert_eq!(
            (agreement.holder.as_str(), agreement.status.as_str()),
            ("bank", "active")
        );
        assert_eq!(agreement.terms.columns, ["gov.tax_payments.tax_paid"]);
        s.reserve(&job("j1", "agreement-a1")).expect("first call");
        s.reserve(&job("j2", "agreement-a1")).expect("second call");
        let e = s.reserve(&job("j3", "agreement-a1")).expect_err("quota");
        assert!(e.to_string().contains("quota of 2 calls"), "{e}");

        // Revocation.
        s.apply("a2", "bank", &body("second scenario")).expect("apply");
        s.decide("a2", "tax-bureau", &approve(100, "2999-01-01T00:00:00Z"))
            .expect("approve");
        s.reserve(&job("k1", "agreement-a2")).expect("runs");
        s.reserve(&job("k1b", "agreement-a2")).expect("running when revoked");
        s.revoke("agreement-a2", "ops", "complaint upheld").expect("revoke");
        let usage = sandbox_model::UsageRecord {
            job_id: "k1b".into(),
            grant_id: "agreement-a2".into(),
            ..Default::default()
        };
        let e = s
            .finish("k1b", &sandbox_model::JobOutcome::Released, &usage)
            .expect_err("not released");
        assert!(matches!(e, GovernanceError::AgreementInactive { .. }), "{e}");
        let e = s.reserve(&job("k2", "agreement-a2")).expect_err("revoked");
        assert!(matches!(e, GovernanceError::AgreementInactive { .. }), "{e}");
        assert!(e.to_string().contains("complaint upheld"));

        // Expiry.
        s.apply("a3", "bank", &body("short pilot")).expect("apply");
        s.decide("a3", "tax-bureau", &approve(100, "2020-01-01T00:00:00Z"))
            .expect("approve");
        let e = s.reserve(&job("m1", "agreement-a3")).expect_err("expired");
        assert!(e.to_string().contains("expired"), "{e}");

        // Refused jobs charge nothing; the whole story is in the ledger.
        let budget = s.budget("agreement-a1").expect("budget");
        assert!((budget[0].epsilon_spent - 0.2).abs() < 1e-12);
        let kinds: Vec<String> = s
            .audit_entries()
            .expect("entries")
            .into_iter()
            .map(|e| e.kind)
            .collect();
        for kind in [
            "account_created",
            "application_submitted",
            "application_rejected",
            "agreement_signed",
            "job_charged",
            "agreement_revoked",
        ] {
            assert!(kinds.iter().any(|k| k == kind), "{kind} missing from {kinds:?}");
        }
        assert!(matches!(s.verify_audit().expect("verify"), AuditReport::Intact { .. }));
    }

    #[test]
    fn an_approval_cannot_exceed_the_policy_budget() {
        for db in test_dbs() {
            let s = db.open();
            accounts(&s);
            let policy = |eps: f64, delta: f64| crate::Registration {
                dataset: "gov.tax_payments".into(),
                provider: "tax".into(),
                open_class: "conditional".into(),
                catalog_digest: "c".into(),
                policy_digest: format!("p{eps}"),
                epsilon_budget: Some(eps),
                delta_budget: Some(delta),
            };
            s.register_datasets(&[policy(10.0, 1e-4)], "platform")
                .expect("register");
            s.apply("a1", "bank", &body("credit model")).expect("apply");
            let terms = |epsilon: f64| Decision::Approve {
                epsilon,
                expires_at: "2999-01-01T00:00:00Z".into(),
                call_quota: 100,
            };
            let e = s
                .decide("a1", "tax-bureau", &terms(16.0))
                .expect_err("above the policy");
            assert!(matches!(e, GovernanceError::OverPolicyBudget { .. }), "{e}");
            assert!(e.to_string().contains("epsilon_budget is 10"), "{e}");
            let e = s
                .decide("a1", "tax-bureau", &terms(10.000_000_000_1))
                .expect_err("above by less than a unit");
            assert!(matches!(e, GovernanceError::OverPolicyBudget { .. }), "{e}");
            assert!(s.agreement("agreement-a1").expect("read").is_none(), "nothing signed");
            s.decide("a1", "tax-bureau", &terms(10.0))
                .expect("at the policy's budget");
            let line = &s.budget("agreement-a1").expect("budget")[0];
            assert_eq!((line.epsilon_total, line.delta_total), (10.0, 1e-4), "{}", db.name());
            // The owner lowers the policy later: the agreement's line follows.
            s.register_datasets(&[policy(4.0, 1e-5)], "platform").expect("lower");
            let line = &s.budget("agreement-a1").expect("budget")[0];
            assert_eq!((line.epsilon_total, line.delta_total), (4.0, 1e-5));
            let signed = s
                .audit_entries()
                .expect("entries")
                .into_iter()
                .find(|e| e.kind == "agreement_signed")
                .expect("signed");
            assert_eq!(signed.payload["budgets"][0]["delta"], 1e-4);
        }
    }

    #[test]
    fn every_owner_approves_before_the_agreement_exists() {
        for db in test_dbs() {
            let s = db.open();
            accounts(&s);
            s.create_account(
                "grid",
                &Role::DataOwner {
                    provider: "utilities".into(),
                },
                "grid-owner-token-0123456789abcdef0123",
                "ops",
            )
            .expect("grid");
            let (tax, power) = (ds("gov.tax_payments"), ds("gov.utility_usage"));
            let mut fused = body("fused credit model");
            fused.datasets = vec![tax.clone(), power.clone()];
            s.apply("f", "bank", &fused).expect("apply");
            let terms = |eps: f64, quota: u64, expires: &str| Decision::Approve {
                epsilon: eps,
                expires_at: expires.into(),
                call_quota: quota,
            };
            assert!(matches!(
                s.decide_for("f", "grid", &terms(1.0, 5, "2999-01-01T00:00:00Z"), &[]),
                Err(GovernanceError::Forbidden(_))
            ));
            s.decide_for(
                "f",
                "tax-bureau",
                &terms(1.0, 50, "2999-01-01T00:00:00Z"),
                std::slice::from_ref(&tax),
            )
            .expect("tax approves");
            assert!(
                s.agreement("agreement-f").expect("read").is_none(),
                "one owner is not enough"
            );
            assert!(s.reserve(&job("x", "agreement-f")).is_err());
            s.decide_for(
                "f",
                "grid",
                &terms(2.0, 5, "2998-01-01T00:00:00Z"),
                std::slice::from_ref(&power),
            )
            .expect("grid approves");
            let a = s.agreement("agreement-f").expect("read").expect("signed");
            assert_eq!((a.call_quota, a.expires_at.as_str()), (5, "2998-01-01T00:00:00Z"));
            let budget = s.budget("agreement-f").expect("budget");
            let eps: Vec<(String, f64)> = budget.iter().map(|b| (b.dataset.clone(), b.epsilon_total)).collect();
            assert_eq!(
                eps,
                [
                    ("gov.tax_payments".to_string(), 1.0),
                    ("gov.utility_usage".to_string(), 2.0)
                ],
                "{}",
                db.name()
            );

            // A rejection by one owner rejects the whole application and
            // clears the other's approval.
            s.apply("g", "bank", &fused).expect("apply");
            s.decide_for(
                "g",
                "tax-bureau",
                &terms(1.0, 50, "2999-01-01T00:00:00Z"),
                std::slice::from_ref(&tax),
            )
            .expect("tax approves");
            s.decide_for(
                "g",
                "grid",
                &Decision::Reject {
                    reason: "the scenario does not need monthly data".into(),
                },
                std::slice::from_ref(&power),
            )
            .expect("grid rejects");
            s.apply("g", "bank", &fused).expect("resubmit");
            s.decide_for(
                "g",
                "grid",
                &terms(1.0, 5, "2999-01-01T00:00:00Z"),
                std::slice::from_ref(&power),
            )
            .expect("grid approves the revision");
            assert!(
                s.agreement("agreement-g").expect("read").is_none(),
                "tax must approve the revision again"
            );
        }
    }
}
