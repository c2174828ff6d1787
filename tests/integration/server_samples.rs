//! DP sample datasets over HTTP: public routes (no token), 404 until the
//! owner made one, then the report, the CSV with the catalog's columns and
//! fresh keys only, and the Parquet file.

use crate::server_support::{TAX_SQL, TestServer, World, world};
use sandbox_ingest::{DataLayout, SampleOptions};
use sandbox_runtime::DataDir;
use sandbox_server::ServerConfig;
use serde_json::json;

/// Makes the current sample of gov.tax_payments in the server's data
/// directory, as `sandbox sample --generate` does; returns its manifest and
/// the policy's text.
fn make_tax_sample(server: &TestServer) -> (sandbox_ingest::SampleManifest, String) {
    let root = server.root();
    let dir = DataDir::open(&root).expect("dir");
    let catalog = sandbox_policy::load_catalog_dir(&dir.catalog_dir()).expect("catalog");
    let id: sandbox_model::DatasetId = "gov.tax_payments".parse().expect("id");
    let entry = catalog.get(&id).expect("entry").clone();
    let text = std::fs::read_to_string(dir.policies_dir().join("gov.tax_payments.toml")).expect("policy");
    let policy = sandbox_policy::parse_policy("gov.tax_payments.toml", &text, &catalog).expect("policy");
    let manifest = sandbox_ingest::make_sample(
        &DataLayout::new(&root),
        &entry,
        &policy,
        &dir.table_dir(&id),
        None,
        &SampleOptions::default(),
        |_| Ok(()),
    )
    .expect("sample");
    (manifest, text)
}

/// A trial over HTTP (`"trial": true`): refused until the dataset has a
/// sample, then the query's exact result on the sample, stored as the job's
/// result of kind `sql_trial`, with nothing charged; a trial that also asks
/// for ε is refused before it is queued.
#[test]
fn a_trial_job_runs_on_the_sample_and_spends_nothing() {
    let w = world();
    let a = w.agreement.clone();
    let budget = |w: &World| w.bank.get(&format!("/v1/agreements/{a}/budget")).1[0]["epsilon_spent"].clone();
    let trial = json!({"kind": "sql", "agreement": a, "sql": TAX_SQL, "trial": true});
    let (status, job) = w.bank.post("/v1/jobs", &trial);
    assert_eq!(status, 202, "{job}");
    let ended = w.bank.wait_job(job["id"].as_str().expect("id"));
    assert_eq!(ended["error"]["rule"], "trial-needs-sample", "{ended}");

    make_tax_sample(&w.server);
    let before = budget(&w);
    let (_, job) = w.bank.post("/v1/jobs", &trial);
    let id = job["id"].as_str().expect("id").to_string();
    assert_eq!(w.bank.wait_job(&id)["state"], "succeeded");
    let (status, result) = w.bank.get(&format!("/v1/jobs/{id}/result"));
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["kind"], "sql_trial", "{result}");
    let report = &result["report"];
    assert_eq!(report["columns"].as_array().map(Vec::len), Some(2), "{report}");
    let rows = report["rows"].as_array().expect("rows");
    assert!(
        !rows.is_empty() && rows.len() as u64 == report["total_rows"],
        "{report}"
    );
    assert!(
        report["samples"][0]
            .as_str()
            .is_some_and(|s| s.starts_with("gov.tax_payments@")),
        "{report}"
    );
    assert_eq!(budget(&w), before, "a trial spends nothing");

    let mut both = trial.clone();
    both["epsilon"] = json!(0.5);
    let (status, body) = w.bank.post("/v1/jobs", &both);
    assert_eq!(status, 400, "{body}");
    // A trial passes the same checks as a job: the identifier stays refused.
    let (_, job) = w.bank.post(
        "/v1/jobs",
        &json!({"kind": "sql", "agreement": a, "trial": true,
                "sql": "SELECT t.credit_code, COUNT(*) FROM gov.tax_payments t GROUP BY t.credit_code"}),
    );
    let refused = w.bank.wait_job(job["id"].as_str().expect("id"));
    assert_eq!(refused["state"], "refused", "{refused}");
}

