//! The governance verbs through the binary, each acting with an account's
//! API token: the operator bootstraps accounts, a bank applies, the tax
//! bureau approves, the bank (and only the bank) runs a job under the
//! agreement, the owner revokes it, and the ledger verifies.

use std::path::Path;
use std::process::{Command, Output};

fn sandbox(dir: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandbox"));
    cmd.arg("--data-dir").arg(dir).args(args).env_remove("SANDBOX_TOKEN");
    if let Some(t) = token {
        cmd.env("SANDBOX_TOKEN", t);
    }
    cmd.output().expect("run sandbox")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The token printed on the last line of `account create`.
fn token(out: &Output) -> String {
    ok(out).lines().last().expect("token line").trim().to_string()
}

const SQL: &str = "SELECT t.year, AVG(t.tax_paid) FROM gov.tax_payments t GROUP BY t.year";

#[test]
fn accounts_apply_approve_run_revoke() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    assert!(
        !sandbox(dir, None, &["account", "create", "bank", "--role", "applicant"])
            .status
            .success(),
        "the first account must be the operator"
    );
    let ops = token(&sandbox(dir, None, &["account", "create", "ops", "--role", "operator"]));
    assert!(ops.starts_with("sbx_") && ops.len() > 40, "{ops}");
    refused(&sandbox(
        dir,
        None,
        &["account", "create", "bank", "--role", "applicant"],
    ));
    let bank = token(&sandbox(
        dir,
        Some(&ops),
        &["account", "create", "bank", "--role", "applicant"],
    ));
    let tax = token(&sandbox(
        dir,
        Some(&ops),
        &[
            "account",
            "create",
            "tax",
            "--role",
            "owner",
            "--provider",
            "shanghai-tax",
        ],
    ));
    refused(&sandbox(
        dir,
        Some(&bank),
        &["account", "create", "x", "--role", "applicant"],
    ));
    assert!(ok(&sandbox(dir, Some(&bank), &["account", "whoami"])).starts_with("bank"));

    let apply = [
        "apply",
        "a1",
        "--dataset",
        "gov.tax_payments",
        "--column",
        "gov.tax_payments.*",
        "--scenario",
        "SME credit scoring; aggregates only",
        "--material",
        "business licence",
    ];
    ok(&sandbox(dir, Some(&bank), &apply));
    let approve = [
        "decide",
        "a1",
        "--approve",
        "--epsilon",
        "3",
        "--expires",
        "2999-01-01T00:00:00Z",
        "--quota",
        "5",
    ];
    assert!(refused(&sandbox(dir, Some(&bank), &approve)).contains("decide-not-owner"));
    assert!(ok(&sandbox(dir, Some(&tax), &approve)).contains("agreement-a1"));
    assert!(ok(&sandbox(dir, None, &["agreement", "agreement-a1"])).contains("calls 0/5"));

    ok(&sandbox(dir, None, &["data", "generate", "--entities", "400"]));
    let run = |token: Option<&str>| sandbox(dir, token, &["sql", "--grant", "agreement-a1", SQL]);
    assert!(refused(&run(Some(&tax))).contains("agreement-holder"));
    refused(&run(None));
    ok(&run(Some(&bank)));

    assert!(refused(&sandbox(dir, Some(&bank), &["revoke", "agreement-a1", "--reason", "x"])).contains("not-owner"));
    ok(&sandbox(
        dir,
        Some(&tax),
        &["revoke", "agreement-a1", "--reason", "complaint upheld"],
    ));
    assert!(refused(&run(Some(&bank))).contains("agreement-inactive"));

    // The owner replaces its output policy; nobody else may, and a broken
    // policy is refused with its errors.
    let installed = dir.join("policies").join("gov.tax_payments.toml");
    let current = std::fs::read_to_string(&installed).expect("installed policy");
    let revised = dir.join("revised.toml");
    let version_line = current
        .lines()
        .find(|l| l.starts_with("version"))
        .expect("version line");
    std::fs::write(&revised, current.replace(version_line, "version = \"2026-12 revised\"")).expect("write");
    let set = ["policy", "set", revised.to_str().expect("utf-8 path")];
    assert!(refused(&sandbox(dir, Some(&bank), &set)).contains("not-owner"));
    let broken = dir.join("broken.toml");
    std::fs::write(
        &broken,
        "dataset = \"gov.tax_payments\"\n[release]\nmode = \"nonsense\"\n",
    )
    .expect("write");
    let broken_set = ["policy", "set", broken.to_str().expect("utf-8 path")];
    assert!(refused(&sandbox(dir, Some(&tax), &broken_set)).contains("policy-invalid"));
    assert!(ok(&sandbox(dir, Some(&tax), &set)).contains("digest"));
    assert!(
        std::fs::read_to_string(&installed)
            .expect("read")
            .contains("2026-12 revised")
    );
    let export = ok(&sandbox(dir, None, &["audit", "export"]));
    assert!(
        export
            .lines()
            .any(|l| l.contains("\"kind\":\"policy_version\"") && l.contains("\"actor\":\"tax\"")),
        "the new policy version is in the ledger, by its owner"
    );

    ok(&sandbox(
        dir,
        Some(&tax),
        &["suspend", "gov.tax_payments", "--reason", "complaint"],
    ));
    ok(&sandbox(
        dir,
        Some(&tax),
        &["resume", "gov.tax_payments", "--note", "resolved"],
    ));
    assert!(ok(&sandbox(dir, None, &["audit", "verify"])).contains("ledger intact"));
}

#[test]
fn files_are_read_within_bounds_and_odd_files_are_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    // A device: refused at once, never read until memory runs out.
    let out = sandbox(dir, None, &["policy", "set", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/zero") && err.contains("not a regular file"), "{err}");
    // Too large.
    let big = dir.join("big.toml");
    std::fs::write(&big, vec![b'#'; 2 * 1024 * 1024]).expect("write");
    let out = sandbox(dir, None, &["policy", "set", big.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("at most 1048576"), "{err}");
    // A symbolic link loop among the policies fails the check, naming it.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let policies = dir.join("policies-copy");
    std::fs::create_dir(&policies).expect("dir");
    for entry in std::fs::read_dir(shipped.join("policies")).expect("policies").flatten() {
        std::fs::copy(entry.path(), policies.join(entry.file_name())).expect("copy");
    }
    let out = sandbox(
        dir,
        None,
        &[
            "policy",
            "check",
            policies.to_str().expect("utf-8"),
            "--catalog",
            shipped.join("catalog").to_str().expect("utf-8"),
        ],
    );
    assert!(
        out.status.success(),
        "the shipped policies pass: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::os::unix::fs::symlink(policies.join("b.toml"), policies.join("a.toml")).expect("link");
    std::os::unix::fs::symlink(policies.join("a.toml"), policies.join("b.toml")).expect("link");
    let out = sandbox(
        dir,
        None,
        &[
            "policy",
            "check",
            policies.to_str().expect("utf-8"),
            "--catalog",
            shipped.join("catalog").to_str().expect("utf-8"),
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && text.contains("a.toml") && text.contains("symbolic link loop"),
        "{text}"
    );
}
