//! Example guest: a credit-risk scoring UDF for the data sandbox.
//!
//! `risk_score(electricity_kwh, tax_paid) -> f64 in [0, 1]` is a fixed
//! logistic score, the probability-like risk that an entity defaults:
//!
//! ```text
//! z = INTERCEPT + KWH_WEIGHT * (ln(1 + kwh) - TYPICAL_LOG_KWH)
//!               + TAX_WEIGHT * (ln(1 + tax) - TYPICAL_LOG_TAX)
//! risk_score = 1 / (1 + e^-z)
//! ```
//!
//! Both weights are negative, so **lower electricity use and lower tax paid
//! mean higher risk** — a firm that is winding down uses less power and pays
//! less tax. The centres are those of a typical entity in the sandbox's
//! synthetic data (about 1,800 kWh a month, about 32 (万元) of tax a year),
//! where the score is `1/(1 + e^2.7)` ≈ 6 %, the base default rate. Negative
//! inputs are treated as 0; a null (NaN) input gives a NaN score, which the
//! host passes on as "unknown". The host clamps every score to `[0, 1]`.
//!
//! In SQL, once the guest is registered: `SELECT risk_score(electricity_kwh,
//! tax_paid) FROM ...`, used like any other scalar function.

use sandbox_sdk::export;
use sandbox_sdk::libm::{exp, log1p};

/// Log-odds of default of a typical entity (≈ 6 %).
pub const INTERCEPT: f64 = -2.7;
/// Change in log-odds per unit of `ln(1 + monthly kWh)`.
pub const KWH_WEIGHT: f64 = -0.6;
/// Change in log-odds per unit of `ln(1 + tax paid)`.
pub const TAX_WEIGHT: f64 = -0.5;
/// `ln(1 + kWh)` of a typical entity (≈ 1,800 kWh a month).
pub const TYPICAL_LOG_KWH: f64 = 7.5;
/// `ln(1 + tax paid)` of a typical entity (≈ 32).
pub const TYPICAL_LOG_TAX: f64 = 3.5;

/// The score of one entity, in `[0, 1]` (NaN if an input is NaN).
///
/// The math comes from `sandbox_sdk::libm`, so the score has the same bits
/// in the sandbox as natively (`f64::ln_1p` would use the C library natively
/// and a different implementation in WebAssembly).
pub fn risk_score(electricity_kwh: f64, tax_paid: f64) -> f64 {
    let z = INTERCEPT
        + KWH_WEIGHT * (log1p(electricity_kwh.max(0.0)) - TYPICAL_LOG_KWH)
        + TAX_WEIGHT * (log1p(tax_paid.max(0.0)) - TYPICAL_LOG_TAX);
    // `f64::max` ignores a NaN operand, so restore NaN for missing inputs.
    if electricity_kwh.is_nan() || tax_paid.is_nan() {
        return f64::NAN;
    }
    1.0 / (1.0 + exp(-z))
}

export! {
    udf risk_score(electricity_kwh: f64, tax_paid: f64) -> f64 in [0.0, 1.0] => risk_score;
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_sdk::arrow_array::{ArrayRef, Float64Array};
    use sandbox_sdk::{RecordBatch, ipc};
    use std::sync::Arc;

    #[test]
    fn typical_entity_has_the_base_rate() {
        let typical = risk_score(TYPICAL_LOG_KWH.exp_m1(), TYPICAL_LOG_TAX.exp_m1());
        assert!((typical - 1.0 / (1.0 + 2.7f64.exp())).abs() < 1e-12);
        assert!((0.05..0.08).contains(&typical));
    }

    #[test]
    fn less_power_and_less_tax_mean_more_risk() {
        let grid = [0.0, 10.0, 100.0, 1_000.0, 10_000.0, 1e6];
        for w in grid.windows(2) {
            assert!(risk_score(w[0], 50.0) > risk_score(w[1], 50.0));
            assert!(risk_score(2_000.0, w[0]) > risk_score(2_000.0, w[1]));
        }
        for kwh in grid {
            for tax in grid {
                let s = risk_score(kwh, tax);
                assert!((0.0..=1.0).contains(&s), "{kwh} {tax} -> {s}");
            }
        }
        assert!(risk_score(0.0, 0.0) > 0.5, "no power and no tax is high risk");
        assert_eq!(risk_score(-5.0, -1.0), risk_score(0.0, 0.0));
    }

    #[test]
    fn missing_inputs_give_nan() {
        assert!(risk_score(f64::NAN, 1.0).is_nan());
        assert!(risk_score(1.0, f64::NAN).is_nan());
    }

    #[test]
    fn manifest_and_ipc_call() {
        assert_eq!(
            SANDBOX_JOB.manifest_json(),
            r#"{"abi":1,"udfs":[{"name":"risk_score","args":["float64","float64"],"returns":"float64","bounds":[0.0,1.0]}]}"#
        );
        let batch = RecordBatch::try_from_iter([
            (
                "electricity_kwh",
                Arc::new(Float64Array::from(vec![Some(100.0), Some(5_000.0), None])) as ArrayRef,
            ),
            (
                "tax_paid",
                Arc::new(Float64Array::from(vec![1.0, 200.0, 3.0])) as ArrayRef,
            ),
        ])
        .unwrap();
        let out = SANDBOX_JOB
            .call_udf_ipc("risk_score", &ipc::encode_batch(&batch).unwrap())
            .unwrap();
        let scores = ipc::decode_result(&out).unwrap();
        assert_eq!(scores[0], risk_score(100.0, 1.0));
        assert_eq!(scores[1], risk_score(5_000.0, 200.0));
        assert!(scores[0] > scores[1]);
        assert!(scores[2].is_nan());
    }
}
