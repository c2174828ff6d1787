//! Statistical disclosure control: minimum distinct units (k), the
//! dominance rule, and rounding.
//!
//! In the `threshold` release mode these rules run on exact data and carry
//! no formal guarantee; they are what data owners used before DP and still
//! ask for. Together with DP (`both`), the runtime decides them on noisy
//! statistics only, from the per-group contributions this module computes
//! (see [`top_contributions`] for their sensitivity), so a suppression is
//! post-processing of a DP release.

use crate::bounding::{GroupTotals, Partials, bounded_measure};

/// Rounds to the nearest multiple of `base` (ties away from zero).
pub fn round_to_base(x: f64, base: f64) -> f64 {
    if !(base.is_finite() && base > 0.0 && x.is_finite()) {
        return x;
    }
    (x / base).round() * base
}

/// Per group, the sum of the `n` largest absolute contributions of privacy
/// units to measure `m` and the sum of all of them, in grid units, over the
/// partials that `totals` kept (each is one unit's contribution to one
/// group) under the row cap each was kept with. `centre_steps` moves centred grid
/// values back to the measure's origin (0 for sums).
///
/// Sensitivity: adding or removing one unit changes, in each group it
/// touches, both sums by at most its own contribution, at most
/// `kept rows · (max_abs + |centre_steps|)`; over all groups it touches,
/// each vector moves by at most `rows_per_unit · (max_abs + |centre_steps|)`
/// in L1, where `rows_per_unit = min(G · R, L)`
/// (`ContributionBounds::rows_per_unit`).
pub fn top_contributions(
    p: &Partials,
    totals: &GroupTotals,
    measure: usize,
    n: u32,
    centre_steps: i128,
) -> (Vec<i128>, Vec<i128>) {
    let groups = totals.groups();
    let n = n.max(1) as usize;
    let mut top: Vec<Vec<i128>> = vec![Vec::new(); groups];
    let mut total = vec![0i128; groups];
    let Some(mp) = p.measures.get(measure) else {
        return (vec![0; groups], total);
    };
    for (&i, &cap) in totals.kept.iter().zip(&totals.kept_rows) {
        let g = p.group[i] as usize;
        if g >= groups {
            continue;
        }
        let b = bounded_measure(mp, i, Some(cap));
        let c = (b.sum + b.count * centre_steps).abs();
        total[g] += c;
        let t = &mut top[g];
        t.push(c);
        if t.len() > n {
            t.sort_unstable_by(|a, b| b.cmp(a));
            t.truncate(n);
        }
    }
    (top.iter().map(|t| t.iter().sum()).collect(), total)
}

/// Groups where the `n` largest contributors hold more than `percent` % of
/// the absolute total of a measure, for any of the given measures (exact
/// data: the `threshold` mode only).
pub fn dominated_groups(
    p: &Partials,
    totals: &GroupTotals,
    measures: &[(usize, i128)],
    n: u32,
    percent: f64,
) -> Vec<bool> {
    let mut out = vec![false; totals.groups()];
    for &(m, centre) in measures {
        let (top, total) = top_contributions(p, totals, m, n, centre);
        for g in 0..out.len() {
            if total[g] > 0 && (top[g] as f64) > percent / 100.0 * total[g] as f64 {
                out[g] = true;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounding::MeasurePartials;

    #[test]
    fn rounding() {
        assert_eq!(round_to_base(1234.0, 10.0), 1230.0);
        assert_eq!(round_to_base(1235.0, 10.0), 1240.0);
        assert_eq!(round_to_base(7.3, 0.5), 7.5);
        assert_eq!(round_to_base(7.3, 0.0), 7.3);
    }

    #[test]
    fn dominance_flags_a_group_held_by_two_units() {
        // group 0: units with sums 90, 5, 3, 2 → top 2 = 95%; group 1: even.
        let p = Partials {
            unit: vec![0, 1, 2, 3, 4, 5, 6],
            group: vec![0, 0, 0, 0, 1, 1, 1],
            priority: vec![0; 7],
            rows: vec![1; 7],
            measures: vec![MeasurePartials {
                count: vec![1; 7],
                sum: vec![90, 5, 3, 2, 10, 10, 10],
                sumsq: None,
                max_abs: 100,
            }],
        };
        let totals = crate::bounding::exact_totals(&p, 2).expect("totals");
        assert_eq!(dominated_groups(&p, &totals, &[(0, 0)], 2, 85.0), vec![true, false]);
    }
}
