//! Contribution bounding per privacy unit.
//!
//! The SQL engine hands over one *partial* per (privacy unit, group): how
//! many rows the unit has in the group and, per measure, the count, grid
//! sum and grid sum of squares of its (clamped) values. Bounding then
//!
//! 1. keeps at most G groups per unit: the G partials of the unit with the
//!    smallest *priority*, a keyed hash of (unit, group) under a key drawn
//!    per job from the CSPRNG ([`choice_key`]), so the kept set is a
//!    pseudo-random subset that depends on the unit's own partials only (a
//!    unit's other partials are dropped whole);
//! 2. limits each kept partial to R rows: counts become `min(n, R)` and the
//!    sums are scaled by `min(n, R) / n` (the unit keeps its mean but weighs
//!    R rows at most), then clamped to `R · max_abs` so the bound holds even
//!    if an upstream sum wrapped.
//!
//! After bounding, adding or removing one unit changes each group's row
//! count by at most R, its unit count by 1, a measure's sum by at most
//! `R · max_abs` grid units, and touches at most G groups; no other unit's
//! kept partials change, because each unit's choice is a function of its
//! own partials and the job's key. The DP guarantee needs only that; the
//! keyed hash (not a cryptographic PRF) only makes the choice unbiased
//! across groups in practice.

use crate::DpError;

/// Per-measure partial statistics, aligned with [`Partials::unit`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeasurePartials {
    /// Non-null values of the measure.
    pub count: Vec<i64>,
    /// Sum of grid values.
    pub sum: Vec<i64>,
    /// Sum of squared grid values, for variances.
    pub sumsq: Option<Vec<i64>>,
    /// The grid's largest |value| (from its quantizer).
    pub max_abs: i64,
}

/// Partial statistics per (unit, group), in columns. Units and groups are
/// dense ids assigned by the engine; each (unit, group) appears once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Partials {
    pub unit: Vec<u32>,
    pub group: Vec<u32>,
    /// The keyed hash that ranks a unit's partials for the choice of its
    /// G groups (smallest first).
    pub priority: Vec<u64>,
    pub rows: Vec<i64>,
    pub measures: Vec<MeasurePartials>,
}

impl Partials {
    pub fn len(&self) -> usize {
        self.unit.len()
    }

    pub fn is_empty(&self) -> bool {
        self.unit.is_empty()
    }

    fn check(&self, groups: usize) -> Result<(), DpError> {
        let n = self.unit.len();
        let aligned = self.group.len() == n
            && self.priority.len() == n
            && self.rows.len() == n
            && self
                .measures
                .iter()
                .all(|m| m.count.len() == n && m.sum.len() == n && m.sumsq.as_ref().is_none_or(|s| s.len() == n));
        if !aligned {
            return Err(DpError::Internal("partial columns are not aligned"));
        }
        if self.group.iter().any(|&g| g as usize >= groups) {
            return Err(DpError::Internal("partial refers to an unknown group"));
        }
        Ok(())
    }
}

/// The policy's contribution bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContributionBounds {
    /// G: groups per unit.
    pub max_groups_per_unit: u32,
    /// R: rows per unit and group.
    pub max_rows_per_group: u32,
    /// L: rows per unit over all its groups (`None`: only G · R). A unit's
    /// kept groups take rows in the order of their keyed priority until L
    /// is spent, so a unit with many rows in one group keeps up to L there
    /// (with R = L) instead of R, at the same L1 sensitivity.
    pub max_rows_per_unit: Option<u32>,
}

impl ContributionBounds {
    /// G groups per unit and R rows per group.
    ///
    /// Errors: [`DpError::InvalidContributionBound`] when G or R is 0.
    pub fn new(max_groups_per_unit: u32, max_rows_per_group: u32) -> Result<Self, DpError> {
        if max_groups_per_unit == 0 {
            return Err(DpError::InvalidContributionBound {
                name: "max_groups_per_unit",
            });
        }
        if max_rows_per_group == 0 {
            return Err(DpError::InvalidContributionBound {
                name: "max_rows_per_group",
            });
        }
        Ok(Self {
            max_groups_per_unit,
            max_rows_per_group,
            max_rows_per_unit: None,
        })
    }

