//! Cancellation against the workers' claims: many rounds of submit and
//! cancel at varied moments, with two workers busy, and after every round
//! what the cancel answered, the job's final state, the ledger and the
//! stored result must tell one story.

use crate::server_support::{OPS_TOKEN, TAX_SQL, TestServer, approval, tax_application};
use sandbox_server::{PoolLimits, ServerConfig};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

const ROUNDS: usize = 40;
const EPSILON: f64 = 0.01;

/// What the ledger says of one job.
#[derive(Debug, Default)]
struct Ledgered {
    charged: bool,
    finished: Option<String>,
}

fn ledger_by_job(entries: &Value) -> HashMap<String, Ledgered> {
    let mut jobs: HashMap<String, Ledgered> = HashMap::new();
    for e in entries.as_array().expect("entries") {
        let Some(job) = e["payload"]["job"].as_str() else {
            continue;
        };
        let line = jobs.entry(job.to_string()).or_default();
        match e["kind"].as_str() {
            Some("job_charged") => line.charged = true,
            Some("job_finished") => line.finished = e["payload"]["status"].as_str().map(str::to_string),
            _ => {}
        }
    }
    jobs
}

#[test]
fn cancel_and_claim_agree_with_the_ledger_and_the_result() {
    let server = TestServer::start(ServerConfig {
        pool: PoolLimits {
            workers: 2,
            max_queued: 64,
        },
        ..ServerConfig::default()
    });
    let ops = server.client(Some(OPS_TOKEN));
    let bank = server.client(Some(&ops.create_account("bank", "applicant", None)));
    let tax = server.client(Some(&ops.create_account(
        "tax-bureau",
        "data_owner",
        Some("shanghai-tax"),
    )));
    assert_eq!(bank.post("/v1/applications", &tax_application("a1")).0, 201);
    let (status, body) = tax.post("/v1/applications/a1/decision", &approval(50.0, 100_000));
    assert_eq!(status, 200, "{body}");
    let agreement = body["agreement"].as_str().expect("agreement").to_string();
    let job = json!({"kind": "sql", "agreement": agreement, "sql": TAX_SQL, "epsilon": EPSILON});

    // (job, cancel status, cancel answer)
    let mut cancels: Vec<(String, u16, Value)> = Vec::new();
    for round in 0..ROUNDS {
        // Three jobs per round keep both workers busy, so the cancelled one
        // is sometimes waiting, sometimes being claimed, sometimes running.
        let mut ids = Vec::new();
        for _ in 0..3 {
            let (status, body) = bank.post("/v1/jobs", &job);
            assert_eq!(status, 202, "{body}");
            ids.push(body["id"].as_str().expect("id").to_string());
        }
        std::thread::sleep(Duration::from_millis((round as u64 * 7) % 60));
        let target = &ids[round % 3];
        let (status, answer) = bank.post(&format!("/v1/jobs/{target}/cancel"), &json!({}));
        cancels.push((target.clone(), status, answer));
        for id in &ids {
            bank.wait_job(id);
        }
    }

    let (_, entries) = ops.get("/v1/audit");
    let ledger = ledger_by_job(&entries);
    let mut seen = HashMap::<&str, usize>::new();
    for (id, status, answer) in &cancels {
        let end = bank.wait_job(id);
        let state = end["state"].as_str().expect("state");
        let line = ledger.get(id.as_str());
        let charged = line.is_some_and(|l| l.charged);
        let finished = line.and_then(|l| l.finished.clone());
        let (result_status, _) = bank.get(&format!("/v1/jobs/{id}/result"));
        let story = format!("{id}: cancel {status} {answer}; ended {end}; ledger {line:?}; result {result_status}");
        match status {
            200 => {
                // The answer is the job's end, and the end stays.
                assert_eq!(answer["state"], end["state"], "{story}");
                let words = answer["cancellation"].as_str().expect("cancellation words");
                if state == "cancelled" {
                    assert_eq!(
                        words.contains("nothing was charged"),
                        !charged,
                        "{story}: the answer says whether the job was charged"
                    );
                }
            }
            202 => assert_eq!(answer["state"], "running", "{story}"),
            409 => assert_ne!(
                state, "cancelled",
                "{story}: a job that had ended is not cancelled after"
            ),
            other => panic!("{other}: {story}"),
        }
        match state {
            "succeeded" => {
                assert!(charged, "{story}");
                assert_eq!(finished.as_deref(), Some("released"), "{story}");
                assert_eq!(result_status, 200, "{story}");
            }
            "cancelled" => {
                assert_eq!(result_status, 409, "{story}");
                // Charged ⇔ the ledger closes the charge as cancelled.
                assert_eq!(charged, finished.as_deref() == Some("cancelled"), "{story}");
                assert!(finished.as_deref() != Some("released"), "{story}");
            }
            other => panic!("{story}: unexpected end {other}"),
        }
        let kind = match (status, state, charged) {
            (200, "cancelled", false) => "cancelled, uncharged",
            (200, "cancelled", true) => "cancelled, charged",
            (_, "succeeded", _) => "too late",
            _ => "other",
        };
        *seen.entry(kind).or_default() += 1;
    }
    // Every job of the run: the budget spent is exactly the ledger's charges.
    let charged_jobs = ledger.values().filter(|l| l.charged).count();
    let released = ledger
        .values()
        .filter(|l| l.finished.as_deref() == Some("released"))
        .count();
    let (_, budget) = bank.get(&format!("/v1/agreements/{agreement}/budget"));
    let spent = budget[0]["epsilon_spent"].as_f64().expect("spent");
    assert!(
        (spent - charged_jobs as f64 * EPSILON).abs() < 1e-9,
        "spent {spent} for {charged_jobs} charged jobs"
    );
    for (id, l) in &ledger {
        if l.finished.as_deref() == Some("released") {
            assert_eq!(bank.get(&format!("/v1/jobs/{id}/result")).0, 200, "{id}");
        }
    }
    assert!(released >= ROUNDS * 2, "the jobs not cancelled succeed: {released}");
    eprintln!("cancel race over {ROUNDS} rounds: {seen:?}");
    assert!(seen.get("cancelled, uncharged").copied().unwrap_or(0) > 0, "{seen:?}");
}
