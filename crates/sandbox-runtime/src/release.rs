//! From partial statistics to a released table: the DP path (bound, select,
//! noise) and the threshold path (k, dominance, rounding), applied as the
//! combined rules say. Exact values never leave this module except through
//! the threshold path, which the data owner chose.

use crate::RuntimeError;
use crate::rules::ReleaseRules;
use sandbox_dp::accounting::EpsilonSplit;
use sandbox_dp::aggregate::{AggregateSpec, CalibratedAggregate, exact_value};
use sandbox_dp::bounding::{ContributionBounds, SecureChooser, bounded_totals, exact_totals};
use sandbox_dp::partition::PartitionSelector;
use sandbox_dp::sdc::{dominated_groups, round_to_base};
use sandbox_model::{ReleasedCell, ReleasedColumn, ReleasedTable, Suppression};
use sandbox_sql::CheckedQuery;
use sandbox_sql::partials::PartialsResult;
use sandbox_sql::query::{AggregateFn, OutputSource};
use std::cmp::Ordering;

/// The label of partition selection in an ε split.
pub const SELECTION: &str = "partition selection";

/// How the query's ε is split: one equal share per aggregate, plus one for
/// partition selection when the groups are not public.
pub fn epsilon_split(q: &CheckedQuery, needs_selection: bool, epsilon: f64) -> Result<EpsilonSplit, RuntimeError> {
    let mut labels: Vec<String> = q.aggregates.iter().map(|a| a.display.clone()).collect();
    if needs_selection {
        labels.push(SELECTION.to_string());
    }
    Ok(EpsilonSplit::equal(epsilon, labels)?)
}

/// The DP contribution bounds of the rules.
pub fn bounds(rules: &ReleaseRules) -> Result<ContributionBounds, RuntimeError> {
    Ok(ContributionBounds::new(
        rules.max_groups_per_unit,
        rules.max_rows_per_group,
    )?)
}

pub struct Released {
    pub table: ReleasedTable,
    pub groups_released: u64,
    pub groups_suppressed: u64,
}

