//! Tables published to an object store (`sandbox --tables s3://bucket/prefix`):
//! where jobs read the datasets when the data directory's own files are
//! not where the executors are.
//!
//! The data directory stays the owner's record: a registration writes and
//! checks a version there as always, then *publishes* it — uploads the
//! version's files, then its publication record, then the dataset's
//! `CURRENT` object:
//!
//! ```text
//! <prefix>/<ns>/<table>/v000002/part-00000.parquet   the version's files, as registered
//! <prefix>/<ns>/<table>/v000002/manifest.json, entry.toml, policy.toml
//! <prefix>/<ns>/<table>/v000002/_published.json      the publication record, written last
//! <prefix>/<ns>/<table>/CURRENT                      "v000002" (for other readers)
//! <prefix>/<ns>/<table>/part-*.parquet, _published.json   unversioned (generated) data
//! ```
//!
//! A job reads the version the data directory's `CURRENT` names (so the
//! catalog entry and policy in force always match the data read), and only
//! the Parquet files its publication record lists, each with the size and
//! entity tag (ETag) recorded when it was uploaded: a version whose record
//! is missing (not published yet, or an upload cut short) is not read, and
//! an object changed since it was published is refused rather than read.
//! The same identities key the cache of verified row bounds
//! ([`crate::multiplicity`]), in place of a local file's inode and times.

use crate::RuntimeError;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sandbox_model::DatasetId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use url::Url;

/// The publication record's object name, in the version's prefix.
pub const PUBLICATION: &str = "_published.json";
/// The dataset's current-version object, as in the data directory.
const CURRENT: &str = "CURRENT";
/// Files at least this large are uploaded in parts (object stores limit a
/// single PUT; S3 to 5 GiB).
const MULTIPART_FROM_BYTES: u64 = 32 << 20;
/// The size of one uploaded part and of one read from the local file.
const PART_BYTES: usize = 16 << 20;

/// Published tables: an object store and the prefix under which datasets
/// are laid out.
#[derive(Debug, Clone)]
pub struct PublishedTables {
    /// `s3://bucket/prefix/` (or `file:///dir/`), always with a final `/`.
    root: Url,
    prefix: ObjectPath,
    store: Arc<dyn ObjectStore>,
}

/// One object as published and as pinned by a job: key, size and ETag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedObject {
    /// The file's name in its version's prefix.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// The store's entity tag when it was uploaded (`None`: the store gives
    /// none, and the object's last-modified time is compared instead).
    pub e_tag: Option<String>,
    /// The store's object version, where the bucket keeps versions.
    pub version: Option<String>,
    /// Last modification, in nanoseconds since the epoch.
    pub last_modified_ns: i64,
    /// A `file://` store's change time (nanoseconds): a file system's ETag
    /// is its inode, modification time and size, which an in-place rewrite
    /// that sets the modification time back leaves unchanged; its change
    /// time moves. `None` for other stores.
    #[serde(default)]
    pub changed_ns: Option<i64>,
}

impl PublishedObject {
    /// The pin every read of this object (at `url`) is held to.
    pub fn pin(&self, url: String) -> sandbox_sql::storage::ObjectPin {
        sandbox_sql::storage::ObjectPin {
            url,
            size: self.size,
            e_tag: self.e_tag.clone(),
            version: self.version.clone(),
            last_modified_ns: self.last_modified_ns,
            changed_ns: self.changed_ns,
        }
    }
}

/// The publication record of one dataset version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    pub dataset: String,
    /// `v000002`, or `None` for unversioned (generated) data.
    pub version: Option<String>,
    /// RFC 3339.
    pub published_at: String,
    /// What was published, as the data directory knows it
    /// ([`crate::Sandbox::publish`]: the registered version's data digest
    /// and registration time, or a digest of the generated files'
    /// identities). A job reads a publication only if this is what the
    /// data directory holds now, so a copy left from an earlier
    /// registration that had the same version name (versions are numbered
    /// anew after a withdrawal) or from another data directory sharing the
    /// prefix is never read. A record without one matches nothing.
    #[serde(default)]
    pub source: String,
    pub files: Vec<PublishedObject>,
}

