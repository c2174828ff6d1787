//! Desensitization (脱敏) rules: how a column's values are coarsened before
//! any job, any released row or any sample dataset sees them.
//!
//! A rule is a pure function of one value, the same function everywhere:
//! the SQL engine applies it beneath the plan (`sandbox-sql`'s
//! `desensitize` module builds the equivalent expression), the sample
//! generator applies it to every value it reads and writes, and the policy
//! applies it to the column's public key set. Every rule is idempotent
//! (applying it to an already coarsened value changes nothing), so a
//! compiled policy written back and read again is the same policy.
//!
//! | rule | TOML | column types | value → released value |
//! |---|---|---|---|
//! | generalization to fixed-width bands | `{ band = 5 }` | int64 | `x` → `floor(x / w) · w`, the band's lower bound (37 → 35, −1 → −5), in exact integer arithmetic |
//! | generalization to owner-chosen bands | `{ bands = [0, 1000, 5000] }` | int64, float64 | `x` → the largest edge `≤ x`; below the first edge → the first edge (bottom coding) |
//! | generalization of dates | `{ truncate_to = "month" }` or `"year"` | date | the first day of the month or year |
//! | truncation | `{ truncate_chars = 6 }` | utf8 | the first `n` characters |
//! | masking | `{ mask_keep_first = 1 }` / `{ mask_keep_last = 4 }` | utf8 | the first (last) `n` characters and `***` after (before) them, whatever the length; a value of at most `n` characters is `n + 3` stars |
//!
//! NULL stays NULL under every rule, and every rule is idempotent (a
//! coarsened value coarsens to itself), so a sample dataset, already
//! desensitized, reads the same through the rules again.
//!
//! Why `band` is for integers only: `floor(x / w) · w` in floating point is
//! not exact (with w = 0.1 it is not idempotent and a label can fall below
//! its value's band; above 2⁵³·w it is the identity), so a float column is
//! banded with `bands = [e₀, …]`, whose only operation is the comparison
//! `eᵢ ≤ x`, exact for every float. On an int64 column both rules are
//! computed in integers, exactly, for every value including `i64::MIN` and
//! `i64::MAX`.

use serde::Serialize;
use std::fmt;
use std::num::NonZeroU64;

/// The most characters a masking or truncation rule may keep.
pub const MAX_KEEP_CHARS: u32 = 1000;
/// The most edges of a `bands` rule.
pub const MAX_BAND_EDGES: usize = 256;
/// The widest `band` and the largest |edge|: an edge is exact in `f64` and
/// `i64` (|x| ≤ 2⁵³), and a band's bounds fit an `i64`.
pub const MAX_BAND_MAGNITUDE: f64 = 1e15;

/// What replaces the hidden part of a masked value: always three stars,
/// whatever was hidden, so the mask does not reveal the value's length.
pub const MASK: &str = "***";

/// A date unit for [`Desensitization::TruncateDate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DateUnit {
    Month,
    Year,
}

impl DateUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            DateUnit::Month => "month",
            DateUnit::Year => "year",
        }
    }
}

/// One column's desensitization rule (validated: widths positive, edges
/// sorted and distinct, counts within [`MAX_KEEP_CHARS`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Desensitization {
    /// Generalization to bands of whole width `w` (1 ≤ w ≤
    /// [`MAX_BAND_MAGNITUDE`]), on int64 columns only: `x` →
    /// `floor(x / w) · w`, computed exactly in integers.
    Band(NonZeroU64),
    /// Generalization to owner-chosen bands: sorted, distinct, finite edges
    /// `e₀ < e₁ < … < eₙ`; `x` → the largest `eᵢ ≤ x`, or `e₀` when
    /// `x < e₀` (bottom coding); values `≥ eₙ` → `eₙ` (top coding).
    /// On an int64 column every edge is a whole number.
    Bands(Vec<f64>),
    /// Generalization of a date to the first day of its month or year.
    TruncateDate(DateUnit),
    /// Truncation: the first `n` characters (Unicode scalar values).
    TruncateChars(u32),
    /// Masking: the first `n` characters followed by [`MASK`].
    MaskKeepFirst(u32),
    /// Masking: [`MASK`] followed by the last `n` characters.
    MaskKeepLast(u32),
}

