//! Usage reports built from ledgers written for the purpose.

use super::*;
use sandbox_ledger::Chain;
use serde_json::json;

/// Builds a ledger with `Chain`, one minute apart from 2026-11-01T10:00Z
/// unless a time is given.
struct Ledger {
    chain: Chain,
    entries: Vec<Entry>,
}

impl Ledger {
    fn new() -> Self {
        Ledger {
            chain: Chain::new(),
            entries: Vec::new(),
        }
    }

    fn at(&mut self, at: &str, actor: &str, kind: &str, payload: Value) -> &mut Self {
        let e = self.chain.append(at, actor, kind, payload);
        self.entries.push(e);
        self
    }

    fn add(&mut self, actor: &str, kind: &str, payload: Value) -> &mut Self {
        let at = format!("2026-11-01T10:{:02}:00.000Z", self.entries.len());
        self.at(&at, actor, kind, payload)
    }

    fn grant(&mut self, grant: &str, budgets: &[(&str, f64)]) -> &mut Self {
        let budgets: Vec<Value> = budgets
            .iter()
            .map(|(d, e)| json!({"dataset": d, "epsilon": e}))
            .collect();
        self.add(
            "bank",
            "grant_created",
            json!({"grant": grant, "holder": "bank", "budgets": budgets}),
        )
    }

    fn charge(&mut self, job: &str, grant: &str, kind: &str, charges: &[(&str, f64)]) -> &mut Self {
        let charges: Vec<Value> = charges
            .iter()
            .map(|(d, e)| json!({"dataset": d, "epsilon": e, "delta": 0.0}))
            .collect();
        self.add(
            "bank",
            "job_charged",
            json!({"job": job, "grant": grant, "kind": kind, "submission_digest": format!("sub-{job}"), "charges": charges}),
        )
    }

    fn finish(&mut self, job: &str, grant: &str, outcome: Value, usage: Value) -> &mut Self {
        let status = outcome["status"].clone();
        let mut u = json!({
            "job_id": job, "grant_id": grant, "datasets": ["gov.a"], "columns_read": [],
            "columns_filtered": [], "columns_grouped": [], "columns_aggregated": [], "functions": [],
            "epsilon": 0.5, "delta": 0.0, "groups_released": 0, "groups_suppressed": 0,
            "submission_digest": format!("sub-{job}"), "result_digest": null,
        });
        if let (Some(u), Some(extra)) = (u.as_object_mut(), usage.as_object()) {
            for (k, v) in extra {
                u.insert(k.clone(), v.clone());
            }
        }
        self.add(
            "bank",
            "job_finished",
            json!({"job": job, "status": status, "outcome": outcome, "usage": u}),
        )
    }

    fn refuse(&mut self, job: &str, grant: &str, rule: &str) -> &mut Self {
        self.add(
            "bank",
            "job_refused",
            json!({"job": job, "grant": grant, "kind": "sql", "submission_digest": "d",
                   "outcome": {"status": "refused", "rule": rule}}),
        )
    }

    fn signed(&mut self, application: &str, expires_at: &str) -> &mut Self {
        self.add(
            "tax-bureau",
            "agreement_signed",
            json!({
                "agreement": format!("agreement-{application}"), "application": application, "holder": "bank",
                "datasets": ["gov.a"], "columns": ["gov.a.x"], "job_kinds": ["sql"],
                "scenario": "credit | model", "epsilon": 2.0, "expires_at": expires_at, "call_quota": 10,
            }),
        )
    }
}

fn released() -> Value {
    json!({"status": "released"})
}

