//! DP sample datasets on neighbouring inputs: with noise off (test-only
//! mode; the bounding key is then fixed too), the exact statistics the
//! sampler adds noise to — every column's one-way histogram, every pair's
//! two-way histogram, and the distinct-unit counts partition selection
//! reads — computed on D and on D minus one privacy unit differ by at most
//! their declared sensitivity: m rows (L1) per histogram, and for unit
//! counts 1 per value and m values. The removed units include the only
//! holder of a rare value and a unit with 50 rows (bounded to m).

use sandbox_dp::synthetic::{self, Domain, InputColumn, SampleParams, Statistics, Table};

const M: u32 = 3;

fn step(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

/// 3000 units with 1–4 rows: a public 16-value column, a public 3-value
/// column depending on it, a 11-bin measure code, and a private column of
/// 40 candidates; unit 0 alone holds value 39, unit 1 has 50 rows.
fn world() -> Table {
    let mut t = Table {
        columns: ["district", "outcome", "fine", "month"]
            .iter()
            .zip([
                Domain::Public(17),
                Domain::Public(4),
                Domain::Public(11),
                Domain::Private(40),
            ])
            .map(|(name, domain)| InputColumn {
                name: name.to_string(),
                domain,
                codes: Vec::new(),
            })
            .collect(),
        ..Table::default()
    };
    let mut s = 7u64;
    for u in 0..3000u32 {
        let rows = if u == 1 { 50 } else { 1 + step(&mut s) % 4 };
        for r in 0..rows {
            let district = (step(&mut s) % 16) as u32;
            let outcome = (district + step(&mut s) as u32 % 2) % 3;
            let fine = (step(&mut s) % 11) as u32;
            let month = if u == 0 { 39 } else { (step(&mut s) % 12) as u32 };
            t.units.push(u);
            t.row_keys.push((u64::from(u) << 20) ^ r ^ (u64::from(district) << 40));
            for (c, v) in t.columns.iter_mut().zip([district, outcome, fine, month]) {
                c.codes.push(v);
            }
        }
    }
    t
}

fn without(t: &Table, unit: u32) -> Table {
    let keep: Vec<usize> = (0..t.units.len()).filter(|&i| t.units[i] != unit).collect();
    Table {
        units: keep.iter().map(|&i| t.units[i]).collect(),
        row_keys: keep.iter().map(|&i| t.row_keys[i]).collect(),
        columns: t
            .columns
            .iter()
            .map(|c| InputColumn {
                codes: keep.iter().map(|&i| c.codes[i]).collect(),
                ..c.clone()
            })
            .collect(),
    }
}

fn l1(a: &[i128], b: &[i128]) -> i128 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

#[test]
fn sample_statistics_of_neighbours_differ_within_their_sensitivity() {
    sandbox_runtime::testing::set_noise_off(true);
    let d = world();
    let params = SampleParams {
        epsilon: 1.0,
        delta: 1e-6,
        max_rows_per_unit: M,
        min_units: 5,
        pairs: vec![(0, 1), (1, 2)],
        max_sample_rows: 100_000,
    };
    let fitted = synthetic::release(&d, &params).expect("release");
    let selection = fitted.selection.clone();
    let full: Statistics = synthetic::exact_statistics(&d, &params, &selection).expect("stats");
    // With noise off the release is its exact statistics: the test
    // compares what is really noised.
    for (c, col) in fitted.marginals.columns.iter().enumerate() {
        assert_eq!(col.counts, full.one_way[c], "{}", col.name);
    }
    for (p, pair) in fitted.marginals.pairs.iter().enumerate() {
        assert_eq!(pair.counts, full.two_way[p]);
    }
    // The rare value is not released; the twelve common ones are.
    assert_eq!(selection[3].as_deref(), Some(&(0..12).collect::<Vec<u32>>()[..]));
    let mut moved = 0;
    for unit in [0u32, 1, 2, 17, 1234, 2999] {
        let less = synthetic::exact_statistics(&without(&d, unit), &params, &selection).expect("stats");
        for (c, (a, b)) in full.one_way.iter().zip(&less.one_way).enumerate() {
            let diff = l1(a, b);
            assert!(diff <= i128::from(M), "unit {unit}, column {c}: L1 {diff} > m = {M}");
            moved += diff;
        }
        for (p, (a, b)) in full.two_way.iter().zip(&less.two_way).enumerate() {
            let diff = l1(a, b);
            assert!(diff <= i128::from(M), "unit {unit}, pair {p}: L1 {diff} > m = {M}");
        }
        for (c, (a, b)) in full.unit_counts.iter().zip(&less.unit_counts).enumerate() {
            assert!(
                a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1),
                "unit {unit}, column {c}"
            );
            assert!(
                l1(a, b) <= i128::from(M),
                "unit {unit}, column {c}: unit counts moved by more than m"
            );
        }
    }
    // Not vacuous: removing units does move the statistics, and the
    // heavy unit moves each histogram by exactly m.
    assert!(moved > 0);
    let heavy = synthetic::exact_statistics(&without(&d, 1), &params, &selection).expect("stats");
    for (a, b) in full.one_way.iter().zip(&heavy.one_way) {
        assert_eq!(l1(a, b), i128::from(M));
    }
}