/// A table pinned for one job: its location and its Parquet objects' pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedTable {
    /// The version's prefix as a URL, with a final `/`.
    pub location: String,
    /// Sorted by URL.
    pub files: Vec<sandbox_sql::storage::ObjectPin>,
}

/// Objects checked at once when a table is pinned.
const HEAD_CONCURRENCY: usize = 16;

/// The largest publication record read (a record lists a version's files:
/// kilobytes).
const MAX_RECORD_BYTES: u64 = 4 << 20;

fn storage_error(what: &str, location: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Setup(format!("published tables: cannot {what} {location}: {e}"))
}

impl PublishedTables {
    /// Opens the published tables at `location` (`s3://bucket[/prefix]`, or
    /// `file:///absolute/dir` for a shared file system through the same
    /// code). No request is made: a wrong endpoint or missing credentials
    /// show at the first read or publication.
    ///
    /// Errors: [`RuntimeError::Setup`] for a location that does not parse, a
    /// scheme other than `s3` or `file`, or an S3 configuration the
    /// environment leaves incomplete.
    pub fn open(location: &str) -> Result<Self, RuntimeError> {
        // The text is not repeated: it may hold a credential.
        let mut root = Url::parse(location.trim()).map_err(|e| {
            RuntimeError::Setup(format!(
                "--tables: not a URL ({e}); use s3://bucket/prefix or file:///dir"
            ))
        })?;
        if !sandbox_sql::storage::TABLE_SCHEMES.contains(&root.scheme()) {
            return Err(RuntimeError::Setup(format!(
                "--tables {}: tables are published to s3:// or file:// locations",
                sandbox_sql::storage::redacted(&root)
            )));
        }
        if !root.username().is_empty() || root.password().is_some() || root.query().is_some() {
            return Err(RuntimeError::Setup(
                "--tables: give S3 credentials in the environment (AWS_ACCESS_KEY_ID, …), never in the URL".into(),
            ));
        }
        match root.scheme() {
            "s3" if root.host_str().is_none_or(str::is_empty) => {
                return Err(RuntimeError::Setup(
                    "--tables s3://: name the bucket (s3://bucket/prefix)".into(),
                ));
            }
            "file" => {
                let local = root
                    .to_file_path()
                    .ok()
                    .filter(|_| root.host_str().is_none_or(|h| h.is_empty() || h == "localhost"));
                let Some(local) = local else {
                    return Err(RuntimeError::Setup(format!(
                        "--tables {root}: a file:// location is an absolute path on this machine (file:///dir)"
                    )));
                };
                if !local.is_dir() {
                    return Err(RuntimeError::Setup(format!(
                        "--tables {root}: no such directory (create it, or mount the shared file system there)"
                    )));
                }
            }
            _ => {}
        }
        if !root.path().ends_with('/') {
            let path = format!("{}/", root.path());
            root.set_path(&path);
        }
        let store = sandbox_sql::storage::table_stores()
            .store_for(&root)
            .map_err(|e| RuntimeError::Setup(format!("--tables: {e}")))?;
        // Keys are the URL's path (a `file://` store is rooted at `/`).
        let prefix =
            ObjectPath::from_url_path(root.path()).map_err(|e| RuntimeError::Setup(format!("--tables {root}: {e}")))?;
        Ok(PublishedTables { root, prefix, store })
    }

