//! `sandbox dataset` through the binary: only the provider's owner
//! registers; a wrong encoding or a breached threshold registers nothing;
//! a registration shows its report, lands in the catalog and the ledger,
//! and is queryable; a registration killed with SIGKILL at any moment
//! leaves a complete version current; withdrawal suspends and removes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/onboarding");

fn example(name: &str) -> PathBuf {
    Path::new(EXAMPLES).join(name)
}

fn command(dir: &Path, token: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandbox"));
    cmd.arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .env_remove("SANDBOX_TOKEN")
        .env("SANDBOX_PSEUDONYM_KEY", dir.join("secret/pseudonym.key"));
    if let Some(t) = token {
        cmd.env("SANDBOX_TOKEN", t);
    }
    cmd
}

fn sandbox(dir: &Path, token: Option<&str>, args: &[&str]) -> Output {
    command(dir, token, args).output().expect("run sandbox")
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

fn refused(out: &Output) -> (String, String) {
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn token(out: &Output) -> String {
    ok(out).lines().last().expect("token line").trim().to_string()
}

/// Operator, the market regulator's owner account, and another owner.
fn accounts(dir: &Path) -> (String, String, String) {
    let ops = token(&sandbox(dir, None, &["account", "create", "ops", "--role", "operator"]));
    let owner = |id: &str, provider: &str| {
        token(&sandbox(
            dir,
            Some(&ops),
            &["account", "create", id, "--role", "owner", "--provider", provider],
        ))
    };
    let market = owner("market-regulator", "shanghai-market-regulation");
    let tax = owner("tax-bureau", "shanghai-tax");
    (ops, market, tax)
}

fn register_args<'a>(file: &'a str, entry: &'a str, policy: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["dataset", "register", file, "--entry", entry, "--policy", policy];
    v.extend_from_slice(extra);
    v
}

fn current(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("data/data/gov/market_inspections/CURRENT"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The catalog's row bounds are checked when a version is registered: the
/// owner sees which declarations hold and which the data break (the
/// export holds one duplicate (enterprise, inspection date)), and the
/// result is cached for the first job.
#[test]
fn a_registration_checks_the_declared_row_bounds() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let (_, market, _) = accounts(dir);
    let text = std::fs::read_to_string(example("gov.market_inspections.entry.toml")).expect("entry");
    let declared = text.replacen(
        "\n[[fields]]",
        "\nmax_rows_per_value = { credit_code = 400, \"credit_code+inspected\" = 1 }\n\n[[fields]]",
        1,
    );
    assert_ne!(declared, text);
    let entry = dir.join("entry.toml");
    std::fs::write(&entry, declared).expect("write entry");
    let (csv, policy) = (
        example("gov.market_inspections.csv"),
        example("gov.market_inspections.policy.toml"),
    );
    let out = sandbox(
        dir,
        Some(&market),
        &register_args(
            csv.to_str().expect("utf-8"),
            entry.to_str().expect("utf-8"),
            policy.to_str().expect("utf-8"),
            &["--encoding", "gb18030", "--max-rejected-rows", "1"],
        ),
    );
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_rows_per_value credit_code = 400: holds"), "{err}");
    assert!(
        err.contains(
            "warning: max_rows_per_value credit_code+inspected does not hold on gov.market_inspections: a value has 2 rows"
        ),
        "{err}"
    );
    let cache = dir.join("data/cache/verified/gov.market_inspections.json");
    let cached: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache).expect("the result is cached for the first job")).expect("json");
    assert_eq!(cached["violated"]["credit_code+inspected"], 2, "{cached}");
}