    /// The same bounds with at most L rows per unit over all its groups.
    ///
    /// Errors: [`DpError::InvalidContributionBound`] when L is 0.
    pub fn with_max_rows_per_unit(self, max_rows_per_unit: Option<u32>) -> Result<Self, DpError> {
        if max_rows_per_unit == Some(0) {
            return Err(DpError::InvalidContributionBound {
                name: "max_rows_per_unit",
            });
        }
        Ok(Self {
            max_rows_per_unit,
            ..self
        })
    }

    /// The most rows one unit contributes over all groups, given that it
    /// touches at most `effective_groups` of them: `min(G_eff · R, L)`. This
    /// is the L1 sensitivity of per-group row counts, and, times a
    /// measure's largest grid value, of its sums.
    pub fn rows_per_unit(&self, effective_groups: u64) -> u64 {
        let product = effective_groups.saturating_mul(self.max_rows_per_group as u64);
        self.max_rows_per_unit.map_or(product, |l| product.min(l as u64))
    }

    /// G as used for calibration: never more than the number of groups that
    /// can exist (with a public key set of K keys, one unit touches ≤ K).
    pub fn effective_groups(&self, possible_groups: Option<usize>) -> u64 {
        let g = self.max_groups_per_unit as u64;
        possible_groups.map_or(g, |k| g.min(k.max(1) as u64))
    }
}

/// The job's key for the keyed group choice: 64 bits from OpenDP's
/// CSPRNG, or a fixed key when a neighbouring-database test has switched
/// noise off ([`crate::testing`]).
pub fn choice_key() -> Result<u64, DpError> {
    if crate::testing::noise_off() {
        return Ok(0);
    }
    let mut key = [0u8; 8];
    opendp::traits::samplers::fill_bytes(&mut key).map_err(|e| DpError::Entropy(e.to_string()))?;
    Ok(u64::from_le_bytes(key))
}

/// Per-group totals after (or without) bounding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupTotals {
    /// Indices of the partials that were kept (all of them without bounding).
    pub kept: Vec<usize>,
    /// The row cap each kept partial was held to (aligned with `kept`).
    pub kept_rows: Vec<i64>,
    pub rows: Vec<i128>,
    pub units: Vec<i128>,
    pub measures: Vec<MeasureTotals>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeasureTotals {
    pub count: Vec<i128>,
    pub sum: Vec<i128>,
    pub sumsq: Vec<i128>,
}

impl GroupTotals {
    /// Totals of `groups` empty groups over `measures` measures.
    pub fn zeros(groups: usize, measures: usize) -> Self {
        GroupTotals {
            kept: Vec::new(),
            kept_rows: Vec::new(),
            rows: vec![0; groups],
            units: vec![0; groups],
            measures: (0..measures)
                .map(|_| MeasureTotals {
                    count: vec![0; groups],
                    sum: vec![0; groups],
                    sumsq: vec![0; groups],
                })
                .collect(),
        }
    }

    pub fn groups(&self) -> usize {
        self.rows.len()
    }

    /// Appends one empty group; returns its id.
    pub fn push_group(&mut self) -> usize {
        self.rows.push(0);
        self.units.push(0);
        for m in &mut self.measures {
            m.count.push(0);
            m.sum.push(0);
            m.sumsq.push(0);
        }
        self.rows.len() - 1
    }

