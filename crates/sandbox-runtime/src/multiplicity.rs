//! Verifying the catalog's declared row multiplicities
//! (`max_rows_per_value`) against the data files before the planner relies
//! on them.
//!
//! A declaration such as `credit_code = 24` lets the planner prove that a
//! query's contribution bounding cannot bind (no unit can reach more rows
//! or groups than the policy keeps) and skip the per-unit stage
//! (`sandbox_sql::multiplicity`). The declaration is public (it is in the
//! catalog entry), so the plan chosen from it reveals nothing; but a wrong
//! declaration would let a unit contribute more than the noise is
//! calibrated for, so it is used only once the files have been read and
//! every value counted. Verification runs once per set of files (names,
//! sizes and modification times), when the sandbox opens or refreshes, and
//! its result is cached under `<data dir>/cache/verified/`.

use crate::RuntimeError;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The Parquet files of one table directory: names, sizes and modification
/// times (nanoseconds since the epoch). A new version, or a file rewritten
/// in place, changes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileFingerprint(Vec<(String, u64, u128)>);

impl FileFingerprint {
    pub(crate) fn of(dir: &Path) -> Result<Self, RuntimeError> {
        let io = |e| RuntimeError::Io {
            path: dir.display().to_string(),
            source: e,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "parquet") {
                continue;
            }
            let meta = entry.metadata().map_err(io)?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            files.push((entry.file_name().to_string_lossy().into_owned(), meta.len(), modified));
        }
        files.sort();
        Ok(FileFingerprint(files))
    }

    fn paths(&self, dir: &Path) -> Vec<PathBuf> {
        self.0.iter().map(|(name, _, _)| dir.join(name)).collect()
    }
}

/// What verification found for one table directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Verification {
    pub files: FileFingerprint,
    /// The declarations checked.
    pub declared: BTreeMap<String, u64>,
    /// The declarations that hold: column → declared bound.
    pub holds: BTreeMap<String, u64>,
    /// The declarations that do not, with the largest count seen (for the
    /// owner's log; never shown to analysts).
    pub violated: BTreeMap<String, u64>,
}

/// Verifies `declared` against the Parquet files of `dir`, using the cache
/// file `cache` when it was written for the same files and declarations.
///
/// Errors: [`RuntimeError::Io`] when the directory or a file cannot be
/// read, [`RuntimeError::Setup`] for a file that is not valid Parquet or
/// lacks a declared column.
pub(crate) fn verify_cached(
    dir: &Path,
    declared: &BTreeMap<String, u64>,
    cache: &Path,
) -> Result<Verification, RuntimeError> {
    let files = FileFingerprint::of(dir)?;
    if let Some(cached) = std::fs::read(cache)
        .ok()
        .and_then(|b| serde_json::from_slice::<Verification>(&b).ok())
        && cached.files == files
        && &cached.declared == declared
    {
        return Ok(cached);
    }
    let started = std::time::Instant::now();
    let verification = verify(dir, files, declared)?;
    tracing::info!(
        dir = %dir.display(),
        elapsed = ?started.elapsed(),
        holds = ?verification.holds.keys().collect::<Vec<_>>(),
        violated = ?verification.violated,
        "row multiplicity declarations verified"
    );
    if !verification.violated.is_empty() {
        tracing::warn!(
            dir = %dir.display(),
            violated = ?verification.violated,
            "the data break the catalog's max_rows_per_value declarations: they are ignored (full contribution bounding applies)"
        );
    }
    write_atomically(cache, &verification);
    Ok(verification)
}

/// Best effort: a cache that cannot be written only costs a recount.
fn write_atomically(cache: &Path, verification: &Verification) {
    let Some(parent) = cache.parent() else { return };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(parent)?;
        let tmp = cache.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(verification).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, cache)
    };
    if let Err(e) = write() {
        tracing::warn!(cache = %cache.display(), error = %e, "cannot cache the multiplicity verification");
    }
}

