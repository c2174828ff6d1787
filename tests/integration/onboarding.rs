//! Registered datasets on the job path: two owners register tables that
//! share credit codes; jobs join them on the pseudonyms; a job whose
//! session was built before a new version keeps reading the old one while
//! jobs built after read the new; no raw code is stored anywhere.
//!
//! The counts are exact because the test queries the job sessions' raw
//! DataFusion state directly (no policy check, no noise): it tests what
//! the sessions bind, not what a job may release.

use sandbox_ingest::{DataLayout, IngestOptions, PseudonymKey, Registration, stage};
use sandbox_model::credit_code;
use sandbox_runtime::{DataDir, Sandbox};
use sandbox_sql::datafusion::arrow::array::{Array, AsArray};
use sandbox_sql::datafusion::arrow::datatypes::Int64Type;
use sandbox_sql::datafusion::prelude::SessionContext;
use std::path::Path;

const INSPECTIONS_ENTRY: &str = include_str!("../../examples/onboarding/gov.market_inspections.entry.toml");
const INSPECTIONS_POLICY: &str = include_str!("../../examples/onboarding/gov.market_inspections.policy.toml");

const LOANS_ENTRY: &str = r#"
id = "bank.credit_lines"
title = "普惠贷款授信"
provider = { id = "inclusive-bank", name = "Inclusive Bank", kind = "enterprise" }
domain = "finance"
summary = "Credit lines granted to small enterprises."
update_frequency = "monthly"
time_coverage = "2024"
area_coverage = "上海市"
format = "CSV"
open_class = "conditional"
open_conditions = "仅在数据沙箱内与政府数据融合使用。"
fields = [
  { name = "credit_code", type = "utf8", description = "统一社会信用代码" },
  { name = "amount", type = "float64", description = "授信额度", unit = "万元" },
]
"#;

const LOANS_POLICY: &str = r#"
dataset = "bank.credit_lines"
version = "1"
unit_entity = "enterprise"
[release]
mode = "dp"
min_units = 10
aggregates = ["count", "sum", "avg"]
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
credit_code = { roles = ["identifier", "privacy_unit"] }
amount = { role = "measure", bounds = [0.0, 1000.0] }
"#;

fn code(i: u32) -> String {
    credit_code::compose('9', '1', "310106", &format!("{i:08}")).expect("code")
}

fn write(path: &Path, header: &str, rows: impl Iterator<Item = String>) {
    let mut text = format!("{header}\n");
    for r in rows {
        text.push_str(&r);
        text.push('\n');
    }
    std::fs::write(path, text).expect("write csv");
}

fn register(root: &Path, key: &PseudonymKey, file: &Path, entry: &str, policy: &str) -> u64 {
    let registration = Registration {
        file,
        entry,
        policy: Some(policy),
        owner: "owner",
        options: IngestOptions::default(),
    };
    stage(&DataLayout::new(root), key, &registration)
        .and_then(|s| s.commit(|_| Ok(())))
        .expect("register")
        .version
}

async fn count(sandbox_session: &sandbox_sql::JobSession, sql: &str) -> i64 {
    let ctx = SessionContext::new_with_state(sandbox_session.state().clone());
    let batches = ctx.sql(sql).await.expect("plan").collect().await.expect("run");
    let column = batches[0].column(0);
    assert!(!column.is_null(0));
    column.as_primitive::<Int64Type>().value(0)
}

const JOIN: &str =
    "SELECT COUNT(*) FROM gov.market_inspections i JOIN bank.credit_lines b ON i.credit_code = b.credit_code";

#[tokio::test]
async fn jobs_join_registered_tables_on_pseudonyms_and_keep_their_version() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("data");
    let dir = DataDir::open(&root).expect("data dir");
    let key = PseudonymKey::load_or_create(&tmp.path().join("secret/pseudonym.key"), &root).expect("key");
    let inspections = tmp.path().join("inspections.csv");
    let loans = tmp.path().join("loans.csv");
    let header = "credit_code,district,inspected,outcome,fine";
    write(
        &inspections,
        header,
        (0..300).map(|i| format!("{},静安区,2024-03-0{},合格,", code(i), 1 + i % 9)),
    );
    write(
        &loans,
        "credit_code,amount",
        (100..400).map(|i| format!("{},{}", code(i), i % 500)),
    );
    assert_eq!(
        register(&root, &key, &inspections, INSPECTIONS_ENTRY, INSPECTIONS_POLICY),
        1
    );
    assert_eq!(register(&root, &key, &loans, LOANS_ENTRY, LOANS_POLICY), 1);

    let sandbox = Sandbox::open(dir.clone()).expect("sandbox");
    let before = sandbox.session_for_grant("demo").await.expect("session");
    assert_eq!(count(&before, "SELECT COUNT(*) FROM gov.market_inspections").await, 300);
    // The same code in both owners' tables has the same pseudonym.
    assert_eq!(count(&before, JOIN).await, 200);
    // Raw codes match nothing; the pseudonym matches.
    let raw = format!(
        "SELECT COUNT(*) FROM bank.credit_lines WHERE credit_code = '{}'",
        code(150)
    );
    assert_eq!(count(&before, &raw).await, 0);
    let pseudo = format!(
        "SELECT COUNT(*) FROM bank.credit_lines WHERE credit_code = '{}'",
        key.pseudonym(&code(150))
    );
    assert_eq!(count(&before, &pseudo).await, 1);

    // A new version: jobs that start now see it, the job built before keeps v1.
    write(
        &inspections,
        header,
        (0..400).map(|i| format!("{},静安区,2024-04-0{},合格,", code(i), 1 + i % 9)),
    );
    assert_eq!(
        register(&root, &key, &inspections, INSPECTIONS_ENTRY, INSPECTIONS_POLICY),
        2
    );
    let after = Sandbox::open(dir)
        .expect("sandbox")
        .session_for_grant("demo")
        .await
        .expect("session");
    assert_eq!(count(&after, "SELECT COUNT(*) FROM gov.market_inspections").await, 400);
    assert_eq!(count(&after, JOIN).await, 300);
    assert_eq!(count(&before, "SELECT COUNT(*) FROM gov.market_inspections").await, 300);
    assert_eq!(count(&before, JOIN).await, 200);

    // Nothing under the data directory holds a raw code.
    let codes: Vec<String> = (0..400).map(code).collect();
    let mut scanned = 0;
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            scanned += 1;
            let bytes = std::fs::read(&p).expect("read");
            for c in &codes {
                assert!(
                    !bytes.windows(c.len()).any(|w| w == c.as_bytes()),
                    "{} holds a raw code",
                    p.display()
                );
            }
        }
    }
    assert!(scanned > 20, "{scanned} files");
}

