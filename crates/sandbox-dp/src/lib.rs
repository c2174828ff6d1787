//! # sandbox-dp
//!
//! Differential privacy and disclosure control for released aggregates: the
//! only crate that names `opendp`. It owns
//!
//! * [`noise`]: the discrete Laplace mechanism on integers, sampled by
//!   OpenDP's cryptographically secure sampler (no hand-written noise);
//! * [`fixed_point`]: mapping bounded real measures onto an integer grid so
//!   sums cannot break their sensitivity through floating-point rounding;
//! * [`bounding`]: contribution bounding per privacy unit (at most G groups,
//!   at most R rows per group);
//! * [`partition`]: DP partition selection (a noisy unit-count threshold);
//! * [`aggregate`]: calibrated release of COUNT, COUNT(DISTINCT unit), SUM,
//!   AVG, VARIANCE and STDDEV with noise scales and 95% intervals;
//! * [`quantile`]: DP quantiles (MEDIAN, PERCENTILE_CONT, MIN, MAX) by
//!   OpenDP's quantile score and permute-and-flip over a public grid;
//! * [`sdc`]: statistical disclosure control (k-threshold, dominance,
//!   rounding);
//! * [`sample_aggregate`]: DP release of arbitrary programs' outputs
//!   (WebAssembly analysis jobs) by sample-and-aggregate;
//! * [`accounting`]: ε/δ costs and their explicit split across a query;
//! * [`synthetic`]: DP synthetic sample datasets (样本数据) from noisy one-
//!   and two-way marginals, with their fidelity report.
//!
//! Where it sits on the job path: after the SQL engine has computed
//! per-(unit, group) partial statistics, and before anything is released.
//! Inputs here are exact; outputs are safe to release.
//!
//! ```
//! use sandbox_dp::noise::DiscreteLaplace;
//!
//! // A count with sensitivity 1 released with ε = 0.5 has scale 2.
//! let mech = DiscreteLaplace::calibrated(1, 0.5).unwrap();
//! assert_eq!(mech.scale(), 2.0);
//! let noisy = 100 + mech.sample().unwrap();
//! assert!((noisy - 100).abs() < 1_000);
//! ```

pub mod accounting;
pub mod aggregate;
pub mod bounding;
pub mod fixed_point;
pub mod noise;
pub mod partition;
pub mod quantile;
pub mod sample_aggregate;
pub mod sdc;
pub mod synthetic;
pub mod testing;

mod error;
#[cfg(test)]
mod privacy_loss;

pub use error::DpError;
