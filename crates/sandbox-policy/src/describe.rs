//! A policy in plain words, for `sandbox demo` and for owners reviewing
//! what they wrote.

use crate::{ColumnPolicy, Policy, ReleaseMode};
use sandbox_model::{ColumnRole, Dataset};

/// A number as a person writes it: `1`, `0.5`, `500000`, `1e-6`.
fn num(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-3 {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// `enterprise` → `enterprises`; good enough for the entity names in use.
fn entities(entity: &str) -> String {
    if entity.ends_with('s') {
        entity.to_string()
    } else {
        format!("{entity}s")
    }
}

impl Policy {
    /// Plain-language lines saying what the policy allows, in the order an
    /// analyst needs them: guarantee, limits, columns, fusions, job kinds.
    pub fn describe(&self, dataset: &Dataset) -> Vec<String> {
        let mut lines = vec![format!(
            "{} ({}): {}, provided by {}; policy version {}",
            dataset.id,
            dataset.title,
            dataset.open_class.label(),
            dataset.provider.name,
            self.version
        )];
        let entity = self.unit_entity.as_deref();
        let r = &self.release;

        match (r.mode, &self.dp) {
            (ReleaseMode::Threshold, _) | (_, None) => lines.push(
                "Released with threshold rules only (statistical disclosure control, no formal privacy guarantee)"
                    .to_string(),
            ),
            (mode, Some(dp)) => {
                let how = if mode == ReleaseMode::Both {
                    "differential privacy and threshold rules"
                } else {
                    "differential privacy"
                };
                lines.push(format!(
                    "Released with {how}: at most ε = {} per query, {} per agreement, δ = {}",
                    num(dp.epsilon_per_query),
                    num(dp.epsilon_budget),
                    num(dp.delta)
                ));
                lines.push(format!(
                    "Each query spends at least ε = {}; δ in total at most {} per agreement",
                    num(dp.epsilon_min_per_query),
                    num(dp.delta_budget)
                ));
                if let Some(conversion) = dp.accounting.conversion_delta() {
                    lines.push(format!(
                        "Budgets are accounted under zero-concentrated DP: a query of ε costs ρ = ε²/2, and an agreement's ε spent is its total ρ converted to (ε, δ) at δ = {}",
                        num(conversion)
                    ));
                }
                if let Some(e) = entity {
                    lines.push(match dp.max_rows_per_unit {
                        None => format!(
                            "Each {e} contributes to at most {} and {} per group",
                            plural(dp.max_groups_per_unit.into(), "group", "groups"),
                            plural(dp.max_rows_per_group.into(), "row", "rows"),
                        ),
                        Some(l) => format!(
                            "Each {e} contributes to at most {}, {} per group and {} in all",
                            plural(dp.max_groups_per_unit.into(), "group", "groups"),
                            plural(dp.max_rows_per_group.into(), "row", "rows"),
                            plural(l.into(), "row", "rows"),
                        ),
                    });
                }
            }
        }
        lines.push(match entity {
            Some(e) if r.mode == ReleaseMode::Dp => format!(
                "Groups without a public key set appear only when their noisy count of distinct {} reaches at least {} (DP partition selection)",
                entities(e),
                r.min_units
            ),
            Some(e) => format!(
                "Groups with fewer than {} distinct {} are suppressed",
                r.min_units,
                entities(e)
            ),
            None => format!("Groups with fewer than {} rows are suppressed", r.min_units),
        });
        if let Some(d) = r.dominance {
            let who = entity.map_or("contributors".to_string(), entities);
            lines.push(format!(
                "Groups where the {} largest {who} hold more than {}% of a sum are suppressed (dominance rule)",
                d.n,
                num(d.percent)
            ));
        }
        if let Some(b) = r.rounding_base {
            lines.push(format!("Released values are rounded to multiples of {}", num(b)));
        }
        let aggs: Vec<&str> = r.aggregates.iter().map(|a| a.as_str()).collect();
        lines.push(format!("Allowed aggregates: {}", aggs.join(", ")));

        // Catalog order first (how the owner thinks of the table), then any
        // column the catalog does not list.
        let listed = dataset.fields.iter().map(|f| f.name.as_str());
        let extra = self
            .columns
            .keys()
            .map(String::as_str)
            .filter(|n| dataset.field(n).is_none());
        for name in listed.chain(extra) {
            if let Some(c) = self.columns.get(name) {
                let unit = dataset.field(name).and_then(|f| f.unit.as_deref());
                lines.push(self.describe_column(name, c, unit));
            }
        }

        if self.fusions.is_empty() {
            lines.push("May not be fused with other datasets".to_string());
        }
        for f in &self.fusions {
            let keys: Vec<String> =
                f.on.iter()
                    .map(|(a, b)| if a == b { a.clone() } else { format!("{a} = {b}") })
                    .collect();
            lines.push(format!("May be fused with {} on {}", f.dataset, keys.join(", ")));
        }
        match &self.sample {
            Some(s) => {
                let who = entity.map_or("row".to_string(), str::to_string);
                lines.push(format!(
                    "A DP sample dataset (样本数据) may be downloaded without an application: ε = {} per sample \
                     (model) + {} (fidelity report), from the owner's sample budget of ε = {}; \
                     each {who} contributes at most {}; keys in the sample are fresh, never real",
                    num(s.epsilon),
                    num(s.fidelity_epsilon),
                    num(s.epsilon_budget),
                    plural(s.max_rows_per_unit.into(), "row", "rows"),
                ));
            }
            None => lines.push("No sample dataset (the owner has not allowed one)".to_string()),
        }
        let allowed = |b: bool| if b { "allowed" } else { "not allowed" };
        lines.push(format!("SQL jobs: {}", allowed(self.jobs.sql)));
        lines.push(format!("WebAssembly jobs: {}", allowed(self.jobs.wasm)));
        lines
    }

    fn describe_column(&self, name: &str, c: &ColumnPolicy, unit: Option<&str>) -> String {
        let line = self.describe_column_role(name, c, unit);
        match &c.desensitize {
            None => line,
            // A measure is never released as a row: every job reads it
            // coarsened (then clamped to its bounds), every sample shows it
            // coarsened.
            Some(rule) if c.has(ColumnRole::Measure) => format!(
                "{line}; desensitized: every job (before clamping to its bounds) and sample reads it {}",
                rule.describe()
            ),
            Some(rule) => format!(
                "{line}; desensitized: every job, released row and sample sees it {}",
                rule.describe()
            ),
        }
    }

    fn describe_column_role(&self, name: &str, c: &ColumnPolicy, unit: Option<&str>) -> String {
        let roles: Vec<String> = c.roles.iter().map(|r| r.as_str().replace('_', " ")).collect();
        let roles = roles.join(", ");
        if c.roles.is_restricted() {
            return format!("{name}: {roles} — never output");
        }
        if c.has(ColumnRole::Measure) {
            let bounds = match c.bounds {
                Some((lo, hi)) => format!(", clamped to [{}, {}]", num(lo), num(hi)),
                None => String::new(),
            };
            let unit = unit.map(|u| format!(" {u}")).unwrap_or_default();
            return format!("{name}: measure, aggregated only{bounds}{unit}");
        }
        if c.has(ColumnRole::Dimension) {
            let grouping = match (&c.released_public_keys(), &self.dp) {
                (Some(keys), _) => {
                    let shown: Vec<String> = keys.iter().take(4).map(|k| k.to_string()).collect();
                    let more = if keys.len() > shown.len() { ", …" } else { "" };
                    format!(
                        "its {} always released, even when empty: {}{more}",
                        plural(keys.len() as u64, "public key is", "public keys are"),
                        shown.join(", ")
                    )
                }
                (None, Some(dp)) if self.release.mode.uses_dp() && dp.delta == 0.0 => {
                    "cannot be grouped by under differential privacy (no public keys and δ = 0)".to_string()
                }
                (None, Some(_)) if self.release.mode.uses_dp() => {
                    "a group is released only if it passes private partition selection".to_string()
                }
                (None, _) => "a group is released only if it passes the threshold rules".to_string(),
            };
            return format!("{name}: dimension, may be grouped by; {grouping}");
        }
        if c.has(ColumnRole::Sensitive) {
            return format!("{name}: sensitive — may not be read by jobs");
        }
        format!("{name}: public — may be used freely within aggregate queries")
    }
}
