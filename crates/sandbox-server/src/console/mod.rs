//! The web console: server-rendered pages for applicants, data owners and
//! the operator under `/console/…`, served by the same process as the API.
//!
//! Every page is a thin view over the API's own handlers: a page calls the
//! handler of the matching `/v1/…` route with the session's [`Caller`], so
//! each rule, role check and visibility filter is the API's, and a page can
//! show no more than the API would show the same account. The console adds
//! only what a browser needs:
//!
//! - **Sign-in** with an API token, kept in an `HttpOnly`, `SameSite=Strict`
//!   cookie scoped to `/console` (the token itself: nothing new to store or
//!   revoke). The token is checked on every request, as the API checks its
//!   bearer token.
//! - **CSRF protection**: every form carries a token derived from the
//!   session token (SHA-256 under a fixed label), checked in constant time
//!   before anything is done; the sign-in form carries a random token
//!   matched against a short-lived cookie.
//! - **Languages**: Chinese and English interface strings ([`i18n`]),
//!   chosen by a cookie, else the browser's `Accept-Language`.
//! - **HTML escaping** of everything shown, by the template engine
//!   (minijinja auto-escapes `.html` templates), and a
//!   `Content-Security-Policy` that allows no script at all: the pages work
//!   without JavaScript (a running job's page refreshes itself with a
//!   `<meta http-equiv="refresh">`).

mod chart;
mod i18n;
mod jobs;
mod pages;
mod whatif;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use i18n::Lang;
use minijinja::value::Serde;
use sandbox_governance::{GovernanceError, Role};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The session cookie: the account's API token.
const SESSION_COOKIE: &str = "sbx_session";
/// The sign-in form's CSRF cookie (random, set with the form).
const LOGIN_COOKIE: &str = "sbx_login";
/// The interface language (`zh` or `en`).
const LANG_COOKIE: &str = "sbx_lang";

/// What every console page sends besides its body: no caching of private
/// pages, no scripts, no framing, no MIME sniffing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, merged into the API's router.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(pages::home))
        .route("/console/", get(pages::home))
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/lang", get(switch_language))
        .route("/console/login", get(pages::login_page).post(pages::login))
        .route("/console/logout", post(pages::logout))
        .route("/console/catalog", get(pages::catalog))
        .route("/console/catalog/{dataset}", get(pages::dataset))
        .route("/console/apply", get(pages::apply_page).post(pages::apply))
        .route("/console/applications", get(pages::applications))
        .route("/console/applications/{id}", get(pages::application))
        .route("/console/applications/{id}/revise", post(pages::revise))
        .route("/console/applications/{id}/decision", post(pages::decide))
        .route("/console/agreements", get(pages::agreements))
        .route("/console/agreements/{id}", get(pages::agreement))
        .route("/console/agreements/{id}/revoke", post(pages::revoke))
        .route(
            "/console/policies/{dataset}",
            get(pages::policy_page).post(pages::install_policy),
        )
        .route("/console/datasets/{dataset}/suspend", post(pages::suspend))
        .route("/console/datasets/{dataset}/resume", post(pages::resume))
        .route(
            "/console/complaints",
            get(pages::complaints).post(pages::file_complaint),
        )
        .route("/console/operator", get(pages::operator))
        .route("/console/accounts", post(pages::create_account))
        .route("/console/audit", get(pages::audit))
        .route("/console/jobs", get(jobs::jobs).post(jobs::submit))
        .route("/console/jobs/new", get(jobs::new_job))
        .route("/console/jobs/{id}", get(jobs::job))
        .layer(axum::middleware::from_fn(with_language))
}

tokio::task_local! {
    /// The language of the request being answered, for pages (errors
    /// included) rendered without a session at hand.
    static REQUEST_LANG: Lang;
}

/// Sets the request's language for everything rendered while answering it.
async fn with_language(request: Request, next: Next) -> Response {
    let lang = Lang::of(request.headers());
    REQUEST_LANG.scope(lang, next.run(request)).await
}

fn current_lang() -> Lang {
    REQUEST_LANG.try_with(|l| *l).unwrap_or_default()
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("static/console.css"),
    )
        .into_response()
}

/// `GET /console/lang?to=en&back=/console/…`: sets the language cookie and
/// goes back (only to a console page, so the link cannot redirect away).
async fn switch_language(crate::extract::Params(params): crate::extract::Params<LangSwitch>) -> Response {
    let lang = Lang::parse(&params.to).unwrap_or_default();
    let back = params
        .back
        .filter(|b| is_console_path(b))
        .unwrap_or_else(|| "/console/catalog".into());
    let mut response = Redirect::to(&back).into_response();
    set_cookie(
        &mut response,
        &format!(
            "{LANG_COOKIE}={}; Path=/console; Max-Age=31536000; SameSite=Lax",
            lang.code()
        ),
    );
    response
}

#[derive(Debug, serde::Deserialize)]
struct LangSwitch {
    to: String,
    back: Option<String>,
}

