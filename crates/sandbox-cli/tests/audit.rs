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

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_emptied_deleted_replaced_or_damaged_store_is_reported_and_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let created = sandbox(dir, &["account", "create", "ops", "--role", "operator"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let token = stdout(&created).lines().last().expect("token").trim().to_string();
    let ok = sandbox(dir, &["audit", "verify"]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(
        stdout(&ok).contains("database integrity: ok") && stdout(&ok).contains("ledger.head"),
        "{}",
        stdout(&ok)
    );
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let checkpoint = elsewhere.path().join("ledger.checkpoint");
    let exported = sandbox(
        dir,
        &["audit", "checkpoint", "--out", checkpoint.to_str().expect("utf-8")],
    );
    assert!(exported.status.success(), "{}", stderr(&exported));

    let db = dir.join("sandbox.db");
    let saved = std::fs::read(&db).expect("db");

    // Deleted: reported, and no verb creates a fresh store in its place.
    std::fs::remove_file(&db).expect("rm");
    let verify = sandbox(dir, &["audit", "verify"]);
    assert_eq!(verify.status.code(), Some(2), "{}", stdout(&verify));
    assert!(stdout(&verify).contains("does not exist"), "{}", stdout(&verify));
    let whoami = Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .arg("--data-dir")
        .arg(dir)
        .args(["account", "whoami"])
        .env("SANDBOX_TOKEN", &token)
        .output()
        .expect("run");
    assert_eq!(whoami.status.code(), Some(2), "{}", stderr(&whoami));
    assert!(stderr(&whoami).contains("--init"), "{}", stderr(&whoami));
    assert!(!db.exists(), "no fresh store was created");

    // Emptied: a zero-length file is a fresh SQLite database.
    std::fs::write(&db, b"").expect("empty");
    let verify = sandbox(dir, &["audit", "verify", "--json"]);
    assert_eq!(verify.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).expect("json");
    assert_eq!(report["intact"], false);
    assert!(
        report["reason"].as_str().expect("reason").contains("has 0 entries"),
        "{report}"
    );
    let create = sandbox(dir, &["account", "create", "ops", "--role", "operator"]);
    assert_eq!(
        create.status.code(),
        Some(2),
        "the empty store is refused: {}",
        stdout(&create)
    );

    // Restored: intact again.
    std::fs::write(&db, &saved).expect("restore");
    assert!(sandbox(dir, &["audit", "verify"]).status.success());

    // Damaged: 4 KiB of garbage in the middle of the file.
    let mut damaged = saved.clone();
    let middle = (damaged.len() / 2 / 4096).max(1) * 4096;
    if damaged.len() < middle + 4096 {
        damaged.resize(middle + 4096, 0);
    }
    damaged[middle..middle + 4096].fill(0xA5);
    std::fs::write(&db, &damaged).expect("damage");
    let verify = sandbox(dir, &["audit", "verify"]);
    assert_eq!(
        verify.status.code(),
        Some(2),
        "a damaged file is reported: {}",
        stderr(&verify)
    );
    assert!(stdout(&verify).contains("DAMAGED"), "{}", stdout(&verify));

    // A deliberate new start with --init; the old head file is kept aside,
    // and the exported checkpoint still shows the store was replaced.
    std::fs::remove_file(&db).expect("rm");
    let fresh = sandbox(dir, &["--init", "account", "create", "ops", "--role", "operator"]);
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    assert!(sandbox(dir, &["audit", "verify"]).status.success());
    let aside = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("ledger.head.replaced-"));
    assert!(aside);
    let against = sandbox(
        dir,
        &["audit", "verify", "--checkpoint", checkpoint.to_str().expect("utf-8")],
    );
    assert_eq!(against.status.code(), Some(2), "{}", stdout(&against));
    assert!(stdout(&against).contains("replaced"), "{}", stdout(&against));
}
