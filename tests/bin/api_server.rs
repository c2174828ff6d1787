//! The HTTP server as a separate process, for the restart test
//! (`integration/server_restart.rs`), which kills it with SIGKILL while
//! jobs are queued and running and starts it again on the same data.
//!
//! `api_server <data-dir> <addr-file> <operator-token>` opens the sandbox
//! on the data directory (its SQLite store), creates the operator account
//! with the given token if the store has none, serves on a free loopback
//! port, and writes the address to `<addr-file>` once listening.

use sandbox_governance::Role;
use sandbox_runtime::{DataDir, Sandbox};
use sandbox_server::ServerConfig;
use std::error::Error;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, data, addr_file, token] = args.as_slice() else {
        return Err("usage: api_server <data-dir> <addr-file> <operator-token>".into());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let sandbox = Sandbox::open(DataDir::open(data)?)?;
        if sandbox.store().account_count()? == 0 {
            sandbox.store().create_account("ops", &Role::Operator, token, "ops")?;
        }
        let (router, _state) =
            sandbox_server::app(Arc::new(sandbox), ServerConfig::default()).map_err(|e| e.message)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let staging = format!("{addr_file}.tmp");
        std::fs::write(&staging, listener.local_addr()?.to_string())?;
        std::fs::rename(&staging, addr_file)?;
        sandbox_server::serve(listener, router, std::future::pending()).await?;
        Ok(())
    })
}
