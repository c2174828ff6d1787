//! Every route of the HTTP API under every role: allowed calls succeed,
//! everything else is refused (401, 403, or 404 for records that are not
//! the caller's), and no account ever sees another's jobs, results,
//! agreements or applications.

use crate::server_support::{EVERYONE, SIGNED_IN, TAX_SQL, Who, world};
use serde_json::{Value, json};

/// Whether a status means "refused": unauthenticated, forbidden, or not
/// found (what another account's records look like).
fn denied(status: u16) -> bool {
    matches!(status, 401 | 403 | 404)
}

#[test]
fn every_route_under_every_role() {
    let w = world();
    let a = w.agreement.clone();
    let j = w.job.clone();
    let policy = w.tax.get("/v1/policies/gov.tax_payments").1["toml"]
        .as_str()
        .expect("policy text")
        .to_string();
    // (method, path, body, who may) — read-only or repeatable calls; each
    // role calls each route.
    let cases: Vec<(&str, String, Option<Value>, Vec<Who>)> = vec![
        ("GET", "/v1/me".into(), None, SIGNED_IN.to_vec()),
        ("GET", "/v1/catalog".into(), None, SIGNED_IN.to_vec()),
        ("GET", "/v1/catalog/gov.tax_payments".into(), None, SIGNED_IN.to_vec()),
        ("GET", "/v1/policies/gov.tax_payments".into(), None, SIGNED_IN.to_vec()),
        (
            "PUT",
            "/v1/policies/gov.tax_payments".into(),
            Some(json!({"toml": policy})),
            vec![Who::TaxOwner],
        ),
        ("GET", "/v1/complaints".into(), None, SIGNED_IN.to_vec()),
        ("GET", "/v1/applications".into(), None, SIGNED_IN.to_vec()),
        (
            "GET",
            "/v1/applications/a1".into(),
            None,
            vec![Who::Operator, Who::Bank, Who::TaxOwner],
        ),
        ("GET", "/v1/agreements".into(), None, SIGNED_IN.to_vec()),
        (
            "GET",
            format!("/v1/agreements/{a}"),
            None,
            vec![Who::Operator, Who::Bank, Who::TaxOwner],
        ),
        (
            "GET",
            format!("/v1/agreements/{a}/budget"),
            None,
            vec![Who::Operator, Who::Bank, Who::TaxOwner],
        ),
        (
            "GET",
            format!("/v1/agreements/{a}/report"),
            None,
            vec![Who::Operator, Who::Bank, Who::TaxOwner],
        ),
        (
            "GET",
            format!("/v1/agreements/{a}/report?format=markdown"),
            None,
            vec![Who::Operator, Who::Bank, Who::TaxOwner],
        ),
        ("GET", "/v1/jobs".into(), None, SIGNED_IN.to_vec()),
        ("GET", format!("/v1/jobs/{j}"), None, vec![Who::Bank]),
        ("GET", format!("/v1/jobs/{j}/result"), None, vec![Who::Bank]),
        ("GET", "/v1/audit".into(), None, vec![Who::Operator]),
        ("GET", "/v1/audit/verify".into(), None, vec![Who::Operator]),
        ("GET", "/metrics".into(), None, vec![Who::Operator]),
        (
            "POST",
            "/v1/jobs".into(),
            Some(json!({"kind": "sql", "agreement": a, "sql": TAX_SQL, "dry_run": true})),
            vec![Who::Bank],
        ),
        // Denied for everyone but the roles listed; the allowed calls are
        // made once, below, because they change state.
        (
            "POST",
            "/v1/applications/a1/decision".into(),
            Some(json!({"decision": "reject", "reason": "x"})),
            vec![],
        ),
        (
            "POST",
            format!("/v1/agreements/{a}/revoke"),
            Some(json!({"reason": "x"})),
            vec![],
        ),
        (
            "POST",
            "/v1/datasets/gov.tax_payments/suspend".into(),
            Some(json!({"reason": "x"})),
            vec![],
        ),
        (
            "POST",
            "/v1/datasets/gov.tax_payments/resume".into(),
            Some(json!({"reason": "x"})),
            vec![],
        ),
    ];
    // Who may make the state-changing calls at all (checked to be refused
    // for everyone else above; exercised for real below).
    let may_change = |path: &str, who: Who| match path {
        // a1 is decided: its owner is told so (below); nobody else may decide.
        p if p.ends_with("/decision") => who == Who::TaxOwner,
        p if p.ends_with("/revoke") => matches!(who, Who::Operator | Who::TaxOwner),
        p if p.contains("/datasets/") => matches!(who, Who::Operator | Who::TaxOwner),
        _ => false,
    };
    for (method, path, body, allowed) in &cases {
        for who in EVERYONE {
            if allowed.is_empty() && may_change(path, who) {
                continue;
            }
            let (status, response) = w.as_(who).call(method, path, body.as_ref());
            if allowed.contains(&who) {
                assert!(
                    (200..300).contains(&status),
                    "{who:?} {method} {path} should be allowed: {status} {response}"
                );
            } else {
                assert!(
                    denied(status),
                    "{who:?} {method} {path} should be refused: {status} {response}"
                );
                if who == Who::Anonymous {
                    assert_eq!(status, 401, "{method} {path}");
                }
                assert!(response["error"]["message"].is_string(), "structured error: {response}");
            }
        }
    }
    let (status, body) = w.tax.post(
        "/v1/applications/a1/decision",
        &json!({"decision": "reject", "reason": "x"}),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid")),
        "{body}"
    );
    // Accounts: the operator only.
    for who in EVERYONE {
        let (status, body) = w.as_(who).post(
            "/v1/accounts",
            &json!({"id": format!("new-{who:?}").to_lowercase(), "role": "applicant"}),
        );
        assert_eq!(who == Who::Operator, status == 201, "{who:?}: {status} {body}");
    }
    // Complaints: anyone signed in; the complainant, the owner and the
    // operator see it, nobody else.
    let (status, complaint) = w.other.post(
        "/v1/complaints",
        &json!({"dataset": "gov.tax_payments", "text": "my firm's figures are identifiable"}),
    );
    assert_eq!(status, 201, "{complaint}");
    for (who, sees) in [
        (Who::OtherApplicant, true),
        (Who::TaxOwner, true),
        (Who::Operator, true),
        (Who::Bank, false),
        (Who::GridOwner, false),
    ] {
        let (_, list) = w.as_(who).get("/v1/complaints");
        let seen = list
            .as_array()
            .expect("list")
            .iter()
            .any(|c| c["id"] == complaint["id"]);
        assert_eq!(seen, sees, "{who:?} sees the complaint: {list}");
    }
    // Lists never show another account's records.
    for who in [Who::OtherApplicant, Who::GridOwner] {
        let c = w.as_(who);
        assert_eq!(c.get("/v1/agreements").1, json!([]), "{who:?}");
        assert_eq!(c.get("/v1/applications").1, json!([]), "{who:?}");
        assert_eq!(c.get("/v1/jobs").1, json!([]), "{who:?}");
    }
    // Another applicant cannot run under the bank's agreement.
    let (status, body) = w
        .other
        .post("/v1/jobs", &json!({"kind": "sql", "agreement": a, "sql": TAX_SQL}));
    assert_eq!(
        (status, body["error"]["rule"].as_str()),
        (403, Some("agreement-holder")),
        "{body}"
    );
    // Cancelling a finished job: its owner hears it has ended; others 404.
    assert_eq!(w.bank.post(&format!("/v1/jobs/{j}/cancel"), &json!({})).0, 409);
    assert_eq!(w.other.post(&format!("/v1/jobs/{j}/cancel"), &json!({})).0, 404);

    // The state-changing calls, by those allowed: suspend and resume (the
    // owner, then the operator), then revoke.
    for who in [Who::TaxOwner, Who::Operator] {
        let c = w.as_(who);
        let (status, body) = c.post("/v1/datasets/gov.tax_payments/suspend", &json!({"reason": "complaint"}));
        assert_eq!(status, 200, "{who:?} {body}");
        let (_, page) = w.bank.get("/v1/catalog/gov.tax_payments");
        assert!(page["suspension"].is_object(), "{page}");
        let (status, body) = c.post("/v1/datasets/gov.tax_payments/resume", &json!({"reason": "handled"}));
        assert_eq!(status, 204, "{who:?} {body}");
    }
    let (status, body) = w
        .tax
        .post(&format!("/v1/agreements/{a}/revoke"), &json!({"reason": "misuse"}));
    assert_eq!(status, 200, "{body}");
    let (_, job) = w
        .bank
        .post("/v1/jobs", &json!({"kind": "sql", "agreement": a, "sql": TAX_SQL}));
    let ended = w.bank.wait_job(job["id"].as_str().expect("id"));
    assert_eq!(
        (ended["state"].as_str(), ended["error"]["rule"].as_str()),
        (Some("refused"), Some("agreement-inactive")),
        "{ended}"
    );
    let (_, verify) = w.ops.get("/v1/audit/verify");
    assert_eq!(verify["intact"], true, "{verify}");
    assert_eq!(verify["integrity"], "ok", "{verify}");
}
