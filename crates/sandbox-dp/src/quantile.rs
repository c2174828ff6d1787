//! DP quantiles per group: OpenDP's quantile score over a public candidate
//! grid, and OpenDP's noisy-max selection (permute-and-flip) of the best
//! candidate.
//!
//! # The candidate grid
//!
//! `K` equally spaced candidates `c_0 = lower, …, c_{K-1} = upper` span the
//! public bounds (the policy's, derived ones, or the analyst's `CLAMP`).
//! Each clamped value is taken at its nearest candidate (ties upward): the
//! released quantile is a quantile of the values rounded to the grid, so
//! its resolution is `(upper - lower) / (K - 1)`.
//!
//! # What the engine counts
//!
//! Per (privacy unit, group), `n` non-null values and, for `i < K - 1`,
//! `T_i`, the values below the midpoint `m_i = (c_i + c_{i+1}) / 2` (those
//! rounded to `c_0 … c_i`). Contribution bounding caps every count at the
//! rows the partial keeps (`min(count, cap)`), so a unit's bounded
//! contribution behaves like at most `cap` rows: `min(T_{i-1}, cap)` below
//! `c_i` and `min(n, cap) - min(T_i, cap)` above it, never both more than
//! `cap` together.
//!
//! # Scores (OpenDP `make_quantile_score_candidates`, Smith 2011)
//!
//! With `α = α_num / α_den`, `lt_i = T_{i-1}` (values below `c_i`) and
//! `gt_i = n - T_i` (values above it), candidate `i` scores
//! `|(α_den - α_num) · lt_i - α_num · gt_i|` (lower is better), exactly
//! OpenDP's `score_candidates` on the rounded values (a unit test checks the
//! two agree). One unit that keeps `cap` rows in a group moves each score
//! by at most `cap · max(α_num, α_den - α_num)` (OpenDP's stability map for
//! unknown size); over all groups, by at most `Δ = rows_per_unit ·
//! max(α_num, α_den - α_num)` in total, with `rows_per_unit = min(G · R,
//! L)` ([`crate::bounding::ContributionBounds::rows_per_unit`]).
//!
//! # Selection (OpenDP `make_noisy_max`, McKenna & Sheldon 2020)
//!
//! Each group's index is drawn by OpenDP's permute-and-flip on its score
//! vector (minimising), with one scale `s = 2Δ / ε` for all groups. OpenDP's
//! privacy map gives `2·Δ_g / s` for a group whose scores move by at most
//! `Δ_g` in L∞ (the factor 2 because scores need not all move the same
//! way); since `Σ_g Δ_g ≤ Δ`, the groups together are ε-DP
//! (pure DP, no δ).
//!
//! # Accuracy statement
//!
//! Permute-and-flip outputs candidate `i` with probability at most
//! `exp(-(score_i - best) / s)`, so with probability at least 95% the
//! released candidate's score is within `s · ln(K / 0.05)` of the best
//! candidate's: its rank error `|(1 - α)·#below - α·#above|` exceeds the best
//! candidate's by at most `s · ln(K / 0.05) / α_den` rows. That is a
//! statement about ranks; a value interval would need the data's
//! distribution, so the released `ci95` is the public bounds (always sound).

use crate::DpError;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_noisy_max;
use opendp::measures::MaxDivergence;
use opendp::metrics::LInfDistance;
use serde::Serialize;

/// Candidates on the grid when the query does not say otherwise: a step of
/// 1/64 of the bounds' width.
pub const DEFAULT_CANDIDATES: usize = 65;

/// The granularity of α (OpenDP's default for unknown sizes: 10⁻⁴).
const ALPHA_DENOMINATOR: u64 = 10_000;

/// How the candidates are spaced over the bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Spacing {
    /// Equal steps of `(upper - lower) / (K - 1)`.
    Linear,
    /// `c_0 = lower` and `c_i = lower + (upper - lower) · 2^((i - (K-1)) / 4)`
    /// for `i ≥ 1`: steps of 19% of the distance from `lower`, fine near
    /// `lower` and coarse near `upper`, for heavy-tailed measures whose
    /// bounds are far above most values (bound estimation).
    Geometric,
}

