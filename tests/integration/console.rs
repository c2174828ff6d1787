//! The web console over HTTP, as a browser without scripts would use it:
//! sign-in and its cookie, CSRF on every form, each role's pages and their
//! authorization (the API's answers, as pages), escaping of user text, the
//! language switch, and the whole vertical slice from an application to a
//! job refused after a suspension. (The same flow in a real browser is
//! scripts/console-browser-test.sh.)

use crate::server_support::{OPS_TOKEN, TAX_SQL, TestServer};
use sandbox_server::ServerConfig;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A cookie-keeping client that does not follow redirects.
struct Browser {
    base: String,
    agent: ureq::Agent,
    cookies: BTreeMap<String, String>,
}

/// A page as received.
struct Page {
    status: u16,
    location: Option<String>,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Browser {
    fn new(server: &TestServer) -> Browser {
        Browser {
            base: server.base.clone(),
            agent: ureq::AgentBuilder::new()
                .redirects(0)
                .timeout(Duration::from_secs(120))
                .build(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn receive(&mut self, result: Result<ureq::Response, ureq::Error>) -> Page {
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport: {e}"),
        };
        for set in response.all("set-cookie") {
            let pair = set.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || set.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|n| response.header(&n).map(|v| (n.clone(), v.to_string())))
            .collect();
        Page {
            status: response.status(),
            location: response.header("location").map(str::to_string),
            headers,
            body: response.into_string().expect("body"),
        }
    }

    fn get(&mut self, path: &str) -> Page {
        let request = self
            .agent
            .get(&format!("{}{path}", self.base))
            .set("Cookie", &self.cookie_header());
        let result = request.call();
        self.receive(result)
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self
            .agent
            .post(&format!("{}{path}", self.base))
            .set("Cookie", &self.cookie_header());
        let result = request.send_form(form);
        self.receive(result)
    }

    /// Signs in with `token`.
    fn sign_in(&mut self, token: &str) {
        let page = self.get("/console/login");
        assert_eq!(page.status, 200);
        let csrf = hidden(&page.body, "csrf");
        let page = self.post("/console/login", &[("csrf", &csrf), ("token", token)]);
        assert_eq!(page.status, 303, "{}", page.body);
        assert_eq!(page.location.as_deref(), Some("/console/catalog"));
    }

    /// The session's CSRF token, from a page's forms.
    fn csrf(&mut self) -> String {
        let page = self.get("/console/catalog");
        assert_eq!(page.status, 200, "{}", page.body);
        hidden(&page.body, "csrf")
    }
}

/// The value of the first hidden input `name` in `html`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
    html[start..].split('"').next().expect("value").to_string()
}

/// Accounts: the bank (applicant), another applicant, the tax bureau and
/// the power grid (owners), the operator.
struct Cast {
    server: TestServer,
    bank: String,
    other: String,
    tax: String,
    grid: String,
}

fn cast() -> Cast {
    let server = TestServer::start(ServerConfig::default());
    let ops = server.client(Some(OPS_TOKEN));
    Cast {
        bank: ops.create_account("bank", "applicant", None),
        other: ops.create_account("other-bank", "applicant", None),
        tax: ops.create_account("tax-bureau", "data_owner", Some("shanghai-tax")),
        grid: ops.create_account("power-grid", "data_owner", Some("shanghai-utilities")),
        server,
    }
}

/// Counts per year: noisy values whatever the noise (no dominance rule
/// applies to a count, unlike an average of amounts).
const COUNT_SQL: &str = "SELECT t.year, COUNT(*) FROM gov.tax_payments t GROUP BY t.year";

const APPLICATION: &[(&str, &str)] = &[
    ("datasets", "gov.tax_payments"),
    ("columns", "gov.tax_payments.year"),
    ("columns", "gov.tax_payments.tax_paid"),
    ("columns", "gov.tax_payments.credit_code"),
    ("job_kinds", "sql"),
    ("requested_epsilon", "5"),
    ("materials", "营业执照 business licence"),
];

fn with<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(more).copied().collect()
}

/// Follows a job's page until it stops refreshing itself.
fn finished_job_page(browser: &mut Browser, path: &str) -> Page {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let page = browser.get(path);
        assert_eq!(page.status, 200, "{}", page.body);
        if !page.body.contains("http-equiv=\"refresh\"") {
            return page;
        }
        assert!(Instant::now() < deadline, "the job did not end: {}", page.body);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn console_sign_in_cookies_and_csrf() {
    let cast = cast();
    let mut anonymous = Browser::new(&cast.server);
    // Pages need a session; the stylesheet and the sign-in form do not.
    let page = anonymous.get("/console/catalog");
    assert_eq!((page.status, page.location.as_deref()), (303, Some("/console/login")));
    assert_eq!(anonymous.get("/console/static/console.css").status, 200);
    let login = anonymous.get("/console/login");
    assert_eq!(login.status, 200);
    let csp = login.headers.get("content-security-policy").expect("csp");
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(login.headers.get("cache-control").map(String::as_str), Some("no-store"));
    let csrf = hidden(&login.body, "csrf");
    // A forged sign-in form (no matching cookie token) is refused.
    let mut forger = Browser::new(&cast.server);
    let page = forger.post("/console/login", &[("csrf", &csrf), ("token", &cast.bank)]);
    assert_eq!(page.status, 403);
    assert!(!forger.cookies.contains_key("sbx_session"));
    // A wrong token is refused with the form again.
    let page = anonymous.post("/console/login", &[("csrf", &csrf), ("token", "sbx_wrong")]);
    assert_eq!(page.status, 401);
    assert!(page.body.contains("id=\"token-error\""), "{}", page.body);
    // The right token: an HttpOnly, SameSite=Strict session cookie.
    let csrf = hidden(&page.body, "csrf");
    let response = anonymous
        .agent
        .post(&format!("{}/console/login", cast.server.base))
        .set("Cookie", &anonymous.cookie_header())
        .send_form(&[("csrf", &csrf), ("token", &cast.bank)])
        .expect("sign in");
    assert_eq!(response.status(), 303);
    let session = response
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("sbx_session="))
        .expect("session cookie")
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(session.contains(attribute), "{session}");
    }
    let mut bank = Browser::new(&cast.server);
    bank.sign_in(&cast.bank);
    // Every form needs the session's CSRF token: without it nothing happens.
    let page = bank.post("/console/apply", &with(APPLICATION, &[("scenario", "x")]));
    assert_eq!(page.status, 403);
    assert!(page.body.contains("csrf"), "{}", page.body);
    let page = bank.post(
        "/console/apply",
        &with(APPLICATION, &[("scenario", "x"), ("csrf", "0123")]),
    );
    assert_eq!(page.status, 403);
    let (_, apps) = cast.server.client(Some(&cast.bank)).get("/v1/applications");
    assert_eq!(apps.as_array().map(Vec::len), Some(0), "{apps}");
    // Another session's token is not this session's.
    let mut other = Browser::new(&cast.server);
    other.sign_in(&cast.other);
    let other_csrf = other.csrf();
    let page = bank.post(
        "/console/apply",
        &with(APPLICATION, &[("scenario", "x"), ("csrf", &other_csrf)]),
    );
    assert_eq!(page.status, 403);
    // Signing out forgets the session.
    let csrf = bank.csrf();
    let page = bank.post("/console/logout", &[("csrf", &csrf)]);
    assert_eq!(page.status, 303);
    assert_eq!(bank.get("/console/catalog").status, 303);
    // A stale cookie (a token that no longer signs in) goes back to sign-in.
    let mut stale = Browser::new(&cast.server);
    stale.cookies.insert("sbx_session".into(), "sbx_not_a_token".into());
    assert_eq!(stale.get("/console/applications").status, 303);
}

