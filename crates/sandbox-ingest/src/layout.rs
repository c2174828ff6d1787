//! Where registered versions live, and the moves that make one current.
//!
//! ```text
//! <root>/data/<ns>/<table>/CURRENT            the current version's directory name ("v000002\n")
//! <root>/data/<ns>/<table>/v000002/           one directory per version, never changed once named
//!     part-00000.parquet                      the rows (pseudonymized keys), read by the job sessions
//!     manifest.json                           digests, row counts, owner, quality report (VersionManifest)
//!     entry.toml, policy.toml                 the catalog entry and output policy it was registered with
//! <root>/data/<ns>/<table>/.staging-<id>/     a registration in progress (removed if it fails)
//! <root>/data/<ns>/<table>/.lock              held while a registration or withdrawal runs
//! ```
//!
//! A registration writes everything into a staging directory, syncs it,
//! renames it to its version name (nothing reads it yet), records it in the
//! ledger, and only then replaces `CURRENT` (write a temporary file, sync,
//! rename: atomic on POSIX file systems). A job resolves `CURRENT` once when
//! its session is built and reads that version's directory to the end, so a
//! job that started before a new version keeps the old one; old versions
//! are kept. On an object store the same layout works without renames: a
//! version is a new prefix, `CURRENT` one small object overwritten whole.
//! A dataset without `CURRENT` (the generated demo data) is read from its
//! directory's own part files.

use crate::{IngestError, io};
use sandbox_model::DatasetId;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CURRENT: &str = "CURRENT";
pub const MANIFEST: &str = "manifest.json";
pub const ENTRY: &str = "entry.toml";
pub const POLICY: &str = "policy.toml";
pub const DATA_FILE: &str = "part-00000.parquet";
const LOCK: &str = ".lock";
pub(crate) const STAGING_PREFIX: &str = ".staging-";

/// The paths of one data directory, as the runtime lays it out
/// (`sandbox_runtime::DataDir`).
#[derive(Debug, Clone)]
pub struct DataLayout {
    root: PathBuf,
}

impl DataLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataLayout { root: root.into() }
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
    /// `<root>/data/<ns>/<table>`.
    pub fn dataset_dir(&self, dataset: &DatasetId) -> PathBuf {
        self.root.join("data").join(dataset.namespace()).join(dataset.table())
    }
}

pub(crate) fn version_name(n: u64) -> String {
    format!("v{n:06}")
}

pub(crate) fn parse_version(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('v')?;
    if digits.len() >= 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// The current version's directory name, if the dataset has one.
pub fn current_version_name(dataset_dir: &Path) -> Result<Option<String>, IngestError> {
    let path = dataset_dir.join(CURRENT);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let name = s.trim();
            if parse_version(name).is_some() {
                Ok(Some(name.to_string()))
            } else {
                Err(IngestError::Spec(format!("{} does not name a version", path.display())))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Every version directory's number (current, older, and orphans of a
/// crash between naming and making current).
pub(crate) fn version_numbers(dataset_dir: &Path) -> Result<Vec<u64>, IngestError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dataset_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dataset_dir)(e)),
    };
    for e in entries.flatten() {
        if let Some(n) = e.file_name().to_str().and_then(parse_version) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Syncs a directory so that renames inside it survive a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), IngestError> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes a file and syncs it (not atomic: for files inside a staging directory).
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), IngestError> {
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io(path))
}

/// Replaces `path` whole: a temporary file in the same directory, synced,
/// then renamed over it; the directory is synced after.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IngestError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    write_synced(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(dir)
}

/// The dataset's registration lock (an OS file lock: released when the
/// process dies, so a killed registration never blocks the next one).
pub(crate) struct DatasetLock {
    _file: std::fs::File,
}

impl DatasetLock {
    pub(crate) fn acquire(dataset_dir: &Path, dataset: &DatasetId) -> Result<Self, IngestError> {
        std::fs::create_dir_all(dataset_dir).map_err(io(dataset_dir))?;
        let path = dataset_dir.join(LOCK);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(DatasetLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(IngestError::Busy(format!(
                "another registration or withdrawal of {dataset} is running; try again when it ends"
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
        }
    }
}

/// Removes what a killed registration left (staging directories, and
/// versions newer than the current one that were never made current).
/// Runs under the dataset's lock.
pub(crate) fn clean_leftovers(dataset_dir: &Path) -> Result<(), IngestError> {
    let current = current_version_name(dataset_dir)?.and_then(|n| parse_version(&n));
    let entries = match std::fs::read_dir(dataset_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dataset_dir)(e)),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let orphan = match parse_version(&name) {
            Some(n) => current.is_none_or(|c| n > c),
            None => name.starts_with(STAGING_PREFIX),
        };
        if orphan {
            tracing::info!(dir = %e.path().display(), "removing what an interrupted registration left");
            std::fs::remove_dir_all(e.path()).map_err(io(&e.path()))?;
        }
    }
    Ok(())
}

/// Removes Parquet files lying directly in the dataset's directory: the
/// generated (unversioned, not pseudonymized) data a first registration
/// replaces. Returns how many were removed.
pub(crate) fn remove_unversioned_parts(dataset_dir: &Path) -> Result<usize, IngestError> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dataset_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(dataset_dir)(e)),
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_file() && p.extension().is_some_and(|x| x == "parquet") {
            std::fs::remove_file(&p).map_err(io(&p))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dataset_dir)?;
    }
    Ok(removed)
}
