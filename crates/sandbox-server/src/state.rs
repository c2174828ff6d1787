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
    pub uploads: Arc<UploadSettings>,
}

/// Registration over HTTP: the upload limit and the pseudonymization secret.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    pub max_bytes: u64,
    pub pseudonym_key: Option<std::path::PathBuf>,
}