#[test]
fn console_catalog_filters_languages_and_redirects() {
    let cast = cast();
    let mut bank = Browser::new(&cast.server);
    bank.sign_in(&cast.bank);
    let all = bank.get("/console/catalog");
    assert_eq!(all.status, 200);
    assert!(all.body.contains("gov.tax_payments") && all.body.contains("gov.utility_usage"));
    let tax = bank.get("/console/catalog?q=tax_paid");
    assert!(tax.body.contains("gov.tax_payments") && !tax.body.contains("/console/catalog/gov.utility_usage"));
    let closed = bank.get("/console/catalog?class=closed");
    assert!(!closed.body.contains("/console/catalog/gov.tax_payments"));
    let page = bank.get("/console/catalog/gov.tax_payments");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("tax_paid") && page.body.contains("/console/apply?dataset=gov.tax_payments"));
    assert_eq!(bank.get("/console/catalog/gov.nothing").status, 404);
    // Chinese by default, English by the switch; the switch goes back only
    // to console pages.
    assert!(all.body.contains("lang=\"zh-CN\"") && all.body.contains("公共数据开放清单"));
    let page = bank.get("/console/lang?to=en&back=/console/catalog%3Fq%3Dtax");
    assert_eq!(page.location.as_deref(), Some("/console/catalog?q=tax"));
    let english = bank.get("/console/catalog");
    assert!(english.body.contains("lang=\"en\"") && english.body.contains("Open data catalog"));
    for evil in ["//evil.example/", "https://evil.example/", "/console//evil.example"] {
        let page = bank.get(&format!("/console/lang?to=zh&back={evil}"));
        assert_eq!(page.location.as_deref(), Some("/console/catalog"), "{evil}");
    }
}

