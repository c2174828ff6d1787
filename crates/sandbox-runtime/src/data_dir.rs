//! The data directory: generated datasets, catalog, policies and the
//! sandbox database in one place, so every CLI verb and the server find
//! the same state with no other setup.
//!
//! ```text
//! <root>/catalog/*.toml        catalog entries (copied from the shipped set on first use)
//! <root>/policies/*.toml       output policies, one per dataset
//! <root>/data/<ns>/<table>/    Parquet files, one directory per dataset (generated)
//! <root>/data/<ns>/<table>/CURRENT, v000001/ …   registered versions (sandbox-ingest)
//! <root>/samples/<ns>/<table>/ DP sample datasets, CURRENT naming the one served (sandbox-ingest)
//! <root>/sandbox.db            grants, budgets, jobs (SQLite)
//! ```

use crate::{RuntimeError, assets};
use sandbox_ingest::SampleManifest;
use sandbox_model::DatasetId;
use sandbox_policy::Policy;
use std::path::{Path, PathBuf};

/// Environment variable that overrides the default location.
pub const DATA_DIR_ENV: &str = "SANDBOX_DATA_DIR";

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl DataDir {
    /// `--data-dir`, else `$SANDBOX_DATA_DIR`, else `$XDG_DATA_HOME/data-sandbox`,
    /// else `~/.local/share/data-sandbox`, else `./.sandbox-data`.
    pub fn resolve(explicit: Option<PathBuf>) -> PathBuf {
        if let Some(p) = explicit {
            return p;
        }
        if let Some(p) = std::env::var_os(DATA_DIR_ENV).filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        if let Some(p) = std::env::var_os("XDG_DATA_HOME").filter(|p| !p.is_empty()) {
            return PathBuf::from(p).join("data-sandbox");
        }
        if let Some(h) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
            return PathBuf::from(h).join(".local/share/data-sandbox");
        }
        PathBuf::from(".sandbox-data")
    }

    /// Opens (creating on first use) a data directory and installs the
    /// shipped catalog and policies if it has none.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        let dir = DataDir { root: root.into() };
        for d in [
            dir.root.clone(),
            dir.catalog_dir(),
            dir.policies_dir(),
            dir.tables_dir(),
        ] {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        dir.install_if_empty(&dir.catalog_dir(), assets::CATALOG)?;
        dir.install_if_empty(&dir.policies_dir(), assets::POLICIES)?;
        Ok(dir)
    }

    fn install_if_empty(&self, dir: &Path, files: &[(&str, &str)]) -> Result<(), RuntimeError> {
        let has_toml = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == "toml"));
        if !has_toml {
            for (name, text) in files {
                let path = dir.join(name);
                std::fs::write(&path, text).map_err(io(&path))?;
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn catalog_dir(&self) -> PathBuf {
        self.root.join("catalog")
    }
    pub fn policies_dir(&self) -> PathBuf {
        self.root.join("policies")
    }
    pub fn tables_dir(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("sandbox.db")
    }

    /// The directory holding a dataset's Parquet files: its current
    /// registered version's (`<ns>/<table>/v000002/`, named by the
    /// `CURRENT` file that `sandbox dataset register` replaces atomically;
    /// layout in `sandbox_ingest::layout`), else the generated data's
    /// (`<ns>/<table>/`). Resolved once per job session, so a job keeps
    /// the version it started with.
    pub fn table_dir(&self, dataset: &DatasetId) -> PathBuf {
        let base = sandbox_datagen::table_dir(&self.tables_dir(), dataset.as_str());
        match self.current_version(dataset) {
            Some(name) => base.join(name),
            None => base,
        }
    }

    /// The name of a dataset's current registered version (`v000002`), as
    /// its `CURRENT` file names it; `None` for unversioned (generated) data
    /// or a pointer that is not a version name.
    pub fn current_version(&self, dataset: &DatasetId) -> Option<String> {
        let base = sandbox_datagen::table_dir(&self.tables_dir(), dataset.as_str());
        let name = std::fs::read_to_string(base.join(CURRENT_VERSION_FILE)).ok()?;
        let name = name.trim();
        is_version_name(name).then(|| name.to_string())
    }

    /// `<root>/cache/verified/<ns>.<table>.json`: the verification of a
    /// dataset's `max_rows_per_value` declarations (`crate::multiplicity`),
    /// recomputed whenever its files change.
    pub fn verification_cache(&self, dataset: &DatasetId) -> PathBuf {
        self.root.join("cache").join("verified").join(format!("{dataset}.json"))
    }

    /// The locations this data directory has published tables to
    /// (`<root>/published-to`, one URL a line; [`crate::published`]).
    ///
    /// Errors: [`RuntimeError::Io`] when the file exists but cannot be read.
    pub fn published_locations(&self) -> Result<std::collections::BTreeSet<String>, RuntimeError> {
        let path = self.root.join(PUBLISHED_TO_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Adds `location` to [`DataDir::published_locations`] (before anything
    /// is uploaded there, so a withdrawal finds every copy).
    ///
    /// Errors: [`RuntimeError::Io`] when the file cannot be written.
    pub fn record_published_location(&self, location: &str) -> Result<(), RuntimeError> {
        let mut all = self.published_locations()?;
        if !all.insert(location.to_string()) {
            return Ok(());
        }
        let path = self.root.join(PUBLISHED_TO_FILE);
        let tmp = self
            .root
            .join(format!(".{PUBLISHED_TO_FILE}.{}.tmp", std::process::id()));
        let text: String = all.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// `<root>/samples`: DP sample datasets (`sandbox_ingest::sample`).
    pub fn samples_dir(&self) -> PathBuf {
        self.root.join("samples")
    }

    /// The directory of a dataset's current sample
    /// (`samples/<ns>/<table>/<id>/`, named by its `CURRENT` file), if it
    /// has one. A pointer that is not a sample id is never followed, and
    /// neither is a symbolic link below `samples/`: trial runs read
    /// whatever this names as public data, so it must be a real directory
    /// inside `samples/` (the root itself may be a link to other storage).
    pub fn current_sample_dir(&self, dataset: &DatasetId) -> Option<PathBuf> {
        let root = self.samples_dir();
        let namespace = root.join(dataset.namespace());
        let base = namespace.join(dataset.table());
        let name = std::fs::read_to_string(base.join(CURRENT_VERSION_FILE)).ok()?;
        let name = name.trim();
        let valid =
            name.len() <= 64 && name.starts_with('s') && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return None;
        }
        let dir = base.join(name);
        let real_directory = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_dir());
        if ![&namespace, &base, &dir].into_iter().all(|p| real_directory(p)) {
            tracing::warn!(%dataset, "a sample path below samples/ is not a plain directory; the sample is not used");
            return None;
        }
        let inside = match (root.canonicalize(), dir.canonicalize()) {
            (Ok(root), Ok(dir)) => dir.starts_with(root),
            _ => false,
        };
        inside.then_some(dir)
    }

    /// The current sample of `dataset` (its directory, as
    /// [`DataDir::current_sample_dir`] resolves it, and its manifest) if it
    /// may be served and used: made under the sample terms of `policy`, the
    /// dataset's policy in force
    /// ([`sandbox_policy::Policy::sample_terms_digest`]). `Ok(None)`: no
    /// sample. Every route that serves a sample and every trial that reads
    /// one goes through here, so a sample made before a rule was added (or
    /// any other change to the terms) is neither.
    ///
    /// Errors: [`RuntimeError::Refused`] (`sample-stale`) for a sample made
    /// under other terms, before they were recorded, or for a dataset
    /// without a policy, naming the dataset and telling its owner to make a
    /// new one (nothing about the data); [`RuntimeError::Io`] and
    /// [`RuntimeError::Setup`] when its manifest cannot be read.
    pub fn current_sample(
        &self,
        dataset: &DatasetId,
        policy: Option<&Policy>,
    ) -> Result<Option<(PathBuf, SampleManifest)>, RuntimeError> {
        let Some(dir) = self.current_sample_dir(dataset) else {
            return Ok(None);
        };
        let path = dir.join(sandbox_ingest::sample::SAMPLE_MANIFEST);
        let bytes = std::fs::read(&path).map_err(|e| RuntimeError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let manifest: SampleManifest = serde_json::from_slice(&bytes)
            .map_err(|e| RuntimeError::Setup(format!("the sample manifest {} does not parse: {e}", path.display())))?;
        match policy {
            Some(p) if manifest.made_under(p) => Ok(Some((dir, manifest))),
            _ => Err(RuntimeError::refused(
                "sample-stale",
                sandbox_ingest::stale_sample_message(dataset),
            )),
        }
    }

    /// True when a dataset has at least one Parquet file.
    pub fn has_table(&self, dataset: &DatasetId) -> bool {
        std::fs::read_dir(self.table_dir(dataset))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .any(|e| e.path().extension().is_some_and(|x| x == "parquet"))
            })
            .unwrap_or(false)
    }
}

/// The file listing where the tables were published (`--tables`).
const PUBLISHED_TO_FILE: &str = "published-to";

/// The file naming a registered dataset's current version directory.
const CURRENT_VERSION_FILE: &str = "CURRENT";

/// `v` and at least six digits: never a path that leaves the dataset's directory.
fn is_version_name(name: &str) -> bool {
    name.strip_prefix('v')
        .is_some_and(|d| d.len() >= 6 && d.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_dataset_is_read_from_its_current_version() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::open(tmp.path()).expect("open");
        let id: DatasetId = "gov.inspections".parse().expect("id");
        let base = dir.tables_dir().join("gov/inspections");
        std::fs::create_dir_all(base.join("v000003")).expect("mkdir");
        assert_eq!(dir.table_dir(&id), base);
        std::fs::write(base.join("CURRENT"), "v000003\n").expect("pointer");
        assert_eq!(dir.table_dir(&id), base.join("v000003"));
        assert!(!dir.has_table(&id));
        std::fs::write(base.join("v000003/part-00000.parquet"), b"PAR1").expect("part");
        assert!(dir.has_table(&id));
        // A pointer that is not a version name is ignored, never followed.
        std::fs::write(base.join("CURRENT"), "../../../etc\n").expect("pointer");
        assert_eq!(dir.table_dir(&id), base);
    }

    /// Trial runs read a sample as public data: no link below `samples/`
    /// is followed, wherever it points.
    #[test]
    fn a_sample_is_a_plain_directory_inside_samples() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::open(tmp.path()).expect("open");
        let id: DatasetId = "gov.inspections".parse().expect("id");
        let base = dir.samples_dir().join("gov/inspections");
        std::fs::create_dir_all(base.join("s000001")).expect("mkdir");
        std::fs::write(base.join("CURRENT"), "s000001\n").expect("pointer");
        assert_eq!(dir.current_sample_dir(&id), Some(base.join("s000001")));
        // A sample id that is a link (to the real table, say): not a sample.
        let real = dir.tables_dir().join("gov/inspections/v000001");
        std::fs::create_dir_all(&real).expect("mkdir");
        std::os::unix::fs::symlink(&real, base.join("s-link")).expect("link");
        std::fs::write(base.join("CURRENT"), "s-link\n").expect("pointer");
        assert_eq!(dir.current_sample_dir(&id), None);
        // The dataset's own directory a link: neither.
        std::fs::write(base.join("CURRENT"), "s000001\n").expect("pointer");
        let moved = dir.samples_dir().join("gov/elsewhere");
        std::fs::rename(&base, &moved).expect("move");
        std::os::unix::fs::symlink(&moved, &base).expect("link");
        assert_eq!(dir.current_sample_dir(&id), None);
    }
}
