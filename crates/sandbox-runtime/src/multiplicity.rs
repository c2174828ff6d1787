//! Verifying the catalog's declared row multiplicities
//! (`max_rows_per_value`) on exactly the files a job scans, before the
//! planner relies on them.
//!
//! A declaration such as `credit_code = 24` lets the planner prove that a
//! query's contribution bounding cannot bind and skip the per-unit stage
//! (`sandbox_sql::multiplicity`). The declaration is public (it is in the
//! catalog entry), so the plan chosen from it reveals nothing; but a wrong
//! declaration would let a unit contribute more than the noise is
//! calibrated for, so it is used only once it has been checked on what the
//! job reads:
//!
//! * the job's files are pinned when its session is built
//!   ([`pinned_files`]: the regular `*.parquet` files directly in the
//!   version's directory; symbolic links, subdirectories and hidden files
//!   are neither read nor counted), and the session scans only those;
//! * the count runs through the job's own table provider
//!   (`sandbox_sql::multiplicity::count_max_rows_per_value`), so values are
//!   counted after the cast to the catalog's type, as a join sees them;
//! * the result is cached under `<data dir>/cache/verified/` keyed by each
//!   file's path, size, inode, device and modification and change times
//!   (a file rewritten in place changes its change time, which a user
//!   cannot set back), by the declarations, and by [`scan_digest`]: what
//!   the count read the files through (the catalog's column types, the
//!   desensitization rules the scan applies) and the whole effective
//!   policy. A rule added later (a mask under which several districts
//!   share one value) changes what a value *is*, so a bound verified
//!   before it is never reused: the next job counts again.

use crate::RuntimeError;
use sandbox_policy::Policy;
use sandbox_sql::session::TableBinding;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The files a job reads of one table directory: the regular files named
/// `<something>.parquet` directly in it, sorted. Symbolic links,
/// directories and names starting with `.` are left out.
///
/// Errors: [`RuntimeError::Io`] when the directory cannot be listed.
pub(crate) fn pinned_files(dir: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
    visible_regular_files(dir, |name| name.ends_with(".parquet"))
}

