//! Combining the policies of every protected dataset a job reads into the
//! rules its release follows: always the stricter choice for privacy
//! (smallest ε cap and δ, largest k and rounding base, every dominance
//! rule). G and R only calibrate noise (the guarantee is set by ε and δ),
//! so the largest declared values are used, to keep rows that some owner
//! said a unit may contribute.

use crate::RuntimeError;
use sandbox_policy::{Dominance, Policy};

#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseRules {
    pub dp: bool,
    pub threshold: bool,
    pub min_units: u64,
    pub rounding_base: Option<f64>,
    pub dominance: Vec<Dominance>,
    pub epsilon_cap: f64,
    pub delta: f64,
    pub max_groups_per_unit: u32,
    pub max_rows_per_group: u32,
}

pub fn combine<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> Result<ReleaseRules, RuntimeError> {
    let mut r = ReleaseRules {
        dp: false,
        threshold: false,
        min_units: 2,
        rounding_base: None,
        dominance: Vec::new(),
        epsilon_cap: f64::INFINITY,
        delta: 1.0,
        max_groups_per_unit: 1,
        max_rows_per_group: 1,
    };
    let mut any = false;
    for p in policies {
        any = true;
        r.dp |= p.release.mode.uses_dp();
        r.threshold |= p.release.mode.uses_threshold();
        r.min_units = r.min_units.max(p.release.min_units);
        r.rounding_base = match (r.rounding_base, p.release.rounding_base) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(d) = p.release.dominance {
            r.dominance.push(d);
        }
        if let Some(dp) = &p.dp {
            r.epsilon_cap = r.epsilon_cap.min(dp.epsilon_per_query);
            r.delta = r.delta.min(dp.delta);
            r.max_groups_per_unit = r.max_groups_per_unit.max(dp.max_groups_per_unit);
            r.max_rows_per_group = r.max_rows_per_group.max(dp.max_rows_per_group);
        }
    }
    if !any {
        return Err(RuntimeError::Setup("no protected dataset in the query".into()));
    }
    if !r.dp {
        r.epsilon_cap = 0.0;
        r.delta = 0.0;
    }
    Ok(r)
}
