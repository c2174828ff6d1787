//! An in-process HTTP server over an isolated sandbox, and a small
//! blocking client for the tests that talk to it over loopback.

use crate::fixture::roomy_sandbox;
use sandbox_governance::Role;
use sandbox_server::ServerConfig;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const OPS_TOKEN: &str = "operator-token-0123456789abcdef0123456789";

/// A server running on a thread of its own; stops when dropped.
pub struct TestServer {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _tmp: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TestServer {
    /// Starts a server with the operator account (token [`OPS_TOKEN`]).
    pub fn start(config: ServerConfig) -> TestServer {
        let tmp = tempfile::tempdir().expect("tmp");
        let sandbox = roomy_sandbox(&tmp);
        sandbox
            .store()
            .create_account("ops", &Role::Operator, OPS_TOKEN, "ops")
            .expect("operator");
        let sandbox = Arc::new(sandbox);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let (router, _state) = sandbox_server::app(sandbox, config).expect("app");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addr_tx.send(listener.local_addr().expect("addr")).expect("send");
                sandbox_server::serve(listener, router, async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("serve");
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(60)).expect("server started");
        TestServer {
            base: format!("http://{addr}"),
            stop: Some(stop_tx),
            thread: Some(thread),
            _tmp: tmp,
        }
    }

    /// The server's data directory.
    pub fn root(&self) -> std::path::PathBuf {
        self._tmp.path().join("iso")
    }

    pub fn client(&self, token: Option<&str>) -> Client {
        Client {
            base: self.base.clone(),
            token: token.map(str::to_string),
        }
    }
}

/// A blocking HTTP client acting as one account.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: Option<String>,
}

impl Client {
    /// Sends a request; returns the status and the body (JSON, or the text
    /// as a JSON string).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut request = ureq::request(method, &format!("{}{path}", self.base)).timeout(Duration::from_secs(120));
        if let Some(t) = &self.token {
            request = request.set("Authorization", &format!("Bearer {t}"));
        }
        let response = match body {
            Some(b) => request.send_json(b.clone()),
            None => request.call(),
        };
        let (status, response) = match response {
            Ok(r) => (r.status(), r),
            Err(ureq::Error::Status(code, r)) => (code, r),
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let text = response.into_string().expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    /// Creates an account (as the operator); returns its token.
    pub fn create_account(&self, id: &str, role: &str, provider: Option<&str>) -> String {
        let (status, body) = self.post("/v1/accounts", &json!({"id": id, "role": role, "provider": provider}));
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().expect("token").to_string()
    }

    /// Waits until a job has ended; returns its view.
    pub fn wait_job(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, job) = self.get(&format!("/v1/jobs/{id}"));
            assert_eq!(status, 200, "{job}");
            let state = job["state"].as_str().unwrap_or_default().to_string();
            if !matches!(state.as_str(), "queued" | "running") {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} did not end: {job}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub const TAX_COLUMNS: [&str; 3] = [
    "gov.tax_payments.year",
    "gov.tax_payments.tax_paid",
    "gov.tax_payments.credit_code",
];

pub const TAX_SQL: &str = "SELECT t.year, AVG(t.tax_paid) FROM gov.tax_payments t GROUP BY t.year";

/// The bank's application for tax data.
pub fn tax_application(id: &str) -> Value {
    json!({
        "id": id,
        "datasets": ["gov.tax_payments"],
        "columns": TAX_COLUMNS,
        "job_kinds": ["sql"],
        "scenario": "inclusive-finance credit scoring; only aggregates leave the sandbox",
        "materials": ["营业执照 business licence"],
    })
}

/// Approval terms.
pub fn approval(epsilon: f64, quota: u64) -> Value {
    json!({"decision": "approve", "epsilon": epsilon, "expires_at": "2999-01-01T00:00:00Z", "call_quota": quota})
}

/// The callers of the authorization tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Who {
    Anonymous,
    Operator,
    Bank,
    OtherApplicant,
    TaxOwner,
    GridOwner,
}

pub const EVERYONE: [Who; 6] = [
    Who::Anonymous,
    Who::Operator,
    Who::Bank,
    Who::OtherApplicant,
    Who::TaxOwner,
    Who::GridOwner,
];
pub const SIGNED_IN: &[Who] = &[
    Who::Operator,
    Who::Bank,
    Who::OtherApplicant,
    Who::TaxOwner,
    Who::GridOwner,
];

pub struct World {
    pub server: TestServer,
    pub ops: Client,
    pub bank: Client,
    pub other: Client,
    pub tax: Client,
    pub grid: Client,
    pub agreement: String,
    pub job: String,
}

impl World {
    pub fn as_(&self, who: Who) -> Client {
        match who {
            Who::Anonymous => self.server.client(None),
            Who::Operator => self.ops.clone(),
            Who::Bank => self.bank.clone(),
            Who::OtherApplicant => self.other.clone(),
            Who::TaxOwner => self.tax.clone(),
            Who::GridOwner => self.grid.clone(),
        }
    }
}

/// Accounts, an approved agreement for the bank and one finished job.
pub fn world() -> World {
    let server = TestServer::start(ServerConfig::default());
    let ops = server.client(Some(OPS_TOKEN));
    let bank = server.client(Some(&ops.create_account("bank", "applicant", None)));
    let other = server.client(Some(&ops.create_account("other-bank", "applicant", None)));
    let tax = server.client(Some(&ops.create_account(
        "tax-bureau",
        "data_owner",
        Some("shanghai-tax"),
    )));
    let grid = server.client(Some(&ops.create_account(
        "grid",
        "data_owner",
        Some("shanghai-utilities"),
    )));

    // Apply → reject with a reason → resubmit → approve.
    let (status, body) = bank.post("/v1/applications", &tax_application("a1"));
    assert_eq!((status, body["revision"].as_u64()), (201, Some(1)), "{body}");
    let (status, body) = tax.post(
        "/v1/applications/a1/decision",
        &json!({"decision": "reject", "reason": "say how long results are kept"}),
    );
    assert_eq!(status, 200, "{body}");
    let (_, app) = bank.get("/v1/applications/a1");
    assert_eq!(app["status"], "rejected");
    assert_eq!(app["reason"], "say how long results are kept");
    let mut revised = tax_application("a1");
    revised.as_object_mut().expect("object").remove("id");
    let (status, body) = bank.call("PUT", "/v1/applications/a1", Some(&revised));
    assert_eq!((status, body["revision"].as_u64()), (200, Some(2)), "{body}");
    let (status, body) = tax.post("/v1/applications/a1/decision", &approval(50.0, 1000));
    assert_eq!(status, 200, "{body}");
    let agreement = body["agreement"].as_str().expect("agreement signed").to_string();

    let (status, job) = bank.post(
        "/v1/jobs",
        &json!({"kind": "sql", "agreement": agreement, "sql": TAX_SQL}),
    );
    assert_eq!(status, 202, "{job}");
    let job = job["id"].as_str().expect("id").to_string();
    assert_eq!(bank.wait_job(&job)["state"], "succeeded");
    World {
        server,
        ops,
        bank,
        other,
        tax,
        grid,
        agreement,
        job,
    }
}
