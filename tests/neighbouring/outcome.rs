//! What an analyst sees of a job, reduced to what must not differ between
//! neighbouring databases, and the comparison of two releases against
//! their declared sensitivities. Shared by the neighbouring-database
//! binary and the distributed-mode binary.

use crate::neighbours;
use sandbox_runtime::testing::{ReleaseTrace, take_traces};
use sandbox_runtime::{Sandbox, SqlJobOptions, SqlJobResult};
use std::collections::BTreeMap;

/// What an analyst sees of a job, reduced to what must not differ.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Released(Box<ReleaseTrace>),
    Refused(String),
    Failed(String),
}

impl Outcome {
    pub fn kind(&self) -> String {
        match self {
            Outcome::Released(_) => "released".into(),
            Outcome::Refused(rule) => format!("refused by `{rule}`"),
            Outcome::Failed(message) => format!("failed: {message}"),
        }
    }
}

pub async fn run(sandbox: &Sandbox, sql: &str) -> Outcome {
    run_as(sandbox, neighbours::GRANT, sql).await
}

pub async fn run_as(sandbox: &Sandbox, grant: &str, sql: &str) -> Outcome {
    take_traces();
    match sandbox.run_sql(grant, sql, &SqlJobOptions::default()).await {
        Ok(SqlJobResult::Released { .. }) => {
            let mut traces = take_traces();
            assert_eq!(traces.len(), 1, "one traced DP release per job: {sql}");
            Outcome::Released(Box::new(traces.remove(0)))
        }
        Ok(SqlJobResult::DryRun(_)) => panic!("not a dry run"),
        Err(e) => match e.rule() {
            Some(rule) => Outcome::Refused(rule.to_string()),
            None => Outcome::Failed(e.to_string()),
        },
    }
}

/// Checks one pair of releases; returns a description of the first excess.
pub fn compare(d: &ReleaseTrace, n: &ReleaseTrace) -> Result<(), String> {
    // The count of rows that took a job function's default: calibrated
    // alike, moved by at most its sensitivity.
    match (d.defaults, n.defaults) {
        (None, None) => {}
        (Some((a, sa)), Some((b, sb))) if sa == sb => {
            if a.abs_diff(b) > sa {
                return Err(format!(
                    "the count of rows using a function's default moved by {} where its sensitivity is {sa}",
                    a.abs_diff(b)
                ));
            }
        }
        _ => return Err("the count of rows using a function's default is calibrated differently".into()),
    }
    if (
        d.groups_per_unit,
        d.rows_per_unit,
        &d.sensitivities,
        &d.selections,
        &d.l2_squared,
        &d.mechanisms,
    ) != (
        n.groups_per_unit,
        n.rows_per_unit,
        &n.sensitivities,
        &n.selections,
        &n.l2_squared,
        &n.mechanisms,
    ) {
        return Err("the calibration differs between D and its neighbour".into());
    }
    // Bound estimations (CLAMP_AUTO): one table-wide quantile each, whose
    // scores may move by at most its sensitivity (L∞, one group).
    if d.estimations.len() != n.estimations.len() {
        return Err("a different number of bound estimations on D and its neighbour".into());
    }
    for (i, ((sd, bound), (sn, bound_n))) in d.estimations.iter().zip(&n.estimations).enumerate() {
        let moved = sd.iter().zip(sn).map(|(a, b)| (a - b).abs()).max().unwrap_or(0);
        if bound != bound_n || sd.len() != sn.len() || moved > *bound as i128 {
            return Err(format!(
                "bound estimation {i}: its scores moved by {moved} where its sensitivity is {bound}"
            ));
        }
    }
    if d.dominance_sensitivities != n.dominance_sensitivities {
        return Err("the dominance calibration differs between D and its neighbour".into());
    }
    // The dominance statistics ride along as one more "aggregate".
    let mut sensitivities = d.sensitivities.clone();
    sensitivities.push(d.dominance_sensitivities.clone());
    let by_key = |t: &ReleaseTrace| -> BTreeMap<String, (i128, Vec<Vec<i128>>)> {
        t.groups
            .iter()
            .map(|g| {
                let mut components = g.components.clone();
                let mut dominance = g.dominance.clone();
                dominance.resize(t.dominance_sensitivities.len(), 0);
                components.push(dominance);
                (serde_json::to_string(&g.key).unwrap_or_default(), (g.units, components))
            })
            .collect()
    };
    let (a, b) = (by_key(d), by_key(n));
    let zero: Vec<Vec<i128>> = sensitivities.iter().map(|s| vec![0; s.len()]).collect();
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut units_l1 = 0i128;
    let mut l1: Vec<Vec<i128>> = zero.clone();
    // Σ over groups of each statistic's squared change (zCDP's L2).
    let mut l2: Vec<Vec<i128>> = zero.clone();
    // Selections (quantiles): per group the largest score change, summed.
    let mut selection_moved: Vec<i128> = vec![0; sensitivities.len()];
    for key in keys {
        let (ua, ca) = a.get(key).cloned().unwrap_or((0, zero.clone()));
        let (ub, cb) = b.get(key).cloned().unwrap_or((0, zero.clone()));
        units_l1 += (ua - ub).abs();
        for (j, (x, y)) in ca.iter().zip(&cb).enumerate() {
            let mut largest = 0i128;
            for (c, (p, q)) in x.iter().zip(y).enumerate() {
                l1[j][c] += (p - q).abs();
                l2[j][c] = l2[j][c].saturating_add((p - q).saturating_mul(p - q));
                largest = largest.max((p - q).abs());
            }
            selection_moved[j] += largest;
        }
    }
    for (j, selection) in d.selections.iter().enumerate() {
        let bound = sensitivities[j].first().copied().unwrap_or(0) as i128;
        if *selection && selection_moved[j] > bound {
            return Err(format!(
                "quantile {j}: its scores moved by {} (per group the largest, summed) where its sensitivity is {bound}",
                selection_moved[j]
            ));
        }
    }
    let g = d.groups_per_unit as i128;
    if units_l1 > g {
        return Err(format!("unit counts moved by {units_l1} (L1) where G = {g}"));
    }
    for (j, declared) in d.l2_squared.iter().enumerate() {
        for (c, bound) in declared.iter().enumerate() {
            let moved = l2.get(j).and_then(|x| x.get(c)).copied().unwrap_or(0);
            if let Some(bound) = bound
                && moved > *bound as i128
            {
                return Err(format!(
                    "aggregate {j} statistic {c} moved by √{moved} (L2) where its declared L2 sensitivity is √{bound}"
                ));
            }
        }
    }
    for (j, comps) in l1.iter().enumerate() {
        for (c, moved) in comps.iter().enumerate() {
            let bound = sensitivities[j][c] as i128;
            if *moved > bound {
                return Err(format!(
                    "aggregate {j} statistic {c} moved by {moved} (L1) where its sensitivity is {bound}"
                ));
            }
        }
    }
    Ok(())
}
