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
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};
use std::collections::HashMap;
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

/// A new client for `url`'s store, not shared with jobs (for a check made
/// on a runtime of its own: a pooled connection belongs to the runtime
/// that opened it).
///
/// Errors: as [`TableStores::store_for`].
pub fn unshared_store_for(url: &Url) -> Result<Arc<dyn ObjectStore>, crate::SqlError> {
    TableStores::default().store_for(url)
}

/// One object a job reads, pinned when its session was built: what every
/// read of it must still find.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectPin {
    /// `s3://bucket/key` or `file:///path`, as the binding's files name it.
    pub url: String,
    /// Bytes.
    pub size: u64,
    /// The store's entity tag; every read asks for it (`If-Match`).
    pub e_tag: Option<String>,
    /// The store's object version, where the bucket keeps versions; every
    /// read asks for it.
    pub version: Option<String>,
    /// Last modification (nanoseconds since the epoch): checked on every
    /// read where the store gives no ETag.
    pub last_modified_ns: i64,
    /// Identity beyond the ETag, for the verification cache: a file
    /// system's change time in nanoseconds (`file://`), which an in-place
    /// rewrite moves even where it sets the modification time back.
    pub changed_ns: Option<i64>,
}

/// DataFusion's key for a URL's store: `scheme://host[:port]`.
fn store_key(url: &Url) -> String {
    format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    )
}

/// A job session's object stores: the process's [`TableStores`], with the
/// stores of pinned objects wrapped so that every read of a pinned object
/// gets exactly the pinned object or fails ([`PinnedStore`]).
#[derive(Debug)]
pub(crate) struct SessionStores {
    base: Arc<TableStores>,
    pinned: HashMap<String, Arc<dyn ObjectStore>>,
}

impl SessionStores {
    /// Errors: a pin whose URL does not parse or names no readable store.
    pub(crate) fn new(pins: &[ObjectPin]) -> Result<Self, crate::SqlError> {
        let base = table_stores();
        let mut by_store: HashMap<String, (Url, HashMap<ObjectPath, ObjectPin>)> = HashMap::new();
        for pin in pins {
            let url = Url::parse(&pin.url).map_err(|e| crate::SqlError::Storage(format!("{} ({e})", pin.url)))?;
            let path = ObjectPath::from_url_path(url.path())
                .map_err(|e| crate::SqlError::Storage(format!("{} ({e})", redacted(&url))))?;
            by_store
                .entry(store_key(&url))
                .or_insert_with(|| (url.clone(), HashMap::new()))
                .1
                .insert(path, pin.clone());
        }
        let mut pinned = HashMap::new();
        for (key, (url, objects)) in by_store {
            let inner = base.store_for(&url)?;
            let store: Arc<dyn ObjectStore> = Arc::new(PinnedStore { inner, objects });
            pinned.insert(key, store);
        }
        Ok(SessionStores { base, pinned })
    }
}

impl ObjectStoreRegistry for SessionStores {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.base.register_store(url, store)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        match self.pinned.get(&store_key(url)) {
            Some(store) => Ok(store.clone()),
            None => self.base.get_store(url),
        }
    }
}

/// A read-only view of a store in which every read of a pinned object
/// carries its ETag and version (a store answers a changed object with a
/// failed precondition) and is checked for its size, and a pinned object
/// that is gone fails the read instead of reading as an empty directory
/// (DataFusion lists a path whose `head` says "not found" as a prefix).
/// Unpinned paths read through unchanged.
#[derive(Debug)]
struct PinnedStore {
    inner: Arc<dyn ObjectStore>,
    objects: HashMap<ObjectPath, ObjectPin>,
}

impl std::fmt::Display for PinnedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pinned({})", self.inner)
    }
}

fn pinned_error(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "pinned",
        source: message.into(),
    }
}

fn read_only() -> object_store::Error {
    object_store::Error::NotSupported {
        source: "a job's tables are read-only".into(),
    }
}

impl PinnedStore {
    /// A listing below a pinned object (DataFusion's fallback for a file
    /// it could not find) fails: the object must be read, not listed.
    fn refuse_listing_below_pin(&self, prefix: Option<&ObjectPath>) -> Option<object_store::Error> {
        let prefix = prefix?;
        self.objects
            .contains_key(prefix)
            .then(|| pinned_error(format!("{prefix} is pinned: it is read, never listed")))
    }
}

#[async_trait::async_trait]
impl ObjectStore for PinnedStore {
    async fn put_opts(&self, _: &ObjectPath, _: PutPayload, _: PutOptions) -> object_store::Result<PutResult> {
        Err(read_only())
    }

    async fn put_multipart_opts(
        &self,
        _: &ObjectPath,
        _: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(read_only())
    }

    async fn get_opts(&self, location: &ObjectPath, mut options: GetOptions) -> object_store::Result<GetResult> {
        let Some(pin) = self.objects.get(location) else {
            return self.inner.get_opts(location, options).await;
        };
        if pin.e_tag.is_some() {
            options.if_match = pin.e_tag.clone();
        }
        if pin.version.is_some() {
            options.version = pin.version.clone();
        }
        match self.inner.get_opts(location, options).await {
            // The answer is checked too, not only the precondition asked
            // for: a store that ignored If-Match must not pass.
            Ok(result)
                if result.meta.size == pin.size
                    && result.meta.e_tag == pin.e_tag
                    && (pin.e_tag.is_some()
                        || result.meta.last_modified.timestamp_nanos_opt() == Some(pin.last_modified_ns)) =>
            {
                Ok(result)
            }
            Ok(_) => Err(pinned_error(format!("{location} changed since it was pinned"))),
            Err(object_store::Error::NotFound { .. }) => {
                Err(pinned_error(format!("{location} is gone since it was pinned")))
            }
            Err(object_store::Error::Precondition { .. }) => {
                Err(pinned_error(format!("{location} changed since it was pinned")))
            }
            Err(e) => Err(e),
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        locations.map(|_| Err(read_only())).boxed()
    }

    fn list(&self, prefix: Option<&ObjectPath>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.refuse_listing_below_pin(prefix) {
            Some(e) => futures::stream::once(async move { Err(e) }).boxed(),
            None => self.inner.list(prefix),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&ObjectPath>) -> object_store::Result<ListResult> {
        match self.refuse_listing_below_pin(prefix) {
            Some(e) => Err(e),
            None => self.inner.list_with_delimiter(prefix).await,
        }
    }

    async fn copy_opts(&self, _: &ObjectPath, _: &ObjectPath, _: CopyOptions) -> object_store::Result<()> {
        Err(read_only())
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
