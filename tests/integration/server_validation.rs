//! Every field checked at the boundary, route by route: a table of invalid
//! requests, each answered with its status and the one JSON error shape
//! (`{"error": {"code", "message", "rule"?}}`), and nothing stored.

use crate::server_support::{OPS_TOKEN, Who, World, tax_application, world};
use serde_json::{Value, json};
use std::time::Duration;

/// A request sent as raw bytes (headers and body as given), for what the
/// JSON client cannot send: bad content types, bad path bytes, odd schemes.
fn raw(base: &str, method: &str, path: &str, auth: Option<&str>, body: Option<(&str, &str)>) -> (u16, Value) {
    let mut request = ureq::request(method, &format!("{base}{path}")).timeout(Duration::from_secs(60));
    if let Some(a) = auth {
        request = request.set("Authorization", a);
    }
    let response = match body {
        Some((content_type, text)) => request.set("Content-Type", content_type).send_string(text),
        None => request.call(),
    };
    let (status, response) = match response {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(code, r)) => (code, r),
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let text = response.into_string().expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The one error shape: a code, a message, and a rule only for refusals.
fn assert_error_shape(status: u16, body: &Value, what: &str) {
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {status} {body}"));
    assert!(
        error["code"].is_string() && error["message"].is_string(),
        "{what}: {body}"
    );
    assert!(
        error.keys().all(|k| ["code", "message", "rule"].contains(&k.as_str())),
        "{what}: {body}"
    );
}

/// (method, path, authorization, (content type, body), status, what)
type RawCase<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<(&'a str, &'a str)>,
    u16,
    &'a str,
);

fn big(bytes: usize) -> String {
    "x".repeat(bytes)
}