/// The public candidate grid of one quantile and its α.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantileGrid {
    pub lower: f64,
    pub upper: f64,
    /// K ≥ 2 candidates.
    pub candidates: usize,
    pub spacing: Spacing,
    pub alpha_num: u64,
    pub alpha_den: u64,
}

impl QuantileGrid {
    /// A grid of `candidates` points over `[lower, upper]` for the
    /// `alpha`-quantile (0 = MIN, 0.5 = median, 1 = MAX), α taken to
    /// 10⁻⁴ and reduced.
    ///
    /// Errors: [`DpError::InvalidBounds`] for non-finite or empty bounds,
    /// [`DpError::InvalidQuantile`] for α outside [0, 1] or fewer than 2
    /// candidates.
    pub fn new(lower: f64, upper: f64, candidates: usize, alpha: f64) -> Result<Self, DpError> {
        if !(lower.is_finite() && upper.is_finite() && lower < upper) {
            return Err(DpError::InvalidBounds(lower, upper));
        }
        if !(0.0..=1.0).contains(&alpha) || !(2..=10_000).contains(&candidates) {
            return Err(DpError::InvalidQuantile);
        }
        let num = (alpha * ALPHA_DENOMINATOR as f64).round() as u64;
        let g = gcd(num, ALPHA_DENOMINATOR);
        Ok(QuantileGrid {
            lower,
            upper,
            candidates,
            spacing: Spacing::Linear,
            alpha_num: num / g,
            alpha_den: ALPHA_DENOMINATOR / g,
        })
    }

    /// The same grid with another spacing.
    pub fn with_spacing(self, spacing: Spacing) -> Self {
        QuantileGrid { spacing, ..self }
    }

    /// The distance between neighbouring candidates of a linear grid (for
    /// a geometric one, its first step).
    pub fn step(&self) -> f64 {
        match self.spacing {
            Spacing::Linear => (self.upper - self.lower) / (self.candidates - 1) as f64,
            Spacing::Geometric => self.candidate(1) - self.lower,
        }
    }

    /// Candidate `i` (`c_{K-1}` is exactly the upper bound); strictly
    /// increasing in `i`.
    pub fn candidate(&self, i: usize) -> f64 {
        if i + 1 >= self.candidates {
            return self.upper;
        }
        match self.spacing {
            Spacing::Linear => self.lower + i as f64 * (self.upper - self.lower) / (self.candidates - 1) as f64,
            Spacing::Geometric if i == 0 => self.lower,
            Spacing::Geometric => {
                let exponent = (i as f64 - (self.candidates - 1) as f64) / 4.0;
                self.lower + (self.upper - self.lower) * exponent.exp2()
            }
        }
    }

    /// The `K - 1` midpoints `m_i` between neighbouring candidates: the
    /// engine counts, per partial, the values below each.
    pub fn thresholds(&self) -> Vec<f64> {
        (0..self.candidates - 1)
            .map(|i| (self.candidate(i) + self.candidate(i + 1)) / 2.0)
            .collect()
    }

    /// `max(α_num, α_den - α_num)`: how far one row moves a score.
    pub fn row_sensitivity(&self) -> u64 {
        self.alpha_num.max(self.alpha_den - self.alpha_num)
    }