fn verify(dir: &Path, files: FileFingerprint, declared: &BTreeMap<String, u64>) -> Result<Verification, RuntimeError> {
    let mut counters: BTreeMap<&str, ValueCounter> =
        declared.keys().map(|c| (c.as_str(), ValueCounter::default())).collect();
    for path in files.paths(dir) {
        let bad = |e: &dyn std::fmt::Display| RuntimeError::Setup(format!("{}: {e}", path.display()));
        let file = std::fs::File::open(&path).map_err(|e| RuntimeError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?;
        let arrow_schema = builder.schema().clone();
        let mut indices = Vec::new();
        for column in declared.keys() {
            let (index, _) = arrow_schema
                .column_with_name(column)
                .ok_or_else(|| bad(&format!("no column `{column}`")))?;
            indices.push(index);
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
        let reader = builder.with_projection(mask).build().map_err(|e| bad(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(&e))?;
            for (column, counter) in &mut counters {
                let array = batch
                    .column_by_name(column)
                    .ok_or_else(|| bad(&format!("no column `{column}`")))?;
                counter.add(array.as_ref()).map_err(|e| bad(&e))?;
            }
        }
    }
    let mut holds = BTreeMap::new();
    let mut violated = BTreeMap::new();
    for (column, counter) in counters {
        let bound = declared[column];
        if counter.max <= bound {
            holds.insert(column.to_string(), bound);
        } else {
            violated.insert(column.to_string(), counter.max);
        }
    }
    Ok(Verification {
        files,
        declared: declared.clone(),
        holds,
        violated,
    })
}

/// Rows per non-null value of one column.
#[derive(Default)]
struct ValueCounter {
    integers: HashMap<i64, u64>,
    text: HashMap<Vec<u8>, u64>,
    max: u64,
}

impl ValueCounter {
    fn add(&mut self, array: &dyn Array) -> Result<(), String> {
        let mut bump = |n: &mut u64| {
            *n += 1;
            self.max = self.max.max(*n);
        };
        match array.data_type() {
            DataType::Int64 => {
                for v in array.as_primitive::<Int64Type>().iter().flatten() {
                    bump(self.integers.entry(v).or_default());
                }
            }
            DataType::Int32 => {
                for v in array.as_primitive::<Int32Type>().iter().flatten() {
                    bump(self.integers.entry(i64::from(v)).or_default());
                }
            }
            DataType::Utf8 => {
                for v in array.as_string::<i32>().iter().flatten() {
                    match self.text.get_mut(v.as_bytes()) {
                        Some(n) => bump(n),
                        None => bump(self.text.entry(v.as_bytes().to_vec()).or_default()),
                    }
                }
            }
            DataType::LargeUtf8 => {
                for v in array.as_string::<i64>().iter().flatten() {
                    match self.text.get_mut(v.as_bytes()) {
                        Some(n) => bump(n),
                        None => bump(self.text.entry(v.as_bytes().to_vec()).or_default()),
                    }
                }
            }
            DataType::Utf8View => {
                for v in array.as_string_view().iter().flatten() {
                    match self.text.get_mut(v.as_bytes()) {
                        Some(n) => bump(n),
                        None => bump(self.text.entry(v.as_bytes().to_vec()).or_default()),
                    }
                }
            }
            other => return Err(format!("max_rows_per_value cannot be verified on a {other} column")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn write(dir: &Path, name: &str, codes: &[Option<&str>], years: &[i64]) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("credit_code", DataType::Utf8, true),
            Field::new("year", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(codes.to_vec())),
                Arc::new(Int64Array::from(years.to_vec())),
            ],
        )
        .expect("batch");
        let file = std::fs::File::create(dir.join(name)).expect("file");
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
    }

    #[test]
    fn declarations_hold_or_are_reported_across_files() {
        let dir = tempfile::tempdir().expect("dir");
        write(
            dir.path(),
            "a.parquet",
            &[Some("A"), Some("B"), None, None],
            &[2022, 2023, 2023, 2023],
        );
        write(dir.path(), "b.parquet", &[Some("A"), Some("C")], &[2024, 2024]);
        let declared: BTreeMap<String, u64> = [("credit_code".to_string(), 2), ("year".to_string(), 2)].into();
        let cache = dir.path().join("cache").join("v.json");
        let v = verify_cached(dir.path(), &declared, &cache).expect("verified");
        // Nulls are not a value: A has 2 rows, within 2.
        assert_eq!(v.holds, [("credit_code".to_string(), 2)].into());
        // 2023 has 3 rows.
        assert_eq!(v.violated, [("year".to_string(), 3)].into());
        assert!(cache.exists());

        // A third row for A breaks the declaration; the cache is not reused
        // for different files.
        write(dir.path(), "c.parquet", &[Some("A")], &[2025]);
        let v = verify_cached(dir.path(), &declared, &cache).expect("verified");
        assert_eq!(v.violated.get("credit_code"), Some(&3));
        assert!(v.holds.is_empty());
    }

    #[test]
    fn a_missing_column_or_a_broken_file_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        write(dir.path(), "a.parquet", &[Some("A")], &[2022]);
        let declared: BTreeMap<String, u64> = [("nope".to_string(), 1)].into();
        let cache = dir.path().join("v.json");
        assert!(matches!(
            verify_cached(dir.path(), &declared, &cache),
            Err(RuntimeError::Setup(m)) if m.contains("no column `nope`")
        ));
        std::fs::write(dir.path().join("b.parquet"), b"not parquet").expect("write");
        let declared: BTreeMap<String, u64> = [("credit_code".to_string(), 1)].into();
        assert!(matches!(
            verify_cached(dir.path(), &declared, &cache),
            Err(RuntimeError::Setup(_))
        ));
    }
}
