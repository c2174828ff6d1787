//! `sandbox report` against a database written by the store: the usage
//! report of a grant and of an agreement, as JSON and as Markdown, over a
//! period, to a file; unknown grants, bad dates and a broken ledger fail.

use sandbox_governance::{ApplicationBody, Decision, Grant, JobCharge, Role, Store};
use sandbox_model::{DatasetId, JobOutcome, UsageRecord};
use std::path::Path;
use std::process::{Command, Output};

fn sandbox(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run sandbox")
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ds(s: &str) -> DatasetId {
    s.parse().expect("dataset id")
}

fn usage(job: &str, grant: &str, kind_functions: &[&str], result: Option<&str>) -> UsageRecord {
    UsageRecord {
        job_id: job.into(),
        grant_id: grant.into(),
        datasets: vec![ds("gov.tax_payments")],
        columns_read: vec!["gov.tax_payments.tax_paid".into(), "gov.tax_payments.year".into()],
        columns_filtered: vec!["gov.tax_payments.year".into()],
        columns_aggregated: vec!["gov.tax_payments.tax_paid".into()],
        functions: kind_functions.iter().map(|f| f.to_string()).collect(),
        epsilon: 0.25,
        groups_released: if result.is_some() { 6 } else { 0 },
        groups_suppressed: if result.is_some() { 1 } else { 0 },
        submission_digest: format!("digest-{job}"),
        result_digest: result.map(str::to_string),
        ..Default::default()
    }
}

/// Grant `g`: a released SQL job, a failed one, a released WebAssembly
/// analysis and a refusal. Agreement `agreement-a1`: one released job,
/// then revoked.
fn populate(db: &Path) {
    let store = Store::open(db).expect("store");
    store
        .upsert_grant(&Grant::new(
            "g",
            "bank",
            vec![(ds("gov.tax_payments"), 2.0), (ds("gov.utility_usage"), 1.0)],
        ))
        .expect("grant");
    let run = |job: &str, kind: &str, outcome: JobOutcome, functions: &[&str], result: Option<&str>| {
        store
            .reserve(&JobCharge::new(
                job,
                "g",
                kind,
                &format!("digest-{job}"),
                vec![(ds("gov.tax_payments"), 0.25, 0.0)],
            ))
            .expect("reserve");
        store
            .finish(job, &outcome, &usage(job, "g", functions, result))
            .expect("finish");
    };
    run("j1", "sql", JobOutcome::Released, &["avg", "count"], Some("result-j1"));
    let failed = JobOutcome::Failed {
        message: "too many groups".into(),
    };
    run("j2", "sql", failed, &["avg"], None);
    run(
        "j3",
        "wasm",
        JobOutcome::Released,
        &["wasm:analysis:default_model"],
        Some("result-j3"),
    );
    store
        .record_refusal(
            "j4",
            "g",
            "sql",
            "digest-j4",
            &JobOutcome::Refused {
                rule: "identifier-in-group-by".into(),
            },
        )
        .expect("refusal");

    store
        .create_account("bank", &Role::Applicant, "bank-token-0123456789abcdef0123456789", "ops")
        .expect("account");
    let body = ApplicationBody {
        datasets: vec![ds("gov.tax_payments")],
        columns: vec!["gov.tax_payments.tax_paid".into()],
        job_kinds: vec!["sql".into()],
        scenario: "SME credit model".into(),
        materials: vec!["business licence".into()],
    };
    store.apply("a1", "bank", &body).expect("apply");
    store
        .decide(
            "a1",
            "tax-bureau",
            &Decision::Approve {
                epsilon: 1.0,
                expires_at: "2999-01-01T00:00:00Z".into(),
                call_quota: 10,
            },
        )
        .expect("approve");
    let g = "agreement-a1";
    store
        .reserve(&JobCharge::new(
            "k1",
            g,
            "sql",
            "digest-k1",
            vec![(ds("gov.tax_payments"), 0.4, 0.0)],
        ))
        .expect("reserve");
    store
        .finish(
            "k1",
            &JobOutcome::Released,
            &usage("k1", g, &["sum"], Some("result-k1")),
        )
        .expect("finish");
    store.revoke(g, "ops", "complaint upheld").expect("revoke");
}

#[test]
fn report_a_grant_and_an_agreement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("sandbox.db");
    populate(&db);

    let json: serde_json::Value =
        serde_json::from_str(&stdout(&sandbox(dir.path(), &["report", "--grant", "g", "--json"]))).expect("json");
    assert_eq!(json["grant"], "g");
    assert_eq!(json["holder"], "bank");
    assert!(json["agreement"].is_null());
    assert_eq!(json["status"]["state"], "active");
    let jobs = &json["jobs"];
    assert_eq!(
        (&jobs["submitted"], &jobs["released"], &jobs["failed"], &jobs["refused"]),
        (&4.into(), &2.into(), &1.into(), &1.into())
    );
    assert_eq!(jobs["refused_by_rule"]["identifier-in-group-by"], 1);
    assert_eq!(json["calls"]["in_period"], 3);
    assert_eq!(json["job_kinds"]["sql"], 2);
    assert_eq!(json["job_kinds"]["wasm"], 1);
    assert_eq!(json["functions"]["avg"], 2);
    assert_eq!(json["webassembly"][0]["job"], "j3");
    assert_eq!(json["webassembly"][0]["submission_digest"], "digest-j3");
    let fields = json["fields"].as_array().expect("fields");
    assert_eq!(fields[0]["column"], "gov.tax_payments.tax_paid");
    assert_eq!((&fields[0]["jobs"], &fields[0]["aggregated"]), (&3.into(), &3.into()));
    assert_eq!(fields[1]["filtered"], 3);
    let budgets = json["budgets"].as_array().expect("budgets");
    assert_eq!(budgets[0]["dataset"], "gov.tax_payments");
    assert_eq!(budgets[0]["epsilon_spent"], 0.75);
    assert_eq!(budgets[0]["epsilon_left"], 1.25);
    assert_eq!(budgets[1]["epsilon_left"], 1.0);
    assert_eq!(
        (&json["groups_released"], &json["groups_suppressed"]),
        (&12.into(), &2.into())
    );
    assert_eq!(json["job_list"][0]["result_digest"], "result-j1");
    assert_eq!(json["job_list"][3]["status"], "refused");

    // The head matches what `audit verify` reports.
    let verify: serde_json::Value =
        serde_json::from_str(&stdout(&sandbox(dir.path(), &["audit", "verify", "--json"]))).expect("json");
    assert_eq!(json["ledger"]["head_seq"], verify["entries"]);
    assert_eq!(json["ledger"]["head_hash"], verify["head"]);
    assert_eq!(json["ledger"]["chain_verified"], true);

    let md = stdout(&sandbox(dir.path(), &["report", "--grant", "agreement-a1"]));
    for needle in [
        "# 数据利用报告 / Data usage report",
        "- Grant: `agreement-a1`",
        "- Holder: bank",
        "| scenario (使用场景) | SME credit model |",
        "revoked at ",
        "by ops: complaint upheld",
        "Calls (charged jobs): 1 in the period, 1 up to its end; quota 10, 9 left.",
        "| gov.tax_payments | 1 | 0.4 | 0.4 | 0.6 | policy's | 0 | 0 | policy's |",
        "| `sum` | 1 |",
        "`result-k1`",
        "Hash chain of the entries read: intact",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in\n{md}");
    }

    // A period after everything: the grant exists, nothing ran in it, ε
    // left still counts every charge.
    let later: serde_json::Value = serde_json::from_str(&stdout(&sandbox(
        dir.path(),
        &["report", "--grant", "g", "--from", "2999-01-01", "--json"],
    )))
    .expect("json");
    assert_eq!(later["jobs"]["submitted"], 0);
    assert_eq!(later["budgets"][0]["epsilon_spent"], 0.0);
    assert_eq!(later["budgets"][0]["epsilon_left"], 1.25);
    assert_eq!(later["period"]["from"], "2999-01-01T00:00:00.000Z");

    // To a file.
    let out = dir.path().join("report.md");
    let written = sandbox(
        dir.path(),
        &["report", "--grant", "g", "--out", out.to_str().expect("path")],
    );
    stdout(&written);
    let text = std::fs::read_to_string(&out).expect("report file");
    assert!(text.contains("| submitted | released |"));
    assert!(text.contains("| `identifier-in-group-by` | 1 |"));
}

#[test]
fn unknown_grants_bad_dates_and_a_broken_ledger_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("sandbox.db");
    populate(&db);

    let unknown = sandbox(dir.path(), &["report", "--grant", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no grant `nope`"));

    let bad = sandbox(dir.path(), &["report", "--grant", "g", "--from", "last tuesday"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`last tuesday` is not an RFC 3339 time"));

    rusqlite::Connection::open(&db)
        .expect("raw")
        .execute("UPDATE ledger SET actor = 'someone-else' WHERE seq = 2", [])
        .expect("tamper");
    let broken = sandbox(dir.path(), &["report", "--grant", "g"]);
    assert_eq!(broken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&broken.stderr).contains("ledger BROKEN at entry 2"));
}