#[test]
fn owners_register_see_the_report_and_withdraw() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let (ops, market, tax) = accounts(dir);
    let csv = example("gov.market_inspections.csv");
    let entry = example("gov.market_inspections.entry.toml");
    let policy = example("gov.market_inspections.policy.toml");
    let (csv, entry, policy) = (
        csv.to_str().expect("utf-8"),
        entry.to_str().expect("utf-8"),
        policy.to_str().expect("utf-8"),
    );
    let thresholds = [
        "--encoding",
        "gb18030",
        "--key",
        "credit_code",
        "--key",
        "inspected",
        "--max-rejected-rows",
        "1",
        "--max-duplicate-keys",
        "1",
    ];
    // Not the provider's owner.
    let (_, err) = refused(&sandbox(
        dir,
        Some(&tax),
        &register_args(csv, entry, policy, &thresholds),
    ));
    assert!(err.contains("[rule: not-owner]"), "{err}");
    // The GB18030 export read as UTF-8: the line, and the way out.
    let (_, err) = refused(&sandbox(dir, Some(&market), &register_args(csv, entry, policy, &[])));
    assert!(err.contains("line 2") && err.contains("--encoding gb18030"), "{err}");
    // The default thresholds refuse the bad row and the duplicate; the report is shown.
    let (out, err) = refused(&sandbox(
        dir,
        Some(&market),
        &register_args(
            csv,
            entry,
            policy,
            &["--encoding", "gb18030", "--key", "credit_code", "--key", "inspected"],
        ),
    ));
    assert!(err.contains("1 rejected rows (at most 0 allowed"), "{err}");
    assert!(err.contains("1 duplicate keys"), "{err}");
    assert!(out.contains("line 204, column `inspected`"), "{out}");
    assert_eq!(current(dir), None);
    let catalog = ok(&sandbox(dir, None, &["catalog"]));
    assert!(!catalog.contains("gov.market_inspections"));
    // Checked only: the report, and nothing registered.
    let mut check = thresholds.to_vec();
    check.push("--check-only");
    let out = ok(&sandbox(dir, Some(&market), &register_args(csv, entry, policy, &check)));
    assert!(
        out.contains("rows: 401 read, 400 stored, 1 rejected") && out.contains("nothing was registered"),
        "{out}"
    );
    assert_eq!(current(dir), None);
    assert!(
        std::fs::read_dir(dir.join("data/data/gov/market_inspections"))
            .expect("dir")
            .flatten()
            .all(|e| e.file_name() == ".lock"),
        "a check left files"
    );
    // Registered.
    let out = ok(&sandbox(
        dir,
        Some(&market),
        &register_args(csv, entry, policy, &thresholds),
    ));
    assert!(out.contains("gov.market_inspections version 1"), "{out}");
    assert!(out.contains("rows: 401 read, 400 stored, 1 rejected"), "{out}");
    assert!(out.contains("pseudonymized: credit_code"), "{out}");
    assert_eq!(current(dir).as_deref(), Some("v000001"));
    let catalog = ok(&sandbox(dir, None, &["catalog"]));
    assert!(
        catalog.contains("data: version 1 registered by market-regulator"),
        "{catalog}"
    );
    let shown = ok(&sandbox(
        dir,
        None,
        &["dataset", "show", "gov.market_inspections", "--json"],
    ));
    let manifest: serde_json::Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(manifest["rows"], 400);
    assert_eq!(manifest["owner"], "market-regulator");
    // Jobs read it (the demo grant covers every conditional dataset).
    ok(&sandbox(
        dir,
        None,
        &[
            "sql",
            "SELECT outcome, COUNT(*) FROM gov.market_inspections GROUP BY outcome",
        ],
    ));
    // The secret is outside the data directory, private.
    assert!(dir.join("secret/pseudonym.key").exists());
    // The ledger has the version, by the owner, and verifies.
    let export = ok(&sandbox(dir, Some(&ops), &["audit", "export"]));
    let version = export
        .lines()
        .find(|l| l.contains("\"dataset_version\""))
        .expect("dataset_version entry");
    assert!(
        version.contains("\"actor\":\"market-regulator\"") && version.contains("\"rows\":400"),
        "{version}"
    );
    assert!(ok(&sandbox(dir, Some(&ops), &["audit", "verify"])).contains("intact"));
    // Withdrawal: not by another provider's owner; by the owner it suspends and removes.
    refused(&sandbox(
        dir,
        Some(&tax),
        &["dataset", "withdraw", "gov.market_inspections", "--reason", "x"],
    ));
    let out = ok(&sandbox(
        dir,
        Some(&market),
        &[
            "dataset",
            "withdraw",
            "gov.market_inspections",
            "--reason",
            "superseded",
        ],
    ));
    assert!(out.contains("version 1 (400 rows"), "{out}");
    assert_eq!(current(dir), None);
    assert!(!dir.join("data/data/gov/market_inspections/v000001").exists());
    let export = ok(&sandbox(dir, Some(&ops), &["audit", "export"]));
    assert!(export.contains("\"dataset_withdrawn\""));
    let again = sandbox(
        dir,
        Some(&market),
        &["dataset", "withdraw", "gov.market_inspections", "--reason", "again"],
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("no registered data to withdraw"));
    // It is suspended, and without data no session binds it.
    let gone = sandbox(
        dir,
        None,
        &[
            "sql",
            "SELECT outcome, COUNT(*) FROM gov.market_inspections GROUP BY outcome",
        ],
    );
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("gov.market_inspections"));
}

