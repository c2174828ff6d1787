//! Release traces for neighbouring-database tests.
//!
//! With the `neighbouring-tests` feature (debug builds only, see
//! `sandbox_dp::testing`), and only while a test has switched noise off,
//! every DP release records what its noise was added to: per candidate
//! group the bounded unit count and each aggregate's exact bounded
//! statistics, with their declared L1 sensitivities. A test runs a job on
//! D and on D minus one privacy unit and checks that these move by no more
//! than declared. Without the feature the trace is an empty type and every
//! call is a no-op.

use sandbox_dp::aggregate::CalibratedAggregate;
use sandbox_dp::bounding::GroupTotals;

/// One DP release as the noise saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReleaseTrace {
    /// G as calibrated (effective groups per unit).
    pub groups_per_unit: u64,
    /// Rows per unit over all groups as calibrated: min(G · R, L).
    pub rows_per_unit: u64,
    /// Whether the release read unit counts (else `TracedGroup::units` is 0).
    pub units_read: bool,
    /// τ of partition selection, when the groups were not public.
    pub selection_threshold: Option<i128>,
    /// Per aggregate, the L1 sensitivity of each noised statistic.
    pub sensitivities: Vec<Vec<u128>>,
    /// Per aggregate and statistic, the squared L2 sensitivity zCDP
    /// calibration declares (checked on every release, whatever its noise).
    pub l2_squared: Vec<Vec<Option<u128>>>,
    /// Per aggregate, its mechanism (`discrete_laplace`, `discrete_gaussian`,
    /// `permute_and_flip`).
    pub mechanisms: Vec<String>,
    /// Per aggregate, whether its statistics are a selection's score
    /// vector (a quantile): then `Σ_groups max_i |Δ score_i|` must stay
    /// within the sensitivity.
    pub selections: Vec<bool>,
    /// The L1 sensitivity of each statistic the dominance rule noised.
    pub dominance_sensitivities: Vec<u128>,
    /// DP bound estimations before the release (`CLAMP_AUTO`), in order:
    /// the quantile's exact scores over the whole table and their
    /// sensitivity (the largest score change one unit may cause).
    pub estimations: Vec<(Vec<i128>, u128)>,
    /// The bounds those estimations chose (pinned on a neighbour to D's,
    /// see [`pin_estimates`]).
    pub estimated: Vec<f64>,
    /// Rows that took a job function's default
    /// (`sandbox_sql::defaults`): the exact bounded count before noise and
    /// its sensitivity; `None` when the job counted none.
    pub defaults: Option<(u64, u64)>,
    pub groups: Vec<TracedGroup>,
}

/// One candidate group of a traced release.
#[derive(Debug, Clone, PartialEq)]
pub struct TracedGroup {
    pub key: Vec<serde_json::Value>,
    /// Privacy units after contribution bounding.
    pub units: i128,
    /// Per aggregate, its exact bounded statistics (before noise).
    pub components: Vec<Vec<i128>>,
    /// The dominance rule's exact statistics (top-n and total sums).
    pub dominance: Vec<i128>,
    pub shown: bool,
    pub withheld: Option<String>,
}

#[cfg(feature = "neighbouring-tests")]
static TRACES: std::sync::Mutex<Vec<ReleaseTrace>> = std::sync::Mutex::new(Vec::new());

