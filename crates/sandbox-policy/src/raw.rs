//! The policy file format, as written by a data owner, before validation.
//!
//! A policy is one TOML file per dataset, `policies/<dataset id>.toml`. It
//! says how results computed from the dataset may leave the sandbox. Every
//! key below is read; an unknown key is an error (a typo must not silently
//! weaken a policy).
//!
//! ```toml
//! dataset = "gov.utility_usage"     # a dataset id from the catalog
//! version = "2026-11-01"            # free-form label, recorded with every job
//! unit_entity = "enterprise"        # what one privacy unit is
//!
//! [release]
//! mode = "dp"
//! min_units = 10
//! rounding_base = 10.0
//! dominance = { n = 2, percent = 85.0 }
//! aggregates = ["count", "count_distinct", "sum", "avg", "variance", "stddev"]
//!
//! [dp]
//! epsilon_per_query = 1.0
//! delta = 1e-6
//! epsilon_budget = 10.0
//! max_groups_per_unit = 12
//! max_rows_per_group = 24
//!
//! [jobs]
//! sql = true
//! wasm = false
//!
//! [columns]
//! credit_code = { roles = ["identifier", "privacy_unit", "join_key"] }
//! month = { role = "dimension", public_keys = ["2023-01", "2023-02"] }
//! electricity_kwh = { role = "measure", bounds = [0.0, 500000.0] }
//!
//! [[fusion]]
//! dataset = "gov.legal_entities"
//! on = [["credit_code", "credit_code"]]
//! ```
//!
//! ## Top level
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `dataset` | yes | The dataset id; it must be in the catalog. One policy per dataset, and every catalog dataset needs one. |
//! | `version` | yes | A non-empty label chosen by the owner. The SHA-256 of the file's bytes is recorded with every job as well. |
//! | `unit_entity` | iff a column has the `privacy_unit` role | What one privacy unit is, e.g. `enterprise` or `person`. Two datasets may only be fused when both name the same entity. |
//!
//! ## `[release]` (required)
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `mode` | yes | `"dp"` (differential privacy), `"threshold"` (statistical disclosure control only, no formal guarantee) or `"both"` (DP, then the threshold rules on top). A conditional (有条件开放) dataset released with `dp` or `both` needs a `privacy_unit` column. |
//! | `min_units` | yes | k, an integer ≥ 2: a group with fewer distinct privacy units (rows, when there is no privacy unit) is suppressed. |
//! | `rounding_base` | no | Released values are rounded to a multiple of this; > 0 and finite. |
//! | `dominance` | no | `{ n, percent }`: a group is suppressed when its `n` (≥ 1) largest contributors account for more than `percent` (0 < percent ≤ 100) % of a released sum. |
//! | `aggregates` | yes | Non-empty list without duplicates, from `count`, `count_distinct`, `sum`, `avg`, `variance`, `stddev`. |
//!
//! ## `[dp]` (required for `dp` and `both`, forbidden for `threshold`)
//!
//! | key | meaning |
//! |---|---|
//! | `epsilon_per_query` | Largest ε one query may spend; 1e-6 ≤ ε ≤ 100. |
//! | `epsilon_min_per_query` | Optional: smallest ε one query may spend (a job asking less is refused); 1e-6 ≤ it ≤ `epsilon_per_query`; default 0.01 (or `epsilon_per_query` if that is smaller). |
//! | `delta` | δ for partition selection: 0, or 1e-15 ≤ δ < 1e-3. With δ = 0 only dimensions with public keys may be grouped by. |
//! | `epsilon_budget` | Total ε one agreement may spend on this dataset, and the most any approval may grant; `epsilon_per_query` ≤ it ≤ 10000. |
//! | `delta_budget` | Optional: total δ one agreement may spend on this dataset; `delta` ≤ it < 0.1; default 100 × `delta`. |
//! | `max_groups_per_unit` | G, an integer, 1 ≤ G ≤ 10000: groups one privacy unit may contribute to in one query. |
//! | `max_rows_per_group` | R, an integer, 1 ≤ R ≤ 10000: rows one privacy unit may contribute to one group. |
//! | `accounting` | Optional: `"pure"` (default: ε's add up under basic composition, discrete Laplace noise) or `"zcdp"` (zero-concentrated DP: a query of ε costs ρ = ε²/2, ρ's add up, statistics get discrete Gaussian noise calibrated to their L2 sensitivity; the budget's ε is the ρ spent converted to (ε, δ) at `zcdp_delta`). Fixed for a budget line when it is granted. |
//! | `zcdp_delta` | Optional, with `accounting = "zcdp"` only: the δ at which spent ρ converts to ε, charged once to the δ budget; 1e-15 ≤ it and it + `delta` ≤ `delta_budget`; default `delta_budget` / 2. |
//! | `max_rows_per_unit` | Optional: L, an integer, 1 ≤ L ≤ G × R: rows one privacy unit may contribute over all its groups. A unit's groups take rows in a keyed pseudo-random order until L is spent. Noise is calibrated to min(G × R, L) rows, so `max_rows_per_group = 50, max_rows_per_unit = 50` costs the same noise as G = 5, R = 10 but keeps a unit's 30 rows in one group. |
//!
//! ## `[jobs]` (required)
//!
//! `sql` and `wasm`, both booleans: which job kinds may read the dataset.
//!
//! ## `[columns]` (required)
//!
//! Every field of the catalog entry must appear exactly once (fail closed: a
//! new field is unusable until its owner gives it a role), and no other
//! name may. Each entry is a table with:
//!
//! | key | meaning |
//! |---|---|
//! | `role` or `roles` | One role, or a list of roles (not both): `identifier` (never output, grouped by or filtered on), `privacy_unit` (the entity DP protects; at most one column), `join_key` (only usable to fuse), `dimension` (may be grouped by and output), `measure` (only aggregated, within bounds), `sensitive` (not readable at all), `public` (no restriction beyond aggregation). `identifier`, `privacy_unit` and `join_key` combine with each other but not with the others; `dimension`, `measure`, `sensitive` and `public` exclude each other. |
//! | `bounds` | Required on a measure, forbidden elsewhere: `[lower, upper]`, finite, \|bound\| ≤ 1e15, and upper − lower ≥ max(1e-12, 1e-6 × the larger \|bound\|), so the integer grid resolves the range and every derived sum stays finite. Values are clamped into it before aggregation. A measure must be an `int64` or `float64` column. |
//! | `public_keys` | Only on a dimension: the public set of group keys, all released (even when empty) with no partition selection. Strings for `utf8` columns, integers for `int64` columns; non-empty, no duplicates. |
//!
//! ## `[[fusion]]` (optional, repeatable)
//!
//! Permission to join with another catalog dataset: `dataset` (not this
//! one, at most one entry per dataset) and `on`, a non-empty list of
//! `[column here, column there]` pairs. Each column must be a `join_key` on
//! its side, and the other dataset's policy must permit the fusion too —
//! a join is refused unless both owners agree. When both datasets have a
//! privacy unit, their `unit_entity` must be the same.
//!
//! ## `[sample]` (optional; needs `[dp]`)
//!
//! The owner's consent to a differentially private synthetic sample
//! (样本数据) of the dataset, which anyone may download without an
//! application (`sandbox sample`). Without it no sample is made. Its ε is
//! the owner's, spent from a budget of its own (never an agreement's).
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `epsilon` | yes | ε of one sample's model (its noisy marginals and value selections); 1e-6 ≤ ε ≤ 100. |
//! | `fidelity_epsilon` | no | ε of the sample's fidelity report (fresh noisy marginals of the real data); same range; default `epsilon` / 4. |
//! | `epsilon_budget` | yes | Total ε all samples of this dataset may spend (each costs `epsilon` + `fidelity_epsilon`); at least that sum, at most 10000. |
//! | `max_rows_per_unit` | yes | m, an integer, 1 ≤ m ≤ 10000: rows one privacy unit contributes to a sample's statistics (the rest are left out, chosen by a keyed hash). |
//! | `pairs` | no | `[parent, child]` column pairs whose two-way marginal is kept: the child is drawn given the parent. Columns that are a `dimension`, `measure` or `public`; a column is a child at most once; no cycles. At most 32 pairs. |
//! | `max_rows` | no | The most rows a sample has (1 to 10,000,000; default 100,000). |
//! | `bins` | no | Equal-width bins of each measure's bounds (1 to 1000; default 10); sample values are drawn uniformly within a bin. |
//!
//! δ for the selection of a dimension's values when it has no
//! `public_keys` is the `[dp]` table's `delta` (with δ = 0 such a column is
//! left empty in the sample), and `min_units` (k) is the least noisy unit
//! count a released value needs.
//!
//! ## `[desensitize]` (optional)
//!
//! Desensitization (脱敏) rules, one per column, `column = { rule = value }`
//! with exactly one rule (see [`crate::desensitize`] for the functions):
//!
//! ```toml
//! [desensitize]
//! age = { band = 5 }                          # generalization: 37 → 35 (int64 only)
//! amount = { bands = [0, 1000, 5000, 20000] } # generalization: 4200 → 1000; < 1000 → 0; ≥ 20000 → 20000
//! visit_date = { truncate_to = "month" }      # generalization: 2023-07-19 → 2023-07-01 ("month" | "year"; date)
//! address = { truncate_chars = 6 }            # truncation: the first 6 characters (utf8)
//! name = { mask_keep_first = 1 }              # masking: 张三丰 → 张*** (utf8)
//! phone = { mask_keep_last = 4 }              # masking: 13812345678 → ***5678 (utf8)
//! ```
//!
//! | key | column type | value |
//! |---|---|---|
//! | `band` | int64 only (a float column takes `bands`: exact comparisons) | width w: a whole number, 1 ≤ w ≤ 1e15 |
//! | `bands` | int64, float64 | 2 … 256 strictly increasing finite edges, \|edge\| ≤ 1e15, whole numbers on int64 |
//! | `truncate_to` | date | `"month"` or `"year"` |
//! | `truncate_chars`, `mask_keep_first`, `mask_keep_last` | utf8 | n, 1 ≤ n ≤ 1000 |
//!
//! The column must be in `[columns]` and be a `dimension`, `public` or
//! `measure` column: identifiers, privacy units, join keys and sensitive
//! columns are never released, so a rule on one is an error. Whatever the
//! column's role, the runtime applies the rule beneath every job (every
//! reference to the column, in SELECT, WHERE, JOIN, GROUP BY, an
//! aggregate's argument, sees only the coarsened value; a measure is
//! coarsened before it is clamped to its bounds), to its public keys and to
//! sample datasets.
//!
//! ## Open datasets
//!
//! An open (无条件开放) dataset still needs a policy with a `[release]`
//! block, usually `mode = "threshold"` with `min_units = 2` and `public`
//! columns. Joined as a lookup table it adds no restriction of its own:
//! the rules of the conditional datasets in the same job still apply.
//! A policy for a closed (非开放) dataset is accepted but recorded as a
//! warning, since no job may read closed data.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// A policy file as read, every value with its byte span.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub dataset: Spanned<String>,
    pub version: Spanned<String>,
    #[serde(default)]
    pub unit_entity: Option<Spanned<String>>,
    pub release: Spanned<RawRelease>,
    #[serde(default)]
    pub dp: Option<Spanned<RawDp>>,
    pub jobs: Spanned<RawJobs>,
    pub columns: Spanned<BTreeMap<Spanned<String>, Spanned<RawColumn>>>,
    #[serde(default)]
    pub fusion: Vec<Spanned<RawFusion>>,
    #[serde(default)]
    pub sample: Option<Spanned<RawSample>>,
    #[serde(default)]
    pub desensitize: Option<Spanned<BTreeMap<Spanned<String>, Spanned<RawRule>>>>,
}

