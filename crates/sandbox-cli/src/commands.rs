//! The verbs. Each returns a [`CliError`] carrying its exit code.

use crate::{
    AuditCommand, Cli, Command, DataCommand, PolicyCommand, ReportArgs, SqlArgs, WasmCommand, WasmRunArgs, render,
};
use sandbox_datagen::{GenerateOptions, Scale};
use sandbox_governance::{AuditReport, Broken, Checkpoint, Continuity, GovernanceError, Integrity, Store, UsageReport};
use sandbox_model::OpenClass;
use sandbox_policy::files::MAX_POLICY_BYTES;
use sandbox_runtime::sandbox::{BudgetLine, DEMO_GRANT};
use sandbox_runtime::{DataDir, RuntimeError, Sandbox, SqlJobOptions, SqlJobResult};
use std::path::Path;

/// Enterprises in the demo's data: enough that DP noise leaves useful answers.
const DEMO_ENTITIES: usize = 20_000;

#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl From<RuntimeError> for CliError {
    fn from(e: RuntimeError) -> Self {
        let mut message = e.to_string();
        // Every refusal names its rule, whichever layer refused.
        if let Some(rule) = e.rule()
            && !message.contains("[rule:")
        {
            message.push_str(&format!(" [rule: {rule}]"));
        }
        CliError {
            code: if e.is_refusal() { 2 } else { 1 },
            message,
        }
    }
}

/// A job's error as the CLI reports it (exit code 2 for a refusal, 1
/// otherwise); with `--json`, also printed on stdout as
/// `{"error", "rule", "refused"}` for machines.
fn job_error(e: RuntimeError, json: bool) -> CliError {
    if json {
        println!(
            "{}",
            serde_json::json!({"error": e.to_string(), "rule": e.rule(), "refused": e.is_refusal()})
        );
    }
    e.into()
}

pub fn fail(message: impl Into<String>) -> CliError {
    CliError {
        code: 1,
        message: message.into(),
    }
}

/// `--database-url`, set once per process before any verb runs.
static DATABASE_URL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// `--ballista`, set once per process before any verb runs.
static BALLISTA: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// `--tables`, set once per process before any verb runs.
static TABLES: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// `--init`, set once per process before any verb runs.
static INIT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// The head file that anchors the ledger outside the database.
pub fn head_file(dir: &DataDir) -> std::path::PathBuf {
    dir.root().join("ledger.head")
}

/// The governance store: PostgreSQL with `--database-url`, else the data
/// directory's SQLite database; tied to the data directory's head file, so
/// a store that was emptied, truncated or replaced (or a SQLite file that
/// was deleted) is refused unless `--init` says to start anew.
pub fn open_store(dir: &DataDir) -> Result<Store, CliError> {
    let continuity = if INIT.get().copied().unwrap_or(false) {
        Continuity::Initialise
    } else {
        Continuity::Require
    };
    open_store_with(dir, continuity)
}

