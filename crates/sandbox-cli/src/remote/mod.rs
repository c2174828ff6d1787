//! The CLI against a server (`--server URL`, `$SANDBOX_SERVER`): the same
//! verbs, as calls to the HTTP API (docs/api.md) under the token of
//! `--token` / `$SANDBOX_TOKEN`; no local data directory is opened. Jobs
//! are submitted, followed (a spinner on a terminal, nothing otherwise)
//! and their released tables printed as the local verbs print them.

mod client;
mod view;

use crate::commands::{CliError, MAX_MODULE_FILE_BYTES, MAX_SQL_FILE_BYTES, fail, read_text};
use crate::{
    AccountCommand, ApplyArgs, AuditCommand, Command, DecideArgs, GovernanceCommand, PolicyCommand, ReportArgs,
    SqlArgs, WasmCommand, WasmRunArgs,
};
use base64::Engine;
use client::{ApiFailure, Client, segment};
use sandbox_model::ReleasedTable;
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;
use view::text;

/// How often a job is polled while it is queued or running.
const POLL_EVERY: Duration = Duration::from_millis(100);

pub fn run(server: &str, token: Option<&str>, command: Command) -> Result<(), CliError> {
    let client = Client::new(server, token);
    match command {
        Command::Sql(args) => sql(&client, args),
        Command::Wasm {
            command: WasmCommand::Run(args),
        } => wasm_run(&client, args),
        Command::Wasm {
            command: WasmCommand::New(args),
        } => crate::wasm_new(args),
        Command::Catalog => {
            print!("{}", view::catalog(&client.get("/v1/catalog")?));
            Ok(())
        }
        Command::Budget { grant, json } => {
            let budget = client.get(&format!("/v1/agreements/{}/budget", segment(&grant)))?;
            if json {
                println!("{}", pretty(&budget)?);
            } else {
                print!("{}", view::budget(&grant, &budget));
            }
            Ok(())
        }
        Command::Report(args) => report(&client, args),
        Command::Audit {
            command: AuditCommand::Verify { json, checkpoint: None },
        } => audit_verify(&client, json),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    checkpoint: Some(_), ..
                }
                | AuditCommand::Checkpoint { .. },
        } => Err(local_only("audit checkpoint")),
        Command::Audit {
            command: AuditCommand::Export { out },
        } => audit_export(&client, out),
        Command::Policy {
            command: PolicyCommand::Set { file },
        } => policy_set(&client, &file),
        Command::Governance(command) => governance(&client, command),
        Command::Demo { .. } => Err(local_only("demo")),
        Command::Data { .. } => Err(local_only("data generate")),
        Command::Policy {
            command: PolicyCommand::Check { .. },
        } => Err(local_only("policy check")),
        Command::Serve(_) => Err(local_only("serve")),
        Command::Cluster(_) => Err(local_only("cluster")),
        Command::Dataset {
            command: crate::dataset::DatasetCommand::Register(args),
        } if !args.check_only => register(&client, &args),
        Command::Dataset { .. } => Err(local_only("dataset show, withdraw and register --check-only")),
        Command::Sample(args) if args.generate => Err(local_only("sample --generate")),
        Command::Sample(args) => {
            // The report; the files are at the routes it names (public).
            let report = client.get(&format!("/v1/samples/{}", segment(&args.dataset)))?;
            println!("{}", pretty(&report)?);
            println!(
                "download: {server}/v1/samples/{0}/sample.csv and {server}/v1/samples/{0}/sample.parquet",
                args.dataset
            );
            Ok(())
        }
    }
}

