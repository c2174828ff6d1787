//! The catalog and policies that ship with the sandbox.

use super::{repo_root, shipped_catalog, shipped_policy_sources};
use crate::{AggregateKind, PolicySet, PublicKey, ReleaseMode, parse_policy, to_toml};
use sandbox_model::districts::SHANGHAI_DISTRICTS;
use sandbox_model::{ColumnRole, FieldType, OpenClass};

fn shipped_set() -> PolicySet {
    let catalog = shipped_catalog();
    PolicySet::load_dir(&repo_root().join("policies"), &catalog).unwrap_or_else(|e| panic!("shipped policies:\n{e}"))
}

#[test]
fn shipped_catalog_and_policies_load_together_without_warnings() {
    let catalog = shipped_catalog();
    assert_eq!(catalog.len(), 6);
    let set = shipped_set();
    assert_eq!(set.len(), 6);
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());
    for d in catalog.iter() {
        let p = set.get(&d.id).expect("policy for every dataset");
        assert!(
            set.file_of(&d.id)
                .is_some_and(|f| f.ends_with(&format!("{}.toml", d.id)))
        );
        assert_eq!(p.digest.len(), 64);
    }
}

#[test]
fn embedded_copies_load_the_same_as_the_directory() {
    let catalog = shipped_catalog();
    let from_dir = shipped_set();
    let from_sources = PolicySet::from_sources(&shipped_policy_sources(), &catalog).expect("sources load");
    let a: Vec<_> = from_dir.iter().collect();
    let b: Vec<_> = from_sources.iter().collect();
    assert_eq!(a, b);
}

