//! The discrete Laplace and discrete Gaussian mechanisms (Canonne, Kamath,
//! Steinke 2020) on integer-valued queries.
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
use opendp::traits::samplers::{sample_discrete_gaussian, sample_discrete_laplace};

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

/// A calibrated discrete Gaussian mechanism for zero-concentrated DP.
///
/// An integer query with L2 sensitivity Δ₂ plus noise from the discrete
/// Gaussian `N_Z(0, σ²)`, `P[Z = z] ∝ exp(-z² / 2σ²)`, with
/// `σ = Δ₂ / √(2ρ)` is ρ-zCDP (Canonne, Kamath, Steinke 2020, Theorem 4).
/// Sampled by OpenDP's exact sampler (`sample_discrete_gaussian`) with σ
/// passed as a rational at least the calibrated value.
#[derive(Debug, Clone)]
pub struct DiscreteGaussian {
    sigma: RBig,
    sigma_f64: f64,
}

impl DiscreteGaussian {
    /// Calibrates the mechanism for an integer query whose squared L2
    /// sensitivity is `l2_squared` (grid units²), released with ρ-zCDP.
    ///
    /// Errors: [`DpError::InvalidEpsilon`] for ρ not positive and finite
    /// (the error names ε, the unit the analyst chose), [`DpError::Overflow`].
    pub fn calibrated(l2_squared: u128, rho: f64) -> Result<Self, DpError> {
        if !(rho.is_finite() && rho > 0.0) {
            return Err(DpError::InvalidEpsilon(rho));
        }
        // σ = √(Δ₂² / 2ρ), rounded up: the f64 square root may be one ulp
        // low, and a larger σ only adds noise.
        let sigma = (l2_squared as f64 / (2.0 * rho)).sqrt() * (1.0 + 1e-12);
        if !sigma.is_finite() {
            return Err(DpError::Overflow);
        }
        let exact = RBig::try_from(sigma).map_err(|_| DpError::Overflow)?;
        Ok(DiscreteGaussian {
            sigma: exact,
            sigma_f64: sigma,
        })
    }

    /// σ in grid units.
    pub fn sigma(&self) -> f64 {
        self.sigma_f64
    }

    /// Draws one noise value.
    pub fn sample(&self) -> Result<i128, DpError> {
        if crate::testing::noise_off() {
            return Ok(0);
        }
        let z = sample_discrete_gaussian(self.sigma.clone()).map_err(|e| DpError::Entropy(e.to_string()))?;
        i128::try_from(z).map_err(|_| DpError::Overflow)
    }

    /// An upper bound on `P[|Z| ≥ m]`: with `f(x) = exp(-x²/2σ²)`, the
    /// tail sum `Σ_{k≥m} f(k) ≤ f(m) + ∫_m^∞ f = f(m) + σ√(π/2)·erfc(m/(σ√2))`
    /// (f decreases on `[m, ∞)`) and the normaliser `Σ_k f(k) ≥ max(1,
    /// σ√(2π))` (its k = 0 term, and Poisson summation), so `P[|Z| ≥ m] ≤
    /// 2 (f(m) + σ√(π/2)·erfc(m/(σ√2))) / max(1, σ√(2π))`.
    pub fn tail_bound(&self, m: u64) -> f64 {
        gaussian_tail_bound(self.sigma_f64, m)
    }

    /// The smallest `w` with (an upper bound on) `P[|Z| > w] ≤ alpha`: a
    /// conservative half-width of a `1 - alpha` interval, in grid units.
    pub fn half_width(&self, alpha: f64) -> u64 {
        gaussian_half_width(self.sigma_f64, alpha)
    }

    /// The variance of the noise, at most σ² (Canonne, Kamath, Steinke
    /// 2020, Proposition 19); σ² is reported.
    pub fn variance(&self) -> f64 {
        self.sigma_f64 * self.sigma_f64
    }
}

/// See [`DiscreteGaussian::tail_bound`].
pub fn gaussian_tail_bound(sigma: f64, m: u64) -> f64 {
    if m == 0 {
        return 1.0;
    }
    if sigma == 0.0 {
        return 0.0;
    }
    let x = m as f64;
    let f = (-x * x / (2.0 * sigma * sigma)).exp();
    let norm = (sigma * (2.0 * std::f64::consts::PI).sqrt()).max(1.0);
    let integral = sigma * (std::f64::consts::PI / 2.0).sqrt() * libm::erfc(x / (sigma * std::f64::consts::SQRT_2));
    (2.0 * (f + integral) / norm).min(1.0)
}

