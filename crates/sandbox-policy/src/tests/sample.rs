//! The `[sample]` table: the owner's consent to DP sample datasets.

use super::{assert_has, shipped_catalog, shipped_policy_sources};
use crate::{PolicyErrors, PolicySet};

fn edited(from: &str, to: &str) -> Result<PolicySet, PolicyErrors> {
    let mut sources = shipped_policy_sources();
    let (_, text) = sources
        .iter_mut()
        .find(|(f, _)| f == "gov.tax_payments.toml")
        .expect("file");
    let new = text.replacen(from, to, 1);
    assert_ne!(&new, text, "edit does not apply");
    *text = new;
    PolicySet::from_sources(&sources, &shipped_catalog())
}

fn line(needle: &str) -> usize {
    let sources = shipped_policy_sources();
    let (_, text) = sources
        .iter()
        .find(|(f, _)| f == "gov.tax_payments.toml")
        .expect("file");
    text.lines().position(|l| l.contains(needle)).expect("needle") + 1
}

#[test]
fn shipped_conditional_policies_allow_a_sample_and_the_open_one_does_not() {
    let set = PolicySet::from_sources(&shipped_policy_sources(), &shipped_catalog()).expect("shipped");
    let tax = set.get(&"gov.tax_payments".parse().expect("id")).expect("tax");
    let s = tax.sample.as_ref().expect("[sample]");
    assert_eq!((s.epsilon, s.fidelity_epsilon, s.epsilon_budget), (1.0, 0.25, 5.0));
    assert_eq!(s.max_rows_per_unit, 3);
    assert_eq!(
        s.pairs,
        [("year".into(), "tax_paid".into()), ("tax_paid".into(), "vat".into())]
    );
    assert_eq!((s.max_rows, s.bins), (100_000, 10));
    let districts = set.get(&"gov.districts".parse().expect("id")).expect("districts");
    assert!(districts.sample.is_none());
    let catalog = shipped_catalog();
    let words = tax.describe(catalog.get(&tax.dataset).expect("entry"));
    assert!(
        words.iter().any(|l| l.starts_with("A DP sample dataset (样本数据) may be downloaded without an application: ε = 1 per sample (model) + 0.25 (fidelity report), from the owner's sample budget of ε = 5; each enterprise contributes at most 3 rows")),
        "{words:#?}"
    );
    let words = districts.describe(catalog.get(&districts.dataset).expect("entry"));
    assert!(
        words
            .iter()
            .any(|l| l == "No sample dataset (the owner has not allowed one)")
    );
}

#[test]
fn bad_sample_tables_name_the_rule_and_the_line() {
    let cases: [(&str, &str, &str, &str, &str); 6] = [
        (
            "epsilon = 1.0\nfidelity",
            "epsilon = 0.0\nfidelity",
            "epsilon = 1.0\nfidelity",
            "sample.epsilon",
            "must be a finite number",
        ),
        (
            "epsilon_budget = 5.0\nmax_rows_per_unit",
            "epsilon_budget = 1.0\nmax_rows_per_unit",
            "epsilon_budget = 5.0\nmax_rows_per_unit",
            "sample.epsilon_budget",
            "at least epsilon + fidelity_epsilon (1.25)",
        ),
        (
            "max_rows_per_unit = 3",
            "max_rows_per_unit = 0",
            "max_rows_per_unit = 3",
            "sample.max_rows_per_unit",
            "must be an integer >= 1",
        ),
        (
            "[\"tax_paid\", \"vat\"]",
            "[\"tax_paid\", \"credit_code\"]",
            "pairs = ",
            "sample.pairs",
            "`credit_code` is not a dimension, measure or public column",
        ),
        (
            "[\"tax_paid\", \"vat\"]",
            "[\"tax_paid\", \"year\"]",
            "pairs = ",
            "sample.pairs",
            "would form a cycle",
        ),
        (
            "[\"tax_paid\", \"vat\"]",
            "[\"year\", \"tax_paid\"]",
            "pairs = ",
            "sample.pairs",
            "is a child in two pairs",
        ),
    ];
    for (from, to, at, field, message) in cases {
        let errors = match edited(from, to) {
            Ok(_) => panic!("{to:?} accepted"),
            Err(e) => e,
        };
        let at = line(at.lines().next().expect("line"));
        assert_has(&errors, field, at, message);
    }
}

#[test]
fn a_sample_needs_differential_privacy_and_known_keys() {
    let mut sources = shipped_policy_sources();
    let (_, text) = sources
        .iter_mut()
        .find(|(f, _)| f == "gov.districts.toml")
        .expect("file");
    text.push_str("\n[sample]\nepsilon = 1.0\nepsilon_budget = 2.0\nmax_rows_per_unit = 1\n");
    let errors = match PolicySet::from_sources(&sources, &shipped_catalog()) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    assert!(
        errors
            .iter()
            .any(|e| e.field == "sample" && e.message.contains("needs differential privacy")),
        "{errors}"
    );
    let Err(errors) = edited("max_rows_per_unit = 3", "max_rows_per_unit = 3\nseed = 4") else {
        panic!("an unknown key was accepted");
    };
    assert!(errors.to_string().contains("seed"), "{errors}");
}
