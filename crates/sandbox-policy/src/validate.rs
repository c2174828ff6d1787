//! One policy file: raw TOML → checked against its catalog entry →
//! compiled [`Policy`]. Checks that need other policies live in `set.rs`.
//!
//! Every check reports into one list and carries on, so an owner sees all
//! problems of a file at once; checks that depend on an earlier value only
//! run when that value was valid, to avoid follow-on noise.

use crate::limits::{
    DEFAULT_DELTA_BUDGET_QUERIES, DEFAULT_EPSILON_MIN, MAX_ABS_BOUND, MAX_DELTA, MAX_DELTA_BUDGET, MAX_EPSILON_BUDGET,
    MAX_EPSILON_PER_QUERY, MAX_GROUPS_PER_UNIT, MAX_ROWS_PER_GROUP, MIN_DELTA, MIN_EPSILON, MIN_RELATIVE_WIDTH,
    MIN_WIDTH,
};
use crate::limits::{DEFAULT_SAMPLE_BINS, DEFAULT_SAMPLE_ROWS, MAX_SAMPLE_BINS, MAX_SAMPLE_PAIRS, MAX_SAMPLE_ROWS};
use crate::raw::{RawColumn, RawDp, RawFusion, RawPolicy, RawRelease, RawSample};
use crate::span::Source;
use crate::{
    Accounting, AggregateKind, ColumnPolicy, Dominance, DpParams, Fusion, JobPermissions, Policy, PolicyError,
    PolicyErrors, PublicKey, ReleaseMode, ReleaseRules, SamplePolicy,
};
use sandbox_model::{Catalog, ColumnRole, Dataset, DatasetId, FieldType, OpenClass, RoleSet};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use toml::Spanned;

mod desensitize;

/// Where the values that cross-policy checks point at sit in the file.
#[derive(Debug, Clone)]
pub(crate) struct PolicySpans {
    pub dataset: Range<usize>,
    /// One per compiled fusion, in order: the `dataset` value and each pair.
    pub fusions: Vec<FusionSpans>,
}

#[derive(Debug, Clone)]
pub(crate) struct FusionSpans {
    pub dataset: Range<usize>,
    pub pairs: Vec<Range<usize>>,
}

/// A policy that passed every single-file check.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub policy: Policy,
    pub spans: PolicySpans,
    /// Problems that make one `[[fusion]]` inert (left out of the policy)
    /// rather than the file invalid: those that lie in the other dataset
    /// (gone, a column gone or retyped), so that another owner's change
    /// never makes this policy invalid nor this policy block it.
    pub warnings: Vec<PolicyError>,
}

/// A policy that did not; `dataset` is its id when that much was readable,
/// so the set does not also report the dataset as lacking a policy.
#[derive(Debug, Clone)]
pub(crate) struct Failed {
    pub dataset: Option<DatasetId>,
    pub errors: PolicyErrors,
}

/// Parses and validates one policy file against the catalog.
pub(crate) fn compile(file: &str, text: &str, catalog: &Catalog) -> Result<Compiled, Failed> {
    let src = Source::new(file, text);
    let raw: RawPolicy = toml::from_str(text).map_err(|e| Failed {
        dataset: src.top_level_str("dataset").and_then(|s| s.parse().ok()),
        errors: src.toml_error(&e).into(),
    })?;
    let mut v = Validator {
        src: &src,
        errors: Vec::new(),
        warnings: Vec::new(),
    };

    let dataset = v.dataset(&raw.dataset, catalog);
    let entry = dataset.as_ref().and_then(|id| catalog.get(id));
    let version = v.version(&raw.version);
    let release = v.release(&raw.release);
    let mode = release.as_ref().map(|r| r.mode);
    let dp = v.dp(raw.dp.as_ref(), mode, &raw.release.get_ref().mode);
    let jobs = JobPermissions {
        sql: *raw.jobs.get_ref().sql.get_ref(),
        wasm: *raw.jobs.get_ref().wasm.get_ref(),
    };
    let columns = v.columns(&raw.columns, entry);
    let unit = columns
        .as_ref()
        .and_then(|c| v.privacy_unit(c, raw.unit_entity.as_ref(), entry, mode, &raw.release.get_ref().mode));
    let (fusions, fusion_spans) = v.fusions(&raw.fusion, dataset.as_ref(), entry, columns.as_ref(), catalog);
    let sample = v.sample(raw.sample.as_ref(), mode, columns.as_ref());
    let rules = v.desensitize(raw.desensitize.as_ref(), entry, columns.as_ref());

    if !v.errors.is_empty() {
        let mut errors = PolicyErrors(v.errors);
        errors.sort_within_file();
        return Err(Failed { dataset, errors });
    }
    let (
        Some(dataset),
        Some(version),
        Some(release),
        Some(dp),
        Some(columns),
        Some((privacy_unit, unit_entity)),
        Some(sample),
        Some(rules),
    ) = (dataset, version, release, dp, columns, unit, sample, rules)
    else {
        // Every `None` above comes with an error, so this is unreachable;
        // fail closed all the same.
        return Err(Failed {
            dataset: None,
            errors: PolicyError::unplaced(file, "", "policy could not be compiled").into(),
        });
    };
    let mut columns = columns;
    for (name, rule) in rules {
        if let Some(c) = columns.policies.get_mut(&name) {
            c.desensitize = Some(rule);
        }
    }
    let policy = Policy {
        dataset,
        version,
        digest: hex::encode(Sha256::digest(text.as_bytes())),
        privacy_unit,
        unit_entity,
        release,
        dp,
        jobs,
        columns: columns.policies,
        fusions,
        sample,
    };
    Ok(Compiled {
        policy,
        spans: PolicySpans {
            dataset: raw.dataset.span(),
            fusions: fusion_spans,
        },
        warnings: v.warnings,
    })
}