/// A UTF-8 CSV of `rows` inspections (valid districts and dates).
fn big_csv(path: &Path, rows: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    writeln!(f, "credit_code,district,inspected,outcome,fine").expect("write");
    for i in 0..rows {
        writeln!(f, "91310115MA{i:08},静安区,2024-0{}-1{},合格,", 1 + i % 9, i % 10).expect("write");
    }
    f.flush().expect("flush");
}

#[test]
fn a_registration_killed_at_any_moment_leaves_a_complete_version_current() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let (_, market, _) = accounts(dir);
    let entry = example("gov.market_inspections.entry.toml");
    let policy = example("gov.market_inspections.policy.toml");
    let (entry, policy) = (entry.to_str().expect("utf-8"), policy.to_str().expect("utf-8"));
    let small = dir.join("small.csv");
    big_csv(&small, 50);
    ok(&sandbox(
        dir,
        Some(&market),
        &register_args(small.to_str().expect("utf-8"), entry, policy, &[]),
    ));
    let big = dir.join("big.csv");
    big_csv(&big, 200_000);
    let big = big.to_str().expect("utf-8");
    let mut completed = 0;
    for delay_ms in [30u64, 150, 400, 900, 1600, 2500] {
        let mut child = command(dir, Some(&market), &register_args(big, entry, policy, &[]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().expect("wait");
        completed += usize::from(status.success());
        // Whatever the moment: the current version is complete and readable.
        let shown = ok(&sandbox(
            dir,
            None,
            &["dataset", "show", "gov.market_inspections", "--json"],
        ));
        let manifest: serde_json::Value = serde_json::from_str(&shown).expect("json");
        let rows = manifest["rows"].as_u64().expect("rows");
        assert!(rows == 50 || rows == 200_000, "after {delay_ms} ms: {rows} rows");
        assert_eq!(current(dir).as_deref(), manifest["directory"].as_str());
        ok(&sandbox(
            dir,
            None,
            &[
                "sql",
                "SELECT outcome, COUNT(*) FROM gov.market_inspections GROUP BY outcome",
            ],
        ));
        assert!(ok(&sandbox(dir, None, &["catalog"])).contains("gov.market_inspections"));
    }
    // A last registration runs to the end, whatever the kills left.
    let out = ok(&sandbox(dir, Some(&market), &register_args(big, entry, policy, &[])));
    assert!(out.contains("200000 stored"), "{out}");
    let leftovers: Vec<String> = std::fs::read_dir(dir.join("data/data/gov/market_inspections"))
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".staging"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "{leftovers:?} (killed {} of 6 before the end)",
        6 - completed
    );
}

const CLIENTS_ENTRY: &str = r#"
id = "fintech.clients"
title = "小微企业客户"
provider = { id = "fintech-co", name = "示例金融科技公司", kind = "enterprise" }
domain = "finance"
summary = "The fintech's small-business clients."
update_frequency = "monthly"
time_coverage = "2024"
area_coverage = "上海市"
format = "CSV"
open_class = "conditional"
open_conditions = "仅限本企业在数据沙箱内与政府数据融合使用。"
fields = [
  { name = "credit_code", type = "utf8", description = "统一社会信用代码" },
  { name = "credit_line", type = "float64", description = "授信额度", unit = "万元" },
]
"#;

const CLIENTS_POLICY: &str = r#"
dataset = "fintech.clients"
version = "1"
unit_entity = "enterprise"
[release]
mode = "dp"
min_units = 10
aggregates = ["count", "sum"]
[dp]
epsilon_per_query = 1.0
delta = 1e-6
epsilon_budget = 10.0
max_groups_per_unit = 1
max_rows_per_group = 1
[jobs]
sql = true
wasm = false
[columns]
credit_code = { roles = ["identifier", "privacy_unit", "join_key"] }
credit_line = { role = "measure", bounds = [0.0, 500.0] }
[[fusion]]
dataset = "gov.legal_entities"
on = [["credit_code", "credit_code"]]
"#;

