//! Properties of the numeric rules, on many seeded random values and on
//! the ends of each type: integer `band` (int64 columns only) and `bands`
//! (int64 and float64 columns). Each is exact: idempotent, a value lies
//! in the band its label names, and the label is monotone in the value.

use crate::Desensitization;
use crate::desensitize::{MAX_BAND_EDGES, MAX_BAND_MAGNITUDE};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const CASES: usize = 200;
const VALUES: usize = 2_000;

/// Integers near the ends of the type, near zero and near multiples of `w`.
fn edge_integers(w: i64, rng: &mut ChaCha20Rng) -> Vec<i64> {
    let mut out = vec![i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1, -1, 0, 1];
    for k in [-3i64, -1, 0, 1, 2, 1_000_003] {
        let m = k.saturating_mul(w);
        out.extend([m.saturating_sub(1), m, m.saturating_add(1)]);
    }
    // The top and bottom band of the type.
    out.extend([i64::MAX - i64::MAX.rem_euclid(w), i64::MIN + (w - 1)]);
    for _ in 0..VALUES {
        out.push(match rng.random_range(0..4) {
            0 => rng.random::<i64>(),
            1 => rng.random_range(-1_000_000..1_000_000),
            2 => rng.random_range(-w.saturating_mul(10)..=w.saturating_mul(10)),
            _ => i64::MAX - rng.random_range(0..=w.saturating_mul(3)),
        });
    }
    out
}

fn widths(rng: &mut ChaCha20Rng) -> Vec<u64> {
    let mut out = vec![1, 2, 3, 5, 7, 10, 1_000_000_000_000_000];
    for _ in 0..CASES {
        out.push(match rng.random_range(0..3) {
            0 => rng.random_range(1..100),
            1 => rng.random_range(1..1_000_000),
            _ => rng.random_range(1..=MAX_BAND_MAGNITUDE as u64),
        });
    }
    out
}

#[test]
fn integer_bands_are_exact_idempotent_and_monotone() {
    let mut rng = ChaCha20Rng::seed_from_u64(0xba4d);
    for w in widths(&mut rng) {
        let r = Desensitization::band(w).expect("a valid width");
        let wi = i128::from(w);
        let mut xs = edge_integers(w as i64, &mut rng);
        xs.sort_unstable();
        let mut previous: Option<i64> = None;
        for &x in &xs {
            let label = r.apply_i64(x);
            // The reference: floor division in 128 bits, the band's start
            // held to the type (the one band that starts below i64::MIN).
            let start = i128::from(x).div_euclid(wi) * wi;
            let want = i64::try_from(start).unwrap_or(i64::MIN);
            assert_eq!(label, want, "band = {w}, x = {x}");
            assert_eq!(r.apply_i64(label), label, "band = {w} not idempotent at {x}");
            let (l, v) = (i128::from(label), i128::from(x));
            assert!(l <= v && v < l + wi, "band = {w}: {x} labelled {label}");
            assert!(
                label.rem_euclid(w as i64) == 0 || label == i64::MIN,
                "band = {w}: {label}"
            );
            if let Some(p) = previous {
                assert!(p <= label, "band = {w}: not monotone at {x}");
            }
            previous = Some(label);
        }
    }
}

/// Sorted, distinct, finite edges within ±1e15, 2 to 256 of them (what
/// validation accepts); whole numbers when `whole`.
fn random_edges(rng: &mut ChaCha20Rng, whole: bool) -> Vec<f64> {
    let n = rng.random_range(2..=MAX_BAND_EDGES);
    let scale = [1e-3, 1.0, 1e3, 1e9, MAX_BAND_MAGNITUDE][rng.random_range(0..5)];
    let mut edges: Vec<f64> = (0..n)
        .map(|_| {
            let e = rng.random_range(-scale..=scale);
            if whole { e.round() } else { e }
        })
        .collect();
    edges.sort_by(f64::total_cmp);
    edges.dedup();
    // -0.0 and 0.0 compare equal: one of them only.
    edges.dedup_by(|a, b| a == b);
    if edges.len() < 2 {
        edges = vec![-1.0, 1.0];
    }
    edges
}

fn probes(edges: &[f64], rng: &mut ChaCha20Rng) -> Vec<f64> {
    let mut out = vec![
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::MIN,
        f64::MAX,
        -0.0,
        0.0,
        2f64.powi(53) + 2.0,
    ];
    for e in edges {
        out.extend([*e, e.next_up(), e.next_down()]);
    }
    let (lo, hi) = (edges[0], edges[edges.len() - 1]);
    let span = (hi - lo).max(1.0);
    for _ in 0..VALUES {
        out.push(match rng.random_range(0..3) {
            0 => rng.random_range(lo - span..=hi + span),
            1 => f64::from_bits(rng.random::<u64>()),
            _ => edges[rng.random_range(0..edges.len())] + rng.random_range(-1.0..1.0),
        });
    }
    out.retain(|x| !x.is_nan());
    out
}

#[test]
fn float_bands_are_exact_idempotent_and_monotone() {
    let mut rng = ChaCha20Rng::seed_from_u64(0xed9e);
    for _ in 0..CASES {
        let edges = random_edges(&mut rng, false);
        let r = Desensitization::Bands(edges.clone());
        let mut xs = probes(&edges, &mut rng);
        xs.sort_by(f64::total_cmp);
        let mut previous: Option<f64> = None;
        for &x in &xs {
            let label = r.apply_f64(x);
            let i = edges.iter().position(|e| e.to_bits() == label.to_bits() || *e == label);
            let i = i.unwrap_or_else(|| panic!("{label} (for {x}) is not an edge"));
            assert_eq!(r.apply_f64(label).to_bits(), label.to_bits(), "not idempotent at {x}");
            if x < edges[0] {
                assert_eq!(i, 0, "bottom coding of {x}");
            } else {
                let next = edges.get(i + 1).copied().unwrap_or(f64::INFINITY);
                assert!(label <= x && (x < next || i == edges.len() - 1), "{x} labelled {label}");
            }
            if let Some(p) = previous {
                assert!(p <= label, "not monotone at {x}");
            }
            previous = Some(label);
        }
        // NaN (no order) shows as the first edge, never as itself.
        assert_eq!(r.apply_f64(f64::NAN), edges[0]);
    }
}

#[test]
fn integer_bands_by_edges_are_exact_on_the_whole_type() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x1e9e);
    for _ in 0..CASES {
        let edges = random_edges(&mut rng, true);
        let whole: Vec<i64> = edges.iter().map(|e| *e as i64).collect();
        let r = Desensitization::Bands(edges.clone());
        let mut xs = edge_integers(1 + rng.random_range(0..1000), &mut rng);
        for e in &whole {
            xs.extend([*e - 1, *e, *e + 1]);
        }
        xs.sort_unstable();
        let mut previous: Option<i64> = None;
        for &x in &xs {
            let label = r.apply_i64(x);
            let i = whole.partition_point(|e| *e <= x);
            let want = whole[i.saturating_sub(1)];
            assert_eq!(label, want, "{x}");
            assert_eq!(r.apply_i64(label), label, "not idempotent at {x}");
            // Within ±2⁵³ the float rule agrees exactly.
            if x.unsigned_abs() <= 1 << 53 {
                assert_eq!(r.apply_f64(x as f64), label as f64, "{x}");
            }
            if let Some(p) = previous {
                assert!(p <= label, "not monotone at {x}");
            }
            previous = Some(label);
        }
    }
}
