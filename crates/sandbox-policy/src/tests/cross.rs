//! Rules that need more than one policy, checked by `PolicySet`.

use super::{assert_has, shipped_catalog, shipped_policy_sources};
use crate::{PolicyErrors, PolicySet, parse_catalog_entry};
use sandbox_model::Catalog;

/// The shipped policies with one file's text edited.
fn edited(file: &str, from: &str, to: &str) -> Vec<(String, String)> {
    let mut sources = shipped_policy_sources();
    let (_, text) = sources.iter_mut().find(|(f, _)| f == file).expect("file");
    let new = text.replacen(from, to, 1);
    assert_ne!(&new, text, "edit of {file} does not apply");
    *text = new;
    sources
}

fn load(sources: &[(String, String)], catalog: &Catalog) -> PolicyErrors {
    match PolicySet::from_sources(sources, catalog) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    }
}

fn line_of(sources: &[(String, String)], file: &str, needle: &str) -> usize {
    let (_, text) = sources.iter().find(|(f, _)| f == file).expect("file");
    text.lines().position(|l| l.contains(needle)).expect("needle") + 1
}

#[test]
fn fusion_key_must_be_a_join_key_on_the_other_side() {
    let catalog = shipped_catalog();
    // bank.loans's loan_id is an identifier, not a join key.
    let sources = edited(
        "gov.legal_entities.toml",
        "dataset = \"bank.loans\"\non = [[\"credit_code\", \"credit_code\"]]",
        "dataset = \"bank.loans\"\non = [[\"credit_code\", \"loan_id\"]]",
    );
    let errors = load(&sources, &catalog);
    let line = line_of(&sources, "gov.legal_entities.toml", "\"loan_id\"");
    assert_has(
        &errors,
        "fusion[2].on",
        line,
        "`loan_id` is not a join_key in the policy of bank.loans",
    );
    assert!(errors.iter().all(|e| e.file == "gov.legal_entities.toml"), "{errors}");
}

#[test]
fn fused_datasets_must_declare_the_same_privacy_unit() {
    let catalog = shipped_catalog();
    let sources = edited(
        "bank.loans.toml",
        "unit_entity = \"enterprise\"",
        "unit_entity = \"borrower\"",
    );
    let errors = load(&sources, &catalog);
    let msg = "two datasets declaring different privacy units for a fusion";
    // Reported by the bank for each of its fusions, and by each partner.
    let line = line_of(&sources, "bank.loans.toml", "dataset = \"gov.legal_entities\"");
    assert_has(&errors, "fusion[0].dataset", line, msg);
    let line = line_of(&sources, "gov.tax_payments.toml", "dataset = \"bank.loans\"");
    assert!(
        errors
            .iter()
            .any(|e| e.file == "gov.tax_payments.toml" && e.line == line && e.message.contains(msg)),
        "{errors}"
    );
    assert_eq!(errors.iter().filter(|e| e.message.contains(msg)).count(), 6, "{errors}");
}

#[test]
fn every_catalog_dataset_needs_a_policy() {
    let catalog = shipped_catalog();
    let sources: Vec<_> = shipped_policy_sources()
        .into_iter()
        .filter(|(f, _)| f != "gov.districts.toml")
        .collect();
    let errors = load(&sources, &catalog);
    assert_eq!(errors.len(), 1, "{errors}");
    assert_has(&errors, "dataset", 0, "catalog dataset gov.districts has no policy");
    assert_eq!(errors.0[0].file, "gov.districts.toml");
}

