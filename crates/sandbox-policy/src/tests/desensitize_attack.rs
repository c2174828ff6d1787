//! Red-team (attack4): the coarsening functions on edge values.

use crate::Desensitization;

/// The red team found that a fixed-width band on a float column,
/// `floor(x / w) · w` in floating point, is not idempotent (w = 0.1), can
/// label a value below its own band, and is the identity beyond 2⁵³·w. The
/// chosen semantics: `band` is for int64 columns only, refused on a float
/// column at validation with an error that names the rule and the column
/// and points to `bands = [edges]`. (Adjusted from the red team's float
/// assertions: those widths can no longer be given to a float column.)
fn refused_on_a_float_column(width: &str) {
    let (set, first) = super::desensitize::with_rules(
        "health.clinic_visits.toml",
        &format!("[desensitize]\ncost = {{ band = {width} }}\n"),
    );
    let Err(errors) = set else {
        panic!("band = {width} accepted on the float64 column `cost`")
    };
    super::assert_has(
        &errors,
        "desensitize.cost.band",
        first + 1,
        "`band` needs an int64 column; `cost` is float64, whose fixed-width bands cannot be computed exactly: \
         give the band edges instead, e.g. `cost = { bands = [0, 100, 200, 500] }`",
    );
}

#[test]
fn attack_float_bands_are_idempotent() {
    for w in ["0.1", "0.3", "0.7", "1.1", "2.5", "0.01", "1e-3", "7.0", "1e6"] {
        refused_on_a_float_column(w);
    }
    // What a float column takes instead: edges at those widths, whose
    // comparisons are exact, so applying them twice changes nothing.
    let mut broken = Vec::new();
    for w in [0.1, 0.3, 0.7, 1.1, 2.5, 0.01, 1e-3, 7.0, 1e6] {
        let edges: Vec<f64> = (-127..=128).map(|k| f64::from(k) * w).collect();
        let r = Desensitization::Bands(edges);
        for i in -20_000i64..20_000 {
            let x = i as f64 * 0.013_7;
            let once = r.apply_f64(x);
            let twice = r.apply_f64(once);
            if once.to_bits() != twice.to_bits() {
                broken.push(format!("w={w} x={x}: {once} then {twice}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{} values not idempotent, e.g. {:?}",
        broken.len(),
        &broken[..broken.len().min(5)]
    );
}

/// A value lies in the band its released value names: `released ≤ x <
/// next edge` (the docs: "the lower bound of x's band"), for float edges.
#[test]
fn attack_float_band_released_value_is_the_lower_bound_of_the_value() {
    for w in ["0.1", "0.3", "0.7", "1.1", "0.01"] {
        refused_on_a_float_column(w);
    }
    let mut wrong = Vec::new();
    for w in [0.1, 0.3, 0.7, 1.1, 0.01] {
        let edges: Vec<f64> = (0..256).map(|k| f64::from(k) * w).collect();
        let r = Desensitization::Bands(edges.clone());
        for i in 0i64..2_000 {
            let x = i as f64 * 0.05;
            let b = r.apply_f64(x);
            let next = edges.iter().find(|e| **e > b).copied().unwrap_or(f64::INFINITY);
            if !(b <= x && x < next) {
                wrong.push(format!("w={w}: {x} → {b}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} values outside their band, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// Beyond 2⁵³·w a float band was the identity. A float column cannot take
/// `band` any more; on an int64 column the band is exact at any magnitude
/// (here 10¹⁷ + 16 → 10¹⁷ + 15, a multiple of 5).
#[test]
fn attack_float_band_is_the_identity_on_large_values() {
    refused_on_a_float_column("5.0");
    let r = Desensitization::band(5).expect("width");
    let x: i64 = 100_000_000_000_000_016;
    let b = r.apply_i64(x);
    assert_eq!(b, 100_000_000_000_000_015);
    assert!(b.rem_euclid(5) == 0 && b <= x && x - b < 5, "{x} released as {b}");
}

/// Text rules never panic on odd Unicode, and a mask never shows more than
/// `n` characters of the value.
#[test]
fn attack_text_rules_on_odd_unicode() {
    let odd = [
        "",
        "\u{0}",
        "\u{feff}",
        "e\u{301}",
        "👨‍👩‍👧‍👦",
        "\u{202e}abc",
        "ＡＢＣ",
        "a\u{0}b",
        "\u{10ffff}\u{10ffff}",
        "\r\n",
    ];
    for n in [1u32, 2, 3, 1000] {
        for rule in [
            Desensitization::TruncateChars(n),
            Desensitization::MaskKeepFirst(n),
            Desensitization::MaskKeepLast(n),
        ] {
            for s in odd {
                let out = rule.apply_str(s);
                let shown = out.trim_start_matches('*').trim_end_matches('*');
                assert!(shown.chars().count() <= n as usize, "{rule} {s:?} → {out:?}");
                assert_eq!(rule.apply_str(&out), out, "{rule} not idempotent on {s:?}");
            }
        }
    }
}
