//! Catalog entries (`catalog/*.toml`): one [`Dataset`] per file, checked by
//! the model's own validation and located in the file when it fails.

use crate::dir::read_toml_files;
use crate::span::{Source, Step};
use crate::{PolicyError, PolicyErrors};
use sandbox_model::{Catalog, Dataset, ModelError};
use std::path::Path;

/// Parses and validates one catalog entry.
pub fn parse_catalog_entry(file_name: &str, text: &str) -> Result<Dataset, PolicyErrors> {
    let src = Source::new(file_name, text);
    let dataset: Dataset = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    dataset.validate().map_err(|e| locate_model_error(&src, &dataset, &e))?;
    Ok(dataset)
}

/// Loads every `*.toml` in `dir` (sorted by name) into a catalog, reporting
/// every broken entry rather than only the first.
pub fn load_catalog_dir(dir: &Path) -> Result<Catalog, PolicyErrors> {
    let (files, mut errors) = read_toml_files(dir);
    let mut catalog = Catalog::new();
    let mut first_file = std::collections::BTreeMap::new();
    for (file, text) in &files {
        let dataset = match parse_catalog_entry(file, text) {
            Ok(d) => d,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        let id = dataset.id.clone();
        let src = Source::new(file, text);
        match catalog.insert(dataset) {
            Ok(()) => {
                first_file.insert(id, file.as_str());
            }
            Err(e) => {
                let span = src.span_of(&[Step::Key("id")]).unwrap_or(0..0);
                let message = match first_file.get(&id) {
                    Some(first) => format!("{e} (first defined in {first})"),
                    None => e.to_string(),
                };
                errors.push(src.error(span, "id", message));
            }
        }
    }
    if errors.is_empty() {
        Ok(catalog)
    } else {
        Err(PolicyErrors(errors))
    }
}

/// Points a model validation error at the value it is about. The model
/// reports only a message, so the field is found from the names it quotes.
fn locate_model_error(src: &Source<'_>, d: &Dataset, e: &ModelError) -> PolicyErrors {
    let message = match e {
        ModelError::InvalidDataset { message, .. } => message.clone(),
        other => other.to_string(),
    };
    let quoted = message.split('`').nth(1);
    let (path, steps): (String, Vec<Step<'_>>) = if message.contains("open_conditions") {
        if d.open_conditions.is_some() {
            ("open_conditions".into(), vec![Step::Key("open_conditions")])
        } else {
            ("open_class".into(), vec![Step::Key("open_class")])
        }
    } else if let Some(i) = quoted.and_then(|name| d.fields.iter().rposition(|f| f.name == name)) {
        let key = if message.contains("description") {
            "description"
        } else {
            "name"
        };
        (
            format!("fields[{i}].{key}"),
            vec![Step::Key("fields"), Step::Index(i), Step::Key(key)],
        )
    } else if message.contains("no fields") {
        ("fields".into(), vec![Step::Key("fields")])
    } else {
        ("id".into(), vec![Step::Key("id")])
    };
    match src.span_of(&steps) {
        Some(span) => src.error(span, path, message).into(),
        None => PolicyError::unplaced(src.file(), path, message).into(),
    }
}
