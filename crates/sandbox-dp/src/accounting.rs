//! ε, δ and ρ: what a query costs, how its budget is split across its
//! parts, and how zero-concentrated DP converts to (ε, δ).
//!
//! Two compositions:
//!
//! * **basic** (pure DP): a query of ε split into parts ε_i with Σ ε_i = ε;
//!   every part uses the discrete Laplace mechanism (or another pure
//!   mechanism) and the query is ε-DP (with δ from partition selection);
//! * **zCDP** (Bun and Steinke 2016): a query of ε buys ρ = ε²/2, split into
//!   parts ρ_i with Σ ρ_i = ρ. Each part is shown as its pure-equivalent
//!   ε_i = √(2ρ_i), so Σ ε_i² = ε². Statistics with an L2 sensitivity get
//!   the discrete Gaussian at their ρ_i; pure mechanisms (selection,
//!   thresholds, quantiles) run at ε_i and are ε_i²/2-zCDP (Bun and Steinke
//!   2016, Proposition 1.4), or δ-approximately so for partition selection.
//!   The query is then δ-approximately ρ-zCDP, and ρ's add up over queries.

use crate::DpError;
use opendp::combinators::ConcentratedMeasure;
use opendp::measures::ZeroConcentratedDivergence;
use serde::Serialize;

/// How the parts of a query (and the queries of a budget) compose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Composition {
    /// Pure ε-DP parts, ε's add up.
    #[default]
    Basic,
    /// ρ-zCDP parts, ρ's add up; ε_i = √(2ρ_i).
    Zcdp,
}

/// ρ = ε²/2: the zCDP cost of an ε-DP mechanism (Bun and Steinke 2016,
/// Proposition 1.4), and the ρ a zCDP query of nominal ε buys.
pub fn rho_of_epsilon(epsilon: f64) -> f64 {
    epsilon * epsilon / 2.0
}

/// The smallest ε (to OpenDP's bisection precision, rounded up) such that
/// a ρ-zCDP mechanism is (ε, δ)-DP, by OpenDP's conversion
/// (`ZeroConcentratedDivergence` to `SmoothedMaxDivergence`, Canonne,
/// Kamath and Steinke 2020, Proposition 12). ρ = 0 gives 0.
///
/// Errors: [`DpError::InvalidEpsilon`] for a negative or non-finite ρ,
/// [`DpError::InvalidDelta`] for δ outside (0, 1).
pub fn zcdp_epsilon(rho: f64, delta: f64) -> Result<f64, DpError> {
    if !(rho.is_finite() && rho >= 0.0) {
        return Err(DpError::InvalidEpsilon(rho));
    }
    if !(delta > 0.0 && delta < 1.0) {
        return Err(DpError::InvalidDelta(delta));
    }
    if rho == 0.0 {
        return Ok(0.0);
    }
    let profile = ZeroConcentratedDivergence::convert(rho).map_err(|e| DpError::Conversion(e.to_string()))?;
    profile.epsilon(delta).map_err(|e| DpError::Conversion(e.to_string()))
}

/// A privacy cost under basic sequential composition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PrivacyCost {
    pub epsilon: f64,
    pub delta: f64,
}

impl PrivacyCost {
    pub fn new(epsilon: f64, delta: f64) -> Self {
        Self { epsilon, delta }
    }
}

/// An explicit split of one query's ε across its parts (each aggregate and,
/// when used, partition selection). Parts are equal shares; the split is
/// reported with every release so the analyst can see what each number got.
/// Under [`Composition::Zcdp`] each part's ε is its pure-equivalent
/// `√(2ρ_i)`: the parts' ε² add up to the total's ε² (their ρ's to ρ).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpsilonSplit {
    pub total: f64,
    pub parts: Vec<(String, f64)>,
    pub composition: Composition,
}

impl EpsilonSplit {
    /// Splits `total` equally across the labelled parts (basic composition).
    pub fn equal(total: f64, labels: Vec<String>) -> Result<Self, DpError> {
        Self::equal_under(total, labels, Composition::Basic)
    }

    /// Splits `total` equally across the labelled parts under
    /// `composition`: ε/k each (basic), or ρ/k each, shown as ε/√k (zCDP).
    pub fn equal_under(total: f64, labels: Vec<String>, composition: Composition) -> Result<Self, DpError> {
        if !(total.is_finite() && total > 0.0) {
            return Err(DpError::InvalidEpsilon(total));
        }
        if labels.is_empty() {
            return Err(DpError::Internal("an ε split needs at least one part"));
        }
        let k = labels.len() as f64;
        let share = match composition {
            Composition::Basic => total / k,
            Composition::Zcdp => total / k.sqrt(),
        };
        Ok(EpsilonSplit {
            total,
            parts: labels.into_iter().map(|l| (l, share)).collect(),
            composition,
        })
    }