#[test]
fn a_missing_policy_in_a_directory_names_the_expected_file() {
    let catalog = shipped_catalog();
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in shipped_policy_sources() {
        if name != "bank.loans.toml" {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
    }
    // Other files are not policies and are ignored.
    std::fs::write(dir.path().join("README.md"), "not a policy").expect("write");
    let errors = PolicySet::load_dir(dir.path(), &catalog).expect_err("bank.loans has no policy");
    let expected = dir.path().join("bank.loans.toml").display().to_string();
    assert!(
        errors
            .iter()
            .any(|e| e.file == expected && e.message.contains("has no policy")),
        "{errors}"
    );
}

#[test]
fn a_broken_policy_is_not_also_reported_as_missing() {
    let catalog = shipped_catalog();
    let sources = edited("gov.districts.toml", "min_units = 2", "min_units = \"two\"");
    let errors = load(&sources, &catalog);
    assert_eq!(errors.len(), 1, "{errors}");
    assert_has(
        &errors,
        "release.min_units",
        line_of(&sources, "gov.districts.toml", "min_units"),
        "invalid type",
    );
}

#[test]
fn two_policies_for_one_dataset_are_an_error() {
    let catalog = shipped_catalog();
    let mut sources = shipped_policy_sources();
    let copy = sources
        .iter()
        .find(|(f, _)| f == "gov.districts.toml")
        .expect("file")
        .1
        .clone();
    sources.push(("zz.copy.toml".to_string(), copy));
    let errors = load(&sources, &catalog);
    assert_eq!(errors.len(), 1, "{errors}");
    let e = &errors.0[0];
    assert_eq!((e.file.as_str(), e.field.as_str()), ("zz.copy.toml", "dataset"));
    assert!(
        e.message
            .contains("a second policy for gov.districts; it already has one in gov.districts.toml")
    );
    assert!(e.line > 0);
}

#[test]
fn a_one_sided_fusion_loads_with_a_warning() {
    let catalog = shipped_catalog();
    let sources = edited(
        "bank.loans.toml",
        "[[fusion]]\ndataset = \"gov.utility_usage\"\non = [[\"credit_code\", \"credit_code\"]]\n",
        "",
    );
    let set = PolicySet::from_sources(&sources, &catalog).unwrap_or_else(|e| panic!("{e}"));
    let w = set.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].file, "gov.utility_usage.toml");
    assert!(
        w[0].message.contains("the policy of bank.loans does not permit"),
        "{}",
        w[0]
    );
}

const CLOSED_ENTRY: &str = r#"
id = "gov.secret"
title = "非开放示例"
provider = { id = "x", name = "X", kind = "government" }
domain = "d"
summary = "s"
update_frequency = "never"
time_coverage = "-"
area_coverage = "上海市"
format = "Parquet"
open_class = "closed"
fields = [{ name = "district", type = "utf8", description = "区" }]
"#;

const CLOSED_POLICY: &str = r#"dataset = "gov.secret"
version = "1"
[release]
mode = "threshold"
min_units = 5
aggregates = ["count"]
[jobs]
sql = false
wasm = false
[columns]
district = { role = "dimension" }
"#;

#[test]
fn a_policy_for_a_closed_dataset_is_recorded() {
    let mut catalog = shipped_catalog();
    catalog
        .insert(parse_catalog_entry("gov.secret.toml", CLOSED_ENTRY).expect("entry"))
        .expect("insert");
    let mut sources = shipped_policy_sources();
    sources.push(("gov.secret.toml".to_string(), CLOSED_POLICY.to_string()));
    let set = PolicySet::from_sources(&sources, &catalog).unwrap_or_else(|e| panic!("{e}"));
    assert!(set.get(&"gov.secret".parse().expect("id")).is_some());
    let w = set.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(
        (w[0].file.as_str(), w[0].line, w[0].field.as_str()),
        ("gov.secret.toml", 1, "dataset")
    );
    assert!(w[0].message.contains("closed (非开放)"));
}

#[test]
fn errors_of_several_files_come_in_file_order() {
    let catalog = shipped_catalog();
    let mut sources = edited("gov.utility_usage.toml", "min_units = 10", "min_units = 0");
    let (_, text) = sources.iter_mut().find(|(f, _)| f == "bank.loans.toml").expect("file");
    *text = text.replacen("epsilon_budget = 20.0", "epsilon_budget = 1.0", 1);
    let errors = load(&sources, &catalog);
    let files: Vec<&str> = errors.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(files, ["bank.loans.toml", "gov.utility_usage.toml"], "{errors}");
}