/// `dataset register` against a server: the file is streamed up
/// (`PUT /v1/datasets/{id}/upload`), then registered with the entry, the
/// policy and the reading options (`POST /v1/datasets/{id}/register`).
fn register(client: &Client, args: &crate::dataset::RegisterArgs) -> Result<(), CliError> {
    let entry = crate::commands::read_text(&args.entry, sandbox_policy::files::MAX_POLICY_BYTES)?;
    let id = crate::dataset::entry_id(&entry, &args.entry)?;
    let policy = args
        .policy
        .as_deref()
        .map(|p| crate::commands::read_text(p, sandbox_policy::files::MAX_POLICY_BYTES))
        .transpose()?;
    if !args.check.is_empty()
        || args.sheet.is_some()
        || args.max_invalid_codes.is_some()
        || args.max_unknown_districts.is_some()
        || args.max_out_of_bounds.is_some()
        || args.max_null_fraction.is_some()
    {
        return Err(fail(
            "--check, --sheet and the --max-invalid-codes/--max-unknown-districts/--max-out-of-bounds/\
             --max-null-fraction thresholds are not sent to a server yet: register locally",
        ));
    }
    let path = format!("/v1/datasets/{}", segment(&id));
    let uploaded = client.put_file(&format!("{path}/upload"), &args.file)?;
    println!(
        "uploaded {} bytes (sha256 {})",
        uploaded["bytes"],
        uploaded["sha256"].as_str().unwrap_or_default()
    );
    let delimiter = if args.delimiter == "tab" {
        "\t".to_string()
    } else {
        args.delimiter.clone()
    };
    let request = serde_json::json!({
        "entry": entry,
        "policy": policy,
        "format": args.format,
        "encoding": args.encoding,
        "delimiter": delimiter,
        "header": !args.no_header,
        "key": args.key,
        "max_rejected_rows": args.max_rejected_rows,
        "max_duplicate_keys": args.max_duplicate_keys,
    });
    let manifest = client.post(&format!("{path}/register"), &request)?;
    println!("{}", pretty(&manifest)?);
    Ok(())
}

fn local_only(verb: &str) -> CliError {
    fail(format!(
        "`sandbox {verb}` works on a local data directory, not against a server: \
         run it without --server (and without SANDBOX_SERVER in the environment)"
    ))
}

fn governance(client: &Client, command: GovernanceCommand) -> Result<(), CliError> {
    match command {
        GovernanceCommand::Account(AccountCommand::Whoami) => {
            let me = client.get("/v1/me")?;
            match me["provider"].as_str() {
                Some(p) => println!("{} ({} of {p})", text(&me["account"]), text(&me["role"])),
                None => println!("{} ({})", text(&me["account"]), text(&me["role"])),
            }
        }
        GovernanceCommand::Account(AccountCommand::Create { id, role, provider }) => {
            // The CLI says `owner`, the API `data_owner`.
            let role = if role == "owner" {
                "data_owner".to_string()
            } else {
                role
            };
            let created = client.post("/v1/accounts", &json!({"id": id, "role": role, "provider": provider}))?;
            println!(
                "account `{id}` created; its API token (shown once, stored only as a hash):\n{}",
                text(&created["token"])
            );
        }
        GovernanceCommand::Apply(args) => apply(client, args)?,
        GovernanceCommand::Decide(args) => decide(client, args)?,
        GovernanceCommand::Agreement { id, json } => {
            let a = client.get(&format!("/v1/agreements/{}", segment(&id)))?;
            if json {
                println!("{}", pretty(&a)?);
            } else {
                print!("{}", view::agreement(&a));
            }
        }
        GovernanceCommand::Revoke { agreement, reason } => {
            let r = client.post(
                &format!("/v1/agreements/{}/revoke", segment(&agreement)),
                &json!({"reason": reason}),
            )?;
            println!(
                "agreement `{agreement}` revoked; {} running job(s) cancelled",
                text(&r["cancelled_jobs"])
            );
        }
        GovernanceCommand::Suspend { dataset, reason } => {
            let r = client.post(
                &format!("/v1/datasets/{}/suspend", segment(&dataset)),
                &json!({"reason": reason}),
            )?;
            println!(
                "{dataset} suspended; {} running job(s) cancelled",
                text(&r["cancelled_jobs"])
            );
        }
        GovernanceCommand::Resume { dataset, note } => {
            client.post(
                &format!("/v1/datasets/{}/resume", segment(&dataset)),
                &json!({"reason": note}),
            )?;
            println!("{dataset} resumed");
        }
    }
    Ok(())
}

