//! The console's pages other than jobs: sign-in, the catalog, applications
//! and decisions, agreements and their budgets, policies, complaints,
//! suspension, accounts and the audit ledger. Each calls the API handler
//! of the same action with the session's caller.

use super::{
    Form, LOGIN_COOKIE, PageResult, SESSION_COOKIE, Session, View, clear_cookie, constant_time_eq, cookie, form_error,
    number, random_hex, see_other, set_cookie,
};
use crate::error::ApiError;
use crate::extract::{Body, Params, PathParam};
use crate::routes;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use sandbox_governance::{Agreement, ApplicationRecord, GovernanceError, Role};
use serde::Deserialize;
use serde_json::{Value, json};

/// The largest usage report shown in a page (the API serves it whole).
const MAX_REPORT_BYTES: usize = 1024 * 1024;
/// Ledger entries shown, newest first (the API exports them all).
const AUDIT_ENTRIES_SHOWN: usize = 200;
/// The line of an application's scenario that carries the ε the applicant
/// asks for (the API's application has no field of its own for it).
const REQUESTED_EPSILON_LINE: &str = "申请的 ε / requested ε: ";

pub(crate) async fn home(_session: Session) -> Response {
    see_other("/console/catalog")
}

// ---- sign-in ----------------------------------------------------------

fn login_form(status: StatusCode, error: Option<&str>) -> PageResult {
    let login_csrf = random_hex(16)?;
    let view = View {
        lang: super::current_lang(),
        session: None,
        here: "/console/login".into(),
    };
    let mut response = view.html(
        status,
        "login.html",
        view.t("sign_in"),
        "",
        json!({"login_csrf": login_csrf, "error": error}),
    )?;
    set_cookie(
        &mut response,
        &format!("{LOGIN_COOKIE}={login_csrf}; Path=/console/login; Max-Age=1800; HttpOnly; SameSite=Strict"),
    );
    Ok(response)
}

pub(crate) async fn login_page() -> PageResult {
    login_form(StatusCode::OK, None)
}

/// Signs in with an API token: the token is checked as a bearer token is,
/// then kept in the session cookie.
pub(crate) async fn login(State(state): State<AppState>, headers: HeaderMap, body: String) -> PageResult {
    let form = Form::parse(&body);
    let lang = super::current_lang();
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let sent = form.get("csrf").unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
        return login_form(StatusCode::FORBIDDEN, Some(lang.text("login_expired")));
    }
    let token = form.text("token");
    // Tokens the server issues are cookie-safe; anything else is no token.
    let cookie_safe = !token.is_empty()
        && token.len() <= 256
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let signed_in = if cookie_safe {
        match state.sandbox.store().authenticate(&token) {
            Ok(_) => true,
            Err(GovernanceError::Unauthenticated) => false,
            Err(e) => return Err(ApiError::from(e).into()),
        }
    } else {
        false
    };
    if !signed_in {
        return login_form(StatusCode::UNAUTHORIZED, Some(lang.text("login_failed")));
    }
    let mut response = see_other("/console/catalog");
    set_cookie(
        &mut response,
        &format!("{SESSION_COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict"),
    );
    set_cookie(
        &mut response,
        &format!("{LOGIN_COOKIE}=; Path=/console/login; Max-Age=0; HttpOnly; SameSite=Strict"),
    );
    Ok(response)
}

pub(crate) async fn logout(session: Session, body: String) -> PageResult {
    session.check_csrf(&Form::parse(&body))?;
    let mut response = see_other("/console/login");
    set_cookie(&mut response, &clear_cookie(SESSION_COOKIE));
    Ok(response)
}

// ---- catalog ----------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CatalogFilter {
    q: Option<String>,
    class: Option<String>,
    provider: Option<String>,
    domain: Option<String>,
}

/// Every catalog entry with its page, as the API answers this caller.
async fn catalog_pages(state: &AppState, session: &Session) -> Result<Vec<(routes::CatalogLine, Value)>, ApiError> {
    let Json(lines) = routes::list_catalog(State(state.clone()), session.caller.clone()).await?;
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let Json(page) =
            routes::dataset_page(State(state.clone()), session.caller.clone(), PathParam(line.id.clone())).await?;
        let page = serde_json::to_value(&page).map_err(|e| ApiError::internal(e.to_string()))?;
        out.push((line, page));
    }
    Ok(out)
}