fn open_store_with(dir: &DataDir, continuity: Continuity) -> Result<Store, CliError> {
    let head = head_file(dir);
    let url = DATABASE_URL.get().and_then(Option::as_deref);
    if url.is_none() && !dir.database().exists() && continuity != Continuity::Initialise {
        // Checked before SQLite creates an empty file in its place.
        if let Some(c) = Checkpoint::read(&head).map_err(|e| fail(e.to_string()))? {
            return Err(CliError {
                code: 2,
                message: format!(
                    "the database {} is missing, but {} records a ledger of {} entries (at {}): \
                     restore the database from a backup, or start a new store deliberately with --init",
                    dir.database().display(),
                    head.display(),
                    c.seq,
                    c.at
                ),
            });
        }
    }
    let store = match url {
        Some(url) => Store::open_postgres(url, None),
        None => Store::open(&dir.database()),
    };
    store.and_then(|s| s.anchored(&head, continuity)).map_err(|e| CliError {
        code: if matches!(e, GovernanceError::Discontinuous(_)) {
            2
        } else {
            1
        },
        message: e.to_string(),
    })
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let root = DataDir::resolve(cli.data_dir.clone());
    let _ = DATABASE_URL.set(cli.database_url.clone());
    let _ = INIT.set(cli.init);
    let _ = BALLISTA.set(cli.ballista.clone());
    let _ = TABLES.set(cli.tables.clone());
    let token = cli.token.clone();
    if let Some(server) = &cli.server {
        return crate::remote::run(server, token.as_deref(), cli.command);
    }
    match cli.command {
        Command::Governance(command) => crate::governance::run(&root, command, token.as_deref()),
        Command::Data {
            command: DataCommand::Generate { seed, scale, entities },
        } => {
            let dir = DataDir::open(&root)?;
            generate(&dir, seed, &scale, entities)
        }
        Command::Policy {
            command: PolicyCommand::Check { dir, catalog },
        } => {
            let data = DataDir::open(&root)?;
            let policies = dir.unwrap_or_else(|| data.policies_dir());
            let catalog = catalog.unwrap_or_else(|| data.catalog_dir());
            policy_check(&policies, &catalog)
        }
        Command::Policy {
            command: PolicyCommand::Set { file },
        } => {
            let text = read_text(&file, MAX_POLICY_BYTES)?;
            let name = file
                .file_name()
                .map_or_else(|| "policy.toml".into(), |n| n.to_string_lossy().into_owned());
            let sandbox = open(&root, false)?;
            let account = crate::governance::account_of(sandbox.store(), token.as_deref())?;
            let digest = sandbox.set_policy(&account, &name, &text)?;
            println!("policy installed; digest {digest} recorded in the ledger");
            Ok(())
        }
        Command::Dataset { command } => crate::dataset::run(&root, command, token.as_deref()).await,
        Command::Sample(args) => crate::sample::run(&root, args, token.as_deref()),
        Command::Serve(args) => crate::serve::serve(&root, args).await,
        Command::Cluster(command) => crate::cluster::run(command).await,
        Command::Catalog => {
            let sandbox = open(&root, false)?;
            print!("{}", catalog_text(&sandbox));
            Ok(())
        }
        Command::Sql(args) => sql(&root, args, token.as_deref()).await,
        Command::Budget { grant, json } => {
            let sandbox = open(&root, false)?;
            let budget = sandbox.budget(&grant)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&budget).map_err(|e| fail(e.to_string()))?
                );
            } else {
                print!("{}", budget_text(&grant, &budget));
            }
            Ok(())
        }
        Command::Audit { command } => audit(&root, command),
        Command::Report(args) => report(&root, args),
        Command::Demo { wasm_dir } => demo(&root, wasm_dir).await,
        Command::Wasm {
            command: WasmCommand::Run(args),
        } => wasm_run(&root, args, token.as_deref()).await,
        Command::Wasm {
            command: WasmCommand::New(args),
        } => crate::wasm_new(args),
    }
}

