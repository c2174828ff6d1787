//! `sandbox audit verify|export` against a database written by the store:
//! exit 0 when the ledger is intact, 2 naming the first bad entry when a
//! row was edited behind the store's back.

use sandbox_governance::{Grant, JobCharge, Store};
use std::process::Command;

fn sandbox(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run sandbox")
}

#[test]
fn verify_and_export_the_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("sandbox.db");
    {
        let store = Store::open(&db).expect("store");
        let dataset: sandbox_model::DatasetId = "gov.tax_payments".parse().expect("id");
        store
            .upsert_grant(&Grant::new("g", "bank", vec![(dataset.clone(), 1.0)]))
            .expect("grant");
        for job in ["j1", "j2", "j3"] {
            store
                .reserve(&JobCharge::new(
                    job,
                    "g",
                    "sql",
                    "digest",
                    vec![(dataset.clone(), 0.1, 0.0)],
                ))
                .expect("charge");
        }
    }
    let ok = sandbox(dir.path(), &["audit", "verify"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ledger intact: 4 entries"));

    let export = sandbox(dir.path(), &["audit", "export"]);
    assert!(export.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON entry a line"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[2]["kind"], "job_charged");
    assert_eq!(lines[2]["prev"], lines[1]["hash"]);

    rusqlite::Connection::open(&db)
        .expect("raw")
        .execute("UPDATE ledger SET actor = 'someone-else' WHERE seq = 3", [])
        .expect("tamper");
    let bad = sandbox(dir.path(), &["audit", "verify", "--json"]);
    assert_eq!(bad.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&bad.stdout).expect("json");
    assert_eq!(report["intact"], false);
    assert_eq!(report["first_bad_entry"], 3);
}