fn class_label(view: &View<'_>, class: &str) -> &'static str {
    view.t(&format!("class_{class}"))
}

fn contains(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(needle)
}

pub(crate) async fn catalog(
    State(state): State<AppState>,
    session: Session,
    Params(filter): Params<CatalogFilter>,
) -> PageResult {
    let view = View::of(&session);
    let all = catalog_pages(&state, &session).await?;
    let wanted = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (q, class, provider, domain) = (
        wanted(&filter.q).map(|s| s.to_lowercase()),
        wanted(&filter.class),
        wanted(&filter.provider),
        wanted(&filter.domain),
    );
    let mut providers: Vec<String> = all.iter().map(|(l, _)| l.provider.clone()).collect();
    providers.sort();
    providers.dedup();
    let mut domains: Vec<String> = all
        .iter()
        .filter_map(|(_, p)| p["dataset"]["domain"].as_str().map(str::to_string))
        .collect();
    domains.sort();
    domains.dedup();
    let datasets: Vec<Value> = all
        .iter()
        .filter(|(l, p)| {
            let d = &p["dataset"];
            class.as_deref().is_none_or(|c| l.open_class == c)
                && provider.as_deref().is_none_or(|c| l.provider == c)
                && domain.as_deref().is_none_or(|c| d["domain"].as_str() == Some(c))
                && q.as_deref().is_none_or(|q| {
                    contains(&l.id, q)
                        || contains(&l.title, q)
                        || contains(&l.summary, q)
                        || contains(d["provider"]["name"].as_str().unwrap_or_default(), q)
                        || d["fields"].as_array().is_some_and(|fields| {
                            fields.iter().any(|f| {
                                contains(f["name"].as_str().unwrap_or_default(), q)
                                    || contains(f["description"].as_str().unwrap_or_default(), q)
                            })
                        })
                })
        })
        .map(|(l, p)| {
            let d = &p["dataset"];
            json!({"id": l.id, "title": l.title, "summary": l.summary, "suspended": l.suspended,
                   "class_label": class_label(&view, &l.open_class),
                   "provider_name": d["provider"]["name"], "domain": d["domain"],
                   "update_frequency": d["update_frequency"]})
        })
        .collect();
    let classes: Vec<Value> = ["open", "conditional", "closed"]
        .iter()
        .map(|c| json!({"value": c, "label": class_label(&view, c)}))
        .collect();
    let shown = view
        .t("datasets_shown")
        .replace("{shown}", &datasets.len().to_string())
        .replace("{total}", &all.len().to_string());
    view.page(
        "catalog.html",
        view.t("catalog_title"),
        "catalog",
        json!({"datasets": datasets, "classes": classes, "providers": providers, "domains": domains,
               "q": filter.q.unwrap_or_default(), "class": class.unwrap_or_default(),
               "provider": provider.unwrap_or_default(), "domain": domain.unwrap_or_default(), "shown": shown}),
    )
}

pub(crate) async fn dataset(
    State(state): State<AppState>,
    session: Session,
    PathParam(dataset): PathParam<String>,
) -> PageResult {
    let view = View::of(&session);
    let Json(page) = routes::dataset_page(State(state.clone()), session.caller.clone(), PathParam(dataset)).await?;
    let owns = session.caller.owns(&page.dataset);
    let class = serde_json::to_value(page.dataset.open_class)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let can_apply = session.caller.role == Role::Applicant && class == "conditional" && page.suspension.is_none();
    let title = page.dataset.title.clone();
    // The public sample dataset (样本数据), where one has been generated:
    // anyone may download it, as from the public `/v1/samples` routes.
    // (Only a sample that may be served: one made under the sample terms of
    // the policy in force.)
    let sample = state.sandbox.current_sample(&page.dataset.id).ok().flatten().map(|_| {
        json!({"csv": format!("/v1/samples/{}/sample.csv", page.dataset.id),
                        "parquet": format!("/v1/samples/{}/sample.parquet", page.dataset.id),
                        "report": format!("/v1/samples/{}", page.dataset.id)})
    });
    view.page(
        "dataset.html",
        &title,
        "catalog",
        json!({"d": page.dataset, "class_label": class_label(&view, &class), "policy": page.policy,
               "policy_version": page.policy_version, "policy_digest": page.policy_digest,
               "suspension": page.suspension, "can_apply": can_apply, "can_edit_policy": owns,
               "can_suspend": owns || session.caller.is_operator(), "sample": sample}),
    )
}

// ---- applications -----------------------------------------------------

/// The application form's fields as the page shows them.
fn form_values(form: &Form) -> Value {
    json!({"datasets": form.all("datasets"), "columns": form.all("columns"), "job_kinds": form.all("job_kinds"),
           "scenario": form.get("scenario").unwrap_or_default(),
           "requested_epsilon": form.text("requested_epsilon"),
           "materials": form.get("materials").unwrap_or_default()})
}

/// The form values of a stored application (for its revision).
fn record_values(a: &ApplicationRecord) -> Value {
    let (scenario, epsilon) = split_requested_epsilon(&a.body.scenario);
    json!({"datasets": a.body.datasets.iter().map(ToString::to_string).collect::<Vec<_>>(),
           "columns": a.body.columns, "job_kinds": a.body.job_kinds, "scenario": scenario,
           "requested_epsilon": epsilon.unwrap_or_default(), "materials": a.body.materials.join("\n")})
}

/// Splits the requested-ε line off a scenario.
fn split_requested_epsilon(scenario: &str) -> (String, Option<String>) {
    match scenario.rsplit_once(&format!("\n\n{REQUESTED_EPSILON_LINE}")) {
        Some((text, eps)) if !eps.contains('\n') => (text.to_string(), Some(eps.trim().to_string())),
        _ => (scenario.to_string(), None),
    }
}

/// The API's application request from the form; the requested ε, if any,
/// becomes the scenario's last line.
fn application_request(form: &Form, id: Option<String>) -> Result<routes::ApplicationRequest, ApiError> {
    let mut datasets = Vec::new();
    for d in form.all("datasets") {
        datasets.push(
            d.parse()
                .map_err(|e| ApiError::invalid(format!("`{d}` is not a dataset id: {e}")))?,
        );
    }
    let mut scenario = form.get("scenario").unwrap_or_default().trim().to_string();
    let requested = form.text("requested_epsilon");
    if !requested.is_empty() {
        let eps: f64 = requested
            .parse()
            .ok()
            .filter(|e: &f64| e.is_finite() && *e > 0.0)
            .ok_or_else(|| ApiError::invalid(format!("the requested ε `{requested}` is not a positive number")))?;
        scenario = format!("{scenario}\n\n{REQUESTED_EPSILON_LINE}{eps}");
    }
    let materials = form
        .get("materials")
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    Ok(routes::ApplicationRequest {
        id,
        datasets,
        columns: form.all("columns"),
        job_kinds: form.all("job_kinds"),
        scenario,
        materials,
    })
}

/// The conditionally open datasets an applicant may apply for, with fields.
async fn applicable_datasets(state: &AppState, session: &Session) -> Result<Vec<Value>, ApiError> {
    Ok(catalog_pages(state, session)
        .await?
        .into_iter()
        .filter(|(l, _)| l.open_class == "conditional")
        .map(|(l, p)| json!({"id": l.id, "title": l.title, "fields": p["dataset"]["fields"]}))
        .collect())
}

async fn apply_view(state: &AppState, session: &Session, status: StatusCode, form: Value, errors: Value) -> PageResult {
    session.caller.require_applicant()?;
    let view = View::of(session);
    let datasets = applicable_datasets(state, session).await?;
    view.html(
        status,
        "apply.html",
        view.t("apply_title"),
        "applications",
        json!({"form": form, "datasets": datasets, "errors": errors}),
    )
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ApplyParams {
    dataset: Option<String>,
}

pub(crate) async fn apply_page(
    State(state): State<AppState>,
    session: Session,
    Params(params): Params<ApplyParams>,
) -> PageResult {
    let form = json!({"datasets": params.dataset.into_iter().collect::<Vec<_>>(), "columns": [],
                      "job_kinds": ["sql"], "scenario": "", "requested_epsilon": "", "materials": ""});
    apply_view(&state, &session, StatusCode::OK, form, Value::Null).await
}

pub(crate) async fn apply(State(state): State<AppState>, session: Session, body: String) -> PageResult {
    let form = Form::parse(&body);
    session.check_csrf(&form)?;
    let submitted = match application_request(&form, None) {
        Ok(request) => routes::submit_application(State(state.clone()), session.caller.clone(), Body(request))
            .await
            .map(|(_, Json(s))| s),
        Err(e) => Err(e),
    };
    match submitted {
        Ok(s) => Ok(see_other(&format!("/console/applications/{}", s.id))),
        Err(e) => apply_view(&state, &session, e.status, form_values(&form), form_error(&e)).await,
    }
}

pub(crate) async fn applications(State(state): State<AppState>, session: Session) -> PageResult {
    let view = View::of(&session);
    let Json(records) = routes::list_applications(State(state.clone()), session.caller.clone()).await?;
    let applications: Vec<Value> = records
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
            v["status_label"] = json!(view.t(&format!("status_{}", a.status)));
            v
        })
        .collect();
    view.page(
        "applications.html",
        view.t("applications"),
        "applications",
        json!({"applications": applications}),
    )
}

