//! Red-team attacks on enterprise uploads by applicants (attack5): an
//! applicant that registers its own table, owns it and writes its policy,
//! turned against the government owners and their data. Each test asserts
//! the secure behaviour; all six findings were fixed (docs/red-team-2026-11-30.md,
//! fifth attack) and the tests stay as regression tests. Dataset ids carry
//! a per-test `atkN` tag: test servers share the generated tables' directory.

use crate::server_support::{Client, OPS_TOKEN, TestServer, approval};
use sandbox_server::ServerConfig;
use serde_json::{Value, json};

fn entry(id: &str, provider: &str, name: &str, kind: &str) -> String {
    format!(
        r#"
id = "{id}"
title = "退税或客户"
provider = {{ id = "{provider}", name = "{name}", kind = "{kind}" }}
domain = "tax"
summary = "Per enterprise values."
update_frequency = "yearly"
time_coverage = "2024"
area_coverage = "上海市"
format = "CSV"
open_class = "conditional"
open_conditions = "有条件开放: 仅在数据沙箱内使用。"
fields = [
  {{ name = "credit_code", type = "utf8", description = "统一社会信用代码" }},
  {{ name = "segment", type = "utf8", description = "分层" }},
  {{ name = "value", type = "float64", description = "金额", unit = "万元" }},
]
"#
    )
}

/// A policy; `roles` are credit_code's, `release`/`dp` the tables' bodies.
fn policy(id: &str, roles: &str, release: &str, dp: &str, fusion: &str) -> String {
    let dp = if dp.is_empty() {
        String::new()
    } else {
        format!("[dp]\n{dp}")
    };
    format!(
        r#"
dataset = "{id}"
version = "1"
unit_entity = "enterprise"
[release]
{release}
aggregates = ["count", "sum"]
{dp}
[jobs]
sql = true
wasm = false
[columns]
credit_code = {{ roles = {roles} }}
segment = {{ role = "dimension", public_keys = ["target", "other"] }}
value = {{ role = "measure", bounds = [0.0, 1000.0] }}
{fusion}
"#
    )
}

const KEY_ROLES: &str = r#"["identifier", "privacy_unit", "join_key"]"#;
const STRICT_RELEASE: &str = "mode = \"dp\"\nmin_units = 10";
const STRICT_DP: &str =
    "epsilon_per_query = 1.0\ndelta = 1e-6\nepsilon_budget = 10.0\nmax_groups_per_unit = 1\nmax_rows_per_group = 1";

fn strict(id: &str, fusion: &str) -> String {
    policy(id, KEY_ROLES, STRICT_RELEASE, STRICT_DP, fusion)
}

fn fusion_with(other: &str) -> String {
    format!("[[fusion]]\ndataset = \"{other}\"\non = [[\"credit_code\", \"credit_code\"]]")
}

fn code(i: u32) -> String {
    sandbox_model::credit_code::compose('9', '1', "310115", &format!("{i:08}")).expect("code")
}

fn put_bytes(server: &TestServer, token: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let r = ureq::put(&format!("{}{path}", server.base))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "application/octet-stream")
        .send_bytes(body);
    let (status, r) = match r {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(c, r)) => (c, r),
        Err(e) => panic!("{e}"),
    };
    let text = r.into_string().expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Uploads `csv` and registers `id` with `entry` and `policy`.
fn register(server: &TestServer, token: &str, id: &str, csv: &str, entry: &str, policy: &str) -> (u16, Value) {
    register_with(server, token, id, csv, entry, policy, &json!(["credit_code"]))
}

fn register_with(
    server: &TestServer,
    token: &str,
    id: &str,
    csv: &str,
    entry: &str,
    policy: &str,
    key: &Value,
) -> (u16, Value) {
    let up = put_bytes(server, token, &format!("/v1/datasets/{id}/upload"), csv.as_bytes());
    if up.0 != 201 {
        return up;
    }
    server.client(Some(token)).post(
        &format!("/v1/datasets/{id}/register"),
        &json!({"entry": entry, "policy": policy, "key": key}),
    )
}