/// Catalog everywhere: a dataset registered after the sandbox opened (by
/// `sandbox dataset register`, say, while `sandbox serve` runs) is in its
/// catalog and policies, and queryable, after [`Sandbox::refresh`], which
/// is a no-op when nothing changed.
#[tokio::test]
async fn refresh_brings_a_dataset_registered_later_to_jobs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("data");
    let dir = DataDir::open(&root).expect("data dir");
    let key = PseudonymKey::from_secret(&[9; 32]).expect("key");
    let sandbox = Sandbox::open(dir).expect("sandbox");
    let id: sandbox_model::DatasetId = "bank.credit_lines".parse().expect("id");
    assert!(sandbox.catalog().get(&id).is_none());
    assert!(!sandbox.refresh().expect("refresh"), "nothing changed yet");

    let loans = tmp.path().join("loans.csv");
    write(
        &loans,
        "credit_code,amount",
        (0..400).map(|i| format!("{},{}", code(i), i % 500)),
    );
    register(&root, &key, &loans, LOANS_ENTRY, LOANS_POLICY);
    // A job starting now still sees the catalog it had…
    assert!(sandbox.catalog().get(&id).is_none());
    // …until the refresh every server request and Flight SQL job makes.
    assert!(sandbox.refresh().expect("refresh"));
    assert!(!sandbox.refresh().expect("again"), "a second refresh finds nothing new");
    assert!(sandbox.catalog().get(&id).is_some());
    assert!(sandbox.policies().get(&id).is_some());
    let kinds: Vec<String> = sandbox
        .store()
        .audit_entries()
        .expect("ledger")
        .into_iter()
        .filter(|e| e.payload["dataset"] == "bank.credit_lines")
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["dataset_registered"]);
    sandbox
        .store()
        .upsert_grant(&sandbox_governance::Grant::new("g", "bank", vec![(id.clone(), 100.0)]))
        .expect("grant");
    let result = sandbox
        .run_sql(
            "g",
            "SELECT COUNT(*) AS n FROM bank.credit_lines",
            &sandbox_runtime::SqlJobOptions::default(),
        )
        .await
        .expect("job");
    assert!(matches!(result, sandbox_runtime::SqlJobResult::Released { .. }));
}

/// The same over HTTP: the server's catalog and the dataset's page (its
/// policy in words) show a dataset registered while it serves.
#[test]
fn a_dataset_registered_while_serving_is_in_the_http_catalog_at_once() {
    use crate::server_support::{OPS_TOKEN, TestServer};
    let server = TestServer::start(sandbox_server::ServerConfig::default());
    let ops = server.client(Some(OPS_TOKEN));
    let listed = |ops: &crate::server_support::Client| {
        let (status, list) = ops.get("/v1/catalog");
        assert_eq!(status, 200, "{list}");
        list.as_array()
            .expect("list")
            .iter()
            .any(|d| d["id"] == "bank.credit_lines")
    };
    assert!(!listed(&ops));
    let tmp = tempfile::tempdir().expect("tmp");
    let loans = tmp.path().join("loans.csv");
    write(
        &loans,
        "credit_code,amount",
        (0..50).map(|i| format!("{},{}", code(i), i)),
    );
    let key = PseudonymKey::from_secret(&[9; 32]).expect("key");
    register(&server.root(), &key, &loans, LOANS_ENTRY, LOANS_POLICY);
    assert!(listed(&ops));
    let (status, page) = ops.get("/v1/catalog/bank.credit_lines");
    assert_eq!(status, 200, "{page}");
    let words: Vec<&str> = page["policy"]
        .as_array()
        .expect("policy")
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert!(
        words.contains(&"amount: measure, aggregated only, clamped to [0, 1000] 万元"),
        "{words:?}"
    );
}
