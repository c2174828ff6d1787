//! Statistical disclosure control for the `threshold` release mode (and on
//! top of DP in `both`): minimum distinct units (k), the dominance rule, and
//! rounding. These rules carry no formal guarantee; they are what data
//! owners used before DP and still ask for.

use crate::bounding::Partials;

/// Rounds to the nearest multiple of `base` (ties away from zero).
pub fn round_to_base(x: f64, base: f64) -> f64 {
    if !(base.is_finite() && base > 0.0 && x.is_finite()) {
        return x;
    }
    (x / base).round() * base
}

/// Groups where the `n` largest contributors (privacy units) hold more than
/// `percent` % of the absolute total of a measure's sum, for any of the
/// given measures.
pub fn dominated_groups(p: &Partials, groups: usize, measures: &[usize], n: u32, percent: f64) -> Vec<bool> {
    let n = n.max(1) as usize;
    let mut out = vec![false; groups];
    for &m in measures {
        let Some(mp) = p.measures.get(m) else { continue };
        let mut top: Vec<Vec<i128>> = vec![Vec::new(); groups];
        let mut total = vec![0i128; groups];
        for i in 0..p.len() {
            let g = p.group[i] as usize;
            if g >= groups {
                continue;
            }
            let c = (mp.sum[i] as i128).abs();
            total[g] += c;
            let t = &mut top[g];
            t.push(c);
            if t.len() > n {
                t.sort_unstable_by(|a, b| b.cmp(a));
                t.truncate(n);
            }
        }
        for g in 0..groups {
            let top_sum: i128 = top[g].iter().sum();
            if total[g] > 0 && (top_sum as f64) > percent / 100.0 * total[g] as f64 {
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
            rows: vec![1; 7],
            measures: vec![MeasurePartials {
                count: vec![1; 7],
                sum: vec![90, 5, 3, 2, 10, 10, 10],
                sumsq: None,
                max_abs: 100,
            }],
        };
        assert_eq!(dominated_groups(&p, 2, &[0], 2, 85.0), vec![true, false]);
    }
}
