//! The verify step of a SQL job: the catalog's `max_rows_per_value`
//! declarations, checked on the files the job scans before they may skip
//! contribution bounding (see [`crate::multiplicity`]).

use super::Sandbox;
use crate::RuntimeError;
use sandbox_model::DatasetId;
use sandbox_sql::JobSession;
use std::collections::BTreeMap;

/// What the catalog's `max_rows_per_value` declarations of one dataset
/// come to on its current files ([`Sandbox::verify_declared_row_bounds`]).
/// For the data owner and operator: the counts are of their own data and
/// never reach an analyst.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredRowBounds {
    /// Declarations that hold: column (or `a+b` key) → declared rows per value.
    pub holds: BTreeMap<String, u64>,
    /// Declarations the data break: column → the most rows found for one
    /// value (`u64::MAX`: the column could not be counted). Jobs ignore
    /// them and bound every contribution.
    pub violated: BTreeMap<String, u64>,
    /// Whether the files were counted now (`false`: the cached result for
    /// the same files, binding and policy).
    pub counted: bool,
}

impl Sandbox {
    /// Installs in `session` the catalog's `max_rows_per_value`
    /// declarations of `datasets` that hold on the session's pinned files,
    /// counting them through the session's own tables where the cache has
    /// no result for those files (see [`crate::multiplicity`]). A
    /// declaration that cannot be checked is not used: the job then bounds
    /// every contribution.
    pub(super) async fn verify_row_bounds(
        &self,
        session: &mut JobSession,
        datasets: &std::collections::BTreeSet<DatasetId>,
        policies: &sandbox_policy::PolicySet,
    ) {
        for dataset in datasets {
            match self.verification(session, dataset, policies).await {
                Ok(Some((verification, _))) => {
                    session.set_verified_max_rows_per_value(dataset, verification.holds);
                    session.set_null_free_columns(dataset, verification.null_free);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(%dataset, error = %e, "max_rows_per_value not verified; not used"),
            }
        }
    }

    /// Verifies `dataset`'s `max_rows_per_value` declarations on its current
    /// files (as published, where jobs read published tables) and caches the
    /// result, so that the first job on a new version does not pay for the
    /// count (at 100M rows a key of two columns takes minutes). Called when
    /// a version is registered or published; a job finds the cache, or
    /// counts itself when the files changed since.
    ///
    /// Returns an empty [`DeclaredRowBounds`] for a dataset without
    /// declarations or without data.
    ///
    /// # Errors
    /// [`RuntimeError::Setup`] when the files cannot be fingerprinted or
    /// counted (a missing or unreadable file); jobs then bound every
    /// contribution.
    pub async fn verify_declared_row_bounds(&self, dataset: &DatasetId) -> Result<DeclaredRowBounds, RuntimeError> {
        let session = self.session_over(std::slice::from_ref(dataset), false).await?;
        Ok(match self.verification(&session, dataset, &self.policies()).await? {
            Some((v, counted)) => DeclaredRowBounds {
                holds: v.holds,
                violated: v.violated,
                counted,
            },
            None => DeclaredRowBounds::default(),
        })
    }

    /// The verification of `dataset`'s declarations on `session`'s files:
    /// the cached one for the same files, binding and policy, or a count
    /// (then cached); with whether it was counted now. `None`: nothing
    /// declared, or the dataset is not in the session.
    async fn verification(
        &self,
        session: &JobSession,
        dataset: &DatasetId,
        policies: &sandbox_policy::PolicySet,
    ) -> Result<Option<(crate::multiplicity::Verification, bool)>, RuntimeError> {
        let Some(binding) = session.binding(dataset) else {
            return Ok(None);
        };
        let declared = binding.declared_max_rows_per_value.clone();
        if declared.is_empty() {
            return Ok(None);
        }
        // Published objects are keyed by their pins (every read of them is
        // held to the pin); local files (and public samples, which stay
        // local) by path, inode and times.
        let fingerprint = if binding.pins.is_empty() {
            let files: Vec<std::path::PathBuf> = binding.files.iter().map(std::path::PathBuf::from).collect();
            crate::multiplicity::FileFingerprint::of(&files)?
        } else {
            crate::multiplicity::FileFingerprint::Objects(binding.pins.clone())
        };
        // The count reads through the binding (types, rules) under the
        // policy: a cache made under others is not reused.
        let scan = crate::multiplicity::scan_digest(binding, policies.get(dataset));
        let cache = self.dir.verification_cache(dataset);
        if let Some(v) = crate::multiplicity::cached(&cache, &fingerprint, &scan, &declared) {
            return Ok(Some((v, false)));
        }
        let columns: Vec<String> = declared.keys().cloned().collect();
        let started = std::time::Instant::now();
        // NULLs are counted in the declared single columns (a unit column
        // among them lets the plan skip its filter).
        let singles: Vec<String> = columns
            .iter()
            .filter(|c| sandbox_sql::multiplicity::key_columns(c).len() == 1)
            .cloned()
            .collect();
        let count =
            |e: sandbox_sql::SqlError| RuntimeError::Setup(format!("counting rows per value of {dataset}: {e}"));
        let counted = sandbox_sql::multiplicity::count_max_rows_per_value(session, dataset, &columns)
            .await
            .map_err(count)?;
        let nulls = sandbox_sql::multiplicity::count_nulls(session, dataset, &singles)
            .await
            .map_err(count)?;
        let v = crate::multiplicity::Verification::new(fingerprint, scan, &declared, &counted, &nulls);
        tracing::info!(%dataset, elapsed = ?started.elapsed(), holds = ?v.holds.keys().collect::<Vec<_>>(), "row multiplicity declarations verified");
        if !v.violated.is_empty() {
            tracing::warn!(%dataset, violated = ?v.violated, "the data break the catalog's max_rows_per_value declarations: they are ignored (full contribution bounding applies)");
        }
        crate::multiplicity::store(&cache, &v);
        Ok(Some((v, true)))
    }
}

#[cfg(test)]
mod tests {
    use crate::{DataDir, Sandbox};
    use sandbox_model::DatasetId;
    use std::collections::{BTreeMap, BTreeSet};