    /// Lists the location once, with a client of its own on a runtime of its
    /// own (so it may be called from synchronous start-up code, inside or
    /// outside an async runtime), to fail at start rather than leave every
    /// table of every job missing.
    ///
    /// Errors: [`RuntimeError::Setup`] naming the location when it cannot
    /// be listed within `timeout` (a wrong endpoint, a missing bucket, no
    /// credentials or no permission), with the store's reason.
    pub fn check_reachable(&self, timeout: std::time::Duration) -> Result<(), RuntimeError> {
        let (root, prefix) = (self.root.clone(), self.prefix.clone());
        let fail = |why: String| {
            RuntimeError::Setup(format!(
                "--tables {root}: cannot list it ({why}); check the bucket and the AWS_* settings"
            ))
        };
        let outcome = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime.block_on(async {
                        let store = sandbox_sql::storage::unshared_store_for(&root).map_err(|e| e.to_string())?;
                        match tokio::time::timeout(timeout, store.list_with_delimiter(Some(&prefix))).await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err(format!("no answer in {timeout:?}")),
                        }
                    })
                })
                .join()
                .unwrap_or_else(|_| Err("the check stopped".into()))
        });
        outcome.map_err(fail)
    }

    /// The location as given (with a final `/`).
    pub fn root(&self) -> &Url {
        &self.root
    }

    fn dataset_prefix(&self, dataset: &DatasetId) -> ObjectPath {
        self.prefix.clone().join(dataset.namespace()).join(dataset.table())
    }

    fn version_prefix(&self, dataset: &DatasetId, version: Option<&str>) -> ObjectPath {
        let base = self.dataset_prefix(dataset);
        match version {
            Some(v) => base.join(v),
            None => base,
        }
    }

    fn url_of(&self, path: &ObjectPath) -> String {
        let mut url = self.root.clone();
        url.set_path(&format!("/{path}"));
        url.to_string()
    }

    /// The publication record of `dataset`'s `version`, if it was published.
    ///
    /// Errors: [`RuntimeError::Setup`] when the store cannot be read or the
    /// record does not parse or names another dataset or version.
    pub async fn publication(
        &self,
        dataset: &DatasetId,
        version: Option<&str>,
    ) -> Result<Option<Publication>, RuntimeError> {
        let path = self.version_prefix(dataset, version).join(PUBLICATION);
        let location = self.url_of(&path);
        let bytes = match self.store.get(&path).await {
            Ok(got) if got.meta.size > MAX_RECORD_BYTES => {
                return Err(storage_error(
                    "read",
                    &location,
                    format!(
                        "{} bytes; a publication record is at most {MAX_RECORD_BYTES}",
                        got.meta.size
                    ),
                ));
            }
            Ok(got) => got.bytes().await.map_err(|e| storage_error("read", &location, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(storage_error("read", &location, e)),
        };
        let record: Publication =
            serde_json::from_slice(&bytes).map_err(|e| storage_error("parse the publication record", &location, e))?;
        if record.dataset != dataset.as_str() || record.version.as_deref() != version {
            return Err(storage_error(
                "use",
                &location,
                format!(
                    "it records {} {}",
                    record.dataset,
                    record.version.as_deref().unwrap_or("(unversioned)")
                ),
            ));
        }
        Ok(Some(record))
    }

    /// The publication record of `dataset`'s `version` if it publishes
    /// `source` (what the data directory holds now; see
    /// [`Publication::source`]); a record of anything else is not this
    /// version's publication.
    ///
    /// Errors: as [`PublishedTables::publication`].
    pub async fn current_publication(
        &self,
        dataset: &DatasetId,
        version: Option<&str>,
        source: &str,
    ) -> Result<Option<Publication>, RuntimeError> {
        let record = self.publication(dataset, version).await?;
        Ok(record.filter(|r| {
            let current = !source.is_empty() && r.source == source;
            if !current {
                tracing::info!(%dataset, "the published copy is of another registration or data directory: not read until published again");
            }
            current
        }))
    }

    /// Pins `dataset`'s `version` (holding `source`) for one job: the
    /// Parquet objects its publication record lists, each checked to be the
    /// object uploaded (same size, ETag, object version and, on a file
    /// system, change time; the modification time where the store gives no
    /// ETag). `Ok(None)`: not published, or published from other data.
    ///
    /// Errors: [`RuntimeError::Setup`] when the store cannot be read, the
    /// record lists a name that is not one plain key segment, or an object
    /// is missing or was changed after it was published (naming the
    /// object, never its contents).
    pub async fn pin(
        &self,
        dataset: &DatasetId,
        version: Option<&str>,
        source: &str,
    ) -> Result<Option<PinnedTable>, RuntimeError> {
        let Some(record) = self.current_publication(dataset, version, source).await? else {
            return Ok(None);
        };
        use futures::{StreamExt, TryStreamExt};
        let prefix = self.version_prefix(dataset, version);
        if let Some(bad) = record.files.iter().find(|f| !is_publishable_name(&f.name)) {
            return Err(storage_error(
                "use",
                &self.url_of(&prefix),
                format!("the record lists a file named {:?}", bad.name),
            ));
        }
        let parts = record.files.into_iter().filter(|f| f.name.ends_with(".parquet"));
        let check = |published: PublishedObject| {
            let path = prefix.clone().join(published.name.as_str());
            let location = self.url_of(&path);
            async move {
                let meta = self
                    .store
                    .head(&path)
                    .await
                    .map_err(|e| storage_error("read", &location, e))?;
                let now = self.identity(published.name.clone(), &meta);
                if !same_object(&published, &now) {
                    return Err(storage_error(
                        "use",
                        &location,
                        "the object changed after it was published (publish the version again)",
                    ));
                }
                Ok(now.pin(location))
            }
        };
        // Checked HEAD_CONCURRENCY at a time: one round trip per object.
        let mut files: Vec<sandbox_sql::storage::ObjectPin> = futures::stream::iter(parts)
            .map(check)
            .buffered(HEAD_CONCURRENCY)
            .try_collect()
            .await?;
        files.sort_by(|a, b| a.url.cmp(&b.url));
        let mut location = self.url_of(&prefix);
        location.push('/');
        Ok(Some(PinnedTable { location, files }))
    }

    /// Publishes the files of one local version directory (`dir`): every
    /// regular, visible file directly in it (its Parquet files, and the
    /// manifest, entry and policy of a registered version) is uploaded,
    /// then the publication record listing them, then (for a version) the
    /// dataset's `CURRENT`. A publication cut short leaves no record, so
    /// nothing of it is read; publishing again uploads everything anew.
    ///
    /// Errors: [`RuntimeError::Io`] for a local file; [`RuntimeError::Setup`]
    /// for the store.
    pub async fn publish(
        &self,
        dir: &std::path::Path,
        dataset: &DatasetId,
        version: Option<&str>,
        source: &str,
    ) -> Result<Publication, RuntimeError> {
        let prefix = self.version_prefix(dataset, version);
        let mut files = Vec::new();
        for local in publishable_files(dir)? {
            let name = local
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
                .unwrap_or_default();
            let path = prefix.clone().join(name.as_str());
            self.upload(&local, &path).await?;
            // The identity is read back rather than taken from the PUT's
            // answer: a store's ETag for a multipart upload is only final
            // once the upload is complete, and what jobs compare is `head`.
            let meta = self
                .store
                .head(&path)
                .await
                .map_err(|e| storage_error("read", &self.url_of(&path), e))?;
            files.push(self.identity(name, &meta));
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let record = Publication {
            dataset: dataset.to_string(),
            version: version.map(str::to_string),
            published_at: sandbox_governance::db::now(),
            source: source.to_string(),
            files,
        };
        let record_path = prefix.join(PUBLICATION);
        let body = serde_json::to_vec_pretty(&record).map_err(|e| RuntimeError::Setup(e.to_string()))?;
        self.store
            .put(&record_path, PutPayload::from(body))
            .await
            .map_err(|e| storage_error("write", &self.url_of(&record_path), e))?;
        if let Some(v) = version {
            let base = self.dataset_prefix(dataset);
            let current = base.clone().join(CURRENT);
            self.store
                .put(&current, PutPayload::from(format!("{v}\n").into_bytes()))
                .await
                .map_err(|e| storage_error("write", &self.url_of(&current), e))?;
            // Generated files published before the dataset was registered
            // are never read again: they go.
            let listing = self
                .store
                .list_with_delimiter(Some(&base))
                .await
                .map_err(|e| storage_error("list", &self.url_of(&base), e))?;
            for object in listing.objects {
                let name = object.location.filename().unwrap_or_default();
                if name != CURRENT && !name.starts_with('.') {
                    self.store
                        .delete(&object.location)
                        .await
                        .map_err(|e| storage_error("delete", &self.url_of(&object.location), e))?;
                }
            }
        }
        tracing::info!(%dataset, version = version.unwrap_or("(unversioned)"), files = record.files.len(), root = %self.root, "dataset published");
        Ok(record)
    }

    async fn upload(&self, local: &std::path::Path, path: &ObjectPath) -> Result<(), RuntimeError> {
        use tokio::io::AsyncReadExt;
        let io = |e| RuntimeError::Io {
            path: local.display().to_string(),
            source: e,
        };
        let location = self.url_of(path);
        let mut file = tokio::fs::File::open(local).await.map_err(io)?;
        let size = file.metadata().await.map_err(io)?.len();
        if size < MULTIPART_FROM_BYTES {
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            file.read_to_end(&mut bytes).await.map_err(io)?;
            self.store
                .put(path, PutPayload::from(bytes))
                .await
                .map_err(|e| storage_error("write", &location, e))?;
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(|e| storage_error("write", &location, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; PART_BYTES];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(io(e));
                }
            };
            if n == 0 {
                break;
            }
            writer
                .wait_for_capacity(4)
                .await
                .map_err(|e| storage_error("write", &location, e))?;
            writer.write(&buf[..n]);
        }
        writer
            .finish()
            .await
            .map_err(|e| storage_error("write", &location, e))?;
        Ok(())
    }

    /// Removes everything published of `dataset` (every version, its
    /// records and `CURRENT`), as a withdrawal does locally. Returns the
    /// number of objects deleted.
    ///
    /// Errors: [`RuntimeError::Setup`] when the store cannot be listed or an
    /// object cannot be deleted (what was deleted stays deleted; running it
    /// again finishes).
    pub async fn withdraw(&self, dataset: &DatasetId) -> Result<usize, RuntimeError> {
        use futures::TryStreamExt;
        let prefix = self.dataset_prefix(dataset);
        let location = self.url_of(&prefix);
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| storage_error("list", &location, e))?;
        // Records and pointers first: nothing is read once they are gone.
        let mut paths: Vec<ObjectPath> = objects.into_iter().map(|m| m.location).collect();
        paths.sort_by_key(|p| {
            let name = p.filename().unwrap_or_default();
            !(name == PUBLICATION || name == CURRENT)
        });
        for path in &paths {
            match self.store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(storage_error("delete", &self.url_of(path), e)),
            }
        }
        Ok(paths.len())
    }
}

