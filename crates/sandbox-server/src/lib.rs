//! # sandbox-server
//!
//! The sandbox as a network service: an HTTP API (axum) for everything the
//! CLI does, for the three roles (applicants, data owners, the operator),
//! with an OpenAPI document generated from the handlers, bearer-token
//! authentication and a role check on every route, a request-size limit,
//! structured JSON errors, an asynchronous job pool whose queue survives
//! restarts, and Prometheus metrics.
//!
//! Handlers are thin: the caller is resolved by the [`auth::Caller`]
//! extractor, bodies by [`extract::Body`], every rule is the runtime's or
//! the store's, and errors become responses in one place ([`ApiError`]).

pub mod auth;
mod console;
mod error;
pub mod extract;
pub mod job;
mod metrics;
mod openapi;
pub mod pool;
mod routes;
mod state;

pub use error::{ApiError, ApiResult, ErrorBody};
pub use metrics::Metrics;
pub use openapi::ApiDoc;
pub use pool::{JobPool, PoolLimits};
pub use state::AppState;

use axum::Router;
use sandbox_runtime::Sandbox;
use std::sync::Arc;

/// The server's settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest request body accepted (a WebAssembly module travels in
    /// base64 inside a job request).
    pub max_body_bytes: usize,
    pub pool: PoolLimits,
    /// The largest file an owner uploads to register (streamed to disk).
    pub max_upload_bytes: u64,
    /// The pseudonymization secret for registrations over HTTP (default:
    /// `sandbox_ingest::PseudonymKey::default_path`).
    pub pseudonym_key: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 16 * 1024 * 1024,
            pool: PoolLimits::default(),
            max_upload_bytes: 1 << 30,
            pseudonym_key: None,
        }
    }
}

/// Starts the job pool (taking up jobs a stop interrupted) and builds the
/// router. Needs a tokio runtime.
pub fn app(sandbox: Arc<Sandbox>, config: ServerConfig) -> ApiResult<(Router, AppState)> {
    let metrics = Arc::new(Metrics::default());
    let pool = JobPool::start(sandbox.clone(), metrics.clone(), config.pool)?;
    let uploads = Arc::new(state::UploadSettings {
        max_bytes: config.max_upload_bytes,
        pseudonym_key: config.pseudonym_key.clone(),
    });
    let state = AppState {
        sandbox,
        pool,
        metrics,
        uploads,
    };
    Ok((routes::router(state.clone(), config.max_body_bytes), state))
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
