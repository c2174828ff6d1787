//! Example guest: the analysis `default_model`, a logistic regression of loan
//! default on electricity use and gas use.
//!
//! Input: a block (one record batch) with numeric columns `electricity_kwh`,
//! `gas_m3` and `defaulted` (0/1; any integer or float type). Output, in
//! order, each declared in `[-10, 10]` (the host clamps to these bounds and
//! adds its privacy noise, e.g. by sample-and-aggregate over blocks):
//!
//! | output         | meaning                                                        |
//! |----------------|----------------------------------------------------------------|
//! | `intercept`    | log-odds of default at the block's mean of both features       |
//! | `coef_log_kwh` | change in log-odds per standard deviation of `ln(1 + kWh)`     |
//! | `coef_log_gas` | change in log-odds per standard deviation of `ln(1 + gas)`     |
//!
//! The features are `ln(1 + max(x, 0))`, standardized with the block's own
//! mean and (population) standard deviation. The fit is Newton's method on
//! the penalized log-likelihood, a fixed [`ITERATIONS`] steps from zero —
//! deterministic, no randomness, same answer on every run — with a ridge
//! penalty [`RIDGE`] on the two slopes and a weak one, [`INTERCEPT_RIDGE`], on
//! the intercept, so that the fit stays finite when a block has only one
//! outcome or separates perfectly.
//!
//! Rows with a null (NaN) in any of the three columns are skipped; `defaulted`
//! counts as 1 when it is at least 0.5. Degenerate blocks give zeros:
//! a block with fewer than [`MIN_ROWS`] usable rows returns `[0, 0, 0]`; a
//! feature that is constant in the block gets coefficient 0; a fit that is
//! not finite (it cannot be, but the guard is cheap) returns `[0, 0, 0]`.

use sandbox_sdk::{RecordBatch, SdkError, column_f64, export};

/// Newton steps taken from the zero start (no early stopping).
pub const ITERATIONS: usize = 25;
/// Ridge penalty on each standardized slope.
pub const RIDGE: f64 = 1.0;
/// Ridge penalty on the intercept (keeps one-outcome blocks finite).
pub const INTERCEPT_RIDGE: f64 = 0.01;
/// Fewer usable rows than this and the block returns zeros.
pub const MIN_ROWS: usize = 10;

/// Fit the model on one block: `[intercept, coef_log_kwh, coef_log_gas]`.
pub fn default_model(batch: &RecordBatch) -> Result<[f64; 3], SdkError> {
    let kwh = column_f64(batch, "electricity_kwh")?;
    let gas = column_f64(batch, "gas_m3")?;
    let defaulted = column_f64(batch, "defaulted")?;
    Ok(fit(&kwh, &gas, &defaulted))
}

/// The fit itself, on plain columns (see the crate docs).
pub fn fit(kwh: &[f64], gas: &[f64], defaulted: &[f64]) -> [f64; 3] {
    let mut x1 = Vec::with_capacity(kwh.len());
    let mut x2 = Vec::with_capacity(kwh.len());
    let mut y = Vec::with_capacity(kwh.len());
    for ((&k, &t), &d) in kwh.iter().zip(gas).zip(defaulted) {
        if k.is_nan() || t.is_nan() || d.is_nan() {
            continue;
        }
        x1.push(k.max(0.0).ln_1p());
        x2.push(t.max(0.0).ln_1p());
        y.push(if d >= 0.5 { 1.0 } else { 0.0 });
    }
    if y.len() < MIN_ROWS {
        return [0.0; 3];
    }
    standardize(&mut x1);
    standardize(&mut x2);

    let penalty = [INTERCEPT_RIDGE, RIDGE, RIDGE];
    let mut w = [0.0f64; 3];
    for _ in 0..ITERATIONS {
        // Gradient and Hessian of the penalized log-likelihood (ascent).
        let mut g = [0.0f64; 3];
        let mut h = [[0.0f64; 3]; 3];
        for i in 0..y.len() {
            let x = [1.0, x1[i], x2[i]];
            let p = sigmoid(w[0] + w[1] * x[1] + w[2] * x[2]);
            let r = y[i] - p;
            let s = p * (1.0 - p);
            for a in 0..3 {
                g[a] += r * x[a];
                for b in 0..3 {
                    h[a][b] += s * x[a] * x[b];
                }
            }
        }
        for a in 0..3 {
            g[a] -= penalty[a] * w[a];
            h[a][a] += penalty[a];
        }
        let Some(step) = solve3(h, g) else { break };
        for a in 0..3 {
            w[a] += step[a];
        }
    }
    if w.iter().all(|v| v.is_finite()) { w } else { [0.0; 3] }
}

/// Centre and scale to unit (population) variance; a constant column becomes
/// all zeros.
fn standardize(x: &mut [f64]) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let sd = var.sqrt();
    for v in x.iter_mut() {
        *v = if sd > 1e-12 { (*v - mean) / sd } else { 0.0 };
    }
}

fn sigmoid(eta: f64) -> f64 {
    if eta >= 0.0 {
        1.0 / (1.0 + (-eta).exp())
    } else {
        let e = eta.exp();
        e / (1.0 + e)
    }
}