#[test]
fn console_pages_answer_as_the_api_does_for_each_role() {
    let cast = cast();
    let mut bank = Browser::new(&cast.server);
    bank.sign_in(&cast.bank);
    let mut grid = Browser::new(&cast.server);
    grid.sign_in(&cast.grid);
    let mut ops = Browser::new(&cast.server);
    ops.sign_in(OPS_TOKEN);
    // Role pages: the API's role checks.
    assert_eq!(bank.get("/console/operator").status, 403);
    assert_eq!(bank.get("/console/audit").status, 403);
    assert_eq!(grid.get("/console/audit").status, 403);
    assert_eq!(ops.get("/console/apply").status, 403);
    assert_eq!(grid.get("/console/policies/gov.tax_payments").status, 403);
    assert_eq!(bank.get("/console/policies/gov.tax_payments").status, 403);
    let page = ops.get("/console/audit");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"ledger-status\""), "{}", page.body);
    assert_eq!(ops.get("/console/operator").status, 200);
    // An applicant may not suspend; the refusal names the rule.
    let csrf = bank.csrf();
    let page = bank.post(
        "/console/datasets/gov.tax_payments/suspend",
        &[("csrf", &csrf), ("reason", "x")],
    );
    assert_eq!(page.status, 403);
    assert!(page.body.contains("role-owner-or-operator"), "{}", page.body);
    // The operator creates an account; its token is shown once.
    let csrf = ops.csrf();
    let page = ops.post(
        "/console/accounts",
        &[
            ("csrf", &csrf),
            ("id", "new-analyst"),
            ("role", "applicant"),
            ("provider", ""),
        ],
    );
    assert_eq!(page.status, 201, "{}", page.body);
    assert!(page.body.contains("id=\"new-token\""));
    let page = ops.post(
        "/console/accounts",
        &[("csrf", &csrf), ("id", "bad id!"), ("role", "applicant")],
    );
    assert_eq!(page.status, 400);
}