/// The date a year from now, `YYYY-MM-DD` (UTC), the default expiry.
fn date_in_a_year() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
        + 365;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// An application's page, with the forms this caller may use on it.
async fn application_view(
    state: &AppState,
    session: &Session,
    id: String,
    status: StatusCode,
    extra: Value,
) -> PageResult {
    let view = View::of(session);
    let Json(a) = routes::get_application(State(state.clone()), session.caller.clone(), PathParam(id)).await?;
    let can_decide = session.caller.provider().is_some() && a.status == "submitted";
    let can_revise = session.caller.account == a.applicant && a.status == "rejected";
    let (_, requested) = split_requested_epsilon(&a.body.scenario);
    let datasets = if can_revise {
        applicable_datasets(state, session).await?
    } else {
        Vec::new()
    };
    let mut data = json!({
        "a": a, "status_label": view.t(&format!("status_{}", a.status)),
        "agreement": (a.status == "approved").then(|| format!("agreement-{}", a.id)),
        "can_decide": can_decide, "can_revise": can_revise, "datasets": datasets,
        "form": record_values(&a), "errors": null, "revise_errors": null,
        "decision": {"epsilon": requested.unwrap_or_else(|| "1".into()), "expires_at": date_in_a_year(),
                     "call_quota": 1000, "reason": ""},
    });
    if let (Some(base), Value::Object(extra)) = (data.as_object_mut(), extra) {
        base.extend(extra);
    }
    let title = format!("{} {}", view.t("application"), a.id);
    view.html(status, "application.html", &title, "applications", data)
}

