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

    // Expiry: only a future RFC 3339 time is accepted; an agreement whose
    // time has passed refuses jobs.
    s.apply("a3", "bank", &body("short pilot")).expect("apply");
    for bad in ["2020-01-01T00:00:00Z", "garbage", "", "2999-01-01T00:00:00Z\u{0}"] {
        let e = s.decide("a3", "tax-bureau", &approve(100, bad)).expect_err(bad);
        assert!(
            matches!(e, GovernanceError::Invalid(_)) && e.to_string().contains("expires_at"),
            "{e}"
        );
    }
    s.decide("a3", "tax-bureau", &approve(100, "2999-01-01T00:00:00Z"))
        .expect("approve");
    s.raw("UPDATE agreements SET expires_at = '2020-01-01T00:00:00Z' WHERE grant_id = 'agreement-a3'")
        .expect("let time pass");
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
            zcdp_delta: None,
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
