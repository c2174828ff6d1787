//! A load test on loopback: 32 concurrent clients submit small jobs and
//! wait for their results; prints p50/p99 latency. Bounded in count (4
//! jobs a client) and in time (each job must end within two minutes).
//! Checks that no request fails and that the budget is never overspent:
//! first with room for every job, then with room for only some, where
//! exactly as many succeed as the budget allows and the rest are refused
//! by the budget rule.

use crate::server_support::{Client, OPS_TOKEN, TAX_SQL, TestServer, approval, tax_application};
use sandbox_server::ServerConfig;
use serde_json::json;
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
const JOBS_PER_CLIENT: usize = 4;

/// Runs every client's jobs; returns each job's latency and end state.
fn burst(bank: &Client, agreement: &str, epsilon: f64) -> Vec<(Duration, String, Option<String>)> {
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let bank = bank.clone();
            let agreement = agreement.to_string();
            std::thread::spawn(move || {
                (0..JOBS_PER_CLIENT)
                    .map(|_| {
                        let started = Instant::now();
                        let (status, job) = bank.post(
                            "/v1/jobs",
                            &json!({"kind": "sql", "agreement": agreement, "sql": TAX_SQL, "epsilon": epsilon}),
                        );
                        assert_eq!(status, 202, "submission failed under load: {job}");
                        let id = job["id"].as_str().expect("id").to_string();
                        let ended = bank.wait_job(&id);
                        if ended["state"] == "succeeded" {
                            let (status, result) = bank.get(&format!("/v1/jobs/{id}/result"));
                            assert_eq!(status, 200, "{result}");
                        }
                        (
                            started.elapsed(),
                            ended["state"].as_str().unwrap_or_default().to_string(),
                            ended["error"]["rule"].as_str().map(str::to_string),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn spent(bank: &Client, agreement: &str) -> (f64, f64) {
    let (_, budget) = bank.get(&format!("/v1/agreements/{agreement}/budget"));
    (
        budget[0]["epsilon_spent"].as_f64().expect("spent"),
        budget[0]["epsilon_total"].as_f64().expect("total"),
    )
}

#[test]
fn thirty_two_clients_on_loopback() {
    let server = TestServer::start(ServerConfig::default());
    let ops = server.client(Some(OPS_TOKEN));
    let bank = server.client(Some(&ops.create_account("bank", "applicant", None)));
    let tax = server.client(Some(&ops.create_account(
        "tax-bureau",
        "data_owner",
        Some("shanghai-tax"),
    )));
    let jobs = CLIENTS * JOBS_PER_CLIENT;
    let epsilon = 0.125;

    // Room for every job.
    assert_eq!(bank.post("/v1/applications", &tax_application("roomy")).0, 201);
    let total = epsilon * jobs as f64;
    let (status, body) = tax.post("/v1/applications/roomy/decision", &approval(total, 10_000));
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    let outcomes = burst(&bank, "agreement-roomy", epsilon);
    let wall = started.elapsed();
    assert!(
        outcomes.iter().all(|(_, state, _)| state == "succeeded"),
        "every job succeeds: {:?}",
        outcomes
            .iter()
            .filter(|o| o.1 != "succeeded")
            .take(3)
            .collect::<Vec<_>>()
    );
    let (spent_eps, total_eps) = spent(&bank, "agreement-roomy");
    assert!(
        (spent_eps - total).abs() < 1e-9 && spent_eps <= total_eps + 1e-9,
        "{spent_eps} of {total_eps}"
    );
    let mut latencies: Vec<Duration> = outcomes.iter().map(|o| o.0).collect();
    latencies.sort();
    println!(
        "load: {CLIENTS} clients × {JOBS_PER_CLIENT} jobs = {jobs} small SQL jobs on loopback in {:.2} s ({:.1} jobs/s); \
         submit-to-result latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        wall.as_secs_f64(),
        jobs as f64 / wall.as_secs_f64(),
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );

    // Room for a third of them: exactly that many succeed.
    assert_eq!(bank.post("/v1/applications", &tax_application("tight")).0, 201);
    let allowed = jobs / 3;
    let (status, body) = tax.post(
        "/v1/applications/tight/decision",
        &approval(epsilon * allowed as f64, 10_000),
    );
    assert_eq!(status, 200, "{body}");
    let outcomes = burst(&bank, "agreement-tight", epsilon);
    let succeeded = outcomes.iter().filter(|o| o.1 == "succeeded").count();
    let refused_by_budget = outcomes
        .iter()
        .filter(|o| o.1 == "refused" && o.2.as_deref() == Some("budget-exhausted"))
        .count();
    assert_eq!(succeeded, allowed, "as many jobs succeed as the budget pays for");
    assert_eq!(
        succeeded + refused_by_budget,
        jobs,
        "the rest are refused by the budget, nothing fails"
    );
    let (spent_eps, total_eps) = spent(&bank, "agreement-tight");
    assert!(
        spent_eps <= total_eps + 1e-9,
        "never overspent: {spent_eps} of {total_eps}"
    );
    assert!((spent_eps - epsilon * allowed as f64).abs() < 1e-9);
    println!(
        "load: a budget for {allowed} of {jobs} racing jobs: {succeeded} released, {refused_by_budget} refused (budget-exhausted), ε spent {spent_eps} of {total_eps}"
    );
    let (_, verify) = ops.get("/v1/audit/verify");
    assert_eq!(verify["intact"], true, "{verify}");
}
