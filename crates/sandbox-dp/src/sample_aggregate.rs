//! Sample-and-aggregate (Nissim, Raskhodnikova, Smith 2007; GUPT, Mohan et
//! al. 2012) for analyses written as arbitrary programs.
//!
//! The rows are split into `k` disjoint blocks **by privacy unit** (all rows
//! of a unit land in one block), the program runs on each block and returns
//! a vector of `d` numbers, each coordinate is clamped to the range the job
//! declared, and the average over blocks is released with noise. Adding or
//! removing one unit changes one block's output, so each coordinate's
//! average moves by at most `range / k`. ε is split equally over the `d`
//! coordinates: coordinate `i` gets discrete Laplace noise of scale
//! `range_i · d / (k · ε)` in output units (on a 2²⁰-step grid per range, so
//! sums are exact integers).
//!
//! A block whose program fails (trap, timeout, bad output, NaN) contributes
//! a fixed default, the midpoint of each range, so failures are not a side
//! channel: the release depends on them only as it depends on any output.

use crate::DpError;
use crate::aggregate::NoisyValue;
use crate::noise::DiscreteLaplace;

const STEPS: i64 = 1 << 20;

/// A calibrated sample-and-aggregate release.
#[derive(Debug, Clone)]
pub struct SampleAggregate {
    blocks: usize,
    ranges: Vec<(f64, f64)>,
    mechanism: DiscreteLaplace,
}

impl SampleAggregate {
    /// `ranges`: the declared range of each output coordinate; `blocks`: k.
    pub fn new(ranges: Vec<(f64, f64)>, blocks: usize, epsilon: f64) -> Result<Self, DpError> {
        if ranges.is_empty() {
            return Err(DpError::Internal("an analysis needs at least one output"));
        }
        for &(lo, hi) in &ranges {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(DpError::InvalidBounds(lo, hi));
            }
        }
        if blocks == 0 {
            return Err(DpError::InvalidContributionBound { name: "blocks" });
        }
        let share = epsilon / ranges.len() as f64;
        let mechanism = DiscreteLaplace::calibrated(STEPS as u128, share)?;
        Ok(SampleAggregate {
            blocks,
            ranges,
            mechanism,
        })
    }

    pub fn blocks(&self) -> usize {
        self.blocks
    }

    pub fn dimension(&self) -> usize {
        self.ranges.len()
    }

    /// Noise scale of coordinate `i` in output units: `range · d / (k · ε)`.
    pub fn scale(&self, i: usize) -> f64 {
        self.ranges.get(i).map_or(f64::NAN, |(lo, hi)| {
            self.mechanism.scale() * (hi - lo) / STEPS as f64 / self.blocks as f64
        })
    }

    fn grid(&self, i: usize, x: f64) -> i64 {
        let (lo, hi) = self.ranges[i];
        let x = if x.is_nan() { (lo + hi) / 2.0 } else { x.clamp(lo, hi) };
        (((x - lo) / (hi - lo)) * STEPS as f64).round().clamp(0.0, STEPS as f64) as i64
    }

    /// The clamped block average per coordinate, without noise (tests and
    /// the operator's diagnostics only; never released).
    pub fn exact_mean(&self, outputs: &[Option<Vec<f64>>]) -> Result<Vec<f64>, DpError> {
        let sums = self.sums(outputs)?;
        Ok(sums
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (lo, hi) = self.ranges[i];
                lo + *s as f64 * (hi - lo) / STEPS as f64 / self.blocks as f64
            })
            .collect())
    }

    fn sums(&self, outputs: &[Option<Vec<f64>>]) -> Result<Vec<i128>, DpError> {
        if outputs.len() != self.blocks {
            return Err(DpError::Internal("one output per block is required"));
        }
        let d = self.ranges.len();
        let mut sums = vec![0i128; d];
        for out in outputs {
            for (i, s) in sums.iter_mut().enumerate() {
                let v = match out {
                    Some(v) if v.len() == d => v[i],
                    // A failed block, or one of the wrong dimension: the default.
                    _ => f64::NAN,
                };
                *s += self.grid(i, v) as i128;
            }
        }
        Ok(sums)
    }

    /// Releases the noisy average of the block outputs (one entry per
    /// block, `None` for a block that failed).
    pub fn release(&self, outputs: &[Option<Vec<f64>>]) -> Result<Vec<NoisyValue>, DpError> {
        let sums = self.sums(outputs)?;
        let k = self.blocks as f64;
        let w = self.mechanism.half_width(0.05) as f64;
        sums.iter()
            .enumerate()
            .map(|(i, &s)| {
                let (lo, hi) = self.ranges[i];
                let q = (hi - lo) / STEPS as f64;
                let noisy = self.mechanism.privatize(s)? as f64;
                let mean = |g: f64| lo + g * q / k;
                Ok(NoisyValue {
                    value: mean(noisy).clamp(lo, hi),
                    scale: self.scale(i),
                    ci95: (mean(noisy - w).clamp(lo, hi), mean(noisy + w).clamp(lo, hi)),
                })
            })
            .collect()
    }
}

