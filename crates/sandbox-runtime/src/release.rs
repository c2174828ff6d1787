//! From partial statistics to a released table: the DP path (bound, select,
//! noise, then threshold rules on noisy statistics) and the threshold path
//! (k, dominance, rounding on exact data), as the combined rules say.
//!
//! On the DP path every decision an analyst can observe is a function of
//! noisy statistics only: which groups appear (partition selection, or the
//! public key set), which are withheld by k (a noisy count of privacy
//! units) or by dominance (a noisy top-n sum against a noisy total), the
//! values and their rounding, and the cap on released groups (ranked by
//! noisy unit counts). Exact values leave this module only on the
//! threshold path, which the data owners chose.

use crate::RuntimeError;
use crate::rules::ReleaseRules;
use sandbox_dp::accounting::EpsilonSplit;
use sandbox_dp::aggregate::{AggregateSpec, CalibratedAggregate, UnitBounds, exact_value};
use sandbox_dp::bounding::{ContributionBounds, GroupTotals, bounded_totals, exact_totals};
use sandbox_dp::noise::DiscreteLaplace;
use sandbox_dp::partition::PartitionSelector;
use sandbox_dp::sdc::{dominated_groups, round_to_base, top_contributions};
use sandbox_model::{ReleasedCell, ReleasedColumn, ReleasedTable, Suppression};
use sandbox_sql::CheckedQuery;
use sandbox_sql::contribution::Bounding;
use sandbox_sql::partials::{Contributions, GroupStatistics};
use sandbox_sql::query::{AggregateFn, PostExpr};
use std::borrow::Cow;
use std::cmp::Ordering;

/// The label of partition selection in an ε split.
pub const SELECTION: &str = "partition selection";
/// The label of the noisy unit counts that decide k with DP.
pub const K_THRESHOLD: &str = "k-threshold (noisy unit count)";
/// The label of the noisy top-n and total sums that decide dominance with DP.
pub const DOMINANCE: &str = "dominance (noisy top-n and total sums)";

/// The parts of one query's ε besides its aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ExtraParts {
    selection: bool,
    k_threshold: bool,
    dominance: bool,
}

impl ExtraParts {
    fn new(specs: &[AggregateSpec], rules: &ReleaseRules, public: bool) -> Self {
        let sdc = rules.dp && rules.threshold;
        ExtraParts {
            selection: !public,
            // Without public keys, partition selection's threshold is
            // already at least k; public keys waive k only for their own
            // owner's data.
            k_threshold: rules.dp && (rules.threshold || rules.foreign_public_keys) && public && rules.min_units > 1,
            dominance: sdc && !rules.dominance.is_empty() && !dominance_measures(specs).is_empty(),
        }
    }
}

/// How the query's ε is split: one equal share per aggregate, plus one for
/// partition selection when the groups are not public, and, with threshold
/// rules on top of DP, one for the noisy unit counts that decide k (public
/// groups) and one for the noisy sums that decide dominance.
pub fn epsilon_split(
    q: &CheckedQuery,
    specs: &[AggregateSpec],
    rules: &ReleaseRules,
    public: bool,
    epsilon: f64,
) -> Result<EpsilonSplit, RuntimeError> {
    let extra = ExtraParts::new(specs, rules, public);
    let mut labels: Vec<String> = q.aggregates.iter().map(|a| a.display.clone()).collect();
    for (on, label) in [
        (extra.selection, SELECTION),
        (extra.k_threshold, K_THRESHOLD),
        (extra.dominance, DOMINANCE),
    ] {
        if on {
            labels.push(label.to_string());
        }
    }
    let mut split = EpsilonSplit::equal_under(epsilon, labels, rules.composition)?;
    crate::estimation::reserve_shares(&mut split, q);
    Ok(split)
}

/// The share of ε the split gives the part labelled `label`.
pub fn share(split: &EpsilonSplit, label: &str) -> Result<f64, RuntimeError> {
    split
        .parts
        .iter()
        .find(|(l, _)| l == label)
        .map(|(_, e)| *e)
        .ok_or_else(|| sandbox_dp::DpError::Internal("missing share in the ε split").into())
}

