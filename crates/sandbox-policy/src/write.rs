//! Writing a compiled policy back in the file format of `raw.rs`, so that
//! parsing the result gives the same policy (except its digest).

use crate::{ColumnPolicy, Policy, PublicKey, ReleaseMode};
use std::fmt::Write as _;

/// A TOML string literal, escaped by the TOML writer.
fn string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A float that reads back bit-for-bit: Rust's `Debug` prints the shortest
/// representation that round-trips, and always in a form TOML accepts for
/// finite values (`10.0`, `1e-6`).
fn float(x: f64) -> String {
    format!("{x:?}")
}

/// A table key: bare when TOML allows it, quoted otherwise.
fn table_key(k: &str) -> String {
    let bare = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { k.to_string() } else { string(k) }
}

fn key(k: &PublicKey) -> String {
    match k {
        PublicKey::Int(i) => i.to_string(),
        PublicKey::Str(s) => string(s),
    }
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(", "))
}

fn column(c: &ColumnPolicy) -> String {
    let roles: Vec<&str> = c.roles.iter().map(|r| r.as_str()).collect();
    let mut parts = vec![match roles.as_slice() {
        [one] => format!("role = {}", string(one)),
        many => format!("roles = {}", list(many.iter().map(|r| string(r)))),
    }];
    if let Some(keys) = &c.public_keys {
        parts.push(format!("public_keys = {}", list(keys.iter().map(key))));
    }
    if let Some((lo, hi)) = c.bounds {
        parts.push(format!("bounds = [{}, {}]", float(lo), float(hi)));
    }
    format!("{{ {} }}", parts.join(", "))
}

fn desensitization(r: &crate::Desensitization) -> String {
    use crate::Desensitization as D;
    let value = match r {
        D::Band(w) => w.to_string(),
        D::Bands(edges) => list(edges.iter().map(|e| float(*e))),
        D::TruncateDate(u) => string(u.as_str()),
        D::TruncateChars(n) | D::MaskKeepFirst(n) | D::MaskKeepLast(n) => n.to_string(),
    };
    format!("{{ {} = {value} }}", r.key())
}

/// The policy in the file format. Every string and odd key goes through the
/// TOML writer's escaping, so the output always parses.
pub fn to_toml(p: &Policy) -> String {
    let mut out = String::new();
    // `writeln!` into a String cannot fail; the results are ignored.
    let _ = writeln!(out, "dataset = {}", string(p.dataset.as_str()));
    let _ = writeln!(out, "version = {}", string(&p.version));
    if let Some(e) = &p.unit_entity {
        let _ = writeln!(out, "unit_entity = {}", string(e));
    }

    let r = &p.release;
    let mode = match r.mode {
        ReleaseMode::Dp => "dp",
        ReleaseMode::Threshold => "threshold",
        ReleaseMode::Both => "both",
    };
    let _ = writeln!(out, "\n[release]\nmode = {}", string(mode));
    let _ = writeln!(out, "min_units = {}", r.min_units);
    if let Some(b) = r.rounding_base {
        let _ = writeln!(out, "rounding_base = {}", float(b));
    }
    if let Some(d) = r.dominance {
        let _ = writeln!(out, "dominance = {{ n = {}, percent = {} }}", d.n, float(d.percent));
    }
    let _ = writeln!(
        out,
        "aggregates = {}",
        list(r.aggregates.iter().map(|a| string(a.as_str())))
    );

    if let Some(dp) = &p.dp {
        let _ = writeln!(out, "\n[dp]");
        let _ = writeln!(out, "epsilon_per_query = {}", float(dp.epsilon_per_query));
        let _ = writeln!(out, "delta = {}", float(dp.delta));
        let _ = writeln!(out, "epsilon_budget = {}", float(dp.epsilon_budget));
        let _ = writeln!(out, "epsilon_min_per_query = {}", float(dp.epsilon_min_per_query));
        let _ = writeln!(out, "delta_budget = {}", float(dp.delta_budget));
        let _ = writeln!(out, "max_groups_per_unit = {}", dp.max_groups_per_unit);
        let _ = writeln!(out, "max_rows_per_group = {}", dp.max_rows_per_group);
        if let Some(l) = dp.max_rows_per_unit {
            let _ = writeln!(out, "max_rows_per_unit = {l}");
        }
        // Pure accounting is the default and is not written, so that the
        // effective digest of every policy written before zCDP is unchanged.
        if let Some(conversion) = dp.accounting.conversion_delta() {
            let _ = writeln!(out, "accounting = \"zcdp\"");
            let _ = writeln!(out, "zcdp_delta = {}", float(conversion));
        }
    }

    let _ = writeln!(out, "\n[jobs]\nsql = {}\nwasm = {}", p.jobs.sql, p.jobs.wasm);

    let _ = writeln!(out, "\n[columns]");
    for (name, c) in &p.columns {
        let _ = writeln!(out, "{} = {}", table_key(name), column(c));
    }

    for f in &p.fusions {
        let _ = writeln!(out, "\n[[fusion]]\ndataset = {}", string(f.dataset.as_str()));
        let pairs = f.on.iter().map(|(a, b)| list([string(a), string(b)]));
        let _ = writeln!(out, "on = {}", list(pairs));
    }

    let rules: Vec<(&String, &crate::Desensitization)> = p
        .columns
        .iter()
        .filter_map(|(name, c)| c.desensitize.as_ref().map(|r| (name, r)))
        .collect();
    if !rules.is_empty() {
        let _ = writeln!(out, "\n[desensitize]");
        for (name, rule) in rules {
            let _ = writeln!(out, "{} = {}", table_key(name), desensitization(rule));
        }
    }

    if let Some(s) = &p.sample {
        sample_table(&mut out, s);
    }
    out
}

