//! Coercion of a file's values to the catalog entry's declared types.
//! A failure names the reason, never the value.

use crate::read::RawCell;
use crate::read::days_from_civil;
use sandbox_model::FieldType;

/// A value of the declared type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Days since 1970-01-01.
    Date(i32),
}

/// Why a value does not fit its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The reason, for the report.
    Value(&'static str),
    /// A malformed date (counted apart, as the quality report asks).
    Date(&'static str),
}

impl Failure {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Failure::Value(r) | Failure::Date(r) => r,
        }
    }
}

const DATE_FORMATS: &str = "not a date (expected YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD)";

/// Parses `YYYY-MM-DD`, `YYYY/MM/DD` or `YYYYMMDD` (a trailing
/// `T00:00:00…` or ` 00:00:00` is allowed), checking the calendar.
pub(crate) fn parse_date(s: &str) -> Option<i32> {
    let s = s.trim();
    let date = match s.find(['T', ' ']) {
        Some(i) => {
            let time = &s[i + 1..];
            if !time.chars().all(|c| c == '0' || c == ':' || c == '.' || c == 'Z') {
                return None;
            }
            &s[..i]
        }
        None => s,
    };
    let (y, m, d) = if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) {
        (&date[..4], &date[4..6], &date[6..])
    } else {
        let mut parts = date.split(['-', '/']);
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || y.len() != 4 || m.is_empty() || m.len() > 2 || d.is_empty() || d.len() > 2 {
            return None;
        }
        (y, m, d)
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if !(digits(y) && digits(m) && digits(d)) {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > days_in_month {
        return None;
    }
    i32::try_from(days_from_civil(y, m, d)).ok()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" | "是" => Some(true),
        "false" | "f" | "0" | "no" | "n" | "否" => Some(false),
        _ => None,
    }
}

/// Coerces one value to `declared`.
pub(crate) fn coerce(raw: RawCell, declared: FieldType) -> Result<Cell, Failure> {
    use FieldType as T;
    match (raw, declared) {
        (RawCell::Null, _) => Ok(Cell::Null),
        (RawCell::Invalid(reason), T::Date) => Err(Failure::Date(reason)),
        (RawCell::Invalid(reason), _) => Err(Failure::Value(reason)),
        (RawCell::Text(s), T::Utf8) => Ok(Cell::Str(s)),
        (RawCell::Int(i), T::Utf8) => Ok(Cell::Str(i.to_string())),
        (RawCell::Float(f), T::Utf8) => Ok(Cell::Str(f.to_string())),
        (RawCell::Bool(b), T::Utf8) => Ok(Cell::Str(b.to_string())),
        (RawCell::Date(_), T::Utf8) => Err(Failure::Value("a date where text is declared")),
        (RawCell::Text(s), T::Int64) => s
            .trim()
            .parse::<i64>()
            .map(Cell::Int)
            .map_err(|_| Failure::Value("not an integer")),
        (RawCell::Int(i), T::Int64) => Ok(Cell::Int(i)),
        (RawCell::Float(f), T::Int64) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Cell::Int(f as i64)),
        (RawCell::Float(_), T::Int64) => Err(Failure::Value("not an integer")),
        (RawCell::Text(s), T::Float64) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Cell::Float(f)),
            _ => Err(Failure::Value("not a finite number")),
        },
        (RawCell::Int(i), T::Float64) => Ok(Cell::Float(i as f64)),
        (RawCell::Float(f), T::Float64) if f.is_finite() => Ok(Cell::Float(f)),
        (RawCell::Float(_), T::Float64) => Err(Failure::Value("not a finite number")),
        (RawCell::Text(s), T::Boolean) => parse_bool(&s)
            .map(Cell::Bool)
            .ok_or(Failure::Value("not a boolean (true/false, 1/0, 是/否)")),
        (RawCell::Bool(b), T::Boolean) => Ok(Cell::Bool(b)),
        (RawCell::Int(i @ (0 | 1)), T::Boolean) => Ok(Cell::Bool(i == 1)),
        (RawCell::Text(s), T::Date) => parse_date(&s).map(Cell::Date).ok_or(Failure::Date(DATE_FORMATS)),
        (RawCell::Date(d), T::Date) => Ok(Cell::Date(d)),
        (RawCell::Int(i), T::Date) if (10_000_101..=99_991_231).contains(&i) => parse_date(&i.to_string())
            .map(Cell::Date)
            .ok_or(Failure::Date(DATE_FORMATS)),
        (_, T::Date) => Err(Failure::Date(DATE_FORMATS)),
        (_, T::Int64) => Err(Failure::Value("not an integer")),
        (_, T::Float64) => Err(Failure::Value("not a number")),
        (_, T::Boolean) => Err(Failure::Value("not a boolean")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_three_shapes_and_the_calendar_is_checked() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1970/1/2"), Some(1));
        assert_eq!(parse_date("19700103"), Some(2));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("2024-02-29T00:00:00"), Some(19_782));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "24-01-01",
            "2024-01-01T12:00",
            "yesterday",
            "2024-1-1-1",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn coercion_names_the_reason() {
        assert_eq!(coerce(RawCell::Text("12".into()), FieldType::Int64), Ok(Cell::Int(12)));
        assert_eq!(
            coerce(RawCell::Text("12.5".into()), FieldType::Int64),
            Err(Failure::Value("not an integer"))
        );
        assert_eq!(
            coerce(RawCell::Text("NaN".into()), FieldType::Float64),
            Err(Failure::Value("not a finite number"))
        );
        assert!(matches!(
            coerce(RawCell::Text("2024-02-30".into()), FieldType::Date),
            Err(Failure::Date(_))
        ));
        assert_eq!(
            coerce(RawCell::Text("是".into()), FieldType::Boolean),
            Ok(Cell::Bool(true))
        );
    }
}