/// The regular files directly in `dir` whose names `keep` accepts, sorted;
/// symbolic links, directories, names that are not UTF-8 and names
/// starting with `.` are left out.
///
/// Errors: [`RuntimeError::Io`] when the directory cannot be listed.
pub(crate) fn visible_regular_files(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, RuntimeError> {
    let io = |e| RuntimeError::Io {
        path: dir.display().to_string(),
        source: e,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let regular = entry.file_type().map_err(io)?.is_file();
        if regular && !name.starts_with('.') && keep(name) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// One file's identity: path, size, inode, device, modification and
/// change times (nanoseconds).
type FileIdentity = (String, u64, u64, u64, i128, i128);

/// The identities of a job's pinned files: local files by path, size,
/// inode, device and times; published objects
/// ([`crate::published`]) by their pins: URL, size, ETag, object version
/// and, on a file system, change time. (A cache written before objects were supported
/// does not parse as this, and is counted again.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FileFingerprint {
    Local(Vec<FileIdentity>),
    Objects(Vec<sandbox_sql::storage::ObjectPin>),
}

impl FileFingerprint {
    /// The same identities with each path reduced to its file name, so the
    /// value does not depend on how the directory's path is spelled (a
    /// symbolic link, `./`).
    pub(crate) fn by_name(self) -> Self {
        match self {
            FileFingerprint::Local(files) => FileFingerprint::Local(
                files
                    .into_iter()
                    .map(|(path, size, ino, dev, mtime, ctime)| {
                        let name = Path::new(&path)
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or(path);
                        (name, size, ino, dev, mtime, ctime)
                    })
                    .collect(),
            ),
            other => other,
        }
    }

    /// Errors: [`RuntimeError::Io`] for a file that is gone or is no
    /// longer a regular file.
    pub(crate) fn of(files: &[PathBuf]) -> Result<Self, RuntimeError> {
        let mut out = Vec::with_capacity(files.len());
        for path in files {
            let meta = std::fs::symlink_metadata(path).map_err(|e| RuntimeError::Io {
                path: path.display().to_string(),
                source: e,
            })?;
            if !meta.file_type().is_file() {
                return Err(RuntimeError::Io {
                    path: path.display().to_string(),
                    source: std::io::Error::other("not a regular file"),
                });
            }
            let nanos = |s: i64, ns: i64| i128::from(s) * 1_000_000_000 + i128::from(ns);
            out.push((
                path.display().to_string(),
                meta.len(),
                meta.ino(),
                meta.dev(),
                nanos(meta.mtime(), meta.mtime_nsec()),
                nanos(meta.ctime(), meta.ctime_nsec()),
            ));
        }
        Ok(FileFingerprint::Local(out))
    }
}

/// SHA-256 (hex) of everything besides the files that a count of rows per
/// value depends on: the dataset, its columns and types as bound (values
/// are counted after the cast to the catalog's type), the desensitization
/// rules its scan applies (values are counted coarsened), and the
/// effective digest of its policy in force (`""` without one), so that
/// any policy change, not only a rule, forces a recount.
pub(crate) fn scan_digest(binding: &TableBinding, policy: Option<&Policy>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(binding.dataset.as_str().as_bytes());
    h.update([0]);
    for field in binding.schema.fields() {
        h.update(format!("{}:{}\n", field.name(), field.data_type()).as_bytes());
    }
    h.update([0]);
    // JSON of the rules: floats in their shortest round-trip form.
    h.update(
        serde_json::to_string(&binding.desensitize)
            .unwrap_or_default()
            .as_bytes(),
    );
    h.update([0]);
    h.update(policy.map(Policy::effective_digest).unwrap_or_default().as_bytes());
    hex::encode(h.finalize())
}

/// What verification found for one set of files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Verification {
    pub files: FileFingerprint,
    /// [`scan_digest`] of the binding and policy the count ran under (a
    /// cache written before it was recorded has none, and matches nothing).
    #[serde(default)]
    pub scan: String,
    /// The declarations checked.
    pub declared: BTreeMap<String, u64>,
    /// The declarations that hold: column → declared bound.
    pub holds: BTreeMap<String, u64>,
    /// The declarations that do not, with the largest count found (for the
    /// owner's log; never shown to analysts).
    pub violated: BTreeMap<String, u64>,
    /// Declared single columns that hold no NULL (a cache written before
    /// this was counted has none: no column is taken as NULL-free).
    #[serde(default)]
    pub null_free: std::collections::BTreeSet<String>,
}

impl Verification {
    /// Compares `declared` with `counted` (column → most rows per value).
    pub(crate) fn new(
        files: FileFingerprint,
        scan: String,
        declared: &BTreeMap<String, u64>,
        counted: &BTreeMap<String, u64>,
        nulls: &BTreeMap<String, u64>,
    ) -> Self {
        let mut holds = BTreeMap::new();
        let mut violated = BTreeMap::new();
        for (column, &bound) in declared {
            match counted.get(column) {
                Some(&most) if most <= bound => {
                    holds.insert(column.clone(), bound);
                }
                Some(&most) => {
                    violated.insert(column.clone(), most);
                }
                None => {
                    violated.insert(column.clone(), u64::MAX);
                }
            }
        }
        Verification {
            files,
            scan,
            declared: declared.clone(),
            holds,
            violated,
            null_free: nulls.iter().filter(|(_, n)| **n == 0).map(|(c, _)| c.clone()).collect(),
        }
    }
}

/// The cached verification for these files, this [`scan_digest`] and
/// these declarations, if any.
pub(crate) fn cached(
    cache: &Path,
    files: &FileFingerprint,
    scan: &str,
    declared: &BTreeMap<String, u64>,
) -> Option<Verification> {
    let cached: Verification = serde_json::from_slice(&std::fs::read(cache).ok()?).ok()?;
    let same = &cached.files == files && !cached.scan.is_empty() && cached.scan == scan && &cached.declared == declared;
    same.then_some(cached)
}

/// Best effort: a cache that cannot be written only costs a recount. The
/// temporary name is unique per process and call, so concurrent jobs never
/// write one file.
pub(crate) fn store(cache: &Path, verification: &Verification) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Some(parent) = cache.parent() else { return };
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = cache.with_extension(format!("{}-{n}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(parent)?;
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(verification).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, cache)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(cache = %cache.display(), error = %e, "cannot cache the multiplicity verification");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_visible_parquet_files_are_pinned() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        for name in ["b.parquet", "a.parquet", ".parquet", ".hidden.parquet", "notes.txt"] {
            std::fs::write(d.join(name), b"x").expect("write");
        }
        std::fs::create_dir_all(d.join("x=1")).expect("dir");
        std::fs::write(d.join("x=1").join("c.parquet"), b"x").expect("write");
        std::os::unix::fs::symlink(d.join("a.parquet"), d.join("link.parquet")).expect("link");
        let pinned = pinned_files(d).expect("listed");
        assert_eq!(pinned, vec![d.join("a.parquet"), d.join("b.parquet")]);
    }

    #[test]
    fn a_file_rewritten_in_place_changes_the_fingerprint() {
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("a.parquet");
        std::fs::write(&f, b"abcd").expect("write");
        let before = FileFingerprint::of(std::slice::from_ref(&f)).expect("fingerprint");
        std::thread::sleep(std::time::Duration::from_millis(20));
        // Same size; the modification time set back to what it was.
        let modified = std::fs::metadata(&f).and_then(|m| m.modified()).expect("mtime");
        std::fs::write(&f, b"dcba").expect("rewrite");
        std::fs::File::options()
            .write(true)
            .open(&f)
            .and_then(|file| file.set_modified(modified))
            .expect("set mtime");
        let after = FileFingerprint::of(std::slice::from_ref(&f)).expect("fingerprint");
        assert_ne!(before, after, "the change time moved");
    }

    #[test]
    fn declarations_hold_or_are_reported_and_the_cache_matches_files_and_declarations() {
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("a.parquet");
        std::fs::write(&f, b"x").expect("write");
        let files = FileFingerprint::of(std::slice::from_ref(&f)).expect("fingerprint");
        let declared: BTreeMap<String, u64> = [("credit_code".to_string(), 2), ("year".to_string(), 2)].into();
        let counted: BTreeMap<String, u64> = [("credit_code".to_string(), 2), ("year".to_string(), 3)].into();
        let nulls: BTreeMap<String, u64> = [("credit_code".to_string(), 0), ("year".to_string(), 4)].into();
        let v = Verification::new(files.clone(), "scan-a".into(), &declared, &counted, &nulls);
        assert_eq!(v.holds, [("credit_code".to_string(), 2)].into());
        assert_eq!(v.violated, [("year".to_string(), 3)].into());
        assert_eq!(v.null_free, ["credit_code".to_string()].into());
        // A cache from before NULLs were counted takes no column as NULL-free.
        let mut older = serde_json::to_value(&v).expect("json");
        older.as_object_mut().expect("object").remove("null_free");
        let older: Verification = serde_json::from_value(older).expect("older cache");
        assert!(older.null_free.is_empty());
        let cache = dir.path().join("cache").join("v.json");
        store(&cache, &v);
        assert_eq!(cached(&cache, &files, "scan-a", &declared), Some(v.clone()));
        let other: BTreeMap<String, u64> = [("credit_code".to_string(), 1)].into();
        assert_eq!(cached(&cache, &files, "scan-a", &other), None);
        // Another binding or policy (a rule added): counted again.
        assert_eq!(cached(&cache, &files, "scan-b", &declared), None);
        // A cache written before the scan digest was recorded matches nothing.
        let mut old = serde_json::to_value(&v).expect("json");
        old.as_object_mut().expect("object").remove("scan");
        std::fs::write(&cache, serde_json::to_vec(&old).expect("json")).expect("write");
        assert_eq!(cached(&cache, &files, "", &declared), None);
        store(&cache, &v);
        std::fs::write(&f, b"xy").expect("write");
        let changed = FileFingerprint::of(std::slice::from_ref(&f)).expect("fingerprint");
        assert_eq!(cached(&cache, &changed, "scan-a", &declared), None);
    }
}