#[test]
fn console_vertical_slice_from_application_to_suspension() {
    let cast = cast();
    let mut bank = Browser::new(&cast.server);
    bank.sign_in(&cast.bank);
    let mut tax = Browser::new(&cast.server);
    tax.sign_in(&cast.tax);
    let mut grid = Browser::new(&cast.server);
    grid.sign_in(&cast.grid);
    let mut other = Browser::new(&cast.server);
    other.sign_in(&cast.other);
    let mut ops = Browser::new(&cast.server);
    ops.sign_in(OPS_TOKEN);

    // The bank applies; its scenario is shown escaped.
    let form = bank.get("/console/apply?dataset=gov.tax_payments");
    assert_eq!(form.status, 200);
    assert!(
        form.body.contains("value=\"gov.tax_payments\" checked"),
        "{}",
        form.body
    );
    let csrf = bank.csrf();
    let scenario = "credit scoring <script>alert(1)</script> & \"quotes\"";
    // A form the API refuses comes back with everything typed in it.
    let mut refused: Vec<(&str, &str)> = APPLICATION
        .iter()
        .filter(|(k, _)| *k != "requested_epsilon")
        .copied()
        .collect();
    refused.extend([("scenario", scenario), ("csrf", &csrf), ("requested_epsilon", "-2")]);
    let page = bank.post("/console/apply", &refused);
    assert_eq!(page.status, 400);
    assert!(page.body.contains("id=\"apply-error\""));
    assert!(page.body.contains("credit scoring &lt;script&gt;"), "{}", page.body);
    let page = bank.post(
        "/console/apply",
        &with(APPLICATION, &[("scenario", scenario), ("csrf", &csrf)]),
    );
    assert_eq!(page.status, 303, "{}", page.body);
    let app_path = page.location.expect("location");
    let id = app_path.rsplit('/').next().expect("id").to_string();
    let page = bank.get(&app_path);
    assert!(!page.body.contains("<script>alert"), "user text is escaped");
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;"), "{}", page.body);
    assert!(page.body.contains("requested ε: 5"));

    // Another owner and another applicant do not see it (the API's 404).
    assert_eq!(grid.get(&app_path).status, 404);
    assert_eq!(other.get(&app_path).status, 404);

    // The tax bureau rejects with a reason; the bank reads it.
    let page = tax.get(&app_path);
    assert!(page.body.contains("id=\"reject-form\""));
    let csrf_tax = tax.csrf();
    let decision = format!("/console/applications/{id}/decision");
    let page = tax.post(
        &decision,
        &[("csrf", &csrf_tax), ("decision", "reject"), ("reason", "")],
    );
    assert_eq!(page.status, 400, "an empty reason is refused in place");
    assert!(page.body.contains("id=\"decision-error\""));
    let page = tax.post(
        &decision,
        &[
            ("csrf", &csrf_tax),
            ("decision", "reject"),
            ("reason", "name the <b>model</b> you will fit"),
        ],
    );
    assert_eq!(page.status, 303, "{}", page.body);
    let page = bank.get(&app_path);
    assert!(page.body.contains("name the &lt;b&gt;model&lt;"), "{}", page.body);
    assert!(page.body.contains("id=\"apply-form\""), "the revision form is offered");
    // The bank cannot decide, the grid cannot decide on tax data.
    let page = bank.post(&decision, &[("csrf", &csrf), ("decision", "reject"), ("reason", "x")]);
    assert_eq!(page.status, 403);

    // The bank revises; the tax bureau approves with terms.
    let page = bank.post(
        &format!("/console/applications/{id}/revise"),
        &with(APPLICATION, &[("scenario", "logistic credit model"), ("csrf", &csrf)]),
    );
    assert_eq!(page.status, 303, "{}", page.body);
    let page = bank.get(&app_path);
    assert!(page.body.contains("logistic credit model") && page.body.contains("id=\"application-status\""));
    let page = tax.post(
        &decision,
        &[
            ("csrf", &csrf_tax),
            ("decision", "approve"),
            ("epsilon", "5"),
            ("expires_at", "2999-01-01"),
            ("call_quota", "100"),
        ],
    );
    assert_eq!(page.status, 303, "{}", page.body);
    let agreement = format!("agreement-{id}");
    let page = bank.get("/console/agreements");
    assert!(
        page.body.contains(&agreement) && page.body.contains("<meter"),
        "{}",
        page.body
    );

    // Dry run: cost and interval widths, no budget spent.
    let page = bank.get(&format!("/console/jobs/new?agreement={agreement}"));
    assert_eq!(page.status, 200, "{}", page.body);
    let job = |action: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("agreement", agreement.clone()),
            ("sql", COUNT_SQL.to_string()),
            ("epsilon", "1".to_string()),
            ("action", action.to_string()),
        ]
    };
    let send = |b: &mut Browser, fields: Vec<(&str, String)>| {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        b.post("/console/jobs", &pairs)
    };
    let page = send(&mut bank, job("dry_run"));
    assert_eq!(page.status, 303, "{}", page.body);
    let job_path = page.location.expect("job");
    let page = finished_job_page(&mut bank, &job_path);
    assert!(page.body.contains("id=\"dry-run\""), "{}", page.body);
    assert!(page.body.contains("id=\"dry-epsilon\">1"), "{}", page.body);
    assert!(page.body.contains(COUNT_SQL), "the form keeps the SQL");
    // A trial on the samples: refused while the dataset has none, the rule named.
    let page = send(&mut bank, job("trial"));
    assert_eq!(page.status, 303, "{}", page.body);
    let page = finished_job_page(&mut bank, &page.location.expect("job"));
    assert!(page.body.contains("trial-needs-sample"), "{}", page.body);
    // Only the submitter sees a job.
    assert_eq!(other.get(&job_path).status, 404);
    assert_eq!(ops.get(&job_path).status, 404);

    // Run: the table and a chart with intervals.
    let page = send(&mut bank, job("run"));
    assert_eq!(page.status, 303, "{}", page.body);
    let page = finished_job_page(&mut bank, &page.location.expect("job"));
    assert!(page.body.contains("id=\"result\""), "{}", page.body);
    assert!(page.body.contains("<svg") && page.body.contains("class=\"interval\""));
    assert!(page.body.contains("95%: ["), "every noisy number shows its interval");

    // The operator suspends the dataset; the next job is refused, the rule named.
    let csrf_ops = ops.csrf();
    let page = ops.post(
        "/console/datasets/gov.tax_payments/suspend",
        &[
            ("csrf", &csrf_ops),
            ("reason", "complaint under review"),
            ("back", "/console/operator"),
        ],
    );
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/console/operator"))
    );
    let page = ops.get("/console/operator");
    assert!(page.body.contains("resume-gov.tax_payments"));
    let page = send(&mut bank, job("run"));
    let refused = if page.status == 303 {
        finished_job_page(&mut bank, &page.location.expect("job")).body
    } else {
        page.body
    };
    assert!(refused.contains("dataset-suspended"), "{refused}");
    let page = bank.get("/console/catalog/gov.tax_payments");
    assert!(page.body.contains("complaint under review"));
}

