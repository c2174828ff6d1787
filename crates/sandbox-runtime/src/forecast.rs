//! Cost and accuracy before spending: each aggregate's expected 95%
//! interval at a given ε, and the ε a target interval needs.
//!
//! Nothing here reads data: the forecast is a function of the query, the
//! policies and ε, exactly as the release will calibrate them (the same ε
//! split and mechanisms as `release`).
//!
//! * COUNT and SUM: the 95% half-width of their discrete Laplace noise
//!   (exact, in output units).
//! * AVG over a group of n rows: the release's interval is the box of the
//!   noisy sum's and count's 97.5% intervals `w_s`, `w_c`; its half-width is
//!   at most `(w_s + R · w_c) / (n − w_c)` for `n > w_c`, where `R` is half
//!   the width of the bounds (the worst case, a mean at a bound). Reported
//!   as that formula's value at `n` when the analyst gives n, and as
//!   `w_s + R · w_c` (the half-width times n, for large n) always.
//! * VARIANCE and STDDEV: no closed form is offered (their interval
//!   depends on the data's spread); they are not forecast.

use crate::RuntimeError;
use crate::release::{bounds, epsilon_split};
use crate::rules::ReleaseRules;
use sandbox_dp::aggregate::AggregateSpec;
use sandbox_dp::bounding::ContributionBounds;
use sandbox_sql::CheckedQuery;
use serde::Serialize;

/// What one aggregate's 95% interval is expected to be.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedInterval {
    /// The aggregate, e.g. `avg(gov.legal_entities.registered_capital)`.
    pub aggregate: String,
    /// The ε share it gets.
    pub epsilon: f64,
    /// The clamping bounds of its values and where they come from.
    pub bounds: Option<[f64; 2]>,
    pub bounds_note: Option<String>,
    /// The expected 95% half-width (±, output units): exact for COUNT and
    /// SUM, the worst case at `rows` rows per group for AVG; `None` when
    /// not forecast.
    pub half_width: Option<f64>,
    /// For AVG: the half-width times the group's row count, for large
    /// groups (`half_width ≈ per_row / n`).
    pub per_row: Option<f64>,
}

/// Half-widths of one aggregate at its ε share: (95% half-width at `rows`,
/// half-width × n for means).
fn half_widths(
    spec: &AggregateSpec,
    share: f64,
    rules: &ReleaseRules,
    b: &ContributionBounds,
    g: u64,
    rows: Option<u64>,
) -> Result<(Option<f64>, Option<f64>), RuntimeError> {
    let c = crate::release::calibrate(spec, share, rules, b, g)?;
    let f = c.forecast();
    Ok(match spec {
        AggregateSpec::CountRows
        | AggregateSpec::CountValues { .. }
        | AggregateSpec::CountUnits
        | AggregateSpec::Sum { .. } => (f.components.first().map(|x| x.2), None),
        AggregateSpec::Avg { grid, .. } => {
            // The release takes each of the two statistics at 97.5%.
            let w_c = c.component_half_width(0, 0.025).unwrap_or(0) as f64;
            let w_s = c.component_half_width(1, 0.025).unwrap_or(0) as f64 * grid.quantum;
            let radius = (grid.upper - grid.lower) / 2.0;
            let per_row = w_s + radius * w_c;
            let at_rows = rows.map(|n| {
                let n = n as f64;
                if n > w_c {
                    (per_row / (n - w_c)).min(radius * 2.0)
                } else {
                    radius * 2.0
                }
            });
            (at_rows, Some(per_row))
        }
        AggregateSpec::Variance { .. } | AggregateSpec::Stddev { .. } | AggregateSpec::Quantile { .. } => (None, None),
    })
}

/// Each aggregate's expected interval at ε (DP releases only).
pub fn expected_intervals(
    q: &CheckedQuery,
    specs: &[AggregateSpec],
    rules: &ReleaseRules,
    public_count: Option<usize>,
    epsilon: f64,
    rows: Option<u64>,
) -> Result<Vec<ExpectedInterval>, RuntimeError> {
    let split = epsilon_split(q, specs, rules, public_count.is_some(), epsilon)?;
    let b = bounds(rules)?;
    let g = b.effective_groups(public_count);
    let mut out = Vec::with_capacity(specs.len());
    for (j, s) in specs.iter().enumerate() {
        let share = split.share(j).unwrap_or(0.0);
        let (half_width, per_row) = half_widths(s, share, rules, &b, g, rows)?;
        let a = &q.aggregates[j];
        out.push(ExpectedInterval {
            aggregate: a.display.clone(),
            epsilon: share,
            bounds: a.bounds.map(|(lo, hi)| [lo, hi]),
            bounds_note: a.bounds_note.clone(),
            half_width,
            per_row,
        });
    }
    Ok(out)
}