/// Opens only the database: an audit must not depend on (or change) the
/// catalog, policies or data. It opens a store whatever its state and
/// reports what it finds: the hash chain, the head file (or an exported
/// checkpoint), and the database file's own integrity check.
fn audit(root: &Path, command: AuditCommand) -> Result<(), CliError> {
    let dir = DataDir::open(root)?;
    if let AuditCommand::Verify { json, .. } = &command
        && DATABASE_URL.get().and_then(Option::as_deref).is_none()
        && !dir.database().exists()
    {
        let text = format!(
            "ledger BROKEN: the database {} does not exist{}",
            dir.database().display(),
            match Checkpoint::read(&head_file(&dir)).map_err(|e| fail(e.to_string()))? {
                Some(c) => format!(" but {} records {} entries", head_file(&dir).display(), c.seq),
                None => String::new(),
            }
        );
        if *json {
            println!(
                "{}",
                serde_json::json!({"intact": false, "first_bad_entry": 1, "reason": text})
            );
        } else {
            println!("{text}");
        }
        return Err(CliError { code: 2, message: text });
    }
    let store = match open_store_with(&dir, Continuity::Report) {
        Ok(store) => store,
        // A file damaged badly enough fails to open at all: that is the
        // integrity check's finding, reported like any other.
        Err(e) if matches!(command, AuditCommand::Verify { .. }) && e.code == 1 => {
            let text = format!("database DAMAGED: it cannot be opened: {}", e.message);
            if matches!(command, AuditCommand::Verify { json: true, .. }) {
                println!(
                    "{}",
                    serde_json::json!({"intact": false, "database_damaged": true, "reason": text})
                );
            } else {
                println!("{text}");
            }
            return Err(CliError { code: 2, message: text });
        }
        Err(e) => return Err(e),
    };
    match command {
        AuditCommand::Verify { json, checkpoint } => {
            // A damaged file may fail the check itself, or the reading of
            // the ledger: both are findings, reported, never a bare error.
            let integrity = store
                .integrity()
                .unwrap_or_else(|e| Integrity::Damaged(vec![e.to_string()]));
            let report = match &checkpoint {
                Some(path) => {
                    let c = Checkpoint::read(path)
                        .map_err(|e| fail(e.to_string()))?
                        .ok_or_else(|| fail(format!("{}: no such checkpoint file", path.display())))?;
                    store.verify_audit_against(&c)
                }
                None => store.verify_audit(),
            }
            .unwrap_or_else(|e| {
                AuditReport::Broken(Broken {
                    seq: 1,
                    reason: format!("the ledger cannot be read: {e}"),
                })
            });
            let mut text = match &report {
                AuditReport::Intact { entries, head } => {
                    format!("ledger intact: {entries} entries, head {head}")
                }
                AuditReport::Broken(b) => format!("ledger BROKEN at entry {}: {}", b.seq, b.reason),
            };
            let integrity_text = match &integrity {
                Integrity::Ok => "database integrity: ok".to_string(),
                Integrity::Damaged(lines) => format!("database DAMAGED: {}", lines.join("; ")),
                Integrity::NotAvailable => format!(
                    "database integrity: no check on {} (use its data checksums and amcheck)",
                    store.backend_name()
                ),
            };
            let anchored = match (&checkpoint, store.head_file()) {
                (Some(path), _) => format!("checked against the checkpoint {}", path.display()),
                (None, Some(head)) if head.exists() => format!("checked against the head file {}", head.display()),
                _ => "no head file yet to check against".to_string(),
            };
            text = format!("{text}\n{integrity_text}\n{anchored}");
            let damaged = matches!(integrity, Integrity::Damaged(_));
            if json {
                let mut value = match &report {
                    AuditReport::Intact { entries, head } => {
                        serde_json::json!({"intact": true, "entries": entries, "head": head})
                    }
                    AuditReport::Broken(b) => {
                        serde_json::json!({"intact": false, "first_bad_entry": b.seq, "reason": b.reason})
                    }
                };
                value["integrity"] = serde_json::json!(integrity_text);
                value["database_damaged"] = serde_json::json!(damaged);
                println!("{value}");
            } else {
                println!("{text}");
            }
            match report {
                AuditReport::Intact { .. } if !damaged => Ok(()),
                _ => Err(CliError { code: 2, message: text }),
            }
        }
        AuditCommand::Checkpoint { out } => {
            let checkpoint = store
                .checkpoint()
                .map_err(|e| fail(e.to_string()))?
                .ok_or_else(|| fail("the ledger is empty: nothing to checkpoint yet"))?;
            match out {
                Some(path) => {
                    checkpoint.write(&path).map_err(|e| fail(e.to_string()))?;
                    eprintln!("checkpoint of entry {} written to {}", checkpoint.seq, path.display());
                }
                None => println!(
                    "{}",
                    serde_json::to_string(&checkpoint).map_err(|e| fail(e.to_string()))?
                ),
            }
            Ok(())
        }
        AuditCommand::Export { out } => {
            let entries = store.audit_entries().map_err(|e| fail(e.to_string()))?;
            let mut text = String::new();
            for e in &entries {
                text.push_str(&serde_json::to_string(e).map_err(|e| fail(e.to_string()))?);
                text.push('\n');
            }
            match out {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|e| fail(format!("{}: {e}", path.display())))?;
                    eprintln!("{} entries written to {}", entries.len(), path.display());
                }
                None => print!("{text}"),
            }
            Ok(())
        }
    }
}

