//! `sandbox`: the command-line entry point of the data sandbox.
//!
//! Every verb works on one data directory (`--data-dir`, or
//! `$SANDBOX_DATA_DIR`, or `~/.local/share/data-sandbox`), created on first
//! use, so `sandbox demo` followed by any other verb needs no setup.
//! Errors are one line on stderr; a refused job exits with 2, any other
//! failure with 1.

mod cluster;
mod commands;
mod dataset;
mod governance;
mod remote;
mod render;
mod sample;
mod serve;
mod wasm_new;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "sandbox",
    version,
    about = "A privacy-preserving data sandbox for conditionally open government data"
)]
struct Cli {
    /// Data directory (datasets, catalog, policies, database).
    #[arg(long, global = true, env = "SANDBOX_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the governance database in PostgreSQL
    /// (`postgresql://user@host:port/db`) instead of the data directory's SQLite file.
    #[arg(long, global = true, env = "SANDBOX_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Talk to a sandbox server (`sandbox serve`) at this URL instead of a local data directory.
    #[arg(long, global = true, env = "SANDBOX_SERVER")]
    server: Option<String>,
    /// Start a new governance store (and demo data) even where the data
    /// directory's head file (`ledger.head`) or demo-data marker shows that
    /// one existed: without it, a store that was emptied, truncated or
    /// replaced, or deleted demo data, is refused. The old head file is
    /// kept aside as `ledger.head.replaced-<time>`.
    #[arg(long, global = true)]
    init: bool,
    /// Distributed mode: run jobs' checked, bounded plans on the Apache
    /// Ballista cluster whose scheduler is at host:port (see `sandbox
    /// cluster`). Checking, noise and the budget stay in this process; the
    /// cluster's executors must read the data directory's tables at the
    /// same paths. WebAssembly jobs are refused in this mode.
    #[arg(long, global = true, env = "SANDBOX_BALLISTA")]
    ballista: Option<String>,
    /// Jobs read the datasets' tables where they are published:
    /// `s3://bucket/prefix` (an S3-compatible store; credentials and
    /// endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ENDPOINT, AWS_ALLOW_HTTP) or `file:///shared/dir`. Registrations
    /// publish there; `sandbox dataset publish` publishes what is not yet.
    #[arg(long, global = true, env = "SANDBOX_TABLES")]
    tables: Option<String>,
    /// API token of the account acting (governance verbs, jobs under an agreement).
    #[arg(long, global = true, env = "SANDBOX_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Generate demo data if needed, show the catalog and policies, and run example jobs.
    Demo {
        /// Directory with the example guests (risk_score.wasm, default_model.wasm),
        /// as built by scripts/build-guests.sh.
        #[arg(long, env = "SANDBOX_WASM_GUESTS")]
        wasm_dir: Option<PathBuf>,
    },
    /// WebAssembly analysis jobs.
    Wasm {
        #[command(subcommand)]
        command: WasmCommand,
    },
    /// Synthetic data.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Register your data (data owners): files as versions of datasets, quality reports, withdrawal.
    Dataset {
        #[command(subcommand)]
        command: dataset::DatasetCommand,
    },
    /// DP sample datasets (样本数据): download a dataset's synthetic sample
    /// (CSV and Parquet) and its fidelity report, no application needed; its
    /// owner makes a new one with --generate.
    Sample(sample::SampleArgs),
    /// Output policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Show the catalog: datasets, open classes, columns with roles, policies in words.
    Catalog,
    /// Run one SQL job and print the released table.
    Sql(SqlArgs),
    /// The audit ledger: verify its hash chain, or export it.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// A usage report (数据利用报告) of one grant or agreement over a period,
    /// built from the audit ledger: terms, status, jobs by outcome, fields,
    /// functions, ε spent and left, and the ledger range it covers.
    Report(ReportArgs),
    #[command(flatten)]
    Governance(GovernanceCommand),
    /// Serve the HTTP API (and Arrow Flight SQL) over this data directory.
    Serve(ServeArgs),
    /// Run a process of a Ballista cluster for the distributed mode
    /// (`--ballista`): the scheduler or an executor, built with the
    /// sandbox's plan codec.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Show the privacy budget of a grant.
    Budget {
        #[arg(long, default_value = "demo")]
        grant: String,
        #[arg(long)]
        json: bool,
    },
}