impl Desensitization {
    /// `band = width`, if the width is valid (1 ≤ width ≤
    /// [`MAX_BAND_MAGNITUDE`]).
    pub fn band(width: u64) -> Option<Desensitization> {
        NonZeroU64::new(width)
            .filter(|w| w.get() as f64 <= MAX_BAND_MAGNITUDE)
            .map(Desensitization::Band)
    }

    /// The rule's TOML key, as the owner writes it.
    pub fn key(&self) -> &'static str {
        match self {
            Desensitization::Band(_) => "band",
            Desensitization::Bands(_) => "bands",
            Desensitization::TruncateDate(_) => "truncate_to",
            Desensitization::TruncateChars(_) => "truncate_chars",
            Desensitization::MaskKeepFirst(_) => "mask_keep_first",
            Desensitization::MaskKeepLast(_) => "mask_keep_last",
        }
    }

    /// The rule applied to a float: `bands` by exact comparisons with the
    /// edges (NaN, below every edge, shows as `e₀`). `band` is refused on
    /// float columns at validation; should it reach a float anyway, the
    /// value shows as NaN (no value), never as itself or a finer one.
    /// Non-numeric rules return `x`.
    pub fn apply_f64(&self, x: f64) -> f64 {
        match self {
            Desensitization::Band(_) => f64::NAN,
            Desensitization::Bands(edges) => band_edge(edges, x),
            _ => x,
        }
    }

    /// The rule applied to an integer, exactly, for every `i64`: `band` is
    /// floor division in 128-bit integers (a value whose band starts below
    /// `i64::MIN` shows as `i64::MIN`, the bottom of its band within the
    /// type); `bands` compares with the edges as integers (whole, within
    /// ±[`MAX_BAND_MAGNITUDE`]). Never panics. Non-numeric rules return `x`.
    pub fn apply_i64(&self, x: i64) -> i64 {
        match self {
            Desensitization::Band(w) => {
                let (x, w) = (i128::from(x), i128::from(w.get()));
                // rem_euclid is in [0, w): start ≤ x, and start > i64::MIN - w.
                let start = x - x.rem_euclid(w);
                i64::try_from(start).unwrap_or(i64::MIN)
            }
            Desensitization::Bands(edges) => {
                // Whole edges within ±1e15 convert exactly.
                let i = edges.partition_point(|e| (*e as i64) <= x);
                let edge = match i {
                    0 => edges.first(),
                    i => edges.get(i - 1),
                };
                edge.map_or(x, |e| *e as i64)
            }
            _ => x,
        }
    }

    /// The rule applied to text. Non-text rules return `s` unchanged.
    pub fn apply_str(&self, s: &str) -> String {
        match self {
            Desensitization::TruncateChars(n) => s.chars().take(*n as usize).collect(),
            // A value of at most `n` characters would be shown whole: its
            // kept characters are stars too (`n` stars and the mask).
            Desensitization::MaskKeepFirst(n) | Desensitization::MaskKeepLast(n)
                if s.chars().count() <= *n as usize =>
            {
                short_mask(*n)
            }
            Desensitization::MaskKeepFirst(n) => {
                let kept: String = s.chars().take(*n as usize).collect();
                format!("{kept}{MASK}")
            }
            Desensitization::MaskKeepLast(n) => {
                let count = s.chars().count();
                let kept: String = s.chars().skip(count - *n as usize).collect();
                format!("{MASK}{kept}")
            }
            _ => s.to_string(),
        }
    }

    /// The rule applied to a date given as days since 1970-01-01 (a date
    /// whose month or year starts before day `i32::MIN` shows as that day).
    /// Never panics. Non-date rules return `days`.
    pub fn apply_date(&self, days: i32) -> i32 {
        match self {
            Desensitization::TruncateDate(unit) => {
                let (y, m, _) = civil_from_days(i64::from(days));
                let m = match unit {
                    DateUnit::Month => m,
                    DateUnit::Year => 1,
                };
                let start = days_from_civil(y, m, 1);
                i32::try_from(start).unwrap_or(if start < 0 { i32::MIN } else { i32::MAX })
            }
            _ => days,
        }
    }

    /// The rule in words, for `sandbox policy` and the catalog.
    pub fn describe(&self) -> String {
        match self {
            Desensitization::Band(w) => {
                // w ≤ 1e15: 4w fits a u64.
                let w = w.get();
                format!(
                    "generalized to bands of width {w} (a value shows as its band's lower bound: {} for {}–{})",
                    3 * w,
                    3 * w,
                    4 * w - 1,
                )
            }
            Desensitization::Bands(edges) => {
                let shown: Vec<String> = edges.iter().map(|e| num(*e)).collect();
                format!(
                    "generalized to the bands starting at {} (a value shows as its band's lower edge; values below {} show as {}, values from {} up as {})",
                    shown.join(", "),
                    edges.get(1).map_or_else(|| num(edges[0]), |e| num(*e)),
                    num(edges[0]),
                    num(edges[edges.len() - 1]),
                    num(edges[edges.len() - 1]),
                )
            }
            Desensitization::TruncateDate(unit) => {
                format!(
                    "generalized to its {} (shown as the {}'s first day)",
                    unit.as_str(),
                    unit.as_str()
                )
            }
            Desensitization::TruncateChars(n) => format!("truncated to its first {}", chars(*n)),
            Desensitization::MaskKeepFirst(n) => format!("masked: only its first {} shown, then {MASK}", chars(*n)),
            Desensitization::MaskKeepLast(n) => format!("masked: {MASK}, then only its last {}", chars(*n)),
        }
    }
}

