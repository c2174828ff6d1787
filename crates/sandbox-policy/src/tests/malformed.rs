//! A table of malformed policies, each a small edit of one valid policy,
//! and the error each must produce.

use super::{assert_has, shipped_catalog};
use crate::parse_policy;

/// A valid policy for `gov.utility_usage`; the line numbers below refer to
/// it, and every edit keeps the lines where they are.
const BASE: &str = r#"dataset = "gov.utility_usage"
version = "t"
unit_entity = "enterprise"

[release]
mode = "dp"
min_units = 10
rounding_base = 10.0
dominance = { n = 2, percent = 85.0 }
aggregates = ["count", "sum", "avg"]

[dp]
epsilon_per_query = 1.0
delta = 1e-6
epsilon_budget = 10.0
max_groups_per_unit = 12
max_rows_per_group = 24

[jobs]
sql = true
wasm = false

[columns]
credit_code = { roles = ["identifier", "privacy_unit", "join_key"] }
month = { role = "dimension", public_keys = ["2023-01", "2023-02"] }
electricity_kwh = { role = "measure", bounds = [0.0, 500000.0] }
water_m3 = { role = "measure", bounds = [0.0, 50000.0] }
gas_m3 = { role = "measure", bounds = [0.0, 50000.0] }

[[fusion]]
dataset = "gov.legal_entities"
on = [["credit_code", "credit_code"]]
"#;

const CREDIT: &str = r#"credit_code = { roles = ["identifier", "privacy_unit", "join_key"] }"#;
const MONTH: &str = r#"month = { role = "dimension", public_keys = ["2023-01", "2023-02"] }"#;
const KWH: &str = r#"electricity_kwh = { role = "measure", bounds = [0.0, 500000.0] }"#;
const WATER: &str = r#"water_m3 = { role = "measure", bounds = [0.0, 50000.0] }"#;
const DP: &str = "[dp]\nepsilon_per_query = 1.0\ndelta = 1e-6\nepsilon_budget = 10.0\nmax_groups_per_unit = 12\nmax_rows_per_group = 24\n";

/// (what, replace this, with this, expected field, line, message part)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    usize,
    &'static str,
);