/// The traces recorded since the last call (tests only).
#[cfg(feature = "neighbouring-tests")]
pub fn take_traces() -> Vec<ReleaseTrace> {
    std::mem::take(&mut *TRACES.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Turns DP noise off (and the keyed group choice to a fixed key) for the
/// whole process; releases are traced while it is off (tests only).
#[cfg(feature = "neighbouring-tests")]
pub fn set_noise_off(off: bool) {
    sandbox_dp::testing::set_noise_off(off);
}

/// Where a test forced contribution bounding to run: 0 the runtime's
/// choice, 1 the release step (per-unit partials), 2 the engine.
#[cfg(feature = "neighbouring-tests")]
static BOUNDING_PLACE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Makes every SQL release bound contributions in the release step from
/// per-unit partials (the form the dominance rule needs) instead of where
/// the runtime would choose, so a test can check that both forms give the
/// same totals (tests only).
#[cfg(feature = "neighbouring-tests")]
pub fn force_unit_partials(on: bool) {
    BOUNDING_PLACE.store(if on { 1 } else { 0 }, std::sync::atomic::Ordering::SeqCst);
}

/// Makes every SQL release without a dominance rule bound contributions
/// inside the engine, including where the runtime would choose the release
/// step (tests only).
#[cfg(feature = "neighbouring-tests")]
pub fn force_engine_bounding(on: bool) {
    BOUNDING_PLACE.store(if on { 2 } else { 0 }, std::sync::atomic::Ordering::SeqCst);
}

/// SQL jobs whose totals were computed without a per-unit stage (the
/// catalog's verified row bounds showed bounding could not bind), so that a
/// test comparing the two places can show it exercised this path.
static UNBOUNDED_TOTALS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub(crate) fn note_unbounded_totals() {
    UNBOUNDED_TOTALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How many SQL jobs so far skipped the per-unit stage (tests and logs).
pub fn unbounded_totals_jobs() -> usize {
    UNBOUNDED_TOTALS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Where a test forced bounding to run: `Some(true)` the engine,
/// `Some(false)` the release step, `None` the runtime's choice.
pub(crate) fn forced_bounding_in_engine() -> Option<bool> {
    #[cfg(feature = "neighbouring-tests")]
    {
        match BOUNDING_PLACE.load(std::sync::atomic::Ordering::SeqCst) {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        }
    }
    #[cfg(not(feature = "neighbouring-tests"))]
    {
        None
    }
}

/// Bound estimations of the job in progress: (scores, sensitivity) each,
/// and the bounds chosen.
#[cfg(feature = "neighbouring-tests")]
type PendingEstimations = (Vec<(Vec<i128>, u128)>, Vec<f64>);

#[cfg(feature = "neighbouring-tests")]
static ESTIMATIONS: std::sync::Mutex<PendingEstimations> = std::sync::Mutex::new((Vec::new(), Vec::new()));

#[cfg(feature = "neighbouring-tests")]
static PINNED: std::sync::Mutex<Option<Vec<f64>>> = std::sync::Mutex::new(None);

/// Makes bound estimation (`CLAMP_AUTO`) use these bounds instead of its
/// own, in order, so that a release on a neighbour is compared with D's at
/// the same clamp: the release is DP for every fixed bound, and the
/// estimation's own scores are checked separately (tests only).
#[cfg(feature = "neighbouring-tests")]
pub fn pin_estimates(bounds: Option<Vec<f64>>) {
    *PINNED.lock().unwrap_or_else(|p| p.into_inner()) = bounds;
}

/// The pinned bound of estimation `i`, if a test pinned them.
pub(crate) fn pinned_estimate(i: usize) -> Option<f64> {
    #[cfg(feature = "neighbouring-tests")]
    {
        if sandbox_dp::testing::noise_off() {
            return PINNED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .and_then(|b| b.get(i).copied());
        }
        None
    }
    #[cfg(not(feature = "neighbouring-tests"))]
    {
        let _ = i;
        None
    }
}

/// Records the exact count of defaulted rows and its sensitivity on the
/// job's trace, the latest one recorded (traced runs only).
pub(crate) fn record_defaults(exact: u64, sensitivity: u64) {
    #[cfg(feature = "neighbouring-tests")]
    if sandbox_dp::testing::noise_off()
        && let Some(last) = TRACES.lock().unwrap_or_else(|p| p.into_inner()).last_mut()
    {
        last.defaults = Some((exact, sensitivity));
    }
    #[cfg(not(feature = "neighbouring-tests"))]
    let _ = (exact, sensitivity);
}

/// Records one bound estimation for the job's trace (traced runs only).
pub(crate) fn record_estimation(scores: Vec<i128>, sensitivities: Vec<u128>, chosen: f64) {
    #[cfg(feature = "neighbouring-tests")]
    if sandbox_dp::testing::noise_off() {
        let mut e = ESTIMATIONS.lock().unwrap_or_else(|p| p.into_inner());
        e.0.push((scores, sensitivities.first().copied().unwrap_or(0)));
        e.1.push(chosen);
    }
    #[cfg(not(feature = "neighbouring-tests"))]
    let _ = (scores, sensitivities, chosen);
}

/// The recorder the release path calls; records only in traced test runs.
pub(crate) struct Trace(Option<ReleaseTrace>);

impl Trace {
    /// `units_read`: whether the release reads unit counts; where it does
    /// not, the engine may not count them and the trace records 0.
    pub(crate) fn new(groups_per_unit: u64, rows_per_unit: u64, units_read: bool) -> Self {
        let recording = cfg!(feature = "neighbouring-tests") && sandbox_dp::testing::noise_off();
        #[cfg(feature = "neighbouring-tests")]
        let (estimations, estimated) = std::mem::take(&mut *ESTIMATIONS.lock().unwrap_or_else(|p| p.into_inner()));
        #[cfg(not(feature = "neighbouring-tests"))]
        let (estimations, estimated) = (Vec::new(), Vec::new());
        Trace(recording.then(|| ReleaseTrace {
            groups_per_unit,
            rows_per_unit,
            units_read,
            estimations,
            estimated,
            ..Default::default()
        }))
    }

    pub(crate) fn selection(&mut self, threshold: i128) {
        if let Some(t) = &mut self.0 {
            t.selection_threshold = Some(threshold);
        }
    }

    pub(crate) fn group(
        &mut self,
        key: &[serde_json::Value],
        totals: &GroupTotals,
        calibrated: &[CalibratedAggregate],
        group: usize,
        dominance: Vec<i128>,
        (shown, withheld): (bool, Option<&str>),
    ) -> Result<(), sandbox_dp::DpError> {
        let Some(t) = &mut self.0 else { return Ok(()) };
        let units = if t.units_read {
            totals.units.get(group).copied().unwrap_or(0)
        } else {
            0
        };
        if units == 0 && t.selection_threshold.is_some() {
            return Ok(());
        }
        let components = calibrated
            .iter()
            .map(|c| c.exact_components(totals, group))
            .collect::<Result<_, _>>()?;
        t.groups.push(TracedGroup {
            key: key.to_vec(),
            units,
            components,
            dominance,
            shown,
            withheld: withheld.map(str::to_string),
        });
        Ok(())
    }

    pub(crate) fn finish(self, calibrated: &[CalibratedAggregate], dominance_sensitivities: Vec<u128>) {
        let Some(mut t) = self.0 else { return };
        t.sensitivities = calibrated.iter().map(|c| c.sensitivities()).collect();
        t.l2_squared = calibrated.iter().map(|c| c.declared_l2_squared()).collect();
        t.mechanisms = calibrated.iter().map(|c| c.mechanism().to_string()).collect();
        t.selections = calibrated.iter().map(|c| c.is_selection()).collect();
        t.dominance_sensitivities = dominance_sensitivities;
        #[cfg(feature = "neighbouring-tests")]
        TRACES.lock().unwrap_or_else(|p| p.into_inner()).push(t);
        #[cfg(not(feature = "neighbouring-tests"))]
        drop(t);
    }
}
