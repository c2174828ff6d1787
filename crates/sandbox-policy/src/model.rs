//! Compiled (validated) policies: what the rest of the sandbox reads.
//!
//! Values of these types only exist after validation, so code that holds a
//! [`Policy`] may rely on every invariant documented here.

use crate::desensitize::Desensitization;
use sandbox_model::{ColumnRole, DatasetId, RoleSet};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// How results computed from a dataset may be released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseMode {
    /// Differential privacy only: noise, contribution bounds, partition
    /// selection; `min_units` applies to the noisy unit count.
    Dp,
    /// Statistical disclosure control only: k-threshold on exact distinct
    /// unit counts, dominance rule, rounding. No formal guarantee.
    Threshold,
    /// Both: DP release, then the threshold rules on top.
    Both,
}

impl ReleaseMode {
    pub fn uses_dp(self) -> bool {
        matches!(self, ReleaseMode::Dp | ReleaseMode::Both)
    }
    pub fn uses_threshold(self) -> bool {
        matches!(self, ReleaseMode::Threshold | ReleaseMode::Both)
    }
}

/// Aggregate functions a policy may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateKind {
    /// `COUNT(*)` and `COUNT(column)`.
    Count,
    /// `COUNT(DISTINCT privacy_unit)`.
    CountDistinct,
    Sum,
    Avg,
    Variance,
    Stddev,
    /// DP quantiles: `MEDIAN`, `PERCENTILE_CONT`, `APPROX_PERCENTILE_CONT`,
    /// `MIN`, `MAX` (differentially private releases only).
    Quantile,
}

impl AggregateKind {
    pub const ALL: [AggregateKind; 7] = [
        AggregateKind::Count,
        AggregateKind::CountDistinct,
        AggregateKind::Sum,
        AggregateKind::Avg,
        AggregateKind::Variance,
        AggregateKind::Stddev,
        AggregateKind::Quantile,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AggregateKind::Count => "count",
            AggregateKind::CountDistinct => "count_distinct",
            AggregateKind::Sum => "sum",
            AggregateKind::Avg => "avg",
            AggregateKind::Variance => "variance",
            AggregateKind::Stddev => "stddev",
            AggregateKind::Quantile => "quantile",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for AggregateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The dominance rule (n, k%): a group is suppressed when its `n` largest
/// contributors account for more than `percent` % of a released sum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Dominance {
    pub n: u32,
    pub percent: f64,
}

/// Release rules common to both modes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseRules {
    pub mode: ReleaseMode,
    /// k: minimum distinct privacy units per released group (≥ 2).
    pub min_units: u64,
    /// Released values are rounded to a multiple of this (> 0), if set.
    pub rounding_base: Option<f64>,
    pub dominance: Option<Dominance>,
    pub aggregates: BTreeSet<AggregateKind>,
}

/// Differential-privacy parameters (present when the mode uses DP).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DpParams {
    /// Largest ε one query may spend (> 0).
    pub epsilon_per_query: f64,
    /// Smallest ε one query may spend: a job asking less is refused
    /// (`epsilon-below-minimum`). Default [`limits::DEFAULT_EPSILON_MIN`],
    /// or `epsilon_per_query` when that is smaller.
    ///
    /// [`limits::DEFAULT_EPSILON_MIN`]: crate::limits::DEFAULT_EPSILON_MIN
    pub epsilon_min_per_query: f64,
    /// δ for partition selection (0 ≤ δ < 1e-3); 0 forbids partition
    /// selection, so only public key sets may be grouped by.
    pub delta: f64,
    /// Total ε one agreement may spend on this dataset (≥ epsilon_per_query);
    /// also the most any approval may grant.
    pub epsilon_budget: f64,
    /// Total δ one agreement may spend on this dataset (≥ delta). Default
    /// [`limits::DEFAULT_DELTA_BUDGET_QUERIES`] × `delta`.
    ///
    /// [`limits::DEFAULT_DELTA_BUDGET_QUERIES`]: crate::limits::DEFAULT_DELTA_BUDGET_QUERIES
    pub delta_budget: f64,
    /// G: groups one privacy unit may contribute to in one query (≥ 1).
    pub max_groups_per_unit: u32,
    /// R: rows one privacy unit may contribute to one group (≥ 1).
    pub max_rows_per_group: u32,
    /// L: rows one privacy unit may contribute over all its groups
    /// (`1 ≤ L ≤ G · R`; `None`: G · R).
    pub max_rows_per_unit: Option<u32>,
    /// How an agreement's spending on this dataset is accounted: basic
    /// composition of ε (pure DP), or zero-concentrated DP with ρ converted
    /// to (ε, δ) at a fixed δ for the budget's caps and display.
    pub accounting: Accounting,
}

/// Budget accounting of a DP dataset (`[dp] accounting`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Accounting {
    /// `accounting = "pure"` (default): ε's add up (basic composition),
    /// discrete Laplace noise.
    #[default]
    Pure,
    /// `accounting = "zcdp"`: a query of ε costs ρ = ε²/2, ρ's add up, the
    /// discrete Gaussian where a statistic's L2 sensitivity allows; the
    /// budget's ε is that of the ρ spent converted at `conversion_delta`,
    /// which is also charged to the δ budget once (0 < it < δ budget).
    Zcdp { conversion_delta: f64 },
}

impl Accounting {
    /// The conversion δ of zCDP accounting, `None` for pure.
    pub fn conversion_delta(&self) -> Option<f64> {
        match self {
            Accounting::Pure => None,
            Accounting::Zcdp { conversion_delta } => Some(*conversion_delta),
        }
    }
}

