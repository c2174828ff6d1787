//! ε and δ: what a query costs and how its ε is split.

use crate::DpError;
use serde::Serialize;

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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpsilonSplit {
    pub total: f64,
    pub parts: Vec<(String, f64)>,
}

impl EpsilonSplit {
    /// Splits `total` equally across the labelled parts.
    pub fn equal(total: f64, labels: Vec<String>) -> Result<Self, DpError> {
        if !(total.is_finite() && total > 0.0) {
            return Err(DpError::InvalidEpsilon(total));
        }
        if labels.is_empty() {
            return Err(DpError::Internal("an ε split needs at least one part"));
        }
        let share = total / labels.len() as f64;
        Ok(EpsilonSplit {
            total,
            parts: labels.into_iter().map(|l| (l, share)).collect(),
        })
    }

    pub fn share(&self, index: usize) -> Option<f64> {
        self.parts.get(index).map(|p| p.1)
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
}