/// The government table: codes 0..400, value i % 700, segment "other".
fn gov_csv() -> String {
    let mut s = String::from("credit_code,segment,value\n");
    for i in 0..400 {
        s.push_str(&format!("{},other,{}\n", code(i), i % 700));
    }
    s
}

struct World {
    server: TestServer,
    _keys: tempfile::TempDir,
    ops: Client,
    tax_token: String,
    adv_token: String,
    gov: String,
}

/// A server with the tax office (`shanghai-tax`) and its `gov.<tag>_refunds`,
/// and the adversary applicant `adv` holding an agreement on it.
fn world(tag: &str) -> World {
    world_as(tag, &format!("{tag}-co"))
}

/// [`world`] with the adversary's enterprise provider `adv_provider`
/// (assigned by the operator, as the sandbox requires).
fn world_as(tag: &str, adv_provider: &str) -> World {
    let keys = tempfile::tempdir().expect("tmp");
    let server = TestServer::start(ServerConfig {
        pseudonym_key: Some(keys.path().join("pseudonym.key")),
        ..ServerConfig::default()
    });
    let ops = server.client(Some(OPS_TOKEN));
    // Data owner accounts need a catalog provider: the shipped tax office.
    let provider = "shanghai-tax".to_string();
    let tax_token = ops.create_account("tax-owner", "data_owner", Some(&provider));
    let adv_token = ops.create_account("adv", "applicant", Some(adv_provider));
    let gov = format!("gov.{tag}_refunds");
    let (status, body) = register(
        &server,
        &tax_token,
        &gov,
        &gov_csv(),
        &entry(&gov, &provider, "国家税务总局上海市税务局", "government"),
        &strict(&gov, ""),
    );
    assert_eq!(status, 201, "{body}");
    let adv = server.client(Some(&adv_token));
    let application = json!({
        "id": "a1", "datasets": [gov],
        "columns": [format!("{gov}.credit_code"), format!("{gov}.value")],
        "job_kinds": ["sql"], "scenario": "aggregates only", "materials": ["营业执照"],
    });
    assert_eq!(adv.post("/v1/applications", &application).0, 201);
    let tax = server.client(Some(&tax_token));
    assert_eq!(tax.post("/v1/applications/a1/decision", &approval(5.0, 100)).0, 200);
    World {
        server,
        _keys: keys,
        ops,
        tax_token,
        adv_token,
        gov,
    }
}

/// The adversary's own table: `rows` lines of (code, segment, value).
fn csv(rows: &[(u32, &str, u32)]) -> String {
    let mut s = String::from("credit_code,segment,value\n");
    for (i, seg, v) in rows {
        s.push_str(&format!("{},{seg},{v}\n", code(*i)));
    }
    s
}

fn some_customers() -> String {
    let rows: Vec<(u32, &str, u32)> = (100..200).map(|i| (i, "other", i % 50)).collect();
    csv(&rows)
}

/// HIGH. An applicant claims the provider id of a government department
/// that is not onboarded yet (no account, no dataset): its enterprise
/// table now puts that provider in the catalog, so the operator can create
/// the department's data owner account for it, and once the department
/// registers its government data the applicant owns those datasets too: it
/// rewrites their output policy (here k = 2, ε = 50 a query) and
/// decides applications for them. (And the department owns the
/// applicant's table.)
#[test]
fn atk_preclaimed_provider_owns_a_later_government_department() {
    let w = world_as("atk1", "atk1-stats");
    let (status, body) = register(
        &w.server,
        &w.adv_token,
        "atk1.mine",
        &some_customers(),
        &entry("atk1.mine", "atk1-stats", "示例企业", "enterprise"),
        &strict("atk1.mine", &fusion_with(&w.gov)),
    );
    assert_eq!(status, 201, "{body}");
    // The statistics bureau is onboarded afterwards.
    let (status, body) = w.ops.post(
        "/v1/accounts",
        &json!({"id": "stats-owner", "role": "data_owner", "provider": "atk1-stats"}),
    );
    // Fixed: one provider id has one kind of owner, so the department
    // gets an id of its own and never shares the applicant's.
    assert_eq!(status, 400, "a data owner account for an applicant's provider: {body}");
    assert!(body.to_string().contains("enterprise provider"), "{body}");
}