    fn add(&mut self, p: &Partials, i: usize, row_cap: Option<i64>) {
        let g = p.group[i] as usize;
        let n = p.rows[i].max(0);
        let kept_rows = row_cap.map_or(n, |r| n.min(r));
        self.kept.push(i);
        self.kept_rows.push(kept_rows);
        self.rows[g] += kept_rows as i128;
        self.units[g] += 1;
        for (m, t) in p.measures.iter().zip(self.measures.iter_mut()) {
            let c = bounded_measure(m, i, row_cap);
            t.count[g] += c.count;
            t.sum[g] += c.sum;
            t.sumsq[g] += c.sumsq;
        }
    }
}

/// One partial's measure statistics after the row cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundedMeasure {
    pub count: i128,
    pub sum: i128,
    pub sumsq: i128,
}

/// The statistics partial `i` contributes to measure `m` under a row cap R
/// (`None`: no cap): counts become `min(n, R)`, sums are scaled by
/// `min(n, R) / n` and clamped to what `min(n, R)` grid values can reach.
pub fn bounded_measure(m: &MeasurePartials, i: usize, row_cap: Option<i64>) -> BoundedMeasure {
    let c = m.count.get(i).copied().unwrap_or(0).max(0) as i128;
    let kept = row_cap.map_or(c, |r| c.min(r as i128));
    let scale = |x: i128| if c == 0 { 0 } else { x * kept / c };
    let max_abs = m.max_abs as i128;
    let limit = kept * max_abs;
    let sum = scale(m.sum.get(i).copied().unwrap_or(0) as i128).clamp(-limit, limit);
    let sumsq = match &m.sumsq {
        Some(sq) => scale(sq.get(i).copied().unwrap_or(0) as i128).clamp(0, kept * max_abs * max_abs),
        None => 0,
    };
    BoundedMeasure {
        count: kept,
        sum,
        sumsq,
    }
}

/// Totals without any bounding (threshold release), every value still
/// clamped to its grid so no partial can exceed `n · max_abs`.
pub fn exact_totals(p: &Partials, groups: usize) -> Result<GroupTotals, DpError> {
    p.check(groups)?;
    let mut t = GroupTotals::zeros(groups, p.measures.len());
    for i in 0..p.len() {
        t.add(p, i, None);
    }
    Ok(t)
}