/// The generator writes tables with exactly these fields and types.
#[test]
fn shipped_catalog_fields_are_exactly_as_agreed() {
    use FieldType::*;
    type Entry = (&'static str, OpenClass, &'static [(&'static str, FieldType)]);
    let expected: &[Entry] = &[
        (
            "gov.legal_entities",
            OpenClass::Conditional,
            &[
                ("credit_code", Utf8),
                ("name", Utf8),
                ("district", Utf8),
                ("industry", Utf8),
                ("registered_capital", Float64),
                ("founded", Date),
                ("insured_employees", Int64),
            ],
        ),
        (
            "gov.tax_payments",
            OpenClass::Conditional,
            &[
                ("credit_code", Utf8),
                ("year", Int64),
                ("tax_paid", Float64),
                ("vat", Float64),
            ],
        ),
        (
            "gov.utility_usage",
            OpenClass::Conditional,
            &[
                ("credit_code", Utf8),
                ("month", Utf8),
                ("electricity_kwh", Float64),
                ("water_m3", Float64),
                ("gas_m3", Float64),
            ],
        ),
        (
            "bank.loans",
            OpenClass::Conditional,
            &[
                ("loan_id", Utf8),
                ("credit_code", Utf8),
                ("amount", Float64),
                ("rate", Float64),
                ("term_months", Int64),
                ("defaulted", Int64),
            ],
        ),
        (
            "health.clinic_visits",
            OpenClass::Conditional,
            &[
                ("person_id", Utf8),
                ("visit_date", Date),
                ("age", Int64),
                ("sex", Utf8),
                ("district", Utf8),
                ("diagnosis_chapter", Utf8),
                ("cost", Float64),
            ],
        ),
        (
            "gov.districts",
            OpenClass::Open,
            &[
                ("district", Utf8),
                ("division_code", Utf8),
                ("area_km2", Float64),
                ("population_10k", Float64),
            ],
        ),
    ];
    let catalog = shipped_catalog();
    for (id, class, fields) in expected {
        let d = catalog.get(&id.parse().expect("id")).expect("dataset");
        assert_eq!(d.open_class, *class, "{id}");
        assert_eq!(d.format, "Parquet");
        let got: Vec<(&str, FieldType)> = d.fields.iter().map(|f| (f.name.as_str(), f.data_type)).collect();
        assert_eq!(&got, fields, "{id}");
    }
}

#[test]
fn shipped_policy_parameters_are_as_agreed() {
    // (dataset, mode, k, ε/query, δ, budget, G, R, aggregates, wasm, fusions, unit entity)
    type Row = (
        &'static str,
        ReleaseMode,
        u64,
        f64,
        f64,
        f64,
        u32,
        u32,
        usize,
        bool,
        usize,
        Option<&'static str>,
    );
    let rows: &[Row] = &[
        (
            "gov.legal_entities",
            ReleaseMode::Dp,
            10,
            1.0,
            1e-6,
            10.0,
            1,
            1,
            7,
            true,
            3,
            Some("enterprise"),
        ),
        (
            "gov.tax_payments",
            ReleaseMode::Both,
            10,
            1.0,
            1e-6,
            10.0,
            3,
            1,
            4,
            true,
            3,
            Some("enterprise"),
        ),
        (
            "gov.utility_usage",
            ReleaseMode::Dp,
            10,
            1.0,
            1e-6,
            10.0,
            24,
            24,
            7,
            true,
            3,
            Some("enterprise"),
        ),
        (
            "bank.loans",
            ReleaseMode::Dp,
            5,
            2.0,
            1e-6,
            20.0,
            2,
            3,
            7,
            true,
            3,
            Some("enterprise"),
        ),
        (
            "health.clinic_visits",
            ReleaseMode::Dp,
            10,
            0.5,
            1e-7,
            5.0,
            5,
            50,
            5,
            false,
            0,
            Some("person"),
        ),
    ];
    let set = shipped_set();
    for (id, mode, k, eps, delta, budget, g, r, aggs, wasm, fusions, entity) in rows {
        let p = set.get(&id.parse().expect("id")).expect("policy");
        assert_eq!(p.release.mode, *mode, "{id}");
        assert_eq!(p.release.min_units, *k, "{id}");
        let dp = p.dp.expect("dp params");
        assert_eq!(
            (
                dp.epsilon_per_query,
                dp.delta,
                dp.epsilon_budget,
                dp.max_groups_per_unit,
                dp.max_rows_per_group
            ),
            (*eps, *delta, *budget, *g, *r),
            "{id}"
        );
        assert_eq!(p.release.aggregates.len(), *aggs, "{id}");
        assert!(p.jobs.sql, "{id}");
        assert_eq!(p.jobs.wasm, *wasm, "{id}");
        assert_eq!(p.fusions.len(), *fusions, "{id}");
        assert_eq!(p.unit_entity.as_deref(), *entity, "{id}");
        assert!(p.privacy_unit.is_some(), "{id}");
        for f in &p.fusions {
            assert_eq!(
                f.on,
                vec![("credit_code".to_string(), "credit_code".to_string())],
                "{id}"
            );
        }
    }
    let tax = set.get(&"gov.tax_payments".parse().expect("id")).expect("tax");
    assert_eq!(tax.release.rounding_base, Some(1.0));
    let dom = tax.release.dominance.expect("dominance");
    assert_eq!((dom.n, dom.percent), (2, 85.0));
    assert!(!tax.release.aggregates.contains(&AggregateKind::Variance));

    let districts = set.get(&"gov.districts".parse().expect("id")).expect("districts");
    assert_eq!(districts.release.mode, ReleaseMode::Threshold);
    assert_eq!(districts.release.min_units, 2);
    assert!(districts.dp.is_none() && districts.privacy_unit.is_none() && districts.unit_entity.is_none());
    assert!(districts.columns.values().all(|c| c.has(ColumnRole::Public)));
}

#[test]
fn shipped_public_key_sets_are_complete() {
    let set = shipped_set();
    let keys = |id: &str, col: &str| -> Vec<PublicKey> {
        let p = set.get(&id.parse().expect("id")).expect("policy");
        p.column(col).and_then(|c| c.public_keys.clone()).expect("public keys")
    };
    let strs = |v: Vec<&str>| -> Vec<PublicKey> { v.into_iter().map(|s| PublicKey::Str(s.to_string())).collect() };
    let districts = strs(SHANGHAI_DISTRICTS.iter().map(|(n, _)| *n).collect());
    assert_eq!(keys("gov.legal_entities", "district"), districts);
    assert_eq!(keys("health.clinic_visits", "district"), districts);
    let letters: Vec<String> = ('A'..='T').map(String::from).collect();
    assert_eq!(
        keys("gov.legal_entities", "industry"),
        strs(letters.iter().map(String::as_str).collect())
    );
    let months: Vec<String> = (2023..=2024)
        .flat_map(|y| (1..=12).map(move |m| format!("{y}-{m:02}")))
        .collect();
    assert_eq!(
        keys("gov.utility_usage", "month"),
        strs(months.iter().map(String::as_str).collect())
    );
    let chapters = "I II III IV V VI VII VIII IX X XI XII XIII XIV XV XVI XVII XVIII XIX XX XXI XXII";
    assert_eq!(
        keys("health.clinic_visits", "diagnosis_chapter"),
        strs(chapters.split(' ').collect())
    );
    assert_eq!(keys("health.clinic_visits", "sex"), strs(vec!["F", "M"]));
    let ints = |v: &[i64]| -> Vec<PublicKey> { v.iter().map(|i| PublicKey::Int(*i)).collect() };
    assert_eq!(keys("gov.tax_payments", "year"), ints(&[2022, 2023, 2024]));
    assert_eq!(keys("bank.loans", "term_months"), ints(&[6, 12, 24, 36, 60]));
}

#[test]
fn every_shipped_policy_round_trips_through_to_toml() {
    let catalog = shipped_catalog();
    for p in shipped_set().iter() {
        let text = to_toml(p);
        let back = parse_policy("round-trip.toml", &text, &catalog).unwrap_or_else(|e| panic!("{text}\n{e}"));
        assert_ne!(back.digest, p.digest, "the digest is of the file bytes");
        let mut back = back;
        back.digest = p.digest.clone();
        assert_eq!(&back, p, "{text}");
        // Writing is stable: the written form writes itself.
        assert_eq!(to_toml(&back), text);
    }
}

#[test]
fn describe_says_what_the_policy_allows() {
    let catalog = shipped_catalog();
    let set = shipped_set();
    let lines = |id: &str| {
        let id = id.parse().expect("id");
        set.get(&id)
            .expect("policy")
            .describe(catalog.get(&id).expect("dataset"))
    };
    let utility = lines("gov.utility_usage");
    for expected in [
        "Released with differential privacy: at most ε = 1 per query, 10 per agreement, δ = 1e-6",
        "Each query spends at least ε = 0.01; δ in total at most 1e-4 per agreement",
        "Each enterprise contributes to at most 24 groups, 24 rows per group and 24 rows in all",
        "Groups without a public key set appear only when their noisy count of distinct enterprises reaches at least 10 (DP partition selection)",
        "credit_code: identifier, privacy unit, join key — never output",
        "electricity_kwh: measure, aggregated only, clamped to [0, 500000] kWh",
        "May be fused with gov.legal_entities on credit_code",
        "WebAssembly jobs: allowed",
    ] {
        assert!(
            utility.iter().any(|l| l == expected),
            "missing {expected:?} in {utility:#?}"
        );
    }
    let health = lines("health.clinic_visits");
    for expected in [
        "Each person contributes to at most 5 groups, 50 rows per group and 50 rows in all",
        "WebAssembly jobs: not allowed",
        "visit_date: sensitive — may not be read by jobs",
        "May not be fused with other datasets",
        "Released with differential privacy: at most ε = 0.5 per query, 5 per agreement, δ = 1e-7",
    ] {
        assert!(
            health.iter().any(|l| l == expected),
            "missing {expected:?} in {health:#?}"
        );
    }
    let tax = lines("gov.tax_payments");
    assert!(
        tax.iter()
            .any(|l| l.starts_with("Released with differential privacy and threshold rules"))
    );
    assert!(
        tax.iter()
            .any(|l| l.contains("2 largest enterprises hold more than 85%"))
    );
    let districts = lines("gov.districts");
    assert!(
        districts
            .iter()
            .any(|l| l.starts_with("Released with threshold rules only"))
    );
    assert!(
        districts
            .iter()
            .any(|l| l == "Groups with fewer than 2 rows are suppressed")
    );
}

#[test]
fn to_toml_escapes_strings_and_keeps_float_bits() {
    let catalog = shipped_catalog();
    let text = shipped_policy_sources()
        .into_iter()
        .find(|(f, _)| f == "gov.utility_usage.toml")
        .expect("utility")
        .1
        .replacen("version = \"2026-11-01\"", r#"version = "v\"1\"\n\t\\ 版本""#, 1)
        .replacen("epsilon_per_query = 1.0", "epsilon_per_query = 0.1", 1)
        .replacen("delta = 1e-6", "delta = 3.3e-7", 1)
        .replacen("[0.0, 500000.0]", "[-0.30000000000000004, 1e15]", 1);
    let p = parse_policy("t.toml", &text, &catalog).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.version, "v\"1\"\n\t\\ 版本");
    let mut back = parse_policy("t.toml", &to_toml(&p), &catalog).unwrap_or_else(|e| panic!("{e}"));
    back.digest = p.digest.clone();
    assert_eq!(back, p);
}