fn sample_table(out: &mut String, s: &crate::SamplePolicy) {
    let _ = writeln!(out, "\n[sample]");
    let _ = writeln!(out, "epsilon = {}", float(s.epsilon));
    let _ = writeln!(out, "fidelity_epsilon = {}", float(s.fidelity_epsilon));
    let _ = writeln!(out, "epsilon_budget = {}", float(s.epsilon_budget));
    let _ = writeln!(out, "max_rows_per_unit = {}", s.max_rows_per_unit);
    let pairs = s.pairs.iter().map(|(a, b)| list([string(a), string(b)]));
    let _ = writeln!(out, "pairs = {}", list(pairs));
    let _ = writeln!(out, "max_rows = {}", s.max_rows);
    let _ = writeln!(out, "bins = {}", s.bins);
}

/// The terms a sample dataset is made under, in a canonical form: every
/// part of the policy that `sandbox_ingest::sample` reads — the dataset
/// and its privacy unit, k (`min_units`), δ, every column's roles, public
/// keys, bounds and desensitization rule, and the `[sample]` table — and
/// nothing that concerns jobs only (their budgets, ε per query, G, R, L,
/// aggregates, fusions). A sample is served and used only under the terms
/// it was made under, so an owner who changes a job budget need not spend
/// sample ε again, while one who adds a rule, narrows a role or changes a
/// key set must. Keep it in step with what the sample generator reads.
pub(crate) fn sample_terms(p: &Policy) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "dataset = {}", string(p.dataset.as_str()));
    let _ = writeln!(
        out,
        "privacy_unit = {}",
        string(p.privacy_unit.as_deref().unwrap_or(""))
    );
    let _ = writeln!(out, "min_units = {}", p.release.min_units);
    if let Some(dp) = &p.dp {
        let _ = writeln!(out, "delta = {}", float(dp.delta));
    }
    for (name, c) in &p.columns {
        let _ = writeln!(out, "{} = {}", table_key(name), column(c));
        if let Some(rule) = &c.desensitize {
            let _ = writeln!(out, "{}.desensitize = {}", table_key(name), desensitization(rule));
        }
    }
    if let Some(s) = &p.sample {
        sample_table(&mut out, s);
    }
    out
}