pub(crate) async fn application(
    State(state): State<AppState>,
    session: Session,
    PathParam(id): PathParam<String>,
) -> PageResult {
    application_view(&state, &session, id, StatusCode::OK, json!({})).await
}

pub(crate) async fn revise(
    State(state): State<AppState>,
    session: Session,
    PathParam(id): PathParam<String>,
    body: String,
) -> PageResult {
    let form = Form::parse(&body);
    session.check_csrf(&form)?;
    let revised = match application_request(&form, Some(id.clone())) {
        Ok(request) => {
            routes::resubmit_application(
                State(state.clone()),
                session.caller.clone(),
                PathParam(id.clone()),
                Body(request),
            )
            .await
        }
        Err(e) => Err(e),
    };
    match revised {
        Ok(_) => Ok(see_other(&format!("/console/applications/{id}"))),
        Err(e) => {
            let extra = json!({"form": form_values(&form), "revise_errors": form_error(&e)});
            application_view(&state, &session, id, e.status, extra).await
        }
    }
}

/// An owner's decision from the approve or reject form.
fn decision_request(form: &Form) -> Result<routes::DecisionRequest, ApiError> {
    match form.text("decision").as_str() {
        "approve" => {
            let epsilon = form.text("epsilon");
            let epsilon: f64 = epsilon
                .parse()
                .map_err(|_| ApiError::invalid(format!("ε `{epsilon}` is not a number")))?;
            let quota = form.text("call_quota");
            let call_quota: u64 = quota
                .parse()
                .map_err(|_| ApiError::invalid(format!("the call quota `{quota}` is not a whole number")))?;
            let date = form.text("expires_at");
            // A date input sends `YYYY-MM-DD`: the agreement ends as it begins (UTC).
            let expires_at = if date.len() == 10 {
                format!("{date}T00:00:00Z")
            } else {
                date
            };
            Ok(routes::DecisionRequest::Approve {
                epsilon,
                expires_at,
                call_quota,
            })
        }
        "reject" => Ok(routes::DecisionRequest::Reject {
            reason: form.text("reason"),
        }),
        other => Err(ApiError::invalid(format!(
            "unknown decision `{other}`: approve or reject"
        ))),
    }
}

