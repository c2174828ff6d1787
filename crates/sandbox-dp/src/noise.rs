//! The discrete Laplace mechanism (Canonne, Kamath, Steinke 2020) on
//! integer-valued queries.
//!
//! An integer query with L1 sensitivity Δ plus noise drawn from the discrete
//! Laplace distribution with scale `b = Δ / ε`, that is
//! `P[Z = z] ∝ exp(-|z| / b)`, is ε-differentially private. Sampling is done
//! by OpenDP's exact sampler over arbitrary-precision rationals, fed by
//! OpenSSL's CSPRNG; the scale is passed as an exact rational, so no
//! floating-point step sits between the calibration and the draw.

use crate::DpError;
use dashu::integer::IBig;
use dashu::rational::RBig;
use opendp::traits::samplers::sample_discrete_laplace;

/// A calibrated discrete Laplace mechanism.
#[derive(Debug, Clone)]
pub struct DiscreteLaplace {
    scale: RBig,
    scale_f64: f64,
}

impl DiscreteLaplace {
    /// Calibrates the mechanism for an integer query with L1 sensitivity
    /// `sensitivity` (in grid units) released with `epsilon`.
    pub fn calibrated(sensitivity: u128, epsilon: f64) -> Result<Self, DpError> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(DpError::InvalidEpsilon(epsilon));
        }
        let eps = RBig::try_from(epsilon).map_err(|_| DpError::InvalidEpsilon(epsilon))?;
        let scale = RBig::from(IBig::from(sensitivity)) / eps;
        let scale_f64 = sensitivity as f64 / epsilon;
        if !scale_f64.is_finite() {
            return Err(DpError::Overflow);
        }
        Ok(DiscreteLaplace { scale, scale_f64 })
    }

    /// The scale `b` in grid units.
    pub fn scale(&self) -> f64 {
        self.scale_f64
    }

    /// `p = exp(-1/b)`, the ratio between neighbouring probabilities.
    fn ratio(&self) -> f64 {
        if self.scale_f64 == 0.0 {
            0.0
        } else {
            (-1.0 / self.scale_f64).exp()
        }
    }

    /// Draws one noise value.
    pub fn sample(&self) -> Result<i128, DpError> {
        if crate::testing::noise_off() {
            return Ok(0);
        }
        let z = sample_discrete_laplace(self.scale.clone()).map_err(|e| DpError::Entropy(e.to_string()))?;
        i128::try_from(z).map_err(|_| DpError::Overflow)
    }

    /// Adds noise to an exact integer value.
    pub fn privatize(&self, exact: i128) -> Result<i128, DpError> {
        exact.checked_add(self.sample()?).ok_or(DpError::Overflow)
    }

    /// `P[Z ≥ k]` for `k ≥ 1`: `p^k / (1 + p)`.
    pub fn upper_tail(&self, k: u64) -> f64 {
        let p = self.ratio();
        if k == 0 {
            return 1.0;
        }
        p.powf(k as f64) / (1.0 + p)
    }

    /// The smallest `w` with `P[|Z| > w] ≤ alpha`: the half-width of a
    /// `1 - alpha` interval around a noisy value, in grid units.
    pub fn half_width(&self, alpha: f64) -> u64 {
        half_width(self.scale_f64, alpha)
    }

    /// The variance of the noise, `2p / (1 - p)^2`.
    pub fn variance(&self) -> f64 {
        let p = self.ratio();
        2.0 * p / ((1.0 - p) * (1.0 - p))
    }
}

/// The smallest `w` with `P[|Z| > w] ≤ alpha` for discrete Laplace noise
/// `Z` of scale `scale` (grid units): the half-width of a `1 - alpha`
/// interval. From `P[|Z| ≥ m] = 2 p^m / (1 + p)` with `p = exp(-1/scale)`
/// (Canonne, Kamath, Steinke 2020). Used to re-level a released value's
/// interval, e.g. at `1 - 0.05/k` for a union bound over k values.
pub fn half_width(scale: f64, alpha: f64) -> u64 {
    let p = if scale == 0.0 { 0.0 } else { (-1.0 / scale).exp() };
    if p == 0.0 {
        return 0;
    }
    let m = ((alpha * (1.0 + p) / 2.0).ln() / p.ln()).ceil();
    if m.is_finite() && m > 1.0 { m as u64 - 1 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_epsilon() {
        for eps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(DiscreteLaplace::calibrated(1, eps).is_err());
        }
    }

    #[test]
    fn zero_sensitivity_adds_no_noise() {
        let m = DiscreteLaplace::calibrated(0, 1.0).expect("calibrate");
        assert_eq!(m.sample().expect("sample"), 0);
        assert_eq!(m.half_width(0.05), 0);
    }

    #[test]
    fn half_width_covers_95_percent_exactly() {
        let m = DiscreteLaplace::calibrated(10, 1.0).expect("calibrate");
        let w = m.half_width(0.05);
        let p = (-1.0f64 / 10.0).exp();
        let outside = |w: u64| 2.0 * p.powf(w as f64 + 1.0) / (1.0 + p);
        assert!(outside(w) <= 0.05, "w = {w} leaves {} outside", outside(w));
        assert!(outside(w - 1) > 0.05, "w = {w} is not the smallest");
        // Close to the continuous Laplace's b·ln(20) ≈ 29.96.
        assert!((28..=31).contains(&w), "w = {w}");
    }

    /// Statistical test: 20 000 draws at scale 4. The empirical variance is
    /// within 6 standard errors of 2p/(1-p)² and the mean within 6 standard
    /// errors of 0; the chance of a false failure is below 1e-8.
    #[test]
    fn empirical_variance_matches_the_calibrated_scale() {
        let m = DiscreteLaplace::calibrated(2, 0.5).expect("calibrate");
        assert_eq!(m.scale(), 4.0);
        let n = 20_000;
        let draws: Vec<f64> = (0..n).map(|_| m.sample().expect("sample") as f64).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
        let theory = m.variance();
        // Fourth moment of a Laplace-like law is 6·(var/2)²·... ; use a
        // generous standard error of var·sqrt(5/n) (kurtosis 6 → (κ-1)/n).
        let se_var = theory * (5.0 / n as f64).sqrt();
        assert!((var - theory).abs() < 6.0 * se_var, "variance {var} vs {theory}");
        let se_mean = (theory / n as f64).sqrt();
        assert!(mean.abs() < 6.0 * se_mean, "mean {mean}");
        // About 95% of draws fall inside the half-width.
        let w = m.half_width(0.05) as f64;
        let inside = draws.iter().filter(|x| x.abs() <= w).count() as f64 / n as f64;
        let expected = 1.0 - 2.0 * m.upper_tail(w as u64 + 1);
        assert!(expected >= 0.95);
        let se = (expected * (1.0 - expected) / n as f64).sqrt();
        assert!((inside - expected).abs() < 6.0 * se, "coverage {inside} vs {expected}");
    }
}