impl PublishedTables {
    /// An object's identity as the store reports it, with a file system's
    /// change time for a `file://` store.
    fn identity(&self, name: String, meta: &object_store::ObjectMeta) -> PublishedObject {
        let changed_ns = (self.root.scheme() == "file")
            .then(|| {
                use std::os::unix::fs::MetadataExt;
                let mut url = self.root.clone();
                url.set_path(&format!("/{}", meta.location));
                let local = url.to_file_path().ok()?;
                let m = std::fs::symlink_metadata(local).ok()?;
                Some(m.ctime().saturating_mul(1_000_000_000).saturating_add(m.ctime_nsec()))
            })
            .flatten();
        PublishedObject {
            name,
            size: meta.size,
            e_tag: meta.e_tag.clone(),
            version: meta.version.clone(),
            last_modified_ns: meta.last_modified.timestamp_nanos_opt().unwrap_or(i64::MIN),
            changed_ns,
        }
    }
}

/// The object read now is the object published: same size, and the same
/// ETag (and version, where kept), or the same modification time where the
/// store gives no ETag.
fn same_object(published: &PublishedObject, now: &PublishedObject) -> bool {
    published.size == now.size
        && published.version == now.version
        && published.changed_ns == now.changed_ns
        && match (&published.e_tag, &now.e_tag) {
            (Some(a), Some(b)) => a == b,
            (None, None) => published.last_modified_ns == now.last_modified_ns,
            _ => false,
        }
}

/// A name that is one object key segment as written: ASCII letters,
/// digits, `.`, `_` and `-`, not hidden, at most 255 bytes. (Other
/// characters are percent-encoded in keys, so a URL could name another key
/// than the record.)
fn is_publishable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The regular, visible files directly in `dir`, sorted (the same rule as
/// [`crate::multiplicity::pinned_files`] for Parquet files, plus a
/// version's manifest, entry and policy).
fn publishable_files(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, RuntimeError> {
    let files = crate::multiplicity::visible_regular_files(dir, |name| name != PUBLICATION)?;
    if let Some(name) = files
        .iter()
        .filter_map(|f| f.file_name().and_then(|n| n.to_str()))
        .find(|n| !is_publishable_name(n))
    {
        return Err(RuntimeError::Setup(format!(
            "{}: cannot publish a file named {name:?} (letters, digits, '.', '_' and '-' only)",
            dir.display()
        )));
    }
    Ok(files)
}

#[cfg(test)]
mod tests;
