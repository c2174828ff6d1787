//! A Flight SQL server over a small demo sandbox, for trying clients and
//! for `scripts/flight-client-test.sh`.
//!
//! Generates (or reuses) small synthetic tax and utility tables under
//! `--data-dir`, opens a fresh sandbox on them in a temporary directory
//! (its own catalog, policies and database; nothing else under
//! `--data-dir` is touched), creates an operator, two data owners and two
//! applicants, approves the applicant `bank`'s agreement, writes the port
//! and the tokens, and serves until SIGINT or SIGTERM.
//!
//! ```sh
//! cargo run -p sandbox-flight --example flight_demo_server -- \
//!     --data-dir /tmp/flight-demo --port-file /tmp/port --tokens-file /tmp/tokens.json
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use clap::Parser;
use sandbox_flight::{DirectJobs, FlightConfig};
use sandbox_runtime::Sandbox;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use support::BoxError;

#[derive(Debug, Parser)]
struct Args {
    /// Where the generated tables are kept between runs.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Written with the port once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Written (mode 0600) with the accounts' tokens and the agreement, as JSON.
    #[arg(long)]
    tokens_file: Option<PathBuf>,
}

/// Writes `text` to `path` whole (a reader never sees a partial file).
fn write_whole(path: &Path, text: &str, private: bool) -> Result<(), BoxError> {
    use std::os::unix::fs::OpenOptionsExt;
    let staging = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        options.mode(0o600);
    }
    std::io::Write::write_all(&mut options.open(&staging)?, text.as_bytes())?;
    std::fs::rename(&staging, path)?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        _ => std::future::pending().await,
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    // Generated once; a marker written last tells a complete set from an
    // interrupted one.
    let generated = args.data_dir.join("generated");
    let marker = args.data_dir.join("generated.done");
    if !marker.exists() {
        tracing::info!(dir = %generated.display(), "generating demo tables");
        if generated.exists() {
            std::fs::remove_dir_all(&generated)?;
        }
        support::generate(&generated)?;
        std::fs::write(&marker, "")?;
    }
    let tables = sandbox_runtime::DataDir::open(&generated)?.tables_dir();
    let tmp = tempfile::tempdir()?;
    let dir = support::linked(&tmp.path().join("sandbox"), &tables)?;
    let sandbox = Arc::new(Sandbox::open(dir)?);
    let tokens = support::populate(&sandbox)?;

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    if let Some(path) = &args.tokens_file {
        let json = serde_json::json!({
            "applicant": tokens.applicant,
            "other_applicant": tokens.other_applicant,
            "owner": tokens.owner,
            "operator": tokens.operator,
            "agreement": support::AGREEMENT,
        });
        write_whole(path, &json.to_string(), true)?;
    }
    if let Some(path) = &args.port_file {
        write_whole(path, &addr.port().to_string(), false)?;
    }
    tracing::info!(%addr, agreement = support::AGREEMENT, "demo Flight SQL server ready");
    let jobs = Arc::new(DirectJobs::new(Arc::clone(&sandbox)));
    sandbox_flight::serve_listener(listener, sandbox, jobs, &FlightConfig::default(), shutdown_signal()).await?;
    drop(tmp);
    Ok(())
}
