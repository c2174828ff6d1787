//! The CLI against a server (`--server URL`, `$SANDBOX_SERVER`): the same
//! verbs, as HTTP calls under the token of `--token` / `$SANDBOX_TOKEN`.
//! Jobs are submitted, followed with a progress indicator on a terminal,
//! and their released tables printed as tables.

mod client;

use crate::commands::{CliError, fail};
use crate::{AccountCommand, AuditCommand, Command, GovernanceCommand, PolicyCommand, SqlArgs, WasmCommand};
use base64::Engine;
use client::{Client, segment};
use sandbox_model::ReleasedTable;
use serde_json::{Value, json};
use std::time::Duration;

pub fn run(server: &str, token: Option<&str>, command: Command) -> Result<(), CliError> {
    let client = Client::new(server, token);
    match command {
        Command::Sql(args) => sql(&client, args),
        Command::Wasm {
            command: WasmCommand::Run(args),
        } => {
            let module = read(&args.module)?;
            let request = json!({
                "kind": "analysis", "agreement": args.grant, "input_sql": args.input,
                "wasm_module": base64::engine::general_purpose::STANDARD.encode(module),
                "blocks": args.blocks, "epsilon": args.epsilon,
            });
            let result = run_job(&client, &request)?;
            print_result(&result, args.json)
        }
        Command::Catalog => {
            let lines = client.get("/v1/catalog")?;
            for d in lines.as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<12} {:<20} {}{}",
                    text(&d["id"]),
                    text(&d["open_class"]),
                    text(&d["provider"]),
                    text(&d["title"]),
                    if d["suspended"] == true { "  [SUSPENDED]" } else { "" }
                );
            }
            Ok(())
        }
        Command::Budget { grant, json } => {
            let budget = client.get(&format!("/v1/agreements/{}/budget", segment(&grant)))?;
            if json {
                println!("{}", pretty(&budget)?);
            } else {
                println!("{:<24} {:>10} {:>10} {:>10}", "dataset", "ε total", "ε spent", "ε left");
                for b in budget.as_array().into_iter().flatten() {
                    println!(
                        "{:<24} {:>10.3} {:>10.3} {:>10.3}",
                        text(&b["dataset"]),
                        b["epsilon_total"].as_f64().unwrap_or(0.0),
                        b["epsilon_spent"].as_f64().unwrap_or(0.0),
                        b["epsilon_left"].as_f64().unwrap_or(0.0)
                    );
                }
            }
            Ok(())
        }
        Command::Report(args) => {
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
                other => pretty(&other)?,
            };
            match &args.out {
                Some(path) => {
                    std::fs::write(path, body).map_err(|e| fail(format!("cannot write {}: {e}", path.display())))
                }
                None => {
                    print!("{body}");
                    Ok(())
                }
            }
        }
        Command::Audit {
            command: AuditCommand::Verify { json },
        } => {
            let v = client.get("/v1/audit/verify")?;
            let intact = v["intact"] == true;
            let line = if intact {
                format!("ledger intact: {} entries, head {}", v["entries"], text(&v["head"]))
            } else {
                format!("ledger BROKEN at entry {}: {}", v["first_bad_seq"], text(&v["problem"]))
            };
            println!("{}", if json { v.to_string() } else { line.clone() });
            if intact {
                Ok(())
            } else {
                Err(CliError { code: 2, message: line })
            }
        }
        Command::Audit {
            command: AuditCommand::Export { out },
        } => {
            let entries = client.get("/v1/audit")?;
            let mut lines = String::new();
            for e in entries.as_array().into_iter().flatten() {
                lines.push_str(&e.to_string());
                lines.push('\n');
            }
            match out {
                Some(path) => {
                    std::fs::write(&path, lines).map_err(|e| fail(format!("cannot write {}: {e}", path.display())))
                }
                None => {
                    print!("{lines}");
                    Ok(())
                }
            }
        }
        Command::Policy {
            command: PolicyCommand::Set { file },
        } => {
            let toml =
                std::fs::read_to_string(&file).map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?;
            let dataset = policy_dataset(&toml)
                .ok_or_else(|| fail(format!("{} names no dataset (`dataset = \"…\"`)", file.display())))?;
            let installed = client.call(
                "PUT",
                &format!("/v1/policies/{}", segment(&dataset)),
                Some(&json!({"toml": toml})),
            )?;
            println!(
                "policy installed; digest {} recorded in the ledger",
                text(&installed["digest"])
            );
            Ok(())
        }
        Command::Governance(command) => governance(&client, command),
        Command::Demo { .. } | Command::Data { .. } | Command::Policy { .. } | Command::Serve(_) => Err(fail(
            "this verb works on a local data directory only; run it without --server",
        )),
    }
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
        GovernanceCommand::Apply(args) => {
            let body = json!({
                "datasets": args.dataset, "columns": args.column, "job_kinds": args.kind,
                "scenario": args.scenario, "materials": args.material,
            });
            let mut new = body.clone();
            new["id"] = json!(args.id);
            let submitted = match client.post("/v1/applications", &new) {
                Err(e) if e.message.contains("exists") => {
                    client.call("PUT", &format!("/v1/applications/{}", segment(&args.id)), Some(&body))?
                }
                other => other?,
            };
            println!(
                "application `{}` submitted (revision {})",
                args.id, submitted["revision"]
            );
        }
        GovernanceCommand::Decide(args) => {
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
        }
        GovernanceCommand::Agreement { id, json } => {
            let a = client.get(&format!("/v1/agreements/{}", segment(&id)))?;
            if json {
                println!("{}", pretty(&a)?);
            } else {
                let list = |v: &Value| {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .map(text)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                println!(
                    "{} — holder {}, {} ({}), expires {}, calls {}/{}\n  scenario: {}\n  datasets: {}\n  columns: {}\n  job kinds: {}",
                    text(&a["id"]),
                    text(&a["holder"]),
                    text(&a["status"]),
                    text(&a["status_reason"]),
                    text(&a["expires_at"]),
                    a["calls_used"],
                    a["call_quota"],
                    text(&a["terms"]["scenario"]),
                    list(&a["terms"]["datasets"]),
                    list(&a["terms"]["columns"]),
                    list(&a["terms"]["job_kinds"])
                );
            }
        }
        GovernanceCommand::Revoke { agreement, reason } => {
            let r = client.post(
                &format!("/v1/agreements/{}/revoke", segment(&agreement)),
                &json!({"reason": reason}),
            )?;
            println!(
                "agreement `{agreement}` revoked; {} running job(s) cancelled",
                r["cancelled_jobs"]
            );
        }
        GovernanceCommand::Suspend { dataset, reason } => {
            let r = client.post(
                &format!("/v1/datasets/{}/suspend", segment(&dataset)),
                &json!({"reason": reason}),
            )?;
            println!("{dataset} suspended; {} running job(s) cancelled", r["cancelled_jobs"]);
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

fn sql(client: &Client, args: SqlArgs) -> Result<(), CliError> {
    let query = match (&args.query, &args.file) {
        (Some(q), None) => q.clone(),
        (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| fail(format!("cannot read {}: {e}", f.display())))?,
        _ => return Err(fail("give a query, or --file with one")),
    };
    let module = args
        .wasm
        .as_ref()
        .map(|p| read(p).map(|m| base64::engine::general_purpose::STANDARD.encode(m)))
        .transpose()?;
    let request = json!({
        "kind": "sql", "agreement": args.grant, "sql": query,
        "epsilon": args.epsilon, "dry_run": args.dry_run, "wasm_module": module,
    });
    let result = run_job(client, &request)?;
    print_result(&result, args.json)
}

/// Submits a job, follows it (a spinner on a terminal) and returns its
/// result; a refused or failed job is an error naming the rule.
fn run_job(client: &Client, request: &Value) -> Result<Value, CliError> {
    let job = client.post("/v1/jobs", request)?;
    let id = text(&job["id"]);
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(120));
    let mut job = job;
    while matches!(job["state"].as_str(), Some("queued" | "running")) {
        spinner.set_message(format!(
            "{id}: {}{}",
            text(&job["state"]),
            job["progress"].as_str().map(|p| format!(" ({p})")).unwrap_or_default()
        ));
        std::thread::sleep(Duration::from_millis(100));
        job = client.get(&format!("/v1/jobs/{}", segment(&id)))?;
    }
    spinner.finish_and_clear();
    match job["state"].as_str() {
        Some("succeeded") => client.get(&format!("/v1/jobs/{}/result", segment(&id))),
        state => {
            let rule = job["error"]["rule"].as_str();
            let mut message = format!(
                "job {id} {}: {}",
                state.unwrap_or("ended"),
                job["error"]["message"].as_str().unwrap_or("no reason given")
            );
            if let Some(rule) = rule
                && !message.contains("[rule:")
            {
                message.push_str(&format!(" [rule: {rule}]"));
            }
            Err(CliError {
                code: if state == Some("refused") || state == Some("cancelled") {
                    2
                } else {
                    1
                },
                message,
            })
        }
    }
}

fn print_result(result: &Value, json: bool) -> Result<(), CliError> {
    if json {
        println!("{}", pretty(result)?);
        return Ok(());
    }
    match result["kind"].as_str() {
        Some("released") => {
            let table: ReleasedTable = serde_json::from_value(result["table"].clone())
                .map_err(|e| fail(format!("the server sent a table this CLI cannot read: {e}")))?;
            print!("{}", crate::render::table(&table));
        }
        _ => println!("{}", pretty(&result["report"])?),
    }
    Ok(())
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn pretty(v: &Value) -> Result<String, CliError> {
    serde_json::to_string_pretty(v).map_err(|e| fail(e.to_string()))
}

/// The dataset a policy file is about (its top-level `dataset = "…"`).
fn policy_dataset(toml: &str) -> Option<String> {
    toml.lines().find_map(|l| {
        let (key, value) = l.split_once('=')?;
        (key.trim() == "dataset").then(|| value.trim().trim_matches('"').to_string())
    })
}