/// A path on this console (not `//host`, not another scheme).
fn is_console_path(path: &str) -> bool {
    path.starts_with("/console") && !path.contains("//") && !path.contains('\\') && !path.chars().any(char::is_control)
}

/// The page a form posted to `path` belongs to (a page rendered in answer
/// to a form switches language by going back to it, not to the form's
/// target, which answers `POST` only).
fn page_of_form(path: &str) -> String {
    for action in ["/decision", "/revise", "/revoke", "/suspend", "/resume"] {
        if let Some(page) = path.strip_suffix(action) {
            return page.replace("/console/datasets/", "/console/catalog/");
        }
    }
    match path {
        "/console/accounts" => "/console/operator".into(),
        "/console/apply" | "/console/jobs" | "/console/complaints" => path.into(),
        p if p.starts_with("/console/policies/") => p.into(),
        _ => "/console/catalog".into(),
    }
}

/// A signed-in account: the session cookie's token resolved as the API
/// resolves a bearer token.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub caller: Caller,
    /// The CSRF token the session's forms carry.
    pub csrf: String,
    pub lang: Lang,
    /// The page asked for (path and query), for the language switch.
    pub here: String,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let lang = Lang::of(&parts.headers);
        let here = if parts.method == axum::http::Method::GET {
            parts
                .uri
                .path_and_query()
                .map_or_else(|| "/console".to_string(), |p| p.as_str().to_string())
        } else {
            page_of_form(parts.uri.path())
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(Redirect::to("/console/login").into_response());
        };
        match state
            .sandbox
            .store()
            .authenticate(&token)
            .and_then(|(account, role)| Caller::new(state, account, role))
        {
            Ok(caller) => Ok(Session {
                caller,
                csrf: csrf_for(&token),
                lang,
                here,
            }),
            Err(GovernanceError::Unauthenticated) => {
                let mut response = Redirect::to("/console/login").into_response();
                set_cookie(&mut response, &clear_cookie(SESSION_COOKIE));
                Err(response)
            }
            Err(e) => Err(ConsoleError::from(ApiError::from(e)).into_response()),
        }
    }
}

impl Session {
    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, form: &Form) -> Result<(), ApiError> {
        let sent = form.get("csrf").unwrap_or_default();
        if constant_time_eq(sent.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "csrf",
                "the form's security token is missing or stale; reload the page and send the form again",
            ))
        }
    }
}

/// The CSRF token of a session: SHA-256 of the session token under a label
/// (unguessable without the token, which the page's scripts cannot read).
fn csrf_for(token: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"sandbox-console-csrf\0");
    hash.update(token.as_bytes());
    hex::encode(hash.finalize())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A random hex string of `bytes` bytes.
fn random_hex(bytes: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(buf))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn clear_cookie(name: &str) -> String {
    format!("{name}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// A form body (`application/x-www-form-urlencoded`), keys in order;
/// checkboxes repeat their key.
#[derive(Debug, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &str) -> Form {
        Form(form_urlencoded::parse(body.as_bytes()).into_owned().collect())
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    /// The first value of `key`, trimmed, or `""`.
    pub fn text(&self, key: &str) -> String {
        self.get(key).map(|v| v.trim().to_string()).unwrap_or_default()
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// An error shown as a page: the API's error (status, rule, message).
#[derive(Debug)]
pub(crate) struct ConsoleError(pub ApiError);

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError(e)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let e = self.0;
        if e.status == StatusCode::UNAUTHORIZED {
            return Redirect::to("/console/login").into_response();
        }
        let lang = current_lang();
        let page = View {
            lang,
            session: None,
            here: "/console/catalog".into(),
        };
        match page.html(
            e.status,
            "error.html",
            lang.text("error_title"),
            "",
            json!({"status": e.status.as_u16(), "message": e.message, "rule": e.rule}),
        ) {
            Ok(response) => response,
            Err(_) => (e.status, e.message).into_response(),
        }
    }
}

/// The result of a page handler.
pub(crate) type PageResult = Result<Response, ConsoleError>;

/// What a page is rendered for: the language, the session (if signed in)
/// and the page's own address.
pub(crate) struct View<'a> {
    pub lang: Lang,
    pub session: Option<&'a Session>,
    pub here: String,
}

impl<'a> View<'a> {
    pub fn of(session: &'a Session) -> Self {
        View {
            lang: session.lang,
            session: Some(session),
            here: session.here.clone(),
        }
    }

