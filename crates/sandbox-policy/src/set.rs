//! All policies together, and the checks that need more than one of them:
//! fusions must be agreed on both sides, every catalog dataset needs exactly
//! one policy.

use crate::dir::read_toml_files;
use crate::span::Source;
use crate::validate::{Compiled, Failed, compile};
use crate::{Policy, PolicyError, PolicyErrors};
use sandbox_model::{Catalog, ColumnRole, DatasetId, OpenClass};
use std::collections::BTreeMap;
use std::path::Path;

/// Parses and validates one policy file against the catalog. Checks that
/// need other policies (see [`PolicySet`]) are not run.
pub fn parse_policy(file_name: &str, text: &str, catalog: &Catalog) -> Result<Policy, PolicyErrors> {
    compile(file_name, text, catalog)
        .map(|c| c.policy)
        .map_err(|f| f.errors)
}

/// The validated policies of every catalog dataset.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: BTreeMap<DatasetId, Policy>,
    files: BTreeMap<DatasetId, String>,
    warnings: Vec<PolicyError>,
}

/// One successfully compiled file, kept with its text for locating
/// cross-policy warnings.
struct Loaded<'a> {
    file: &'a str,
    text: &'a str,
    compiled: Compiled,
}

impl PolicySet {
    /// Loads every `*.toml` in `dir` (sorted by name) as a policy.
    pub fn load_dir(dir: &Path, catalog: &Catalog) -> Result<PolicySet, PolicyErrors> {
        let (files, io_errors) = read_toml_files(dir);
        let missing_file = |id: &DatasetId| dir.join(format!("{id}.toml")).display().to_string();
        build(&files, catalog, io_errors, &missing_file)
    }

    /// Builds the set from (file name, text) pairs, e.g. embedded copies.
    pub fn from_sources(sources: &[(String, String)], catalog: &Catalog) -> Result<PolicySet, PolicyErrors> {
        build(sources, catalog, Vec::new(), &|id| format!("{id}.toml"))
    }

    pub fn get(&self, id: &DatasetId) -> Option<&Policy> {
        self.policies.get(id)
    }