/// Like the audit, opens only the database. A report is only built from a
/// ledger that verifies (exit 2 otherwise, as `audit verify`).
fn report(root: &Path, args: ReportArgs) -> Result<(), CliError> {
    let dir = DataDir::open(root)?;
    let store = open_store(&dir)?;
    if let AuditReport::Broken(b) = store.verify_audit().map_err(|e| fail(e.to_string()))? {
        return Err(CliError {
            code: 2,
            message: format!(
                "ledger BROKEN at entry {}: {}; no report from a ledger that does not verify",
                b.seq, b.reason
            ),
        });
    }
    let entries = store.audit_entries().map_err(|e| fail(e.to_string()))?;
    let report = UsageReport::from_entries(&entries, &args.grant, args.from.as_deref(), args.to.as_deref())
        .map_err(|e| fail(e.to_string()))?;
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&report).map_err(|e| fail(e.to_string()))?;
        json.push('\n');
        json
    } else {
        report.to_markdown()
    };
    match args.out {
        Some(path) => {
            std::fs::write(&path, text).map_err(|e| fail(format!("{}: {e}", path.display())))?;
            eprintln!("usage report of `{}` written to {}", args.grant, path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// Written when data is generated, so that tables that vanish later are
/// not silently generated again.
fn demo_marker(dir: &DataDir) -> std::path::PathBuf {
    dir.root().join("data.generated")
}

fn generate(dir: &DataDir, seed: u64, scale: &str, entities: Option<usize>) -> Result<(), CliError> {
    let mut s = match scale {
        "small" => Scale::small(),
        "bench" => Scale::bench_10m(),
        other => return Err(fail(format!("unknown scale `{other}`: use `small` or `bench`"))),
    };
    if let Some(n) = entities {
        if n == 0 {
            return Err(fail("--entities must be at least 1"));
        }
        s = Scale::with_entities(n);
    }
    let opts = GenerateOptions {
        seed,
        scale: s,
        out_dir: dir.tables_dir(),
        rows_per_file: 1_000_000,
        only: None,
    };
    let start = std::time::Instant::now();
    let report = sandbox_datagen::generate(&opts).map_err(|e| fail(e.to_string()))?;
    let marker = demo_marker(dir);
    let note = format!("seed {seed}, scale {scale}, entities {entities:?}\n");
    std::fs::write(&marker, note).map_err(|e| fail(format!("{}: {e}", marker.display())))?;
    for t in &report.tables {
        println!(
            "{:<24} {:>12} rows  {:>3} file(s)  {:>8.1} MB",
            t.dataset,
            t.rows,
            t.files.len(),
            t.bytes as f64 / 1e6
        );
    }
    println!(
        "seed {seed}, digest {}, {:.1} s, in {}",
        report.digest,
        start.elapsed().as_secs_f64(),
        dir.tables_dir().display()
    );
    Ok(())
}

fn policy_check(policies: &Path, catalog: &Path) -> Result<(), CliError> {
    let cat = sandbox_policy::load_catalog_dir(catalog).map_err(|e| fail(e.to_string()))?;
    match sandbox_policy::PolicySet::load_dir(policies, &cat) {
        Ok(set) => {
            for p in set.iter() {
                println!("ok  {}  (version {}, sha256 {})", p.dataset, p.version, &p.digest[..16]);
            }
            Ok(())
        }
        Err(e) => Err(CliError {
            code: 2,
            message: e.to_string(),
        }),
    }
}

pub fn open(root: &Path, generate_if_missing: bool) -> Result<Sandbox, CliError> {
    let dir = DataDir::open(root)?;
    // A registration killed between switching versions and installing the
    // new entry and policy is completed here, before anything loads them.
    sandbox_ingest::reconcile(&sandbox_ingest::DataLayout::new(dir.root())).map_err(|e| fail(e.to_string()))?;
    let mut sandbox = Sandbox::open_with_store(dir.clone(), open_store(&dir)?)?;
    if let Some(scheduler) = BALLISTA.get().and_then(Option::as_deref) {
        let runner = sandbox_distributed::BallistaRunner::new(scheduler).map_err(|e| CliError {
            code: 2,
            message: e.to_string(),
        })?;
        runner
            .check_reachable(std::time::Duration::from_secs(5))
            .map_err(|e| fail(e.to_string()))?;
        tracing::info!(scheduler = runner.scheduler_url(), "distributed mode");
        sandbox = sandbox.with_runner(std::sync::Arc::new(runner));
    }
    if let Some(tables) = TABLES.get().and_then(Option::as_deref) {
        let tables = sandbox_runtime::PublishedTables::open(tables).map_err(|e| CliError {
            code: 2,
            message: e.to_string(),
        })?;
        if let Ok(local) = tables.root().to_file_path() {
            let (data, published) = (dir.root().canonicalize(), local.canonicalize());
            if let (Ok(data), Ok(published)) = (data, published)
                && (published.starts_with(&data) || data.starts_with(&published))
            {
                return Err(CliError {
                    code: 2,
                    message: format!(
                        "--tables {}: the published tables must be outside the data directory {} (and not contain it)",
                        tables.root(),
                        data.display()
                    ),
                });
            }
        }
        tables
            .check_reachable(std::time::Duration::from_secs(10))
            .map_err(|e| fail(e.to_string()))?;
        tracing::info!(tables = %tables.root(), "jobs read the published tables");
        sandbox = sandbox.with_published_tables(tables);
    }
    let missing = sandbox
        .catalog()
        .iter()
        // Only the generated datasets: a registered one without data is withdrawn.
        .filter(|d| sandbox_datagen::DATASETS.contains(&d.id.as_str()))
        .any(|d| d.open_class != OpenClass::Closed && !dir.has_table(&d.id));
    if missing && generate_if_missing {
        let marker = demo_marker(&dir);
        if marker.exists() && !INIT.get().copied().unwrap_or(false) {
            return Err(CliError {
                code: 2,
                message: format!(
                    "demo data was generated in {} before (see {}) but tables are missing now: \
                     restore them, regenerate them with `sandbox data generate`, or start anew with --init",
                    dir.tables_dir().display(),
                    marker.display()
                ),
            });
        }
        println!(
            "No data yet in {}: generating the demo dataset (seed 42, {DEMO_ENTITIES} enterprises)…",
            dir.root().display()
        );
        generate(&dir, 42, "small", Some(DEMO_ENTITIES))?;
    }
    Ok(sandbox)
}

/// With `--tables`: publishes every dataset with data whose current
/// version is not published yet (the generated demo data on first use), so
/// `serve` and `demo` show the whole product on an object store too.
pub async fn publish_missing(sandbox: &Sandbox) -> Result<(), CliError> {
    let published = sandbox.publish_all(false).await.map_err(|e| {
        fail(format!(
            "publishing the tables where jobs read them failed: {e} (check --tables and the AWS_* settings)"
        ))
    })?;
    if let (false, Some(tables)) = (published.is_empty(), sandbox.published_tables()) {
        let names: Vec<String> = published.iter().map(ToString::to_string).collect();
        println!("Published to {}: {}", tables.root(), names.join(", "));
    }
    Ok(())
}

fn catalog_text(sandbox: &Sandbox) -> String {
    let mut out = String::new();
    for d in sandbox.catalog().iter() {
        out.push_str(&format!("\n■ {} — {}\n", d.id, d.title));
        out.push_str(&format!(
            "  provider: {} ({:?}); class: {}\n",
            d.provider.name,
            d.provider.kind,
            d.open_class.label()
        ));
        if let Some(c) = &d.open_conditions {
            out.push_str(&format!("  open conditions: {c}\n"));
        }
        out.push_str(&format!("  {}\n", d.summary));
        let layout = sandbox_ingest::DataLayout::new(sandbox.data_dir().root());
        if let Ok(Some(m)) = sandbox_ingest::current_manifest(&layout, &d.id) {
            out.push_str(&format!(
                "  data: version {} registered by {} at {}, {} rows (`sandbox dataset show {}` for its quality report)\n",
                m.version, m.owner, m.registered_at, m.rows, d.id
            ));
        }
        if let Some(p) = sandbox.policies().get(&d.id) {
            for f in &d.fields {
                let roles = p.column(&f.name).map(|c| c.roles.to_string()).unwrap_or_default();
                out.push_str(&format!(
                    "    {:<20} {:<8} [{}] {}\n",
                    f.name,
                    format!("{:?}", f.data_type).to_lowercase(),
                    roles,
                    f.description
                ));
            }
            out.push_str("  policy:\n");
            for line in p.describe(d) {
                out.push_str(&format!("    - {line}\n"));
            }
        }
    }
    out
}

fn budget_text(grant: &str, budget: &[BudgetLine]) -> String {
    let mut out = format!("privacy budget of grant `{grant}`:\n");
    for b in budget {
        let x = b.exact();
        out.push_str(&format!(
            "  {:<24} ε spent {} of {}  (left {}), δ spent {} of {}  (left {})\n",
            b.dataset,
            x.epsilon_spent,
            x.epsilon_total,
            x.epsilon_total.saturating_sub(x.epsilon_spent),
            x.delta_spent,
            x.delta_total,
            x.delta_total.saturating_sub(x.delta_spent),
        ));
    }
    out
}

async fn sql(root: &Path, args: SqlArgs, token: Option<&str>) -> Result<(), CliError> {
    let query = match (&args.query, &args.file) {
        (Some(q), None) => q.clone(),
        (None, Some(f)) => read_text(f, MAX_SQL_FILE_BYTES)?,
        _ => return Err(fail("give a query, or --file with one")),
    };
    let sandbox = open(root, false)?;
    crate::governance::authorize_job(&sandbox, &args.grant, token)?;
    let options = SqlJobOptions {
        epsilon: args.epsilon,
        dry_run: args.dry_run,
        target_ci: args.target_ci,
        target_rows: args.target_rows,
    };
    let functions = match &args.wasm {
        Some(path) => sandbox.load_wasm(&read_module(path)?)?.row_functions(),
        None => Vec::new(),
    };
    if args.trial {
        return match sandbox.trial_sql(&args.grant, &query, functions).await {
            Ok(report) if args.json => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| fail(e.to_string()))?
                );
                Ok(())
            }
            Ok(report) => {
                println!("{}", render::sql_trial(&report));
                Ok(())
            }
            Err(e) => Err(job_error(e, args.json)),
        };
    }
    let result = match sandbox
        .run_sql_with_functions(&args.grant, &query, &options, functions)
        .await
    {
        Ok(r) => r,
        Err(e) => return Err(job_error(e, args.json)),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).map_err(|e| fail(e.to_string()))?
        );
        return Ok(());
    }
    match &result {
        SqlJobResult::Released { table, budget, .. } => {
            print!("{}", render::table(table));
            print!("{}", budget_text(&args.grant, budget));
        }
        SqlJobResult::DryRun(r) => print!("{}", render::dry_run(r)),
    }
    Ok(())
}

