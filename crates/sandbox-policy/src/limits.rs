//! The ranges policy values must fall in, and why. The release path
//! (`sandbox-dp`) maps each measure onto an integer grid of `2^20` steps
//! from the centre to a bound for sums and means (`SUM_STEPS`) and `2^15`
//! for variances (`SQUARE_STEPS`, whose squares must fit too), with
//! quantum = reach / steps; sensitivities are G·R·M (sums) and G·R·M²
//! (sums of squares) grid units; the noise scale is sensitivity / ε share.
//!
//! * Bounds: |bound| ≤ [`MAX_ABS_BOUND`] = 1e15 < 2^53, so every integer
//!   within bounds is an exact `f64`, and the largest derived value (a
//!   sum of squares: reach² × rows ≤ 10^30 × 2^43) is far below `f64`'s
//!   1.8e308 — bounds of ±1e308 made SUM release `-inf`.
//! * Width: upper − lower ≥ [`MIN_RELATIVE_WIDTH`] × the larger |bound|
//!   (and ≥ [`MIN_WIDTH`]). The variance grid's quantum, width / 2^16, is
//!   then at least 1.5e-11 × |bound|, ~7·10^4 times the rounding error of
//!   an `f64` of that magnitude (2.2e-16 × |bound|), so the grid resolves
//!   the range, the centre is placed within a fraction of a step and bound
//!   values map exactly to ±steps; the absolute minimum keeps quantum²
//!   a normal `f64`.
//! * G and R ≤ [`MAX_GROUPS_PER_UNIT`], [`MAX_ROWS_PER_GROUP`] (10^4):
//!   G·R·M² ≤ 10^8 × 2^30 ≈ 1.1·10^17 < 2^63, so every sensitivity is an
//!   exact integer and, at ε ≥ 1e-6 per component, every noise scale is
//!   below ~10^23 grid steps and finite once multiplied by the quantum.
//!   Grid sums are i64: exact for 2^43 rows (sums, |value| ≤ 2^20) and 2^33
//!   rows (sums of squares, ≤ 2^30) per query, whatever the policy.
//! * ε per query in [[`MIN_EPSILON`], [`MAX_EPSILON_PER_QUERY`]], the
//!   minimum per query in [[`MIN_EPSILON`], ε per query], the budget in
//!   [ε per query, [`MAX_EPSILON_BUDGET`]]: finite, positive, far inside
//!   the store's fixed-point range (ε in units of 1e-9 as i64).
//! * δ = 0 or [`MIN_DELTA`] ≤ δ < [`MAX_DELTA`]; δ budget in [δ,
//!   [`MAX_DELTA_BUDGET`]) (δ is accounted in units of 1e-15).

/// Largest |lower| or |upper| of a measure's bounds.
pub const MAX_ABS_BOUND: f64 = 1e15;
/// upper − lower must be at least this fraction of the larger |bound|.
pub const MIN_RELATIVE_WIDTH: f64 = 1e-6;
/// upper − lower must be at least this.
pub const MIN_WIDTH: f64 = 1e-12;
/// Largest G (groups per privacy unit).
pub const MAX_GROUPS_PER_UNIT: i64 = 10_000;
/// Largest R (rows per unit and group).
pub const MAX_ROWS_PER_GROUP: i64 = 10_000;
/// Smallest ε a policy may allow per query (and smallest minimum).
pub const MIN_EPSILON: f64 = 1e-6;
/// Largest ε per query.
pub const MAX_EPSILON_PER_QUERY: f64 = 100.0;
/// Largest ε budget per agreement and dataset.
pub const MAX_EPSILON_BUDGET: f64 = 10_000.0;
/// Default smallest ε per query (`epsilon_min_per_query`). Below it a
/// release is mostly noise (scale ≥ 100 × the sensitivity), and a budget
/// cannot be split into so many tiny queries that accounting granularity
/// or a query count of budget / ε matters: with ε budget 10, at most 1000
/// queries.
pub const DEFAULT_EPSILON_MIN: f64 = 0.01;
/// Smallest non-zero δ (one unit of the store's δ accounting).
pub const MIN_DELTA: f64 = 1e-15;
/// δ per query is below this.
pub const MAX_DELTA: f64 = 1e-3;
/// The δ budget is below this.
pub const MAX_DELTA_BUDGET: f64 = 0.1;
/// Default δ budget: this many queries with partition selection at the
/// policy's δ (δ budget = 100 × δ, e.g. 1e-4 for δ = 1e-6; below 0.1
/// since δ < 1e-3).
pub const DEFAULT_DELTA_BUDGET_QUERIES: f64 = 100.0;

/// Default `[sample]` `max_rows`.
pub const DEFAULT_SAMPLE_ROWS: u64 = 100_000;
/// Largest `[sample]` `max_rows`.
pub const MAX_SAMPLE_ROWS: i64 = 10_000_000;
/// Default `[sample]` `bins` per measure.
pub const DEFAULT_SAMPLE_BINS: u32 = 10;
/// Largest `[sample]` `bins`.
pub const MAX_SAMPLE_BINS: i64 = 1000;
/// Most `[sample]` pairs.
pub const MAX_SAMPLE_PAIRS: usize = 32;
