//! `sandbox serve`: the HTTP API and the Arrow Flight SQL endpoint over the
//! data directory (generated demo data and the embedded SQLite store by
//! default, so it starts with nothing else installed). Both run their jobs
//! through the same job pool, so Flight SQL jobs are queued, bounded,
//! counted in the metrics and resumed after a restart like any other. When
//! the store has no account yet, the operator's account is created and its
//! token printed once.

use crate::ServeArgs;
use crate::commands::{CliError, fail, open};
use futures::FutureExt;
use futures::future::BoxFuture;
use sandbox_flight::{ErrorKind, FlightConfig, FlightJobs, JobError, ReleasedJob};
use sandbox_governance::{Integrity, Role};
use sandbox_model::ReleasedTable;
use sandbox_runtime::{RuntimeError, Sandbox};
use sandbox_server::job::JobRequest;
use sandbox_server::{ApiError, JobPool, PoolLimits, ServerConfig};
use std::path::Path;
use std::sync::Arc;

/// Flight SQL jobs run on the server's job pool.
struct PoolJobs {
    pool: JobPool,
    sandbox: Arc<Sandbox>,
}

/// A pool error with its kind, so Flight SQL answers the status the HTTP
/// API's code stands for (docs/api.md, "Errors").
fn job_error(e: ApiError) -> JobError {
    JobError::Rejected {
        kind: ErrorKind::from_code(e.code),
        rule: e.rule,
        message: e.message,
    }
}

impl FlightJobs for PoolJobs {
    fn run_sql(&self, account: &str, grant: &str, sql: &str) -> BoxFuture<'static, Result<ReleasedJob, JobError>> {
        let (pool, sandbox) = (self.pool.clone(), self.sandbox.clone());
        let account = account.to_string();
        let request = JobRequest::Sql {
            agreement: grant.to_string(),
            sql: sql.to_string(),
            epsilon: None,
            dry_run: false,
            wasm_module: None,
            target_ci: None,
            target_rows: None,
            trial: false,
        };
        async move {
            let job = pool.submit_and_wait(&account, &request).await.map_err(job_error)?;
            let text = sandbox
                .store()
                .job_result(&job.id)
                .map_err(RuntimeError::from)?
                .ok_or_else(|| RuntimeError::Setup("a succeeded job has no stored result".into()))?;
            let table: ReleasedTable =
                serde_json::from_str(&text).map_err(|e| RuntimeError::Setup(format!("a stored result: {e}")))?;
            Ok(ReleasedJob { job_id: job.id, table })
        }
        .boxed()
    }
}

pub async fn serve(root: &Path, args: ServeArgs) -> Result<(), CliError> {
    let sandbox = Arc::new(open(root, true)?);
    crate::commands::publish_missing(&sandbox).await?;
    // A damaged database file is refused before anything is served from it.
    if let Integrity::Damaged(lines) = sandbox.store().integrity()? {
        return Err(fail(format!(
            "the database is damaged ({}); restore it from a backup. `sandbox audit verify` reports the same",
            lines.join("; ")
        )));
    }
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
        max_upload_bytes: args.max_upload_bytes,
        pseudonym_key: args.pseudonym_key.clone(),
    };
    let (router, state) = sandbox_server::app(sandbox.clone(), config).map_err(|e| fail(e.message))?;
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
    let (stop_flight, flight_stopped) = tokio::sync::oneshot::channel::<()>();
    let flight = if args.no_flight {
        None
    } else {
        let flight_listener = tokio::net::TcpListener::bind(args.flight_listen)
            .await
            .map_err(|e| fail(format!("cannot listen on {}: {e}", args.flight_listen)))?;
        let flight_addr = flight_listener
            .local_addr()
            .map_err(|e| fail(format!("cannot read the bound address: {e}")))?;
        if let Some(file) = &args.flight_addr_file {
            std::fs::write(file, flight_addr.to_string())
                .map_err(|e| fail(format!("cannot write {}: {e}", file.display())))?;
        }
        println!("serving Arrow Flight SQL on grpc://{flight_addr} (docs/flight-sql.md)");
        let jobs = Arc::new(PoolJobs {
            pool: state.pool.clone(),
            sandbox: sandbox.clone(),
        });
        let sandbox = sandbox.clone();
        Some(tokio::spawn(async move {
            let stopped = async {
                let _ = flight_stopped.await;
            };
            sandbox_flight::serve_listener(flight_listener, sandbox, jobs, &FlightConfig::default(), stopped).await
        }))
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down; unfinished jobs resume at the next start");
    };
    let served = sandbox_server::serve(listener, router, shutdown).await;
    let _ = stop_flight.send(());
    if let Some(flight) = flight {
        match flight.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the Flight SQL endpoint failed"),
            Err(e) => tracing::error!(error = %e, "the Flight SQL endpoint stopped"),
        }
    }
    served.map_err(|e| fail(format!("the server stopped: {e}")))
}