fn read_module(path: &Path) -> Result<Vec<u8>, CliError> {
    sandbox_policy::files::read_bytes(path, MAX_MODULE_FILE_BYTES).map_err(|e| fail(e.to_string()))
}

/// The largest SQL file read (the job's own limits are smaller or equal).
pub const MAX_SQL_FILE_BYTES: u64 = 1024 * 1024;
/// The largest WebAssembly file read (the engine refuses modules over its
/// own, smaller limit, naming it).
pub const MAX_MODULE_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// A text file the CLI takes in, within `max` bytes: a regular file only.
pub fn read_text(path: &Path, max: u64) -> Result<String, CliError> {
    sandbox_policy::files::read_text(path, max).map_err(|e| fail(e.to_string()))
}

async fn wasm_run(root: &Path, args: WasmRunArgs, token: Option<&str>) -> Result<(), CliError> {
    let sandbox = open(root, false)?;
    crate::governance::authorize_job(&sandbox, &args.grant, token)?;
    let job = sandbox.load_wasm(&read_module(&args.module)?)?;
    let program = job.analysis().ok_or_else(|| CliError {
        code: 2,
        message: format!(
            "{} declares no analysis (export! {{ analysis … }})",
            args.module.display()
        ),
    })?;
    let options = sandbox_runtime::AnalysisOptions {
        blocks: args.blocks,
        epsilon: args.epsilon,
    };
    if args.dry_run || args.trial {
        let printed = if args.dry_run {
            sandbox
                .dry_run_analysis(&args.grant, program.as_ref(), &args.input, &options)
                .await
                .and_then(|r| {
                    Ok(if args.json {
                        serde_json::to_string_pretty(&r)
                            .map_err(|e| sandbox_runtime::RuntimeError::Setup(e.to_string()))?
                    } else {
                        render::analysis_dry_run(&r)
                    })
                })
        } else {
            sandbox
                .trial_analysis(&args.grant, program, &args.input, &options)
                .await
                .and_then(|r| {
                    Ok(if args.json {
                        serde_json::to_string_pretty(&r)
                            .map_err(|e| sandbox_runtime::RuntimeError::Setup(e.to_string()))?
                    } else {
                        render::trial(&r)
                    })
                })
        };
        return match printed {
            Ok(text) => {
                println!("{text}");
                Ok(())
            }
            Err(e) => Err(job_error(e, args.json)),
        };
    }
    match sandbox.run_analysis(&args.grant, program, &args.input, &options).await {
        Ok(r) if args.json => {
            println!("{}", serde_json::to_string_pretty(&r).map_err(|e| fail(e.to_string()))?);
            Ok(())
        }
        Ok(r) => {
            print!("{}", render::table(&r.table));
            print!("{}", budget_text(&args.grant, &r.budget));
            Ok(())
        }
        Err(e) => Err(job_error(e, args.json)),
    }
}