pub(crate) async fn decide(
    State(state): State<AppState>,
    session: Session,
    PathParam(id): PathParam<String>,
    body: String,
) -> PageResult {
    let form = Form::parse(&body);
    session.check_csrf(&form)?;
    let decided = match decision_request(&form) {
        Ok(decision) => {
            routes::decide_application(
                State(state.clone()),
                session.caller.clone(),
                PathParam(id.clone()),
                Body(decision),
            )
            .await
        }
        Err(e) => Err(e),
    };
    match decided {
        Ok(_) => Ok(see_other(&format!("/console/applications/{id}"))),
        Err(e) => {
            let extra = json!({"errors": form_error(&e),
                "decision": {"epsilon": form.text("epsilon"), "expires_at": form.text("expires_at"),
                             "call_quota": form.text("call_quota"), "reason": form.get("reason").unwrap_or_default()}});
            application_view(&state, &session, id, e.status, extra).await
        }
    }
}

// ---- agreements -------------------------------------------------------

/// An agreement's budget lines as meters.
pub(crate) async fn budget_meters(
    state: &AppState,
    session: &Session,
    agreement: &str,
) -> Result<Vec<Value>, ApiError> {
    let Json(lines) = routes::agreement_budget(
        State(state.clone()),
        session.caller.clone(),
        PathParam(agreement.to_string()),
    )
    .await?;
    Ok(lines
        .into_iter()
        .map(|b| {
            json!({"dataset": b.dataset, "epsilon_total": b.epsilon_total, "epsilon_left": b.epsilon_left.max(0.0),
                   "low": b.epsilon_total * 0.2, "left_text": number(b.epsilon_left), "total_text": number(b.epsilon_total)})
        })
        .collect())
}

fn may_run(session: &Session, a: &Agreement) -> bool {
    session.caller.role == Role::Applicant && a.holder == session.caller.account && a.status == "active"
}

pub(crate) async fn agreements(State(state): State<AppState>, session: Session) -> PageResult {
    let view = View::of(&session);
    let Json(list) = routes::list_agreements(State(state.clone()), session.caller.clone()).await?;
    let mut shown = Vec::with_capacity(list.len());
    for a in list {
        let budgets = budget_meters(&state, &session, &a.id).await?;
        let mut v = serde_json::to_value(&a).map_err(|e| ApiError::internal(e.to_string()))?;
        v["budgets"] = json!(budgets);
        v["can_run"] = json!(may_run(&session, &a));
        v["status_label"] = json!(view.t(&format!("status_{}", a.status)));
        shown.push(v);
    }
    view.page(
        "agreements.html",
        view.t("agreements"),
        "agreements",
        json!({"agreements": shown}),
    )
}

