//! DP partition selection: which groups may appear when the group keys are
//! not public.
//!
//! Each group's distinct-unit count (after bounding, a unit is in at most G
//! groups) gets discrete Laplace noise of scale `b = G / ε`, and the group
//! is kept when the noisy count reaches the threshold
//! `τ = 1 + ⌈b · ln(G / (δ (1 + p)))⌉` with `p = exp(-1/b)`.
//!
//! Why this is (ε, δ)-DP: on groups present in both neighbouring datasets
//! the unit counts differ by at most 1 in at most G coordinates (L1 ≤ G), so
//! the noisy counts are ε-DP and the threshold is post-processing. A group
//! that only the added unit creates has count 1 and appears only if
//! `1 + Z ≥ τ`, which happens with probability `P[Z ≥ τ - 1] = p^(τ-1)/(1+p)
//! ≤ δ / G`; with at most G such groups the union bound gives δ.
//! The policy's k raises τ to at least k (never lowers it).

use crate::DpError;
use crate::noise::DiscreteLaplace;

#[derive(Debug, Clone)]
pub struct PartitionSelector {
    mechanism: DiscreteLaplace,
    threshold: i128,
}

impl PartitionSelector {
    pub fn new(max_groups_per_unit: u64, epsilon: f64, delta: f64, min_units: u64) -> Result<Self, DpError> {
        if !(delta > 0.0 && delta < 1.0) {
            return Err(DpError::InvalidDelta(delta));
        }
        let g = max_groups_per_unit.max(1);
        let mechanism = DiscreteLaplace::calibrated(g as u128, epsilon)?;
        let b = mechanism.scale();
        let p = (-1.0 / b).exp();
        let t = 1.0 + (b * (g as f64 / (delta * (1.0 + p))).ln()).ceil().max(0.0);
        if !t.is_finite() || t > 1e15 {
            return Err(DpError::Overflow);
        }
        let threshold = (t as i128).max(min_units as i128).max(1);
        Ok(PartitionSelector { mechanism, threshold })
    }

    /// τ: the noisy unit count a group needs to be released.
    pub fn threshold(&self) -> i128 {
        self.threshold
    }

    /// The noise scale on unit counts.
    pub fn scale(&self) -> f64 {
        self.mechanism.scale()
    }

    /// Decides one group from its exact (bounded) distinct-unit count. A
    /// group no unit contributes to after bounding is never a candidate:
    /// otherwise a unit's dropped groups would each spend δ.
    pub fn keep(&self, units: i128) -> Result<bool, DpError> {
        Ok(self.noisy_count(units)?.is_some())
    }

    /// The noisy unit count of a group that passes selection (`None` when
    /// it does not, or has no unit): post-processing may rank groups by it.
    pub fn noisy_count(&self, units: i128) -> Result<Option<i128>, DpError> {
        if units <= 0 {
            return Ok(None);
        }
        let noisy = self.mechanism.privatize(units)?;
        Ok((noisy >= self.threshold).then_some(noisy))
    }

    /// The δ actually achieved by the threshold (≤ the requested δ).
    pub fn achieved_delta(&self, max_groups_per_unit: u64) -> f64 {
        let k = (self.threshold - 1).max(0) as u64;
        max_groups_per_unit as f64 * self.mechanism.upper_tail(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_meets_delta() {
        for (g, eps, delta) in [(1u64, 1.0, 1e-6), (12, 0.5, 1e-7), (3, 2.0, 1e-5)] {
            let s = PartitionSelector::new(g, eps, delta, 0).expect("selector");
            assert!(s.achieved_delta(g) <= delta, "g={g} eps={eps}");
            // and is not wastefully high: one less would break δ
            let b = g as f64 / eps;
            let p = (-1.0 / b).exp();
            let one_less = g as f64 * p.powf((s.threshold() - 2) as f64) / (1.0 + p);
            assert!(one_less > delta);
        }
    }

    #[test]
    fn k_raises_the_threshold() {
        let s = PartitionSelector::new(1, 10.0, 1e-3 / 2.0, 50).expect("selector");
        assert_eq!(s.threshold(), 50);
    }

    #[test]
    fn needs_positive_delta() {
        assert!(PartitionSelector::new(1, 1.0, 0.0, 2).is_err());
    }

    /// A group made by a single unit is released with probability ≤ δ/G:
    /// with ε = 1, δ = 0.01 (large, to observe it), 20 000 trials.
    #[test]
    fn a_lone_unit_rarely_creates_a_group() {
        let s = PartitionSelector::new(1, 1.0, 0.01, 0).expect("selector");
        let n = 20_000;
        let released = (0..n).filter(|_| s.keep(1).expect("keep")).count() as f64;
        // Expected ≤ 200; 6 sd of Binomial(20000, 0.01) ≈ 84.
        assert!(released <= 200.0 + 84.0, "{released} releases");
        // A large group is essentially always kept.
        assert!((0..100).all(|_| s.keep(1_000).expect("keep")));
    }
}
