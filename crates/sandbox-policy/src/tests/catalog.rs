//! Catalog entries: parsing, model validation located in the file, and
//! loading a directory.

use super::{assert_has, repo_root};
use crate::{load_catalog_dir, parse_catalog_entry};

const ENTRY: &str = r#"id = "demo.shops"
title = "示例门店"
provider = { id = "demo", name = "Demo", kind = "enterprise" }
domain = "retail"
summary = "Shops."
update_frequency = "yearly"
time_coverage = "2024"
area_coverage = "上海市"
format = "Parquet"
open_class = "conditional"
open_conditions = "sign the agreement"

[[fields]]
name = "district"
type = "utf8"
description = "区"

[[fields]]
name = "revenue"
type = "float64"
description = "营业收入"
unit = "万元"
"#;

#[test]
fn a_valid_entry_parses() {
    let d = parse_catalog_entry("demo.shops.toml", ENTRY).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.fields.len(), 2);
}

/// (what, replace, with, field, line, message part)
#[rustfmt::skip]
const CASES: &[(&str, &str, &str, &str, usize, &str)] = &[
    ("unknown key", "domain = \"retail\"", "domain = \"retail\"\ncolour = 1", "colour", 5, "unknown field `colour`"),
    ("unknown field type", "type = \"float64\"", "type = \"decimal\"", "fields[1].type", 20, "unknown variant `decimal`"),
    ("unknown key in a field", "unit = \"万元\"", "units = \"万元\"", "fields[1].units", 22, "unknown field `units`"),
    ("invalid id", "id = \"demo.shops\"", "id = \"Demo Shops\"", "id", 1, "invalid dataset id"),
    ("bad open class", "open_class = \"conditional\"", "open_class = \"semi\"", "open_class", 10, "unknown variant `semi`"),
    ("conditional without conditions", "open_conditions = \"sign the agreement\"", "", "open_class", 10, "must state its open_conditions"),
    ("blank conditions", "open_conditions = \"sign the agreement\"", "open_conditions = \" \"", "open_conditions", 11, "must state its open_conditions"),
    ("duplicate field", "name = \"revenue\"", "name = \"district\"", "fields[1].name", 19, "listed twice"),
    ("bad field name", "name = \"revenue\"", "name = \"Revenue\"", "fields[1].name", 19, "lower-case letters"),
    ("empty description", "description = \"营业收入\"", "description = \"\"", "fields[1].description", 21, "needs a description"),
    ("missing title", "title = \"示例门店\"", "", "title", 0, "missing field `title`"),
    ("missing provider key", "kind = \"enterprise\" ", "", "provider.kind", 3, "missing field `kind`"),
    ];

#[test]
fn malformed_catalog_entries_are_located() {
    let mut failures = Vec::new();
    for (what, from, to, field, line, message) in CASES {
        let text = ENTRY.replacen(from, to, 1);
        assert_ne!(text, ENTRY, "{what}");
        match parse_catalog_entry("catalog/demo.shops.toml", &text) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(errors) => {
                if !errors
                    .iter()
                    .any(|e| e.field == *field && e.line == *line && e.message.contains(message))
                {
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
fn a_catalog_dir_reports_every_broken_entry_and_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.toml"), ENTRY).expect("write");
    std::fs::write(dir.path().join("b.toml"), ENTRY).expect("write");
    std::fs::write(
        dir.path().join("c.toml"),
        ENTRY.replacen("type = \"utf8\"", "type = 7", 1),
    )
    .expect("write");
    std::fs::write(dir.path().join("d.toml"), [0xff_u8, 0xfe, 0x00]).expect("write");
    let errors = load_catalog_dir(dir.path()).expect_err("broken");
    assert_eq!(errors.len(), 3, "{errors}");
    let b = dir.path().join("b.toml").display().to_string();
    assert!(
        errors
            .iter()
            .any(|e| e.file == b && e.field == "id" && e.line == 1 && e.message.contains("duplicate dataset")),
        "{errors}"
    );
    assert_has(&errors, "fields[0].type", 15, "wanted string");
    assert!(
        errors
            .iter()
            .any(|e| e.file.ends_with("d.toml") && e.message.contains("not UTF-8")),
        "{errors}"
    );
}

#[test]
fn a_missing_catalog_dir_is_an_error_naming_it() {
    let missing = repo_root().join("no-such-dir");
    let errors = load_catalog_dir(&missing).expect_err("missing");
    assert_eq!(errors.0[0].file, missing.display().to_string());
    assert!(errors.0[0].message.contains("cannot read directory"));
}