#[test]
fn invalid_fields_are_rejected_on_every_route() {
    let w: World = world();
    // A second application, submitted, for the decision routes.
    let (status, body) = w.bank.post("/v1/applications", &tax_application("a2"));
    assert_eq!(status, 201, "{body}");
    let (_, catalog) = w.bank.get("/v1/catalog");
    let other_dataset = catalog
        .as_array()
        .expect("catalog")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_string())
        .find(|d| d != "gov.tax_payments" && d.starts_with("gov."))
        .expect("another dataset");
    let (_, other_policy) = w.tax.get(&format!("/v1/policies/{other_dataset}"));
    let application = |patch: Value| {
        let mut a = tax_application("a-new");
        for (k, v) in patch.as_object().expect("patch") {
            a[k] = v.clone();
        }
        a
    };
    let approve = |patch: Value| {
        let mut a =
            json!({"decision": "approve", "epsilon": 1.0, "expires_at": "2999-01-01T00:00:00Z", "call_quota": 10});
        for (k, v) in patch.as_object().expect("patch") {
            a[k] = v.clone();
        }
        a
    };
    let long_reason = big(5 * 1024);
    let agreement = w.agreement.clone();
    let job = |patch: Value| {
        let mut j = json!({"kind": "sql", "agreement": agreement, "sql": "SELECT COUNT(*) FROM gov.tax_payments t"});
        for (k, v) in patch.as_object().expect("patch") {
            j[k] = v.clone();
        }
        j
    };

    // (who, method, path, body, status, code, what)
    let table: Vec<(Who, &str, String, Value, u16, &str, &str)> = vec![
        // Accounts.
        (
            Who::Operator,
            "POST",
            "/v1/accounts".into(),
            json!({"id": "", "role": "applicant"}),
            400,
            "invalid",
            "empty account id",
        ),
        (
            Who::Operator,
            "POST",
            "/v1/accounts".into(),
            json!({"id": "a b", "role": "applicant"}),
            400,
            "invalid",
            "account id with a space",
        ),
        (
            Who::Operator,
            "POST",
            "/v1/accounts".into(),
            json!({"id": "k", "role": "king"}),
            400,
            "invalid",
            "unknown role",
        ),
        (
            Who::Operator,
            "POST",
            "/v1/accounts".into(),
            json!({"id": "k", "role": "data_owner", "provider": "no-such-provider"}),
            400,
            "invalid",
            "provider not in the catalog",
        ),
        (
            Who::Operator,
            "POST",
            "/v1/accounts".into(),
            json!({"id": "k", "role": "data_owner", "provider": big(100_000)}),
            400,
            "invalid",
            "huge provider name",
        ),
        (
            Who::Operator,
            "POST",
            "/v1/accounts".into(),
            json!({"id": "k", "role": "applicant", "extra": 1}),
            400,
            "invalid",
            "unknown field",
        ),
        // Applications.
        (
            Who::Bank,
            "POST",
            "/v1/applications".into(),
            application(json!({"scenario": big(20 * 1024)})),
            400,
            "invalid",
            "scenario over 16 KiB",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/applications".into(),
            application(json!({"scenario": " "})),
            400,
            "invalid",
            "blank scenario",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/applications".into(),
            application(json!({"scenario": "a\u{0}b"})),
            400,
            "invalid",
            "NUL in the scenario",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/applications".into(),
            application(json!({"materials": [""]})),
            400,
            "invalid",
            "empty material",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/applications".into(),
            application(json!({"materials": vec!["m"; 300]})),
            400,
            "invalid",
            "too many materials",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/applications".into(),
            application(json!({"id": "a b"})),
            400,
            "invalid",
            "application id with a space",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/applications".into(),
            application(json!({"datasets": ["not a dataset"]})),
            400,
            "invalid",
            "malformed dataset id",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/applications".into(),
            application(json!({"job_kinds": ["shell"]})),
            403,
            "refused",
            "unknown job kind",
        ),
        (
            Who::Bank,
            "PUT",
            "/v1/applications/a2".into(),
            application(json!({})),
            400,
            "invalid",
            "body id differs from the path",
        ),
        // Decisions: typed terms.
        (
            Who::TaxOwner,
            "POST",
            "/v1/applications/a2/decision".into(),
            approve(json!({"expires_at": "garbage"})),
            400,
            "invalid",
            "expiry not RFC 3339",
        ),
        (
            Who::TaxOwner,
            "POST",
            "/v1/applications/a2/decision".into(),
            approve(json!({"expires_at": ""})),
            400,
            "invalid",
            "empty expiry",
        ),
        (
            Who::TaxOwner,
            "POST",
            "/v1/applications/a2/decision".into(),
            approve(json!({"expires_at": "2020-01-01T00:00:00Z"})),
            400,
            "invalid",
            "expiry in the past",
        ),
        (
            Who::TaxOwner,
            "POST",
            "/v1/applications/a2/decision".into(),
            approve(json!({"expires_at": "2999-01-01T00:00:00Z\u{0}"})),
            400,
            "invalid",
            "NUL in the expiry",
        ),
        (
            Who::TaxOwner,
            "POST",
            "/v1/applications/a2/decision".into(),
            approve(json!({"epsilon": 5e-324})),
            400,
            "invalid",
            "ε below the smallest budget",
        ),
        (
            Who::TaxOwner,
            "POST",
            "/v1/applications/a2/decision".into(),
            approve(json!({"epsilon": -1.0})),
            400,
            "invalid",
            "negative ε",
        ),
        (
            Who::TaxOwner,
            "POST",
            "/v1/applications/a2/decision".into(),
            approve(json!({"epsilon": 1e308})),
            400,
            "invalid",
            "ε too large to account for",
        ),
        (
            Who::TaxOwner,
            "POST",
            "/v1/applications/a2/decision".into(),
            approve(json!({"epsilon": 20000.0})),
            403,
            "refused",
            "ε over the policy's budget",
        ),
        (
            Who::TaxOwner,
            "POST",
            "/v1/applications/a2/decision".into(),
            approve(json!({"call_quota": 0})),
            400,
            "invalid",
            "zero call quota",
        ),
        (
            Who::TaxOwner,
            "POST",
            "/v1/applications/a2/decision".into(),
            approve(json!({"call_quota": -1})),
            400,
            "invalid",
            "negative call quota",
        ),
        (
            Who::TaxOwner,
            "POST",
            "/v1/applications/a2/decision".into(),
            json!({"decision": "reject", "reason": ""}),
            400,
            "invalid",
            "rejection without a reason",
        ),
        (
            Who::TaxOwner,
            "POST",
            "/v1/applications/a2/decision".into(),
            json!({"decision": "reject", "reason": long_reason}),
            400,
            "invalid",
            "rejection reason over 4 KiB",
        ),
        (
            Who::TaxOwner,
            "POST",
            "/v1/applications/a2/decision".into(),
            json!({"decision": "maybe"}),
            400,
            "invalid",
            "unknown decision",
        ),
        // Another owner's application answers like an unknown one.
        (
            Who::GridOwner,
            "POST",
            "/v1/applications/a2/decision".into(),
            json!({"decision": "reject", "reason": "no"}),
            404,
            "not_found",
            "another owner's application",
        ),
        (
            Who::GridOwner,
            "POST",
            "/v1/applications/zz/decision".into(),
            json!({"decision": "reject", "reason": "no"}),
            404,
            "not_found",
            "an unknown application",
        ),
        // Revocation, suspension, resumption, complaints.
        (
            Who::Operator,
            "POST",
            format!("/v1/agreements/{}/revoke", w.agreement),
            json!({"reason": ""}),
            400,
            "invalid",
            "revocation without a reason",
        ),
        (
            Who::Operator,
            "POST",
            format!("/v1/agreements/{}/revoke", w.agreement),
            json!({"reason": long_reason}),
            400,
            "invalid",
            "revocation reason over 4 KiB",
        ),
        (
            Who::Operator,
            "POST",
            "/v1/datasets/gov.tax_payments/suspend".into(),
            json!({"reason": ""}),
            400,
            "invalid",
            "suspension without a reason",
        ),
        (
            Who::Operator,
            "POST",
            "/v1/datasets/gov.tax_payments/suspend".into(),
            json!({"reason": long_reason}),
            400,
            "invalid",
            "suspension reason over 4 KiB",
        ),
        (
            Who::Operator,
            "POST",
            "/v1/datasets/no.such/suspend".into(),
            json!({"reason": "r"}),
            404,
            "not_found",
            "suspending an unknown dataset",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/complaints".into(),
            json!({"dataset": "gov.tax_payments", "text": ""}),
            400,
            "invalid",
            "empty complaint",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/complaints".into(),
            json!({"dataset": "nonsense", "text": "t"}),
            400,
            "invalid",
            "complaint about a malformed dataset id",
        ),
        // Policies: the path and the body name the same dataset.
        (
            Who::TaxOwner,
            "PUT",
            "/v1/policies/gov.tax_payments".into(),
            json!({"toml": other_policy["toml"]}),
            403,
            "refused",
            "policy for another dataset than the path's",
        ),
        (
            Who::TaxOwner,
            "PUT",
            "/v1/policies/gov.tax_payments".into(),
            json!({"toml": "not = [toml"}),
            403,
            "refused",
            "policy that does not parse",
        ),
        // Jobs.
        (
            Who::Bank,
            "POST",
            "/v1/jobs".into(),
            job(json!({"epsilon": -1.0})),
            400,
            "invalid",
            "negative ε",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/jobs".into(),
            job(json!({"epsilon": 0.0})),
            400,
            "invalid",
            "zero ε",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/jobs".into(),
            job(json!({"sql": "SELECT 1\u{0}"})),
            400,
            "invalid",
            "NUL in the SQL",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/jobs".into(),
            job(json!({"sql": big(200 * 1024)})),
            400,
            "invalid",
            "oversized SQL",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/jobs".into(),
            job(json!({"sql": " "})),
            400,
            "invalid",
            "blank SQL",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/jobs".into(),
            job(json!({"agreement": ""})),
            400,
            "invalid",
            "empty agreement",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/jobs".into(),
            job(json!({"kind": "shell"})),
            400,
            "invalid",
            "unknown job kind",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/jobs".into(),
            job(json!({"wasm_module": "%%%"})),
            400,
            "invalid",
            "module not base64",
        ),
        (
            Who::Bank,
            "POST",
            "/v1/jobs".into(),
            job(json!({"agreement": "agreement-a2"})),
            403,
            "refused",
            "another's or no agreement",
        ),
        (
            Who::Bank,
            "GET",
            "/v1/jobs?limit=abc".into(),
            Value::Null,
            400,
            "invalid",
            "non-numeric limit",
        ),
        (
            Who::Bank,
            "GET",
            "/v1/agreements/agreement-a1/report?from=yesterday".into(),
            Value::Null,
            400,
            "invalid",
            "report period not a time",
        ),
    ];
    let (_, audit_before) = w.ops.get("/v1/audit");
    for (who, method, path, body, status, code, what) in &table {
        let client = w.as_(*who);
        let (got, answer) = if body.is_null() {
            client.call(method, path, None)
        } else {
            client.call(method, path, Some(body))
        };
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{what}: {answer}"
        );
        assert_error_shape(got, &answer, what);
    }
    // Nothing of it was recorded.
    let (_, audit_after) = w.ops.get("/v1/audit");
    let new: Vec<&Value> = audit_after.as_array().expect("entries")[audit_before.as_array().expect("entries").len()..]
        .iter()
        .collect();
    assert!(
        new.iter().all(|e| e["kind"] == "job_refused"),
        "only the refused job records itself: {new:?}"
    );
    let (_, app) = w.tax.get("/v1/applications/a2");
    assert_eq!(app["status"], "submitted", "{app}");
    let (_, agreement) = w.bank.get(&format!("/v1/agreements/{}", w.agreement));
    assert_eq!(agreement["status"], "active", "{agreement}");
    // A server-generated id when none is given; a taken id answers the same
    // whoever holds it.
    let mut unnamed = tax_application("x");
    unnamed.as_object_mut().expect("object").remove("id");
    let (status, body) = w.other.post("/v1/applications", &unnamed);
    assert_eq!(status, 201, "{body}");
    assert!(body["id"].as_str().expect("id").starts_with("app-"), "{body}");
    let (theirs, a) = w.other.post("/v1/applications", &tax_application("a2"));
    let (mine, b) = w.bank.post("/v1/applications", &tax_application("a2"));
    assert_eq!((theirs, mine), (409, 409));
    assert_eq!(a, b, "a taken id says nothing about whose it is");
    // The two 404s of the decision route cannot be told apart.
    let (_, a) = w.grid.post(
        "/v1/applications/a2/decision",
        &json!({"decision": "reject", "reason": "no"}),
    );
    let (_, b) = w.grid.post(
        "/v1/applications/zz/decision",
        &json!({"decision": "reject", "reason": "no"}),
    );
    assert_eq!(
        a["error"]["message"].as_str().map(|m| m.replace("a2", "ID")),
        b["error"]["message"].as_str().map(|m| m.replace("zz", "ID"))
    );
}