/// MEDIUM. The dataset namespace is "the provider's short name" (model
/// docs), yet an applicant registers its enterprise table as `gov.…`, next
/// to the government's datasets, and owns it: other applicants that apply
/// for it hand it their applications, scenarios, materials and (through
/// the usage report) their queries.
#[test]
fn atk_enterprise_table_in_the_government_namespace_is_refused() {
    let w = world("atk2");
    let (status, body) = register(
        &w.server,
        &w.adv_token,
        "gov.atk2_refunds_2025",
        &some_customers(),
        &entry("gov.atk2_refunds_2025", "atk2-co", "示例企业", "enterprise"),
        &strict("gov.atk2_refunds_2025", &fusion_with(&w.gov)),
    );
    assert_eq!(
        status, 403,
        "an applicant's enterprise table was registered in the `gov` namespace: {body}"
    );
}

/// MEDIUM. Provider ids are free text: an applicant claims `shanghai-tax`
/// with a zero-width space (or a trailing blank, a capital, a Cyrillic
/// letter), shown in the catalog with the tax office's name.
#[test]
fn atk_look_alike_provider_id_is_refused() {
    let w = world("atk3");
    // The operator cannot assign a look-alike either.
    for provider in [
        "shanghai-tax\u{200b}",
        "shanghai-tax ",
        "Shanghai-tax",
        "sh\u{430}nghai-tax",
        "shanghai-tax",
    ] {
        let (status, body) = w.ops.post(
            "/v1/accounts",
            &json!({"id": "look-alike", "role": "applicant", "provider": provider}),
        );
        assert_eq!(status, 400, "{provider:?}: {body}");
    }
    for (n, provider) in [
        "shanghai-tax\u{200b}",
        "shanghai-tax ",
        "Shanghai-tax",
        "sh\u{430}nghai-tax",
    ]
    .iter()
    .enumerate()
    {
        let id = format!("atk3.copy{n}");
        let (status, body) = register(
            &w.server,
            &w.adv_token,
            &id,
            &some_customers(),
            &entry(&id, provider, "国家税务总局上海市税务局", "enterprise"),
            &strict(&id, &fusion_with(&w.gov)),
        );
        assert!(
            status == 400 || status == 403,
            "provider id {provider:?} (look-alike of `shanghai-tax`) was accepted: {status} {body}"
        );
    }
}

/// MEDIUM. The applicant's policy declares a fusion on the government
/// table's `credit_code`; from then on the tax office cannot take the
/// `join_key` role off its own column: its new policy is refused because
/// the applicant's policy no longer validates against it. An applicant
/// vetoes a government owner's tightening of its own policy.
#[test]
fn atk_applicant_policy_cannot_veto_the_government_owners_policy() {
    let w = world("atk4");
    let (status, body) = register(
        &w.server,
        &w.adv_token,
        "atk4.mine",
        &some_customers(),
        &entry("atk4.mine", "atk4-co", "示例企业", "enterprise"),
        &strict("atk4.mine", &fusion_with(&w.gov)),
    );
    assert_eq!(status, 201, "{body}");
    let tax = w.server.client(Some(&w.tax_token));
    let tighter = policy(
        &w.gov,
        r#"["identifier", "privacy_unit"]"#,
        STRICT_RELEASE,
        STRICT_DP,
        "",
    );
    let (status, body) = tax.call(
        "PUT",
        &format!("/v1/policies/{}", w.gov),
        Some(&json!({"toml": tighter})),
    );
    assert_eq!(
        status, 200,
        "the tax office could not tighten its own policy because of the applicant's: {body}"
    );
}

