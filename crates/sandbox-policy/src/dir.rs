//! Reading a directory of TOML files (catalog or policies).

use crate::PolicyError;
use std::path::Path;

/// Every `*.toml` file directly in `dir`, sorted by name, as
/// (path for messages, text). Files that cannot be read, are not regular
/// files, are larger than [`crate::files::MAX_POLICY_BYTES`] or are not
/// UTF-8 become errors without stopping the others.
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
                // Every `*.toml` entry, whatever it is: one that is not a
                // regular file (a directory, a device, a symlink loop) is
                // an error naming it, never silently skipped.
                let path = e.path();
                if path.extension().is_some_and(|x| x == "toml") {
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
        match crate::files::read_text(&path, crate::files::MAX_POLICY_BYTES) {
            Ok(text) => files.push((file, text)),
            Err(e) => errors.push(PolicyError::unplaced(file, "", e.why)),
        }
    }
    (files, errors)
}