    pub fn t(&self, key: &str) -> &'static str {
        self.lang.text(key)
    }

    /// Renders `template` with `data` (a JSON object) and the layout's
    /// fields, as a `200 OK` page.
    pub fn page(&self, template: &str, title: &str, section: &str, data: Value) -> PageResult {
        self.html(StatusCode::OK, template, title, section, data)
    }

    /// Renders `template` with a status code.
    pub fn html(&self, status: StatusCode, template: &str, title: &str, section: &str, data: Value) -> PageResult {
        let me = self.session.map(|s| {
            let (role, provider) = match &s.caller.role {
                Role::Operator => ("operator", None),
                Role::Applicant => ("applicant", None),
                Role::DataOwner { provider } => ("data_owner", Some(provider.clone())),
            };
            json!({"account": s.caller.account, "role": role, "role_label": self.t(&format!("role_{role}")),
                   "provider": provider})
        });
        let other = self.lang.other();
        let mut context = json!({
            "lang": self.lang.code(),
            "lang_tag": self.lang.tag(),
            "other_lang": other.code(),
            "other_lang_tag": other.tag(),
            "t": self.lang.table(),
            "me": me,
            "csrf": self.session.map(|s| s.csrf.clone()),
            "here": self.here,
            "title": title,
            "section": section,
            "refresh": null,
            "flash": null,
        });
        if let (Some(base), Value::Object(extra)) = (context.as_object_mut(), data) {
            base.extend(extra);
        }
        let body = templates()?
            .get_template(template)
            .and_then(|t| t.render(Serde(&context)))
            .map_err(|e| {
                tracing::error!(error = %e, template, "a console page failed to render");
                ApiError::internal("the page could not be rendered; the operator's log has the details")
            })?;
        Ok(html_response(status, body))
    }
}

fn html_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// The templates, compiled once.
fn templates() -> Result<&'static minijinja::Environment<'static>, ApiError> {
    static TEMPLATES: OnceLock<Result<minijinja::Environment<'static>, String>> = OnceLock::new();
    TEMPLATES
        .get_or_init(|| {
            let mut env = minijinja::Environment::new();
            // A missing string or field fails the render (and so the tests)
            // instead of printing nothing; `if` and `default` may still test
            // for absence.
            env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
            for (name, source) in TEMPLATE_SOURCES {
                env.add_template(name, source).map_err(|e| format!("{name}: {e}"))?;
            }
            Ok(env)
        })
        .as_ref()
        .map_err(|e| {
            tracing::error!(error = %e, "the console's templates do not compile");
            ApiError::internal("the console's templates do not compile; the operator's log has the details")
        })
}

const TEMPLATE_SOURCES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("error.html", include_str!("templates/error.html")),
    ("login.html", include_str!("templates/login.html")),
    ("catalog.html", include_str!("templates/catalog.html")),
    ("dataset.html", include_str!("templates/dataset.html")),
    ("apply_form.html", include_str!("templates/apply_form.html")),
    ("apply.html", include_str!("templates/apply.html")),
    ("applications.html", include_str!("templates/applications.html")),
    ("application.html", include_str!("templates/application.html")),
    ("budget.html", include_str!("templates/budget.html")),
    ("agreements.html", include_str!("templates/agreements.html")),
    ("agreement.html", include_str!("templates/agreement.html")),
    ("job.html", include_str!("templates/job.html")),
    ("jobs.html", include_str!("templates/jobs.html")),
    ("policy.html", include_str!("templates/policy.html")),
    ("complaints.html", include_str!("templates/complaints.html")),
    ("operator.html", include_str!("templates/operator.html")),
    ("audit.html", include_str!("templates/audit.html")),
];

/// A redirect after a form (303: the browser follows with `GET`).
pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// The error as shown next to a form: `{"message", "rule"}`.
pub(crate) fn form_error(e: &ApiError) -> Value {
    json!({"message": e.message, "rule": e.rule})
}

/// Formats a released number for people: more decimals for small values.
pub(crate) fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    let s = if a == 0.0 || a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    };
    if s == "-0" { "0".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_console_paths_are_local() {
        assert!(templates().is_ok());
        assert!(is_console_path("/console/jobs/j1?x=1"));
        for bad in [
            "//evil.example/console",
            "https://evil.example",
            "/console//evil",
            "/v1/audit",
            "/console\\x",
        ] {
            assert!(!is_console_path(bad), "{bad}");
        }
    }

    #[test]
    fn a_page_rendered_for_a_form_knows_its_page() {
        assert_eq!(
            page_of_form("/console/applications/a1/decision"),
            "/console/applications/a1"
        );
        assert_eq!(
            page_of_form("/console/datasets/gov.x/suspend"),
            "/console/catalog/gov.x"
        );
        assert_eq!(page_of_form("/console/accounts"), "/console/operator");
        assert_eq!(page_of_form("/console/policies/gov.x"), "/console/policies/gov.x");
        assert_eq!(page_of_form("/console/logout"), "/console/catalog");
    }

    #[test]
    fn cookies_forms_and_csrf() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sbx_session=tok; sbx_lang=en"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("tok"));
        assert_eq!(cookie(&headers, "missing"), None);
        let form = Form::parse("columns=a.b&columns=a.c&scenario=%E4%BF%A1+x&csrf=z");
        assert_eq!(form.all("columns"), ["a.b", "a.c"]);
        assert_eq!(form.text("scenario"), "信 x");
        assert_ne!(csrf_for("tok"), csrf_for("tok2"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn numbers_keep_their_precision() {
        assert_eq!(number(1234.56), "1235");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(0.1234), "0.123");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(0.0001), "1.00e-4");
    }
}
