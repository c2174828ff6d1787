//! Combining the policies of every protected dataset a job reads into the
//! rules its release follows: always the stricter choice (smallest ε cap
//! and δ, largest minimum ε, largest k and rounding base, every dominance rule, and the
//! smallest G, so every owner's "a unit contributes to at most G groups"
//! holds). R is the exception: joins multiply rows (one enterprise row
//! meets 24 monthly utility rows), so the largest declared R is used; R
//! only calibrates noise, the guarantee is set by ε and δ.

use crate::RuntimeError;
use sandbox_policy::{Dominance, Policy, PolicySet};

#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseRules {
    pub dp: bool,
    pub threshold: bool,
    pub min_units: u64,
    /// Rounding base for counts (the largest any policy sets).
    pub rounding_base: Option<f64>,
    /// Rounding base of each dataset's own measures.
    pub rounding_bases: std::collections::BTreeMap<sandbox_model::DatasetId, f64>,
    pub dominance: Vec<Dominance>,
    pub epsilon_cap: f64,
    /// The smallest ε a query may spend: the largest minimum any policy
    /// sets.
    pub epsilon_min: f64,
    pub delta: f64,
    pub max_groups_per_unit: u32,
    pub max_rows_per_group: u32,
    /// L over all groups, when a policy sets one: the largest any policy
    /// allows (a policy without L allows its G · R), like R.
    pub max_rows_per_unit: Option<u32>,
    /// The groups are public key sets that one protected dataset's owner
    /// declared while the query reads another protected dataset: that
    /// other owner never accepted groups of any size, so k is enforced on
    /// them with a noisy distinct-unit count, as under threshold rules
    /// (set by [`for_query`]).
    pub foreign_public_keys: bool,
    /// How the query's ε composes: basic (Laplace), or zCDP (ρ = ε²/2 split
    /// across parts, Gaussian where a statistic's L2 sensitivity allows)
    /// when every protected dataset's budget line of the grant is accounted
    /// under zCDP (set by the sandbox from the ledger, never from data).
    pub composition: sandbox_dp::accounting::Composition,
}

/// The release rules of a checked SQL query: [`combine`] over the policies
/// of the protected datasets it reads, with
/// [`ReleaseRules::foreign_public_keys`] set from its GROUP BY keys.
///
/// # Errors
/// As [`combine`].
pub fn for_query(q: &sandbox_sql::CheckedQuery, policies: &PolicySet) -> Result<ReleaseRules, RuntimeError> {
    let mut rules = combine(q.protected.iter().filter_map(|d| policies.get(d)))?;
    rules.foreign_public_keys = public_keys_of_another_owner(q);
    Ok(rules)
}

/// Whether a GROUP BY key's public key set was declared by the owner of one
/// protected dataset while the query reads another protected dataset (or a
/// key's source is unknown): then public keys do not waive the other
/// owner's k.
fn public_keys_of_another_owner(q: &sandbox_sql::CheckedQuery) -> bool {
    q.group_keys.iter().any(|k| {
        k.public_keys.is_some()
            && match &k.source {
                Some(source) => q.protected.iter().any(|d| *d != source.dataset),
                None => true,
            }
    })
}

pub fn combine<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> Result<ReleaseRules, RuntimeError> {
    let mut r = ReleaseRules {
        dp: false,
        threshold: false,
        min_units: 2,
        rounding_base: None,
        rounding_bases: std::collections::BTreeMap::new(),
        dominance: Vec::new(),
        epsilon_cap: f64::INFINITY,
        epsilon_min: 0.0,
        delta: 1.0,
        max_groups_per_unit: u32::MAX,
        max_rows_per_group: 1,
        max_rows_per_unit: None,
        foreign_public_keys: false,
        composition: sandbox_dp::accounting::Composition::Basic,
    };
    let mut any_l = false;
    let mut l_most = 0u32;
    let mut any = false;
    for p in policies {
        any = true;
        r.dp |= p.release.mode.uses_dp();
        r.threshold |= p.release.mode.uses_threshold();
        r.min_units = r.min_units.max(p.release.min_units);
        if let Some(base) = p.release.rounding_base {
            r.rounding_bases.insert(p.dataset.clone(), base);
        }
        r.rounding_base = match (r.rounding_base, p.release.rounding_base) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(d) = p.release.dominance {
            r.dominance.push(d);
        }
        if let Some(dp) = &p.dp {
            r.epsilon_cap = r.epsilon_cap.min(dp.epsilon_per_query);
            r.epsilon_min = r.epsilon_min.max(dp.epsilon_min_per_query);
            r.delta = r.delta.min(dp.delta);
            r.max_groups_per_unit = r.max_groups_per_unit.min(dp.max_groups_per_unit);
            r.max_rows_per_group = r.max_rows_per_group.max(dp.max_rows_per_group);
            any_l |= dp.max_rows_per_unit.is_some();
            let l = dp
                .max_rows_per_unit
                .unwrap_or_else(|| dp.max_groups_per_unit.saturating_mul(dp.max_rows_per_group));
            l_most = l_most.max(l);
        }
    }
    if !any {
        return Err(RuntimeError::Setup("no protected dataset in the query".into()));
    }
    if r.max_groups_per_unit == u32::MAX {
        r.max_groups_per_unit = 1;
    }
    if any_l {
        r.max_rows_per_unit = Some(l_most.max(1));
    }
    if !r.dp {
        r.epsilon_cap = 0.0;
        r.epsilon_min = 0.0;
        r.delta = 0.0;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets;
    use sandbox_policy::PolicySet;

    fn shipped() -> PolicySet {
        let mut catalog = sandbox_model::Catalog::new();
        for (name, text) in assets::CATALOG {
            catalog
                .insert(sandbox_policy::parse_catalog_entry(name, text).expect("entry"))
                .expect("insert");
        }
        let sources: Vec<(String, String)> = assets::POLICIES
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        PolicySet::from_sources(&sources, &catalog).expect("policies")
    }

    #[test]
    fn combining_takes_the_stricter_rule_and_the_larger_r() {
        let set = shipped();
        let get = |id: &str| set.get(&id.parse().expect("id")).expect("policy");
        let r = combine([get("gov.legal_entities"), get("gov.utility_usage")]).expect("combine");
        assert!(r.dp && !r.threshold);
        assert_eq!((r.max_groups_per_unit, r.max_rows_per_group), (1, 24));
        assert_eq!(r.epsilon_cap, 1.0);
        let r = combine([get("gov.tax_payments"), get("bank.loans")]).expect("combine");
        assert!(r.dp && r.threshold, "tax is `both`");
        assert_eq!(r.min_units, 10);
        assert_eq!(r.epsilon_cap, 1.0, "the smaller cap of 1 and 2");
        assert_eq!(r.epsilon_min, 0.01, "the default minimum");
        assert_eq!(r.dominance.len(), 1);
        assert_eq!(r.rounding_base, Some(1.0));
        assert!(combine([]).is_err());
    }

    #[test]
    fn the_largest_minimum_epsilon_applies() {
        let set = shipped();
        let mut tax = set
            .get(&"gov.tax_payments".parse().expect("id"))
            .expect("policy")
            .clone();
        let mut bank = set.get(&"bank.loans".parse().expect("id")).expect("policy").clone();
        if let (Some(t), Some(b)) = (tax.dp.as_mut(), bank.dp.as_mut()) {
            t.epsilon_min_per_query = 0.05;
            b.epsilon_min_per_query = 0.2;
        }
        let r = combine([&tax, &bank]).expect("combine");
        assert_eq!((r.epsilon_min, r.epsilon_cap), (0.2, 1.0));
    }
}
