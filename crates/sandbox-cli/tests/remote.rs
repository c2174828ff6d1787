//! The CLI against a server: `sandbox serve` in a child process, then the
//! same verbs with `--server`: the operator creates accounts, a bank
//! applies (and revises a rejected application), the tax bureau approves,
//! the bank's job is followed to its table, a column outside the agreement
//! is refused by rule (exit 2), the budget shows the charge, the owner
//! installs a policy, suspends, resumes and revokes, and only the operator
//! may verify and export the ledger.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn local(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("SANDBOX_TOKEN")
        .env_remove("SANDBOX_SERVER")
        .output()
        .expect("run sandbox")
}

fn remote(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .arg("--server")
        .arg(url)
        .args(args)
        .env("SANDBOX_TOKEN", token)
        .env_remove("SANDBOX_DATA_DIR")
        .output()
        .expect("run sandbox")
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

fn exit_2(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn last_line(out: &Output) -> String {
    ok(out).lines().last().expect("a line").trim().to_string()
}

#[test]
fn the_cli_drives_a_server() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    // Small data first, so the server does not generate the larger demo.
    ok(&local(&dir, &["data", "generate", "--entities", "2000"]));
    let addr_file = tmp.path().join("addr");
    let child = Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--no-flight", "--addr-file"])
        .arg(&addr_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sandbox serve");
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !addr_file.exists() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("http://{}", std::fs::read_to_string(&addr_file).expect("addr"));
    // Drain the server's stdout for its whole life (a closed pipe would
    // fail its later prints); the operator's token is the line after
    // "shown once".
    let stdout = server.0.stdout.take().expect("stdout");
    let (token_tx, token_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("sbx_") {
                let _ = token_tx.send(line);
            }
        }
    });
    let banner = token_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the operator's token");
    let ops = banner.trim().to_string();
    assert!(ops.starts_with("sbx_"), "the operator's token is printed: {ops}");

    let bank = last_line(&remote(
        &url,
        &ops,
        &["account", "create", "bank", "--role", "applicant"],
    ));
    let tax = last_line(&remote(
        &url,
        &ops,
        &[
            "account",
            "create",
            "tax-bureau",
            "--role",
            "owner",
            "--provider",
            "shanghai-tax",
        ],
    ));
    assert!(ok(&remote(&url, &bank, &["account", "whoami"])).contains("bank (applicant)"));
    ok(&remote(
        &url,
        &bank,
        &[
            "apply",
            "a1",
            "--dataset",
            "gov.tax_payments",
            "--column",
            "gov.tax_payments.year",
            "--column",
            "gov.tax_payments.tax_paid",
            "--scenario",
            "SME credit scoring",
        ],
    ));
    let decided = ok(&remote(
        &url,
        &tax,
        &[
            "decide",
            "a1",
            "--approve",
            "--epsilon",
            "10",
            "--expires",
            "2999-01-01T00:00:00Z",
            "--quota",
            "100",
        ],
    ));
    assert!(decided.contains("agreement-a1"), "{decided}");

    // A rejected application is revised: the POST answers 409, the CLI PUTs.
    let apply_a2 = |scenario: &str| {
        remote(
            &url,
            &bank,
            &[
                "apply",
                "a2",
                "--dataset",
                "gov.tax_payments",
                "--column",
                "gov.tax_payments.year",
                "--scenario",
                scenario,
            ],
        )
    };
    assert!(ok(&apply_a2("credit scoring")).contains("revision 1"));
    ok(&remote(
        &url,
        &tax,
        &["decide", "a2", "--reject", "say how the scores are used"],
    ));
    assert!(ok(&apply_a2("SME credit scoring; only aggregates leave")).contains("revision 2"));

    let catalog = ok(&remote(&url, &bank, &["catalog"]));
    assert!(
        catalog.starts_with("dataset") && catalog.contains("gov.tax_payments") && catalog.contains("shanghai-tax"),
        "{catalog}"
    );
    let agreement = ok(&remote(&url, &bank, &["agreement", "agreement-a1"]));
    assert!(
        agreement.contains("holder bank") && agreement.contains("gov.tax_payments.tax_paid"),
        "{agreement}"
    );

    const QUERY: &str = "SELECT t.year, AVG(t.tax_paid) FROM gov.tax_payments t GROUP BY t.year";
    let dry = ok(&remote(
        &url,
        &bank,
        &["sql", "--dry-run", "--grant", "agreement-a1", QUERY],
    ));
    assert!(dry.starts_with("dry run — nothing read"), "{dry}");
    let run = remote(&url, &bank, &["sql", "--grant", "agreement-a1", QUERY]);
    let table = ok(&run);
    // No terminal, no progress indicator.
    assert!(run.stderr.is_empty(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(table.starts_with("year"), "{table}");
    for year in ["2022", "2023", "2024"] {
        assert!(table.lines().any(|l| l.starts_with(year)), "{year} missing:\n{table}");
    }
    let spent = table
        .lines()
        .find_map(|l| l.split("ε spent ").nth(1)?.split(',').next()?.parse::<f64>().ok())
        .expect("the table says what it spent");
    assert!(spent > 0.0, "{table}");
    assert!(table.contains("privacy budget of grant `agreement-a1`"), "{table}");
    let released: serde_json::Value = serde_json::from_str(&ok(&remote(
        &url,
        &bank,
        &["sql", "--json", "--grant", "agreement-a1", QUERY],
    )))
    .expect("--json prints JSON");
    assert_eq!(released["kind"], "released", "{released}");

    let outside = "SELECT t.year, AVG(t.vat) FROM gov.tax_payments t GROUP BY t.year";
    let refusal = exit_2(&remote(&url, &bank, &["sql", "--grant", "agreement-a1", outside]));
    assert!(
        refusal.contains("[rule: agreement-column]")
            && refusal.contains("gov.tax_payments.vat")
            && !refusal.contains("refused: refused"),
        "{refusal}"
    );
    let refused = remote(&url, &bank, &["sql", "--json", "--grant", "agreement-a1", outside]);
    assert_eq!(refused.status.code(), Some(2));
    let refused: serde_json::Value = serde_json::from_slice(&refused.stdout).expect("a JSON refusal");
    assert_eq!(
        (&refused["rule"], &refused["refused"]),
        (&"agreement-column".into(), &true.into())
    );

    let budget = ok(&remote(&url, &bank, &["budget", "--grant", "agreement-a1"]));
    let line = budget
        .lines()
        .find(|l| l.starts_with("gov.tax_payments"))
        .unwrap_or_else(|| panic!("no budget line:\n{budget}"));
    let cells: Vec<&str> = line.split('│').map(str::trim).collect();
    assert_eq!(cells[1], "10", "{budget}");
    // Two released runs of the query (the table, the JSON); dry runs and refusals are free.
    assert_eq!(cells[2].parse::<f64>().ok(), Some(2.0 * spent), "{budget}");
    assert_eq!(cells[4], "1e-4", "δ total: the policy's delta_budget, {budget}");
    let report = ok(&remote(&url, &bank, &["report", "--grant", "agreement-a1"]));
    assert!(report.contains("数据利用报告"), "{report}");

    // Owners' verbs: a policy (re)installed, a suspension that refuses jobs, a revocation.
    let policy = dir.join("policies").join("gov.tax_payments.toml");
    let policy = policy.to_str().expect("a UTF-8 path");
    exit_2(&remote(&url, &bank, &["policy", "set", policy]));
    assert!(ok(&remote(&url, &tax, &["policy", "set", policy])).contains("digest"));
    ok(&remote(
        &url,
        &tax,
        &["suspend", "gov.tax_payments", "--reason", "complaint 1"],
    ));
    exit_2(&remote(&url, &bank, &["sql", "--grant", "agreement-a1", QUERY]));
    ok(&remote(
        &url,
        &tax,
        &["resume", "gov.tax_payments", "--note", "resolved"],
    ));
    ok(&remote(
        &url,
        &tax,
        &["revoke", "agreement-a1", "--reason", "the study ended"],
    ));
    exit_2(&remote(&url, &bank, &["sql", "--grant", "agreement-a1", QUERY]));

    // The operator's ledger: intact, exported; not the applicant's to see.
    assert!(ok(&remote(&url, &ops, &["audit", "verify"])).contains("ledger intact"));
    let export = ok(&remote(&url, &ops, &["audit", "export"]));
    assert!(export.lines().count() > 5, "{export}");
    for line in export.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("a JSON line");
    }
    let forbidden = exit_2(&remote(&url, &bank, &["audit", "verify"]));
    assert!(forbidden.contains("operator"), "{forbidden}");

    let other = remote(&url, "sbx_not-a-token-0000000000000000000000000000", &["catalog"]);
    assert!(exit_2(&other).contains("no account holds this token"));
    let local_only = remote(&url, &bank, &["demo"]);
    assert_eq!(local_only.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&local_only.stderr).contains("local data directory"));

    drop(server);
    let gone = remote(&url, &bank, &["catalog"]);
    assert_eq!(gone.status.code(), Some(1));
    let said = String::from_utf8_lossy(&gone.stderr);
    assert!(
        said.contains(&format!("cannot talk to the sandbox server at {url}")),
        "{said}"
    );
}