#[test]
fn samples_are_public_and_hold_no_real_key() {
    let server = TestServer::start(ServerConfig::default());
    let anonymous = server.client(None);
    let (status, body) = anonymous.get("/v1/samples/gov.tax_payments");
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("no sample")
    );
    let (status, list) = anonymous.get("/v1/samples");
    assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(0)), "{list}");

    // The owner makes one (as `sandbox sample --generate` does).
    let (manifest, text) = make_tax_sample(&server);
    let root = server.root();
    let dir = DataDir::open(&root).expect("dir");
    let catalog = sandbox_policy::load_catalog_dir(&dir.catalog_dir()).expect("catalog");
    let id: sandbox_model::DatasetId = "gov.tax_payments".parse().expect("id");
    let entry = catalog.get(&id).expect("entry").clone();

    let (status, list) = anonymous.get("/v1/samples");
    assert_eq!(status, 200, "{list}");
    assert_eq!(list[0]["dataset"], "gov.tax_payments");
    assert_eq!(list[0]["rows"], manifest.rows);
    let (status, report) = anonymous.get("/v1/samples/gov.tax_payments");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["sample_id"], manifest.sample_id.as_str());
    assert_eq!(report["epsilon_model"], 1.0);
    assert!(report["columns"][1]["total_variation"].is_number(), "{report}");

    let (status, csv) = anonymous.get("/v1/samples/gov.tax_payments/sample.csv");
    assert_eq!(status, 200);
    let csv = csv.as_str().expect("text");
    let header: Vec<&str> = entry.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(csv.lines().next(), Some(header.join(",").as_str()));
    assert_eq!(csv.lines().count() as u64, manifest.rows + 1);
    // No real credit code of the data is in the sample.
    let real = std::fs::read_dir(dir.table_dir(&id))
        .expect("data")
        .flatten()
        .map(|e| std::fs::read(e.path()).expect("read"))
        .collect::<Vec<_>>();
    let keys: Vec<&str> = csv.lines().skip(1).filter_map(|l| l.split(',').next()).collect();
    assert!(keys.iter().all(|k| k.len() == 32));
    for k in keys.iter().take(500) {
        assert!(
            real.iter()
                .all(|bytes| !bytes.windows(k.len()).any(|w| w == k.as_bytes()))
        );
    }

    let response = ureq::get(&format!("{}/v1/samples/gov.tax_payments/sample.parquet", server.base))
        .call()
        .expect("parquet");
    assert_eq!(response.header("content-type"), Some("application/vnd.apache.parquet"));
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes).expect("bytes");
    assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"));
    let (status, _) = anonymous.get("/v1/samples/gov.nothing_here/sample.csv");
    assert_eq!(status, 404);

    // Red team: a sample is served only while the dataset is not suspended
    // and its owner's consent (the policy's `[sample]` table) stands.
    let operator = server.client(Some(crate::server_support::OPS_TOKEN));
    let (status, body) = operator.post(
        "/v1/datasets/gov.tax_payments/suspend",
        &serde_json::json!({"reason": "complaint"}),
    );
    assert_eq!(status, 200, "{body}");
    for path in [
        "/v1/samples/gov.tax_payments",
        "/v1/samples/gov.tax_payments/sample.csv",
        "/v1/samples/gov.tax_payments/sample.parquet",
    ] {
        assert_eq!(anonymous.get(path).0, 404, "{path} served while suspended");
    }
    let (_, list) = anonymous.get("/v1/samples");
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    let (status, body) = operator.post(
        "/v1/datasets/gov.tax_payments/resume",
        &serde_json::json!({"reason": "resolved"}),
    );
    assert_eq!(status, 204, "{body}");
    assert_eq!(anonymous.get("/v1/samples/gov.tax_payments").0, 200);
    let path = dir.policies_dir().join("gov.tax_payments.toml");
    let withdrawn = text.split("[sample]").next().expect("policy").to_string();
    assert_ne!(withdrawn, text, "the policy had a [sample] table");
    std::fs::write(&path, withdrawn).expect("withdraw consent");
    assert_eq!(
        anonymous.get("/v1/samples/gov.tax_payments/sample.csv").0,
        404,
        "served after the owner withdrew consent"
    );
}

/// F3 (red team, attack4): a sample made before its owner added a
/// desensitization rule shows values finer than the rule. It is no longer
/// served (report, files, list), with an error naming the dataset and
/// telling the owner to make a new one; nor is a sample whose manifest
/// predates the record of its terms. A new sample, made under the rule, is
/// served.
#[test]
fn a_sample_made_under_other_rules_is_not_served_until_made_again() {
    let server = TestServer::start(ServerConfig::default());
    let anonymous = server.client(None);
    let (first, text) = make_tax_sample(&server);
    assert_eq!(anonymous.get("/v1/samples/gov.tax_payments").0, 200);

    let root = server.root();
    let dir = DataDir::open(&root).expect("dir");
    let path = dir.policies_dir().join("gov.tax_payments.toml");
    std::fs::write(
        &path,
        format!("{text}\n[desensitize]\ntax_paid = {{ bands = [0, 100, 1000] }}\n"),
    )
    .expect("add a rule");
    let paths = [
        "/v1/samples/gov.tax_payments",
        "/v1/samples/gov.tax_payments/sample.csv",
        "/v1/samples/gov.tax_payments/sample.parquet",
    ];
    for p in paths {
        let (status, body) = anonymous.get(p);
        assert_eq!(status, 404, "{p} served under other rules: {body}");
        assert_eq!(body["error"]["rule"], "sample-stale", "{body}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("gov.tax_payments") && message.contains("sandbox sample gov.tax_payments --generate"),
            "{message}"
        );
    }
    let (_, list) = anonymous.get("/v1/samples");
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");

    // Made again under the rule: served, and every tax_paid value shown is
    // one of the edges.
    let (second, _) = make_tax_sample(&server);
    assert_ne!(second.sample_id, first.sample_id);
    let (status, csv) = anonymous.get("/v1/samples/gov.tax_payments/sample.csv");
    assert_eq!(status, 200, "{csv}");
    let csv = csv.as_str().expect("text");
    let column = csv
        .lines()
        .next()
        .expect("header")
        .split(',')
        .position(|c| c == "tax_paid")
        .expect("tax_paid");
    for line in csv.lines().skip(1) {
        let v = line.split(',').nth(column).expect("cell");
        assert!(["", "0", "100", "1000"].contains(&v), "tax_paid {v} is not a band edge");
    }

    // A manifest without the record of its terms (made before it was
    // kept) is not served either.
    let sample_dir = dir
        .current_sample_dir(&"gov.tax_payments".parse().expect("id"))
        .expect("sample");
    let manifest_path = sample_dir.join("sample.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("json");
    manifest.as_object_mut().expect("object").remove("policy_terms");
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).expect("json")).expect("write");
    let (status, body) = anonymous.get("/v1/samples/gov.tax_payments");
    assert_eq!(
        (status, &body["error"]["rule"]),
        (404, &json!("sample-stale")),
        "{body}"
    );
}
