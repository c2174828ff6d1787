//! Exact privacy amounts. Budgets are added up and compared as integers,
//! never as `f64` (three charges of ε = 1e-17 must not vanish in the
//! rounding of a float sum):
//!
//! * [`Epsilon`]: ε in units of 10⁻⁹ (an `i64`, up to about 9.2·10⁹);
//! * [`Delta`]: δ in units of 10⁻¹⁵ (an `i64`, up to about 9.2·10³).
//!
//! A number given as `f64` (a policy value, a CLI flag, a JSON field) is
//! read as the decimal it is written as (its shortest round-trip form,
//! `1e-17`, `0.1`), and converted exactly: a **charge** rounds up to the
//! next unit, so no job is charged less than it asked for, and any job
//! with an amount above zero is charged at least one unit; a **total**
//! (a budget) rounds down, so no budget grants more than was written.

use serde::{Serialize, Serializer};
use std::fmt;

/// Why an `f64` is not a privacy amount.
#[derive(Debug, Clone, PartialEq)]
pub struct AmountError(pub String);

impl fmt::Display for AmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AmountError {}

/// `x · 10^scale` as an integer, rounded up (`ceil`) or down, from the
/// shortest decimal form of `x`; `None` when it does not fit an `i64`.
fn decimal_units(x: f64, scale: i32, ceil: bool) -> Option<i64> {
    if x == 0.0 {
        return Some(0);
    }
    // `{:e}` prints the shortest form that reads back as the same f64,
    // e.g. `1e-17`, `1.2345e2`.
    let text = format!("{x:e}");
    let (mantissa, exponent) = text.split_once('e')?;
    let exponent: i32 = exponent.parse().ok()?;
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let fraction_digits = mantissa.split_once('.').map_or(0, |(_, f)| f.len()) as i32;
    let digits: u128 = digits.parse().ok()?;
    // x = digits · 10^(exponent - fraction_digits).
    let shift = exponent - fraction_digits + scale;
    let units = if shift >= 0 {
        digits.checked_mul(10u128.checked_pow(u32::try_from(shift).ok()?)?)?
    } else {
        let divisor = u32::try_from(-shift).ok().and_then(|s| 10u128.checked_pow(s));
        match divisor {
            Some(d) => digits / d + u128::from(ceil && !digits.is_multiple_of(d)),
            // 10^-shift exceeds any 17-digit mantissa.
            None => u128::from(ceil),
        }
    };
    i64::try_from(units).ok()
}

macro_rules! amount {
    ($name:ident, $scale:expr, $symbol:expr, $doc:expr) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl $name {
            /// Decimal digits of one unit: the unit is 10^-SCALE.
            pub const SCALE: i32 = $scale;
            pub const ZERO: $name = $name(0);
            /// Units in one whole (10^SCALE).
            pub const ONE: i64 = 10i64.pow($scale as u32);

            /// An amount of `units` (each 10^-SCALE).
            pub const fn from_units(units: i64) -> Self {
                $name(units)
            }

            /// Its number of units.
            pub const fn units(self) -> i64 {
                self.0
            }

            fn check(x: f64, what: &str) -> Result<(), AmountError> {
                if x.is_finite() && x >= 0.0 {
                    Ok(())
                } else {
                    Err(AmountError(format!(
                        "{} {} must be a finite number ≥ 0, got {x}",
                        what, $symbol
                    )))
                }
            }

            /// What a job is charged for `x`: rounded **up** to the next
            /// unit (any `x > 0` costs at least one unit).
            pub fn charge(x: f64) -> Result<Self, AmountError> {
                Self::check(x, "a charged")?;
                decimal_units(x, Self::SCALE, true)
                    .map($name)
                    .ok_or_else(|| AmountError(format!("{} = {x} is too large to account for", $symbol)))
            }

            /// A budget of `x`: rounded **down** to a whole unit.
            pub fn total(x: f64) -> Result<Self, AmountError> {
                Self::check(x, "a budget's")?;
                decimal_units(x, Self::SCALE, false).map($name).ok_or_else(|| {
                    AmountError(format!(
                        "a budget of {} = {x} is too large to account for",
                        $symbol
                    ))
                })
            }

            /// The nearest `f64` (exact for display: `units / 10^SCALE`
            /// is correctly rounded).
            pub fn as_f64(self) -> f64 {
                self.0 as f64 / Self::ONE as f64
            }

            pub fn checked_add(self, other: Self) -> Option<Self> {
                self.0.checked_add(other.0).map($name)
            }

            /// `self - other`, not below zero.
            pub fn saturating_sub(self, other: Self) -> Self {
                $name(self.0.saturating_sub(other.0).max(0))
            }

            pub fn is_zero(self) -> bool {
                self.0 == 0
            }
        }

        /// The exact decimal value, e.g. `0.000000001`, `2.5`, `10`.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let sign = if self.0 < 0 { "-" } else { "" };
                let abs = self.0.unsigned_abs();
                let one = Self::ONE.unsigned_abs();
                let (whole, frac) = (abs / one, abs % one);
                if frac == 0 {
                    return write!(f, "{sign}{whole}");
                }
                let frac = format!("{frac:0width$}", width = Self::SCALE as usize);
                write!(f, "{sign}{whole}.{}", frac.trim_end_matches('0'))
            }
        }

        /// As a JSON number (its nearest `f64`).
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_f64(self.as_f64())
            }
        }
    };
}

