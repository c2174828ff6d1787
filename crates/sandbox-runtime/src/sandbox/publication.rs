//! Publishing the data directory's tables to where jobs read them
//! (`--tables`, [`crate::published`]), and removing them on withdrawal.

use super::Sandbox;
use crate::RuntimeError;
use crate::published::Publication;
use sandbox_model::DatasetId;

impl Sandbox {
    /// What the data directory holds of `dataset` now, as a publication
    /// records it ([`Publication::source`]): for a registered version, a
    /// SHA-256 of its name, data digest and registration time (from its
    /// manifest) and of its manifest file's identity (path, inode, times);
    /// for generated data, a SHA-256 of its Parquet files'
    /// identities (names, sizes, inodes, times). `None`: no data.
    ///
    /// Errors: a manifest or file that cannot be read.
    pub(crate) fn publication_source(&self, dataset: &DatasetId) -> Result<Option<String>, RuntimeError> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let layout = sandbox_ingest::DataLayout::new(self.dir.root());
        match sandbox_ingest::current_manifest(&layout, dataset).map_err(|e| RuntimeError::Setup(e.to_string()))? {
            Some(m) => {
                // The manifest's own file identity too: two registrations of
                // the same file in the same second (versions restart at
                // v000001 after a withdrawal) still differ by its inode and
                // change time.
                let manifest = self.dir.table_dir(dataset).join(sandbox_ingest::layout::MANIFEST);
                let identity = crate::multiplicity::FileFingerprint::of(std::slice::from_ref(&manifest))?.by_name();
                h.update(format!("registered\n{}\n{}\n{}\n", m.version, m.data_sha256, m.registered_at).as_bytes());
                h.update(serde_json::to_vec(&identity).map_err(|e| RuntimeError::Setup(e.to_string()))?);
            }
            None => {
                let dir = self.dir.table_dir(dataset);
                if !dir.is_dir() {
                    return Ok(None);
                }
                let files = crate::multiplicity::pinned_files(&dir)?;
                if files.is_empty() {
                    return Ok(None);
                }
                let identities = crate::multiplicity::FileFingerprint::of(&files)?.by_name();
                h.update(b"generated\n");
                h.update(serde_json::to_vec(&identities).map_err(|e| RuntimeError::Setup(e.to_string()))?);
            }
        }
        Ok(Some(hex::encode(h.finalize())))
    }

    /// Publishes `dataset`'s current version (or its unversioned, generated
    /// files) to the published tables, so jobs read it, and records the
    /// tables' location in the data directory (a withdrawal removes what
    /// was published there, with or without `--tables`). `Ok(None)`: jobs
    /// read the data directory itself (no `--tables`), or the dataset has
    /// no files to publish.
    ///
    /// Errors: [`RuntimeError::Io`] for a local file, [`RuntimeError::Setup`]
    /// for the object store (what was uploaded stays unread: the
    /// publication record is written last).
    pub async fn publish(&self, dataset: &DatasetId) -> Result<Option<Publication>, RuntimeError> {
        let Some(tables) = &self.tables else {
            return Ok(None);
        };
        let Some(source) = self.publication_source(dataset)? else {
            return Ok(None);
        };
        self.dir.record_published_location(tables.root().as_str())?;
        let version = self.dir.current_version(dataset);
        let dir = self.dir.table_dir(dataset);
        tables
            .publish(&dir, dataset, version.as_deref(), &source)
            .await
            .map(Some)
    }

    /// True when `dataset`'s current data is published (the record of its
    /// current version, of exactly this data) where jobs read it.
    ///
    /// Errors: as [`crate::PublishedTables::publication`].
    pub async fn is_published(&self, dataset: &DatasetId) -> Result<bool, RuntimeError> {
        let (Some(tables), Some(source)) = (&self.tables, self.publication_source(dataset)?) else {
            return Ok(false);
        };
        let version = self.dir.current_version(dataset);
        Ok(tables
            .current_publication(dataset, version.as_deref(), &source)
            .await?
            .is_some())
    }

    /// Publishes every dataset of the catalog that has data not published
    /// in its current form yet (or, with `again`, every one with data).
    /// Returns the datasets published.
    ///
    /// Errors: the first dataset that fails, as [`Sandbox::publish`].
    pub async fn publish_all(&self, again: bool) -> Result<Vec<DatasetId>, RuntimeError> {
        if self.tables.is_none() {
            return Ok(Vec::new());
        }
        let mut published = Vec::new();
        for entry in self.catalog().iter() {
            if !again && self.is_published(&entry.id).await? {
                continue;
            }
            if self.publish(&entry.id).await?.is_some() {
                published.push(entry.id.clone());
            }
        }
        Ok(published)
    }

    /// Removes everything published of `dataset` (after a withdrawal) from
    /// every location this data directory ever published to, and from
    /// `--tables`. Returns the number of objects removed.
    ///
    /// Errors: a recorded location that cannot be opened, or as
    /// [`crate::PublishedTables::withdraw`]; running it again finishes.
    pub async fn withdraw_published(&self, dataset: &DatasetId) -> Result<usize, RuntimeError> {
        // `--tables` first, then every recorded location; one that fails
        // (a store gone, a mount removed) does not stop the others.
        let mut removed = 0;
        let mut failures = Vec::new();
        if let Some(tables) = &self.tables {
            match tables.withdraw(dataset).await {
                Ok(n) => removed += n,
                Err(e) => failures.push(e.to_string()),
            }
        }
        for location in self.dir.published_locations()? {
            if self.tables.as_ref().is_some_and(|t| t.root().as_str() == location) {
                continue;
            }
            let outcome = match crate::PublishedTables::open(&location) {
                Ok(tables) => tables.withdraw(dataset).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(n) => removed += n,
                Err(e) => failures.push(e.to_string()),
            }
        }
        if failures.is_empty() {
            Ok(removed)
        } else {
            Err(RuntimeError::Setup(format!(
                "{removed} published objects removed, but not everywhere: {}",
                failures.join("; ")
            )))
        }
    }
}
