use thiserror::Error;

/// `host:port` (optionally written `df://host:port` or `http://host:port`)
/// as its host and port. Errors: no host, or no port in 1–65535.
pub(crate) fn host_and_port(address: &str) -> Result<(String, u16), DistributedError> {
    let bare = ["df://", "http://"]
        .iter()
        .find_map(|scheme| address.strip_prefix(scheme))
        .unwrap_or(address);
    bare.rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok().filter(|p| *p != 0)?)))
        .filter(|(host, _)| !host.is_empty())
        .map(|(host, port)| (host.to_string(), port))
        .ok_or_else(|| DistributedError::Address(address.to_string()))
}

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