/// LOW. Registration refuses a `[[fusion]]` with a dataset the applicant's
/// agreements do not cover (`applicant-upload-fusion`), but once it owns
/// the table, `PUT /v1/policies` installs any fusion, also after its
/// agreement was revoked.
#[test]
fn atk_policy_change_keeps_the_registration_fusion_rule() {
    let w = world("atk6");
    let (status, body) = register(
        &w.server,
        &w.adv_token,
        "atk6.mine",
        &some_customers(),
        &entry("atk6.mine", "atk6-co", "示例企业", "enterprise"),
        &strict("atk6.mine", &fusion_with(&w.gov)),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = w
        .ops
        .post("/v1/agreements/agreement-a1/revoke", &json!({"reason": "misuse"}));
    assert_eq!(status, 200, "{body}");
    let adv = w.server.client(Some(&w.adv_token));
    let other = strict(
        "atk6.mine",
        &format!("{}\n{}", fusion_with(&w.gov), fusion_with("gov.legal_entities")),
    );
    let (status, body) = adv.call("PUT", "/v1/policies/atk6.mine", Some(&json!({"toml": other})));
    assert_eq!(
        status, 403,
        "a fusion with a dataset no active agreement covers was installed by PUT: {body}"
    );
}

fn job(client: &Client, agreement: &str, sql: &str) -> Value {
    let (status, job) = client.post("/v1/jobs", &json!({"kind": "sql", "agreement": agreement, "sql": sql}));
    assert_eq!(status, 202, "{job}");
    client.wait_job(job["id"].as_str().expect("id"))
}

/// HELD. The adversary's table singles out one government enterprise
/// (code 150, value 150) with 300 rows of its own segment `target`, its
/// policy declares generous bounds (R = 1000, G = 2, k = 2) and then
/// threshold mode; the fused sum over the target is withheld or drowned in
/// noise calibrated to the largest R and the government's bounds.
#[test]
fn atk_fan_out_on_one_government_enterprise_stays_private() {
    let w = world("atk5");
    let mut rows: Vec<(u32, &str, u32)> = (0..300).map(|_| (150, "target", 1)).collect();
    rows.extend((200..300).map(|i| (i, "other", 1)));
    let generous = policy(
        "atk5.mine",
        KEY_ROLES,
        "mode = \"dp\"\nmin_units = 2",
        "epsilon_per_query = 5.0\ndelta = 1e-4\nepsilon_budget = 100.0\nmax_groups_per_unit = 2\nmax_rows_per_group = 1000",
        &fusion_with(&w.gov),
    );
    let (status, body) = register_with(
        &w.server,
        &w.adv_token,
        "atk5.mine",
        &csv(&rows),
        &entry("atk5.mine", "atk5-co", "示例企业", "enterprise"),
        &generous,
        &json!([]),
    );
    assert_eq!(status, 201, "{body}");
    let tax = w.server.client(Some(&w.tax_token));
    let (status, body) = tax.call(
        "PUT",
        &format!("/v1/policies/{}", w.gov),
        Some(&json!({"toml": strict(&w.gov, &fusion_with("atk5.mine"))})),
    );
    assert_eq!(status, 200, "{body}");
    let adv = w.server.client(Some(&w.adv_token));
    let application = json!({
        "id": "f1", "datasets": [w.gov, "atk5.mine"],
        "columns": [format!("{}.*", w.gov), "atk5.mine.*"],
        "job_kinds": ["sql"], "scenario": "aggregates only", "materials": ["营业执照"],
    });
    assert_eq!(adv.post("/v1/applications", &application).0, 201);
    assert_eq!(adv.post("/v1/applications/f1/decision", &approval(100.0, 100)).0, 200);
    assert_eq!(tax.post("/v1/applications/f1/decision", &approval(5.0, 100)).0, 200);
    let sql = format!(
        "SELECT c.segment, SUM(t.value) AS v FROM atk5.mine c JOIN {} t ON c.credit_code = t.credit_code GROUP BY c.segment",
        w.gov
    );
    let check = |label: &str| {
        let done = job(&adv, "agreement-f1", &sql);
        if done["state"] != "succeeded" {
            eprintln!("{label}: {done}");
            return;
        }
        let (_, result) = adv.get(&format!("/v1/jobs/{}/result", done["id"].as_str().expect("id")));
        eprintln!("{label}: {}", result["table"]);
        for row in result["table"]["rows"].as_array().into_iter().flatten() {
            if row[0]["value"] != "target" {
                continue;
            }
            let cell = &row[1];
            if let Some(ci) = cell["ci95"].as_array() {
                let half = (ci[1].as_f64().expect("ci") - ci[0].as_f64().expect("ci")) / 2.0;
                assert!(
                    half > 100.0,
                    "{label}: the target's value is released too precisely: {result}"
                );
            } else {
                assert!(
                    cell["value"].is_null(),
                    "{label}: the target's value is released without noise: {result}"
                );
            }
        }
    };
    check("dp");
    // Mid-way, its own policy switches to threshold mode with k = 2.
    let threshold = policy(
        "atk5.mine",
        KEY_ROLES,
        "mode = \"threshold\"\nmin_units = 2",
        "",
        &fusion_with(&w.gov),
    );
    let (status, body) = adv.call("PUT", "/v1/policies/atk5.mine", Some(&json!({"toml": threshold})));
    assert_eq!(status, 200, "{body}");
    check("threshold");
}

/// LOW (DP holds; the government's k does not). The government policy
/// says `min_units = 10` ("minimum distinct privacy units per released
/// group", docs/policy.md) in `dp` mode, where k is enforced through
/// partition selection. The applicant's policy declares public keys on its
/// own dimension, so a fused query grouped by it skips partition selection
/// and k altogether: a group holding one government enterprise (code 150)
/// is released (noisy, scale 1000 here). Public keys declared by another
/// owner should not waive this owner's k.
#[test]
fn atk_applicant_public_keys_do_not_waive_the_government_k() {
    let w = world("atk7");
    let mut rows: Vec<(u32, &str, u32)> = vec![(150, "target", 1)];
    rows.extend((200..300).map(|i| (i, "other", 1)));
    let (status, body) = register(
        &w.server,
        &w.adv_token,
        "atk7.mine",
        &csv(&rows),
        &entry("atk7.mine", "atk7-co", "示例企业", "enterprise"),
        &policy(
            "atk7.mine",
            KEY_ROLES,
            "mode = \"dp\"\nmin_units = 2",
            STRICT_DP,
            &fusion_with(&w.gov),
        ),
    );
    assert_eq!(status, 201, "{body}");
    let tax = w.server.client(Some(&w.tax_token));
    let (status, body) = tax.call(
        "PUT",
        &format!("/v1/policies/{}", w.gov),
        Some(&json!({"toml": strict(&w.gov, &fusion_with("atk7.mine"))})),
    );
    assert_eq!(status, 200, "{body}");
    let adv = w.server.client(Some(&w.adv_token));
    let application = json!({
        "id": "f1", "datasets": [w.gov, "atk7.mine"],
        "columns": [format!("{}.*", w.gov), "atk7.mine.*"],
        "job_kinds": ["sql"], "scenario": "aggregates only", "materials": ["营业执照"],
    });
    assert_eq!(adv.post("/v1/applications", &application).0, 201);
    assert_eq!(adv.post("/v1/applications/f1/decision", &approval(5.0, 100)).0, 200);
    assert_eq!(tax.post("/v1/applications/f1/decision", &approval(5.0, 100)).0, 200);
    let sql = format!(
        "SELECT c.segment, SUM(t.value) AS v FROM atk7.mine c JOIN {} t ON c.credit_code = t.credit_code GROUP BY c.segment",
        w.gov
    );
    let done = job(&adv, "agreement-f1", &sql);
    assert_eq!(done["state"], "succeeded", "{done}");
    let (_, result) = adv.get(&format!("/v1/jobs/{}/result", done["id"].as_str().expect("id")));
    let rows = result["table"]["rows"].as_array().expect("rows");
    let target = rows.iter().find(|r| r[0]["value"] == "target").expect("target group");
    assert_eq!(
        target[1]["type"], "withheld",
        "a group of one government enterprise was released despite the government's k = 10: {result}"
    );
}
