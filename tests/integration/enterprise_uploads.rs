//! An applicant brings its own enterprise table (政企数据融合): only under
//! the enterprise provider the operator assigned to it, in a namespace of
//! its own, while it holds an active agreement, and only to fuse with data
//! its agreements cover; it owns the table, its raw rows still leave only
//! as its policy releases them, and a job fusing it with government data
//! runs only once the government owner permits the fusion too.

use crate::server_support::{Client, OPS_TOKEN, TestServer, approval};
use sandbox_server::ServerConfig;
use serde_json::{Value, json};

const REFUNDS_ENTRY: &str = r#"
id = "gov.export_refunds"
title = "出口退税"
provider = { id = "shanghai-tax", name = "国家税务总局上海市税务局", kind = "government" }
domain = "tax"
summary = "Export tax refunds per enterprise."
update_frequency = "yearly"
time_coverage = "2024"
area_coverage = "上海市"
format = "CSV"
open_class = "conditional"
open_conditions = "有条件开放: 仅在数据沙箱内使用。"
fields = [
  { name = "credit_code", type = "utf8", description = "统一社会信用代码" },
  { name = "refund", type = "float64", description = "退税额", unit = "万元" },
]
"#;

/// The tax office's policy; `fusion` is its `[[fusion]]` section, if any.
fn refunds_policy(fusion: &str) -> String {
    format!(
        r#"
dataset = "gov.export_refunds"
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
credit_code = {{ roles = ["identifier", "privacy_unit", "join_key"] }}
refund = {{ role = "measure", bounds = [0.0, 1000.0] }}
{fusion}
"#
    )
}

/// The fintech's own table's entry, with its provider and open class.
fn customers_entry(provider: &str, kind: &str, class: &str) -> String {
    customers_entry_as("fintech.customers", provider, "示例金融科技公司", kind, class)
}

fn customers_entry_as(id: &str, provider: &str, name: &str, kind: &str, class: &str) -> String {
    format!(
        r#"
id = "{id}"
title = "小微企业客户"
provider = {{ id = "{provider}", name = "{name}", kind = "{kind}" }}
domain = "finance"
summary = "The fintech's small-business customers and their credit lines."
update_frequency = "monthly"
time_coverage = "2024"
area_coverage = "上海市"
format = "CSV"
open_class = "{class}"
open_conditions = "仅限本企业在数据沙箱内与政府数据融合使用。"
fields = [
  {{ name = "credit_code", type = "utf8", description = "统一社会信用代码" }},
  {{ name = "segment", type = "utf8", description = "客户分层" }},
  {{ name = "credit_line", type = "float64", description = "授信额度", unit = "万元" }},
]
"#
    )
}

/// The fintech's policy; `fusion` is its `[[fusion]]` section.
fn customers_policy(fusion: &str) -> String {
    format!(
        r#"
dataset = "fintech.customers"
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
credit_code = {{ roles = ["identifier", "privacy_unit", "join_key"] }}
segment = {{ role = "dimension", public_keys = ["micro", "small"] }}
credit_line = {{ role = "measure", bounds = [0.0, 500.0] }}
{fusion}
"#
    )
}

const FUSE_WITH_REFUNDS: &str =
    "[[fusion]]\ndataset = \"gov.export_refunds\"\non = [[\"credit_code\", \"credit_code\"]]";
const FUSE_WITH_CUSTOMERS: &str =
    "[[fusion]]\ndataset = \"fintech.customers\"\non = [[\"credit_code\", \"credit_code\"]]";
const FUSE_WITH_ENTITIES: &str =
    "[[fusion]]\ndataset = \"gov.legal_entities\"\non = [[\"credit_code\", \"credit_code\"]]";

fn code(i: u32) -> String {
    sandbox_model::credit_code::compose('9', '1', "310115", &format!("{i:08}")).expect("code")
}