amount!(
    Epsilon,
    9,
    "ε",
    "ε in fixed-point units of 10⁻⁹ (see the [module](self) documentation)."
);
amount!(
    Delta,
    15,
    "δ",
    "δ in fixed-point units of 10⁻¹⁵ (see the [module](self) documentation)."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_round_up_and_totals_round_down() {
        assert_eq!(Epsilon::charge(1e-17).map(Epsilon::units), Ok(1), "never free");
        assert_eq!(Epsilon::total(1e-17).map(Epsilon::units), Ok(0));
        assert_eq!(Epsilon::charge(0.1).map(Epsilon::units), Ok(100_000_000));
        assert_eq!(Epsilon::charge(0.3).map(Epsilon::units), Ok(300_000_000));
        assert_eq!(Epsilon::charge(1e-6).map(Epsilon::units), Ok(1_000));
        assert_eq!(Epsilon::charge(1.5e-9).map(Epsilon::units), Ok(2));
        assert_eq!(Epsilon::total(1.5e-9).map(Epsilon::units), Ok(1));
        assert_eq!(Epsilon::charge(123.456789).map(Epsilon::units), Ok(123_456_789_000));
        assert_eq!(Epsilon::charge(0.0).map(Epsilon::units), Ok(0));
        assert_eq!(Delta::charge(1e-6).map(Delta::units), Ok(1_000_000_000));
        assert_eq!(Delta::charge(1e-20).map(Delta::units), Ok(1));
        assert_eq!(Delta::charge(f64::MIN_POSITIVE).map(Delta::units), Ok(1));
        assert_eq!(Delta::total(1e-4).map(Delta::units), Ok(100_000_000_000));
        assert!(Epsilon::charge(-1.0).is_err());
        assert!(Epsilon::charge(f64::NAN).is_err());
        assert!(Epsilon::charge(f64::INFINITY).is_err());
        assert!(Epsilon::charge(1e10).is_err(), "beyond i64 units");
        assert!(Delta::total(1e300).is_err());
    }

    #[test]
    fn display_is_the_exact_decimal_and_f64_is_nearest() {
        assert_eq!(Epsilon::from_units(1).to_string(), "0.000000001");
        assert_eq!(Epsilon::from_units(2_500_000_000).to_string(), "2.5");
        assert_eq!(Epsilon::from_units(10_000_000_000).to_string(), "10");
        assert_eq!(Delta::from_units(1_000_000_000).to_string(), "0.000001");
        assert_eq!(Epsilon::from_units(1_000_000).as_f64(), 0.001);
        assert_eq!(Epsilon::from_units(300_000_000).as_f64(), 0.3);
        assert_eq!(Delta::from_units(1_000_000_000).as_f64(), 1e-6);
        assert_eq!(
            serde_json::to_string(&Epsilon::from_units(500_000_000)).ok(),
            Some("0.5".into())
        );
    }

    #[test]
    fn sums_are_exact() {
        let step = Epsilon::charge(1e-6).unwrap_or_default();
        let mut sum = Epsilon::ZERO;
        for _ in 0..1000 {
            sum = sum.checked_add(step).unwrap_or_default();
        }
        assert_eq!(sum, Epsilon::from_units(1_000_000));
        assert_eq!(sum.as_f64(), 0.001);
        let float: f64 = (0..1000).map(|_| 1e-6).sum();
        assert_ne!(float, 0.001, "what f64 accumulation would have given");
    }
}