/// What one privacy unit may contribute once bounded, with `g_eff` groups.
pub fn unit_bounds(b: &ContributionBounds, g_eff: u64) -> UnitBounds {
    UnitBounds {
        groups_per_unit: g_eff,
        rows_per_group: u64::from(b.max_rows_per_group),
        rows_per_unit: b.rows_per_unit(g_eff),
    }
}

/// Calibrates one aggregate at its share of ε under the rules' composition.
pub fn calibrate(
    spec: &AggregateSpec,
    share: f64,
    rules: &ReleaseRules,
    b: &ContributionBounds,
    g_eff: u64,
) -> Result<CalibratedAggregate, RuntimeError> {
    Ok(CalibratedAggregate::under(
        spec.clone(),
        share,
        unit_bounds(b, g_eff),
        rules.composition,
    )?)
}

/// The DP contribution bounds of the rules.
pub fn bounds(rules: &ReleaseRules) -> Result<ContributionBounds, RuntimeError> {
    Ok(
        ContributionBounds::new(rules.max_groups_per_unit, rules.max_rows_per_group)?
            .with_max_rows_per_unit(rules.max_rows_per_unit)?,
    )
}

/// Whether the release needs each unit's own contribution to each group
/// (the dominance rule ranks them), so that the engine must hand over
/// per-(unit, group) partials instead of bounding them itself.
pub fn needs_unit_contributions(specs: &[AggregateSpec], rules: &ReleaseRules) -> bool {
    let dominance_decided = !rules.dp || rules.threshold;
    dominance_decided && !rules.dominance.is_empty() && !dominance_measures(specs).is_empty()
}

/// Whether the release reads each group's count of distinct privacy units:
/// for partition selection, the k-threshold, `COUNT(DISTINCT unit)`, and
/// every threshold release. Otherwise the engine need not count them.
pub fn needs_unit_counts(specs: &[AggregateSpec], rules: &ReleaseRules, public: bool) -> bool {
    let extra = ExtraParts::new(specs, rules, public);
    !rules.dp
        || extra.selection
        || extra.k_threshold
        || extra.dominance
        || specs.iter().any(|s| matches!(s, AggregateSpec::CountUnits))
}

/// How the engine bounds contributions for these rules: G groups and R
/// rows per unit under the job's choice key (drawn from the CSPRNG,
/// `sandbox_dp::bounding::choice_key`) for DP, every partial whole for a
/// threshold release.
pub fn engine_bounding(rules: &ReleaseRules, choice_key: u64) -> Result<Bounding, RuntimeError> {
    Ok(if rules.dp {
        Bounding::PerGroup {
            bounds: bounds(rules)?,
            key: choice_key,
        }
    } else {
        Bounding::Exact
    })
}

/// The totals the release decides on: bounded (or exact) in the release
/// step from per-unit partials, or as the engine computed them, which must
/// have been under the same bounding.
fn group_totals<'a>(
    result: &'a GroupStatistics,
    bounding: Option<ContributionBounds>,
    units_needed: bool,
) -> Result<Cow<'a, GroupTotals>, RuntimeError> {
    let n = result.groups.keys.len();
    let mismatch = || -> RuntimeError { sandbox_dp::DpError::Internal("group totals were bounded differently").into() };
    if let Contributions::Totals {
        units_counted: false, ..
    } = &result.contributions
        && units_needed
    {
        return Err(sandbox_dp::DpError::Internal("the release needs unit counts the engine did not compute").into());
    }
    match (&result.contributions, bounding) {
        (Contributions::Partials(p), Some(b)) => Ok(Cow::Owned(bounded_totals(p, n, b)?)),
        (Contributions::Partials(p), None) => Ok(Cow::Owned(exact_totals(p, n)?)),
        (
            Contributions::Totals {
                totals,
                bounding: Bounding::PerGroup { bounds, .. },
                ..
            },
            Some(b),
        ) if *bounds == b => Ok(Cow::Borrowed(totals)),
        (
            Contributions::Totals {
                totals,
                bounding: Bounding::Exact,
                ..
            },
            None,
        ) => Ok(Cow::Borrowed(totals)),
        _ => Err(mismatch()),
    }
    .and_then(|t| if t.groups() == n { Ok(t) } else { Err(mismatch()) })
}

