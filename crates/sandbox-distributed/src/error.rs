use thiserror::Error;

/// Errors of the distributed mode's cluster processes and clients.
#[derive(Debug, Error)]
pub enum DistributedError {
    /// A scheduler URL or address that cannot be used.
    #[error("invalid cluster address `{0}`: expected host:port (for example 127.0.0.1:50050)")]
    Address(String),
    /// No scheduler answers at the address.
    #[error("cannot reach the Ballista scheduler at {scheduler}: {why} (start one with `sandbox cluster scheduler`)")]
    Unreachable { scheduler: String, why: String },
    /// Starting or running a scheduler or executor failed.
    #[error("cluster process failed: {0}")]
    Cluster(String),
}
