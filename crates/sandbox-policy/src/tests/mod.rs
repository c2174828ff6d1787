//! Tests over whole files: the shipped catalog and policies, a table of
//! malformed policies, cross-policy rules, catalog entries, hostile input.

mod catalog;
mod cross;
mod desensitize;
mod desensitize_attack;
mod desensitize_properties;
mod hostile;
mod malformed;
mod sample;
mod shipped;

use crate::{PolicyErrors, load_catalog_dir};
use sandbox_model::Catalog;
use std::path::PathBuf;

/// The repository root, where `catalog/` and `policies/` live.
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn shipped_catalog() -> Catalog {
    load_catalog_dir(&repo_root().join("catalog")).unwrap_or_else(|e| panic!("shipped catalog:\n{e}"))
}

/// (file name, text) of every shipped policy, sorted by name.
pub(crate) fn shipped_policy_sources() -> Vec<(String, String)> {
    let dir = repo_root().join("policies");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("policies dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read"))
        })
        .collect();
    files.sort();
    files
}

/// Panics with the full report unless some error matches all three.
pub(crate) fn assert_has(errors: &PolicyErrors, field: &str, line: usize, message: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.field == field && e.line == line && e.message.contains(message)),
        "expected `{field}` at line {line} containing {message:?}; got:\n{errors}"
    );
}