    /// The bounds `verify_row_bounds` installs for `dataset` in a new
    /// session of `sandbox`.
    async fn verified(sandbox: &Sandbox, dataset: &DatasetId) -> Option<BTreeMap<String, u64>> {
        let mut session = sandbox.session_over(&[], false).await.expect("session");
        let datasets = BTreeSet::from([dataset.clone()]);
        sandbox
            .verify_row_bounds(&mut session, &datasets, &sandbox.policies())
            .await;
        session.max_rows_per_value(dataset).cloned()
    }

    /// A sandbox over generated `gov.districts` (which declares one row
    /// per district), with the directory that holds it.
    fn districts() -> (tempfile::TempDir, Sandbox, DatasetId) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::open(tmp.path().join("data")).expect("data dir");
        let options =
            sandbox_datagen::GenerateOptions::new(42, sandbox_datagen::Scale::with_entities(50), dir.tables_dir())
                .only(["gov.districts"]);
        sandbox_datagen::generate(&options).expect("generate");
        let sandbox = Sandbox::open(dir).expect("sandbox");
        (tmp, sandbox, "gov.districts".parse().expect("id"))
    }

    /// Registration verifies and caches; a job afterwards finds the cache
    /// (nothing counted again) and installs the same bounds. Data that
    /// break a declaration are reported with the most rows found.
    #[tokio::test]
    async fn registration_verifies_once_and_jobs_reuse_it() {
        let (_tmp, sandbox, id) = districts();

        let first = sandbox.verify_declared_row_bounds(&id).await.expect("verify");
        let one = BTreeMap::from([("district".to_string(), 1)]);
        assert_eq!(
            (first.holds.clone(), first.violated.is_empty(), first.counted),
            (one.clone(), true, true)
        );
        let again = sandbox.verify_declared_row_bounds(&id).await.expect("verify");
        assert!(
            !again.counted,
            "the same files, binding and policy: read from the cache"
        );
        assert_eq!(again.holds, one);
        assert_eq!(verified(&sandbox, &id).await, Some(one));

        // A second row for one district breaks the declaration.
        let table = sandbox.data_dir().table_dir(&id);
        let file = crate::multiplicity::pinned_files(&table).expect("files").remove(0);
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&file).expect("open"),
        )
        .expect("parquet")
        .build()
        .expect("reader");
        let batches: Vec<_> = reader.collect::<Result<_, _>>().expect("batches");
        let copy = table.join("duplicate.parquet");
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&copy).expect("create"),
            batches[0].schema(),
            None,
        )
        .expect("writer");
        writer.write(&batches[0].slice(0, 1)).expect("write");
        writer.close().expect("close");
        let broken = sandbox.verify_declared_row_bounds(&id).await.expect("verify");
        assert!(broken.counted, "new files are counted again");
        assert!(broken.holds.is_empty(), "{broken:?}");
        assert_eq!(broken.violated, BTreeMap::from([("district".to_string(), 2)]));
    }

    /// `gov.districts` declares one row per district, which holds (16
    /// names). Its owner then masks the name to its last character: every
    /// name ends in 区, so all rows share one value. The bound verified on
    /// the same files before the rule must not be reused: the next job
    /// counts again through the masked column, finds 16 rows per value and
    /// installs no bound (full contribution bounding applies).
    #[tokio::test]
    async fn a_rule_added_later_makes_the_bound_be_counted_again() {
        let (_tmp, sandbox, id) = districts();
        let policy = sandbox.data_dir().policies_dir().join("gov.districts.toml");

        let one = BTreeMap::from([("district".to_string(), 1)]);
        assert_eq!(verified(&sandbox, &id).await, Some(one.clone()));
        // Cached: the same files and policy give the same bound.
        assert!(sandbox.data_dir().verification_cache(&id).exists());
        assert_eq!(verified(&sandbox, &id).await, Some(one));

        let text = std::fs::read_to_string(&policy).expect("policy");
        std::fs::write(
            &policy,
            format!("{text}\n[desensitize]\ndistrict = {{ mask_keep_last = 1 }}\n"),
        )
        .expect("write policy");
        assert!(sandbox.refresh().expect("refresh"), "the new policy is loaded");
        assert_eq!(verified(&sandbox, &id).await, Some(BTreeMap::new()));
        // The count under the rule is what the cache now holds.
        let cache: serde_json::Value =
            serde_json::from_slice(&std::fs::read(sandbox.data_dir().verification_cache(&id)).expect("cache"))
                .expect("json");
        assert_eq!(cache["violated"]["district"], 16, "{cache}");
    }
}