/// Which job kinds may read the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JobPermissions {
    pub sql: bool,
    pub wasm: bool,
}

/// A value of a public key set: integers or strings, matching the column type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(untagged)]
pub enum PublicKey {
    Int(i64),
    Str(String),
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicKey::Int(i) => write!(f, "{i}"),
            PublicKey::Str(s) => f.write_str(s),
        }
    }
}

/// One column's policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnPolicy {
    pub roles: RoleSet,
    /// For dimensions: the public set of keys (every one is released, even
    /// when empty), so grouping needs no partition selection.
    pub public_keys: Option<Vec<PublicKey>>,
    /// For measures: public bounds `[lower, upper]`, lower < upper, finite.
    pub bounds: Option<(f64, f64)>,
    /// The column's desensitization rule (`[desensitize]`), only on a
    /// dimension, public or measure column. Whatever the role, every job
    /// and every sample sees only the coarsened values (a measure is
    /// coarsened before it is clamped to its bounds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desensitize: Option<Desensitization>,
}

impl ColumnPolicy {
    pub fn has(&self, role: ColumnRole) -> bool {
        self.roles.contains(role)
    }

    /// The public key set as released: each key under the column's
    /// desensitization rule, duplicates dropped, in order of first
    /// appearance (`[18, 20, 23]` under `band = 5` → `[15, 20]`). `None`
    /// when the column has no public keys. `public_keys` itself keeps the
    /// owner's keys, which describe the stored (raw) values.
    pub fn released_public_keys(&self) -> Option<Vec<PublicKey>> {
        let keys = self.public_keys.as_ref()?;
        let Some(rule) = &self.desensitize else {
            return Some(keys.clone());
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for k in keys {
            let k = match k {
                PublicKey::Int(i) => PublicKey::Int(rule.apply_i64(*i)),
                PublicKey::Str(s) => PublicKey::Str(rule.apply_str(s)),
            };
            if seen.insert(k.clone()) {
                out.push(k);
            }
        }
        Some(out)
    }
}

/// Permission to fuse (join) with another dataset on the listed key pairs
/// `(column here, column there)`; each must be a `join_key` on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fusion {
    pub dataset: DatasetId,
    pub on: Vec<(String, String)>,
}

/// A validated output policy of one dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub dataset: DatasetId,
    /// Free-form version label written by the owner.
    pub version: String,
    /// SHA-256 of the policy file's bytes, recorded with every job.
    pub digest: String,
    /// The column carrying the privacy unit, if the dataset has one.
    pub privacy_unit: Option<String>,
    /// What one privacy unit is (`enterprise`, `person`); set iff
    /// `privacy_unit` is.
    pub unit_entity: Option<String>,
    pub release: ReleaseRules,
    pub dp: Option<DpParams>,
    pub jobs: JobPermissions,
    pub columns: BTreeMap<String, ColumnPolicy>,
    pub fusions: Vec<Fusion>,
    /// The owner's consent to DP sample datasets, and their parameters.
    pub sample: Option<SamplePolicy>,
}

/// A policy's `[sample]` table: how DP synthetic samples of the dataset are
/// made (the owner's ε, from a budget of its own).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SamplePolicy {
    /// ε of one sample's model (noisy marginals and value selections).
    pub epsilon: f64,
    /// ε of one sample's fidelity report.
    pub fidelity_epsilon: f64,
    /// Total ε all samples of the dataset may spend (≥ epsilon + fidelity_epsilon).
    pub epsilon_budget: f64,
    /// m: rows one privacy unit contributes to a sample's statistics.
    pub max_rows_per_unit: u32,
    /// `(parent, child)` columns whose two-way marginal is kept.
    pub pairs: Vec<(String, String)>,
    /// The most rows a sample has.
    pub max_rows: u64,
    /// Equal-width bins per measure.
    pub bins: u32,
}

impl SamplePolicy {
    /// ε one sample costs: model plus fidelity report.
    pub fn epsilon_per_sample(&self) -> f64 {
        self.epsilon + self.fidelity_epsilon
    }
}

impl Policy {
    pub fn column(&self, name: &str) -> Option<&ColumnPolicy> {
        self.columns.get(name)
    }

    /// SHA-256 (hex) of the policy in force, as compiled: of its canonical
    /// written form ([`crate::to_toml`]), which reads back as the same
    /// policy. Unlike [`Policy::digest`] (the file's bytes) it ignores
    /// comments and layout, and it changes with every rule, role, bound,
    /// key or parameter. Anything derived from a dataset under its policy
    /// (a verified row bound, a sample) is keyed by it, so that it is never
    /// used under another policy.
    pub fn effective_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(crate::to_toml(self).as_bytes()))
    }

    /// SHA-256 (hex) of the terms a sample dataset is made under (the part
    /// of the effective policy that shapes a sample: privacy unit, k, δ,
    /// every column's roles, public keys, bounds and desensitization rule,
    /// and the `[sample]` table). A sample records it, and is served and
    /// used only while the policy in force has the same.
    pub fn sample_terms_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(crate::write::sample_terms(self).as_bytes()))
    }

    /// True when this policy permits joining `self_col` here with
    /// `other_col` of `other`.
    pub fn permits_fusion(&self, other: &DatasetId, self_col: &str, other_col: &str) -> bool {
        self.fusions
            .iter()
            .any(|f| &f.dataset == other && f.on.iter().any(|(a, b)| a == self_col && b == other_col))
    }
}