/// The smallest ε at which every aggregate's expected 95% half-width is at
/// most `target` (means at `rows` rows per group). Refused when the query
/// has an aggregate that is not forecast, when means have no `rows`, or
/// when the ε needed exceeds the per-query cap (`target-ci-over-cap`,
/// naming the ε needed). `release_share` is the part of the job's ε the
/// release gets (1, or 0.9 when 10 % goes to the count of rows that took a
/// job function's default): the ε returned is the job's whole ε.
pub fn epsilon_for_target(
    q: &CheckedQuery,
    specs: &[AggregateSpec],
    rules: &ReleaseRules,
    public_count: Option<usize>,
    target: f64,
    rows: Option<u64>,
    release_share: f64,
) -> Result<f64, RuntimeError> {
    if !(target.is_finite() && target > 0.0) {
        return Err(RuntimeError::refused(
            "target-ci-invalid",
            "the target interval half-width must be a positive number",
        ));
    }
    if !rules.dp {
        return Err(RuntimeError::refused(
            "target-ci-invalid",
            "a target interval needs a differentially private release; these policies release under threshold rules only",
        ));
    }
    for (j, s) in specs.iter().enumerate() {
        match s {
            AggregateSpec::Variance { .. } | AggregateSpec::Stddev { .. } | AggregateSpec::Quantile { .. } => {
                return Err(RuntimeError::refused(
                    "target-ci-unsupported",
                    format!(
                        "{} has no forecast interval; a target applies to COUNT, SUM and AVG",
                        q.aggregates[j].display
                    ),
                ));
            }
            AggregateSpec::Avg { .. } if rows.is_none() => {
                return Err(RuntimeError::refused(
                    "target-ci-needs-rows",
                    format!(
                        "the interval of {} depends on the rows in a group; give the rows you expect per group (--target-rows, or target_rows)",
                        q.aggregates[j].display
                    ),
                ));
            }
            _ => {}
        }
    }
    let widest = |epsilon: f64| -> Result<f64, RuntimeError> {
        let intervals = expected_intervals(q, specs, rules, public_count, epsilon, rows)?;
        Ok(intervals.iter().filter_map(|i| i.half_width).fold(0.0, f64::max))
    };
    // Half-widths do not grow with ε: bisect on a log scale.
    let (mut lo, mut hi) = (1e-9f64, 1e6f64);
    if widest(hi)? > target {
        return Err(RuntimeError::refused(
            "target-ci-over-cap",
            format!(
                "no ε up to {hi} gives a 95% half-width of {target} (the bounds or the group size are too wide); the per-query cap is {}",
                rules.epsilon_cap
            ),
        ));
    }
    for _ in 0..200 {
        let mid = (lo.ln() + hi.ln()) / 2.0;
        let mid = mid.exp();
        if widest(mid)? <= target {
            hi = mid;
        } else {
            lo = mid;
        }
        if hi / lo < 1.0 + 1e-9 {
            break;
        }
    }
    // Up to the ledger's resolution (10⁻⁹), rounded up so the target holds.
    let needed = (hi / release_share * 1e9).ceil() / 1e9;
    if needed > rules.epsilon_cap + 1e-12 {
        let count = if release_share < 1.0 {
            format!(
                " ({:.0} % of it for the release, the rest for the noisy count of rows that took a function's default)",
                release_share * 100.0
            )
        } else {
            String::new()
        };
        return Err(RuntimeError::refused(
            "target-ci-over-cap",
            format!(
                "a 95% half-width of {target} needs ε = {needed:.4}{count}, above the per-query cap of {} set by the data owners",
                rules.epsilon_cap
            ),
        ));
    }
    Ok(needed.max(rules.epsilon_min))
}
