//! Budget lines accounted under zero-concentrated DP.
//!
//! A dataset whose policy says `accounting = "zcdp"` (recorded at
//! registration in `zcdp_policies`, with the policy's conversion δ) has its
//! budget lines accounted in ρ instead of ε:
//!
//! * a job of ε charges ρ = ε²/2 to the line, computed exactly from ε's
//!   units (a pure ε-DP job is ε²/2-zCDP, Bun and Steinke 2016,
//!   Proposition 1.4; a zCDP job of nominal ε is ρ-zCDP by construction),
//!   rounded **up** to units of 10⁻¹²; its δ (partition selection) adds to
//!   the line's δ as the δ of approximate zCDP (ρ's and δ's add under
//!   composition, Bun and Steinke 2016, Section 8);
//! * the line's ε spent is its total ρ converted to (ε, δ_c) at the
//!   conversion δ_c (by the converter the charging job supplies: OpenDP's
//!   conversion in the runtime), rounded up to units of 10⁻⁹; δ_c is added
//!   to the line's δ spent once, with the first charge. So the line's
//!   (ε spent, δ spent) remains exactly its (ε, δ)-DP guarantee, and a
//!   job's recorded charge is the increase of each (they still add up to
//!   the line's spent amounts);
//! * caps compare that ε and δ with the line's totals, as for pure lines.
//!
//! A line's accounting is fixed by its first charge that spends anything
//! (`zcdp_lines` holds the zCDP ones with their ρ spent): until then it
//! follows the dataset's policy; afterwards a policy change of accounting
//! applies to new lines only, so that no line ever mixes the two sums.

use crate::GovernanceError;
use crate::amount::{Delta, Epsilon};
use crate::db::Tx;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS zcdp_policies (
    dataset TEXT PRIMARY KEY,
    conversion_delta BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS zcdp_lines (
    grant_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    conversion_delta BIGINT NOT NULL,
    rho_spent BIGINT NOT NULL,
    PRIMARY KEY (grant_id, dataset)
);
";

/// ρ is accounted in units of 10⁻¹².
pub const RHO_UNITS_PER_ONE: i64 = 1_000_000_000_000;

/// Converts ρ to the ε of (ε, δ)-DP at δ: `None` when it cannot.
pub type ZcdpConversion = fn(rho: f64, delta: f64) -> Option<f64>;

/// The zCDP state of a budget line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZcdpLine {
    /// δ_c, the δ at which the line's ρ converts to its ε.
    pub conversion_delta: Delta,
    /// ρ spent, in units of 10⁻¹².
    pub rho_spent: i64,
    /// Whether a charge has fixed the line's accounting (and charged δ_c).
    pub fixed: bool,
}

impl ZcdpLine {
    /// The line's zCDP state from the [`crate::store`] line query's
    /// columns: the line's own row (conversion δ, ρ spent), the policy's
    /// conversion δ, and whether the line has spent anything.
    pub(crate) fn from_columns(
        line: (Option<i64>, Option<i64>),
        policy: Option<i64>,
        spent_anything: bool,
    ) -> Option<ZcdpLine> {
        match (line, policy) {
            ((Some(delta), Some(rho)), _) => Some(ZcdpLine {
                conversion_delta: Delta::from_units(delta),
                rho_spent: rho,
                fixed: true,
            }),
            (_, Some(delta)) if !spent_anything => Some(ZcdpLine {
                conversion_delta: Delta::from_units(delta),
                rho_spent: 0,
                fixed: false,
            }),
            _ => None,
        }
    }

    pub fn rho_spent_f64(&self) -> f64 {
        self.rho_spent as f64 / RHO_UNITS_PER_ONE as f64
    }
}

/// ρ = ε²/2 of a charged ε, in units of 10⁻¹², rounded up: with ε = e·10⁻⁹,
/// ρ = e²/2·10⁻¹⁸ = ⌈e² / (2·10⁶)⌉ units.
pub fn rho_units_of(epsilon: Epsilon) -> Result<i64, GovernanceError> {
    let e = i128::from(epsilon.units());
    let units = (e * e + 1_999_999) / 2_000_000;
    i64::try_from(units)
        .map_err(|_| GovernanceError::Storage(format!("ρ of ε = {epsilon} is too large to account for")))
}