/// The smallest `w` with `gaussian_tail_bound(sigma, w + 1) ≤ alpha`.
pub fn gaussian_half_width(sigma: f64, alpha: f64) -> u64 {
    if sigma == 0.0 || !(alpha > 0.0 && alpha < 1.0) {
        return 0;
    }
    // The bound is decreasing in m; search between 1 and a point far in
    // the tail (erfc(40/√2) is far below any α used here).
    let (mut lo, mut hi) = (1u64, (sigma * 40.0).ceil() as u64 + 2);
    if gaussian_tail_bound(sigma, lo) <= alpha {
        return 0;
    }
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if gaussian_tail_bound(sigma, mid) <= alpha {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi - 1
}

/// The noise one statistic gets: discrete Laplace (ε-DP, L1 calibration)
/// or discrete Gaussian (ρ-zCDP, L2 calibration).
#[derive(Debug, Clone)]
pub enum Noise {
    Laplace(DiscreteLaplace),
    Gaussian(DiscreteGaussian),
}

impl Noise {
    /// Adds noise to an exact integer value.
    pub fn privatize(&self, exact: i128) -> Result<i128, DpError> {
        let z = match self {
            Noise::Laplace(m) => m.sample()?,
            Noise::Gaussian(m) => m.sample()?,
        };
        exact.checked_add(z).ok_or(DpError::Overflow)
    }

    /// The scale in grid units: Laplace `b`, or Gaussian σ.
    pub fn scale(&self) -> f64 {
        match self {
            Noise::Laplace(m) => m.scale(),
            Noise::Gaussian(m) => m.sigma(),
        }
    }

    /// The half-width of a `1 - alpha` interval in grid units (exact for
    /// Laplace, a conservative bound for the Gaussian).
    pub fn half_width(&self, alpha: f64) -> u64 {
        match self {
            Noise::Laplace(m) => m.half_width(alpha),
            Noise::Gaussian(m) => m.half_width(alpha),
        }
    }

    pub fn variance(&self) -> f64 {
        match self {
            Noise::Laplace(m) => m.variance(),
            Noise::Gaussian(m) => m.variance(),
        }
    }

    /// The mechanism's name as releases show it.
    pub fn name(&self) -> &'static str {
        match self {
            Noise::Laplace(_) => DISCRETE_LAPLACE,
            Noise::Gaussian(_) => DISCRETE_GAUSSIAN,
        }
    }
}

/// Name of the discrete Laplace mechanism in released cells.
pub const DISCRETE_LAPLACE: &str = "discrete_laplace";
/// Name of the discrete Gaussian mechanism in released cells.
pub const DISCRETE_GAUSSIAN: &str = "discrete_gaussian";

/// The half-width of a `1 - alpha` interval for noise of mechanism `name`
/// (as released cells name it) with scale `scale` in grid units; `None`
/// for a name this crate does not know.
pub fn half_width_of(name: &str, scale: f64, alpha: f64) -> Option<u64> {
    match name {
        DISCRETE_LAPLACE => Some(half_width(scale, alpha)),
        DISCRETE_GAUSSIAN => Some(gaussian_half_width(scale, alpha)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_sigma_is_calibrated_to_the_l2_sensitivity() {
        // Δ₂² = 8, ρ = 0.5: σ = √8 ≈ 2.83.
        let m = DiscreteGaussian::calibrated(8, 0.5).expect("calibrate");
        assert!((m.sigma() - 8f64.sqrt()).abs() < 1e-9);
        assert!(m.sigma() >= 8f64.sqrt());
        for rho in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(DiscreteGaussian::calibrated(1, rho).is_err());
        }
        assert_eq!(DiscreteGaussian::calibrated(0, 1.0).expect("zero").half_width(0.05), 0);
    }

    /// The half-width bound is conservative but close: at σ = 100 the exact
    /// continuous 95% half-width is 196; the bound may not be below it and
    /// is within 2% of it.
    #[test]
    fn gaussian_half_width_is_conservative_and_tight() {
        let w = gaussian_half_width(100.0, 0.05);
        assert!((196..=200).contains(&w), "w = {w}");
        // Small σ: the exact discrete tail, summed, is within the bound.
        for sigma in [0.3, 1.0, 2.5, 7.0] {
            let pmf = |k: i64| (-(k * k) as f64 / (2.0 * sigma * sigma)).exp();
            let norm: f64 = (-200..=200).map(pmf).sum();
            for m in 1..30u64 {
                let exact: f64 = (-200..=200)
                    .filter(|k: &i64| k.unsigned_abs() >= m)
                    .map(pmf)
                    .sum::<f64>()
                    / norm;
                assert!(gaussian_tail_bound(sigma, m) >= exact - 1e-15, "σ {sigma} m {m}");
            }
            let w = gaussian_half_width(sigma, 0.05);
            let outside: f64 = (-200..=200)
                .filter(|k: &i64| k.unsigned_abs() > w)
                .map(pmf)
                .sum::<f64>()
                / norm;
            assert!(outside <= 0.05, "σ {sigma}: w {w} leaves {outside}");
        }
    }

    /// Statistical test: 20 000 draws at σ = 5. The empirical variance is
    /// within 6 standard errors of σ² (the discrete Gaussian's variance is
    /// σ² up to 1e-40 at this σ) and the 95% half-width covers at least
    /// 95% of draws less 6 standard errors.
    #[test]
    fn gaussian_draws_match_the_calibration() {
        let m = DiscreteGaussian::calibrated(50, 1.0).expect("calibrate");
        assert!((m.sigma() - 5.0).abs() < 1e-9);
        let n = 20_000;
        let draws: Vec<f64> = (0..n).map(|_| m.sample().expect("sample") as f64).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
        let se_var = 25.0 * (2.0 / n as f64).sqrt();
        assert!((var - 25.0).abs() < 6.0 * se_var, "variance {var}");
        assert!(mean.abs() < 6.0 * (25.0 / n as f64).sqrt(), "mean {mean}");
        let w = m.half_width(0.05) as f64;
        let inside = draws.iter().filter(|x| x.abs() <= w).count() as f64 / n as f64;
        assert!(
            inside >= 0.95 - 6.0 * (0.05 * 0.95 / n as f64).sqrt(),
            "coverage {inside}"
        );
    }

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