/// The per-unit partials, which only the dominance rule reads.
fn unit_partials(result: &GroupStatistics) -> Result<&sandbox_dp::bounding::Partials, RuntimeError> {
    match &result.contributions {
        Contributions::Partials(p) => Ok(p),
        Contributions::Totals { .. } => {
            Err(sandbox_dp::DpError::Internal("the dominance rule needs per-unit partials").into())
        }
    }
}

/// Measures dominance applies to: those of SUM and AVG, with the grid steps
/// that move a centred value back to the measure's origin.
fn dominance_measures(specs: &[AggregateSpec]) -> Vec<(usize, i128)> {
    let mut out: Vec<(usize, i128)> = Vec::new();
    for s in specs {
        let (m, centre) = match s {
            AggregateSpec::Sum { measure, .. } => (*measure, 0),
            AggregateSpec::Avg { measure, grid } => (*measure, (grid.center / grid.quantum).round() as i128),
            _ => continue,
        };
        if !out.iter().any(|(x, _)| *x == m) {
            out.push((m, centre));
        }
    }
    out
}

pub struct Released {
    pub table: ReleasedTable,
    pub groups_released: u64,
    pub groups_suppressed: u64,
    /// The bounded count of rows that took a job function's default, where
    /// [`release_counting_defaults`] was asked for it: the sum over all
    /// groups of that measure's bounded totals (before partition
    /// selection). Exact; the caller adds its noise.
    pub defaulted_rows: Option<u64>,
}

/// What happens to each group before the table is assembled.
struct Decisions {
    shown: Vec<bool>,
    withheld: Vec<Option<&'static str>>,
    /// Rank for the cap on released groups (higher first): the noisy unit
    /// count where partition selection made one.
    rank: Vec<i128>,
    cells: Vec<Vec<ReleasedCell>>,
    notes: Vec<String>,
    defaulted_rows: Option<u64>,
}

/// Releases the partials under the rules. `max_groups` caps the groups in
/// the released table.
pub fn release(
    q: &CheckedQuery,
    specs: &[AggregateSpec],
    result: &GroupStatistics,
    rules: &ReleaseRules,
    epsilon: f64,
    max_groups: usize,
) -> Result<Released, RuntimeError> {
    release_counting_defaults(q, specs, result, rules, epsilon, max_groups, None)
}

/// [`release`], where the statistics also carry the defaulted-row flag of
/// `sandbox_sql::defaults` as measure `defaults_measure` (after the
/// specs' measures; no spec reads it): its bounded total over all groups
/// is returned in [`Released::defaulted_rows`], bounded in the same pass
/// and by the same bounding as the released statistics. Only a DP
/// release counts defaults; under threshold rules it is `None`.
///
/// # Errors
/// As [`release`]; an internal error when the measure is missing.
pub fn release_counting_defaults(
    q: &CheckedQuery,
    specs: &[AggregateSpec],
    result: &GroupStatistics,
    rules: &ReleaseRules,
    epsilon: f64,
    max_groups: usize,
    defaults_measure: Option<usize>,
) -> Result<Released, RuntimeError> {
    let d = if rules.dp {
        dp_decisions(q, specs, result, rules, epsilon, defaults_measure)?
    } else {
        threshold_decisions(q, specs, result, rules)?
    };
    assemble(q, specs, result, rules, epsilon, max_groups, d)
}

