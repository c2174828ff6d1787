//! # sandbox-flight
//!
//! The Arrow Flight SQL endpoint: standard SQL clients (ADBC, JDBC, the
//! `arrow-flight` client) run SQL jobs under an account's token and receive
//! only what the sandbox releases — the same checker, budget and ledger as
//! every other path, through a [`FlightJobs`] runner.
//!
//! ```text
//! every RPC ─ Authenticator (authorization: Bearer <token> → account, role)
//! GetFlightInfo(statement | prepared statement)
//!     ─ applicant only ─ agreement (x-sandbox-agreement, else the only active one, held by the caller)
//!     ─ FlightJobs::run_sql (check, charge, compute, release, record) ─ refusal → PERMISSION_DENIED naming the rule
//!     ─ released table → record batch, held under a random single-use ticket (TTL, caps)
//! DoGet(ticket) ─ the same account only ─ the batch
//! ```
//!
//! It owns the Flight SQL protocol surface (what is supported, what is
//! refused as unimplemented), the mapping of released tables to Arrow, and
//! the results held between `GetFlightInfo` and `DoGet`. It owns no rule of
//! its own about data: every job goes through `sandbox-runtime`.

mod auth;
mod convert;
mod error;
mod held;
mod jobs;
mod metadata;
mod service;

pub use auth::{AGREEMENT_HEADER, Authenticator, Caller};
pub use convert::{
    DELTA_METADATA_KEY, EPSILON_METADATA_KEY, JOB_ID_METADATA_KEY, KIND_METADATA_KEY, RELEASE_METADATA_KEY,
    released_to_batch,
};
pub use error::FlightError;
pub use jobs::{DirectJobs, ErrorKind, FlightJobs, JobError, ReleasedJob};
pub use service::SandboxFlightSql;

use arrow_flight::flight_service_server::FlightServiceServer;
use sandbox_runtime::Sandbox;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// Limits of the endpoint.
#[derive(Debug, Clone)]
pub struct FlightConfig {
    /// How long a released result waits for its `DoGet`.
    pub result_ttl: Duration,
    /// Results held (unfetched) at once, in all and per account.
    pub max_held_results: usize,
    pub max_held_results_per_account: usize,
    /// How long an unused prepared statement is kept.
    pub prepared_ttl: Duration,
    /// Prepared statements held at once, in all and per account.
    pub max_prepared_statements: usize,
    pub max_prepared_per_account: usize,
    /// Jobs running at once through this endpoint; more are refused with
    /// `RESOURCE_EXHAUSTED` (clients retry).
    pub max_running_jobs: usize,
    /// Largest request message decoded (SQL text has its own, smaller cap
    /// in the runtime).
    pub max_request_bytes: usize,
}

impl Default for FlightConfig {
    fn default() -> Self {
        FlightConfig {
            result_ttl: Duration::from_secs(600),
            max_held_results: 256,
            max_held_results_per_account: 16,
            prepared_ttl: Duration::from_secs(3600),
            max_prepared_statements: 1024,
            max_prepared_per_account: 64,
            max_running_jobs: 4,
            max_request_bytes: 1 << 20,
        }
    }
}

/// The tonic service: authentication in front of every RPC, then Flight SQL.
pub type FlightSqlServer = InterceptedService<FlightServiceServer<SandboxFlightSql>, Authenticator>;

/// Builds the service, to mount in a tonic server (see [`serve`]).
pub fn service(sandbox: Arc<Sandbox>, jobs: Arc<dyn FlightJobs>, config: &FlightConfig) -> FlightSqlServer {
    let flight = SandboxFlightSql::new(Arc::clone(&sandbox), jobs, config);
    let server = FlightServiceServer::new(flight).max_decoding_message_size(config.max_request_bytes);
    InterceptedService::new(server, Authenticator::new(sandbox))
}

/// Serves Flight SQL on `addr` until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    sandbox: Arc<Sandbox>,
    jobs: Arc<dyn FlightJobs>,
    config: &FlightConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FlightError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| FlightError::Bind { addr, source })?;
    serve_listener(listener, sandbox, jobs, config, shutdown).await
}

/// Serves Flight SQL on an already bound listener (port 0 in tests) until
/// `shutdown` completes.
pub async fn serve_listener(
    listener: tokio::net::TcpListener,
    sandbox: Arc<Sandbox>,
    jobs: Arc<dyn FlightJobs>,
    config: &FlightConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FlightError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "Flight SQL listening");
    }
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .add_service(service(sandbox, jobs, config))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
