//! Publishing the data directory's tables to where jobs read them
//! (`--tables`, [`crate::published`]), and removing them on withdrawal.

use super::Sandbox;
use crate::RuntimeError;
use crate::published::Publication;
use sandbox_model::DatasetId;

impl Sandbox {
    /// Publishes `dataset`'s current version (or its unversioned, generated
    /// files) to the published tables, so jobs read it. `Ok(None)`: jobs
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
        let version = self.dir.current_version(dataset);
        let dir = self.dir.table_dir(dataset);
        if crate::multiplicity::pinned_files(&dir).map_or(true, |files| files.is_empty()) {
            return Ok(None);
        }
        tables.publish(&dir, dataset, version.as_deref()).await.map(Some)
    }

    /// Publishes every dataset of the catalog that has files and is not
    /// published in its current version yet (or, with `again`, every one).
    /// Returns the datasets published.
    ///
    /// Errors: the first dataset that fails, as [`Sandbox::publish`].
    pub async fn publish_all(&self, again: bool) -> Result<Vec<DatasetId>, RuntimeError> {
        let Some(tables) = &self.tables else {
            return Ok(Vec::new());
        };
        let mut published = Vec::new();
        for entry in self.catalog().iter() {
            let version = self.dir.current_version(&entry.id);
            let current = tables.publication(&entry.id, version.as_deref()).await?;
            if current.is_some() && !again {
                continue;
            }
            if self.publish(&entry.id).await?.is_some() {
                published.push(entry.id.clone());
            }
        }
        Ok(published)
    }

    /// Removes everything published of `dataset` (after a withdrawal).
    /// Returns the number of objects removed (0 without `--tables`).
    ///
    /// Errors: as [`crate::PublishedTables::withdraw`].
    pub async fn withdraw_published(&self, dataset: &DatasetId) -> Result<usize, RuntimeError> {
        match &self.tables {
            Some(tables) => tables.withdraw(dataset).await,
            None => Ok(0),
        }
    }
}
