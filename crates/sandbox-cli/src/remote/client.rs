//! A blocking HTTP client for the sandbox API, acting as the account of
//! one token. API errors (`{"error": {"code", "rule", "message"}}`) become
//! one-line CLI errors: exit 2 for refusals and authorization failures,
//! 1 for anything else.

use crate::commands::{CliError, fail};
use serde_json::Value;
use std::time::Duration;

pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

fn api_error(status: u16, body: &str) -> CliError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    let code = error.and_then(|e| e["code"].as_str()).unwrap_or("");
    let mut message = error
        .and_then(|e| e["message"].as_str())
        .map_or_else(|| format!("the server answered {status}: {body}"), str::to_string);
    if let Some(rule) = error.and_then(|e| e["rule"].as_str())
        && !message.contains("[rule:")
    {
        message.push_str(&format!(" [rule: {rule}]"));
    }
    CliError {
        code: if matches!(code, "refused" | "forbidden" | "unauthenticated") {
            2
        } else {
            1
        },
        message,
    }
}

impl Client {
    pub fn new(base: &str, token: Option<&str>) -> Self {
        Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(300)).build(),
        }
    }

    /// Sends a request; the body of a 2xx answer (JSON, or text as a JSON
    /// string), or the API's error.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let mut request = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            request = request.set("Authorization", &format!("Bearer {t}"));
        }
        let response = match body {
            Some(b) => request.send_json(b.clone()),
            None => request.call(),
        };
        match response {
            Ok(r) => {
                let text = r
                    .into_string()
                    .map_err(|e| fail(format!("cannot read the server's answer: {e}")))?;
                Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
            Err(ureq::Error::Status(status, r)) => Err(api_error(status, &r.into_string().unwrap_or_default())),
            Err(e) => Err(fail(format!("cannot reach the sandbox server at {}: {e}", self.base))),
        }
    }

    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.call("POST", path, Some(body))
    }
}

/// A path segment, percent-encoded.
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
        let e = api_error(
            403,
            r#"{"error":{"code":"refused","rule":"agreement-column","message":"column x is not covered"}}"#,
        );
        assert_eq!(
            (e.code, e.message.as_str()),
            (2, "column x is not covered [rule: agreement-column]")
        );
        let e = api_error(500, r#"{"error":{"code":"internal","message":"the database failed"}}"#);
        assert_eq!(e.code, 1);
        let e = api_error(502, "<html>bad gateway</html>");
        assert!(e.message.contains("502"), "{}", e.message);
        assert_eq!(segment("agreement-a1"), "agreement-a1");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
