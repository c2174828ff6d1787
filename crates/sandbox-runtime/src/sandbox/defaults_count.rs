//! The DP count of the rows of a SQL job that took a job function's
//! default (see `sandbox_sql::defaults`): its ε-split label, its noise and
//! its release note.

use super::Sandbox;
use crate::RuntimeError;
use crate::release::bounds;
use crate::rules::ReleaseRules;
use sandbox_dp::noise::DiscreteLaplace;
use sandbox_model::DefaultsCount;

/// The ε-split label of the noisy count of rows that took a job function's default.
pub const DEFAULTS_PART: &str = "rows using a function's default";

/// The release note that states the noisy count of defaulted rows.
pub(super) fn defaults_note(d: &DefaultsCount) -> String {
    format!(
        "{DEFAULTS_PART}: about {:.0} (a noisy count, ±{:.0} at 95 %, ε {}): a row whose WebAssembly function call \
         failed (a trap, an error, a wrong number of values) takes the midpoint of the function's bounds; each \
         privacy unit counts at most its bounded number of rows",
        d.noisy, d.half_width_95, d.epsilon
    )
}

impl Sandbox {
    /// The noisy count of rows that took a job function's default (see
    /// `sandbox_sql::defaults`): `exact` is the count bounded by the job's
    /// own bounding (each unit counts at most `min(G · R, L)` rows, G as
    /// calibrated for the query's groups), the sensitivity of the discrete
    /// Laplace noise drawn with `epsilon` (the job's
    /// [`DEFAULT_COUNT_SHARE`]).
    pub(super) fn release_defaults(
        &self,
        exact: u64,
        rules: &ReleaseRules,
        public_count: Option<usize>,
        epsilon: f64,
    ) -> Result<DefaultsCount, RuntimeError> {
        let b = bounds(rules)?;
        let cap = b.rows_per_unit(b.effective_groups(public_count));
        crate::testing::record_defaults(exact, cap);
        let mechanism = DiscreteLaplace::calibrated(u128::from(cap), epsilon)?;
        let noisy = mechanism.privatize(i128::from(exact))?.max(0);
        Ok(DefaultsCount {
            unit: "rows".into(),
            noisy: noisy as f64,
            out_of: None,
            half_width_95: mechanism.half_width(0.05) as f64,
            epsilon,
        })
    }
}
