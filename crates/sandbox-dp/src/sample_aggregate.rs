//! Sample-and-aggregate (Nissim, Raskhodnikova, Smith 2007; GUPT, Mohan et
//! al. 2012) for analyses written as arbitrary programs.
//!
//! The rows are split into `k` disjoint blocks **by privacy unit** (all rows
//! of a unit land in one block), the program runs on each block and returns
//! a vector of `d` numbers, each coordinate is clamped to the range the job
//! declared, and the average over blocks is released with noise. Adding or
//! removing one unit changes one block's output, so each coordinate's
//! average moves by at most `range / k`.
//!
//! A block whose program fails (trap, timeout, bad output, NaN) contributes
//! a fixed default, the midpoint of each range, so failures are not a side
//! channel: the release depends on them only as it depends on any output.
//! So that an analyst learns when most of a result is defaults, the number
//! of blocks that used the default (empty, failed, or with a NaN output) is
//! released too, as a noisy count: one unit changes one block, so the count
//! moves by at most 1.
//!
//! **The ε split.** [`DEFAULT_COUNT_SHARE`] (10 %) of the job's ε goes to
//! that count (discrete Laplace, sensitivity 1, scale `1 / (0.1 ε)`); the
//! other 90 % is split equally over the `d` coordinates: coordinate `i` gets
//! discrete Laplace noise of scale `range_i · d / (k · 0.9 ε)` in output
//! units (on a 2²⁰-step grid per range, so sums are exact integers). The
//! two releases compose sequentially (basic composition): ε in all.

use crate::DpError;
use crate::aggregate::NoisyValue;
use crate::noise::DiscreteLaplace;

const STEPS: i64 = 1 << 20;

/// Share of a sample-and-aggregate job's ε spent on the noisy count of
/// blocks that used the default; the outputs get the rest.
pub const DEFAULT_COUNT_SHARE: f64 = 0.1;

/// A calibrated sample-and-aggregate release.
#[derive(Debug, Clone)]
pub struct SampleAggregate {
    blocks: usize,
    ranges: Vec<(f64, f64)>,
    mechanism: DiscreteLaplace,
    /// The count of blocks that used the default (sensitivity 1).
    defaults: DiscreteLaplace,
    epsilon: f64,
}