pub(crate) async fn agreement(
    State(state): State<AppState>,
    session: Session,
    PathParam(id): PathParam<String>,
) -> PageResult {
    let view = View::of(&session);
    let Json(a) = routes::get_agreement(State(state.clone()), session.caller.clone(), PathParam(id.clone())).await?;
    let budgets = budget_meters(&state, &session, &id).await?;
    let report = routes::agreement_report(
        State(state.clone()),
        session.caller.clone(),
        PathParam(id.clone()),
        Params(routes::ReportParams {
            from: None,
            to: None,
            format: Some("markdown".into()),
        }),
    )
    .await?;
    let report = axum::body::to_bytes(report.into_body(), MAX_REPORT_BYTES)
        .await
        .map_err(|e| ApiError::internal(format!("the usage report could not be read: {e}")))?;
    let can_revoke = a.status == "active" && (session.caller.is_operator() || session.caller.provider().is_some());
    view.page(
        "agreement.html",
        &format!("{} {}", view.t("agreement"), a.id),
        "agreements",
        json!({"can_run": may_run(&session, &a), "status_label": view.t(&format!("status_{}", a.status)),
               "a": a, "budgets": budgets, "report": String::from_utf8_lossy(&report), "can_revoke": can_revoke}),
    )
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    session: Session,
    PathParam(id): PathParam<String>,
    body: String,
) -> PageResult {
    let form = Form::parse(&body);
    session.check_csrf(&form)?;
    let _revoked = routes::revoke_agreement(
        State(state),
        session.caller.clone(),
        PathParam(id.clone()),
        Body(routes::Reason {
            reason: form.text("reason"),
        }),
    )
    .await?;
    Ok(see_other(&format!("/console/agreements/{id}")))
}

// ---- policies ---------------------------------------------------------

/// The policy page: the text being edited, the typical queries of the
/// what-if view, and its comparison or the checker's error when there is one.
struct PolicyForm<'a> {
    dataset: &'a str,
    toml: &'a str,
    queries: &'a str,
    what_if: Value,
    error: Value,
}

fn policy_view(session: &Session, status: StatusCode, form: PolicyForm<'_>) -> PageResult {
    let view = View::of(session);
    view.html(
        status,
        "policy.html",
        &format!("{} {}", view.t("edit_policy"), form.dataset),
        "catalog",
        json!({"dataset": form.dataset, "toml": form.toml, "queries": form.queries, "what_if": form.what_if,
               "error": form.error, "max_queries": super::whatif::MAX_QUERIES.to_string()}),
    )
}

/// The page of a dataset the caller owns, else `403`.
async fn owned_dataset(state: &AppState, session: &Session, dataset: &str) -> Result<routes::DatasetPage, ApiError> {
    session.caller.require_owner()?;
    let Json(page) = routes::dataset_page(
        State(state.clone()),
        session.caller.clone(),
        PathParam(dataset.to_string()),
    )
    .await?;
    if session.caller.provider() != Some(page.dataset.provider.id.as_str()) {
        return Err(ApiError::forbidden(
            "policy-owner",
            "only the dataset's owner edits its policy",
        ));
    }
    Ok(page)
}

pub(crate) async fn policy_page(
    State(state): State<AppState>,
    session: Session,
    PathParam(dataset): PathParam<String>,
) -> PageResult {
    let page = owned_dataset(&state, &session, &dataset).await?;
    let toml = match routes::get_policy(State(state), session.caller.clone(), PathParam(dataset.clone())).await {
        Ok(Json(p)) => p.toml,
        Err(e) if e.status == StatusCode::NOT_FOUND => String::new(),
        Err(e) => return Err(e.into()),
    };
    let queries = super::whatif::typical_queries(&page.dataset).join("\n");
    let form = PolicyForm {
        dataset: &dataset,
        toml: &toml,
        queries: &queries,
        what_if: Value::Null,
        error: Value::Null,
    };
    policy_view(&session, StatusCode::OK, form)
}

