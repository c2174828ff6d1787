//! The CLI against a server: `sandbox serve` in a child process, then the
//! same verbs with `--server`: the operator creates accounts, a bank
//! applies, the tax bureau approves, the bank's job is followed to its
//! table, a column outside the agreement is refused by rule (exit 2), the
//! budget shows the charge, the usage report comes back, and only the
//! operator may verify the ledger.

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

    let table = ok(&remote(
        &url,
        &bank,
        &[
            "sql",
            "--grant",
            "agreement-a1",
            "SELECT t.year, AVG(t.tax_paid) FROM gov.tax_payments t GROUP BY t.year",
        ],
    ));
    assert!(table.contains("2024") && table.contains("year"), "{table}");
    let refusal = exit_2(&remote(
        &url,
        &bank,
        &[
            "sql",
            "--grant",
            "agreement-a1",
            "SELECT t.year, AVG(t.vat) FROM gov.tax_payments t GROUP BY t.year",
        ],
    ));
    assert!(
        refusal.contains("agreement-column") && refusal.contains("gov.tax_payments.vat"),
        "{refusal}"
    );
    let budget = ok(&remote(&url, &bank, &["budget", "--grant", "agreement-a1"]));
    assert!(
        budget.contains("gov.tax_payments") && budget.contains("10.000"),
        "{budget}"
    );
    let report = ok(&remote(&url, &bank, &["report", "--grant", "agreement-a1"]));
    assert!(report.contains("数据利用报告"), "{report}");
    assert!(ok(&remote(&url, &ops, &["audit", "verify"])).contains("ledger intact"));
    let forbidden = exit_2(&remote(&url, &bank, &["audit", "verify"]));
    assert!(forbidden.contains("operator"), "{forbidden}");
    let other = remote(&url, "sbx_not-a-token-0000000000000000000000000000", &["catalog"]);
    assert!(exit_2(&other).contains("no account holds this token"));
    let local_only = remote(&url, &bank, &["demo"]);
    assert_eq!(local_only.status.code(), Some(1));
}