#[test]
fn an_applicant_registers_its_own_table_from_the_cli_only_under_its_provider_and_an_agreement() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let (ops, market, _) = accounts(dir);
    let fintech = token(&sandbox(
        dir,
        Some(&ops),
        &[
            "account",
            "create",
            "fintech",
            "--role",
            "applicant",
            "--provider",
            "fintech-co",
        ],
    ));
    let files = dir.join("files");
    std::fs::create_dir_all(&files).expect("mkdir");
    let (csv, entry, policy) = (
        files.join("clients.csv"),
        files.join("entry.toml"),
        files.join("policy.toml"),
    );
    let mut rows = String::from("credit_code,credit_line\n");
    for i in 0..50 {
        rows.push_str(&format!("91310115MA{i:08},{}\n", i * 7));
    }
    std::fs::write(&csv, rows).expect("csv");
    std::fs::write(&entry, CLIENTS_ENTRY).expect("entry");
    std::fs::write(&policy, CLIENTS_POLICY).expect("policy");
    let (csv, entry, policy) = (
        csv.to_str().expect("utf-8"),
        entry.to_str().expect("utf-8"),
        policy.to_str().expect("utf-8"),
    );
    let register = || sandbox(dir, Some(&fintech), &register_args(csv, entry, policy, &[]));

    // A plain applicant (no enterprise provider) may not.
    let plain = token(&sandbox(
        dir,
        Some(&ops),
        &["account", "create", "plain", "--role", "applicant"],
    ));
    let (_, err) = refused(&sandbox(dir, Some(&plain), &register_args(csv, entry, policy, &[])));
    assert!(err.contains("[rule: applicant-upload-provider]"), "{err}");
    // No agreement: refused, nothing installed.
    let (_, err) = refused(&register());
    assert!(err.contains("[rule: applicant-upload-agreement]"), "{err}");
    assert!(!ok(&sandbox(dir, None, &["catalog"])).contains("fintech.clients"));

    // An agreement on the legal-entity register, then its own table.
    ok(&sandbox(
        dir,
        Some(&fintech),
        &[
            "apply",
            "e1",
            "--dataset",
            "gov.legal_entities",
            "--column",
            "gov.legal_entities.*",
            "--scenario",
            "SME credit lines by industry; aggregates only",
            "--material",
            "business licence",
        ],
    ));
    ok(&sandbox(
        dir,
        Some(&market),
        &[
            "decide",
            "e1",
            "--approve",
            "--epsilon",
            "3",
            "--expires",
            "2999-01-01T00:00:00Z",
            "--quota",
            "5",
        ],
    ));
    let out = ok(&register());
    assert!(out.contains("fintech.clients"), "{out}");
    assert!(ok(&sandbox(dir, None, &["catalog"])).contains("fintech.clients"));
    let ledger = ok(&sandbox(dir, Some(&ops), &["audit", "export"]));
    assert!(
        ledger.contains("enterprise_provider_assigned"),
        "the assignment is in the ledger"
    );
    // Now its owner: it withdraws its table; the market regulator may not.
    let (_, err) = refused(&sandbox(
        dir,
        Some(&market),
        &["dataset", "withdraw", "fintech.clients", "--reason", "not mine"],
    ));
    assert!(err.contains("[rule: not-owner]"), "{err}");
    ok(&sandbox(
        dir,
        Some(&fintech),
        &["dataset", "withdraw", "fintech.clients", "--reason", "superseded"],
    ));
}