/// One `[desensitize]` entry: exactly one of the keys is given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    #[serde(default)]
    pub band: Option<Spanned<f64>>,
    #[serde(default)]
    pub bands: Option<Spanned<Vec<Spanned<f64>>>>,
    #[serde(default)]
    pub truncate_to: Option<Spanned<String>>,
    #[serde(default)]
    pub truncate_chars: Option<Spanned<i64>>,
    #[serde(default)]
    pub mask_keep_first: Option<Spanned<i64>>,
    #[serde(default)]
    pub mask_keep_last: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSample {
    pub epsilon: Spanned<f64>,
    #[serde(default)]
    pub fidelity_epsilon: Option<Spanned<f64>>,
    pub epsilon_budget: Spanned<f64>,
    pub max_rows_per_unit: Spanned<i64>,
    #[serde(default)]
    pub pairs: Vec<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub max_rows: Option<Spanned<i64>>,
    #[serde(default)]
    pub bins: Option<Spanned<i64>>,
}

// Numbers are read as i64 / f64 and range-checked during validation, so an
// out-of-range value gets a message naming the rule rather than a type error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRelease {
    pub mode: Spanned<String>,
    pub min_units: Spanned<i64>,
    #[serde(default)]
    pub rounding_base: Option<Spanned<f64>>,
    #[serde(default)]
    pub dominance: Option<Spanned<RawDominance>>,
    pub aggregates: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDominance {
    pub n: Spanned<i64>,
    pub percent: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDp {
    pub epsilon_per_query: Spanned<f64>,
    pub delta: Spanned<f64>,
    pub epsilon_budget: Spanned<f64>,
    #[serde(default)]
    pub epsilon_min_per_query: Option<Spanned<f64>>,
    #[serde(default)]
    pub delta_budget: Option<Spanned<f64>>,
    pub max_groups_per_unit: Spanned<i64>,
    pub max_rows_per_group: Spanned<i64>,
    #[serde(default)]
    pub max_rows_per_unit: Option<Spanned<i64>>,
    #[serde(default)]
    pub accounting: Option<Spanned<String>>,
    #[serde(default)]
    pub zcdp_delta: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJobs {
    pub sql: Spanned<bool>,
    pub wasm: Spanned<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawColumn {
    #[serde(default)]
    pub role: Option<Spanned<String>>,
    #[serde(default)]
    pub roles: Option<Spanned<Vec<Spanned<String>>>>,
    /// Strings or integers; checked against the column type later.
    #[serde(default)]
    pub public_keys: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    #[serde(default)]
    pub bounds: Option<Spanned<Vec<Spanned<f64>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFusion {
    pub dataset: Spanned<String>,
    pub on: Spanned<Vec<Spanned<Vec<Spanned<String>>>>>,
}