/// Red team 2026-12-01 (keys of several columns).
#[cfg(test)]
mod red_team_keys {
    use crate::{DataDir, Sandbox};
    use sandbox_model::DatasetId;
    use std::collections::{BTreeMap, BTreeSet};

    async fn verified(sandbox: &Sandbox, id: &DatasetId) -> Option<BTreeMap<String, u64>> {
        let mut session = sandbox
            .session_over(std::slice::from_ref(id), false)
            .await
            .expect("session");
        let datasets = BTreeSet::from([id.clone()]);
        sandbox
            .verify_row_bounds(&mut session, &datasets, &sandbox.policies())
            .await;
        session.max_rows_per_value(id).cloned()
    }

    /// A rule that coarsens the month (two years' January share one
    /// masked value) makes `"credit_code+month" = 1` false of what the job
    /// reads: the recount finds 2 rows per enterprise and masked month, and
    /// only the single-column bound is installed (so no query counts an
    /// enterprise's units by its rows per masked month).
    #[tokio::test]
    async fn a_rule_coarsening_a_key_column_drops_the_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::open(tmp.path().join("data")).expect("data dir");
        let options =
            sandbox_datagen::GenerateOptions::new(42, sandbox_datagen::Scale::with_entities(30), dir.tables_dir())
                .only(["gov.utility_usage"]);
        sandbox_datagen::generate(&options).expect("generate");
        let policy = dir.policies_dir().join("gov.utility_usage.toml");
        let sandbox = Sandbox::open(dir).expect("sandbox");
        let id: DatasetId = "gov.utility_usage".parse().expect("id");
        let both = BTreeMap::from([("credit_code".to_string(), 24), ("credit_code+month".to_string(), 1)]);
        assert_eq!(verified(&sandbox, &id).await, Some(both));