impl fmt::Display for Desensitization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Desensitization::Band(w) => write!(f, "band = {w}"),
            Desensitization::Bands(edges) => {
                let shown: Vec<String> = edges.iter().map(|e| num(*e)).collect();
                write!(f, "bands = [{}]", shown.join(", "))
            }
            Desensitization::TruncateDate(u) => write!(f, "truncate_to = \"{}\"", u.as_str()),
            Desensitization::TruncateChars(n) => write!(f, "truncate_chars = {n}"),
            Desensitization::MaskKeepFirst(n) => write!(f, "mask_keep_first = {n}"),
            Desensitization::MaskKeepLast(n) => write!(f, "mask_keep_last = {n}"),
        }
    }
}

/// What a masked value of at most `n` characters shows: `n + 3` stars.
pub fn short_mask(n: u32) -> String {
    format!("{}{MASK}", "*".repeat(n as usize))
}

fn chars(n: u32) -> String {
    if n == 1 {
        "character".to_string()
    } else {
        format!("{n} characters")
    }
}

fn num(x: f64) -> String {
    format!("{x}")
}

/// The largest edge `≤ x`, or the first edge when `x` is below all.
fn band_edge(edges: &[f64], x: f64) -> f64 {
    let i = edges.partition_point(|e| *e <= x);
    match i {
        0 => edges.first().copied().unwrap_or(x),
        i => edges[i - 1],
    }
}

