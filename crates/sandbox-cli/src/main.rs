//! `sandbox`: the command-line entry point of the data sandbox.
//!
//! Every verb works on one data directory (`--data-dir`, or
//! `$SANDBOX_DATA_DIR`, or `~/.local/share/data-sandbox`), created on first
//! use, so `sandbox demo` followed by any other verb needs no setup.
//! Errors are one line on stderr; a refused job exits with 2, any other
//! failure with 1.

mod commands;
mod render;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    /// Show the privacy budget of a grant.
    Budget {
        #[arg(long, default_value = "demo")]
        grant: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check every entry against its predecessor and the recorded head; exit
    /// 0 when intact, 2 naming the first bad entry when not.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Write every entry, oldest first, as JSON lines (one entry a line,
    /// with its hash) to stdout or a file.
    Export {
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
enum WasmCommand {
    /// Run a module's analysis on blocks of rows and release the noisy average
    /// of its outputs (sample and aggregate).
    Run(WasmRunArgs),
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
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Validate every policy in a directory against the catalog.
    Check {
        /// Policy directory (default: the data directory's).
        dir: Option<PathBuf>,
        /// Catalog directory (default: the data directory's).
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
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
    #[arg(long)]
    epsilon: Option<f64>,
    /// The grant to run under.
    #[arg(long, default_value = "demo")]
    grant: String,
    /// A WebAssembly module whose functions the query may call.
    #[arg(long)]
    wasm: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SANDBOX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
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