fn dp_decisions(
    q: &CheckedQuery,
    specs: &[AggregateSpec],
    result: &GroupStatistics,
    rules: &ReleaseRules,
    epsilon: f64,
    defaults_measure: Option<usize>,
) -> Result<Decisions, RuntimeError> {
    let n = result.groups.keys.len();
    let public = result.groups.public;
    let mut notes = Vec::new();
    let split = epsilon_split(q, specs, rules, public, epsilon)?;
    let extra = ExtraParts::new(specs, rules, public);
    let b = bounds(rules)?;
    let g_eff = b.effective_groups(public.then_some(n));
    let rows_per_unit = b.rows_per_unit(g_eff);
    let units_needed = needs_unit_counts(specs, rules, public);
    let started = std::time::Instant::now();
    let totals = group_totals(result, Some(b), units_needed)?;
    let totals = totals.as_ref();
    tracing::debug!(elapsed = ?started.elapsed(), groups = n, "group totals bounded");
    let defaulted_rows = match defaults_measure {
        None => None,
        Some(j) => {
            let flags = totals
                .measures
                .get(j)
                .ok_or_else(|| RuntimeError::from(sandbox_dp::DpError::Internal("no defaulted-row measure")))?;
            let flagged: i128 = flags.sum.iter().sum();
            Some(u64::try_from(flagged.max(0)).unwrap_or(u64::MAX))
        }
    };
    let mut trace = crate::testing::Trace::new(g_eff, rows_per_unit, units_needed);

    // Which groups may appear at all.
    let mut shown = vec![true; n];
    let mut rank = vec![0i128; n];
    if extra.selection {
        let selector = PartitionSelector::new(g_eff, share(&split, SELECTION)?, rules.delta, rules.min_units)?;
        for g in 0..n {
            match selector.noisy_count(totals.units[g])? {
                Some(noisy) => rank[g] = noisy,
                None => shown[g] = false,
            }
        }
        trace.selection(selector.threshold());
        notes.push(format!(
            "groups were chosen by DP partition selection: a group appears when its noisy count of privacy units reaches {} (noise scale {:.2})",
            selector.threshold(),
            selector.scale()
        ));
    } else {
        notes.push("every group of the public key set appears, including empty ones".into());
    }

    // Threshold rules on noisy statistics.
    let mut withheld: Vec<Option<&'static str>> = vec![None; n];
    if extra.k_threshold {
        let counts = DiscreteLaplace::calibrated(g_eff as u128, share(&split, K_THRESHOLD)?)?;
        for g in (0..n).filter(|&g| shown[g]) {
            if counts.privatize(totals.units[g])? < rules.min_units as i128 {
                withheld[g] = Some("k-threshold");
            }
        }
        notes.push(format!(
            "groups whose noisy count of privacy units (noise scale {:.2}) is below {} are withheld",
            counts.scale(),
            rules.min_units
        ));
    }
    let mut dominance_statistics = DominanceStatistics::default();
    if extra.dominance {
        let p = unit_partials(result)?;
        let (dominated, statistics) =
            noisy_dominance(p, totals, specs, rules, rows_per_unit, share(&split, DOMINANCE)?)?;
        dominance_statistics = statistics;
        for g in 0..n {
            if shown[g] && withheld[g].is_none() && dominated[g] {
                withheld[g] = Some("dominance");
            }
        }
        notes.push("the dominance rule was decided on noisy top-contributor and total sums".into());
    }

    let calibrated: Vec<CalibratedAggregate> = specs
        .iter()
        .enumerate()
        .map(|(j, s)| {
            let share = split
                .share(j)
                .ok_or(sandbox_dp::DpError::Internal("missing aggregate share"))?;
            calibrate(s, share, rules, &b, g_eff)
        })
        .collect::<Result<_, _>>()?;
    let mut cells: Vec<Vec<ReleasedCell>> = vec![Vec::new(); n];
    for g in 0..n {
        trace.group(
            &result.groups.keys[g],
            totals,
            &calibrated,
            g,
            dominance_statistics.per_group.get(g).cloned().unwrap_or_default(),
            (shown[g], withheld[g]),
        )?;
        if !shown[g] || withheld[g].is_some() {
            continue;
        }
        for (j, c) in calibrated.iter().enumerate() {
            let v = c.release(totals, g)?;
            let value = rounding_base(q, rules, j)
                .filter(|_| rules.threshold)
                .map_or(v.value, |base| round_to_base(v.value, base));
            cells[g].push(ReleasedCell::Noisy {
                value,
                mechanism: c.mechanism().to_string(),
                scale: v.scale,
                ci95: [v.ci95.0, v.ci95.1],
            });
        }
    }
    trace.finish(&calibrated, dominance_statistics.sensitivities);
    for (j, c) in calibrated.iter().enumerate() {
        if let AggregateSpec::Quantile { grid, .. } = c.spec() {
            let rank = c.rank_error_95().unwrap_or(0.0);
            notes.push(format!(
                "{}: a DP quantile, chosen per group by permute-and-flip (ε = {:.4}) among {} candidates {} apart on [{}, {}]; with 95% probability its rank error exceeds the best candidate's by at most {rank:.0} row(s); its interval is the public bounds",
                q.aggregates[j].display,
                c.epsilon(),
                grid.candidates,
                grid.step(),
                grid.lower,
                grid.upper
            ));
        }
    }
    notes.push(format!(
        "each privacy unit contributed to at most {g_eff} group(s), {} row(s) per group and {rows_per_unit} row(s) in all; measures were clamped to their public bounds",
        b.max_rows_per_group
    ));
    if rules.composition == sandbox_dp::accounting::Composition::Zcdp {
        notes.push(format!(
            "accounted under zero-concentrated DP: this query of ε = {epsilon} is ρ = {:.6}-zCDP (ρ = ε²/2, split across its parts); counts and sums got discrete Gaussian noise calibrated to their L2 sensitivity, selection and thresholds discrete Laplace noise at each part's ε",
            split.rho()
        ));
    }
    Ok(Decisions {
        shown,
        withheld,
        rank,
        cells,
        notes,
        defaulted_rows,
    })
}