/// Releases the partials under the rules.
pub fn release(
    q: &CheckedQuery,
    specs: &[AggregateSpec],
    result: &PartialsResult,
    rules: &ReleaseRules,
    epsilon: f64,
) -> Result<Released, RuntimeError> {
    let n = result.groups.keys.len();
    let p = &result.partials;
    let mut notes = Vec::new();
    let exact = exact_totals(p, n)?;

    // Which groups may appear at all (DP partition selection).
    let mut shown = vec![true; n];
    let mut cells: Vec<Vec<ReleasedCell>> = vec![Vec::new(); n];
    if rules.dp {
        let split = epsilon_split(q, !result.groups.public, epsilon)?;
        let b = bounds(rules)?;
        let g_eff = b.effective_groups(result.groups.public.then_some(n));
        let totals = bounded_totals(p, n, b, &mut SecureChooser)?;
        if !result.groups.public {
            let share = split
                .share(q.aggregates.len())
                .ok_or(sandbox_dp::DpError::Internal("missing selection share"))?;
            let selector = PartitionSelector::new(g_eff, share, rules.delta, rules.min_units)?;
            for (g, keep) in shown.iter_mut().enumerate() {
                *keep = selector.keep(totals.units[g])?;
            }
            notes.push(format!(
                "groups were chosen by DP partition selection: a group appears when its noisy count of privacy units reaches {} (noise scale {:.2})",
                selector.threshold(),
                selector.scale()
            ));
        } else {
            notes.push("every group of the public key set appears, including empty ones".into());
        }
        let calibrated: Vec<CalibratedAggregate> = specs
            .iter()
            .enumerate()
            .map(|(j, s)| {
                let share = split
                    .share(j)
                    .ok_or(sandbox_dp::DpError::Internal("missing aggregate share"))?;
                CalibratedAggregate::new(s.clone(), share, g_eff, b.max_rows_per_group as u64)
            })
            .collect::<Result<_, _>>()?;
        for g in 0..n {
            if !shown[g] {
                continue;
            }
            for (j, c) in calibrated.iter().enumerate() {
                let v = c.release(&totals, g)?;
                let value = rounding_base(q, rules, j)
                    .filter(|_| rules.threshold)
                    .map_or(v.value, |base| round_to_base(v.value, base));
                cells[g].push(ReleasedCell::Noisy {
                    value,
                    mechanism: c.mechanism().to_string(),
                    scale: v.scale,
                    ci95: [v.ci95.0, v.ci95.1],
                });
            }
        }
        notes.push(format!(
            "each privacy unit contributed to at most {g_eff} group(s) and {} row(s) per group; measures were clamped to their public bounds",
            b.max_rows_per_group
        ));
    } else {
        for (g, row) in cells.iter_mut().enumerate() {
            for (j, s) in specs.iter().enumerate() {
                let base = rounding_base(q, rules, j).unwrap_or(0.0);
                let v = exact_value(s, &exact, g)?;
                let value = if base > 0.0 { round_to_base(v, base) } else { v };
                row.push(ReleasedCell::Rounded { value, base });
            }
        }
        notes.push(
            "released under threshold rules only (no differential privacy), as the data owners' policies ask".into(),
        );
    }

    // Statistical disclosure control on exact data (threshold / both).
    let mut suppressed_k = 0u64;
    let mut suppressed_dom = 0u64;
    let mut withheld = vec![None; n];
    if rules.threshold {
        let sums: Vec<usize> = specs
            .iter()
            .filter_map(|s| match s {
                AggregateSpec::Sum { measure, .. } | AggregateSpec::Avg { measure, .. } => Some(*measure),
                _ => None,
            })
            .collect();
        let mut dominated = vec![false; n];
        for d in &rules.dominance {
            let flags = dominated_groups(p, n, &sums, d.n, d.percent);
            for (a, b) in dominated.iter_mut().zip(flags) {
                *a |= b;
            }
        }
        for g in 0..n {
            if !shown[g] {
                continue;
            }
            if exact.units[g] < rules.min_units as i128 {
                withheld[g] = Some("k-threshold");
                suppressed_k += 1;
            } else if dominated[g] {
                withheld[g] = Some("dominance");
                suppressed_dom += 1;
            }
        }
    }

    // Assemble rows: public groups show withheld cells; others are omitted.
    let mut rows: Vec<(usize, Vec<ReleasedCell>)> = Vec::new();
    for g in 0..n {
        if !shown[g] {
            continue;
        }
        match withheld[g] {
            // Suppressed groups without public keys are omitted (and counted).
            Some(_) if !result.groups.public => {}
            Some(rule) => rows.push((
                g,
                specs
                    .iter()
                    .map(|_| ReleasedCell::Withheld { rule: rule.to_string() })
                    .collect(),
            )),
            None => rows.push((g, std::mem::take(&mut cells[g]))),
        }
    }
    let keys = &result.groups.keys;
    let sort_value = |row: &(usize, Vec<ReleasedCell>), src: OutputSource| -> SortKey {
        match src {
            OutputSource::Group(i) => SortKey::Json(keys[row.0].get(i).cloned().unwrap_or(serde_json::Value::Null)),
            OutputSource::Aggregate(j) => SortKey::Num(match row.1.get(j) {
                Some(ReleasedCell::Noisy { value, .. }) | Some(ReleasedCell::Rounded { value, .. }) => *value,
                _ => f64::NAN,
            }),
        }
    };
    rows.sort_by(|a, b| {
        for (src, asc) in &q.order_by {
            let o = sort_value(a, *src).cmp(&sort_value(b, *src));
            let o = if *asc { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        json_cmp_rows(&keys[a.0], &keys[b.0])
    });
    let released_rows: Vec<Vec<ReleasedCell>> = rows
        .into_iter()
        .skip(q.offset)
        .take(q.limit.unwrap_or(usize::MAX))
        .map(|(g, agg)| {
            q.outputs
                .iter()
                .map(|(_, src)| match src {
                    OutputSource::Group(i) => ReleasedCell::Key {
                        value: keys[g].get(*i).cloned().unwrap_or(serde_json::Value::Null),
                    },
                    OutputSource::Aggregate(j) => agg.get(*j).cloned().unwrap_or(ReleasedCell::Withheld {
                        rule: "internal".into(),
                    }),
                })
                .collect()
        })
        .collect();
    let columns = q
        .outputs
        .iter()
        .map(|(name, src)| ReleasedColumn {
            name: name.clone(),
            kind: match src {
                OutputSource::Group(_) => "group_key".to_string(),
                OutputSource::Aggregate(j) => q.aggregates[*j].display.clone(),
            },
        })
        .collect();
    let mut suppressed = Vec::new();
    if suppressed_k > 0 {
        suppressed.push(Suppression {
            rule: format!("fewer than {} distinct privacy units (k-threshold)", rules.min_units),
            groups: suppressed_k,
        });
    }
    if suppressed_dom > 0 {
        suppressed.push(Suppression {
            rule: "dominance rule".into(),
            groups: suppressed_dom,
        });
    }
    let groups_released = released_rows.len() as u64;
    Ok(Released {
        table: ReleasedTable {
            columns,
            rows: released_rows,
            epsilon_spent: if rules.dp { epsilon } else { 0.0 },
            delta_spent: if rules.dp && !result.groups.public {
                rules.delta
            } else {
                0.0
            },
            suppressed,
            notes,
        },
        groups_released,
        groups_suppressed: suppressed_k + suppressed_dom,
    })
}

/// The rounding base of aggregate `j`: counts take the largest base any
/// policy sets; a measure's aggregate takes its own dataset's base; a
/// job-supplied function's output is not rounded by a policy written for
/// other quantities.
fn rounding_base(q: &CheckedQuery, rules: &ReleaseRules, j: usize) -> Option<f64> {
    let a = q.aggregates.get(j)?;
    match a.function {
        AggregateFn::CountRows | AggregateFn::CountValues | AggregateFn::CountUnits => rules.rounding_base,
        _ => a
            .measure_dataset
            .as_ref()
            .and_then(|d| rules.rounding_bases.get(d).copied()),
    }
}

#[derive(PartialEq)]
enum SortKey {
    Json(serde_json::Value),
    Num(f64),
}

impl Eq for SortKey {}
impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (SortKey::Num(a), SortKey::Num(b)) => a.total_cmp(b),
            (SortKey::Json(a), SortKey::Json(b)) => json_cmp(a, b),
            (SortKey::Num(_), _) => Ordering::Less,
            (_, SortKey::Num(_)) => Ordering::Greater,
        }
    }
}

fn json_cmp(a: &serde_json::Value, b: &serde_json::Value) -> Ordering {
    use serde_json::Value::*;
    match (a, b) {
        (Null, Null) => Ordering::Equal,
        (Null, _) => Ordering::Less,
        (_, Null) => Ordering::Greater,
        (Number(x), Number(y)) => x
            .as_f64()
            .unwrap_or(f64::NAN)
            .total_cmp(&y.as_f64().unwrap_or(f64::NAN)),
        (String(x), String(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn json_cmp_rows(a: &[serde_json::Value], b: &[serde_json::Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = json_cmp(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}
