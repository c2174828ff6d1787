//! The job pages: write SQL, dry-run it (cost and interval widths, nothing
//! read), run it, and read the released table and its chart. A job and its
//! result are shown only to the account that submitted it, through the
//! API's own job handlers.

use super::pages::budget_meters;
use super::{ConsoleError, Form, PageResult, Session, View, chart, form_error, number, see_other};
use crate::error::ApiError;
use crate::extract::{Body, Params, PathParam};
use crate::job::{JobRequest, JobView};
use crate::routes;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

/// Jobs listed on the jobs page, newest first.
const JOBS_LISTED: u32 = 100;
/// Seconds between refreshes of a queued or running job's page.
const REFRESH_SECONDS: u32 = 1;

pub(crate) async fn jobs(State(state): State<AppState>, session: Session) -> PageResult {
    let view = View::of(&session);
    let Json(list) = routes::list_jobs(
        State(state),
        session.caller.clone(),
        Params(routes::ListParams {
            limit: Some(JOBS_LISTED),
        }),
    )
    .await?;
    let jobs: Vec<Value> = list
        .iter()
        .map(|j| {
            json!({"id": j.id, "agreement": j.agreement, "kind": j.kind, "state": j.state,
                   "state_label": view.t(&format!("state_{}", j.state)), "created_at": j.created_at})
        })
        .collect();
    view.page("jobs.html", view.t("jobs"), "jobs", json!({"jobs": jobs}))
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewJob {
    agreement: String,
}

/// What the job page shows around the form.
struct JobPage {
    agreement: String,
    sql: String,
    epsilon: String,
    /// `sql` or `analysis`.
    kind: String,
    job: Option<JobView>,
    result: Option<Value>,
    form_error: Value,
}

async fn job_view(state: &AppState, session: &Session, status: StatusCode, page: JobPage) -> PageResult {
    session.caller.require_applicant()?;
    let view = View::of(session);
    let Json(agreement) = routes::get_agreement(
        State(state.clone()),
        session.caller.clone(),
        PathParam(page.agreement.clone()),
    )
    .await?;
    let budgets = budget_meters(state, session, &agreement.id).await?;
    let can_run = agreement.holder == session.caller.account;
    let (mut dry_run, mut released, mut trial) = (Value::Null, Value::Null, Value::Null);
    match page.result {
        Some(r) if r["kind"] == "dry_run" => dry_run = dry_run_view(&r["report"]),
        Some(r) if r["kind"] == "sql_trial" => trial = sql_trial_view(&r["report"]),
        Some(r) if r["kind"] == "trial" => trial = analysis_trial_view(&r["report"]),
        Some(r) if r["kind"] == "analysis_dry_run" => trial = analysis_dry_run_view(&r["report"]),
        Some(r) => released = chart::released_view(&view, &r["table"])?,
        None => {}
    }
    let pending = page
        .job
        .as_ref()
        .is_some_and(|j| matches!(j.state.as_str(), "queued" | "running"));
    let job_error = page
        .job
        .as_ref()
        .and_then(|j| j.error.clone())
        .map(|e| json!({"message": e["message"], "rule": e["rule"]}));
    let title = match &page.job {
        Some(j) => format!("{} {}", view.t("job"), j.id),
        None => view.t("new_job").to_string(),
    };
    let state_label = page.job.as_ref().map(|j| view.t(&format!("state_{}", j.state)));
    view.html(
        status,
        "job.html",
        &title,
        "jobs",
        json!({"agreement": agreement.id, "budgets": budgets, "can_run": can_run, "job": page.job,
               "state_label": state_label, "pending": pending, "job_error": job_error,
               "refresh": pending.then_some(REFRESH_SECONDS), "dry_run": dry_run, "released": released, "trial": trial,
               "sql": page.sql, "epsilon": page.epsilon, "form_error": page.form_error,
               "kind": if page.kind == "analysis" { "analysis" } else { "sql" }}),
    )
}

fn samples_text(report: &Value) -> String {
    report["samples"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// A SQL trial (`sandbox_runtime::SqlTrialReport`): the exact result on the
/// samples and a line per function and failed call.
fn sql_trial_view(report: &Value) -> Value {
    let num = |v: &Value| v.as_f64().map(number).unwrap_or_default();
    let mut notes = Vec::new();
    let (shown, total) = (
        report["rows"].as_array().map_or(0, Vec::len) as u64,
        report["total_rows"].as_u64().unwrap_or(0),
    );
    if total > shown {
        notes.push(format!("{} more rows not shown", total - shown));
    }
    for f in report["functions"].as_array().into_iter().flatten() {
        notes.push(format!(
            "{}: {} calls, {} failed (default {} in a real job), {} NaN, {} clamped to [{}, {}], {} ms",
            f["name"].as_str().unwrap_or_default(),
            f["calls"],
            f["failed"],
            number((f["lower"].as_f64().unwrap_or(0.0) + f["upper"].as_f64().unwrap_or(0.0)) / 2.0),
            f["nan"],
            f["clamped"],
            num(&f["lower"]),
            num(&f["upper"]),
            num(&f["elapsed_ms"]),
        ));
        for c in f["failures"].as_array().into_iter().flatten() {
            notes.push(format!(
                "{}({}): {}",
                f["name"].as_str().unwrap_or_default(),
                c["arguments"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .map(|v| if v.is_null() { "NULL".into() } else { num(v) })
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default(),
                c["message"].as_str().unwrap_or_default()
            ));
        }
    }
    json!({"samples": samples_text(report), "columns": report["columns"], "rows": report["rows"], "notes": notes})
}

/// An analysis trial (`sandbox_runtime::TrialReport`): one row per block.
fn analysis_trial_view(report: &Value) -> Value {
    let num = |v: &Value| v.as_f64().map(number).unwrap_or_default();
    let rows: Vec<Value> = report["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, b)| {
            let outputs = b["outputs"]
                .as_array()
                .map(|o| o.iter().map(num).collect::<Vec<_>>().join(", "))
                .unwrap_or_else(|| "—".into());
            json!([
                i.to_string(),
                b["rows"].to_string(),
                num(&b["elapsed_ms"]),
                outputs,
                b["default_reason"].as_str().unwrap_or_default()
            ])
        })
        .collect();
    let mean = report["clamped_mean"]
        .as_array()
        .map(|m| m.iter().map(num).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    json!({"samples": samples_text(report), "columns": ["block", "rows", "ms", "outputs", "default because"],
           "rows": rows,
           "notes": [format!("blocks using the default: {}", report["defaults"]),
                     format!("clamped average before noise: {mean}")]})
}

/// An analysis dry run (`sandbox_runtime::AnalysisDryRun`): the noise per output.
fn analysis_dry_run_view(report: &Value) -> Value {
    let num = |v: &Value| v.as_f64().map(number).unwrap_or_default();
    let rows: Vec<Value> = report["outputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            json!([
                o["name"],
                format!("[{}, {}]", num(&o["lower"]), num(&o["upper"])),
                num(&o["scale"]),
                format!("± {}", num(&o["half_width_95"]))
            ])
        })
        .collect();
    json!({"samples": format!("none: a dry run reads nothing; ε = {}, {} blocks", num(&report["epsilon"]), report["blocks"]),
           "columns": ["output", "range", "noise scale", "95% half-width"], "rows": rows,
           "notes": [format!("ε for the outputs {}, for the noisy count of defaulted blocks {}",
                             num(&report["epsilon_outputs"]), num(&report["epsilon_default_count"]))]})
}

/// The dry-run report in words and formatted numbers.
fn dry_run_view(report: &Value) -> Value {
    let num = |v: &Value| v.as_f64().map(number).unwrap_or_default();
    let split: Vec<Value> = report["split"]
        .as_array()
        .map(|parts| parts.iter().map(|p| json!([p[0], num(&p[1])])).collect())
        .unwrap_or_default();
    let aggregates: Vec<Value> = report["aggregates"]
        .as_array()
        .map(|aggs| {
            aggs.iter()
                .map(|a| {
                    let components: Vec<Value> = a[1]["components"]
                        .as_array()
                        .map(|cs| {
                            cs.iter()
                                .map(|c| json!({"statistic": c[0], "scale": num(&c[1]), "half_width": num(&c[2])}))
                                .collect()
                        })
                        .unwrap_or_default();
                    json!({"name": a[0], "components": components})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"epsilon": num(&report["epsilon"]), "delta": report["delta"], "mode": report["mode"], "split": split,
           "aggregates": aggregates, "selection_threshold": report["selection_threshold"]})
}

pub(crate) async fn new_job(
    State(state): State<AppState>,
    session: Session,
    Params(params): Params<NewJob>,
) -> PageResult {
    let page = JobPage {
        agreement: params.agreement,
        sql: String::new(),
        epsilon: String::new(),
        kind: "sql".into(),
        job: None,
        result: None,
        form_error: Value::Null,
    };
    job_view(&state, &session, StatusCode::OK, page).await
}

/// The job form as sent: its fields, and the module file if one was
/// attached. The form is `multipart/form-data` (it may carry a file); a
/// `application/x-www-form-urlencoded` body is read too.
pub(crate) struct JobForm {
    form: Form,
    module: Option<Vec<u8>>,
}

impl axum::extract::FromRequest<AppState> for JobForm {
    type Rejection = ConsoleError;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let multipart = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        if !multipart {
            let body = String::from_request(request, state)
                .await
                .map_err(|e| ApiError::invalid(e.body_text()))?;
            return Ok(JobForm {
                form: Form::parse(&body),
                module: None,
            });
        }
        let bad = |e: axum::extract::multipart::MultipartError| ApiError {
            status: e.status(),
            code: "invalid",
            rule: None,
            message: format!("the form could not be read: {}", e.body_text()),
        };
        let mut parts = axum::extract::Multipart::from_request(request, state)
            .await
            .map_err(|e| ApiError::invalid(e.body_text()))?;
        let (mut fields, mut module) = (Vec::new(), None);
        while let Some(field) = parts.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or_default().to_string();
            if name == "wasm_module" {
                let bytes = field.bytes().await.map_err(bad)?;
                module = (!bytes.is_empty()).then(|| bytes.to_vec());
            } else {
                let text = field.text().await.map_err(bad)?;
                fields.push((name, text));
            }
        }
        Ok(JobForm {
            form: Form(fields),
            module,
        })
    }
}

/// The API's job request from the form: `kind` = `sql` (the module, if
/// any, gives the SQL row functions) or `analysis` (the module analyses
/// the rows the SQL selects; a module is required).
fn job_request(form: &Form, module: Option<&[u8]>) -> Result<JobRequest, ApiError> {
    let epsilon = match form.text("epsilon").as_str() {
        "" => None,
        e => Some(
            e.parse::<f64>()
                .map_err(|_| ApiError::invalid(format!("ε `{e}` is not a number")))?,
        ),
    };
    let agreement = form.text("agreement");
    let sql = form.get("sql").unwrap_or_default();
    let module = module.map(|m| base64::engine::general_purpose::STANDARD.encode(m));
    // A trial spends nothing: the form's ε (often still filled in) does not apply.
    let trial = form.text("action") == "trial";
    let epsilon = if trial { None } else { epsilon };
    match form.text("kind").as_str() {
        "" | "sql" => Ok(JobRequest::Sql {
            agreement,
            sql,
            epsilon,
            dry_run: form.text("action") == "dry_run",
            wasm_module: module,
            target_ci: None,
            target_rows: None,
            trial,
        }),
        "analysis" => Ok(JobRequest::Analysis {
            agreement,
            input_sql: sql,
            wasm_module: module
                .ok_or_else(|| ApiError::invalid("an analysis job needs a WebAssembly module: attach one"))?,
            blocks: None,
            epsilon,
            trial,
            dry_run: form.text("action") == "dry_run",
        }),
        other => Err(ApiError::invalid(format!(
            "unknown job kind `{other}`: sql or analysis"
        ))),
    }
}

/// Submits the form's job and goes to its page; a job refused at
/// submission comes back in the form with everything typed in it.
pub(crate) async fn submit(State(state): State<AppState>, session: Session, job_form: JobForm) -> PageResult {
    let JobForm { form, module } = job_form;
    session.check_csrf(&form)?;
    let submitted = match job_request(&form, module.as_deref()) {
        Ok(request) => routes::submit_job(State(state.clone()), session.caller.clone(), Body(request))
            .await
            .map(|(_, Json(view))| view),
        Err(e) => Err(e),
    };
    match submitted {
        Ok(job) => Ok(see_other(&format!("/console/jobs/{}", job.id))),
        Err(e) => {
            let page = JobPage {
                agreement: form.text("agreement"),
                sql: form.get("sql").unwrap_or_default(),
                epsilon: form.text("epsilon"),
                kind: form.text("kind"),
                job: None,
                result: None,
                form_error: form_error(&e),
            };
            job_view(&state, &session, e.status, page).await
        }
    }
}

pub(crate) async fn job(
    State(state): State<AppState>,
    session: Session,
    PathParam(id): PathParam<String>,
) -> PageResult {
    let Json(job) = routes::get_job(State(state.clone()), session.caller.clone(), PathParam(id.clone())).await?;
    let result = if job.state == "succeeded" {
        let Json(r) = routes::job_result(State(state.clone()), session.caller.clone(), PathParam(id.clone())).await?;
        Some(r)
    } else {
        None
    };
    // The form again, filled with this job's own request (the job is the
    // caller's: `get_job` answered).
    let request = state
        .sandbox
        .store()
        .queued_job(&id)
        .map_err(ApiError::from)?
        .filter(|j| j.account == session.caller.account)
        .and_then(|j| serde_json::from_str::<JobRequest>(&j.request).ok());
    let (sql, epsilon, kind) = match request {
        Some(JobRequest::Sql { sql, epsilon, .. }) => (sql, epsilon, "sql"),
        Some(JobRequest::Analysis { input_sql, epsilon, .. }) => (input_sql, epsilon, "analysis"),
        None => (String::new(), None, "sql"),
    };
    let page = JobPage {
        agreement: job.agreement.clone(),
        sql,
        epsilon: epsilon.map(|e| e.to_string()).unwrap_or_default(),
        kind: kind.into(),
        job: Some(job),
        result,
        form_error: Value::Null,
    };
    job_view(&state, &session, StatusCode::OK, page).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sql_trial_reads_as_rows_and_a_line_per_function_and_failed_call() {
        let report = json!({
            "samples": ["gov.utility_usage@s000001"], "columns": ["month", "v"],
            "rows": [["2023-01", "0.25"]], "total_rows": 3,
            "functions": [{"name": "score", "lower": 0.0, "upper": 1.0, "calls": 40, "failed": 7, "nan": 1,
                           "clamped": 2, "elapsed_ms": 3.0,
                           "failures": [{"arguments": [1200.0, null], "message": "panicked: too big"}]}],
            "elapsed_ms": 12.0});
        let view = sql_trial_view(&report);
        assert_eq!(view["samples"], "gov.utility_usage@s000001");
        assert_eq!(view["rows"][0][0], "2023-01");
        let notes: Vec<&str> = view["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(notes[0], "2 more rows not shown");
        assert!(
            notes[1]
                .starts_with("score: 40 calls, 7 failed (default 0.500 in a real job), 1 NaN, 2 clamped to [0, 1.000]"),
            "{notes:?}"
        );
        assert_eq!(notes[2], "score(1200, NULL): panicked: too big");
    }
}