/// `action=install` installs the policy through the API; a policy that
/// does not validate comes back in the form with the checker's message
/// above it, nothing lost. `action=what_if` compares the draft with the
/// policy in force on the typical queries, installing nothing.
pub(crate) async fn install_policy(
    State(state): State<AppState>,
    session: Session,
    PathParam(dataset): PathParam<String>,
    body: String,
) -> PageResult {
    let form = Form::parse(&body);
    session.check_csrf(&form)?;
    let toml = form.get("toml").unwrap_or_default();
    let queries = form.get("queries").unwrap_or_default();
    if form.text("action") == "what_if" {
        let page = owned_dataset(&state, &session, &dataset).await?;
        let provider = session.caller.provider().unwrap_or_default().to_string();
        let list: Vec<String> = queries
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let compared = if list.is_empty() || list.len() > super::whatif::MAX_QUERIES {
            Err(ApiError::invalid(format!(
                "give 1 to {} typical queries, one a line",
                super::whatif::MAX_QUERIES
            )))
        } else {
            super::whatif::compare(
                &state,
                &provider,
                &session.caller.account,
                &page.dataset.id,
                &toml,
                &list,
            )
            .await
        };
        let (status, what_if, error) = match compared {
            Ok(rows) => (StatusCode::OK, json!(rows), Value::Null),
            Err(e) => (e.status, Value::Null, form_error(&e)),
        };
        let form = PolicyForm {
            dataset: &dataset,
            toml: &toml,
            queries: &queries,
            what_if,
            error,
        };
        return policy_view(&session, status, form);
    }
    let installed = routes::put_policy(
        State(state),
        session.caller.clone(),
        PathParam(dataset.clone()),
        Body(routes::PolicyText { toml: toml.clone() }),
    )
    .await;
    match installed {
        Ok(_) => Ok(see_other(&format!("/console/catalog/{dataset}"))),
        Err(e) => {
            let form = PolicyForm {
                dataset: &dataset,
                toml: &toml,
                queries: &queries,
                what_if: Value::Null,
                error: form_error(&e),
            };
            policy_view(&session, e.status, form)
        }
    }
}

// ---- suspension, complaints, accounts, audit --------------------------

/// Where a form asked to go back to (a console page), else `fallback`.
fn back_to(form: &Form, fallback: String) -> String {
    form.get("back")
        .filter(|b| super::is_console_path(b))
        .unwrap_or(fallback)
}

pub(crate) async fn suspend(
    State(state): State<AppState>,
    session: Session,
    PathParam(dataset): PathParam<String>,
    body: String,
) -> PageResult {
    let form = Form::parse(&body);
    session.check_csrf(&form)?;
    let _suspended = routes::suspend_dataset(
        State(state),
        session.caller.clone(),
        PathParam(dataset.clone()),
        Body(routes::Reason {
            reason: form.text("reason"),
        }),
    )
    .await?;
    Ok(see_other(&back_to(&form, format!("/console/catalog/{dataset}"))))
}

pub(crate) async fn resume(
    State(state): State<AppState>,
    session: Session,
    PathParam(dataset): PathParam<String>,
    body: String,
) -> PageResult {
    let form = Form::parse(&body);
    session.check_csrf(&form)?;
    let _resumed = routes::resume_dataset(
        State(state),
        session.caller.clone(),
        PathParam(dataset.clone()),
        Body(routes::Reason {
            reason: form.text("reason"),
        }),
    )
    .await?;
    Ok(see_other(&back_to(&form, format!("/console/catalog/{dataset}"))))
}

pub(crate) async fn complaints(State(state): State<AppState>, session: Session) -> PageResult {
    let view = View::of(&session);
    let Json(list) = routes::list_complaints(State(state), session.caller.clone()).await?;
    view.page(
        "complaints.html",
        view.t("complaints"),
        "complaints",
        json!({"complaints": list}),
    )
}

pub(crate) async fn file_complaint(State(state): State<AppState>, session: Session, body: String) -> PageResult {
    let form = Form::parse(&body);
    session.check_csrf(&form)?;
    let _filed = routes::file_complaint(
        State(state),
        session.caller.clone(),
        Body(routes::NewComplaint {
            dataset: form.text("dataset"),
            text: form.text("text"),
        }),
    )
    .await?;
    Ok(see_other("/console/complaints"))
}