/// What one job's charge does to a zCDP line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ZcdpCharge {
    pub rho_after: i64,
    pub epsilon_after: Epsilon,
    pub delta_after: Delta,
}

/// The line's amounts after charging a job of ε and δ (see the module docs).
pub(crate) fn charge(
    line: &ZcdpLine,
    epsilon_spent: Epsilon,
    delta_spent: Delta,
    epsilon: Epsilon,
    delta: Delta,
    convert: Option<ZcdpConversion>,
) -> Result<ZcdpCharge, GovernanceError> {
    let overflow = || GovernanceError::Storage("a zCDP budget line overflowed".into());
    let rho_after = line
        .rho_spent
        .checked_add(rho_units_of(epsilon)?)
        .ok_or_else(overflow)?;
    let epsilon_after = if rho_after == line.rho_spent {
        epsilon_spent
    } else {
        let convert = convert.ok_or_else(|| {
            GovernanceError::Storage("a job charging a zCDP budget line must give the zCDP conversion".into())
        })?;
        let rho = rho_after as f64 / RHO_UNITS_PER_ONE as f64;
        let eps = convert(rho, line.conversion_delta.as_f64()).ok_or_else(|| {
            GovernanceError::Storage(format!(
                "ρ = {rho} does not convert to ε at δ = {}",
                line.conversion_delta
            ))
        })?;
        Epsilon::charge(eps)?.max(epsilon_spent)
    };
    let first = if line.fixed || rho_after == 0 {
        Delta::ZERO
    } else {
        line.conversion_delta
    };
    let delta_after = delta_spent
        .checked_add(delta)
        .and_then(|d| d.checked_add(first))
        .ok_or_else(overflow)?;
    Ok(ZcdpCharge {
        rho_after,
        epsilon_after,
        delta_after,
    })
}

/// Records the line's ρ after a charge (and fixes it as zCDP).
pub(crate) fn record(
    tx: &mut dyn Tx,
    grant: &str,
    dataset: &str,
    line: &ZcdpLine,
    rho_after: i64,
) -> Result<(), GovernanceError> {
    tx.execute(
        "INSERT INTO zcdp_lines (grant_id, dataset, conversion_delta, rho_spent) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(grant_id, dataset) DO UPDATE SET rho_spent = excluded.rho_spent",
        &[
            grant.into(),
            dataset.into(),
            line.conversion_delta.units().into(),
            rho_after.into(),
        ],
    )?;
    Ok(())
}

/// Keeps a dataset's zCDP accounting as its policy says (`None`: pure).
pub(crate) fn set_policy(tx: &mut dyn Tx, dataset: &str, conversion_delta: Option<f64>) -> Result<(), GovernanceError> {
    match conversion_delta {
        Some(d) => {
            let d = Delta::total(d)?;
            tx.execute(
                "INSERT INTO zcdp_policies (dataset, conversion_delta) VALUES (?1, ?2)
                 ON CONFLICT(dataset) DO UPDATE SET conversion_delta = excluded.conversion_delta",
                &[dataset.into(), d.units().into()],
            )?;
        }
        None => {
            tx.execute("DELETE FROM zcdp_policies WHERE dataset = ?1", &[dataset.into()])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rho_is_half_epsilon_squared_rounded_up() {
        assert_eq!(
            rho_units_of(Epsilon::charge(1.0).expect("ε")).expect("ρ"),
            RHO_UNITS_PER_ONE / 2
        );
        assert_eq!(
            rho_units_of(Epsilon::charge(0.1).expect("ε")).expect("ρ"),
            5_000_000_000
        );
        // ε = 1e-9: ρ = 5e-19, less than one unit: charged one.
        assert_eq!(rho_units_of(Epsilon::from_units(1)).expect("ρ"), 1);
        assert_eq!(rho_units_of(Epsilon::ZERO).expect("ρ"), 0);
    }
}
