//! What every handler shares.

use crate::metrics::Metrics;
use crate::pool::JobPool;
use sandbox_runtime::Sandbox;
use std::sync::Arc;

/// The server's shared state.
#[derive(Clone, Debug)]
pub struct AppState {
    pub sandbox: Arc<Sandbox>,
    pub pool: JobPool,
    pub metrics: Arc<Metrics>,
}