async fn operator_view(state: &AppState, session: &Session, status: StatusCode, extra: Value) -> PageResult {
    session.caller.require_operator()?;
    let view = View::of(session);
    let Json(lines) = routes::list_catalog(State(state.clone()), session.caller.clone()).await?;
    let mut data = json!({"datasets": lines, "created": null, "account_error": null});
    if let (Some(base), Value::Object(extra)) = (data.as_object_mut(), extra) {
        base.extend(extra);
    }
    view.html(status, "operator.html", view.t("operator"), "operator", data)
}

pub(crate) async fn operator(State(state): State<AppState>, session: Session) -> PageResult {
    operator_view(&state, &session, StatusCode::OK, json!({})).await
}

/// Creates an account; its token is shown once, in the answer.
pub(crate) async fn create_account(State(state): State<AppState>, session: Session, body: String) -> PageResult {
    let form = Form::parse(&body);
    session.check_csrf(&form)?;
    let provider = Some(form.text("provider")).filter(|p| !p.is_empty());
    let created = routes::create_account(
        State(state.clone()),
        session.caller.clone(),
        Body(routes::NewAccount {
            id: form.text("id"),
            role: form.text("role"),
            provider,
        }),
    )
    .await;
    match created {
        Ok((_, Json(c))) => operator_view(&state, &session, StatusCode::CREATED, json!({"created": c})).await,
        Err(e) => operator_view(&state, &session, e.status, json!({"account_error": e.message})).await,
    }
}

pub(crate) async fn audit(State(state): State<AppState>, session: Session) -> PageResult {
    let view = View::of(&session);
    let Json(verification) = routes::verify_audit(State(state.clone()), session.caller.clone()).await?;
    let Json(entries) = routes::export_audit(State(state), session.caller.clone()).await?;
    let entries: Vec<Value> = entries
        .as_array()
        .map(|all| {
            all.iter()
                .rev()
                .take(AUDIT_ENTRIES_SHOWN)
                .map(|e| {
                    json!({"seq": e["seq"], "at": e["at"], "actor": e["actor"], "kind": e["kind"],
                           "payload": e["payload"].to_string()})
                })
                .collect()
        })
        .unwrap_or_default();
    view.page(
        "audit.html",
        view.t("audit"),
        "audit",
        json!({"verification": verification, "entries": entries}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_epsilon_round_trips_through_the_scenario() {
        let form =
            Form::parse("datasets=gov.tax_payments&scenario=credit+scoring&requested_epsilon=1.5&materials=a%0Ab");
        let request = application_request(&form, None).expect("request");
        assert!(request.scenario.ends_with("requested ε: 1.5"), "{}", request.scenario);
        assert_eq!(request.materials, ["a", "b"]);
        let (scenario, eps) = split_requested_epsilon(&request.scenario);
        assert_eq!((scenario.as_str(), eps.as_deref()), ("credit scoring", Some("1.5")));
        let bad = Form::parse("scenario=x&requested_epsilon=-1");
        assert!(application_request(&bad, None).is_err());
        let bad = Form::parse("datasets=not+an+id&scenario=x");
        assert!(application_request(&bad, None).is_err());
    }

    #[test]
    fn decisions_from_forms() {
        let approve = Form::parse("decision=approve&epsilon=2&expires_at=2030-01-02&call_quota=10");
        match decision_request(&approve).expect("approve") {
            routes::DecisionRequest::Approve {
                epsilon,
                expires_at,
                call_quota,
            } => assert_eq!(
                (epsilon, expires_at.as_str(), call_quota),
                (2.0, "2030-01-02T00:00:00Z", 10)
            ),
            other => panic!("{other:?}"),
        }
        assert!(decision_request(&Form::parse("decision=approve&epsilon=x&call_quota=1")).is_err());
        assert!(decision_request(&Form::parse("decision=maybe")).is_err());
        let date = date_in_a_year();
        assert_eq!(date.len(), 10, "{date}");
        assert!(date.as_str() > "2025-01-01", "{date}");
    }
}