#[test]
fn console_policy_errors_are_shown_in_place() {
    let cast = cast();
    let mut tax = Browser::new(&cast.server);
    tax.sign_in(&cast.tax);
    let page = tax.get("/console/policies/gov.tax_payments");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"policy-toml\""));
    let csrf = hidden(&page.body, "csrf");
    let broken = "version = \"2\"\n[release\nk_min = <b>";
    let page = tax.post(
        "/console/policies/gov.tax_payments",
        &[("csrf", &csrf), ("toml", broken)],
    );
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("policy-invalid"), "the rule is named");
    assert!(page.body.contains("id=\"policy-error\"") && page.body.contains("aria-invalid=\"true\""));
    assert!(
        page.body.contains("k_min = &lt;b&gt;"),
        "the text typed is kept, escaped"
    );
}

#[test]
fn console_what_if_compares_a_draft_on_the_owners_data_only() {
    let cast = cast();
    let mut tax = Browser::new(&cast.server);
    tax.sign_in(&cast.tax);
    let page = tax.get("/console/policies/gov.tax_payments");
    assert!(page.body.contains("id=\"whatif-queries\""), "{}", page.body);
    let csrf = hidden(&page.body, "csrf");
    let owner_api = cast.server.client(Some(&cast.tax));
    let (_, policy) = owner_api.get("/v1/policies/gov.tax_payments");
    let current = policy["toml"].as_str().expect("policy").to_string();
    assert!(current.contains("min_units = 10\n"), "{current}");
    let draft = current.replace("min_units = 10\n", "min_units = 100000000\n");
    let queries = format!("{TAX_SQL}\nSELECT COUNT(*) FROM gov.utility_usage u");
    let page = tax.post(
        "/console/policies/gov.tax_payments",
        &[
            ("csrf", &csrf),
            ("toml", &draft),
            ("queries", &queries),
            ("action", "what_if"),
        ],
    );
    assert_eq!(page.status, 200, "{}", page.body);
    let section = &page.body[page.body.find("id=\"what-if\"").expect("what-if section")..];
    let rows: Vec<&str> = section.split("<tr>").skip(2).collect();
    assert_eq!(rows.len(), 2, "{section}");
    // The draft's k withholds every year; the k in force withholds none
    // (the dominance rule, decided on noisy values, may withhold some).
    let (in_force, drafted) = rows[0].split_once("class=\"draft\"").expect("draft cell");
    assert!(!in_force.contains("k-threshold"), "{in_force}");
    assert!(drafted.contains("k-threshold"), "{drafted}");
    let released = |cell: &str| {
        let start = cell.find("<strong>").expect("a count") + "<strong>".len();
        cell[start..]
            .split('<')
            .next()
            .expect("number")
            .parse::<u32>()
            .expect("a number")
    };
    assert_eq!(released(drafted), 0, "{drafted}");
    // Another owner's data is refused under both, as any job would be
    // (its table is not even bound in the job's session).
    assert_eq!(rows[1].matches("not found").count(), 2, "{}", rows[1]);
    assert!(!rows[1].contains("<strong>"), "{}", rows[1]);
    // Nothing was installed; the texts typed come back.
    let (_, after) = owner_api.get("/v1/policies/gov.tax_payments");
    assert_eq!(after["toml"].as_str(), Some(current.as_str()));
    assert!(page.body.contains("min_units = 100000000"));
    // A draft that does not validate is refused in place.
    let page = tax.post(
        "/console/policies/gov.tax_payments",
        &[
            ("csrf", &csrf),
            ("toml", "dataset = \"gov.tax_payments\"\n[nonsense"),
            ("queries", TAX_SQL),
            ("action", "what_if"),
        ],
    );
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("policy-invalid") && page.body.contains("id=\"policy-error\""));
    // Only the dataset's owner may preview its policy.
    for token in [&cast.bank, &cast.grid] {
        let mut other = Browser::new(&cast.server);
        other.sign_in(token);
        let csrf = other.csrf();
        let page = other.post(
            "/console/policies/gov.tax_payments",
            &[
                ("csrf", &csrf),
                ("toml", &draft),
                ("queries", TAX_SQL),
                ("action", "what_if"),
            ],
        );
        assert_eq!(page.status, 403, "{}", page.body);
        assert!(!page.body.contains("id=\"what-if\""));
    }
}

