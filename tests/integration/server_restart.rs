//! The server restarts with jobs in flight without losing or
//! double-charging any of them: a server process is killed with SIGKILL
//! while jobs are queued and running, several times at different moments,
//! and started again on the same data directory. In the end every job
//! submitted has succeeded, each was charged exactly once and released
//! exactly once, the budget equals the sum of those charges, and the
//! ledger verifies.

use crate::fixture::roomy_sandbox;
use crate::server_support::{Client, TAX_SQL, approval, tax_application};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const SERVER: &str = env!("CARGO_BIN_EXE_api_server");
const TOKEN: &str = "restart-operator-token-0123456789abcdef";

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data: &Path, run: usize) -> Server {
        let addr_file = data.join(format!("addr-{run}"));
        let child = Command::new(SERVER)
            .arg(data)
            .arg(&addr_file)
            .arg(TOKEN)
            .spawn()
            .expect("start api_server");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !addr_file.exists() {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let addr = std::fs::read_to_string(&addr_file).expect("addr");
        Server {
            child,
            base: format!("http://{addr}"),
        }
    }

    fn client(&self, token: &str) -> Client {
        Client {
            base: self.base.clone(),
            token: Some(token.to_string()),
        }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

fn count(entries: &[Value], kind: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in entries.iter().filter(|e| e["kind"] == kind) {
        let job = e["payload"]["job"].as_str().unwrap_or_default().to_string();
        *counts.entry(job).or_default() += 1;
    }
    counts
}

#[test]
fn kill_9_with_jobs_in_flight_loses_and_double_charges_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    drop(roomy_sandbox(&tmp));
    let data: PathBuf = tmp.path().join("iso");
    let epsilon = 0.05;

    let mut server = Server::start(&data, 0);
    let ops = server.client(TOKEN);
    let bank_token = ops.create_account("bank", "applicant", None);
    let tax_token = ops.create_account("tax-bureau", "data_owner", Some("shanghai-tax"));
    assert_eq!(
        server
            .client(&bank_token)
            .post("/v1/applications", &tax_application("a1"))
            .0,
        201
    );
    let (status, body) = server
        .client(&tax_token)
        .post("/v1/applications/a1/decision", &approval(1000.0, 100_000));
    assert_eq!(status, 200, "{body}");

    let mut submitted = Vec::new();
    let mut interrupted = 0;
    // Kill right after submitting, a little later, and later still.
    for (run, delay_ms) in [0u64, 30, 120, 0, 300].into_iter().enumerate() {
        let bank = server.client(&bank_token);
        for _ in 0..12 {
            let (status, job) = bank.post(
                "/v1/jobs",
                &json!({"kind": "sql", "agreement": "agreement-a1", "sql": TAX_SQL, "epsilon": epsilon}),
            );
            assert_eq!(status, 202, "{job}");
            submitted.push(job["id"].as_str().expect("id").to_string());
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        server.kill();
        server = Server::start(&data, run + 1);
        let (_, jobs) = server.client(&bank_token).get("/v1/jobs?limit=500");
        interrupted += jobs
            .as_array()
            .expect("jobs")
            .iter()
            .filter(|j| j["state"] == "queued" || j["state"] == "running")
            .count();
    }
    assert!(interrupted > 0, "no kill landed while jobs were in flight");

    let bank = server.client(&bank_token);
    for id in &submitted {
        let job = bank.wait_job(id);
        assert_eq!(
            job["state"], "succeeded",
            "no job is lost or failed by a restart: {job}"
        );
        let (status, result) = bank.get(&format!("/v1/jobs/{id}/result"));
        assert_eq!((status, result["kind"].as_str()), (200, Some("released")), "{result}");
    }
    let (_, entries) = server.client(TOKEN).get("/v1/audit");
    let entries = entries.as_array().expect("entries").clone();
    let charged = count(&entries, "job_charged");
    let finished = count(&entries, "job_finished");
    for id in &submitted {
        assert_eq!(charged.get(id), Some(&1), "job {id} is charged exactly once");
        assert_eq!(finished.get(id), Some(&1), "job {id} is released exactly once");
    }
    assert_eq!(charged.len(), submitted.len(), "no charge belongs to an unknown job");
    let (_, budget) = bank.get("/v1/agreements/agreement-a1/budget");
    let spent = budget[0]["epsilon_spent"].as_f64().expect("spent");
    assert!(
        (spent - epsilon * submitted.len() as f64).abs() < 1e-9,
        "the budget is the sum of one charge per job: {spent}"
    );
    let (_, verify) = server.client(TOKEN).get("/v1/audit/verify");
    assert_eq!(verify["intact"], true, "{verify}");
    let resumed = entries.iter().filter(|e| e["kind"] == "job_resumed").count();
    println!(
        "restart: {} jobs over 5 kills; {interrupted} in flight at restarts, {resumed} resumed under their first charge; none lost, none charged twice",
        submitted.len()
    );
    server.kill();
}