/// The exact statistics the dominance rule noised: per group, the top-n
/// and total sums of each (rule, measure) in turn, and each one's L1
/// sensitivity (for the neighbouring-database trace).
#[derive(Default)]
struct DominanceStatistics {
    per_group: Vec<Vec<i128>>,
    sensitivities: Vec<u128>,
}

/// Dominance with DP: for each rule (n, p%) and measure, a group is
/// dominated when its noisy sum of the n largest unit contributions
/// exceeds p% of its noisy total. Both vectors have L1 sensitivity
/// `rows_per_unit · (max_abs + |centre|)` with `rows_per_unit = min(G · R,
/// L)` (see `sdc::top_contributions`); the share
/// of ε is split equally over all of them.
fn noisy_dominance(
    p: &sandbox_dp::bounding::Partials,
    totals: &GroupTotals,
    specs: &[AggregateSpec],
    rules: &ReleaseRules,
    rows_per_unit: u64,
    epsilon: f64,
) -> Result<(Vec<bool>, DominanceStatistics), RuntimeError> {
    let measures = dominance_measures(specs);
    let parts = (2 * measures.len() * rules.dominance.len()).max(1) as f64;
    let mut out = vec![false; totals.groups()];
    let mut statistics = DominanceStatistics {
        per_group: vec![Vec::new(); totals.groups()],
        sensitivities: Vec::new(),
    };
    for rule in &rules.dominance {
        for &(m, centre) in &measures {
            let max_abs = p.measures.get(m).map_or(0, |x| x.max_abs) as u128;
            let sensitivity = (rows_per_unit as u128)
                .checked_mul(max_abs + centre.unsigned_abs())
                .ok_or(sandbox_dp::DpError::Overflow)?;
            let mech = DiscreteLaplace::calibrated(sensitivity, epsilon / parts)?;
            let (top, total) = top_contributions(p, totals, m, rule.n, centre);
            statistics.sensitivities.extend([sensitivity, sensitivity]);
            for g in 0..out.len() {
                statistics.per_group[g].extend([top[g], total[g]]);
                let noisy_top = mech.privatize(top[g])?;
                let noisy_total = mech.privatize(total[g])?;
                if noisy_total > 0 && (noisy_top as f64) > rule.percent / 100.0 * noisy_total as f64 {
                    out[g] = true;
                }
            }
        }
    }
    Ok((out, statistics))
}