    pub fn share(&self, index: usize) -> Option<f64> {
        self.parts.get(index).map(|p| p.1)
    }

    /// Moves `fraction` (in (0, 1)) of part `index`'s privacy to a new part
    /// labelled `label`, appended: a fraction of its ε (basic) or of its ρ
    /// (zCDP, so the ε's become `ε√f` and `ε√(1 - f)`). The total is
    /// unchanged under either composition.
    pub fn carve(&mut self, index: usize, fraction: f64, label: String) {
        let composition = self.composition;
        if let Some(part) = self.parts.get_mut(index) {
            let (moved, kept) = match composition {
                Composition::Basic => (part.1 * fraction, part.1 * (1.0 - fraction)),
                Composition::Zcdp => (part.1 * fraction.sqrt(), part.1 * (1.0 - fraction).sqrt()),
            };
            part.1 = kept;
            self.parts.push((label, moved));
        }
    }

    /// ρ of the whole split under zCDP: Σ ε_i²/2 (= ε²/2).
    pub fn rho(&self) -> f64 {
        self.parts.iter().map(|p| rho_of_epsilon(p.1)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_total() {
        let s = EpsilonSplit::equal(1.0, vec!["a".into(), "b".into(), "c".into()]).expect("split");
        let sum: f64 = s.parts.iter().map(|p| p.1).sum();
        assert!((sum - 1.0).abs() < 1e-12);
        assert!(EpsilonSplit::equal(0.0, vec!["a".into()]).is_err());
        assert!(EpsilonSplit::equal(1.0, vec![]).is_err());
    }

    #[test]
    fn zcdp_shares_add_up_in_rho() {
        let mut s = EpsilonSplit::equal_under(
            1.0,
            vec!["a".into(), "b".into(), "c".into(), "d".into()],
            Composition::Zcdp,
        )
        .expect("split");
        assert!((s.share(0).expect("a") - 0.5).abs() < 1e-12);
        assert!((s.rho() - 0.5).abs() < 1e-12);
        s.carve(1, 0.1, "b estimation".into());
        assert!((s.rho() - 0.5).abs() < 1e-12, "carving keeps ρ");
        let mut b = EpsilonSplit::equal(1.0, vec!["a".into(), "b".into()]).expect("split");
        b.carve(0, 0.1, "e".into());
        let sum: f64 = b.parts.iter().map(|p| p.1).sum();
        assert!((sum - 1.0).abs() < 1e-12, "carving keeps ε");
    }

    /// OpenDP's conversion against the closed-form bound
    /// ε ≤ ρ + 2√(ρ ln(1/δ)) (Bun and Steinke 2016, Proposition 1.3): the
    /// optimal conversion is never larger, and not far below it.
    #[test]
    fn zcdp_converts_below_the_classic_bound() {
        for (rho, delta) in [(0.125, 1e-6), (0.5, 1e-9), (2.0, 1e-5), (0.005, 1e-8)] {
            let eps = zcdp_epsilon(rho, delta).expect("convert");
            let classic = rho + 2.0 * (rho * (1.0f64 / delta).ln()).sqrt();
            assert!(eps <= classic + 1e-9, "ρ {rho} δ {delta}: {eps} > {classic}");
            assert!(eps > 0.7 * classic, "ρ {rho} δ {delta}: {eps} vs {classic}");
        }
        assert_eq!(zcdp_epsilon(0.0, 1e-6).expect("zero"), 0.0);
        // The figures docs/privacy.md quotes.
        let hundred_small = zcdp_epsilon(100.0 * rho_of_epsilon(0.1), 1e-6).expect("100 × 0.1");
        let one_large = zcdp_epsilon(rho_of_epsilon(1.0), 1e-6).expect("1 × 1");
        assert!((5.2..5.25).contains(&hundred_small), "{hundred_small}");
        assert!((hundred_small - one_large).abs() < 1e-9, "the same ρ = 1/2");
        assert!(zcdp_epsilon(-1.0, 1e-6).is_err());
        assert!(zcdp_epsilon(1.0, 0.0).is_err());
    }
}