/// A `multipart/form-data` body with text fields and one file.
fn multipart(fields: &[(&str, &str)], file: (&str, &[u8])) -> (String, Vec<u8>) {
    let boundary = "----console-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes(),
        );
    }
    body.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"module.wasm\"\r\n\
             Content-Type: application/wasm\r\n\r\n",
            file.0
        )
        .bytes(),
    );
    body.extend(file.1);
    body.extend(format!("\r\n--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn console_job_form_uploads_a_webassembly_module() {
    let cast = cast();
    let bank_api = cast.server.client(Some(&cast.bank));
    let mut application = crate::server_support::tax_application("wasm-app");
    application["job_kinds"] = serde_json::json!(["sql", "wasm"]);
    assert_eq!(bank_api.post("/v1/applications", &application).0, 201);
    let tax_api = cast.server.client(Some(&cast.tax));
    let (status, decided) = tax_api.post(
        "/v1/applications/wasm-app/decision",
        &crate::server_support::approval(5.0, 100),
    );
    assert_eq!(status, 200, "{decided}");
    let mut bank = Browser::new(&cast.server);
    bank.sign_in(&cast.bank);
    let page = bank.get("/console/jobs/new?agreement=agreement-wasm-app");
    assert!(page.body.contains("enctype=\"multipart/form-data\"") && page.body.contains("type=\"file\""));
    let csrf = hidden(&page.body, "csrf");
    let send = |bank: &mut Browser, fields: &[(&str, &str)], module: &[u8]| {
        let (content_type, body) = multipart(fields, ("wasm_module", module));
        let result = bank
            .agent
            .post(&format!("{}/console/jobs", bank.base))
            .set("Cookie", &bank.cookie_header())
            .set("Content-Type", &content_type)
            .send_bytes(&body);
        bank.receive(result)
    };
    // Bytes that are no module reach the runtime's admission and are refused by name.
    let not_a_module = b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff";
    let fields = [
        ("csrf", csrf.as_str()),
        ("agreement", "agreement-wasm-app"),
        ("kind", "sql"),
        ("sql", TAX_SQL),
        ("epsilon", ""),
        ("action", "run"),
    ];
    let page = send(&mut bank, &fields, not_a_module);
    assert_eq!(page.status, 303, "{}", page.body);
    let page = finished_job_page(&mut bank, &page.location.expect("job"));
    assert!(page.body.contains("wasm-module"), "{}", page.body);
    // An analysis needs a module; the form comes back with the SQL in it.
    let mut fields = fields;
    fields[2] = ("kind", "analysis");
    let page = send(&mut bank, &fields, b"");
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("id=\"job-form-error\"") && page.body.contains("value=\"analysis\" checked"));
    // The CSRF check covers multipart forms too.
    fields[0] = ("csrf", "forged");
    let page = send(&mut bank, &fields, not_a_module);
    assert_eq!(page.status, 403);
}