/// Compiled columns, with where each role list was written.
struct Columns {
    policies: BTreeMap<String, ColumnPolicy>,
    role_spans: BTreeMap<String, Range<usize>>,
}

struct Validator<'a> {
    src: &'a Source<'a>,
    errors: Vec<PolicyError>,
    warnings: Vec<PolicyError>,
}

/// `x · k` for a power of ten `k`, as the nearest `f64` to the exact
/// decimal product (1e-6 × 100 is 1e-4, not 9.999999999999999e-5).
fn decimal_times(x: f64, k: f64) -> f64 {
    let exact = format!("{x:e}")
        .split_once('e')
        .and_then(|(m, e)| Some((m.to_string(), e.parse::<i32>().ok()?)))
        .and_then(|(m, e)| format!("{m}e{}", e + k.log10().round() as i32).parse().ok());
    exact.unwrap_or(x * k)
}

fn finite_positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

fn type_name(t: FieldType) -> &'static str {
    match t {
        FieldType::Utf8 => "utf8",
        FieldType::Int64 => "int64",
        FieldType::Float64 => "float64",
        FieldType::Boolean => "boolean",
        FieldType::Date => "date",
    }
}

fn value_kind(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

impl Validator<'_> {
    fn err(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(self.src.error(span, field, message));
    }

    /// A problem that makes one fusion inert (see [`Compiled::warnings`]).
    fn inert(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let message = format!("{}; this fusion is inert until it is fixed", message.into());
        self.warnings.push(self.src.error(span, field, message));
    }

    fn dataset(&mut self, raw: &Spanned<String>, catalog: &Catalog) -> Option<DatasetId> {
        let id = match raw.get_ref().parse::<DatasetId>() {
            Ok(id) => id,
            Err(e) => {
                self.err(raw.span(), "dataset", e.to_string());
                return None;
            }
        };
        if catalog.get(&id).is_none() {
            self.err(
                raw.span(),
                "dataset",
                format!("dataset `{id}` is not in the catalog; add catalog/{id}.toml first"),
            );
        }
        Some(id)
    }

    fn version(&mut self, raw: &Spanned<String>) -> Option<String> {
        if raw.get_ref().trim().is_empty() {
            self.err(
                raw.span(),
                "version",
                "version must not be empty; it identifies the policy in usage records",
            );
            return None;
        }
        Some(raw.get_ref().clone())
    }

    /// An integer in `min..=u32::MAX`.
    fn small_count(&mut self, raw: &Spanned<i64>, min: i64, field: &str, what: &str) -> Option<u32> {
        match u32::try_from(*raw.get_ref()) {
            Ok(n) if i64::from(n) >= min => Some(n),
            _ => {
                self.err(
                    raw.span(),
                    field,
                    format!(
                        "{what} must be an integer >= {min} (and at most {}), got {}",
                        u32::MAX,
                        raw.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn release(&mut self, raw: &Spanned<RawRelease>) -> Option<ReleaseRules> {
        let r = raw.get_ref();
        let mode = match r.mode.get_ref().as_str() {
            "dp" => Some(ReleaseMode::Dp),
            "threshold" => Some(ReleaseMode::Threshold),
            "both" => Some(ReleaseMode::Both),
            other => {
                self.err(
                    r.mode.span(),
                    "release.mode",
                    format!("unknown release mode `{other}`; expected \"dp\", \"threshold\" or \"both\""),
                );
                None
            }
        };
        let k = *r.min_units.get_ref();
        let min_units = match u64::try_from(k) {
            Ok(k) if k >= 2 => Some(k),
            _ => {
                self.err(
                    r.min_units.span(),
                    "release.min_units",
                    format!("k (min_units) must be an integer >= 2, got {k}; a group of one unit would reveal it"),
                );
                None
            }
        };
        let mut ok = true;
        if let Some(base) = &r.rounding_base
            && !finite_positive(*base.get_ref())
        {
            self.err(
                base.span(),
                "release.rounding_base",
                format!("rounding_base must be a finite number > 0, got {}", base.get_ref()),
            );
            ok = false;
        }
        let dominance = r.dominance.as_ref().and_then(|d| {
            let d = d.get_ref();
            let n = self.small_count(&d.n, 1, "release.dominance.n", "dominance n");
            let p = *d.percent.get_ref();
            let percent = if p.is_finite() && p > 0.0 && p <= 100.0 {
                Some(p)
            } else {
                self.err(
                    d.percent.span(),
                    "release.dominance.percent",
                    format!("dominance percent must be above 0 and at most 100, got {p}"),
                );
                None
            };
            match (n, percent) {
                (Some(n), Some(percent)) => Some(Dominance { n, percent }),
                _ => {
                    ok = false;
                    None
                }
            }
        });
        let aggregates = self.aggregates(&r.aggregates);
        match (mode, min_units, aggregates, ok) {
            (Some(mode), Some(min_units), Some(aggregates), true) => Some(ReleaseRules {
                mode,
                min_units,
                rounding_base: r.rounding_base.as_ref().map(|b| *b.get_ref()),
                dominance,
                aggregates,
            }),
            _ => None,
        }
    }

    fn aggregates(&mut self, raw: &Spanned<Vec<Spanned<String>>>) -> Option<BTreeSet<AggregateKind>> {
        let known = || AggregateKind::ALL.map(|a| a.as_str()).join(", ");
        if raw.get_ref().is_empty() {
            self.err(
                raw.span(),
                "release.aggregates",
                format!("list at least one aggregate from: {}", known()),
            );
            return None;
        }
        let mut set = BTreeSet::new();
        let mut ok = true;
        for (i, name) in raw.get_ref().iter().enumerate() {
            let field = format!("release.aggregates[{i}]");
            match AggregateKind::parse(name.get_ref()) {
                Some(a) if !set.insert(a) => {
                    self.err(name.span(), field, format!("aggregate `{a}` is listed twice"));
                    ok = false;
                }
                Some(_) => {}
                None => {
                    self.err(
                        name.span(),
                        field,
                        format!("unknown aggregate `{}`; expected one of {}", name.get_ref(), known()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(set)
    }

    /// `Some(None)`: no `[dp]`, correctly. `None`: an error was reported.
    fn dp(
        &mut self,
        raw: Option<&Spanned<RawDp>>,
        mode: Option<ReleaseMode>,
        mode_raw: &Spanned<String>,
    ) -> Option<Option<DpParams>> {
        match (raw, mode) {
            (None, Some(m)) if m.uses_dp() => {
                self.err(
                    mode_raw.span(),
                    "dp",
                    format!(
                        "mode \"{}\" needs a [dp] table with epsilon_per_query, delta, epsilon_budget, \
                         max_groups_per_unit and max_rows_per_group",
                        mode_raw.get_ref()
                    ),
                );
                return None;
            }
            (None, _) => return Some(None),
            (Some(d), Some(ReleaseMode::Threshold)) => {
                self.err(
                    d.span(),
                    "dp",
                    "[dp] does not apply with mode = \"threshold\"; remove it, or set mode = \"both\"",
                );
            }
            (Some(_), _) => {}
        }
        let d = raw?.get_ref();
        let eps = *d.epsilon_per_query.get_ref();
        let eps_ok = eps.is_finite() && (MIN_EPSILON..=MAX_EPSILON_PER_QUERY).contains(&eps);
        if !eps_ok {
            self.err(
                d.epsilon_per_query.span(),
                "dp.epsilon_per_query",
                format!(
                    "epsilon_per_query (ε) must be a finite number > 0, from {MIN_EPSILON} to {MAX_EPSILON_PER_QUERY}, got {eps}"
                ),
            );
        }
        let eps_min = match &d.epsilon_min_per_query {
            None => Some(if eps_ok {
                DEFAULT_EPSILON_MIN.min(eps)
            } else {
                DEFAULT_EPSILON_MIN
            }),
            Some(raw) => {
                let m = *raw.get_ref();
                let ok = m.is_finite() && m >= MIN_EPSILON && (!eps_ok || m <= eps);
                if !ok {
                    self.err(
                        raw.span(),
                        "dp.epsilon_min_per_query",
                        format!(
                            "epsilon_min_per_query must be a finite number from {MIN_EPSILON} up to epsilon_per_query ({eps}), got {m}"
                        ),
                    );
                }
                ok.then_some(m)
            }
        };
        let delta = *d.delta.get_ref();
        let delta_ok = delta == 0.0 || (MIN_DELTA..MAX_DELTA).contains(&delta);
        if !delta_ok {
            self.err(
                d.delta.span(),
                "dp.delta",
                format!("delta (δ) must be 0, or at least {MIN_DELTA} and below 1e-3, got {delta}"),
            );
        }
        let budget = *d.epsilon_budget.get_ref();
        let budget_ok =
            budget.is_finite() && (!eps_ok || budget >= eps) && budget > 0.0 && budget <= MAX_EPSILON_BUDGET;
        if !budget_ok {
            self.err(
                d.epsilon_budget.span(),
                "dp.epsilon_budget",
                format!(
                    "epsilon_budget must be finite, at least epsilon_per_query ({eps}) and at most {MAX_EPSILON_BUDGET}, got {budget}"
                ),
            );
        }
        let delta_budget = match &d.delta_budget {
            None => Some(decimal_times(delta, DEFAULT_DELTA_BUDGET_QUERIES)),
            Some(raw) => {
                let b = *raw.get_ref();
                let ok = b.is_finite() && b >= 0.0 && (!delta_ok || b >= delta) && b < MAX_DELTA_BUDGET;
                if !ok {
                    self.err(
                        raw.span(),
                        "dp.delta_budget",
                        format!(
                            "delta_budget (total δ) must be finite, at least delta ({delta}) and below {MAX_DELTA_BUDGET}, got {b}"
                        ),
                    );
                }
                ok.then_some(b)
            }
        };
        let g = self.bounded_count(
            &d.max_groups_per_unit,
            MAX_GROUPS_PER_UNIT,
            "dp.max_groups_per_unit",
            "max_groups_per_unit (G)",
        );
        let r = self.bounded_count(
            &d.max_rows_per_group,
            MAX_ROWS_PER_GROUP,
            "dp.max_rows_per_group",
            "max_rows_per_group (R)",
        );
        let (l, l_ok) = match (&d.max_rows_per_unit, g, r) {
            (None, _, _) => (None, true),
            (Some(raw), Some(g), Some(r)) => {
                let most = (g as i64).saturating_mul(r as i64);
                let l = self.bounded_count(
                    raw,
                    most,
                    "dp.max_rows_per_unit",
                    "max_rows_per_unit (L, at most G × R)",
                );
                (l, l.is_some())
            }
            // G or R is already reported.
            (Some(_), _, _) => (None, false),
        };
        let accounting = self.accounting(d, delta, delta_budget);
        match (
            eps_ok && delta_ok && budget_ok && l_ok,
            eps_min,
            delta_budget,
            g,
            r,
            mode,
            accounting,
        ) {
            (true, Some(eps_min), Some(delta_budget), Some(g), Some(r), Some(m), Some(accounting)) if m.uses_dp() => {
                Some(Some(DpParams {
                    epsilon_per_query: eps,
                    epsilon_min_per_query: eps_min,
                    delta,
                    epsilon_budget: budget,
                    delta_budget,
                    max_groups_per_unit: g,
                    max_rows_per_group: r,
                    max_rows_per_unit: l,
                    accounting,
                }))
            }
            _ => None,
        }
    }

    /// `[dp] accounting` and `zcdp_delta`. `None`: an error was reported.
    fn accounting(&mut self, d: &RawDp, delta: f64, delta_budget: Option<f64>) -> Option<Accounting> {
        let kind = d.accounting.as_ref().map_or("pure", |a| a.get_ref().as_str());
        match kind {
            "pure" => {
                if let Some(raw) = &d.zcdp_delta {
                    self.err(
                        raw.span(),
                        "dp.zcdp_delta",
                        "zcdp_delta applies only with accounting = \"zcdp\"".to_string(),
                    );
                    return None;
                }
                Some(Accounting::Pure)
            }
            "zcdp" => {
                let budget = delta_budget?;
                let conversion = d.zcdp_delta.as_ref().map_or(budget / 2.0, |raw| *raw.get_ref());
                let ok = conversion.is_finite() && conversion >= MIN_DELTA && conversion + delta <= budget;
                if !ok {
                    let span = d
                        .zcdp_delta
                        .as_ref()
                        .map(|r| r.span())
                        .or_else(|| d.delta_budget.as_ref().map(|r| r.span()))
                        .unwrap_or_else(|| d.delta.span());
                    self.err(
                        span,
                        "dp.zcdp_delta",
                        format!(
                            "zcdp accounting converts spent ρ to ε at zcdp_delta, which must be at least {MIN_DELTA} and leave room for one query's δ ({delta}) in delta_budget ({budget}); got {conversion}"
                        ),
                    );
                    return None;
                }
                Some(Accounting::Zcdp {
                    conversion_delta: conversion,
                })
            }
            other => {
                let span = d
                    .accounting
                    .as_ref()
                    .map(|a| a.span())
                    .unwrap_or_else(|| d.delta.span());
                self.err(
                    span,
                    "dp.accounting",
                    format!("accounting must be \"pure\" or \"zcdp\", got {other:?}"),
                );
                None
            }
        }
    }

    /// The `[sample]` table. `Some(None)`: none. `None`: an error was reported.
    fn sample(
        &mut self,
        raw: Option<&Spanned<RawSample>>,
        mode: Option<ReleaseMode>,
        columns: Option<&Columns>,
    ) -> Option<Option<SamplePolicy>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        // An invalid [release] is reported already; say nothing more.
        let mode = mode?;
        if !mode.uses_dp() {
            self.err(
                raw.span(),
                "sample",
                "[sample] needs differential privacy (mode \"dp\" or \"both\" with a [dp] table)",
            );
            return None;
        }
        let s = raw.get_ref();
        let epsilon = self.sample_epsilon(&s.epsilon, "sample.epsilon");
        let fidelity = match &s.fidelity_epsilon {
            Some(f) => self.sample_epsilon(f, "sample.fidelity_epsilon"),
            None => epsilon.map(|e| e / 4.0),
        };
        let budget = *s.epsilon_budget.get_ref();
        let needed = epsilon.zip(fidelity).map(|(a, b)| a + b);
        let budget_ok = budget.is_finite()
            && budget > 0.0
            && budget <= MAX_EPSILON_BUDGET
            && needed.is_none_or(|n| budget >= n * (1.0 - 1e-12));
        if !budget_ok {
            self.err(
                s.epsilon_budget.span(),
                "sample.epsilon_budget",
                format!(
                    "epsilon_budget must be finite, at least epsilon + fidelity_epsilon ({}) and at most {MAX_EPSILON_BUDGET}, got {budget}",
                    needed.map_or("?".to_string(), |n| n.to_string())
                ),
            );
        }
        let m = self.bounded_count(
            &s.max_rows_per_unit,
            MAX_ROWS_PER_GROUP,
            "sample.max_rows_per_unit",
            "max_rows_per_unit (m)",
        );
        let max_rows = match &s.max_rows {
            None => Some(DEFAULT_SAMPLE_ROWS),
            Some(r) => {
                let n = *r.get_ref();
                let ok = (1..=MAX_SAMPLE_ROWS).contains(&n);
                if !ok {
                    self.err(
                        r.span(),
                        "sample.max_rows",
                        format!("max_rows must be an integer from 1 to {MAX_SAMPLE_ROWS}, got {n}"),
                    );
                }
                ok.then_some(n as u64)
            }
        };
        let bins = match &s.bins {
            None => Some(DEFAULT_SAMPLE_BINS),
            Some(b) => self.bounded_count(b, MAX_SAMPLE_BINS, "sample.bins", "bins"),
        };
        let pairs = self.sample_pairs(&s.pairs, columns);
        match (epsilon, fidelity, budget_ok, m, max_rows, bins, pairs) {
            (Some(epsilon), Some(fidelity_epsilon), true, Some(m), Some(max_rows), Some(bins), Some(pairs)) => {
                Some(Some(SamplePolicy {
                    epsilon,
                    fidelity_epsilon,
                    epsilon_budget: budget,
                    max_rows_per_unit: m,
                    pairs,
                    max_rows,
                    bins,
                }))
            }
            _ => None,
        }
    }

    fn sample_epsilon(&mut self, raw: &Spanned<f64>, field: &str) -> Option<f64> {
        let e = *raw.get_ref();
        let ok = e.is_finite() && (MIN_EPSILON..=MAX_EPSILON_PER_QUERY).contains(&e);
        if !ok {
            self.err(
                raw.span(),
                field,
                format!("{field} (ε) must be a finite number from {MIN_EPSILON} to {MAX_EPSILON_PER_QUERY}, got {e}"),
            );
        }
        ok.then_some(e)
    }

    fn sample_pairs(
        &mut self,
        raw: &[Spanned<Vec<Spanned<String>>>],
        columns: Option<&Columns>,
    ) -> Option<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut ok = true;
        if raw.len() > MAX_SAMPLE_PAIRS {
            self.err(
                raw[MAX_SAMPLE_PAIRS].span(),
                "sample.pairs",
                format!("at most {MAX_SAMPLE_PAIRS} pairs"),
            );
            return None;
        }
        for pair in raw {
            let names = pair.get_ref();
            if names.len() != 2 || names[0].get_ref() == names[1].get_ref() {
                self.err(
                    pair.span(),
                    "sample.pairs",
                    "a pair is [parent column, child column], two different columns",
                );
                ok = false;
                continue;
            }
            for n in names {
                let role_ok = columns
                    .and_then(|c| c.policies.get(n.get_ref()))
                    .map(|c| c.has(ColumnRole::Dimension) || c.has(ColumnRole::Measure) || c.has(ColumnRole::Public));
                if role_ok == Some(false) || (columns.is_some() && role_ok.is_none()) {
                    self.err(
                        n.span(),
                        "sample.pairs",
                        format!(
                            "`{}` is not a dimension, measure or public column of this policy",
                            n.get_ref()
                        ),
                    );
                    ok = false;
                }
            }
            let (parent, child) = (names[0].get_ref().clone(), names[1].get_ref().clone());
            if out.iter().any(|(_, c)| *c == child) {
                self.err(
                    pair.span(),
                    "sample.pairs",
                    format!("`{child}` is a child in two pairs"),
                );
                ok = false;
                continue;
            }
            // A cycle: the parent descends from the child.
            let mut up = Some(parent.clone());
            let mut steps = 0;
            while let Some(p) = up {
                if p == child {
                    self.err(
                        pair.span(),
                        "sample.pairs",
                        format!("`{parent}` and `{child}` would form a cycle"),
                    );
                    ok = false;
                    break;
                }
                up = out.iter().find(|(_, c)| *c == p).map(|(q, _)| q.clone());
                steps += 1;
                if steps > MAX_SAMPLE_PAIRS + 1 {
                    break;
                }
            }
            out.push((parent, child));
        }
        ok.then_some(out)
    }

    /// An integer in `1..=max` (G and R).
    fn bounded_count(&mut self, raw: &Spanned<i64>, max: i64, field: &str, what: &str) -> Option<u32> {
        let n = *raw.get_ref();
        match u32::try_from(n) {
            Ok(v) if (1..=max).contains(&n) => Some(v),
            _ => {
                self.err(
                    raw.span(),
                    field,
                    format!("{what} must be an integer >= 1 (and at most {max}), got {n}"),
                );
                None
            }
        }
    }

    fn columns(
        &mut self,
        raw: &Spanned<BTreeMap<Spanned<String>, Spanned<RawColumn>>>,
        entry: Option<&Dataset>,
    ) -> Option<Columns> {
        let mut out = Columns {
            policies: BTreeMap::new(),
            role_spans: BTreeMap::new(),
        };
        let mut ok = true;
        for (name, col) in raw.get_ref() {
            match self.column(name, col, entry) {
                Some((policy, span)) => {
                    out.policies.insert(name.get_ref().clone(), policy);
                    out.role_spans.insert(name.get_ref().clone(), span);
                }
                None => ok = false,
            }
        }
        if let Some(d) = entry {
            for f in &d.fields {
                if !raw.get_ref().contains_key(f.name.as_str()) {
                    self.err(
                        raw.span(),
                        format!("columns.{}", f.name),
                        format!(
                            "column `{}` has no entry; every catalog field needs an explicit role (fail closed)",
                            f.name
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// Validates one `[columns]` entry; returns its policy and the span of
    /// its role list.
    fn column(
        &mut self,
        name: &Spanned<String>,
        col: &Spanned<RawColumn>,
        entry: Option<&Dataset>,
    ) -> Option<(ColumnPolicy, Range<usize>)> {
        let base = format!("columns.{}", name.get_ref());
        let c = col.get_ref();
        let mut ok = true;
        let field_type = match entry {
            Some(d) => match d.field(name.get_ref()) {
                Some(f) => Some(f.data_type),
                None => {
                    let fields: Vec<&str> = d.fields.iter().map(|f| f.name.as_str()).collect();
                    self.err(
                        name.span(),
                        base.clone(),
                        format!(
                            "unknown column `{}`: {} has no such field (its fields: {})",
                            name.get_ref(),
                            d.id,
                            fields.join(", ")
                        ),
                    );
                    ok = false;
                    None
                }
            },
            None => None,
        };

        let (role_span, roles) = self.roles(&base, col, c);
        if roles.is_none() {
            ok = false;
        }
        let is = |r: ColumnRole| roles.as_ref().map(|s| s.contains(r));

        if is(ColumnRole::Measure) == Some(true) {
            if let Some(t) = field_type
                && !t.is_numeric()
            {
                self.err(
                    role_span.clone(),
                    base.clone(),
                    format!(
                        "a measure must be numeric (int64 or float64); `{}` is {}",
                        name.get_ref(),
                        type_name(t)
                    ),
                );
                ok = false;
            }
            if c.bounds.is_none() {
                self.err(
                    col.span(),
                    format!("{base}.bounds"),
                    "a measure needs bounds = [lower, upper]",
                );
                ok = false;
            }
        }
        let bounds = match &c.bounds {
            None => None,
            Some(b) => {
                let b = self.bounds(&base, b, is(ColumnRole::Measure));
                ok &= b.is_some();
                b
            }
        };
        let public_keys = match &c.public_keys {
            None => None,
            Some(k) => {
                let k = self.public_keys(&base, k, is(ColumnRole::Dimension), field_type);
                ok &= k.is_some();
                k
            }
        };
        match (ok, roles) {
            (true, Some(roles)) => Some((
                ColumnPolicy {
                    roles,
                    public_keys,
                    bounds,
                    desensitize: None,
                },
                role_span,
            )),
            _ => None,
        }
    }

    /// The column's role set, from `role` or `roles`, with the span written.
    fn roles(&mut self, base: &str, col: &Spanned<RawColumn>, c: &RawColumn) -> (Range<usize>, Option<RoleSet>) {
        let (span, field, names): (Range<usize>, String, Vec<&Spanned<String>>) = match (&c.role, &c.roles) {
            (Some(_), Some(list)) => {
                self.err(
                    list.span(),
                    format!("{base}.roles"),
                    "use `role` (one role) or `roles` (a list), not both",
                );
                return (list.span(), None);
            }
            (None, None) => {
                self.err(
                    col.span(),
                    format!("{base}.role"),
                    "give the column a role, e.g. role = \"dimension\" or roles = [\"identifier\", \"join_key\"] \
                     (fail closed: every field needs an explicit role)",
                );
                return (col.span(), None);
            }
            (Some(r), None) => (r.span(), format!("{base}.role"), vec![r]),
            (None, Some(list)) => (list.span(), format!("{base}.roles"), list.get_ref().iter().collect()),
        };
        let mut parsed = Vec::new();
        let mut ok = true;
        for n in names {
            match ColumnRole::ALL.into_iter().find(|r| r.as_str() == n.get_ref()) {
                Some(r) if parsed.contains(&r) => {
                    self.err(n.span(), field.clone(), format!("role `{r}` is listed twice"));
                    ok = false;
                }
                Some(r) => parsed.push(r),
                None => {
                    let known: Vec<&str> = ColumnRole::ALL.iter().map(|r| r.as_str()).collect();
                    self.err(
                        n.span(),
                        field.clone(),
                        format!("unknown role `{}`; expected one of {}", n.get_ref(), known.join(", ")),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return (span, None);
        }
        match RoleSet::new(parsed) {
            Ok(set) => (span, Some(set)),
            Err(message) => {
                self.err(span.clone(), field, message);
                (span, None)
            }
        }
    }

    fn bounds(&mut self, base: &str, raw: &Spanned<Vec<Spanned<f64>>>, measure: Option<bool>) -> Option<(f64, f64)> {
        let field = format!("{base}.bounds");
        if measure == Some(false) {
            self.err(
                raw.span(),
                field,
                "bounds only apply to a measure; remove them or make the column a measure",
            );
            return None;
        }
        let [lo, hi] = raw.get_ref().as_slice() else {
            self.err(
                raw.span(),
                field,
                format!(
                    "bounds must be exactly [lower, upper], got {} values",
                    raw.get_ref().len()
                ),
            );
            return None;
        };
        let (lo, hi) = (*lo.get_ref(), *hi.get_ref());
        if !lo.is_finite() || !hi.is_finite() {
            self.err(
                raw.span(),
                field,
                format!("bounds must be finite numbers, got [{lo}, {hi}]"),
            );
            return None;
        }
        if lo >= hi {
            self.err(
                raw.span(),
                field,
                format!("the lower bound must be below the upper bound, got [{lo}, {hi}]"),
            );
            return None;
        }
        let magnitude = lo.abs().max(hi.abs());
        if magnitude > MAX_ABS_BOUND {
            self.err(
                raw.span(),
                field,
                format!(
                    "bounds must be within ±{MAX_ABS_BOUND:e} so bounded sums stay exact and finite, got [{lo}, {hi}]"
                ),
            );
            return None;
        }
        let width = hi - lo;
        if width < MIN_WIDTH || width < MIN_RELATIVE_WIDTH * magnitude {
            self.err(
                raw.span(),
                field,
                format!(
                    "bounds too narrow for the integer grid: upper - lower must be at least {MIN_WIDTH:e} and \
                     {MIN_RELATIVE_WIDTH:e} × the larger |bound|, got [{lo}, {hi}]"
                ),
            );
            return None;
        }
        Some((lo, hi))
    }

    fn public_keys(
        &mut self,
        base: &str,
        raw: &Spanned<Vec<Spanned<toml::Value>>>,
        dimension: Option<bool>,
        field_type: Option<FieldType>,
    ) -> Option<Vec<PublicKey>> {
        let field = format!("{base}.public_keys");
        if dimension == Some(false) {
            self.err(
                raw.span(),
                field,
                "public_keys only apply to a dimension; remove them or make the column a dimension",
            );
            return None;
        }
        if raw.get_ref().is_empty() {
            self.err(
                raw.span(),
                field,
                "public_keys must list at least one key; leave the key out to group without a public key set",
            );
            return None;
        }
        let want_str = match field_type {
            Some(FieldType::Utf8) => Some(true),
            Some(FieldType::Int64) => Some(false),
            Some(t) => {
                self.err(
                    raw.span(),
                    field,
                    format!(
                        "public keys are supported on utf8 and int64 columns only; this column is {}",
                        type_name(t)
                    ),
                );
                return None;
            }
            // Unknown column: already reported; still check the values.
            None => None,
        };
        let mut keys = Vec::new();
        let mut seen = BTreeSet::new();
        let mut ok = true;
        for (i, v) in raw.get_ref().iter().enumerate() {
            let f = format!("{field}[{i}]");
            let key = match (v.get_ref(), want_str) {
                (toml::Value::String(s), Some(true) | None) => PublicKey::Str(s.clone()),
                (toml::Value::Integer(n), Some(false) | None) => PublicKey::Int(*n),
                (other, want) => {
                    let expected = match want {
                        Some(true) => "strings (it is a utf8 column)",
                        Some(false) => "integers (it is an int64 column)",
                        None => "strings or integers",
                    };
                    self.err(
                        v.span(),
                        f,
                        format!("public keys must be {expected}, got {}", value_kind(other)),
                    );
                    ok = false;
                    continue;
                }
            };
            if !seen.insert(key.clone()) {
                self.err(v.span(), f, format!("public key `{key}` is listed twice"));
                ok = false;
                continue;
            }
            keys.push(key);
        }
        ok.then_some(keys)
    }

    /// Finds the privacy unit and checks it against `unit_entity` and the
    /// release mode. Returns `(privacy_unit, unit_entity)`.
    fn privacy_unit(
        &mut self,
        cols: &Columns,
        unit_entity: Option<&Spanned<String>>,
        entry: Option<&Dataset>,
        mode: Option<ReleaseMode>,
        mode_raw: &Spanned<String>,
    ) -> Option<(Option<String>, Option<String>)> {
        let units: Vec<&String> = cols
            .policies
            .iter()
            .filter(|(_, p)| p.has(ColumnRole::PrivacyUnit))
            .map(|(n, _)| n)
            .collect();
        let mut ok = true;
        if let [first, rest @ ..] = units.as_slice() {
            for extra in rest {
                let span = cols.role_spans.get(*extra).cloned().unwrap_or(0..0);
                self.err(
                    span,
                    format!("columns.{extra}"),
                    format!(
                        "more than one privacy_unit column (`{first}` and `{extra}`); a dataset has one privacy unit"
                    ),
                );
                ok = false;
            }
        }
        let unit = units.first().map(|s| (*s).clone());
        match (&unit, unit_entity) {
            (Some(col), None) => {
                let span = cols.role_spans.get(col).cloned().unwrap_or(0..0);
                self.err(
                    span,
                    "unit_entity",
                    format!(
                        "`{col}` is the privacy unit, so the policy must say what one unit is, \
                         e.g. unit_entity = \"enterprise\" or \"person\""
                    ),
                );
                ok = false;
            }
            (None, Some(e)) => {
                self.err(
                    e.span(),
                    "unit_entity",
                    "unit_entity is set but no column has the privacy_unit role",
                );
                ok = false;
            }
            (Some(_), Some(e)) if e.get_ref().trim().is_empty() => {
                self.err(e.span(), "unit_entity", "unit_entity must not be empty");
                ok = false;
            }
            _ => {}
        }
        if let (None, Some(d), Some(m)) = (&unit, entry, mode)
            && d.open_class == OpenClass::Conditional
            && m.uses_dp()
        {
            self.err(
                mode_raw.span(),
                "release.mode",
                format!(
                    "{} is a conditional (有条件开放) dataset; releasing it with differential privacy needs \
                     a column with the privacy_unit role (the entity whose contribution is bounded)",
                    d.id
                ),
            );
            ok = false;
        }
        ok.then(|| (unit, unit_entity.map(|e| e.get_ref().clone())))
    }

    fn fusions(
        &mut self,
        raw: &[Spanned<RawFusion>],
        this: Option<&DatasetId>,
        entry: Option<&Dataset>,
        cols: Option<&Columns>,
        catalog: &Catalog,
    ) -> (Vec<Fusion>, Vec<FusionSpans>) {
        let mut fusions = Vec::new();
        let mut spans = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, f) in raw.iter().enumerate() {
            let base = format!("fusion[{i}]");
            let f = f.get_ref();
            let other = match f.dataset.get_ref().parse::<DatasetId>() {
                Ok(id) => id,
                Err(e) => {
                    self.err(f.dataset.span(), format!("{base}.dataset"), e.to_string());
                    continue;
                }
            };
            let mut ok = true;
            if Some(&other) == this {
                self.err(
                    f.dataset.span(),
                    format!("{base}.dataset"),
                    "a dataset cannot be fused with itself",
                );
                ok = false;
            } else if !seen.insert(other.clone()) {
                self.err(
                    f.dataset.span(),
                    format!("{base}.dataset"),
                    format!("fusion with {other} is listed twice; put all key pairs in one [[fusion]] entry"),
                );
                ok = false;
            }
            let other_entry = catalog.get(&other);
            if other_entry.is_none() {
                self.inert(
                    f.dataset.span(),
                    format!("{base}.dataset"),
                    format!("cannot fuse with `{other}`: it is not in the catalog"),
                );
                ok = false;
            }
            if f.on.get_ref().is_empty() {
                self.err(
                    f.on.span(),
                    format!("{base}.on"),
                    "list at least one [column here, column there] pair",
                );
                ok = false;
            }
            let mut on = Vec::new();
            let mut pair_spans = Vec::new();
            for pair in f.on.get_ref() {
                let field = format!("{base}.on");
                let [here, there] = pair.get_ref().as_slice() else {
                    self.err(pair.span(), field, "each pair is [column here, column there]");
                    ok = false;
                    continue;
                };
                let (here_s, there_s) = (here.get_ref(), there.get_ref());
                let here_field = entry.and_then(|d| d.field(here_s));
                let there_field = other_entry.and_then(|d| d.field(there_s));
                if let (Some(d), None) = (entry, here_field) {
                    self.err(here.span(), field.clone(), format!("{} has no column `{here_s}`", d.id));
                    ok = false;
                } else if let Some(c) = cols
                    && !c.policies.get(here_s).is_some_and(|p| p.has(ColumnRole::JoinKey))
                {
                    self.err(
                        here.span(),
                        field.clone(),
                        format!("`{here_s}` is not a join_key in this policy; give it the join_key role to fuse on it"),
                    );
                    ok = false;
                }
                if let (Some(d), None) = (other_entry, there_field) {
                    self.inert(
                        there.span(),
                        field.clone(),
                        format!("{} has no column `{there_s}`", d.id),
                    );
                    ok = false;
                }
                if let (Some(a), Some(b)) = (here_field, there_field)
                    && a.data_type != b.data_type
                {
                    self.inert(
                        pair.span(),
                        field,
                        format!(
                            "cannot join {} `{here_s}` with {} `{there_s}`",
                            type_name(a.data_type),
                            type_name(b.data_type)
                        ),
                    );
                    ok = false;
                }
                on.push((here_s.clone(), there_s.clone()));
                pair_spans.push(pair.span());
            }
            if ok {
                fusions.push(Fusion { dataset: other, on });
                spans.push(FusionSpans {
                    dataset: f.dataset.span(),
                    pairs: pair_spans,
                });
            }
        }
        (fusions, spans)
    }
}
