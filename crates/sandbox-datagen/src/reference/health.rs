//! ICD-10 chapters with age-dependent frequencies and costs, and Shanghai's
//! age pyramid.

/// One ICD-10 chapter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chapter {
    /// Roman numeral "I".."XXII".
    pub numeral: &'static str,
    /// Relative frequency of visits for children (0-14), adults (15-59) and
    /// the old (60+).
    pub weight_by_age_group: [f64; 3],
    /// Median cost of a visit in 元 (for an adult).
    pub median_cost: f64,
}

const fn ch(numeral: &'static str, child: f64, adult: f64, old: f64, median_cost: f64) -> Chapter {
    Chapter {
        numeral,
        weight_by_age_group: [child, adult, old],
        median_cost,
    }
}

/// All 22 chapters in order.
pub(crate) const CHAPTERS: [Chapter; 22] = [
    ch("I", 8.0, 3.0, 2.0, 250.0),
    ch("II", 0.3, 3.0, 8.0, 2500.0),
    ch("III", 0.5, 1.0, 1.5, 400.0),
    ch("IV", 0.5, 5.0, 14.0, 300.0),
    ch("V", 1.0, 5.0, 3.0, 350.0),
    ch("VI", 1.5, 4.0, 5.0, 400.0),
    ch("VII", 4.0, 4.0, 5.0, 250.0),
    ch("VIII", 5.0, 2.0, 2.0, 200.0),
    ch("IX", 0.3, 8.0, 28.0, 400.0),
    ch("X", 42.0, 18.0, 12.0, 200.0),
    ch("XI", 8.0, 12.0, 8.0, 350.0),
    ch("XII", 6.0, 5.0, 2.0, 180.0),
    ch("XIII", 1.0, 10.0, 9.0, 300.0),
    ch("XIV", 1.0, 7.0, 5.0, 350.0),
    ch("XV", 0.0, 3.0, 0.0, 600.0),
    ch("XVI", 1.5, 0.0, 0.0, 800.0),
    ch("XVII", 1.5, 0.3, 0.1, 600.0),
    ch("XVIII", 8.0, 6.0, 5.0, 200.0),
    ch("XIX", 6.0, 6.0, 4.0, 400.0),
    ch("XX", 1.0, 1.0, 0.5, 300.0),
    ch("XXI", 6.0, 6.0, 3.0, 150.0),
    ch("XXII", 0.5, 0.5, 0.5, 200.0),
];

/// Index of chapter XV (pregnancy), which only women aged 15-49 receive.
pub(crate) const PREGNANCY: usize = 14;
/// Index of chapter XXI (factors influencing health status: check-ups),
/// used instead of XV for everyone else.
pub(crate) const CHECK_UP: usize = 20;

/// Chapters whose patients come back very often (circulatory, endocrine,
/// neoplasms, genitourinary/dialysis, mental) with their relative weights.
pub(crate) const CHRONIC_CHAPTERS: [(usize, f64); 5] = [(8, 4.0), (3, 3.0), (1, 1.5), (13, 1.0), (4, 1.0)];

/// The age group (0 child, 1 adult, 2 old) used to index `weight_by_age_group`.
pub(crate) fn age_group(age: i64) -> usize {
    match age {
        ..=14 => 0,
        15..=59 => 1,
        _ => 2,
    }
}

/// Shanghai's resident age pyramid in ten-year bands: (first age, last age,
/// share in percent), roughly the 2020 census.
pub(crate) const AGE_BANDS: [(i64, i64, f64); 10] = [
    (0, 9, 8.0),
    (10, 19, 6.5),
    (20, 29, 11.0),
    (30, 39, 18.0),
    (40, 49, 14.0),
    (50, 59, 14.0),
    (60, 69, 15.0),
    (70, 79, 8.5),
    (80, 89, 4.0),
    (90, 100, 1.0),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chapter_indices() {
        assert_eq!(CHAPTERS[PREGNANCY].numeral, "XV");
        assert_eq!(CHAPTERS[CHECK_UP].numeral, "XXI");
        assert_eq!(CHAPTERS[8].numeral, "IX");
        assert_eq!(CHAPTERS[9].numeral, "X");
        assert_eq!(CHAPTERS[21].numeral, "XXII");
    }
}