    /// Policies in dataset-id order.
    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.policies.values()
    }

    /// The file a dataset's policy was read from.
    pub fn file_of(&self, id: &DatasetId) -> Option<&str> {
        self.files.get(id).map(String::as_str)
    }

    /// Things that load but deserve an owner's attention: a policy for a
    /// closed dataset, a fusion only one side permits, and inert fusions
    /// (the other dataset gone, its column gone, retyped or no longer a
    /// join key, another privacy unit): another owner's change never makes
    /// a policy invalid, and jobs are refused such joins.
    pub fn warnings(&self) -> &[PolicyError] {
        &self.warnings
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

fn build(
    sources: &[(String, String)],
    catalog: &Catalog,
    mut errors: Vec<PolicyError>,
    missing_file: &dyn Fn(&DatasetId) -> String,
) -> Result<PolicySet, PolicyErrors> {
    let mut loaded: BTreeMap<DatasetId, Loaded<'_>> = BTreeMap::new();
    let mut warnings = Vec::new();
    // Datasets some file claims, even a broken one, so that a broken policy
    // is not also reported as missing.
    let mut claimed: Vec<DatasetId> = Vec::new();
    let mut unidentified = !errors.is_empty();
    for (file, text) in sources {
        match compile(file, text, catalog) {
            Ok(compiled) => {
                let id = compiled.policy.dataset.clone();
                claimed.push(id.clone());
                if let Some(first) = loaded.get(&id) {
                    let src = Source::new(file, text);
                    errors.push(src.error(
                        compiled.spans.dataset.clone(),
                        "dataset",
                        format!("a second policy for {id}; it already has one in {}", first.file),
                    ));
                    continue;
                }
                warnings.extend(compiled.warnings.iter().cloned());
                loaded.insert(id, Loaded { file, text, compiled });
            }
            Err(Failed { dataset, errors: e }) => {
                match dataset {
                    Some(id) => claimed.push(id),
                    None => unidentified = true,
                }
                errors.extend(e);
            }
        }
    }

    for l in loaded.values() {
        cross_check(l, &loaded, catalog, &mut warnings);
    }
    // With an unreadable file we cannot tell which dataset it was for.
    if !unidentified {
        for d in catalog.iter() {
            if !claimed.contains(&d.id) {
                errors.push(PolicyError::unplaced(
                    missing_file(&d.id),
                    "dataset",
                    format!(
                        "catalog dataset {} has no policy; write one (fail closed: a dataset without a policy \
                         cannot be used)",
                        d.id
                    ),
                ));
            }
        }
    }

    if !errors.is_empty() {
        sort_by_file(&mut errors, sources);
        return Err(PolicyErrors(errors));
    }
    sort_by_file(&mut warnings, sources);
    Ok(PolicySet {
        files: loaded.iter().map(|(id, l)| (id.clone(), l.file.to_string())).collect(),
        policies: loaded.into_iter().map(|(id, l)| (id, l.compiled.policy)).collect(),
        warnings,
    })
}

/// Keeps files in the order given and each file's problems in line order.
fn sort_by_file(errors: &mut [PolicyError], sources: &[(String, String)]) {
    let rank = |file: &str| sources.iter().position(|(f, _)| f == file).unwrap_or(usize::MAX);
    errors.sort_by_key(|e| (rank(&e.file), e.line, e.column));
}

fn cross_check(
    l: &Loaded<'_>,
    all: &BTreeMap<DatasetId, Loaded<'_>>,
    catalog: &Catalog,
    warnings: &mut Vec<PolicyError>,
) {
    let src = Source::new(l.file, l.text);
    let p = &l.compiled.policy;
    if catalog
        .get(&p.dataset)
        .is_some_and(|d| d.open_class == OpenClass::Closed)
    {
        warnings.push(src.error(
            l.compiled.spans.dataset.clone(),
            "dataset",
            format!(
                "{} is a closed (非开放) dataset: the policy is kept, but no job may read it",
                p.dataset
            ),
        ));
    }
    for (i, (f, spans)) in p.fusions.iter().zip(&l.compiled.spans.fusions).enumerate() {
        // A dataset whose policy failed to load has been reported already.
        let Some(other) = all.get(&f.dataset) else { continue };
        let q = &other.compiled.policy;
        for ((here, there), span) in f.on.iter().zip(&spans.pairs) {
            // The other side's problems never make this file (or the
            // other owner's change) invalid: the fusion is inert, and the
            // checker refuses such a join (both columns must be join keys
            // that both policies permit, on one privacy unit).
            if !q.column(there).is_some_and(|c| c.has(ColumnRole::JoinKey)) {
                warnings.push(src.error(
                    span.clone(),
                    format!("fusion[{i}].on"),
                    format!(
                        "`{there}` is not a join_key in the policy of {} ({}); both owners must mark a column \
                         join_key to fuse on it",
                        q.dataset, other.file
                    ),
                ));
            }
            if !q.permits_fusion(&p.dataset, there, here) {
                warnings.push(src.error(
                    span.clone(),
                    format!("fusion[{i}].on"),
                    format!(
                        "the policy of {} does not permit fusing its `{there}` with {}.{here}; such joins are \
                         refused until both owners permit them",
                        q.dataset, p.dataset
                    ),
                ));
            }
        }
        if let (Some(a), Some(b)) = (&p.unit_entity, &q.unit_entity)
            && a != b
        {
            warnings.push(src.error(
                spans.dataset.clone(),
                format!("fusion[{i}].dataset"),
                format!(
                    "two datasets declaring different privacy units for a fusion: this policy's unit is `{a}`, \
                     {}'s is `{b}`; contributions to a fused result could not be bounded",
                    q.dataset
                ),
            ));
        }
    }
}