impl SampleAggregate {
    /// `ranges`: the declared range of each output coordinate; `blocks`: k;
    /// `epsilon`: the job's whole ε (split as the module docs state).
    ///
    /// # Errors
    /// No range, a range that is not finite with `lower < upper`, no
    /// blocks, or an ε the mechanism cannot be calibrated to.
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
        let outputs_epsilon = epsilon * (1.0 - DEFAULT_COUNT_SHARE);
        let share = outputs_epsilon / ranges.len() as f64;
        let mechanism = DiscreteLaplace::calibrated(STEPS as u128, share)?;
        let defaults = DiscreteLaplace::calibrated(1, epsilon * DEFAULT_COUNT_SHARE)?;
        Ok(SampleAggregate {
            blocks,
            ranges,
            mechanism,
            defaults,
            epsilon,
        })
    }

    pub fn blocks(&self) -> usize {
        self.blocks
    }

    pub fn dimension(&self) -> usize {
        self.ranges.len()
    }

    /// ε spent on the count of blocks that used the default.
    pub fn default_count_epsilon(&self) -> f64 {
        self.epsilon * DEFAULT_COUNT_SHARE
    }

    /// ε spent on the outputs (all coordinates together).
    pub fn outputs_epsilon(&self) -> f64 {
        self.epsilon * (1.0 - DEFAULT_COUNT_SHARE)
    }

    /// Noise scale of the count of blocks that used the default, in blocks:
    /// `1 / (0.1 ε)`.
    pub fn default_count_scale(&self) -> f64 {
        self.defaults.scale()
    }

    /// Half-width of the 95 % interval of that count's noise, in blocks.
    pub fn default_count_half_width(&self) -> f64 {
        self.defaults.half_width(0.05) as f64
    }

    /// Whether a block's output is the default: the block failed (`None`),
    /// returned the wrong number of values, or a NaN output.
    pub fn uses_default(&self, output: &Option<Vec<f64>>) -> bool {
        match output {
            Some(v) => v.len() != self.ranges.len() || v.iter().any(|x| x.is_nan()),
            None => true,
        }
    }

    /// Releases the noisy count of blocks that used the default (see
    /// [`uses_default`](Self::uses_default); an empty block is passed as
    /// `None`), clamped to `[0, k]`. Sensitivity 1: one privacy unit is in
    /// one block.
    ///
    /// # Errors
    /// Not one output per block, or the noise source failed.
    pub fn release_default_count(&self, outputs: &[Option<Vec<f64>>]) -> Result<NoisyValue, DpError> {
        if outputs.len() != self.blocks {
            return Err(DpError::Internal("one output per block is required"));
        }
        let exact = outputs.iter().filter(|o| self.uses_default(o)).count() as i128;
        let noisy = self.defaults.privatize(exact)? as f64;
        let k = self.blocks as f64;
        let w = self.default_count_half_width();
        Ok(NoisyValue {
            value: noisy.clamp(0.0, k),
            scale: self.default_count_scale(),
            ci95: ((noisy - w).clamp(0.0, k), (noisy + w).clamp(0.0, k)),
        })
    }

    /// Noise scale of coordinate `i` in output units: `range · d / (k · 0.9 ε)`.
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
        // 90 % of ε for the outputs, 10 % for the count of defaults.
        let sa = SampleAggregate::new(vec![(-10.0, 10.0)], 40, 0.5).expect("sa");
        assert!((sa.scale(0) - 20.0 / (40.0 * 0.45)).abs() < 1e-9);
        assert!((sa.default_count_scale() - 1.0 / 0.05).abs() < 1e-9);
        assert!((sa.outputs_epsilon() + sa.default_count_epsilon() - 0.5).abs() < 1e-12);
        let sa = SampleAggregate::new(vec![(0.0, 1.0), (0.0, 4.0)], 10, 1.0).expect("sa");
        // The outputs' ε split over two coordinates.
        assert!((sa.scale(1) - 4.0 * 2.0 / (10.0 * 0.9)).abs() < 1e-9);
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

    /// The count of defaults: failed, wrong-dimension and NaN blocks count;
    /// 2 000 releases with ε = 2 (count ε 0.2, scale 5) center on the exact
    /// count of 20 within 6 standard errors, and stay within [0, k].
    ///
    /// 20 of k = 40: the clamp to [0, 40] is symmetric about the truth, so
    /// the released mean is unbiased (an exact count of 12 was biased up by
    /// 0.22 by the clamp at 0, 2.4 scales away, and missed the band with
    /// probability about 2e-7). The clamped values' sd is 6.7, below the
    /// √2 · 5 the band uses: the band is 6.3 of their standard errors,
    /// missed with probability about 3e-10 per run.
    #[test]
    fn the_count_of_defaults_is_noisy_around_the_exact_count() {
        let sa = SampleAggregate::new(vec![(0.0, 1.0)], 40, 2.0).expect("sa");
        let outputs: Vec<Option<Vec<f64>>> = (0..40)
            .map(|b| match b % 4 {
                0 => None,
                1 => Some(vec![f64::NAN]),
                _ => Some(vec![0.5]),
            })
            .collect();
        assert_eq!(outputs.iter().filter(|o| sa.uses_default(o)).count(), 20);
        assert!(sa.uses_default(&Some(vec![1.0, 2.0])), "wrong dimension");
        let n = 2_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let c = sa.release_default_count(&outputs).expect("count");
            assert!((0.0..=40.0).contains(&c.value));
            sum += c.value;
        }
        let sd = 2.0f64.sqrt() * sa.default_count_scale();
        assert!(
            (sum / n as f64 - 20.0).abs() < 6.0 * sd / (n as f64).sqrt(),
            "{}",
            sum / n as f64
        );
        assert!(sa.release_default_count(&outputs[..3]).is_err());
    }
}
