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

/// Loads, with warnings: problems on the other side of a fusion make it
/// inert, never a policy invalid (so no owner's change is blocked by
/// another owner's policy).
fn loads(sources: &[(String, String)], catalog: &Catalog) -> PolicySet {
    match PolicySet::from_sources(sources, catalog) {
        Ok(set) => set,
        Err(e) => panic!("refused: {e}"),
    }
}

#[test]
fn a_fusion_key_that_is_no_join_key_on_the_other_side_is_inert() {
    let catalog = shipped_catalog();
    // bank.loans's loan_id is an identifier, not a join key.
    let sources = edited(
        "gov.legal_entities.toml",
        "dataset = \"bank.loans\"\non = [[\"credit_code\", \"credit_code\"]]",
        "dataset = \"bank.loans\"\non = [[\"credit_code\", \"loan_id\"]]",
    );
    let set = loads(&sources, &catalog);
    let line = line_of(&sources, "gov.legal_entities.toml", "\"loan_id\"");
    assert!(
        set.warnings().iter().any(|w| w.file == "gov.legal_entities.toml"
            && w.field == "fusion[2].on"
            && w.line == line
            && w.message
                .contains("`loan_id` is not a join_key in the policy of bank.loans")),
        "{:?}",
        set.warnings()
    );
    // The other owner takes the join_key role off its column: its own
    // policy still loads (the partner's fusion turns inert).
    // (and its own fusions with it).
    let mut sources = edited(
        "bank.loans.toml",
        "credit_code = { roles = [\"identifier\", \"privacy_unit\", \"join_key\"] }",
        "credit_code = { roles = [\"identifier\", \"privacy_unit\"] }",
    );
    let (_, bank) = sources.iter_mut().find(|(f, _)| f == "bank.loans.toml").expect("bank");
    let (start, end) = (
        bank.find("[[fusion]]").expect("fusions"),
        bank.find("# DP sample dataset").expect("sample"),
    );
    bank.replace_range(start..end, "");
    let set = loads(&sources, &catalog);
    assert!(
        set.warnings().iter().any(|w| w
            .message
            .contains("`credit_code` is not a join_key in the policy of bank.loans")),
        "{:?}",
        set.warnings()
    );
}

#[test]
fn fused_datasets_declaring_other_privacy_units_are_warned_of() {
    let catalog = shipped_catalog();
    let sources = edited(
        "bank.loans.toml",
        "unit_entity = \"enterprise\"",
        "unit_entity = \"borrower\"",
    );
    let set = loads(&sources, &catalog);
    let msg = "two datasets declaring different privacy units for a fusion";
    // Reported by the bank for each of its fusions, and by each partner.
    let line = line_of(&sources, "bank.loans.toml", "dataset = \"gov.legal_entities\"");
    let warnings = set.warnings();
    assert!(
        warnings.iter().any(|w| w.file == "bank.loans.toml"
            && w.field == "fusion[0].dataset"
            && w.line == line
            && w.message.contains(msg)),
        "{warnings:?}"
    );
    assert_eq!(
        warnings.iter().filter(|w| w.message.contains(msg)).count(),
        6,
        "{warnings:?}"
    );
}

#[test]
fn a_fusion_whose_other_side_is_gone_or_renamed_is_inert() {
    let catalog = shipped_catalog();
    for (from, to, says) in [
        (
            "dataset = \"bank.loans\"",
            "dataset = \"bank.gone\"",
            "not in the catalog",
        ),
        (
            "dataset = \"bank.loans\"\non = [[\"credit_code\", \"credit_code\"]]",
            "dataset = \"bank.loans\"\non = [[\"credit_code\", \"no_such\"]]",
            "bank.loans has no column `no_such`",
        ),
    ] {
        let sources = edited("gov.legal_entities.toml", from, to);
        let set = loads(&sources, &catalog);
        assert!(
            set.warnings().iter().any(|w| w.file == "gov.legal_entities.toml"
                && w.message.contains(says)
                && w.message.contains("inert")),
            "{says}: {:?}",
            set.warnings()
        );
        let policy = set.get(&"gov.legal_entities".parse().expect("id")).expect("policy");
        assert!(
            !policy.fusions.iter().any(|f| f.dataset.as_str().starts_with("bank.")),
            "{says}: the fusion is left out"
        );
    }
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