/// Governance verbs; each acts as the account of `--token` / `$SANDBOX_TOKEN`.
#[derive(Subcommand, Debug)]
pub enum GovernanceCommand {
    /// Accounts (the operator creates them; the first one is the operator).
    #[command(subcommand)]
    Account(AccountCommand),
    /// Apply for conditionally open datasets (applicants), or revise a rejected application.
    Apply(ApplyArgs),
    /// Approve or reject an application for your provider's datasets (data owners).
    Decide(DecideArgs),
    /// Show an agreement: terms, status, calls used.
    Agreement {
        /// `agreement-<application>`.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an agreement (its datasets' owner, or the operator); running jobs are cancelled.
    Revoke {
        agreement: String,
        #[arg(long)]
        reason: String,
    },
    /// Suspend a dataset on a complaint (its owner, or the operator); running jobs are cancelled.
    Suspend {
        dataset: String,
        #[arg(long)]
        reason: String,
    },
    /// Lift a dataset's suspension.
    Resume {
        dataset: String,
        #[arg(long)]
        note: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Create an account and print its API token (once).
    Create {
        id: String,
        /// operator, applicant or owner.
        #[arg(long)]
        role: String,
        /// For an owner: the provider id in the catalog (e.g. shanghai-tax).
        /// For an applicant that will bring its own data: its enterprise
        /// provider, new to the catalog (lower-case letters, digits, `-`).
        #[arg(long)]
        provider: Option<String>,
    },
    /// Show the account of the token.
    Whoami,
}

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// The application's id (reuse it to resubmit after a rejection).
    id: String,
    /// A conditionally open dataset (repeat for several).
    #[arg(long, required = true)]
    dataset: Vec<String>,
    /// A column needed, `dataset.column` or `dataset.*` (repeat).
    #[arg(long)]
    column: Vec<String>,
    /// A job kind: sql or wasm (repeat).
    #[arg(long, default_value = "sql")]
    kind: Vec<String>,
    /// The usage scenario (使用场景).
    #[arg(long)]
    scenario: String,
    /// A material the open conditions ask for (repeat).
    #[arg(long)]
    material: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct DecideArgs {
    application: String,
    #[arg(long, conflicts_with = "reject")]
    approve: bool,
    /// Reject, with the reason the applicant will see.
    #[arg(long)]
    reject: Option<String>,
    /// ε for each of your datasets.
    #[arg(long)]
    epsilon: Option<f64>,
    /// Expiry, RFC 3339 UTC (2027-12-31T00:00:00Z).
    #[arg(long)]
    expires: Option<String>,
    /// Jobs allowed under the agreement.
    #[arg(long)]
    quota: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum AuditCommand {
    /// Check every entry against its predecessor and the recorded head; exit
    /// 0 when intact, 2 naming the first bad entry when not.
    Verify {
        #[arg(long)]
        json: bool,
        /// A checkpoint exported earlier (`audit checkpoint`) that the
        /// ledger must contain.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Write every entry, oldest first, as JSON lines (one entry a line,
    /// with its hash) to stdout or a file.
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write the ledger's head as a checkpoint (`{"seq", "hash", "at"}`) to
    /// keep outside the data directory; `audit verify --checkpoint FILE`
    /// later proves the store still contains it.
    Checkpoint {
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The grant (for an agreement, `agreement-<application>`).
    #[arg(long)]
    grant: String,
    /// Start of the period, included: RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01, UTC).
    #[arg(long)]
    from: Option<String>,
    /// End of the period, excluded: RFC 3339 or a date.
    #[arg(long)]
    to: Option<String>,
    /// Print JSON for machines instead of Markdown.
    #[arg(long)]
    json: bool,
    /// Write the report to a file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ClusterCommand {
    /// The scheduler: receives the coordinator's physical plans and hands
    /// their stages to executors. Runs until stopped.
    Scheduler {
        /// Address to listen on (loopback or a private network only:
        /// Ballista does not authenticate its clients).
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: String,
    },
    /// An executor: polls the scheduler for tasks and runs them on the
    /// data at the paths the plans name. Runs until stopped.
    Executor {
        /// The scheduler, host:port.
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: String,
        /// Host to bind and advertise to the scheduler and other executors.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Arrow Flight port (shuffle data). Not Ballista's 50051: that is
        /// `sandbox serve`'s Flight SQL port.
        #[arg(long, default_value_t = 50061)]
        flight_port: u16,
        /// The executor's gRPC port.
        #[arg(long, default_value_t = 50062)]
        grpc_port: u16,
        /// Directory for shuffle files (default: a temporary directory).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Concurrent tasks (default: the machine's cores).
        #[arg(long)]
        slots: Option<usize>,
        /// Memory for the executor's tasks, in MiB (default: Ballista's share of the host's memory).
        #[arg(long)]
        memory_mib: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Generate the synthetic fused datasets as Parquet.
    Generate {
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// `small` (tests, seconds) or `bench` (about 10M utility rows).
        #[arg(long, default_value = "small")]
        scale: String,
        /// Override the number of enterprises.
        #[arg(long)]
        entities: Option<usize>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum WasmCommand {
    /// Run a module's analysis on blocks of rows and release the noisy average
    /// of its outputs (sample and aggregate).
    Run(WasmRunArgs),
    /// Start a job: a directory with a UDF, an analysis, host-side tests
    /// and a README of the commands, using the SDK of this checkout.
    New(WasmNewArgs),
}

#[derive(clap::Args, Debug)]
pub struct WasmNewArgs {
    /// The job's directory (created; must not exist or be empty). Its name
    /// is the crate's.
    dir: PathBuf,
    /// The SDK (`sandbox-sdk/sdk` of a checkout of this repository);
    /// default: the one this binary was built from.
    #[arg(long)]
    sdk: Option<PathBuf>,
}

/// `sandbox wasm new`: the same locally and with `--server`.
pub(crate) fn wasm_new(args: WasmNewArgs) -> Result<(), commands::CliError> {
    let name = wasm_new::create(&args.dir, args.sdk.as_deref())?;
    println!(
        "created job `{name}` in {}: `cargo test` there, then see its README.md to build and try it",
        args.dir.display()
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct WasmRunArgs {
    /// The module (.wasm).
    module: PathBuf,
    /// The row-level query whose rows the analysis sees (no aggregation).
    #[arg(long)]
    input: String,
    /// Disjoint blocks of privacy units (k).
    #[arg(long, default_value_t = 32)]
    blocks: usize,
    /// ε to spend (default: the per-query cap of the policies).
    #[arg(long)]
    epsilon: Option<f64>,
    #[arg(long, default_value = "demo")]
    grant: String,
    /// Print JSON for machines.
    #[arg(long)]
    json: bool,
    /// Run on the datasets' public DP samples instead: every block's
    /// outputs, failures with the guest's own message, timing; spends no
    /// budget.
    #[arg(long, conflicts_with = "dry_run")]
    trial: bool,
    /// Show the noise each output will get for its declared range, k and ε
    /// (and the ε split); reads and spends nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum PolicyCommand {
    /// Validate every policy in a directory against the catalog.
    Check {
        /// Policy directory (default: the data directory's).
        dir: Option<PathBuf>,
        /// Catalog directory (default: the data directory's).
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
    /// Replace the output policy of one of your datasets (data owners): validated,
    /// installed in the data directory, and its digest recorded in the ledger.
    Set {
        /// The policy file (TOML).
        file: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Jobs running at once.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Jobs waiting at most (more submissions are answered 503).
    #[arg(long, default_value_t = 256)]
    max_queued: usize,
    /// Largest request body in bytes (WebAssembly modules travel in it, base64).
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Write the bound address to this file once listening (scripts, tests).
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// Largest file a data owner uploads to register (PUT /v1/datasets/{dataset}/upload).
    #[arg(long, default_value_t = 1 << 30)]
    max_upload_bytes: u64,
    /// The pseudonymization secret for registrations over HTTP (outside the
    /// data directory; created on first use). Default: ~/.config/data-sandbox/pseudonym.key.
    #[arg(long, env = "SANDBOX_PSEUDONYM_KEY")]
    pseudonym_key: Option<PathBuf>,
    /// Address of the Arrow Flight SQL endpoint (standard SQL clients: ADBC, JDBC).
    #[arg(long, default_value = "127.0.0.1:50051")]
    flight_listen: std::net::SocketAddr,
    /// Do not serve Arrow Flight SQL.
    #[arg(long)]
    no_flight: bool,
    /// Write the Flight SQL endpoint's bound address to this file once listening.
    #[arg(long)]
    flight_addr_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    /// The query.
    query: Option<String>,
    /// Read the query from a file.
    #[arg(long, conflicts_with = "query")]
    file: Option<PathBuf>,
    /// Print JSON for machines.
    #[arg(long)]
    json: bool,
    /// Print the cost and interval widths without reading data or budget.
    #[arg(long)]
    dry_run: bool,
    /// ε to spend (default: the per-query cap of the policies).
    #[arg(long, conflicts_with = "target_ci")]
    epsilon: Option<f64>,
    /// Spend the smallest ε that gives every aggregate an expected 95%
    /// interval of ± this much (in the aggregate's units); refused above
    /// the per-query cap. With --dry-run, shows that ε.
    #[arg(long)]
    target_ci: Option<f64>,
    /// Rows per group you expect, for the intervals of means (AVG) in a
    /// dry run or with --target-ci.
    #[arg(long)]
    target_rows: Option<u64>,
    /// The grant to run under.
    #[arg(long, default_value = "demo")]
    grant: String,
    /// A WebAssembly module whose functions the query may call.
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Run the query as written on the datasets' public DP samples instead:
    /// its exact result there, and every failed call of the module's
    /// functions with the guest's own message; spends no budget.
    #[arg(long, conflicts_with_all = ["dry_run", "epsilon", "target_ci"])]
    trial: bool,
}

/// Servers and cluster processes log requests and jobs; one-shot commands
/// only errors.
fn default_log_filter() -> &'static str {
    if std::env::args().skip(1).any(|a| a == "serve" || a == "cluster") {
        "info"
    } else {
        "error"
    }
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SANDBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log_filter()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // SANDBOX_LOG_FORMAT=json: one JSON object a line, for log collectors.
    if std::env::var("SANDBOX_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
