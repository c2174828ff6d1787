//! `sandbox serve`: the HTTP API over the data directory (generated demo
//! data and the embedded SQLite store by default, so it starts with
//! nothing else installed). When the store has no account yet, the
//! operator's account is created and its token printed once.

use crate::ServeArgs;
use crate::commands::{CliError, fail, open};
use sandbox_governance::Role;
use sandbox_server::{PoolLimits, ServerConfig};
use std::path::Path;
use std::sync::Arc;

pub async fn serve(root: &Path, args: ServeArgs) -> Result<(), CliError> {
    let sandbox = Arc::new(open(root, true)?);
    if sandbox.store().account_count()? == 0 {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| fail(format!("no randomness for a token: {e}")))?;
        let token = format!("sbx_{}", hex::encode(bytes));
        sandbox
            .store()
            .create_account("operator", &Role::Operator, &token, "operator")?;
        println!(
            "created the operator's account `operator`; its API token (shown once, stored only as a hash):\n{token}"
        );
    }
    let config = ServerConfig {
        max_body_bytes: args.max_body_bytes,
        pool: PoolLimits {
            workers: args.workers,
            max_queued: args.max_queued,
        },
    };
    let (router, _state) = sandbox_server::app(sandbox.clone(), config).map_err(|e| fail(e.message))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| fail(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| fail(format!("cannot read the bound address: {e}")))?;
    if let Some(file) = &args.addr_file {
        std::fs::write(file, addr.to_string()).map_err(|e| fail(format!("cannot write {}: {e}", file.display())))?;
    }
    println!(
        "serving the sandbox API on http://{addr} (store: {}); OpenAPI at http://{addr}/openapi.json",
        sandbox.store().backend_name()
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down; unfinished jobs resume at the next start");
    };
    sandbox_server::serve(listener, router, shutdown)
        .await
        .map_err(|e| fail(format!("the server stopped: {e}")))
}