        let text = std::fs::read_to_string(&policy).expect("policy");
        std::fs::write(
            &policy,
            format!("{text}\n[desensitize]\nmonth = {{ mask_keep_last = 2 }}\n"),
        )
        .expect("write policy");
        assert!(sandbox.refresh().expect("refresh"), "the new policy is loaded");
        let one = BTreeMap::from([("credit_code".to_string(), 24)]);
        assert_eq!(verified(&sandbox, &id).await, Some(one));
    }
}

/// Red team 2026-12-01 (published tables): a verified bound is used only
/// on the objects it was verified on, and a job reads exactly its pinned
/// objects or fails.
#[cfg(test)]
mod published_tables {
    use crate::{DataDir, PublishedTables, Sandbox};
    use arrow::array::{Array, ArrayRef, StringArray};
    use arrow::record_batch::RecordBatch;
    use sandbox_model::DatasetId;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;
    use std::sync::Arc;

    fn read(path: &Path) -> Vec<RecordBatch> {
        let f = std::fs::File::open(path).expect("open");
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .expect("reader")
            .build()
            .expect("build")
            .collect::<Result<Vec<_>, _>>()
            .expect("batches")
    }

    /// Uncompressed, without dictionaries or statistics: a variant with one
    /// value changed has the same size.
    fn write(path: &Path, batches: &[RecordBatch]) {
        use parquet::file::properties::{EnabledStatistics, WriterProperties};
        let props = WriterProperties::builder()
            .set_compression(parquet::basic::Compression::UNCOMPRESSED)
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .build();
        let f = std::fs::File::create(path).expect("create");
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batches[0].schema(), Some(props)).expect("writer");
        for b in batches {
            w.write(b).expect("write");
        }
        w.close().expect("close");
    }

    /// One row's district set to another row's value of the same length:
    /// `district = 1` no longer holds.
    fn with_duplicate_district(batches: &[RecordBatch]) -> Vec<RecordBatch> {
        let b = &batches[0];
        let i = b.schema().index_of("district").expect("district");
        let original = b.column(i).clone();
        let strings = arrow::compute::cast(&original, &arrow::datatypes::DataType::Utf8).expect("cast");
        let s = strings.as_any().downcast_ref::<StringArray>().expect("strings");
        let mut values: Vec<Option<String>> = (0..s.len())
            .map(|r| (!s.is_null(r)).then(|| s.value(r).to_string()))
            .collect();
        let (a, z) = (0..values.len())
            .flat_map(|a| (a + 1..values.len()).map(move |z| (a, z)))
            .find(|&(a, z)| values[a].as_ref().map(String::len) == values[z].as_ref().map(String::len))
            .expect("pair");
        values[z] = values[a].clone();
        let changed: ArrayRef = Arc::new(StringArray::from(values));
        let changed = arrow::compute::cast(&changed, original.data_type()).expect("cast back");
        let mut columns = b.columns().to_vec();
        columns[i] = changed;
        let mut out = vec![RecordBatch::try_new(b.schema(), columns).expect("batch")];
        out.extend(batches[1..].iter().cloned());
        out
    }

    async fn verified(sandbox: &Sandbox, id: &DatasetId) -> Option<BTreeMap<String, u64>> {
        let mut session = sandbox
            .session_over(std::slice::from_ref(id), false)
            .await
            .expect("session");
        sandbox
            .verify_row_bounds(&mut session, &BTreeSet::from([id.clone()]), &sandbox.policies())
            .await;
        session.max_rows_per_value(id).cloned()
    }

    /// `gov.districts` generated, rewritten uncompressed, and published to
    /// a `file://` store: (sandbox, id, local file, published file).
    async fn published_districts(tmp: &Path) -> (Sandbox, DatasetId, std::path::PathBuf, std::path::PathBuf) {
        let dir = DataDir::open(tmp.join("data")).expect("data dir");
        let options =
            sandbox_datagen::GenerateOptions::new(42, sandbox_datagen::Scale::with_entities(50), dir.tables_dir())
                .only(["gov.districts"]);
        sandbox_datagen::generate(&options).expect("generate");
        let id: DatasetId = "gov.districts".parse().expect("id");
        let local = dir.table_dir(&id).join("part-00000.parquet");
        let batches = read(&local);
        write(&local, &batches);
        let store = tmp.join("store");
        std::fs::create_dir_all(&store).expect("store");
        let tables = PublishedTables::open(&format!("file://{}", store.display())).expect("tables");
        let sandbox = Sandbox::open(dir).expect("sandbox").with_published_tables(tables);
        assert_eq!(sandbox.publish_all(false).await.expect("published"), vec![id.clone()]);
        let published = store.join("gov/districts/part-00000.parquet");
        (sandbox, id, local, published)
    }

    #[tokio::test]
    async fn an_object_rewritten_in_place_with_its_time_set_back_is_not_read_nor_its_bound_reused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (sandbox, id, local, published) = published_districts(tmp.path()).await;
        let one = BTreeMap::from([("district".to_string(), 1)]);
        assert_eq!(verified(&sandbox, &id).await, Some(one.clone()));
        let bad = tmp.path().join("bad.parquet");
        write(&bad, &with_duplicate_district(&read(&local)));
        let bytes = std::fs::read(&bad).expect("bad");
        assert_eq!(
            bytes.len() as u64,
            std::fs::metadata(&published).expect("meta").len(),
            "same size"
        );
        let mtime = std::fs::metadata(&published).and_then(|m| m.modified()).expect("mtime");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&published, &bytes).expect("in place");
        std::fs::File::options()
            .write(true)
            .open(&published)
            .and_then(|f| f.set_modified(mtime))
            .expect("mtime back");
        assert_eq!(verified(&sandbox, &id).await, None, "the changed object is not read");
        // Published again (from the data directory's file): read, verified.
        sandbox.publish(&id).await.expect("published").expect("data");
        assert_eq!(verified(&sandbox, &id).await, Some(one));
    }

    #[tokio::test]
    async fn a_scan_reads_the_pinned_object_or_fails() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (sandbox, id, local, published) = published_districts(tmp.path()).await;
        let mut session = sandbox
            .session_over(std::slice::from_ref(&id), false)
            .await
            .expect("session");
        sandbox
            .verify_row_bounds(&mut session, &BTreeSet::from([id.clone()]), &sandbox.policies())
            .await;
        assert_eq!(
            session.max_rows_per_value(&id).cloned(),
            Some(BTreeMap::from([("district".to_string(), 1)]))
        );
        // Replaced after the session pinned it: the job must not read it.
        let bad = tmp.path().join("bad.parquet");
        let mut batches = with_duplicate_district(&read(&local));
        batches.extend(read(&local));
        write(&bad, &batches);
        std::fs::rename(&bad, &published).expect("replace");
        let counted =
            sandbox_sql::multiplicity::count_max_rows_per_value(&session, &id, &["district".to_string()]).await;
        assert!(counted.is_err(), "read a replaced object: {counted:?}");
    }

    /// Second red team: what a publication records of its source does not
    /// depend on how the data directory's path is spelled.
    #[tokio::test]
    async fn a_publication_is_current_whatever_the_spelling_of_the_data_directory() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (sandbox, id, _local, _published) = published_districts(tmp.path()).await;
        assert!(sandbox.is_published(&id).await.expect("read"));
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("link")).expect("link");
        for spelling in [tmp.path().join("link/data"), tmp.path().join("./data")] {
            let tables = sandbox.published_tables().expect("tables").clone();
            let other = Sandbox::open(DataDir::open(&spelling).expect("dir"))
                .expect("sandbox")
                .with_published_tables(tables);
            assert!(
                other.is_published(&id).await.expect("read"),
                "{} sees another source",
                spelling.display()
            );
        }
    }

    #[tokio::test]
    async fn a_pinned_object_gone_before_the_scan_fails_the_job() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (sandbox, id, _local, published) = published_districts(tmp.path()).await;
        let session = sandbox
            .session_over(std::slice::from_ref(&id), false)
            .await
            .expect("session");
        std::fs::remove_file(&published).expect("rm");
        let counted = sandbox_sql::multiplicity::count_nulls(&session, &id, &["district".to_string()]).await;
        assert!(
            counted.is_err(),
            "a pinned object that is gone read as empty: {counted:?}"
        );
    }
}