/// A grant with every kind of outcome, and noise from another grant.
fn mixed() -> Vec<Entry> {
    let mut l = Ledger::new();
    l.grant("g", &[("gov.a", 5.0), ("gov.b", 1.0)])
        .grant("other", &[("gov.a", 9.0)])
        .charge("j1", "g", "sql", &[("gov.a", 0.5), ("gov.b", 0.5)])
        .finish(
            "j1",
            "g",
            released(),
            json!({"columns_read": ["gov.a.x", "gov.b.y"], "columns_grouped": ["gov.a.d"],
                   "columns_aggregated": ["gov.a.x"], "functions": ["avg", "count"],
                   "groups_released": 7, "groups_suppressed": 2, "result_digest": "r1"}),
        )
        .charge("j2", "g", "sql", &[("gov.a", 0.25)])
        .finish(
            "j2",
            "g",
            json!({"status": "failed", "message": "too many groups"}),
            json!({"columns_read": ["gov.a.x"], "columns_filtered": ["gov.a.x"], "functions": ["avg"]}),
        )
        .charge("j3", "g", "wasm", &[("gov.a", 0.25)])
        .finish(
            "j3",
            "g",
            json!({"status": "cancelled"}),
            json!({"columns_read": ["gov.a.x"], "functions": ["wasm:analysis:model"]}),
        )
        .refuse("j4", "g", "identifier-in-group-by")
        .refuse("j5", "g", "identifier-in-group-by")
        .refuse("j6", "g", "budget-exhausted")
        .charge("x1", "other", "sql", &[("gov.a", 3.0)])
        .charge("j7", "g", "sql", &[("gov.a", 0.1)])
        .finish(
            "j7",
            "g",
            json!({"status": "dry_run"}),
            json!({"functions": ["wasm:risk_score", "avg"]}),
        )
        .charge("j8", "g", "sql", &[("gov.a", 0.1)]);
    l.entries
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn counts_jobs_by_outcome_and_refusals_by_rule() {
    let r = UsageReport::from_entries(&mixed(), "g", None, None).expect("report");
    assert_eq!(r.holder, "bank");
    let j = &r.jobs;
    assert_eq!(
        (
            j.submitted,
            j.charged,
            j.released,
            j.failed,
            j.cancelled,
            j.dry_runs,
            j.running,
            j.refused
        ),
        (8, 5, 1, 1, 1, 1, 1, 3)
    );
    assert_eq!(j.refused_by_rule["identifier-in-group-by"], 2);
    assert_eq!(j.refused_by_rule["budget-exhausted"], 1);
    assert_eq!((r.calls.in_period, r.calls.to_end, r.calls.quota), (5, 5, None));
    assert_eq!(r.job_kinds["sql"], 4);
    assert_eq!(r.job_kinds["wasm"], 1);
    assert_eq!((r.groups_released, r.groups_suppressed), (7, 2));
    let j1 = &r.job_list[0];
    assert_eq!((j1.job.as_str(), j1.status.as_str()), ("j1", "released"));
    assert_eq!(j1.result_digest.as_deref(), Some("r1"));
    assert_eq!(j1.datasets, ["gov.a", "gov.b"]);
    assert_eq!(r.job_list[1].detail.as_deref(), Some("too many groups"));
    assert!(r.job_list.iter().all(|l| l.job != "x1"), "another grant's job");
    assert_eq!(r.status.state, "active");
    assert!(r.agreement.is_none());
    assert!(r.ledger.chain_verified);
    assert_eq!(r.ledger.entries, 15);
    assert_eq!(
        (r.ledger.first_seq, r.ledger.last_seq, r.ledger.head_seq),
        (Some(1), Some(15), 15)
    );
    assert_eq!(r.ledger.grant_entries, 13);
    assert_eq!(r.ledger.head_hash, mixed()[14].hash);
}

#[test]
fn fields_functions_and_webassembly_used() {
    let r = UsageReport::from_entries(&mixed(), "g", None, None).expect("report");
    let field = |c: &str| r.fields.iter().find(|f| f.column == c).expect(c).clone();
    let x = field("gov.a.x");
    assert_eq!((x.jobs, x.read, x.filtered, x.grouped, x.aggregated), (3, 3, 1, 0, 1));
    let d = field("gov.a.d");
    assert_eq!((d.jobs, d.grouped), (1, 1));
    assert_eq!(field("gov.b.y").jobs, 1);
    assert_eq!(r.fields.len(), 3);
    assert_eq!(r.functions["avg"], 3);
    assert_eq!(r.functions["count"], 1);
    assert_eq!(r.functions["wasm:analysis:model"], 1);
    let wasm: Vec<(&str, &str)> = r
        .webassembly
        .iter()
        .map(|w| (w.job.as_str(), w.submission_digest.as_str()))
        .collect();
    assert_eq!(wasm, [("j3", "sub-j3"), ("j7", "sub-j7")]);
    assert_eq!(r.webassembly[1].functions, ["wasm:risk_score"]);
}

#[test]
fn epsilon_spent_in_the_period_and_left_overall() {
    let r = UsageReport::from_entries(&mixed(), "g", None, None).expect("report");
    let a = &r.budgets[0];
    assert_eq!(a.dataset, "gov.a");
    assert!(close(a.epsilon_total, 5.0));
    assert!(close(a.epsilon_spent, 1.2), "{}", a.epsilon_spent);
    assert!(close(a.epsilon_left, 3.8));
    let b = &r.budgets[1];
    assert!(close(b.epsilon_spent, 0.5) && close(b.epsilon_left, 0.5));
    assert_eq!(r.budgets.len(), 2);

    // From j3's charge (10:06) on: earlier charges still count toward ε left.
    let r = UsageReport::from_entries(&mixed(), "g", Some("2026-11-01T10:06:00Z"), None).expect("report");
    let a = &r.budgets[0];
    assert!(close(a.epsilon_spent, 0.45), "{}", a.epsilon_spent);
    assert!(close(a.epsilon_spent_to_end, 1.2));
    assert!(close(a.epsilon_left, 3.8));
    assert!(close(r.budgets[1].epsilon_spent, 0.0));
    assert!(close(r.budgets[1].epsilon_left, 0.5));
}

#[test]
fn the_period_selects_jobs_by_submission_and_outcomes_by_its_end() {
    let entries = mixed();
    // [10:02, 10:05): j1 charged 10:02 and finished 10:03; j2 charged 10:04, finished 10:05 (after the end).
    let r = UsageReport::from_entries(
        &entries,
        "g",
        Some("2026-11-01T10:02:00Z"),
        Some("2026-11-01T10:05:00Z"),
    )
    .expect("report");
    let jobs: Vec<(&str, &str)> = r.job_list.iter().map(|l| (l.job.as_str(), l.status.as_str())).collect();
    assert_eq!(jobs, [("j1", "released"), ("j2", "running")]);
    assert_eq!((r.jobs.released, r.jobs.running, r.jobs.failed), (1, 1, 0));
    assert_eq!(r.calls.in_period, 2);
    // j2's usage is not in yet: only j1's fields.
    assert_eq!(r.fields.iter().find(|f| f.column == "gov.a.x").map(|f| f.jobs), Some(1));
    // Charges after the end count neither as spent nor against ε left.
    let a = &r.budgets[0];
    assert!(close(a.epsilon_spent, 0.75) && close(a.epsilon_left, 4.25));
    assert_eq!((r.ledger.first_seq, r.ledger.last_seq), (Some(3), Some(5)));
    assert!(
        r.to_markdown()
            .contains("- Period: from 2026-11-01T10:02:00.000Z (included) to 2026-11-01T10:05:00.000Z (excluded)")
    );
    assert_eq!(r.ledger.head_seq, 5);
    assert_eq!(r.ledger.head_hash, entries[4].hash);
    // A period before anything happened: the grant exists, nothing ran.
    let r = UsageReport::from_entries(&entries, "g", None, Some("2026-10-01")).expect("report");
    assert_eq!(r.jobs.submitted, 0);
    assert!(r.budgets.is_empty());
    assert_eq!((r.ledger.head_seq, r.ledger.head_hash.as_str()), (0, GENESIS));
    // Offsets are normalised to UTC: 18:02+08:00 is 10:02Z.
    let r = UsageReport::from_entries(&entries, "g", Some("2026-11-01T18:02:00+08:00"), None).expect("report");
    assert_eq!(r.period.from.as_deref(), Some("2026-11-01T10:02:00.000Z"));
    assert_eq!(r.job_list[0].job, "j1");
    assert_eq!(r.jobs.submitted, 8);
}

#[test]
fn agreement_terms_quota_and_revocation() {
    let mut l = Ledger::new();
    l.signed("a1", "2026-12-01T00:00:00Z")
        .charge("j1", "agreement-a1", "sql", &[("gov.a", 0.5)])
        .at(
            "2026-11-15T00:00:00.000Z",
            "ops",
            "agreement_revoked",
            json!({"agreement": "agreement-a1", "reason": "complaint upheld"}),
        );
    let r = UsageReport::from_entries(&l.entries, "agreement-a1", None, None).expect("report");
    assert_eq!(r.holder, "bank");
    let a = r.agreement.as_ref().expect("terms");
    assert_eq!((a.application.as_str(), a.call_quota), ("a1", 10));
    assert_eq!(a.columns, ["gov.a.x"]);
    assert_eq!(a.signed_by, "tax-bureau");
    assert_eq!(r.status.state, "revoked");
    assert_eq!(r.status.reason.as_deref(), Some("complaint upheld"));
    assert_eq!(r.status.revoked_by.as_deref(), Some("ops"));
    assert!(!r.status.expired);
    assert_eq!((r.calls.to_end, r.calls.left), (1, Some(9)));
    assert!(close(r.budgets[0].epsilon_total, 2.0) && close(r.budgets[0].epsilon_left, 1.5));

    // Before the revocation it was active; after the expiry it is expired.
    let r = UsageReport::from_entries(&l.entries, "agreement-a1", None, Some("2026-11-10")).expect("report");
    assert_eq!((r.status.state.as_str(), r.status.reason.as_ref()), ("active", None));
    let r = UsageReport::from_entries(&l.entries, "agreement-a1", None, Some("2026-12-01")).expect("report");
    assert!(r.status.expired);
}

#[test]
fn an_unknown_grant_and_bad_periods_are_refused() {
    let entries = mixed();
    assert!(matches!(
        UsageReport::from_entries(&entries, "nope", None, None),
        Err(GovernanceError::NoGrant(g)) if g == "nope"
    ));
    assert!(matches!(
        UsageReport::from_entries(&[], "g", None, None),
        Err(GovernanceError::NoGrant(_))
    ));
    for (from, to) in [
        (Some("yesterday"), None),
        (None, Some("2026-13-01")),
        (Some("2026-11-01 10:00"), None),
        (Some(""), None),
    ] {
        let e = UsageReport::from_entries(&entries, "g", from, to).expect_err("bad date");
        assert!(
            matches!(&e, GovernanceError::Invalid(m) if m.contains("not an RFC 3339 time")),
            "{e}"
        );
    }
    let e =
        UsageReport::from_entries(&entries, "g", Some("2026-11-02"), Some("2026-11-01T00:00:00Z")).expect_err("empty");
    assert!(e.to_string().contains("the period is empty"), "{e}");
    assert!(UsageReport::from_entries(&entries, "g", Some("2026-11-02"), Some("2026-11-02")).is_err());
}

#[test]
fn a_tampered_ledger_is_flagged() {
    let mut entries = mixed();
    entries[3].payload["status"] = json!("failed");
    let r = UsageReport::from_entries(&entries, "g", None, None).expect("report");
    assert!(!r.ledger.chain_verified);
    assert!(r.to_markdown().contains("BROKEN"));
}

#[test]
fn markdown_carries_the_key_figures() {
    let mut l = Ledger::new();
    l.signed("a1", "2999-01-01T00:00:00Z")
        .charge("j1", "agreement-a1", "sql", &[("gov.a", 0.5)])
        .finish(
            "j1",
            "agreement-a1",
            released(),
            json!({"columns_read": ["gov.a.x"], "functions": ["sum"], "groups_released": 4, "result_digest": "abc123"}),
        )
        .refuse("j2", "agreement-a1", "k-anonymity");
    let r = UsageReport::from_entries(&l.entries, "agreement-a1", None, None).expect("report");
    let md = r.to_markdown();
    for needle in [
        "# 数据利用报告 / Data usage report",
        "- Grant: `agreement-a1`",
        "- Holder: bank",
        "- Period: from the start of the ledger to the end of the ledger",
        "| scenario (使用场景) | credit \\| model |",
        "| call quota | 10 |",
        "Status at the end of the period: active",
        "| 2 | 1 | 0 | 0 | 0 | 0 | 0 | 1 |",
        "Calls (charged jobs): 1 in the period, 1 up to its end; quota 10, 9 left.",
        "| `k-anonymity` | 1 |",
        "| gov.a | 2 | 0.5 | 0.5 | 1.5 | policy's | 0 | 0 | policy's |",
        "| gov.a.x | 1 | 1 | 0 | 0 | 0 |",
        "| `sum` | 1 |",
        "Jobs run by kind: sql: 1.",
        "Groups released: 4; suppressed: 0.",
        "`abc123`",
        &format!("Head at the end of the period: entry 4, hash `{}`", l.entries[3].hash),
        "Hash chain of the entries read: intact",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in\n{md}");
    }
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["jobs"]["released"], 1);
    assert_eq!(json["budgets"][0]["epsilon_left"], 1.5);
    assert_eq!(json["agreement"]["call_quota"], 10);
}