/// Where the demo looks for the example guests by default.
fn default_guest_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/sandbox-target")))
        .unwrap_or_else(|| std::path::PathBuf::from("target"));
    target.join("wasm-guests")
}

/// The script that builds the example guests, in the checkout this binary
/// was built from (absent when the binary was installed elsewhere).
fn guest_build_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-guests.sh")
}

/// Builds the example guests into `dir` with scripts/build-guests.sh (rustup's
/// wasm32 target if it can be had, else Debian's toolchain), showing its
/// progress. Returns whether they are there afterwards; when not, says why
/// and how to get them, and the demo goes on without them.
fn build_example_guests(dir: &Path) -> bool {
    let script = guest_build_script();
    println!("\n(the WebAssembly example guests are not built yet)");
    if !script.exists() {
        println!(
            "(the example guests are not in {} and scripts/build-guests.sh is not next to this binary: run the \
             demo from a checkout with `cargo run -- demo`, or pass --wasm-dir)",
            dir.display()
        );
        return false;
    }
    println!(
        "building the example guests (examples/wasm → {}) with scripts/build-guests.sh; the first build takes a \
         few minutes, later runs reuse it",
        dir.display()
    );
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() && dir.join("risk_score.wasm").exists() && dir.join("default_model.wasm").exists() => true,
        Ok(s) => {
            println!(
                "(no WebAssembly toolchain could be obtained ({s}): `rustup target add wasm32-unknown-unknown`, or as \
                 root `apt-get install rustc-web cargo-web rust-web-src lld`, then run the demo again; the rest of \
                 the demo goes on without the WebAssembly jobs)"
            );
            false
        }
        Err(e) => {
            println!("(cannot run bash to build the WebAssembly examples: {e}; the demo goes on without them)");
            false
        }
    }
}