/// With `--tables` (here a `file://` store through the object-store code
/// path; `tests/distributed` covers a real S3 server): a registration
/// publishes its version, jobs read it from there, an object changed after
/// publication is not read until its owner publishes again, only owners
/// publish, and a withdrawal removes the published copy.
#[test]
fn registered_versions_are_published_where_jobs_read_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let (ops, market, tax) = accounts(dir);
    let store = dir.join("store");
    std::fs::create_dir_all(&store).expect("store");
    let tables = format!("file://{}", store.display());
    let with_tables = |token: Option<&str>, args: &[&str]| {
        let mut all = vec!["--tables", tables.as_str()];
        all.extend_from_slice(args);
        sandbox(dir, token, &all)
    };
    let (csv, entry, policy) = (
        example("gov.market_inspections.csv"),
        example("gov.market_inspections.entry.toml"),
        example("gov.market_inspections.policy.toml"),
    );
    let (csv, entry, policy) = (
        csv.to_str().expect("utf-8"),
        entry.to_str().expect("utf-8"),
        policy.to_str().expect("utf-8"),
    );
    let out = ok(&with_tables(
        Some(&market),
        &register_args(
            csv,
            entry,
            policy,
            &["--encoding", "gb18030", "--max-rejected-rows", "1"],
        ),
    ));
    assert!(out.contains("published: 4 files to file://"), "{out}");
    let published = store.join("gov/market_inspections");
    assert_eq!(
        std::fs::read_to_string(published.join("CURRENT")).expect("CURRENT"),
        "v000001\n"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(published.join("v000001/_published.json")).expect("record"))
            .expect("json");
    assert_eq!(record["version"], "v000001");
    let sql = [
        "sql",
        "SELECT outcome, COUNT(*) AS n FROM gov.market_inspections GROUP BY outcome",
    ];
    ok(&with_tables(None, &sql));

    // Changed in the store after publication (same size): not read.
    let part = published.join("v000001/part-00000.parquet");
    let mut bytes = std::fs::read(&part).expect("part");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&part, &bytes).expect("overwrite");
    let out = with_tables(None, &sql);
    assert!(!out.status.success(), "a changed object was read");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gov.market_inspections"), "{err}");
    assert!(
        !err.contains("store") && !err.contains("changed"),
        "the analyst learns nothing about the storage: {err}"
    );
    // Only an owner of the provider (or the operator) publishes.
    let (_, err) = refused(&with_tables(
        Some(&tax),
        &["dataset", "publish", "gov.market_inspections"],
    ));
    assert!(err.contains("[rule: not-owner]"), "{err}");
    let out = ok(&with_tables(
        Some(&market),
        &["dataset", "publish", "gov.market_inspections"],
    ));
    assert!(out.contains("published gov.market_inspections"), "{out}");
    ok(&with_tables(None, &sql));
    // Publishing needs somewhere to publish to.
    let out = sandbox(dir, Some(&ops), &["dataset", "publish"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tables"));

    // A withdrawal removes the published copy with the local one.
    ok(&with_tables(
        Some(&market),
        &[
            "dataset",
            "withdraw",
            "gov.market_inspections",
            "--reason",
            "superseded",
        ],
    ));
    let left: Vec<_> = walk(&published);
    assert!(left.is_empty(), "left in the store: {left:?}");

    // Red team 2026-12-01: a copy left in the store (a removal that failed,
    // a withdrawal run without --tables) is never read as the next
    // registration, which restarts at v000001.
    let register = |token: &str, with: bool| {
        let args = register_args(
            csv,
            entry,
            policy,
            &["--encoding", "gb18030", "--max-rejected-rows", "1"],
        );
        if with {
            with_tables(Some(token), &args)
        } else {
            sandbox(dir, Some(token), &args)
        }
    };
    ok(&register(&market, true));
    assert!(published.join("v000001/_published.json").exists());
    let stale = dir.join("stale");
    copy_tree(&published, &stale);
    // Withdrawn without --tables: the data directory remembers where it
    // published, and the copy goes too.
    ok(&sandbox(
        dir,
        Some(&market),
        &["dataset", "withdraw", "gov.market_inspections", "--reason", "complaint"],
    ));
    assert!(walk(&published).is_empty(), "left: {:?}", walk(&published));
    // Say the removal had failed: the old copy is back in the store. A
    // second withdrawal removes what is left.
    copy_tree(&stale, &published);
    let out = ok(&sandbox(
        dir,
        Some(&market),
        &["dataset", "withdraw", "gov.market_inspections", "--reason", "complaint"],
    ));
    assert!(out.contains("published copy"), "{out}");
    assert!(walk(&published).is_empty());
    // The copy back once more, then a new registration (v000001 again) not
    // published, and the dataset resumed: jobs with --tables do not read
    // the old copy; once published, they read the new one.
    copy_tree(&stale, &published);
    ok(&register(&market, false));
    ok(&sandbox(
        dir,
        Some(&ops),
        &["resume", "gov.market_inspections", "--note", "fixed"],
    ));
    ok(&sandbox(dir, None, &sql));
    let out = with_tables(None, &sql);
    assert!(!out.status.success(), "the stale copy was read");
    let out = ok(&with_tables(Some(&ops), &["dataset", "publish"]));
    assert!(out.contains("published gov.market_inspections"), "{out}");
    ok(&with_tables(None, &sql));
}

fn copy_tree(from: &Path, to: &Path) {
    for file in walk(from) {
        let target = to.join(file.strip_prefix(from).expect("below"));
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&file, &target).expect("copy");
    }
}

/// Every file below `dir` (none if it does not exist).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
