//! Red-team (attack4): the coarsening functions on edge values.

use crate::Desensitization;

/// A fixed-width band on a float column is `floor(x / w) · w` in floating
/// point: every released value must be a function of its band alone, and
/// applying the rule twice must change nothing (samples coarsen twice; the
/// docs promise idempotence).
#[test]
fn attack_float_bands_are_idempotent() {
    let mut broken = Vec::new();
    for w in [0.1, 0.3, 0.7, 1.1, 2.5, 0.01, 1e-3, 7.0, 1e6] {
        let r = Desensitization::Band(w);
        for i in -20_000i64..20_000 {
            let x = i as f64 * 0.013_7;
            let once = r.apply_f64(x);
            let twice = r.apply_f64(once);
            if once.to_bits() != twice.to_bits() {
                broken.push(format!("w={w} x={x}: {once} then {twice}"));
            }
        }
    }
    assert!(broken.is_empty(), "{} values not idempotent, e.g. {:?}", broken.len(), &broken[..broken.len().min(5)]);
}

/// A value lies in the band its released value names: `released ≤ x <
/// released + w` (the docs: "the lower bound of x's band").
#[test]
fn attack_float_band_released_value_is_the_lower_bound_of_the_value() {
    let mut wrong = Vec::new();
    for w in [0.1, 0.3, 0.7, 1.1, 0.01] {
        let r = Desensitization::Band(w);
        for i in 0i64..2_000 {
            let x = i as f64 * 0.05;
            let b = r.apply_f64(x);
            if !(b <= x && x < b + w) {
                wrong.push(format!("w={w}: {x} → {b}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} values outside their band, e.g. {:?}", wrong.len(), &wrong[..wrong.len().min(5)]);
}

/// Beyond 2⁵³·w a float band is the identity: the stored value is
/// released as is, though the owner asked for bands of width w (here the
/// band 1e17 + [0, 5) should show as a multiple of 5).
#[test]
fn attack_float_band_is_the_identity_on_large_values() {
    let r = Desensitization::Band(5.0);
    let x = 1e17 + 16.0;
    let b = r.apply_f64(x);
    assert!(b.rem_euclid(5.0) == 0.0, "{x} released as {b}, not a multiple of 5");
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