/// A fresh random key (OpenSSL CSPRNG via OpenDP) for assigning privacy
/// units to blocks; it never leaves the job. Fixed (all zeros) only while a
/// neighbouring-database test has switched noise off ([`crate::testing`]).
pub fn random_key() -> Result<[u8; 32], DpError> {
    let mut key = [0u8; 32];
    if crate::testing::noise_off() {
        return Ok(key);
    }
    opendp::traits::samplers::fill_bytes(&mut key).map_err(|e| DpError::Entropy(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_scale_is_range_over_blocks_times_epsilon() {
        let sa = SampleAggregate::new(vec![(-10.0, 10.0)], 40, 0.5).expect("sa");
        assert!((sa.scale(0) - 20.0 / (40.0 * 0.5)).abs() < 1e-9);
        let sa = SampleAggregate::new(vec![(0.0, 1.0), (0.0, 4.0)], 10, 1.0).expect("sa");
        // ε split over two coordinates.
        assert!((sa.scale(1) - 4.0 * 2.0 / 10.0).abs() < 1e-9);
    }

    #[test]
    fn outputs_are_clamped_and_failures_take_the_default() {
        let sa = SampleAggregate::new(vec![(0.0, 1.0)], 4, 1.0).expect("sa");
        let mean = sa
            .exact_mean(&[Some(vec![5.0]), Some(vec![-5.0]), None, Some(vec![f64::NAN])])
            .expect("mean");
        // 1 + 0 + 0.5 + 0.5 over 4 blocks.
        assert!((mean[0] - 0.5).abs() < 1e-6);
        let wrong_dimension = sa.exact_mean(&[Some(vec![1.0, 1.0]), Some(vec![1.0]), Some(vec![1.0]), Some(vec![1.0])]);
        assert!((wrong_dimension.expect("mean")[0] - 0.875).abs() < 1e-6);
        assert!(sa.release(&[Some(vec![1.0])]).is_err(), "one output per block");
    }

    /// 2 000 releases of a 3-block average with ε = 1 and range 2: the mean of
    /// the releases is within 6 standard errors of the clamped average
    /// (clamping at the range edges is far away here).
    #[test]
    fn releases_center_on_the_clamped_average() {
        let sa = SampleAggregate::new(vec![(-1.0, 1.0)], 50, 1.0).expect("sa");
        let outputs: Vec<Option<Vec<f64>>> = (0..50)
            .map(|b| Some(vec![if b % 2 == 0 { 0.2 } else { 0.1 }]))
            .collect();
        let truth = sa.exact_mean(&outputs).expect("mean")[0];
        let n = 2_000;
        let mean = (0..n)
            .map(|_| sa.release(&outputs).expect("release")[0].value)
            .sum::<f64>()
            / n as f64;
        let sd = 2.0f64.sqrt() * sa.scale(0);
        assert!((mean - truth).abs() < 6.0 * sd / (n as f64).sqrt(), "{mean} vs {truth}");
    }
}
