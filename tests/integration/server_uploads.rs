//! Registration over HTTP: an owner streams a file up and registers it; the
//! upload is size-limited, a failed or truncated upload leaves nothing and
//! is restarted by sending it again, and only the dataset's owner may.

use crate::server_support::{OPS_TOKEN, TestServer};
use sandbox_server::ServerConfig;
use serde_json::json;
use std::io::{Read, Write};

const ENTRY: &str = r#"
id = "gov.tax_refunds"
title = "出口退税"
provider = { id = "shanghai-tax", name = "国家税务总局上海市税务局", kind = "government" }
domain = "tax"
summary = "Export tax refunds per enterprise and year."
update_frequency = "yearly"
time_coverage = "2024"
area_coverage = "上海市"
format = "CSV"
open_class = "conditional"
open_conditions = "有条件开放: 仅在数据沙箱内使用。"
max_rows_per_value = { credit_code = 1 }
fields = [
  { name = "credit_code", type = "utf8", description = "统一社会信用代码" },
  { name = "refund", type = "float64", description = "退税额", unit = "万元" },
]
"#;

const POLICY: &str = r#"
dataset = "gov.tax_refunds"
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
credit_code = { roles = ["identifier", "privacy_unit"] }
refund = { role = "measure", bounds = [0.0, 1000.0] }
"#;

fn csv(rows: u32) -> String {
    let mut s = String::from("credit_code,refund\n");
    for i in 0..rows {
        let code = sandbox_model::credit_code::compose('9', '1', "310115", &format!("{i:08}")).expect("code");
        s.push_str(&format!("{code},{}\n", i % 900));
    }
    s
}

fn put(server: &TestServer, token: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let r = ureq::put(&format!("{}{path}", server.base))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "application/octet-stream")
        .send_bytes(body);
    let (status, r) = match r {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(c, r)) => (c, r),
        // The server may answer (413) and close while a large body is
        // still being sent: the client then sees the connection cut.
        Err(e) => return (0, json!({ "transport": e.to_string() })),
    };
    (
        status,
        serde_json::from_str(&r.into_string().expect("body")).expect("json"),
    )
}

fn uploads(server: &TestServer) -> Vec<String> {
    match std::fs::read_dir(server.root().join("uploads/gov.tax_refunds")) {
        Ok(d) => d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn an_owner_uploads_and_registers_and_a_failed_upload_leaves_nothing() {
    let keys = tempfile::tempdir().expect("tmp");
    let server = TestServer::start(ServerConfig {
        max_upload_bytes: 100_000,
        pseudonym_key: Some(keys.path().join("pseudonym.key")),
        ..ServerConfig::default()
    });
    let ops = server.client(Some(OPS_TOKEN));
    let owner = ops.create_account("tax-owner", "data_owner", Some("shanghai-tax"));
    let bank = ops.create_account("bank", "applicant", None);
    let other_owner = ops.create_account("bank-owner", "data_owner", Some("demo-bank"));
    let path = "/v1/datasets/gov.tax_refunds/upload";
    let body = csv(500);

    // Applicants do not upload.
    let (status, answer) = put(&server, &bank, path, b"credit_code,refund\n");
    assert_eq!(status, 403, "{answer}");
    // A refused client that sends a sizeable body without waiting for
    // `100 Continue` still reads why it was refused (not a reset connection).
    let big = csv(5_000);
    assert!(big.len() > 64 * 1024);
    for _ in 0..3 {
        let (status, answer) = put(&server, &bank, path, big.as_bytes());
        assert_eq!(status, 403, "{answer}");
        let (status, answer) = put(&server, "not-a-token", path, big.as_bytes());
        assert_eq!(status, 401, "{answer}");
    }
    // Over the limit: refused, nothing kept.
    let (status, answer) = put(&server, &owner, path, csv(10_000).as_bytes());
    assert!(
        (status, answer["error"]["code"].as_str()) == (413, Some("too_large")) || status == 0,
        "{status} {answer}"
    );
    // (The server may still be removing the part when a cut client returns.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !uploads(&server).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(uploads(&server).is_empty(), "{:?}", uploads(&server));
    // Truncated: the client announces 5000 bytes, sends 100 and hangs up.
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {owner}\r\nContent-Length: 5000\r\n\r\n"
    )
    .expect("headers");
    stream.write_all(&body.as_bytes()[..100]).expect("part");
    stream.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !uploads(&server).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        uploads(&server).is_empty(),
        "a truncated upload left {:?}",
        uploads(&server)
    );

    // Sent again, whole: stored, and registered.
    let (status, answer) = put(&server, &owner, path, body.as_bytes());
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["bytes"], body.len());
    let register = |token: &str, request: serde_json::Value| {
        server
            .client(Some(token))
            .post("/v1/datasets/gov.tax_refunds/register", &request)
    };
    let request = json!({"entry": ENTRY, "policy": POLICY, "key": ["credit_code"]});
    let (status, answer) = register(&other_owner, request.clone());
    assert_eq!(
        (status, answer["error"]["rule"].as_str()),
        (403, Some("not-owner")),
        "{answer}"
    );
    let (status, manifest) = register(&owner, request.clone());
    assert_eq!(status, 201, "{manifest}");
    assert_eq!(manifest["rows"], 500);
    assert_eq!(manifest["version"], 1);
    assert_eq!(manifest["owner"], "tax-owner");
    assert!(uploads(&server).is_empty(), "the upload is removed once registered");
    // The declared row bound is checked on the new version after the
    // response, and cached for the first job.
    let cache = server.root().join("cache/verified/gov.tax_refunds.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cache.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let verified: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache).expect("the row bound is verified after registration"))
            .expect("json");
    assert_eq!(verified["holds"]["credit_code"], 1, "{verified}");
    // In the catalog at once, recorded in the ledger.
    let (_, catalog) = ops.get("/v1/catalog");
    assert!(
        catalog
            .as_array()
            .expect("list")
            .iter()
            .any(|d| d["id"] == "gov.tax_refunds")
    );
    let (_, ledger) = ops.get("/v1/audit");
    assert!(ledger.to_string().contains("dataset_version"), "{ledger}");
    // No upload, nothing to register.
    let (status, _) = register(&owner, request.clone());
    assert_eq!(status, 404);
    // Now the dataset is shanghai-tax's: another provider's owner may not upload to it.
    let (status, answer) = put(&server, &other_owner, path, body.as_bytes());
    assert_eq!(
        (status, answer["error"]["rule"].as_str()),
        (403, Some("not-owner")),
        "{answer}"
    );
    // A bad file is refused with its line and column; version 1 stays current.
    let bad = "credit_code,refund\n91310115000000017X,many\n";
    let (status, _) = put(&server, &owner, path, bad.as_bytes());
    assert_eq!(status, 201);
    let (status, answer) = register(&owner, json!({"key": ["credit_code"]}));
    assert!(matches!(status, 400 | 403), "{status} {answer}");
    let current = std::fs::read_to_string(server.root().join("data/gov/tax_refunds/CURRENT")).expect("current");
    assert_eq!(current.trim(), "v000001");
    assert!(uploads(&server).is_empty());
}

