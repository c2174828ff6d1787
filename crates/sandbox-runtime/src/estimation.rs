//! DP bound estimation for `CLAMP_AUTO(x [, q])`.
//!
//! When the analyst gives no bounds but asks for them, a share
//! [`ESTIMATION_SHARE`] (10%) of the aggregate's ε is spent on a DP
//! quantile (default q = 0.99) of the aggregated values over the whole
//! table (no grouping: one group, every row of the job's row source, after
//! its WHERE and joins) within the public bounds `[lower, upper]`, on a
//! geometric grid of [`ESTIMATION_CANDIDATES`] points. The aggregate is then released
//! with the other 90% and its values clamped to `[lower, u]`, `u` the
//! estimate (at least the grid's first candidate above `lower`).
//!
//! Privacy: the estimate is a DP quantile ([`sandbox_dp::quantile`]) under
//! the same contribution bounds (one group: at most `min(R, L)` rows per
//! unit), so it costs its share ε_e; the release that uses `u` is DP for
//! every fixed `u` with the rest, so the two compose sequentially
//! (adaptively) to the aggregate's share. Nothing about the data leaves
//! except through these two mechanisms; the chosen `u` is reported (it is
//! a DP output).

use crate::RuntimeError;
use crate::release::bounds;
use crate::rules::ReleaseRules;
use sandbox_dp::accounting::EpsilonSplit;
use sandbox_dp::aggregate::CalibratedAggregate;
use sandbox_dp::quantile::Spacing;
use sandbox_sql::contribution::compute_totals;
use sandbox_sql::partials::{Contributions, plan_measures_with};
use sandbox_sql::query::{AggregateFn, AggregateRequest};
use sandbox_sql::{CheckedQuery, JobSession};

/// The share of an aggregate's ε spent on estimating its bound.
pub const ESTIMATION_SHARE: f64 = 0.1;

/// Candidates on the estimation grid, geometric
/// ([`sandbox_dp::quantile::Spacing::Geometric`]): steps of 19% from 2⁻¹⁶
/// of the bounds' width up to the upper bound, so a heavy-tailed measure
/// whose public bound is far above its values still gets a fine estimate.
pub const ESTIMATION_CANDIDATES: usize = 65;

/// The label of aggregate `display`'s bound estimation in an ε split.
pub fn label(display: &str) -> String {
    format!("bound estimation for {display}")
}

/// Moves [`ESTIMATION_SHARE`] of each `CLAMP_AUTO` aggregate's share to a
/// part of its own (appended after the others; aggregates keep their
/// indices).
pub fn reserve_shares(split: &mut EpsilonSplit, q: &CheckedQuery) {
    for (j, a) in q.aggregates.iter().enumerate() {
        if a.auto_bound.is_some() {
            // A share of the part's ε (basic) or of its ρ (zCDP).
            split.carve(j, ESTIMATION_SHARE, label(&a.display));
        }
    }
}

/// What one estimation chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub aggregate: usize,
    pub upper: f64,
    pub epsilon: f64,
}

/// Estimates the upper bound of every `CLAMP_AUTO` aggregate of `q` and
/// returns the query with those bounds in place (and the estimates).
///
/// Errors: from the engine (deadline, memory) and calibration.
pub async fn estimate_bounds(
    session: &JobSession,
    q: &CheckedQuery,
    rules: &ReleaseRules,
    split: &EpsilonSplit,
    choice_key: u64,
) -> Result<(CheckedQuery, Vec<Estimate>), RuntimeError> {
    let mut out = q.clone();
    let mut estimates = Vec::new();
    for (j, a) in q.aggregates.iter().enumerate() {
        let Some(quantile) = a.auto_bound else { continue };
        let (lower, upper) = a
            .bounds
            .ok_or(sandbox_dp::DpError::Internal("CLAMP_AUTO without public bounds"))?;
        let epsilon = crate::release::share(split, &label(&a.display))?;
        let probe = CheckedQuery {
            group_keys: Vec::new(),
            aggregates: vec![AggregateRequest {
                function: AggregateFn::Quantile,
                quantile: Some(quantile),
                auto_bound: None,
                ..a.clone()
            }],
            outputs: Vec::new(),
            post: Vec::new(),
            ..q.clone()
        };
        let (specs, measures) = plan_measures_with(&probe, ESTIMATION_CANDIDATES, Spacing::Geometric)?;
        let b = bounds(rules)?;
        let bounding = crate::release::engine_bounding(rules, choice_key)?;
        // Always the bounded plan (no verified row bounds are used here),
        // with unit counts: the estimation's scores come from its totals.
        let unit_bounds = sandbox_sql::multiplicity::UnitBounds::default();
        let statistics = compute_totals(session, &probe, &measures, bounding, unit_bounds, true).await?;
        let Contributions::Totals { totals, .. } = &statistics.contributions else {
            return Err(sandbox_dp::DpError::Internal("bound estimation expects engine totals").into());
        };
        let spec = specs
            .into_iter()
            .next()
            .ok_or(sandbox_dp::DpError::Internal("bound estimation without its quantile"))?;
        let first_step = match &spec {
            sandbox_dp::aggregate::AggregateSpec::Quantile { grid, .. } => grid.candidate(1),
            _ => return Err(sandbox_dp::DpError::Internal("bound estimation without its quantile").into()),
        };
        let calibrated = CalibratedAggregate::new(spec, epsilon, 1, b.rows_per_unit(1))?;
        let chosen = match crate::testing::pinned_estimate(estimates.len()) {
            Some(pinned) => pinned,
            None => calibrated.release(totals, 0)?.value,
        };
        crate::testing::record_estimation(
            calibrated.exact_components(totals, 0)?,
            calibrated.sensitivities(),
            chosen,
        );
        let u = chosen.max(first_step).min(upper);
        // Data-independent: the selection's rank error at this ε. Every
        // candidate above the table's largest value misses the quantile by
        // (1 - q)·n rows, so below about `rank / (1 - q)` rows those
        // candidates score nearly as well as the quantile's own and the
        // estimate may land anywhere up to the public bound; say so.
        let rank = calibrated.rank_error_95().unwrap_or(0.0);
        let small_table = if quantile < 1.0 {
            format!(
                "; with 95% probability its rank error is at most {rank:.0} row(s) more than the best candidate's, so on fewer than about {:.0} rows the estimate may land anywhere up to {upper} (a lower q narrows it)",
                rank / (1.0 - quantile)
            )
        } else {
            String::new()
        };
        let target = &mut out.aggregates[j];
        target.bounds = Some((lower, u));
        target.bounds_note = Some(format!(
            "values clamped to [{lower}, {u}]: {u} is a DP estimate (ε = {epsilon:.4}) of the {quantile} quantile of the values over the whole table, within the public bounds [{lower}, {upper}]{small_table}"
        ));
        estimates.push(Estimate {
            aggregate: j,
            upper: u,
            epsilon,
        });
    }
    Ok((out, estimates))
}