#[rustfmt::skip]
const CASES: &[Case] = &[
    ("unknown top-level key", "version = \"t\"", "version = \"t\"\ncolour = 1", "colour", 3, "unknown field `colour`"),
    ("unknown key in [release]", "rounding_base = 10.0", "rounding_base = 10.0\nmin_unit = 3", "release.min_unit", 9, "unknown field `min_unit`"),
    ("unknown key in a column", MONTH, r#"month = { role = "dimension", public_key = ["2023-01"] }"#, "columns.month.public_key", 25, "unknown field `public_key`"),
    ("string for an integer", "min_units = 10", "min_units = \"10\"", "release.min_units", 7, "invalid type"),
    ("float for an integer", "max_rows_per_group = 24", "max_rows_per_group = 2.5", "dp.max_rows_per_group", 17, "invalid type"),
    ("missing [jobs] key", "sql = true", "", "jobs.sql", 19, "missing field `sql`"),
    ("missing top-level table", "[jobs]\nsql = true\nwasm = false\n", "\n\n\n", "jobs", 0, "missing field `jobs`"),
    ("invalid dataset id", "dataset = \"gov.utility_usage\"", "dataset = \"Gov.Utility\"", "dataset", 1, "invalid dataset id"),
    ("dataset not in catalog", "dataset = \"gov.utility_usage\"", "dataset = \"gov.nothing\"", "dataset", 1, "not in the catalog"),
    ("empty version", "version = \"t\"", "version = \" \"", "version", 2, "must not be empty"),
    ("unknown release mode", "mode = \"dp\"", "mode = \"laplace\"", "release.mode", 6, "unknown release mode `laplace`"),
    ("k below 2", "min_units = 10", "min_units = 1", "release.min_units", 7, "k (min_units) must be an integer >= 2"),
    ("negative rounding base", "rounding_base = 10.0", "rounding_base = -1.0", "release.rounding_base", 8, "finite number > 0"),
    ("dominance percent above 100", "percent = 85.0", "percent = 150.0", "release.dominance.percent", 9, "at most 100"),
    ("dominance n of 0", "n = 2,", "n = 0,", "release.dominance.n", 9, "dominance n must be an integer >= 1"),
    ("unknown aggregate", "[\"count\", \"sum\", \"avg\"]", "[\"count\", \"median\"]", "release.aggregates[1]", 10, "unknown aggregate `median`"),
    ("duplicate aggregate", "[\"count\", \"sum\", \"avg\"]", "[\"sum\", \"sum\"]", "release.aggregates[1]", 10, "listed twice"),
    ("no aggregates", "[\"count\", \"sum\", \"avg\"]", "[]", "release.aggregates", 10, "at least one aggregate"),
    ("epsilon of 0", "epsilon_per_query = 1.0", "epsilon_per_query = 0.0", "dp.epsilon_per_query", 13, "finite number > 0"),
    ("epsilon NaN", "epsilon_per_query = 1.0", "epsilon_per_query = nan", "dp.epsilon_per_query", 13, "finite number > 0"),
    ("delta too large", "delta = 1e-6", "delta = 0.01", "dp.delta", 14, "below 1e-3"),
    ("negative delta", "delta = 1e-6", "delta = -1e-9", "dp.delta", 14, "at least 0"),
    ("budget below per-query epsilon", "epsilon_budget = 10.0", "epsilon_budget = 0.5", "dp.epsilon_budget", 15, "at least epsilon_per_query"),
    ("infinite budget", "epsilon_budget = 10.0", "epsilon_budget = inf", "dp.epsilon_budget", 15, "finite"),
    ("G of 0", "max_groups_per_unit = 12", "max_groups_per_unit = 0", "dp.max_groups_per_unit", 16, "integer >= 1"),
    ("negative R", "max_rows_per_group = 24", "max_rows_per_group = -3", "dp.max_rows_per_group", 17, "integer >= 1"),
    ("G beyond u32", "max_groups_per_unit = 12", "max_groups_per_unit = 5000000000", "dp.max_groups_per_unit", 16, "integer >= 1"),
    ("[dp] missing for mode dp", DP, "\n\n\n\n\n\n", "dp", 6, "needs a [dp] table"),
    ("[dp] present for threshold", "mode = \"dp\"", "mode = \"threshold\"", "dp", 12, "does not apply with mode = \"threshold\""),
    ("measure without bounds", KWH, r#"electricity_kwh = { role = "measure" }"#, "columns.electricity_kwh.bounds", 26, "a measure needs bounds = [lower, upper]"),
    ("bounds on a dimension", MONTH, r#"month = { role = "dimension", bounds = [0.0, 1.0] }"#, "columns.month.bounds", 25, "only apply to a measure"),
    ("lower bound above upper", "[0.0, 500000.0]", "[500000.0, 0.0]", "columns.electricity_kwh.bounds", 26, "lower bound must be below the upper"),
    ("equal bounds", "[0.0, 500000.0]", "[5.0, 5.0]", "columns.electricity_kwh.bounds", 26, "lower bound must be below the upper"),
    ("infinite bound", "[0.0, 500000.0]", "[0.0, inf]", "columns.electricity_kwh.bounds", 26, "finite"),
    ("three bounds", "[0.0, 500000.0]", "[0.0, 1.0, 2.0]", "columns.electricity_kwh.bounds", 26, "exactly [lower, upper]"),
    ("measure on a string column", MONTH, r#"month = { role = "measure", bounds = [0.0, 1.0] }"#, "columns.month", 25, "a measure must be numeric"),
    ("public keys on a measure", WATER, r#"water_m3 = { role = "measure", bounds = [0.0, 1.0], public_keys = ["a"] }"#, "columns.water_m3.public_keys", 27, "only apply to a dimension"),
    ("integer key on a utf8 column", "[\"2023-01\", \"2023-02\"]", "[\"2023-01\", 2023]", "columns.month.public_keys[1]", 25, "must be strings"),
    ("duplicate public key", "[\"2023-01\", \"2023-02\"]", "[\"2023-01\", \"2023-01\"]", "columns.month.public_keys[1]", 25, "listed twice"),
    ("empty public keys", "[\"2023-01\", \"2023-02\"]", "[]", "columns.month.public_keys", 25, "at least one key"),
    ("conflicting roles", MONTH, r#"month = { roles = ["dimension", "measure"] }"#, "columns.month.roles", 25, "cannot be combined"),
    ("identifier with public", MONTH, r#"month = { roles = ["identifier", "public"] }"#, "columns.month.roles", 25, "cannot be combined"),
    ("role and roles", MONTH, r#"month = { role = "dimension", roles = ["dimension"] }"#, "columns.month.roles", 25, "not both"),
    ("no role at all", MONTH, r#"month = { public_keys = ["2023-01"] }"#, "columns.month.role", 25, "give the column a role"),
    ("empty role list", MONTH, r#"month = { roles = [] }"#, "columns.month.roles", 25, "at least one role"),
    ("unknown role", MONTH, r#"month = { role = "dimensoin" }"#, "columns.month.role", 25, "unknown role `dimensoin`"),
    ("two privacy units", MONTH, r#"month = { roles = ["identifier", "privacy_unit"] }"#, "columns.month", 25, "more than one privacy_unit column"),
    ("privacy unit without unit_entity", "unit_entity = \"enterprise\"", "", "unit_entity", 24, "must say what one unit is"),
    ("unit_entity without privacy unit", CREDIT, r#"credit_code = { roles = ["identifier", "join_key"] }"#, "unit_entity", 3, "no column has the privacy_unit role"),
    ("conditional DP without privacy unit", CREDIT, r#"credit_code = { roles = ["identifier", "join_key"] }"#, "release.mode", 6, "conditional (有条件开放) dataset"),
    ("column missing from [columns]", WATER, "", "columns.water_m3", 23, "every catalog field needs an explicit role"),
    ("two entries on one line", WATER, r#"water_m3 = { role = "measure", bounds = [0.0, 1.0] }, coal_t = { role = "public" }"#, "columns.water_m3", 27, "expected newline"),
    ("unknown column (own line)", "gas_m3 = { role", "coal_t = { role = \"public\" }\ngas_m3 = { role", "columns.coal_t", 28, "unknown column `coal_t`"),
    ("fusion with itself", "dataset = \"gov.legal_entities\"", "dataset = \"gov.utility_usage\"", "fusion[0].dataset", 31, "fused with itself"),
    ("fusion key not a join_key here", "on = [[\"credit_code\"", "on = [[\"month\"", "fusion[0].on", 32, "`month` is not a join_key in this policy"),
    ("fusion pair of one", "on = [[\"credit_code\", \"credit_code\"]]", "on = [[\"credit_code\"]]", "fusion[0].on", 32, "[column here, column there]"),
    ("fusion without keys", "on = [[\"credit_code\", \"credit_code\"]]", "on = []", "fusion[0].on", 32, "at least one"),
    ("fusion with a missing key", "on = [[\"credit_code\", \"credit_code\"]]", "", "fusion[0].on", 30, "missing field `on`"),
    ("fusion listed twice", "on = [[\"credit_code\", \"credit_code\"]]\n", "on = [[\"credit_code\", \"credit_code\"]]\n[[fusion]]\ndataset = \"gov.legal_entities\"\non = [[\"credit_code\", \"credit_code\"]]\n", "fusion[1].dataset", 34, "listed twice"),
    ("epsilon above 100", "epsilon_per_query = 1.0", "epsilon_per_query = 500.0", "dp.epsilon_per_query", 13, "to 100, got 500"),
    ("epsilon below 1e-6", "epsilon_per_query = 1.0", "epsilon_per_query = 1e-9", "dp.epsilon_per_query", 13, "finite number > 0, from 0.000001"),
    ("minimum epsilon above the cap", "epsilon_budget = 10.0", "epsilon_budget = 10.0\nepsilon_min_per_query = 2.0", "dp.epsilon_min_per_query", 16, "up to epsilon_per_query (1), got 2"),
    ("minimum epsilon below 1e-6", "epsilon_budget = 10.0", "epsilon_budget = 10.0\nepsilon_min_per_query = 1e-7", "dp.epsilon_min_per_query", 16, "from 0.000001"),
    ("minimum epsilon NaN", "epsilon_budget = 10.0", "epsilon_budget = 10.0\nepsilon_min_per_query = nan", "dp.epsilon_min_per_query", 16, "finite number"),
    ("minimum epsilon of 0", "epsilon_budget = 10.0", "epsilon_budget = 10.0\nepsilon_min_per_query = 0.0", "dp.epsilon_min_per_query", 16, "finite number"),
    ("delta below one accounting unit", "delta = 1e-6", "delta = 1e-20", "dp.delta", 14, "must be 0, or at least"),
    ("negative delta", "delta = 1e-6", "delta = -1e-6", "dp.delta", 14, "must be 0, or at least"),
    ("budget above 10000", "epsilon_budget = 10.0", "epsilon_budget = 1e5", "dp.epsilon_budget", 15, "at most 10000"),
    ("delta budget below delta", "epsilon_budget = 10.0", "epsilon_budget = 10.0\ndelta_budget = 1e-7", "dp.delta_budget", 16, "at least delta (0.000001)"),
    ("delta budget of 0.5", "epsilon_budget = 10.0", "epsilon_budget = 10.0\ndelta_budget = 0.5", "dp.delta_budget", 16, "below 0.1"),
    ("negative delta budget", "epsilon_budget = 10.0", "epsilon_budget = 10.0\ndelta_budget = -1e-6", "dp.delta_budget", 16, "total δ"),
    ("infinite delta budget", "epsilon_budget = 10.0", "epsilon_budget = 10.0\ndelta_budget = inf", "dp.delta_budget", 16, "finite"),
    ("delta budget as a string", "epsilon_budget = 10.0", "epsilon_budget = 10.0\ndelta_budget = \"1e-4\"", "dp.delta_budget", 16, "invalid type"),
    ("unknown accounting", "epsilon_budget = 10.0", "epsilon_budget = 10.0\naccounting = \"renyi\"", "dp.accounting", 16, "\"pure\" or \"zcdp\""),
    ("zcdp_delta without zcdp", "epsilon_budget = 10.0", "epsilon_budget = 10.0\nzcdp_delta = 1e-8", "dp.zcdp_delta", 16, "only with accounting"),
    ("zcdp_delta leaving no room for a query's δ", "epsilon_budget = 10.0", "epsilon_budget = 10.0\naccounting = \"zcdp\"\nzcdp_delta = 1e-4", "dp.zcdp_delta", 17, "leave room"),
    ("zcdp_delta of 0", "epsilon_budget = 10.0", "epsilon_budget = 10.0\naccounting = \"zcdp\"\nzcdp_delta = 0.0", "dp.zcdp_delta", 17, "at least"),
    ("G above 10000", "max_groups_per_unit = 12", "max_groups_per_unit = 20000", "dp.max_groups_per_unit", 16, "at most 10000"),
    ("R above 10000", "max_rows_per_group = 24", "max_rows_per_group = 100000", "dp.max_rows_per_group", 17, "at most 10000"),
    ("L above G × R", "max_rows_per_group = 24", "max_rows_per_group = 24\nmax_rows_per_unit = 289", "dp.max_rows_per_unit", 18, "at most 288"),
    ("L of zero", "max_rows_per_group = 24", "max_rows_per_group = 24\nmax_rows_per_unit = 0", "dp.max_rows_per_unit", 18, "must be an integer >= 1"),
    ("bounds of ±1e308", "[0.0, 500000.0]", "[-1e308, 1e308]", "columns.electricity_kwh.bounds", 26, "within ±1e15"),
    ("bound above 1e15", "[0.0, 500000.0]", "[0.0, 2e15]", "columns.electricity_kwh.bounds", 26, "within ±1e15"),
    ("bounds too narrow for their magnitude", "[0.0, 500000.0]", "[1000000000000.0, 1000000000000.5]", "columns.electricity_kwh.bounds", 26, "too narrow"),
    ("bounds too narrow", "[0.0, 500000.0]", "[0.0, 1e-13]", "columns.electricity_kwh.bounds", 26, "too narrow"),
    ("doubled `=`", "min_units = 10", "min_units = = 10", "release.min_units", 7, "extra `=`"),
    ("unclosed string", "version = \"t\"", "version = \"t", "version", 2, "invalid basic string"),
    ("duplicate key", "sql = true", "sql = true\nsql = false", "jobs.sql", 21, "duplicate key"),
];

#[test]
fn base_policy_is_valid() {
    let catalog = shipped_catalog();
    if let Err(e) = parse_policy("base.toml", BASE, &catalog) {
        panic!("{e}");
    }
}

#[test]
fn zcdp_accounting_reads_back_and_defaults_its_delta() {
    let catalog = shipped_catalog();
    let p = parse_policy("base.toml", BASE, &catalog).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.dp.map(|d| d.accounting), Some(crate::Accounting::Pure));
    let zcdp = BASE.replacen(
        "epsilon_budget = 10.0",
        "epsilon_budget = 10.0\naccounting = \"zcdp\"",
        1,
    );
    let p = parse_policy("base.toml", &zcdp, &catalog).unwrap_or_else(|e| panic!("{e}"));
    let dp = p.dp.expect("dp");
    assert_eq!(
        dp.accounting.conversion_delta(),
        Some(5e-5),
        "half the δ budget by default"
    );
    let written = crate::to_toml(&p);
    let back = parse_policy("back.toml", &written, &catalog).unwrap_or_else(|e| panic!("{e}\n{written}"));
    assert_eq!(back.dp.map(|d| d.accounting), Some(dp.accounting));
    let pure_written = crate::to_toml(&parse_policy("base.toml", BASE, &catalog).unwrap_or_else(|e| panic!("{e}")));
    assert!(
        !pure_written.contains("accounting"),
        "pure accounting is not written: digests stay"
    );
}

#[test]
fn the_new_dp_fields_have_defaults_and_take_values() {
    let catalog = shipped_catalog();
    let p = parse_policy("base.toml", BASE, &catalog).unwrap_or_else(|e| panic!("{e}"));
    let dp = p.dp.expect("dp");
    assert_eq!((dp.epsilon_min_per_query, dp.delta_budget), (0.01, 1e-4), "defaults");
    let small = BASE.replacen("epsilon_per_query = 1.0", "epsilon_per_query = 0.005", 1);
    let p = parse_policy("base.toml", &small, &catalog).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        p.dp.map(|d| d.epsilon_min_per_query),
        Some(0.005),
        "never above the cap"
    );
    let set = BASE.replacen(
        "epsilon_budget = 10.0",
        "epsilon_budget = 10.0\nepsilon_min_per_query = 0.1\ndelta_budget = 5e-5",
        1,
    );
    let p = parse_policy("base.toml", &set, &catalog).unwrap_or_else(|e| panic!("{e}"));
    let dp = p.dp.expect("dp");
    assert_eq!((dp.epsilon_min_per_query, dp.delta_budget), (0.1, 5e-5));
    let no_delta = BASE.replacen("delta = 1e-6", "delta = 0.0", 1);
    let p = parse_policy("base.toml", &no_delta, &catalog).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.dp.map(|d| d.delta_budget), Some(0.0));
    let wide = BASE.replacen("[0.0, 500000.0]", "[-1e15, 1e15]", 1);
    assert!(
        parse_policy("base.toml", &wide, &catalog).is_ok(),
        "the limit itself is allowed"
    );
}

#[test]
fn every_malformed_policy_gives_its_error() {
    assert!(CASES.len() >= 25);
    let catalog = shipped_catalog();
    let mut failures = Vec::new();
    for (what, from, to, field, line, message) in CASES {
        let text = BASE.replacen(from, to, 1);
        assert_ne!(text, BASE, "case `{what}` does not change the policy");
        match parse_policy("policies/t.toml", &text, &catalog) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(errors) => {
                if !errors.iter().all(|e| e.file == "policies/t.toml") {
                    failures.push(format!("{what}: wrong file in\n{errors}"));
                }
                let found = errors
                    .iter()
                    .any(|e| e.field == *field && e.line == *line && e.message.contains(message));
                if !found {
                    failures.push(format!(
                        "{what}: expected `{field}` at line {line} containing {message:?}; got:\n{errors}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn all_errors_of_a_file_are_reported_together() {
    let catalog = shipped_catalog();
    let text = BASE
        .replacen("min_units = 10", "min_units = 1", 1)
        .replacen("delta = 1e-6", "delta = 0.5", 1)
        .replacen("[0.0, 500000.0]", "[9.0, 1.0]", 1)
        .replacen(WATER, "", 1);
    let errors = parse_policy("t.toml", &text, &catalog).expect_err("invalid");
    assert_has(&errors, "release.min_units", 7, "k (min_units)");
    assert_has(&errors, "dp.delta", 14, "below 1e-3");
    assert_has(&errors, "columns.electricity_kwh.bounds", 26, "lower bound");
    assert_has(&errors, "columns.water_m3", 23, "explicit role");
    // In line order, one per line when displayed.
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    assert_eq!(errors.to_string().lines().count(), errors.len());
}

#[test]
fn errors_display_file_line_column_field_message() {
    let catalog = shipped_catalog();
    let text = BASE.replacen(KWH, r#"electricity_kwh = { role = "measure" }"#, 1);
    let errors = parse_policy("policies/x.toml", &text, &catalog).expect_err("invalid");
    assert_eq!(
        errors.to_string(),
        "policies/x.toml:26:19: columns.electricity_kwh.bounds: a measure needs bounds = [lower, upper]"
    );
    let text = BASE.replacen("[jobs]\nsql = true\nwasm = false\n", "\n\n\n", 1);
    let errors = parse_policy("policies/x.toml", &text, &catalog).expect_err("invalid");
    assert_eq!(errors.to_string(), "policies/x.toml: jobs: missing field `jobs`");
}