#[test]
fn an_account_has_at_most_four_uploads_waiting() {
    let keys = tempfile::tempdir().expect("tmp");
    let server = TestServer::start(ServerConfig {
        pseudonym_key: Some(keys.path().join("pseudonym.key")),
        ..ServerConfig::default()
    });
    let ops = server.client(Some(OPS_TOKEN));
    let owner = ops.create_account("tax-owner", "data_owner", Some("shanghai-tax"));
    let other = ops.create_account("tax-owner-2", "data_owner", Some("shanghai-tax"));
    let body = b"credit_code,refund\n";
    for i in 0..4 {
        let (status, answer) = put(&server, &owner, &format!("/v1/datasets/gov.quota_{i}/upload"), body);
        assert_eq!(status, 201, "{answer}");
    }
    // A fifth dataset: refused, naming the rule and the waiting uploads; nothing stored.
    let (status, answer) = put(&server, &owner, "/v1/datasets/gov.quota_4/upload", body);
    assert_eq!(
        (status, answer["error"]["rule"].as_str()),
        (403, Some("upload-quota")),
        "{answer}"
    );
    let message = answer["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("gov.quota_0") && message.contains("gov.quota_3"),
        "{message}"
    );
    assert!(!server.root().join("uploads/gov.quota_4").exists());
    // Uploading again to one of them replaces it; another account has its own quota.
    assert_eq!(put(&server, &owner, "/v1/datasets/gov.quota_2/upload", body).0, 201);
    assert_eq!(put(&server, &other, "/v1/datasets/gov.quota_4/upload", body).0, 201);
    // A registration call, even refused (an entry for another dataset),
    // removes its upload and frees its place.
    let (status, _) = server.client(Some(&owner)).post(
        "/v1/datasets/gov.quota_0/register",
        &json!({"entry": ENTRY, "policy": POLICY}),
    );
    assert_eq!(status, 400);
    assert!(
        !server
            .root()
            .join("uploads/gov.quota_0")
            .read_dir()
            .expect("dir")
            .any(|_| true)
    );
    let (status, answer) = put(&server, &owner, "/v1/datasets/gov.quota_4/upload", body);
    assert_eq!(status, 201, "{answer}");
}
