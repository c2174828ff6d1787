//! The HTTP API end to end (the role matrix is in server_authz.rs): the
//! job lifecycle (queued → succeeded / refused / cancelled, dry runs,
//! results kept for their owner), structured errors, request limits, and
//! the OpenAPI document covering every route.

use crate::server_support::{OPS_TOKEN, TAX_SQL, TestServer, approval, tax_application, world};
use base64::Engine;
use sandbox_server::{PoolLimits, ServerConfig};
use serde_json::json;

#[test]
fn job_lifecycle_results_and_errors() {
    let w = world();
    let a = w.agreement.clone();
    let bank = &w.bank;

    // The finished job's result: noisy aggregates, ε charged once.
    let (status, result) = bank.get(&format!("/v1/jobs/{}/result", w.job));
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["kind"], "released");
    let rows = result["table"]["rows"].as_array().expect("rows");
    assert!(!rows.is_empty(), "{result}");
    let (_, budget) = bank.get(&format!("/v1/agreements/{a}/budget"));
    let spent = budget[0]["epsilon_spent"].as_f64().expect("spent");
    let charged = result["table"]["epsilon_spent"].as_f64().expect("ε");
    assert!(charged > 0.0 && (spent - charged).abs() < 1e-9, "{budget} {result}");

    // A column outside the agreement: refused, naming the rule and column.
    let (_, job) = bank.post(
        "/v1/jobs",
        &json!({"kind": "sql", "agreement": a, "sql": "SELECT t.year, AVG(t.vat) FROM gov.tax_payments t GROUP BY t.year"}),
    );
    let refused = bank.wait_job(job["id"].as_str().expect("id"));
    assert_eq!(refused["state"], "refused", "{refused}");
    assert_eq!(refused["error"]["rule"], "agreement-column");
    assert!(
        refused["error"]["message"]
            .as_str()
            .expect("message")
            .contains("gov.tax_payments.vat")
    );
    let (status, body) = bank.get(&format!("/v1/jobs/{}/result", refused["id"].as_str().expect("id")));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")));

    // A dry run: a report, no budget spent.
    let (_, job) = bank.post(
        "/v1/jobs",
        &json!({"kind": "sql", "agreement": a, "sql": TAX_SQL, "dry_run": true, "epsilon": 0.5}),
    );
    let id = job["id"].as_str().expect("id").to_string();
    assert_eq!(bank.wait_job(&id)["state"], "succeeded");
    let (_, report) = bank.get(&format!("/v1/jobs/{id}/result"));
    assert_eq!(report["kind"], "dry_run", "{report}");
    assert_eq!(report["report"]["epsilon"], 0.5);
    let (_, after) = bank.get(&format!("/v1/agreements/{a}/budget"));
    assert_eq!(
        after[0]["epsilon_spent"], budget[0]["epsilon_spent"],
        "a dry run spends nothing"
    );

    // The owner lowers the per-query ε cap; the running server enforces
    // it from the next job on.
    let (_, policy) = w.tax.get("/v1/policies/gov.tax_payments");
    let tightened = policy["toml"]
        .as_str()
        .expect("toml")
        .replace("epsilon_per_query = 1.0", "epsilon_per_query = 0.25");
    let (status, body) = w.tax.call(
        "PUT",
        "/v1/policies/gov.tax_payments",
        Some(&json!({"toml": tightened})),
    );
    assert_eq!(status, 200, "{body}");
    let (_, job) = bank.post(
        "/v1/jobs",
        &json!({"kind": "sql", "agreement": a, "sql": TAX_SQL, "epsilon": 0.5}),
    );
    let over = bank.wait_job(job["id"].as_str().expect("id"));
    assert_eq!(over["error"]["rule"], "epsilon-over-cap", "{over}");
    let (_, page) = bank.get("/v1/catalog/gov.tax_payments");
    assert_eq!(page["policy_digest"], body["digest"], "{page}");
    let invalid = w.tax.call(
        "PUT",
        "/v1/policies/gov.tax_payments",
        Some(&json!({"toml": "[dataset"})),
    );
    assert_eq!(
        (invalid.0, invalid.1["error"]["rule"].as_str()),
        (403, Some("policy-invalid")),
        "{invalid:?}"
    );

    // Bad requests: structured errors, nothing queued.
    for (body, fragment) in [
        (json!({"kind": "sql", "agreement": a, "sql": "  "}), "no SQL"),
        (json!({"kind": "sql", "agreement": a}), "sql"),
        (json!({"kind": "python", "agreement": a, "sql": TAX_SQL}), "python"),
        (
            json!({"kind": "sql", "agreement": a, "sql": TAX_SQL, "wasm_module": "%%%"}),
            "base64",
        ),
        (
            json!({"kind": "sql", "agreement": a, "sql": "x".repeat(200_000)}),
            "bytes",
        ),
    ] {
        let (status, response) = bank.post("/v1/jobs", &body);
        assert_eq!(status, 400, "{response}");
        assert_eq!(response["error"]["code"], "invalid");
        assert!(
            response["error"]["message"]
                .as_str()
                .expect("message")
                .contains(fragment),
            "{fragment}: {response}"
        );
    }
    let (status, response) = bank.call("GET", "/v1/nowhere", None);
    assert_eq!((status, response["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, response) = bank.call("DELETE", "/v1/jobs", None);
    assert_eq!(
        (status, response["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (_, jobs) = bank.get("/v1/jobs");
    assert_eq!(
        jobs.as_array().expect("jobs").len(),
        4,
        "bad requests queue nothing: {jobs}"
    );

    // The usage report and the ledger record the jobs.
    let (_, report) = bank.get(&format!("/v1/agreements/{a}/report"));
    assert!(report.is_object(), "{report}");
    let (_, entries) = w.ops.get("/v1/audit");
    let kinds: Vec<&str> = entries
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"job_charged") && kinds.contains(&"job_refused"),
        "{kinds:?}"
    );
    let (_, metrics) = w.ops.get("/metrics");
    let metrics = metrics.as_str().expect("text");
    assert!(
        metrics.contains("sandbox_jobs_total{outcome=\"succeeded\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sandbox_jobs_total{outcome=\"refused\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sandbox_epsilon_spent_total{dataset=\"gov.tax_payments\"}"),
        "{metrics}"
    );
}

#[test]
fn queued_jobs_can_be_cancelled_and_the_queue_is_bounded() {
    // One worker, two queue slots: a burst fills the queue, the rest is
    // answered 503, and a waiting job is cancelled before it is charged.
    let w = {
        let mut w = world();
        // A fresh server with a small pool over a fresh store.
        let server = TestServer::start(ServerConfig {
            pool: PoolLimits {
                workers: 1,
                max_queued: 2,
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
        assert_eq!(tax.post("/v1/applications/a1/decision", &approval(50.0, 1000)).0, 200);
        w.server = server;
        w.ops = ops;
        w.bank = bank;
        w
    };
    let job = json!({"kind": "sql", "agreement": "agreement-a1", "sql": TAX_SQL});
    let mut accepted = Vec::new();
    let mut busy = 0;
    for _ in 0..12 {
        let (status, body) = w.bank.post("/v1/jobs", &job);
        match status {
            202 => accepted.push(body["id"].as_str().expect("id").to_string()),
            503 => {
                assert_eq!(body["error"]["code"], "busy");
                busy += 1;
            }
            other => panic!("{other} {body}"),
        }
    }
    assert!(
        busy > 0,
        "a burst of 12 over one worker and 2 slots is turned away in part"
    );
    // Cancel the last accepted job (still waiting, or already running).
    let last = accepted.last().expect("accepted").clone();
    let (status, body) = w.bank.post(&format!("/v1/jobs/{last}/cancel"), &json!({}));
    assert!(matches!(status, 200 | 202 | 409), "{status} {body}");
    let mut states = Vec::new();
    for id in &accepted {
        states.push(w.bank.wait_job(id)["state"].as_str().expect("state").to_string());
    }
    let succeeded = states.iter().filter(|s| *s == "succeeded").count();
    let (_, budget) = w.bank.get("/v1/agreements/agreement-a1/budget");
    let (_, charges) = w.ops.get("/v1/audit");
    let charged = charges
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "job_charged")
        .count();
    // Every charge is one job's; a job cancelled while waiting has none.
    assert!(
        charged >= succeeded && charged <= accepted.len(),
        "{states:?} {charged}"
    );
    let spent = budget[0]["epsilon_spent"].as_f64().expect("spent");
    let per_job = spent / charged as f64;
    assert!((per_job * charged as f64 - spent).abs() < 1e-9 && per_job > 0.0);
    if status == 200 {
        assert_eq!(
            states.last().map(String::as_str),
            body["state"].as_str(),
            "{states:?} {body}"
        );
    }
}

#[test]
fn the_openapi_document_covers_every_route() {
    let server = TestServer::start(ServerConfig::default());
    let (status, doc) = server.client(None).get("/openapi.json");
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/health", "get"),
        ("/openapi.json", "get"),
        ("/metrics", "get"),
        ("/v1/me", "get"),
        ("/v1/accounts", "post"),
        ("/v1/catalog", "get"),
        ("/v1/catalog/{dataset}", "get"),
        ("/v1/policies/{dataset}", "get"),
        ("/v1/policies/{dataset}", "put"),
        ("/v1/datasets/{dataset}/suspend", "post"),
        ("/v1/datasets/{dataset}/resume", "post"),
        ("/v1/complaints", "get"),
        ("/v1/complaints", "post"),
        ("/v1/applications", "get"),
        ("/v1/applications", "post"),
        ("/v1/applications/{id}", "get"),
        ("/v1/applications/{id}", "put"),
        ("/v1/applications/{id}/decision", "post"),
        ("/v1/agreements", "get"),
        ("/v1/agreements/{id}", "get"),
        ("/v1/agreements/{id}/revoke", "post"),
        ("/v1/agreements/{id}/budget", "get"),
        ("/v1/agreements/{id}/report", "get"),
        ("/v1/jobs", "get"),
        ("/v1/jobs", "post"),
        ("/v1/jobs/{id}", "get"),
        ("/v1/jobs/{id}/result", "get"),
        ("/v1/jobs/{id}/cancel", "post"),
        ("/v1/audit", "get"),
        ("/v1/audit/verify", "get"),
        ("/v1/datasets/{dataset}/upload", "put"),
        ("/v1/datasets/{dataset}/register", "post"),
        ("/v1/samples", "get"),
        ("/v1/samples/{dataset}", "get"),
        ("/v1/samples/{dataset}/sample.csv", "get"),
        ("/v1/samples/{dataset}/sample.parquet", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is documented"
        );
    }
    let documented: usize = paths.values().map(|p| p.as_object().map_or(0, |m| m.len())).sum();
    assert_eq!(documented, 36, "every documented operation is listed above");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[test]
fn oversized_bodies_are_refused() {
    let server = TestServer::start(ServerConfig {
        max_body_bytes: 4096,
        ..ServerConfig::default()
    });
    let ops = server.client(Some(OPS_TOKEN));
    let (status, body) = ops.post(
        "/v1/complaints",
        &json!({"dataset": "gov.tax_payments", "text": "x".repeat(10_000)}),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
}

#[test]
fn webassembly_jobs_over_http() {
    let Some(dir) = std::env::var_os("SANDBOX_WASM_GUESTS") else {
        eprintln!("SANDBOX_WASM_GUESTS is not set: run scripts/test.sh to build the guests and run this test");
        return;
    };
    let module = std::fs::read(std::path::Path::new(&dir).join("risk_score.wasm")).expect("risk_score.wasm");
    let module = base64::engine::general_purpose::STANDARD.encode(module);
    let server = TestServer::start(ServerConfig::default());
    let ops = server.client(Some(OPS_TOKEN));
    let bank = server.client(Some(&ops.create_account("bank", "applicant", None)));
    let grid = server.client(Some(&ops.create_account(
        "grid",
        "data_owner",
        Some("shanghai-utilities"),
    )));
    let application = json!({
        "id": "w1", "datasets": ["gov.utility_usage"], "columns": ["gov.utility_usage.*"],
        "job_kinds": ["sql", "wasm"], "scenario": "energy-based credit risk", "materials": [],
    });
    assert_eq!(bank.post("/v1/applications", &application).0, 201);
    assert_eq!(grid.post("/v1/applications/w1/decision", &approval(50.0, 100)).0, 200);
    let sql = "SELECT month, AVG(risk_score(electricity_kwh, gas_m3)) FROM gov.utility_usage GROUP BY month";

    // A UDF inside SQL: released as a measure.
    let (status, job) = bank.post(
        "/v1/jobs",
        &json!({"kind": "sql", "agreement": "agreement-w1", "sql": sql, "wasm_module": module}),
    );
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    assert_eq!(bank.wait_job(&id)["state"], "succeeded");
    let (_, result) = bank.get(&format!("/v1/jobs/{id}/result"));
    assert!(
        !result["table"]["rows"].as_array().expect("rows").is_empty(),
        "{result}"
    );

    // A module with no analysis export, and bytes that are no module at all:
    // refused by name, the server stays up.
    for (request, rule) in [
        (
            json!({"kind": "analysis", "agreement": "agreement-w1", "input_sql": "SELECT electricity_kwh FROM gov.utility_usage", "wasm_module": module}),
            "wasm-no-analysis",
        ),
        (
            json!({"kind": "sql", "agreement": "agreement-w1", "sql": sql, "wasm_module": "AGFzbQEAAAAB/////w=="}),
            "wasm-module",
        ),
    ] {
        let (status, job) = bank.post("/v1/jobs", &request);
        assert_eq!(status, 202, "{job}");
        let ended = bank.wait_job(job["id"].as_str().expect("id"));
        assert_eq!(
            (ended["state"].as_str(), ended["error"]["rule"].as_str()),
            (Some("refused"), Some(rule)),
            "{ended}"
        );
    }
    assert_eq!(server.client(None).get("/health").0, 200);
    let (_, entries) = ops.get("/v1/audit");
    let refused_modules = entries
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "job_refused")
        .filter(|e| {
            e["payload"]["submission"]
                .as_str()
                .is_some_and(|s| s.contains("refused at admission"))
        })
        .count();
    assert_eq!(refused_modules, 2, "both refused modules are in the ledger");
}