fn put(server: &TestServer, token: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let r = ureq::put(&format!("{}{path}", server.base))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "application/octet-stream")
        .send_bytes(body);
    let (status, r) = match r {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(c, r)) => (c, r),
        Err(e) => panic!("{e}"),
    };
    (
        status,
        serde_json::from_str(&r.into_string().expect("body")).expect("json"),
    )
}

fn rule(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["error"]["rule"].as_str())
}

fn in_catalog(client: &Client, id: &str) -> bool {
    let (_, catalog) = client.get("/v1/catalog");
    catalog.as_array().expect("list").iter().any(|d| d["id"] == id)
}

fn job(client: &Client, agreement: &str, sql: &str) -> Value {
    let (status, job) = client.post("/v1/jobs", &json!({"kind": "sql", "agreement": agreement, "sql": sql}));
    assert_eq!(status, 202, "{job}");
    client.wait_job(job["id"].as_str().expect("id"))
}

#[test]
fn an_applicant_brings_its_own_table_owns_it_and_fuses_it_only_with_every_owners_permission() {
    let keys = tempfile::tempdir().expect("tmp");
    let server = TestServer::start(ServerConfig {
        pseudonym_key: Some(keys.path().join("pseudonym.key")),
        ..ServerConfig::default()
    });
    let ops = server.client(Some(OPS_TOKEN));
    let tax_token = ops.create_account("tax-owner", "data_owner", Some("shanghai-tax"));
    let fintech_token = ops.create_account("fintech", "applicant", Some("fintech-co"));
    let rival_token = ops.create_account("rival", "applicant", None);
    let (tax, fintech) = (server.client(Some(&tax_token)), server.client(Some(&fintech_token)));

    // The tax office registers its refunds (codes 0..400). (Test servers
    // share the generated tables' directory: ids no other test registers.)
    let mut refunds = String::from("credit_code,refund\n");
    for i in 0..400 {
        refunds.push_str(&format!("{},{}\n", code(i), i % 700));
    }
    assert_eq!(
        put(
            &server,
            &tax_token,
            "/v1/datasets/gov.export_refunds/upload",
            refunds.as_bytes()
        )
        .0,
        201
    );
    let (status, answer) = tax.post(
        "/v1/datasets/gov.export_refunds/register",
        &json!({"entry": REFUNDS_ENTRY, "policy": refunds_policy(""), "key": ["credit_code"]}),
    );
    assert_eq!(status, 201, "{answer}");

    // The fintech's customers (codes 100..400: 300 of them are taxpayers).
    let mut customers = String::from("credit_code,segment,credit_line\n");
    for i in 100..400 {
        let segment = if i % 3 == 0 { "micro" } else { "small" };
        customers.push_str(&format!("{},{segment},{}\n", code(i), i % 450));
    }
    let upload = "/v1/datasets/fintech.customers/upload";
    let register = "/v1/datasets/fintech.customers/register";

    // An applicant without an enterprise provider brings nothing in, nor
    // one without an agreement.
    let answer = put(&server, &rival_token, upload, customers.as_bytes());
    assert_eq!(rule(&answer), (403, Some("applicant-upload-provider")), "{}", answer.1);
    let answer = put(&server, &fintech_token, upload, customers.as_bytes());
    assert_eq!(rule(&answer), (403, Some("applicant-upload-agreement")), "{}", answer.1);

    // An agreement on the refunds.
    let application = json!({
        "id": "r1", "datasets": ["gov.export_refunds"],
        "columns": ["gov.export_refunds.credit_code", "gov.export_refunds.refund"],
        "job_kinds": ["sql"], "scenario": "export credit for small businesses; aggregates only",
        "materials": ["营业执照 business licence"],
    });
    assert_eq!(fintech.post("/v1/applications", &application).0, 201);
    assert_eq!(tax.post("/v1/applications/r1/decision", &approval(5.0, 100)).0, 200);
    let answer = put(&server, &fintech_token, upload, customers.as_bytes());
    assert_eq!(answer.0, 201, "{}", answer.1);

    // Registrations it may not make: each refused by its rule, nothing installed.
    let refusals = [
        (
            customers_entry("fintech-co", "government", "conditional"),
            customers_policy(FUSE_WITH_REFUNDS),
            "applicant-upload-provider",
        ),
        (
            customers_entry("shanghai-tax", "enterprise", "conditional"),
            customers_policy(FUSE_WITH_REFUNDS),
            "applicant-upload-provider",
        ),
        (
            customers_entry_as(
                "fintech.customers",
                "fintech-co",
                "国家税务总局上海市税务局",
                "enterprise",
                "conditional",
            ),
            customers_policy(FUSE_WITH_REFUNDS),
            "applicant-upload-provider",
        ),
        (
            customers_entry("fintech-co", "enterprise", "open"),
            customers_policy(FUSE_WITH_REFUNDS),
            "applicant-upload-class",
        ),
        (
            customers_entry("fintech-co", "enterprise", "conditional"),
            customers_policy(""),
            "applicant-upload-fusion",
        ),
        (
            customers_entry("fintech-co", "enterprise", "conditional"),
            customers_policy(FUSE_WITH_ENTITIES),
            "applicant-upload-fusion",
        ),
    ];
    // (Each registration call removes the upload, refused or not.)
    for (entry, policy, expected) in &refusals {
        assert_eq!(put(&server, &fintech_token, upload, customers.as_bytes()).0, 201);
        let answer = fintech.post(
            register,
            &json!({"entry": entry, "policy": policy, "key": ["credit_code"]}),
        );
        assert_eq!(rule(&answer), (403, Some(*expected)), "{}", answer.1);
        assert!(!in_catalog(&ops, "fintech.customers"));
    }
    // Not in the government's namespace either.
    let gov_id = "gov.fintech_customers";
    let answer = put(
        &server,
        &fintech_token,
        &format!("/v1/datasets/{gov_id}/upload"),
        customers.as_bytes(),
    );
    assert_eq!(answer.0, 201, "{}", answer.1);
    let answer = fintech.post(
        &format!("/v1/datasets/{gov_id}/register"),
        &json!({
            "entry": customers_entry_as(gov_id, "fintech-co", "示例金融科技公司", "enterprise", "conditional"),
            "policy": customers_policy(FUSE_WITH_REFUNDS).replace("fintech.customers", gov_id),
        }),
    );
    assert_eq!(rule(&answer), (403, Some("applicant-upload-namespace")), "{}", answer.1);
    assert!(!in_catalog(&ops, gov_id));

    // Its own table, fused with what its agreement covers: registered; the
    // fintech owns it.
    assert_eq!(put(&server, &fintech_token, upload, customers.as_bytes()).0, 201);
    let entry = customers_entry("fintech-co", "enterprise", "conditional");
    let (status, manifest) = fintech.post(
        register,
        &json!({"entry": entry, "policy": customers_policy(FUSE_WITH_REFUNDS), "key": ["credit_code"]}),
    );
    assert_eq!(status, 201, "{manifest}");
    assert_eq!(
        (manifest["owner"].as_str(), manifest["rows"].as_u64()),
        (Some("fintech"), Some(300))
    );
    let (_, me) = fintech.get("/v1/me");
    assert_eq!(
        (me["role"].as_str(), me["provider"].as_str()),
        (Some("applicant"), Some("fintech-co"))
    );
    let (_, ledger) = ops.get("/v1/audit");
    assert!(ledger.to_string().contains("enterprise_provider_assigned"), "{ledger}");
    // No raw credit code of either registered table is stored in the data
    // directory (the generated demo tables keep theirs: they are synthetic).
    let raw = code(150);
    let registered = [
        "data/fintech",
        "data/gov/export_refunds",
        "uploads",
        "catalog",
        "policies",
    ];
    for entry in registered.iter().flat_map(|d| walkdir(&server.root().join(d))) {
        let bytes = std::fs::read(&entry).expect("read");
        assert!(
            !bytes.windows(raw.len()).any(|w| w == raw.as_bytes()),
            "{} holds a raw credit code",
            entry.display()
        );
    }

    // Another enterprise may not register versions of it.
    let other_token = ops.create_account("other-co-account", "applicant", Some("other-co"));
    let answer = put(&server, &other_token, upload, customers.as_bytes());
    assert_eq!(rule(&answer), (403, Some("not-owner")), "{}", answer.1);
    // Nor may a data owner account manage the fintech's provider.
    let (status, body) = ops.post(
        "/v1/accounts",
        &json!({"id": "fintech-owner", "role": "data_owner", "provider": "fintech-co"}),
    );
    assert_eq!(status, 400, "{body}");

    // To use its table in jobs, the fintech applies like anyone; it decides
    // its own dataset's part, the tax office the refunds'.
    let application = json!({
        "id": "f1", "datasets": ["gov.export_refunds", "fintech.customers"],
        "columns": ["gov.export_refunds.credit_code", "gov.export_refunds.refund",
                    "fintech.customers.credit_code", "fintech.customers.segment", "fintech.customers.credit_line"],
        "job_kinds": ["sql"], "scenario": "export refunds of our small-business customers; aggregates only",
        "materials": ["营业执照 business licence"],
    });
    assert_eq!(fintech.post("/v1/applications", &application).0, 201);
    let (status, body) = fintech.post("/v1/applications/f1/decision", &approval(5.0, 100));
    assert_eq!(status, 200, "{body}");
    let (_, pending) = fintech.get("/v1/applications/f1");
    assert_eq!(
        pending["status"], "submitted",
        "the tax office has not decided yet: {pending}"
    );
    assert_eq!(tax.post("/v1/applications/f1/decision", &approval(5.0, 100)).0, 200);

    // Its raw rows do not leave, not even to their owner.
    let raw_rows = job(
        &fintech,
        "agreement-f1",
        "SELECT credit_code, credit_line FROM fintech.customers",
    );
    assert_eq!(
        (raw_rows["state"].as_str(), raw_rows["error"]["rule"].as_str()),
        (Some("refused"), Some("identifier-in-output")),
        "{raw_rows}"
    );

    // The fusion: refused until the tax office permits it in its own policy.
    let fused = "SELECT c.segment, COUNT(*) AS n, SUM(t.refund) AS refunds
                 FROM fintech.customers c JOIN gov.export_refunds t ON c.credit_code = t.credit_code
                 GROUP BY c.segment";
    let before = job(&fintech, "agreement-f1", fused);
    assert_eq!(
        (before["state"].as_str(), before["error"]["rule"].as_str()),
        (Some("refused"), Some("unpermitted-join")),
        "{before}"
    );
    let (status, body) = tax.call(
        "PUT",
        "/v1/policies/gov.export_refunds",
        Some(&json!({"toml": refunds_policy(FUSE_WITH_CUSTOMERS)})),
    );
    assert_eq!(status, 200, "{body}");
    let after = job(&fintech, "agreement-f1", fused);
    assert_eq!(after["state"], "succeeded", "{after}");
    let (_, result) = fintech.get(&format!("/v1/jobs/{}/result", after["id"].as_str().expect("id")));
    assert_eq!(result["kind"], "released", "{result}");
    // The join matched on pseudonyms: 100 micro and 200 small customers
    // pay tax (noise scale 2 rows, so ±40 is 20 scales).
    let rows = result["table"]["rows"].as_array().expect("rows");
    let count = |segment: &str| {
        rows.iter()
            .find(|r| r[0]["value"] == segment)
            .and_then(|r| r[1]["value"].as_f64())
            .expect("a count per segment")
    };
    assert_eq!(rows.len(), 2, "{result}");
    assert!(
        (count("micro") - 100.0).abs() < 40.0 && (count("small") - 200.0).abs() < 40.0,
        "{result}"
    );
}

fn walkdir(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
