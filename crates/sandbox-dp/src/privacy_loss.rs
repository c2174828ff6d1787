//! Statistical privacy-loss tests, noise on: each release mechanism run on
//! neighbouring inputs (one privacy unit apart, at the worst case its
//! bounds allow) many times, the empirical privacy loss
//! `ln(P[M(D) ∈ S] / P[M(D') ∈ S])` over output bins must stay within the
//! claimed ε plus sampling error. Sample sizes are fixed; a bin counts only
//! when both sides saw it at least 400 times, and the tolerance is 5
//! standard errors of the log ratio, so a false failure is far below 1e-6
//! per bin. A mechanism calibrated with half the noise it needs fails
//! (checked by `a_mechanism_with_too_little_noise_fails`).

use crate::aggregate::{AggregateSpec, CalibratedAggregate};
use crate::bounding::{GroupTotals, MeasureTotals};
use crate::fixed_point::Quantizer;
use crate::noise::DiscreteLaplace;
use crate::partition::PartitionSelector;
use std::collections::BTreeMap;

const DRAWS: usize = 30_000;

/// The largest loss over bins seen often enough on both sides, minus its
/// allowed sampling error (≤ ε means no evidence of excess loss).
fn excess_loss(a: &[i64], b: &[i64]) -> f64 {
    let count = |xs: &[i64]| {
        let mut m: BTreeMap<i64, f64> = BTreeMap::new();
        for x in xs {
            *m.entry(*x).or_default() += 1.0;
        }
        m
    };
    let (ca, cb) = (count(a), count(b));
    let mut worst = f64::NEG_INFINITY;
    for (bin, x) in &ca {
        let Some(y) = cb.get(bin) else { continue };
        if *x < 400.0 || *y < 400.0 {
            continue;
        }
        let se = (1.0 / x + 1.0 / y).sqrt();
        worst = worst.max((x / y).ln().abs() - 5.0 * se);
    }
    worst
}

fn totals(rows: i128, count: i128, sum: i128) -> GroupTotals {
    GroupTotals {
        kept: Vec::new(),
        kept_rows: Vec::new(),
        rows: vec![rows],
        units: vec![rows],
        measures: vec![MeasureTotals {
            count: vec![count],
            sum: vec![sum],
            sumsq: vec![0],
        }],
    }
}

/// Bins a released real value on a grid of `width`.
fn bin(x: f64, width: f64) -> i64 {
    (x / width).floor() as i64
}

fn draws(agg: &CalibratedAggregate, t: &GroupTotals, width: f64) -> Vec<i64> {
    (0..DRAWS)
        .map(|_| bin(agg.release(t, 0).expect("release").value, width))
        .collect()
}

#[test]
fn count_loss_is_within_epsilon() {
    // R = 3: one unit moves the count by 3.
    let eps = 1.0;
    let agg = CalibratedAggregate::new(AggregateSpec::CountRows, eps, 1, 3).expect("agg");
    let (d, n) = (totals(100, 0, 0), totals(97, 0, 0));
    let loss = excess_loss(&draws(&agg, &d, 1.0), &draws(&agg, &n, 1.0));
    assert!(loss <= eps, "empirical loss {loss} > ε = {eps}");
}

#[test]
fn sum_loss_is_within_epsilon() {
    let eps = 0.5;
    let grid = Quantizer::for_sum(0.0, 10.0).expect("grid");
    let agg = CalibratedAggregate::new(AggregateSpec::Sum { measure: 0, grid }, eps, 1, 2).expect("agg");
    // The removed unit contributed its maximum: 2 rows at the upper bound.
    let top = 2 * grid.max_abs as i128;
    let (d, n) = (totals(0, 0, 50 * top), totals(0, 0, 49 * top));
    let width = agg.forecast().components[0].1 / 2.0;
    let loss = excess_loss(&draws(&agg, &d, width), &draws(&agg, &n, width));
    assert!(loss <= eps, "empirical loss {loss} > ε = {eps}");
}

#[test]
fn avg_loss_is_within_epsilon() {
    let eps = 1.0;
    let grid = Quantizer::for_mean(0.0, 10.0).expect("grid");
    let agg = CalibratedAggregate::new(AggregateSpec::Avg { measure: 0, grid }, eps, 1, 1).expect("agg");
    // 20 rows at the lower bound; the neighbour adds one at the upper bound.
    let lo = -grid.max_abs as i128;
    let (d, n) = (totals(20, 20, 20 * lo), totals(21, 21, 20 * lo + grid.max_abs as i128));
    let loss = excess_loss(&draws(&agg, &d, 0.5), &draws(&agg, &n, 0.5));
    assert!(loss <= eps, "empirical loss {loss} > ε = {eps}");
}

#[test]
fn partition_selection_loss_is_within_epsilon() {
    // Around the threshold, P[keep | c] / P[keep | c - 1] ≤ e^ε.
    let eps = 1.0;
    let s = PartitionSelector::new(1, eps, 1e-3, 0).expect("selector");
    let c = s.threshold();
    let keep = |units: i128| -> Vec<i64> { (0..DRAWS).map(|_| i64::from(s.keep(units).expect("keep"))).collect() };
    let loss = excess_loss(&keep(c), &keep(c - 1));
    assert!(loss <= eps, "empirical loss {loss} > ε = {eps}");
}

#[test]
fn a_mechanism_with_too_little_noise_fails() {
    // Calibrated for sensitivity 1 but moved by 3: the loss is about 3ε.
    let eps = 1.0;
    let m = DiscreteLaplace::calibrated(1, eps).expect("mechanism");
    let a: Vec<i64> = (0..DRAWS).map(|_| (100 + m.sample().expect("draw")) as i64).collect();
    let b: Vec<i64> = (0..DRAWS).map(|_| (97 + m.sample().expect("draw")) as i64).collect();
    assert!(excess_loss(&a, &b) > eps, "the test must detect excess loss");
}
