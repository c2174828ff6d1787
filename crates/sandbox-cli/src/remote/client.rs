//! A blocking HTTP client for the sandbox API, acting as the account of
//! one token (`Authorization: Bearer …`). Every failure is an
//! [`ApiFailure`], turned into a one-line CLI error in one place: exit 2
//! for refusals and authorization failures (`refused`, `forbidden`,
//! `unauthenticated`), 1 for anything else.

use crate::commands::CliError;
use serde_json::Value;
use std::io::Read;
use std::time::Duration;

/// What went wrong with one call: the API's error
/// (`{"error": {"code", "rule", "message"}}`), or no answer at all.
#[derive(Debug)]
pub struct ApiFailure {
    /// The HTTP status; `None` when the server was not reached.
    pub status: Option<u16>,
    /// The API's error code (`refused`, `forbidden`, `conflict`, …), or
    /// `unreachable`.
    pub code: String,
    pub rule: Option<String>,
    pub message: String,
}

impl ApiFailure {
    fn from_answer(status: u16, body: &str) -> Self {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let error = parsed.as_ref().map(|v| &v["error"]);
        let field = |name: &str| error.and_then(|e| e[name].as_str()).map(str::to_string);
        ApiFailure {
            status: Some(status),
            code: field("code").unwrap_or_default(),
            rule: field("rule"),
            message: field("message").unwrap_or_else(|| {
                let body = body.trim();
                let shown: String = body.chars().take(200).collect();
                format!(
                    "the server answered {status}{}{shown}",
                    if body.is_empty() { "" } else { ": " }
                )
            }),
        }
    }
}

impl From<ApiFailure> for CliError {
    fn from(f: ApiFailure) -> Self {
        let mut message = f.message;
        if let Some(rule) = &f.rule
            && !message.contains("[rule:")
        {
            message.push_str(&format!(" [rule: {rule}]"));
        }
        CliError {
            code: if matches!(f.code.as_str(), "refused" | "forbidden" | "unauthenticated") {
                2
            } else {
                1
            },
            message,
        }
    }
}

pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(base: &str, token: Option<&str>) -> Self {
        Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(10))
                .timeout(Duration::from_secs(300))
                .build(),
        }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let mut request = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            request = request.set("Authorization", &format!("Bearer {t}"));
        }
        request
    }

    /// Sends a request; the body of a 2xx answer (JSON, a text body as a
    /// JSON string, `null` when empty), or what went wrong.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ApiFailure> {
        let request = self.request(method, path);
        let response = match body {
            Some(b) => request.send_json(b),
            None => request.call(),
        };
        self.answer(response)
    }

    /// PUTs a file as the raw body, streamed from disk.
    pub fn put_file(&self, path: &str, file: &std::path::Path) -> Result<Value, ApiFailure> {
        let reader =
            std::fs::File::open(file).map_err(|e| self.unreachable(format!("cannot read {}: {e}", file.display())))?;
        let response = self
            .request("PUT", path)
            .set("Content-Type", "application/octet-stream")
            .send(reader);
        self.answer(response)
    }

    fn answer(&self, response: Result<ureq::Response, ureq::Error>) -> Result<Value, ApiFailure> {
        match response {
            Ok(r) => {
                let json = r.content_type().ends_with("json");
                let text = read_body(r).map_err(|e| self.unreachable(format!("cannot read its answer: {e}")))?;
                if text.is_empty() {
                    Ok(Value::Null)
                } else if json {
                    serde_json::from_str(&text)
                        .map_err(|e| self.unreachable(format!("it answered JSON this CLI cannot read: {e}")))
                } else {
                    Ok(Value::String(text))
                }
            }
            Err(ureq::Error::Status(status, r)) => {
                let mut failure = ApiFailure::from_answer(status, &read_body(r).unwrap_or_default());
                if failure.code == "unauthenticated" && self.token.is_none() {
                    failure.message.push_str(" (pass --token or set SANDBOX_TOKEN)");
                }
                Err(failure)
            }
            Err(e) => Err(self.unreachable(e.to_string())),
        }
    }

    fn unreachable(&self, what: String) -> ApiFailure {
        ApiFailure {
            status: None,
            code: "unreachable".into(),
            rule: None,
            message: format!("cannot talk to the sandbox server at {}: {what}", self.base),
        }
    }

    pub fn get(&self, path: &str) -> Result<Value, ApiFailure> {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ApiFailure> {
        self.call("POST", path, Some(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Value, ApiFailure> {
        self.call("PUT", path, Some(body))
    }
}

/// The whole body (no size cap: ledgers and results can be large).
fn read_body(r: ureq::Response) -> std::io::Result<String> {
    let mut text = String::new();
    r.into_reader().read_to_string(&mut text)?;
    Ok(text)
}

/// A path segment or query value, percent-encoded.
pub fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_keep_their_rule_and_exit_code() {
        let e = CliError::from(ApiFailure::from_answer(
            403,
            r#"{"error":{"code":"refused","rule":"agreement-column","message":"column x is not covered"}}"#,
        ));
        assert_eq!(
            (e.code, e.message.as_str()),
            (2, "column x is not covered [rule: agreement-column]")
        );
        for code in ["forbidden", "unauthenticated"] {
            let body = format!(r#"{{"error":{{"code":"{code}","message":"no"}}}}"#);
            assert_eq!(CliError::from(ApiFailure::from_answer(403, &body)).code, 2);
        }
        let f = ApiFailure::from_answer(409, r#"{"error":{"code":"conflict","message":"exists"}}"#);
        assert_eq!((f.status, f.code.as_str()), (Some(409), "conflict"));
        let e = CliError::from(f);
        assert_eq!((e.code, e.message.as_str()), (1, "exists"));
        let e = CliError::from(ApiFailure::from_answer(502, "<html>bad gateway</html>"));
        assert_eq!(e.code, 1);
        assert!(
            e.message.contains("502") && e.message.contains("bad gateway"),
            "{}",
            e.message
        );
    }

    #[test]
    fn an_unreachable_server_is_named() {
        // A port just freed: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let client = Client::new(&format!("http://127.0.0.1:{port}/"), None);
        let e = CliError::from(client.get("/v1/me").expect_err("no server"));
        assert_eq!(e.code, 1);
        let expected = format!("cannot talk to the sandbox server at http://127.0.0.1:{port}:");
        assert!(e.message.starts_with(&expected), "{}", e.message);
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("agreement-a1"), "agreement-a1");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(
            segment("2026-11-01T00:00:00+08:00"),
            "2026-11-01T00%3A00%3A00%2B08%3A00"
        );
    }
}
