//! Fixed-point grids for bounded measures.
//!
//! Summing `f64` values can break a sensitivity bound through rounding
//! (Mironov 2012; Casacuberta et al. 2022). The sandbox therefore clamps
//! each value to the policy's public bounds, maps it onto an integer grid
//! and sums integers exactly; noise is added on the integer sum and only
//! the released value is converted back to a real number.

use crate::DpError;
use serde::Serialize;

/// Grid steps from the centre to a bound for sums and means: values become
/// integers in `[-2^20, 2^20]`, so an i64 sum is exact for 2^43 rows.
pub const SUM_STEPS: i64 = 1 << 20;
/// Grid steps for variance inputs, whose squares must also fit: values in
/// `[-2^15, 2^15]`, squares below 2^30, exact in i64 for 2^33 rows.
pub const SQUARE_STEPS: i64 = 1 << 15;

/// Maps a measure with public bounds `[lower, upper]` onto an integer grid
/// `round((clamp(x) - center) / quantum)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantizer {
    pub lower: f64,
    pub upper: f64,
    /// Subtracted before quantizing: 0 for sums, the midpoint for means and
    /// variances (which halves their sensitivity).
    pub center: f64,
    /// The real value of one grid step.
    pub quantum: f64,
    /// The largest |grid value| a clamped row can take.
    pub max_abs: i64,
}

impl Quantizer {
    fn new(lower: f64, upper: f64, center: f64, steps: i64) -> Result<Self, DpError> {
        if !(lower.is_finite() && upper.is_finite() && lower < upper) {
            return Err(DpError::InvalidBounds(lower, upper));
        }
        let reach = (lower - center).abs().max((upper - center).abs());
        let quantum = reach / steps as f64;
        if !(quantum.is_finite() && quantum > 0.0) {
            return Err(DpError::InvalidBounds(lower, upper));
        }
        Ok(Quantizer {
            lower,
            upper,
            center,
            quantum,
            max_abs: steps,
        })
    }

    /// For SUM: uncentred, so the sum of grid values is the sum.
    pub fn for_sum(lower: f64, upper: f64) -> Result<Self, DpError> {
        Self::new(lower, upper, 0.0, SUM_STEPS)
    }

    /// For AVG: centred on the midpoint.
    pub fn for_mean(lower: f64, upper: f64) -> Result<Self, DpError> {
        Self::new(lower, upper, (lower + upper) / 2.0, SUM_STEPS)
    }

    /// For VARIANCE and STDDEV: centred, on the coarser square-safe grid.
    pub fn for_variance(lower: f64, upper: f64) -> Result<Self, DpError> {
        Self::new(lower, upper, (lower + upper) / 2.0, SQUARE_STEPS)
    }

    /// The grid value of one row (the SQL engine computes the same thing
    /// vectorised; this is the reference used by tests and WebAssembly
    /// outputs).
    pub fn to_grid(&self, x: f64) -> Option<i64> {
        if x.is_nan() {
            return None;
        }
        let v = ((x.clamp(self.lower, self.upper) - self.center) / self.quantum).round() as i64;
        Some(v.clamp(-self.max_abs, self.max_abs))
    }

    /// The real value of a grid sum of `count` rows.
    pub fn sum_from_grid(&self, grid_sum: f64, count: f64) -> f64 {
        grid_sum * self.quantum + self.center * count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_values_stay_within_max_abs() {
        let q = Quantizer::for_sum(-5.0, 500_000.0).expect("q");
        assert_eq!(q.to_grid(1e12), Some(q.max_abs));
        assert_eq!(q.to_grid(-1e12).map(|v| v.abs() <= q.max_abs), Some(true));
        assert_eq!(q.to_grid(f64::NAN), None);
        let back = q.to_grid(123_456.7).expect("value") as f64 * q.quantum;
        assert!((back - 123_456.7).abs() <= q.quantum);
    }

    #[test]
    fn centred_grid_halves_the_reach() {
        let q = Quantizer::for_mean(0.0, 100.0).expect("q");
        assert_eq!(q.center, 50.0);
        assert_eq!(q.to_grid(100.0), Some(SUM_STEPS));
        assert_eq!(q.to_grid(0.0), Some(-SUM_STEPS));
        assert!((q.sum_from_grid(0.0, 3.0) - 150.0).abs() < 1e-9);
    }

    #[test]
    fn rejects_bad_bounds() {
        assert!(Quantizer::for_sum(1.0, 1.0).is_err());
        assert!(Quantizer::for_sum(f64::NAN, 1.0).is_err());
        assert!(Quantizer::for_mean(2.0, 1.0).is_err());
    }
}