/// Submits an application; one that exists (409) is revised instead, as
/// the local verb does (the server accepts a revision of a rejected one).
fn apply(client: &Client, args: ApplyArgs) -> Result<(), CliError> {
    let body = json!({
        "datasets": args.dataset, "columns": args.column, "job_kinds": args.kind,
        "scenario": args.scenario, "materials": args.material,
    });
    let submitted = {
        let mut new = body.clone();
        new["id"] = json!(args.id);
        match client.post("/v1/applications", &new) {
            Err(ApiFailure { status: Some(409), .. }) => {
                client.put(&format!("/v1/applications/{}", segment(&args.id)), &body)?
            }
            other => other?,
        }
    };
    println!(
        "application `{}` submitted (revision {})",
        args.id,
        text(&submitted["revision"])
    );
    Ok(())
}

fn decide(client: &Client, args: DecideArgs) -> Result<(), CliError> {
    let decision = match (args.reject, args.approve) {
        (Some(reason), false) => json!({"decision": "reject", "reason": reason}),
        (None, true) => json!({
            "decision": "approve",
            "epsilon": args.epsilon.ok_or_else(|| fail("--approve needs --epsilon"))?,
            "expires_at": args.expires.ok_or_else(|| fail("--approve needs --expires (RFC 3339, UTC)"))?,
            "call_quota": args.quota.ok_or_else(|| fail("--approve needs --quota"))?,
        }),
        _ => {
            return Err(fail(
                "give --approve (with --epsilon, --expires, --quota) or --reject REASON",
            ));
        }
    };
    let decided = client.post(
        &format!("/v1/applications/{}/decision", segment(&args.application)),
        &decision,
    )?;
    match decided["agreement"].as_str() {
        Some(a) => println!("decision recorded; agreement `{a}` is in force"),
        None => println!("decision recorded"),
    }
    Ok(())
}

fn sql(client: &Client, args: SqlArgs) -> Result<(), CliError> {
    let query = match (&args.query, &args.file) {
        (Some(q), None) => q.clone(),
        (None, Some(f)) => read_text(f, MAX_SQL_FILE_BYTES)?,
        _ => return Err(fail("give a query, or --file with one")),
    };
    let module = args.wasm.as_deref().map(base64_file).transpose()?;
    let request = json!({
        "kind": "sql", "agreement": args.grant, "sql": query,
        "epsilon": args.epsilon, "dry_run": args.dry_run, "wasm_module": module,
        "target_ci": args.target_ci, "target_rows": args.target_rows, "trial": args.trial,
    });
    let result = run_job(client, &request, args.json)?;
    print_result(client, &args.grant, &result, args.json)
}

fn wasm_run(client: &Client, args: WasmRunArgs) -> Result<(), CliError> {
    let request = json!({
        "kind": "analysis", "agreement": args.grant, "input_sql": args.input,
        "wasm_module": base64_file(&args.module)?,
        "blocks": args.blocks, "epsilon": args.epsilon,
        "trial": args.trial, "dry_run": args.dry_run,
    });
    let result = run_job(client, &request, args.json)?;
    print_result(client, &args.grant, &result, args.json)
}

/// Submits a job, follows it to its end and returns its result. A job
/// refused (at submission or while running) is an error naming its rule;
/// with `json`, the error is also printed as JSON on stdout, as the local
/// verbs do.
fn run_job(client: &Client, request: &Value, json: bool) -> Result<Value, CliError> {
    let ended = follow(client, request);
    match ended {
        Err(failure) if json => {
            let refused = failure.code == "refused";
            println!(
                "{}",
                json!({"error": failure.message, "rule": failure.rule, "refused": refused})
            );
            Err(failure.into())
        }
        other => Ok(other?),
    }
}