    /// OpenDP's score of every candidate from the counts `n` (non-null
    /// values) and `below[i] = T_i` (values below the midpoint `m_i`, `K - 1`
    /// of them). Counts are capped as OpenDP caps them
    /// (`u64::MAX / α_den`) so no score overflows.
    ///
    /// Errors: [`DpError::Internal`] when `below` has the wrong length.
    pub fn scores(&self, n: i128, below: &[i128]) -> Result<Vec<u64>, DpError> {
        if below.len() + 1 != self.candidates {
            return Err(DpError::Internal("quantile counts do not match the grid"));
        }
        let limit = u64::MAX / self.alpha_den;
        let clip = |x: i128| u64::try_from(x.max(0)).unwrap_or(u64::MAX).min(limit);
        let (a_lt, a_gt) = (self.alpha_den - self.alpha_num, self.alpha_num);
        let mut out = Vec::with_capacity(self.candidates);
        for i in 0..self.candidates {
            let lt = if i == 0 { 0 } else { below[i - 1] };
            let le = below.get(i).copied().unwrap_or(n);
            let gt = n - le;
            out.push((a_lt * clip(lt)).abs_diff(a_gt * clip(gt)));
        }
        Ok(out)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

/// OpenDP's permute-and-flip over a score vector (pure DP).
type ScoreSelection = opendp::core::Measurement<VectorDomain<AtomDomain<u64>>, LInfDistance<u64>, MaxDivergence, usize>;

/// A calibrated DP quantile: one permute-and-flip selection per group.
#[derive(Debug, Clone)]
pub struct QuantileSelection {
    grid: QuantileGrid,
    epsilon: f64,
    /// Δ: the L∞ score sensitivity summed over groups (score units).
    sensitivity: u128,
    /// Permute-and-flip scale in score units.
    scale: f64,
}

impl QuantileSelection {
    /// Calibrates the selection for ε when one unit keeps at most
    /// `rows_per_unit` rows over all groups: `Δ = rows_per_unit ·
    /// max(α_num, α_den - α_num)`, scale `2Δ / ε`, checked against
    /// OpenDP's privacy map of `make_noisy_max`.
    ///
    /// Errors: [`DpError::InvalidEpsilon`], [`DpError::Overflow`], and
    /// [`DpError::Internal`] if OpenDP's map does not confirm ε.
    pub fn new(grid: QuantileGrid, epsilon: f64, rows_per_unit: u64) -> Result<Self, DpError> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(DpError::InvalidEpsilon(epsilon));
        }
        let sensitivity = (rows_per_unit.max(1) as u128)
            .checked_mul(grid.row_sensitivity() as u128)
            .ok_or(DpError::Overflow)?;
        let scale = 2.0 * sensitivity as f64 / epsilon;
        if !scale.is_finite() {
            return Err(DpError::Overflow);
        }
        let selection = QuantileSelection {
            grid,
            epsilon,
            sensitivity,
            scale,
        };
        // OpenDP's own accounting of the mechanism at this scale.
        let m = selection.measurement()?;
        let d_in = u64::try_from(sensitivity).map_err(|_| DpError::Overflow)?;
        let spent = m
            .map(&d_in)
            .map_err(|_| DpError::Internal("OpenDP cannot account the quantile selection"))?;
        if spent > epsilon * (1.0 + 1e-9) {
            return Err(DpError::Internal("the quantile selection would spend more than its ε"));
        }
        Ok(selection)
    }

    fn measurement(&self) -> Result<ScoreSelection, DpError> {
        let domain = VectorDomain::new(AtomDomain::<u64>::default()).with_size(self.grid.candidates);
        make_noisy_max(domain, LInfDistance::default(), MaxDivergence, self.scale, true)
            .map_err(|_| DpError::Internal("OpenDP refused the quantile selection"))
    }

    pub fn grid(&self) -> &QuantileGrid {
        &self.grid
    }

    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Δ in score units (see the module docs).
    pub fn sensitivity(&self) -> u128 {
        self.sensitivity
    }

    /// The selection's scale in rows of rank (score scale / α_den).
    pub fn scale_in_rows(&self) -> f64 {
        self.scale / self.grid.alpha_den as f64
    }

    /// With probability ≥ 95%, the released candidate's rank error exceeds
    /// the best candidate's by at most this many rows: `s · ln(K / 0.05) /
    /// α_den`.
    pub fn rank_error_95(&self) -> f64 {
        self.scale_in_rows() * (self.grid.candidates as f64 / 0.05).ln()
    }

    /// Selects the index of a candidate from its scores (exact argmin, the
    /// first of ties, when a neighbouring-database test has switched noise
    /// off).
    pub fn select(&self, scores: &[u64]) -> Result<usize, DpError> {
        if scores.len() != self.grid.candidates {
            return Err(DpError::Internal("quantile scores do not match the grid"));
        }
        if crate::testing::noise_off() {
            let best = scores.iter().copied().min().unwrap_or(0);
            return Ok(scores.iter().position(|s| *s == best).unwrap_or(0));
        }
        self.measurement()?
            .invoke(&scores.to_vec())
            .map_err(|e| DpError::Entropy(e.to_string()))
    }