#[test]
fn extractor_and_path_failures_answer_the_json_error_shape() {
    let w = world();
    let base = w.server.base.clone();
    let bank = format!("Bearer {}", w.bank.token.clone().expect("token"));
    let cases: Vec<RawCase> = vec![
        (
            "GET",
            "/v1/jobs/%FF%FE",
            Some(&bank),
            None,
            400,
            "a path that is not UTF-8",
        ),
        (
            "GET",
            "/v1/applications/%C3%28",
            Some(&bank),
            None,
            400,
            "a path with a broken UTF-8 sequence",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(&bank),
            Some(("text/plain", "{}")),
            400,
            "a body that is not JSON by type",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(&bank),
            Some(("application/json", "{not json")),
            400,
            "a body that does not parse",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(&bank),
            Some(("application/json", "[]")),
            400,
            "a body of the wrong shape",
        ),
        ("GET", "/v1/me", Some("Basic Zm9vOmJhcg=="), None, 401, "another scheme"),
        ("GET", "/v1/me", Some("Bearer "), None, 401, "an empty token"),
        ("GET", "/v1/me", None, None, 401, "no token"),
        (
            "DELETE",
            "/v1/me",
            Some(&bank),
            None,
            405,
            "a method the route does not take",
        ),
        ("GET", "/v1/nowhere", Some(&bank), None, 404, "no such route"),
    ];
    for (method, path, auth, body, status, what) in cases {
        let (got, answer) = raw(&base, method, path, auth, body);
        assert_eq!(got, status, "{what}: {answer}");
        assert_error_shape(got, &answer, what);
    }
    // The scheme is case-insensitive, as in Flight SQL.
    let token = w.bank.token.clone().expect("token");
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let (got, me) = raw(&base, "GET", "/v1/me", Some(&format!("{scheme} {token}")), None);
        assert_eq!((got, me["account"].as_str()), (200, Some("bank")), "{scheme}");
    }
    let (got, _) = raw(&base, "GET", "/v1/me", Some(&format!("Bearer {OPS_TOKEN}")), None);
    assert_eq!(got, 200);
}