/// Threshold release (no DP): exact values rounded, k and dominance on
/// exact data. No formal guarantee; the owners' policies ask for it.
fn threshold_decisions(
    q: &CheckedQuery,
    specs: &[AggregateSpec],
    result: &GroupStatistics,
    rules: &ReleaseRules,
) -> Result<Decisions, RuntimeError> {
    let n = result.groups.keys.len();
    let exact = group_totals(result, None, true)?;
    let exact = exact.as_ref();
    let mut cells: Vec<Vec<ReleasedCell>> = vec![Vec::new(); n];
    for (g, row) in cells.iter_mut().enumerate() {
        for (j, s) in specs.iter().enumerate() {
            let base = rounding_base(q, rules, j).unwrap_or(0.0);
            let v = exact_value(s, exact, g)?;
            let value = if base > 0.0 { round_to_base(v, base) } else { v };
            row.push(ReleasedCell::Rounded { value, base });
        }
    }
    let measures = dominance_measures(specs);
    let mut dominated = vec![false; n];
    for d in &rules.dominance {
        if measures.is_empty() {
            break;
        }
        let flags = dominated_groups(unit_partials(result)?, exact, &measures, d.n, d.percent);
        for (a, b) in dominated.iter_mut().zip(flags) {
            *a |= b;
        }
    }
    let mut withheld = vec![None; n];
    for g in 0..n {
        if exact.units[g] < rules.min_units as i128 {
            withheld[g] = Some("k-threshold");
        } else if dominated[g] {
            withheld[g] = Some("dominance");
        }
    }
    Ok(Decisions {
        shown: vec![true; n],
        withheld,
        rank: exact.units.clone(),
        cells,
        notes: vec![
            "released under threshold rules only (no differential privacy), as the data owners' policies ask; k and dominance were decided on exact data".into(),
        ],
        defaulted_rows: None,
    })
}

fn assemble(
    q: &CheckedQuery,
    specs: &[AggregateSpec],
    result: &GroupStatistics,
    rules: &ReleaseRules,
    epsilon: f64,
    max_groups: usize,
    mut d: Decisions,
) -> Result<Released, RuntimeError> {
    let n = result.groups.keys.len();
    let count = |rule: &str| {
        d.withheld
            .iter()
            .zip(&d.shown)
            .filter(|(w, s)| **s && **w == Some(rule))
            .count() as u64
    };
    let (suppressed_k, suppressed_dom) = (count("k-threshold"), count("dominance"));
    // Rows: public groups show withheld cells; others are omitted.
    let mut rows: Vec<(usize, Vec<ReleasedCell>)> = Vec::new();
    for g in 0..n {
        if !d.shown[g] {
            continue;
        }
        match d.withheld[g] {
            Some(_) if !result.groups.public => {}
            Some(rule) => rows.push((
                g,
                specs
                    .iter()
                    .map(|_| ReleasedCell::Withheld { rule: rule.to_string() })
                    .collect(),
            )),
            None => rows.push((g, std::mem::take(&mut d.cells[g]))),
        }
    }
    // The cap on released groups, applied to what was selected: the groups
    // with the largest noisy unit counts stay (post-processing).
    let mut notes = d.notes;
    for a in &q.aggregates {
        if let Some(bounds) = &a.bounds_note {
            notes.push(format!("{}: {bounds}", a.display));
        }
    }
    if rows.len() > max_groups {
        let selected = rows.len();
        rows.sort_by(|a, b| d.rank[b.0].cmp(&d.rank[a.0]).then(a.0.cmp(&b.0)));
        rows.truncate(max_groups);
        notes.push(format!(
            "{selected} groups passed selection; the {max_groups} with the largest noisy counts of privacy units are shown"
        ));
    }
    // A deterministic base order (by group key), then HAVING, ORDER BY,
    // LIMIT and computed outputs on the released values only.
    let keys = &result.groups.keys;
    rows.sort_by(|a, b| json_cmp_rows(&keys[a.0], &keys[b.0]));
    let relevel = relevel(q, specs, rules);
    let rows = rows
        .into_iter()
        .map(|(g, cells)| crate::postprocess::Row { keys: &keys[g], cells })
        .collect();
    let processed = crate::postprocess::apply(q, &relevel, rows);
    notes.extend(processed.notes);
    let released_rows = processed.rows;
    let columns = q
        .outputs
        .iter()
        .map(|o| ReleasedColumn {
            name: o.name.clone(),
            kind: match o.expr {
                PostExpr::Key(_) => "group_key".to_string(),
                PostExpr::Aggregate(j) => q.aggregates[j].display.clone(),
                _ => o.display.clone(),
            },
        })
        .collect();
    let mut suppressed = Vec::new();
    if suppressed_k > 0 {
        suppressed.push(Suppression {
            rule: format!("fewer than {} distinct privacy units (k-threshold)", rules.min_units),
            groups: suppressed_k,
        });
    }
    if suppressed_dom > 0 {
        suppressed.push(Suppression {
            rule: "dominance rule".into(),
            groups: suppressed_dom,
        });
    }
    let groups_released = released_rows.len() as u64;
    Ok(Released {
        table: ReleasedTable {
            columns,
            rows: released_rows,
            epsilon_spent: if rules.dp { epsilon } else { 0.0 },
            delta_spent: if rules.dp && !result.groups.public {
                rules.delta
            } else {
                0.0
            },
            suppressed,
            notes,
        },
        groups_released,
        groups_suppressed: suppressed_k + suppressed_dom,
        defaulted_rows: d.defaulted_rows,
    })
}