fn follow(client: &Client, request: &Value) -> Result<Value, ApiFailure> {
    let mut job = client.post("/v1/jobs", request)?;
    let id = text(&job["id"]);
    let spinner = if std::io::stderr().is_terminal() {
        let s = indicatif::ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(120));
        s
    } else {
        indicatif::ProgressBar::hidden()
    };
    while matches!(job["state"].as_str(), Some("queued" | "running")) {
        spinner.set_message(match job["progress"].as_str() {
            Some(stage) => format!("job {id}: {} — {stage}", text(&job["state"])),
            None => format!("job {id}: {}", text(&job["state"])),
        });
        std::thread::sleep(POLL_EVERY);
        job = match client.get(&format!("/v1/jobs/{}", segment(&id))) {
            Ok(j) => j,
            Err(e) => {
                spinner.finish_and_clear();
                return Err(e);
            }
        };
    }
    spinner.finish_and_clear();
    match job["state"].as_str() {
        Some("succeeded") => client.get(&format!("/v1/jobs/{}/result", segment(&id))),
        state => Err(job_failure(&id, state, &job["error"])),
    }
}

/// A job that ended without a result, as an API failure: refused and
/// cancelled jobs (the server names the rule) exit 2, failed ones 1.
fn job_failure(id: &str, state: Option<&str>, error: &Value) -> ApiFailure {
    let state = state.unwrap_or("ended");
    ApiFailure {
        status: None,
        code: if matches!(state, "refused" | "cancelled") {
            "refused"
        } else {
            "failed"
        }
        .into(),
        rule: error["rule"].as_str().map(str::to_string),
        message: format!(
            "job {id} {state}: {}",
            error["message"].as_str().unwrap_or("no reason given")
        ),
    }
}

/// The report of a run that spent nothing, as the runtime's type.
fn spent_nothing_report<T: serde::de::DeserializeOwned>(result: &Value) -> Result<T, CliError> {
    serde_json::from_value(result["report"].clone())
        .map_err(|e| fail(format!("the server sent a report this CLI cannot read: {e}")))
}

/// A job's result: its released table and the grant's budget after it
/// (as the local verbs print them), a dry run's report, or the JSON.
fn print_result(client: &Client, grant: &str, result: &Value, json: bool) -> Result<(), CliError> {
    if json {
        println!("{}", pretty(result)?);
        return Ok(());
    }
    match result["kind"].as_str() {
        Some("dry_run") => print!("{}", view::dry_run(&result["report"])),
        Some("sql_trial") => println!("{}", crate::render::sql_trial(&spent_nothing_report(result)?)),
        Some("trial") => println!("{}", crate::render::trial(&spent_nothing_report(result)?)),
        Some("analysis_dry_run") => println!("{}", crate::render::analysis_dry_run(&spent_nothing_report(result)?)),
        _ => {
            let table: ReleasedTable = serde_json::from_value(result["table"].clone())
                .map_err(|e| fail(format!("the server sent a table this CLI cannot read: {e}")))?;
            print!("{}", crate::render::table(&table));
            // The budget is a second look; the table is what was asked for.
            if let Ok(budget) = client.get(&format!("/v1/agreements/{}/budget", segment(grant))) {
                print!("{}", view::budget(grant, &budget));
            }
        }
    }
    Ok(())
}

fn report(client: &Client, args: ReportArgs) -> Result<(), CliError> {
    let mut query = vec![format!("format={}", if args.json { "json" } else { "markdown" })];
    if let Some(from) = &args.from {
        query.push(format!("from={}", segment(from)));
    }
    if let Some(to) = &args.to {
        query.push(format!("to={}", segment(to)));
    }
    let report = client.get(&format!(
        "/v1/agreements/{}/report?{}",
        segment(&args.grant),
        query.join("&")
    ))?;
    let body = match report {
        Value::String(markdown) => markdown,
        other => format!("{}\n", pretty(&other)?),
    };
    match &args.out {
        Some(path) => {
            write(path, &body)?;
            eprintln!("usage report of `{}` written to {}", args.grant, path.display());
        }
        None => print!("{body}"),
    }
    Ok(())
}

