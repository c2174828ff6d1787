//! Where a job's tables are read from: local files (`file://`) or an
//! S3-compatible object store (`s3://<bucket>/…`), resolved the same way by
//! the coordinator's sessions and by every executor of a cluster.
//!
//! An `s3://<bucket>` store is built on first use from the *reading
//! process's own* environment, with `object_store`'s
//! [`AmazonS3Builder::from_env`]: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or
//! `AWS_DEFAULT_REGION`), `AWS_ENDPOINT` for a store other than AWS (MinIO,
//! Ceph RGW, a city's cloud), `AWS_ALLOW_HTTP=true` for a plain-HTTP
//! endpoint. Credentials therefore never travel in a plan: a physical plan
//! names `s3://bucket/key` and each executor reads it with its own keys.
//! No other scheme is read.

use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use std::sync::{Arc, Mutex, OnceLock};
use url::Url;

/// The schemes a table location may use.
pub const TABLE_SCHEMES: [&str; 2] = ["file", "s3"];

/// The object-store registry of every session in this process: `file://`
/// for local files, and one S3 client per `s3://<bucket>`, built on first
/// use from the environment (see the module docs) and then shared by every
/// job, so connections are pooled.
#[derive(Debug, Default)]
pub struct TableStores {
    stores: DefaultObjectStoreRegistry,
    /// Held while a bucket's client is built, so two jobs never build two.
    building: Mutex<()>,
}

/// The process's [`TableStores`].
pub fn table_stores() -> Arc<TableStores> {
    static STORES: OnceLock<Arc<TableStores>> = OnceLock::new();
    STORES.get_or_init(|| Arc::new(TableStores::default())).clone()
}

impl TableStores {
    /// The store for `url` (`file:///…` or `s3://bucket/…`).
    ///
    /// Errors: another scheme, an `s3` URL without a bucket, or an S3
    /// configuration the environment leaves incomplete, as
    /// [`crate::SqlError::Storage`] naming the location (never a credential).
    pub fn store_for(&self, url: &Url) -> Result<Arc<dyn ObjectStore>, crate::SqlError> {
        self.get_store(url)
            .map_err(|e| crate::SqlError::Storage(format!("{} ({})", redacted(url), e.strip_backtrace())))
    }

    fn build_s3(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let _building = self.building.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Ok(store) = self.stores.get_store(url) {
            return Ok(store);
        }
        let Some(bucket) = url.host_str().filter(|b| !b.is_empty()) else {
            return Err(datafusion::error::DataFusionError::Configuration(
                "an s3:// table location names its bucket: s3://<bucket>/<prefix>".into(),
            ));
        };
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| datafusion::error::DataFusionError::ObjectStore(Box::new(e)))?;
        let store: Arc<dyn ObjectStore> = Arc::new(store);
        tracing::info!(bucket, "S3 table store configured from the environment");
        self.stores.register_store(url, store.clone());
        Ok(store)
    }
}

impl ObjectStoreRegistry for TableStores {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.stores.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.stores.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        match url.scheme() {
            "file" => self.stores.get_store(url),
            "s3" => match self.stores.get_store(url) {
                Ok(store) => Ok(store),
                Err(_) => self.build_s3(url),
            },
            other => Err(datafusion::error::DataFusionError::Configuration(format!(
                "tables are read from file:// or s3:// locations, not {other}://"
            ))),
        }
    }
}

/// `url` without user information or query (which may hold credentials).
pub fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_file_and_s3_locations_are_read() {
        let stores = TableStores::default();
        let file = Url::parse("file:///tmp/x.parquet").expect("url");
        assert!(stores.store_for(&file).is_ok());
        for other in ["http://example.org/x.parquet", "hdfs://namenode/x", "memory:///x"] {
            let url = Url::parse(other).expect("url");
            let err = stores.store_for(&url).expect_err("refused").to_string();
            assert!(err.contains("file:// or s3://"), "{err}");
        }
    }

    #[test]
    fn a_bucket_is_configured_once_and_credentials_are_never_shown() {
        let stores = TableStores::default();
        let url = Url::parse("s3://open-data/gov/x.parquet").expect("url");
        let first = stores
            .store_for(&url)
            .expect("an S3 client needs no network to be built");
        let second = stores
            .store_for(&Url::parse("s3://open-data/other/y.parquet").expect("url"))
            .expect("same bucket");
        assert!(Arc::ptr_eq(&first, &second));
        let with_secret = Url::parse("s3://key:secret@open-data/x?token=t").expect("url");
        assert!(!redacted(&with_secret).contains("secret"));
        assert!(!redacted(&with_secret).contains("token"));
    }
}