/// The rounding base of aggregate `j`: counts take the largest base any
/// policy sets; a measure's aggregate takes its own dataset's base; a
/// job-supplied function's output is not rounded by a policy written for
/// other quantities.
fn rounding_base(q: &CheckedQuery, rules: &ReleaseRules, j: usize) -> Option<f64> {
    let a = q.aggregates.get(j)?;
    match a.function {
        AggregateFn::CountRows | AggregateFn::CountValues | AggregateFn::CountUnits => rules.rounding_base,
        _ => a
            .measure_dataset
            .as_ref()
            .and_then(|d| rules.rounding_bases.get(d).copied()),
    }
}

/// For each aggregate, how its interval can be taken at another level (for
/// computed outputs that combine several released values): only a value
/// that is one discrete Laplace statistic and was not rounded.
fn relevel(
    q: &CheckedQuery,
    specs: &[AggregateSpec],
    rules: &ReleaseRules,
) -> Vec<Option<crate::postprocess::Relevel>> {
    use crate::postprocess::Relevel;
    specs
        .iter()
        .enumerate()
        .map(|(j, s)| {
            let rounded = rules.threshold && rounding_base(q, rules, j).is_some();
            if !rules.dp || rounded {
                return None;
            }
            match s {
                AggregateSpec::CountRows | AggregateSpec::CountValues { .. } | AggregateSpec::CountUnits => {
                    Some(Relevel {
                        quantum: 1.0,
                        nonnegative: true,
                    })
                }
                AggregateSpec::Sum { grid, .. } => Some(Relevel {
                    quantum: grid.quantum,
                    nonnegative: false,
                }),
                _ => None,
            }
        })
        .collect()
}

fn json_cmp(a: &serde_json::Value, b: &serde_json::Value) -> Ordering {
    use serde_json::Value::*;
    match (a, b) {
        (Null, Null) => Ordering::Equal,
        (Null, _) => Ordering::Less,
        (_, Null) => Ordering::Greater,
        (Number(x), Number(y)) => x
            .as_f64()
            .unwrap_or(f64::NAN)
            .total_cmp(&y.as_f64().unwrap_or(f64::NAN)),
        (String(x), String(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn json_cmp_rows(a: &[serde_json::Value], b: &[serde_json::Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = json_cmp(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}