/// `(year, month, day)` of days since 1970-01-01 (Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date (Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn band(w: u64) -> Desensitization {
        Desensitization::band(w).expect("width")
    }

    #[test]
    fn bands_of_fixed_width_floor_to_the_lower_bound() {
        let r = band(5);
        assert_eq!(
            [0, 4, 5, 37, 39, 40, -1, -5, -6].map(|x| r.apply_i64(x)),
            [0, 0, 5, 35, 35, 40, -5, -5, -10]
        );
        assert_eq!(r.apply_i64(i64::MIN), i64::MIN);
        assert_eq!(r.apply_i64(i64::MAX), i64::MAX - 2);
        // i64::MIN + 3 is the first multiple of 5 in the type: the values
        // below it belong to a band that starts below the type.
        assert_eq!(r.apply_i64(i64::MIN + 2), i64::MIN);
        assert_eq!(r.apply_i64(i64::MIN + 3), i64::MIN + 3);
        // Never applied to a float (refused at validation): no value.
        assert!(r.apply_f64(37.9).is_nan());
        assert_eq!(Desensitization::band(0), None);
        assert_eq!(Desensitization::band(1_000_000_000_000_001), None);
        let widest = band(1_000_000_000_000_000);
        assert_eq!(widest.apply_i64(i64::MAX), 9_223_000_000_000_000_000);
        assert_eq!(widest.apply_i64(-1), -1_000_000_000_000_000);
    }

    #[test]
    fn owner_bands_bottom_and_top_code() {
        let r = Desensitization::Bands(vec![0.0, 1000.0, 5000.0, 20000.0]);
        assert_eq!(
            [-3.0, 0.0, 999.9, 1000.0, 4999.0, 5000.0, 19999.0, 20000.0, 1e9].map(|x| r.apply_f64(x)),
            [0.0, 0.0, 0.0, 1000.0, 1000.0, 5000.0, 5000.0, 20000.0, 20000.0]
        );
        assert_eq!(r.apply_i64(4999), 1000);
        assert_eq!(r.apply_i64(i64::MIN), 0);
        assert_eq!(r.apply_i64(i64::MAX), 20000);
        assert_eq!(r.apply_f64(f64::NEG_INFINITY), 0.0);
        assert_eq!(r.apply_f64(f64::INFINITY), 20000.0);
    }

    #[test]
    fn dates_truncate_to_month_and_year() {
        let d = days_from_civil(2023, 7, 19) as i32;
        assert_eq!(
            Desensitization::TruncateDate(DateUnit::Month).apply_date(d),
            days_from_civil(2023, 7, 1) as i32
        );
        assert_eq!(
            Desensitization::TruncateDate(DateUnit::Year).apply_date(d),
            days_from_civil(2023, 1, 1) as i32
        );
        assert_eq!(civil_from_days(days_from_civil(1969, 12, 31)), (1969, 12, 31));
        let year = Desensitization::TruncateDate(DateUnit::Year);
        assert_eq!(year.apply_date(i32::MIN), i32::MIN);
        let (y, _, _) = civil_from_days(i64::from(i32::MAX));
        assert_eq!(i64::from(year.apply_date(i32::MAX)), days_from_civil(y, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn text_masks_count_characters_and_hide_the_length() {
        assert_eq!(Desensitization::MaskKeepFirst(1).apply_str("张三丰"), "张***");
        assert_eq!(Desensitization::MaskKeepFirst(1).apply_str("张三"), "张***");
        // Never a whole value: too short to keep anything, it is all stars.
        assert_eq!(Desensitization::MaskKeepFirst(1).apply_str("李"), "****");
        assert_eq!(Desensitization::MaskKeepFirst(3).apply_str("李四"), "******");
        assert_eq!(Desensitization::MaskKeepLast(4).apply_str("13812345678"), "***5678");
        assert_eq!(Desensitization::MaskKeepLast(4).apply_str("5678"), "*******");
        assert_eq!(Desensitization::MaskKeepLast(4).apply_str(""), "*******");
        assert_eq!(
            Desensitization::TruncateChars(6).apply_str("上海市浦东新区世纪大道"),
            "上海市浦东新"
        );
        assert_eq!(Desensitization::TruncateChars(6).apply_str("上海"), "上海");
    }

    #[test]
    fn every_rule_is_idempotent() {
        let rules = [
            band(5),
            Desensitization::Bands(vec![10.0, 20.0, 50.0]),
            Desensitization::TruncateChars(2),
            Desensitization::MaskKeepFirst(1),
            Desensitization::MaskKeepFirst(4),
            Desensitization::MaskKeepLast(2),
            Desensitization::TruncateDate(DateUnit::Month),
            Desensitization::TruncateDate(DateUnit::Year),
        ];
        for r in &rules {
            for x in [-12i64, 0, 3, 17, 49, 51, 1000] {
                assert_eq!(r.apply_i64(r.apply_i64(x)), r.apply_i64(x), "{r}");
                let f = x as f64 * 0.37;
                assert_eq!(r.apply_f64(r.apply_f64(f)).to_bits(), r.apply_f64(f).to_bits(), "{r}");
                assert_eq!(
                    r.apply_date(r.apply_date(x as i32 * 97)),
                    r.apply_date(x as i32 * 97),
                    "{r}"
                );
            }
            for s in ["", "a", "张三丰", "13812345678"] {
                assert_eq!(r.apply_str(&r.apply_str(s)), r.apply_str(s), "{r}");
            }
        }
    }
}