/// The demo's WebAssembly jobs: a UDF inside SQL and an analysis.
async fn demo_wasm(sandbox: &Sandbox, dir: &Path) -> Result<(), CliError> {
    let (udf, analysis) = (dir.join("risk_score.wasm"), dir.join("default_model.wasm"));
    if (!udf.exists() || !analysis.exists()) && !build_example_guests(dir) {
        return Ok(());
    }
    println!("\n═══ WebAssembly jobs ═══");
    let job = sandbox.load_wasm(&read_module(&udf)?)?;
    println!(
        "\n▶ bank: its own credit-risk score (risk_score.wasm, sha256 {}…) inside SQL",
        &job.digest()[..16]
    );
    let sql = "SELECT l.district, AVG(risk_score(u.electricity_kwh, u.gas_m3)) AS mean_risk
         FROM gov.utility_usage u
         JOIN gov.legal_entities l ON u.credit_code = l.credit_code
         WHERE u.month = '2024-12'
         GROUP BY l.district";
    println!("  {}", sql.split_whitespace().collect::<Vec<_>>().join(" "));
    match sandbox
        .run_sql_with_functions(DEMO_GRANT, sql, &SqlJobOptions::default(), job.row_functions())
        .await
    {
        Ok(SqlJobResult::Released { table, .. }) => print!("{}", render::table(&table)),
        Ok(SqlJobResult::DryRun(r)) => print!("{}", render::dry_run(&r)),
        Err(e) if e.rule() == Some("budget-exhausted") => println!("  (the demo grant's budget is spent: {e})"),
        Err(e) => return Err(e.into()),
    }
    let job = sandbox.load_wasm(&read_module(&analysis)?)?;
    let Some(program) = job.analysis() else {
        return Err(fail("default_model.wasm declares no analysis"));
    };
    let input = "SELECT u.electricity_kwh, u.gas_m3, CAST(b.defaulted AS DOUBLE) AS defaulted
         FROM bank.loans b
         JOIN gov.utility_usage u ON b.credit_code = u.credit_code
         WHERE u.month = '2024-12'";
    println!(
        "\n▶ bank: a logistic default model (default_model.wasm, sha256 {}…) by sample and aggregate over 64 blocks\n  input: {}",
        &job.digest()[..16],
        input.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    let options = sandbox_runtime::AnalysisOptions {
        blocks: 64,
        epsilon: None,
    };
    match sandbox.run_analysis(DEMO_GRANT, program, input, &options).await {
        Ok(r) => print!("{}", render::table(&r.table)),
        Err(e) if e.rule() == Some("budget-exhausted") => println!("  (the demo grant's budget is spent: {e})"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Example jobs of the demo: (who, what, SQL).
pub const DEMO_JOBS: &[(&str, &str, &str)] = &[
    (
        "bank (inclusive finance)",
        "default rate and mean electricity use by district, fusing the bank's loans with government utility data",
        "SELECT l.district, COUNT(DISTINCT b.credit_code) AS firms, AVG(b.defaulted) AS default_rate
         FROM bank.loans b JOIN gov.legal_entities l ON b.credit_code = l.credit_code
         GROUP BY l.district ORDER BY l.district",
    ),
    (
        "bank (inclusive finance)",
        "monthly electricity of borrowers by industry section",
        "SELECT e.industry, AVG(u.electricity_kwh) AS mean_kwh, COUNT(*) AS rows
         FROM gov.utility_usage u JOIN gov.legal_entities e ON u.credit_code = e.credit_code
         WHERE u.month >= '2024-01'
         GROUP BY e.industry",
    ),
    (
        "bank (inclusive finance)",
        "the same with the analyst's bounds (CLAMP within the owner's [0, 500000] kWh: far less noise), \
         kWh per insured employee computed from the released values (no extra ε), largest first",
        "SELECT e.industry, AVG(CLAMP(u.electricity_kwh, 0, 50000)) AS mean_kwh,
                SUM(CLAMP(u.electricity_kwh, 0, 50000)) / SUM(CLAMP(e.insured_employees, 0, 500)) AS kwh_per_employee
         FROM gov.utility_usage u JOIN gov.legal_entities e ON u.credit_code = e.credit_code
         WHERE u.month >= '2024-01'
         GROUP BY e.industry HAVING COUNT(*) > 100 ORDER BY mean_kwh DESC",
    ),
    (
        "researcher (public health)",
        "clinic cost by age band (ages are released in 5-year bands; groups chosen by DP partition selection)",
        "SELECT CASE WHEN age < 20 THEN '0-19' WHEN age < 40 THEN '20-39' WHEN age < 65 THEN '40-64' ELSE '65+' END AS age_band,
                COUNT(*) AS visits, AVG(cost) AS mean_cost
         FROM health.clinic_visits GROUP BY 1",
    ),
];

/// The demo's job on the dataset it registers from the shipped CSV.
pub const DEMO_ONBOARDED_JOB: (&str, &str, &str) = (
    "market regulator (registered data)",
    "inspections by outcome, on the dataset registered above from a GB18030 CSV (keys pseudonymized)",
    "SELECT outcome, COUNT(*) AS inspections, SUM(fine) AS fines
     FROM gov.market_inspections GROUP BY outcome ORDER BY outcome",
);

/// A query the demo shows being refused.
pub const DEMO_REFUSED: &str =
    "SELECT credit_code, tax_paid FROM gov.tax_payments WHERE credit_code = '91310115MA1H7GQX3X'";

async fn demo(root: &Path, wasm_dir: Option<std::path::PathBuf>) -> Result<(), CliError> {
    let sandbox = open(root, true)?;
    println!(
        "Data sandbox demo — data directory {}",
        sandbox.data_dir().root().display()
    );
    drop(sandbox);
    crate::dataset::demo_onboarding(root)?;
    crate::sample::demo_sample(root, crate::dataset::DEMO_OWNER)?;
    // Opened again: the registered dataset is in the catalog and the demo grant.
    let sandbox = open(root, false)?;
    // With --tables: every table (the one registered above too) published.
    publish_missing(&sandbox).await?;
    println!("\n═══ Catalog (开放清单) and output policies ═══");
    print!("{}", catalog_text(&sandbox));
    println!("\n═══ SQL jobs ═══");
    for (who, what, sql) in DEMO_JOBS.iter().chain(std::iter::once(&DEMO_ONBOARDED_JOB)) {
        println!(
            "\n▶ {who}: {what}\n  {}",
            sql.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        match sandbox.run_sql(DEMO_GRANT, sql, &SqlJobOptions::default()).await {
            Ok(SqlJobResult::Released { table, .. }) => print!("{}", render::table(&table)),
            Ok(SqlJobResult::DryRun(r)) => print!("{}", render::dry_run(&r)),
            Err(e) if e.rule() == Some("budget-exhausted") => {
                println!("  (the demo grant's budget is spent: {e})");
            }
            Err(e) => return Err(e.into()),
        }
    }
    println!("\n▶ a query that tries to read one enterprise's tax record:\n  {DEMO_REFUSED}");
    match sandbox
        .run_sql(DEMO_GRANT, DEMO_REFUSED, &SqlJobOptions::default())
        .await
    {
        Err(e) if e.is_refusal() => println!("  {e}"),
        Err(e) => return Err(e.into()),
        Ok(_) => return Err(fail("the demo's refused query was not refused")),
    }
    if sandbox.execution_mode() == "embedded" {
        demo_wasm(&sandbox, &wasm_dir.unwrap_or_else(default_guest_dir)).await?;
    } else {
        println!(
            "\n■ WebAssembly jobs: skipped — this sandbox sends jobs to a {} cluster, where modules are refused \
             (rule distributed-wasm; see docs/distributed.md)",
            sandbox.execution_mode()
        );
    }
    crate::governance::demo_governance(&sandbox).await?;
    println!();
    print!("{}", budget_text(DEMO_GRANT, &sandbox.budget(DEMO_GRANT)?));
    println!(
        "\nNext: `sandbox sql \"SELECT ...\"`, `sandbox sql --dry-run \"...\"`, `sandbox catalog`, `sandbox budget`, \
         `sandbox report --grant <agreement>`, `sandbox audit verify`."
    );
    Ok(())
}
