//! Reading a directory of TOML files (catalog or policies).

use crate::PolicyError;
use std::path::Path;

/// Every `*.toml` file directly in `dir`, sorted by name, as
/// (path for messages, text). Files that cannot be read or are not UTF-8
/// become errors without stopping the others.
pub(crate) fn read_toml_files(dir: &Path) -> (Vec<(String, String)>, Vec<PolicyError>) {
    let shown = dir.display().to_string();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            return (
                Vec::new(),
                vec![PolicyError::unplaced(shown, "", format!("cannot read directory: {e}"))],
            );
        }
    };
    let mut errors = Vec::new();
    let mut paths = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "toml") && path.is_file() {
                    paths.push(path);
                }
            }
            Err(e) => errors.push(PolicyError::unplaced(
                shown.clone(),
                "",
                format!("cannot list directory: {e}"),
            )),
        }
    }
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let file = path.display().to_string();
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => files.push((file, text)),
                Err(e) => errors.push(PolicyError::unplaced(
                    file,
                    "",
                    format!(
                        "not UTF-8 text (invalid byte at offset {}); save the file as UTF-8",
                        e.utf8_error().valid_up_to()
                    ),
                )),
            },
            Err(e) => errors.push(PolicyError::unplaced(file, "", format!("cannot read file: {e}"))),
        }
    }
    (files, errors)
}
