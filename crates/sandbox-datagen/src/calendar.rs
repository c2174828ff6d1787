//! Calendar arithmetic for `Date32` (days since 1970-01-01) and the
//! `YYYY-MM` month labels of `gov.utility_usage`.

/// The first month of utility data.
pub(crate) const FIRST_YEAR: i32 = 2023;

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
pub(crate) const fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i32;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1..=12) of the `index`-th month counted from 2023-01.
pub(crate) const fn month_of(index: u32) -> (i32, u32) {
    (FIRST_YEAR + (index / 12) as i32, index % 12 + 1)
}

/// `YYYY-MM` label of the `index`-th month counted from 2023-01.
pub(crate) fn month_label(index: u32) -> String {
    let (year, month) = month_of(index);
    format!("{year:04}-{month:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2023, 1, 1), 19_358);
        assert_eq!(days_from_civil(2024, 12, 31), 20_088);
        assert_eq!(days_from_civil(1990, 1, 1), 7_305);
    }

    #[test]
    fn labels() {
        assert_eq!(month_label(0), "2023-01");
        assert_eq!(month_label(11), "2023-12");
        assert_eq!(month_label(12), "2024-01");
        assert_eq!(month_label(23), "2024-12");
    }
}