    /// Releases the quantile of one group from its bounded counts.
    pub fn release(&self, n: i128, below: &[i128]) -> Result<f64, DpError> {
        let scores = self.grid.scores(n, below)?;
        Ok(self.grid.candidate(self.select(&scores)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opendp::transformations::make_quantile_score_candidates;

    /// Counts as the engine would compute them from raw values.
    fn counts(grid: &QuantileGrid, values: &[f64]) -> (i128, Vec<i128>) {
        let below = grid
            .thresholds()
            .iter()
            .map(|m| values.iter().filter(|v| **v < *m).count() as i128)
            .collect();
        (values.len() as i128, below)
    }

    fn snap(grid: &QuantileGrid, v: f64) -> f64 {
        let t = grid.thresholds();
        grid.candidate(t.iter().filter(|m| v >= **m).count())
    }

    #[test]
    fn scores_equal_opendps_on_the_rounded_values() {
        let values: Vec<f64> = (0..500).map(|i| ((i * 7919) % 1000) as f64 / 7.3).collect();
        for alpha in [0.0, 0.1, 0.5, 0.9, 1.0] {
            let grid = QuantileGrid::new(0.0, 140.0, 29, alpha).expect("grid");
            let (n, below) = counts(&grid, &values);
            let ours = grid.scores(n, &below).expect("scores");
            let rounded: Vec<f64> = values.iter().map(|v| snap(&grid, *v)).collect();
            let candidates: Vec<f64> = (0..grid.candidates).map(|i| grid.candidate(i)).collect();
            let t = make_quantile_score_candidates(
                VectorDomain::new(AtomDomain::<f64>::new_non_nan()),
                opendp::metrics::SymmetricDistance,
                candidates,
                alpha,
            )
            .expect("OpenDP transformation");
            let theirs = t.invoke(&rounded).expect("OpenDP scores");
            // OpenDP may keep α at a finer denominator (0.1 as 1000/10000
            // where ours is 1/10): its scores are ours times the ratio.
            let theirs_row = t.map(&1).expect("map") as u128;
            let ours_row = grid.row_sensitivity() as u128;
            assert_eq!(theirs_row % ours_row, 0, "α {alpha}");
            let ratio = theirs_row / ours_row;
            let ours: Vec<u128> = ours.iter().map(|a| *a as u128 * ratio).collect();
            let theirs: Vec<u128> = theirs.iter().map(|b| *b as u128).collect();
            assert_eq!(ours, theirs, "α {alpha}");
        }
    }

    fn argmin(scores: &[u64]) -> usize {
        let best = scores.iter().copied().min().unwrap_or(0);
        scores.iter().position(|s| *s == best).unwrap_or(0)
    }

    #[test]
    fn exact_selection_finds_the_median_on_the_grid() {
        let grid = QuantileGrid::new(0.0, 100.0, 101, 0.5).expect("grid");
        let values: Vec<f64> = (0..=60).map(|v| v as f64).collect();
        let (n, below) = counts(&grid, &values);
        let scores = grid.scores(n, &below).expect("scores");
        assert_eq!(grid.candidate(argmin(&scores)), 30.0);
    }

    #[test]
    fn min_and_max_are_extreme_quantiles() {
        let values: Vec<f64> = (20..=70).map(|v| v as f64).collect();
        for (alpha, expected) in [(0.0, 20.0), (1.0, 70.0)] {
            let grid = QuantileGrid::new(0.0, 100.0, 101, alpha).expect("grid");
            let (n, below) = counts(&grid, &values);
            let scores = grid.scores(n, &below).expect("scores");
            // MIN: candidates up to 20 have nothing below (score 0); the
            // first of ties is 0, so compare the score, not the index.
            let i = argmin(&scores);
            assert_eq!(scores[i], 0, "α {alpha}");
            let at = (0..grid.candidates)
                .find(|j| grid.candidate(*j) == expected)
                .expect("candidate");
            assert_eq!(scores[at], 0, "α {alpha}: {scores:?}");
            // A candidate past the extreme scores worse.
            let past = if alpha == 0.0 { at + 1 } else { at - 1 };
            assert!(scores[past] > 0, "α {alpha}");
        }
    }

    /// One unit keeping `cap` rows moves every score by at most `cap ·
    /// max(α_num, α_den - α_num)`: the bounded counts of a unit behave like
    /// `cap` rows (see the module docs).
    #[test]
    fn one_units_bounded_rows_move_scores_within_the_sensitivity() {
        let grid = QuantileGrid::new(0.0, 10.0, 11, 0.25).expect("grid");
        let base: Vec<f64> = (0..200).map(|i| (i % 11) as f64).collect();
        let (n, below) = counts(&grid, &base);
        let before = grid.scores(n, &below).expect("scores");
        let unit: Vec<f64> = vec![0.0, 3.0, 3.0, 9.0, 10.0, 10.0, 10.0];
        for cap in 1..=7i128 {
            let (un, ub) = counts(&grid, &unit);
            let capped: Vec<i128> = ub.iter().map(|t| (*t).min(cap)).collect();
            let after = grid
                .scores(
                    n + un.min(cap),
                    &below.iter().zip(&capped).map(|(a, b)| a + b).collect::<Vec<_>>(),
                )
                .expect("scores");
            let moved = before
                .iter()
                .zip(&after)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap_or(0);
            assert!(
                moved as i128 <= cap * grid.row_sensitivity() as i128,
                "cap {cap}: moved {moved}"
            );
        }
    }

    /// Statistical test (fixed sizes): 400 releases of the median of 2 000
    /// values spread over [0, 100] at ε = 1: at least 95% land within the
    /// stated rank error, converted to values through the known data.
    /// Failure probability: at scale s = 2 score units the allowed gap is
    /// s · ln(1300) = 14.3 and the nearest worse candidates are 20 units off,
    /// so one release misses with probability ≤ Σ e^(-gap/s) ≈ 4.5e-5 (the
    /// 5% is the data-free union bound); the test fails on 34 misses of
    /// 400, which has probability below 1e-100.
    #[test]
    fn noisy_median_is_within_its_stated_rank_error() {
        let grid = QuantileGrid::new(0.0, 100.0, 65, 0.5).expect("grid");
        let s = QuantileSelection::new(grid.clone(), 1.0, 1).expect("selection");
        let values: Vec<f64> = (0..2_000).map(|i| (i % 101) as f64).collect();
        let (n, below) = counts(&grid, &values);
        let scores = grid.scores(n, &below).expect("scores");
        let best = *scores.iter().min().expect("scores");
        let allowed = s.rank_error_95() * grid.alpha_den as f64;
        let runs = 400;
        let ok = (0..runs)
            .filter(|_| {
                let i = s.select(&scores).expect("select");
                (scores[i] - best) as f64 <= allowed
            })
            .count();
        assert!(
            ok as f64 >= 0.95 * runs as f64 - 3.0 * (0.05f64 * 0.95 * runs as f64).sqrt(),
            "{ok}/{runs}"
        );
    }

    #[test]
    fn geometric_candidates_increase_strictly_from_lower_to_upper() {
        let g = QuantileGrid::new(0.0, 100_000.0, 65, 0.99)
            .expect("grid")
            .with_spacing(Spacing::Geometric);
        let c: Vec<f64> = (0..g.candidates).map(|i| g.candidate(i)).collect();
        assert_eq!(c[0], 0.0);
        assert_eq!(c[64], 100_000.0);
        assert!(c.windows(2).all(|w| w[0] < w[1]), "{c:?}");
        // 2^(-63/4) of the range: about 1.8 at the bottom.
        assert!(c[1] < 2.0 && c[1] > 1.0, "{}", c[1]);
        let t = g.thresholds();
        assert!(t.iter().zip(c.windows(2)).all(|(m, w)| w[0] < *m && *m < w[1]));
    }

    #[test]
    fn rejects_bad_grids() {
        assert!(QuantileGrid::new(1.0, 1.0, 10, 0.5).is_err());
        assert!(QuantileGrid::new(0.0, 1.0, 1, 0.5).is_err());
        assert!(QuantileGrid::new(0.0, 1.0, 10, 1.5).is_err());
        assert!(QuantileGrid::new(0.0, f64::NAN, 10, 0.5).is_err());
        let g = QuantileGrid::new(0.0, 1.0, 10, 0.5).expect("grid");
        assert!(QuantileSelection::new(g, 0.0, 1).is_err());
    }
}