/// Solve `h · s = g` by Gaussian elimination with partial pivoting; `None` if
/// `h` is (numerically) singular.
fn solve3(mut h: [[f64; 3]; 3], mut g: [f64; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let pivot = (col..3).max_by(|&a, &b| h[a][col].abs().total_cmp(&h[b][col].abs()))?;
        if h[pivot][col].abs() < 1e-12 {
            return None;
        }
        h.swap(col, pivot);
        g.swap(col, pivot);
        for row in col + 1..3 {
            let f = h[row][col] / h[col][col];
            let pivot_row = h[col];
            for (hk, pk) in h[row][col..].iter_mut().zip(&pivot_row[col..]) {
                *hk -= f * pk;
            }
            g[row] -= f * g[col];
        }
    }
    let mut s = [0.0f64; 3];
    for row in (0..3).rev() {
        let tail: f64 = (row + 1..3).map(|k| h[row][k] * s[k]).sum();
        s[row] = (g[row] - tail) / h[row][row];
    }
    Some(s)
}

export! {
    analysis default_model(batch: &RecordBatch) -> [
        intercept in [-10.0, 10.0],
        coef_log_kwh in [-10.0, 10.0],
        coef_log_gas in [-10.0, 10.0],
    ] => default_model;
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_sdk::arrow_array::{ArrayRef, Float64Array, Int64Array};
    use sandbox_sdk::ipc;
    use std::sync::Arc;

    /// A small deterministic generator (64-bit LCG), uniform in (0, 1).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            (-2.0 * self.next().ln()).sqrt() * (2.0 * std::f64::consts::PI * self.next()).cos()
        }
    }

    /// `n` rows whose log-features are standard normal (so standardization is
    /// nearly the identity) and whose defaults follow `truth`.
    fn synthetic(n: usize, truth: [f64; 3], seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut rng = Lcg(seed);
        let (mut k, mut t, mut d) = (vec![], vec![], vec![]);
        for _ in 0..n {
            let (z1, z2) = (rng.normal(), rng.normal());
            let p = sigmoid(truth[0] + truth[1] * z1 + truth[2] * z2);
            k.push((7.5 + z1).exp_m1());
            t.push((3.5 + z2).exp_m1());
            d.push(if rng.next() < p { 1.0 } else { 0.0 });
        }
        (k, t, d)
    }

    #[test]
    fn recovers_known_coefficients() {
        let truth = [-1.0, -0.8, 0.5];
        let (k, t, d) = synthetic(20_000, truth, 7);
        let w = fit(&k, &t, &d);
        for a in 0..3 {
            assert!(
                (w[a] - truth[a]).abs() < 0.1,
                "coefficient {a}: {} vs {}",
                w[a],
                truth[a]
            );
        }
    }

    #[test]
    fn deterministic() {
        let (k, t, d) = synthetic(3_000, [-2.0, -0.5, -0.5], 42);
        assert_eq!(fit(&k, &t, &d), fit(&k, &t, &d));
    }

    #[test]
    fn degenerate_blocks() {
        assert_eq!(fit(&[], &[], &[]), [0.0; 3]);
        let few = [1.0; 9];
        assert_eq!(fit(&few, &few, &few), [0.0; 3]);
        // Nulls are skipped: 20 rows but only 5 usable.
        let mut k = vec![f64::NAN; 15];
        k.extend([1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(fit(&k, &[1.0; 20], &[0.0; 20]), [0.0; 3]);
        // Constant features: coefficients 0, intercept the (shrunk) log-odds.
        let d: Vec<f64> = (0..100).map(|i| if i % 4 == 0 { 1.0 } else { 0.0 }).collect();
        let w = fit(&[500.0; 100], &[10.0; 100], &d);
        assert_eq!(&w[1..], &[0.0, 0.0]);
        assert!((w[0] - (0.25f64 / 0.75).ln()).abs() < 0.01, "{w:?}");
        // One outcome only: finite, strongly negative intercept.
        let (k, t, _) = synthetic(200, [0.0; 3], 3);
        let w = fit(&k, &t, &[0.0; 200]);
        assert!(w.iter().all(|v| v.is_finite()));
        assert!(w[0] < -4.0, "{w:?}");
    }

    #[test]
    fn manifest_and_ipc_call() {
        assert_eq!(
            SANDBOX_JOB.manifest_json(),
            concat!(
                r#"{"abi":1,"udfs":[],"analysis":{"name":"default_model","outputs":["#,
                r#"{"name":"intercept","lower":-10.0,"upper":10.0},"#,
                r#"{"name":"coef_log_kwh","lower":-10.0,"upper":10.0},"#,
                r#"{"name":"coef_log_gas","lower":-10.0,"upper":10.0}]}}"#
            )
        );
        let (k, t, d) = synthetic(500, [-2.0, -1.0, -0.5], 9);
        // `defaulted` as Int64, as the bank's table stores it.
        let d_int: Vec<i64> = d.iter().map(|v| *v as i64).collect();
        let batch = RecordBatch::try_from_iter([
            ("electricity_kwh", Arc::new(Float64Array::from(k.clone())) as ArrayRef),
            ("gas_m3", Arc::new(Float64Array::from(t.clone())) as ArrayRef),
            ("defaulted", Arc::new(Int64Array::from(d_int)) as ArrayRef),
        ])
        .unwrap();
        let out = SANDBOX_JOB.analyze_ipc(&ipc::encode_batch(&batch).unwrap()).unwrap();
        assert_eq!(ipc::decode_f64s(&out).unwrap(), fit(&k, &t, &d).to_vec());

        let missing = RecordBatch::try_from_iter([("gas_m3", Arc::new(Float64Array::from(t)) as ArrayRef)]).unwrap();
        assert_eq!(
            SANDBOX_JOB.analyze(&missing).unwrap_err().code(),
            sandbox_sdk::sandbox_abi::ERR_BAD_INPUT
        );
    }
}
