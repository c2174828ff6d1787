//! Distributed mode: the sandbox's checked, bounded jobs on an Apache
//! Ballista cluster.
//!
//! The coordinator (`sandbox serve` or the CLI) parses, checks and rewrites
//! every job and plans it physically exactly as in the embedded mode; the
//! finished physical plan, with the contribution bounding inside it, is
//! serialized with [`codec::SandboxCodec`] and sent to a Ballista scheduler
//! ([`runner::BallistaRunner`]). Executors run its stages and only the
//! plan's output (bounded per-group partials) comes back; noise, partition
//! selection, threshold rules and the budget stay in the coordinator.
//!
//! See docs/distributed.md for deployment, trust and capacity.

mod client;
pub mod cluster;
pub mod codec;
mod error;
pub mod runner;

pub use client::Shuffled;
pub use error::DistributedError;
use error::host_and_port;
pub use runner::BallistaRunner;

#[cfg(test)]
mod tests;