/// Exit 0 when the server's ledger verifies, 2 naming the first bad entry.
fn audit_verify(client: &Client, json: bool) -> Result<(), CliError> {
    let v = client.get("/v1/audit/verify")?;
    let (line, value) = if v["intact"] == true {
        (
            format!(
                "ledger intact: {} entries, head {}",
                text(&v["entries"]),
                text(&v["head"])
            ),
            json!({"intact": true, "entries": v["entries"], "head": v["head"]}),
        )
    } else {
        let seq = text(&v["first_bad_seq"]);
        let reason = text(&v["problem"]);
        (
            format!("ledger BROKEN at entry {seq}: {reason}"),
            json!({"intact": false, "first_bad_entry": v["first_bad_seq"], "reason": reason}),
        )
    };
    println!("{}", if json { value.to_string() } else { line.clone() });
    if v["intact"] == true {
        Ok(())
    } else {
        Err(CliError { code: 2, message: line })
    }
}

/// Every entry, oldest first, one JSON object a line.
fn audit_export(client: &Client, out: Option<PathBuf>) -> Result<(), CliError> {
    let entries = client.get("/v1/audit")?;
    let entries = entries
        .as_array()
        .ok_or_else(|| fail("the server's ledger export is not a list of entries"))?;
    let mut lines = String::new();
    for e in entries {
        lines.push_str(&e.to_string());
        lines.push('\n');
    }
    match out {
        Some(path) => {
            write(&path, &lines)?;
            eprintln!("{} entries written to {}", entries.len(), path.display());
        }
        None => print!("{lines}"),
    }
    Ok(())
}

/// Installs a policy file for the dataset it names (`dataset = "…"`).
fn policy_set(client: &Client, file: &Path) -> Result<(), CliError> {
    let toml = read_text(file, sandbox_policy::files::MAX_POLICY_BYTES)?;
    let dataset = policy_dataset(&toml).map_err(|e| fail(format!("{}: {e}", file.display())))?;
    let installed = client.put(&format!("/v1/policies/{}", segment(&dataset)), &json!({"toml": toml}))?;
    println!(
        "policy installed; digest {} recorded in the ledger",
        text(&installed["digest"])
    );
    Ok(())
}

/// The dataset a policy file is about: its top-level `dataset = "…"`.
fn policy_dataset(text: &str) -> Result<String, String> {
    let table: toml::Table = text.parse().map_err(|e| format!("not TOML: {e}"))?;
    table
        .get("dataset")
        .and_then(toml::Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| "names no dataset (a top-level `dataset = \"…\"`)".into())
}

fn base64_file(path: &Path) -> Result<String, CliError> {
    let bytes = sandbox_policy::files::read_bytes(path, MAX_MODULE_FILE_BYTES).map_err(|e| fail(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|e| fail(format!("cannot write {}: {e}", path.display())))
}

fn pretty(v: &Value) -> Result<String, CliError> {
    serde_json::to_string_pretty(v).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_names_its_dataset() {
        let policy = "# owner notes\ndataset = \"gov.tax_payments\"\nversion = \"1\"\n[columns]\nyear = { roles = [\"group\"] }\n";
        assert_eq!(policy_dataset(policy).as_deref(), Ok("gov.tax_payments"));
        assert!(policy_dataset("[release]\nmode = \"dp\"\n").is_err());
        assert!(policy_dataset("dataset = ").is_err());
    }

    #[test]
    fn ended_jobs_keep_their_rule_and_exit_code() {
        let e = CliError::from(job_failure(
            "job-1",
            Some("refused"),
            &json!({"rule": "agreement-column", "message": "gov.tax_payments.vat is not covered"}),
        ));
        assert_eq!(e.code, 2);
        assert_eq!(
            e.message,
            "job job-1 refused: gov.tax_payments.vat is not covered [rule: agreement-column]"
        );
        let e = CliError::from(job_failure(
            "job-2",
            Some("cancelled"),
            &json!({"rule": "job-cancelled", "message": "cancelled"}),
        ));
        assert_eq!(e.code, 2);
        let e = CliError::from(job_failure("job-3", Some("failed"), &json!({"message": "disk full"})));
        assert_eq!((e.code, e.message.as_str()), (1, "job job-3 failed: disk full"));
    }
}