#[test]
fn reads_the_entries_the_store_writes() {
    use crate::{ApplicationBody, Decision, JobCharge, Role, Store};
    use sandbox_model::{DatasetId, JobOutcome};
    let ds = |s: &str| -> DatasetId { s.parse().expect("dataset") };
    let s = Store::open_in_memory().expect("store");
    s.create_account("ops", &Role::Operator, "operator-token-0123456789abcdef0123", "ops")
        .expect("ops");
    s.create_account("bank", &Role::Applicant, "bank-token-0123456789abcdef0123456789", "ops")
        .expect("bank");
    let body = ApplicationBody {
        datasets: vec![ds("gov.tax_payments")],
        columns: vec!["gov.tax_payments.tax_paid".into()],
        job_kinds: vec!["sql".into(), "wasm".into()],
        scenario: "credit model".into(),
        materials: vec![],
    };
    // The policy's budgets: δ for the agreement comes from them.
    let policy = crate::Registration {
        dataset: "gov.tax_payments".into(),
        provider: "tax".into(),
        open_class: "conditional".into(),
        catalog_digest: "c".into(),
        policy_digest: "p".into(),
        epsilon_budget: Some(10.0),
        delta_budget: Some(1e-4),
        zcdp_delta: None,
    };
    s.register_datasets(&[policy], "platform").expect("register");
    s.apply("a1", "bank", &body).expect("apply");
    let approve = Decision::Approve {
        epsilon: 1.0,
        expires_at: "2999-01-01T00:00:00Z".into(),
        call_quota: 5,
    };
    s.decide("a1", "tax-bureau", &approve).expect("approve");
    let g = "agreement-a1";
    s.reserve(&JobCharge::new(
        "j1",
        g,
        "sql",
        "d1",
        vec![(ds("gov.tax_payments"), 0.3, 1e-6)],
    ))
    .expect("reserve");
    let usage = UsageRecord {
        job_id: "j1".into(),
        grant_id: g.into(),
        datasets: vec![ds("gov.tax_payments")],
        columns_read: vec!["gov.tax_payments.tax_paid".into()],
        columns_aggregated: vec!["gov.tax_payments.tax_paid".into()],
        functions: vec!["avg".into()],
        epsilon: 0.3,
        delta: 1e-6,
        groups_released: 3,
        submission_digest: "d1".into(),
        result_digest: Some("r1".into()),
        ..Default::default()
    };
    s.finish("j1", &JobOutcome::Released, &usage).expect("finish");
    s.record_refusal("j2", g, "sql", "d2", &JobOutcome::Refused { rule: "k".into() })
        .expect("refuse");
    s.revoke(g, "ops", "complaint upheld").expect("revoke");

    let r = UsageReport::from_entries(&s.audit_entries().expect("entries"), g, None, None).expect("report");
    assert_eq!(r.holder, "bank");
    let a = r.agreement.as_ref().expect("terms");
    assert_eq!(a.datasets, ["gov.tax_payments"]);
    assert_eq!(a.job_kinds, ["sql", "wasm"]);
    assert_eq!((a.call_quota, a.expires_at.as_str()), (5, "2999-01-01T00:00:00Z"));
    assert_eq!(
        (r.jobs.released, r.jobs.refused, r.calls.to_end, r.calls.left),
        (1, 1, 1, Some(4))
    );
    assert_eq!(r.status.reason.as_deref(), Some("complaint upheld"));
    let b = &r.budgets[0];
    assert_eq!((b.epsilon_left, b.delta_spent), (0.7, 1e-6), "exact sums");
    assert_eq!((b.delta_total, b.delta_left), (Some(1e-4), Some(9.9e-5)));
    assert_eq!(r.fields[0].aggregated, 1);
    assert_eq!(r.job_list[0].result_digest.as_deref(), Some("r1"));
    assert!(r.ledger.chain_verified);
    match s.verify_audit().expect("verify") {
        crate::AuditReport::Intact { entries, head } => {
            assert_eq!((r.ledger.head_seq, &r.ledger.head_hash), (entries, &head));
        }
        crate::AuditReport::Broken(b) => panic!("{b}"),
    }
}