/// Bounds contributions (per unit the G partials of smallest priority, R
/// rows per group) and totals per group.
pub fn bounded_totals(p: &Partials, groups: usize, bounds: ContributionBounds) -> Result<GroupTotals, DpError> {
    p.check(groups)?;
    let g_cap = bounds.max_groups_per_unit as usize;
    // Bucket partial indices by unit (dense ids, so a counting sort).
    let units = p.unit.iter().map(|&u| u as usize + 1).max().unwrap_or(0);
    let mut start = vec![0usize; units + 1];
    for &u in &p.unit {
        start[u as usize + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    let mut order = vec![0usize; p.len()];
    let mut next = start.clone();
    for (i, &u) in p.unit.iter().enumerate() {
        order[next[u as usize]] = i;
        next[u as usize] += 1;
    }
    let mut t = GroupTotals::zeros(groups, p.measures.len());
    let r = bounds.max_rows_per_group as i64;
    let rank = |&i: &usize| (p.priority[i], p.group[i]);
    for u in 0..units {
        let slice = &mut order[start[u]..start[u + 1]];
        if slice.len() > g_cap {
            // The G smallest (priority, group): ties cannot depend on order.
            slice.select_nth_unstable_by_key(g_cap - 1, rank);
        }
        let keep = slice.len().min(g_cap);
        let kept = &mut slice[..keep];
        match bounds.max_rows_per_unit {
            None => {
                for &i in kept.iter() {
                    t.add(p, i, Some(r));
                }
            }
            Some(l) => {
                // Rows go to the kept groups in priority order until L is spent.
                kept.sort_unstable_by_key(rank);
                let mut left = l as i64;
                for &i in kept.iter() {
                    let cap = p.rows[i].max(0).min(r).min(left);
                    if cap == 0 {
                        continue;
                    }
                    left -= cap;
                    t.add(p, i, Some(cap));
                }
            }
        }
    }
    Ok(t)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn partials(rows: &[(u32, u32, i64, i64, i64)]) -> Partials {
        Partials {
            unit: rows.iter().map(|r| r.0).collect(),
            group: rows.iter().map(|r| r.1).collect(),
            priority: rows
                .iter()
                .map(|r| {
                    (r.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (r.1 as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
                })
                .collect(),
            rows: rows.iter().map(|r| r.2).collect(),
            measures: vec![MeasurePartials {
                count: rows.iter().map(|r| r.3).collect(),
                sum: rows.iter().map(|r| r.4).collect(),
                sumsq: None,
                max_abs: 10,
            }],
        }
    }

    #[test]
    fn one_unit_with_a_thousand_rows_moves_a_count_by_at_most_r() {
        let without = partials(&[(0, 0, 3, 3, 30), (1, 0, 2, 2, 20)]);
        let with = partials(&[(0, 0, 3, 3, 30), (1, 0, 2, 2, 20), (2, 0, 1000, 1000, 10_000)]);
        let b = ContributionBounds::new(1, 5).expect("bounds");
        let a = bounded_totals(&without, 1, b).expect("totals");
        let c = bounded_totals(&with, 1, b).expect("totals");
        assert_eq!(c.rows[0] - a.rows[0], 5);
        assert_eq!(c.units[0] - a.units[0], 1);
        assert_eq!(c.measures[0].sum[0] - a.measures[0].sum[0], 50);
    }

    #[test]
    fn a_unit_keeps_at_most_g_groups() {
        let p = partials(&[(0, 0, 1, 1, 1), (0, 1, 1, 1, 1), (0, 2, 1, 1, 1), (0, 3, 1, 1, 1)]);
        let b = ContributionBounds::new(2, 1).expect("bounds");
        let t = bounded_totals(&p, 4, b).expect("totals");
        assert_eq!(t.units.iter().sum::<i128>(), 2);
        assert!(t.units.iter().all(|&u| u <= 1));
    }

    /// Removing one unit changes no other unit's kept groups: the choice
    /// is a function of the unit's own partials.
    #[test]
    fn a_units_choice_does_not_depend_on_other_units() {
        let mut rows = Vec::new();
        for u in 0..50u32 {
            for g in 0..6u32 {
                rows.push((u, (u + g) % 8, 1, 1, 1));
            }
        }
        let b = ContributionBounds::new(2, 1).expect("bounds");
        let all = bounded_totals(&partials(&rows), 8, b).expect("totals");
        let without: Vec<_> = rows.iter().copied().filter(|r| r.0 != 17).collect();
        let less = bounded_totals(&partials(&without), 8, b).expect("totals");
        let l1: i128 = all.units.iter().zip(&less.units).map(|(a, b)| (a - b).abs()).sum();
        assert_eq!(l1, 2, "exactly the removed unit's two groups change");
    }

    /// Under random keys, each of a unit's 4 groups is kept about 1/4 of
    /// the time (4 000 keys; 6 sd of Binomial(4000, 1/4) ≈ 164).
    #[test]
    fn group_choice_is_uniform_over_keys() {
        let hasher = |key: u64, g: u32| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (key, g).hash(&mut h);
            h.finish()
        };
        let b = ContributionBounds::new(1, 1).expect("bounds");
        let mut kept = [0u32; 4];
        for key in 0..4_000u64 {
            let mut p = partials(&[(0, 0, 1, 1, 1), (0, 1, 1, 1, 1), (0, 2, 1, 1, 1), (0, 3, 1, 1, 1)]);
            p.priority = (0..4).map(|g| hasher(key, g)).collect();
            let t = bounded_totals(&p, 4, b).expect("totals");
            for (g, k) in kept.iter_mut().enumerate() {
                *k += t.units[g] as u32;
            }
        }
        assert!(kept.iter().all(|&k| (836..=1164).contains(&k)), "{kept:?}");
    }

    /// With a total cap L a unit's rows go to its groups in priority order
    /// until L is spent: 30 rows in one group stay whole (R = L = 50) where
    /// R = 10 kept 10, and 4 × 20 rows keep 50 in all.
    #[test]
    fn a_total_row_cap_keeps_rows_where_the_unit_has_them() {
        let bounds = ContributionBounds::new(5, 50)
            .and_then(|b| b.with_max_rows_per_unit(Some(50)))
            .expect("bounds");
        let one_group = partials(&[(0, 0, 30, 30, 300)]);
        let t = bounded_totals(&one_group, 1, bounds).expect("totals");
        assert_eq!((t.rows[0], t.measures[0].count[0], t.measures[0].sum[0]), (30, 30, 300));
        let per_group = bounded_totals(&one_group, 1, ContributionBounds::new(5, 10).expect("bounds")).expect("totals");
        assert_eq!(per_group.rows[0], 10);

        let spread = partials(&[
            (0, 0, 20, 20, 20),
            (0, 1, 20, 20, 20),
            (0, 2, 20, 20, 20),
            (0, 3, 20, 20, 20),
        ]);
        let t = bounded_totals(&spread, 4, bounds).expect("totals");
        assert_eq!(t.rows.iter().sum::<i128>(), 50);
        assert_eq!(t.measures[0].count.iter().sum::<i128>(), 50);
        assert!(
            t.units.iter().sum::<i128>() <= 3,
            "a group left no rows is not counted: {:?}",
            t.units
        );
        assert_eq!(bounds.rows_per_unit(5), 50);
        assert_eq!(ContributionBounds::new(5, 10).expect("bounds").rows_per_unit(3), 30);
    }

    /// Removing one unit moves the row counts by at most L in L1 and the
    /// unit counts by at most G, whatever the other units hold.
    #[test]
    fn a_total_row_cap_bounds_one_units_influence() {
        let bounds = ContributionBounds::new(3, 40)
            .and_then(|b| b.with_max_rows_per_unit(Some(25)))
            .expect("bounds");
        let mut rows = Vec::new();
        for u in 0..40u32 {
            for g in 0..(1 + u % 6) {
                rows.push((u, (u * 7 + g) % 9, 1 + ((u * 13 + g * 5) % 37) as i64, 1, 1));
            }
        }
        let all = bounded_totals(&partials(&rows), 9, bounds).expect("totals");
        for removed in 0..40u32 {
            let without: Vec<_> = rows.iter().copied().filter(|r| r.0 != removed).collect();
            let less = bounded_totals(&partials(&without), 9, bounds).expect("totals");
            let rows_l1: i128 = all.rows.iter().zip(&less.rows).map(|(a, b)| (a - b).abs()).sum();
            let units_l1: i128 = all.units.iter().zip(&less.units).map(|(a, b)| (a - b).abs()).sum();
            assert!(rows_l1 <= 25, "unit {removed} moved rows by {rows_l1}");
            assert!(units_l1 <= 3, "unit {removed} moved units by {units_l1}");
        }
    }

    #[test]
    fn wrapped_sums_are_clamped_to_the_bound() {
        let p = partials(&[(0, 0, 2, 2, i64::MAX)]);
        let t = exact_totals(&p, 1).expect("totals");
        assert_eq!(t.measures[0].sum[0], 20);
        let b = ContributionBounds::new(1, 1).expect("bounds");
        let t = bounded_totals(&p, 1, b).expect("totals");
        assert_eq!(t.measures[0].sum[0], 10);
    }

    #[test]
    fn misaligned_partials_are_an_error() {
        let mut p = partials(&[(0, 0, 1, 1, 1)]);
        p.rows.push(3);
        assert!(exact_totals(&p, 1).is_err());
        let p = partials(&[(0, 7, 1, 1, 1)]);
        assert!(exact_totals(&p, 1).is_err());
    }
}
