//! Writes one table as a directory of snappy-compressed Parquet parts,
//! streaming: batches go straight to the encoder, a part is written under a
//! temporary name and renamed once complete, and each part's SHA-256 is
//! computed while its bytes are written.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::DatagenError;
use crate::schema::{relative_part_path, table_dir};

/// Rows per row group: bounds the encoder's memory independently of the
/// part size.
const ROW_GROUP_ROWS: usize = 512 * 1024;

/// Fixed "created by" so the bytes do not change with the parquet version
/// string.
const CREATED_BY: &str = "sandbox-datagen";

/// One finished part file.
#[derive(Debug, Clone)]
pub(crate) struct WrittenFile {
    pub path: PathBuf,
    /// Path relative to `out_dir` with `/` separators.
    pub relative: String,
    pub bytes: u64,
    pub sha256: [u8; 32],
}

/// One finished table.
#[derive(Debug, Clone)]
pub(crate) struct WrittenTable {
    pub dataset: String,
    pub rows: u64,
    pub files: Vec<WrittenFile>,
}

/// A file that hashes and counts what is written to it.
struct HashingFile {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The part currently being written.
struct OpenPart {
    writer: Option<ArrowWriter<HashingFile>>,
    temp_path: PathBuf,
    final_path: PathBuf,
    file_name: String,
    rows: usize,
}

impl Drop for OpenPart {
    fn drop(&mut self) {
        // Only reached with a writer still present when the part was
        // abandoned after an error: never leave the temporary file behind.
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

/// Streams batches of one table into `part-NNNNN.parquet` files.
pub(crate) struct TableWriter {
    dataset: String,
    dir: PathBuf,
    schema: SchemaRef,
    props: WriterProperties,
    rows_per_file: usize,
    current: Option<OpenPart>,
    files: Vec<WrittenFile>,
    rows: u64,
}

impl TableWriter {
    /// Creates the table directory and removes the parts of a previous run.
    pub(crate) fn create(
        out_dir: &Path,
        dataset: &str,
        schema: SchemaRef,
        rows_per_file: usize,
    ) -> Result<Self, DatagenError> {
        let dir = table_dir(out_dir, dataset);
        fs::create_dir_all(&dir).map_err(|e| DatagenError::io("create table directory", &dir, e))?;
        remove_stale_parts(&dir)?;
        Ok(TableWriter {
            dataset: dataset.to_owned(),
            props: writer_properties(&schema),
            dir,
            schema,
            rows_per_file: rows_per_file.max(1),
            current: None,
            files: Vec::new(),
            rows: 0,
        })
    }

    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Appends a batch, starting new parts as `rows_per_file` is reached.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), DatagenError> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let mut part = match self.current.take() {
                Some(part) => part,
                None => self.open_part()?,
            };
            let take = (self.rows_per_file - part.rows).min(batch.num_rows() - offset);
            let slice = batch.slice(offset, take);
            if let Some(writer) = part.writer.as_mut() {
                writer.write(&slice).map_err(|source| DatagenError::Parquet {
                    path: part.temp_path.clone(),
                    source,
                })?;
            }
            part.rows += take;
            offset += take;
            self.rows += take as u64;
            if part.rows >= self.rows_per_file {
                self.close_part(part)?;
            } else {
                self.current = Some(part);
            }
        }
        Ok(())
    }

    /// Closes the last part. A table without rows still gets one (empty)
    /// part so readers see its schema.
    pub(crate) fn finish(mut self) -> Result<WrittenTable, DatagenError> {
        if let Some(part) = self.current.take() {
            self.close_part(part)?;
        }
        if self.files.is_empty() {
            let part = self.open_part()?;
            self.close_part(part)?;
        }
        Ok(WrittenTable {
            dataset: std::mem::take(&mut self.dataset),
            rows: self.rows,
            files: std::mem::take(&mut self.files),
        })
    }

    fn open_part(&mut self) -> Result<OpenPart, DatagenError> {
        let file_name = format!("part-{:05}.parquet", self.files.len());
        let temp_path = self.dir.join(format!(".{file_name}.tmp"));
        let final_path = self.dir.join(&file_name);
        let file =
            File::create(&temp_path).map_err(|e| DatagenError::io("create temporary part file", &temp_path, e))?;
        let sink = HashingFile {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        };
        let writer = ArrowWriter::try_new(sink, self.schema.clone(), Some(self.props.clone())).map_err(|source| {
            DatagenError::Parquet {
                path: temp_path.clone(),
                source,
            }
        })?;
        Ok(OpenPart {
            writer: Some(writer),
            temp_path,
            final_path,
            file_name,
            rows: 0,
        })
    }

    fn close_part(&mut self, mut part: OpenPart) -> Result<(), DatagenError> {
        let Some(writer) = part.writer.take() else {
            return Ok(());
        };
        let result = finish_part(writer, &part);
        if result.is_err() {
            let _ = fs::remove_file(&part.temp_path);
        }
        let (bytes, sha256) = result?;
        self.files.push(WrittenFile {
            path: part.final_path.clone(),
            relative: relative_part_path(&self.dataset, &part.file_name),
            bytes,
            sha256,
        });
        Ok(())
    }
}

/// Writes the footer, syncs and renames the part into place.
fn finish_part(writer: ArrowWriter<HashingFile>, part: &OpenPart) -> Result<(u64, [u8; 32]), DatagenError> {
    let sink = writer.into_inner().map_err(|source| DatagenError::Parquet {
        path: part.temp_path.clone(),
        source,
    })?;
    let HashingFile {
        mut file,
        hasher,
        bytes,
    } = sink;
    file.flush()
        .and_then(|()| file.sync_all())
        .map_err(|e| DatagenError::io("flush part file", &part.temp_path, e))?;
    drop(file);
    fs::rename(&part.temp_path, &part.final_path)
        .map_err(|e| DatagenError::io("rename part file into place at", &part.final_path, e))?;
    Ok((bytes, hasher.finalize().into()))
}

/// Snappy everywhere; dictionary encoding only for strings (numbers are
/// nearly all distinct, so a dictionary would only cost time).
fn writer_properties(schema: &SchemaRef) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(CREATED_BY.to_owned())
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    for field in schema.fields() {
        if field.data_type() != &DataType::Utf8 {
            builder = builder.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
        }
    }
    builder.build()
}

/// Removes `part-*.parquet` and leftover `.part-*.tmp` files of a previous
/// run; other files in the directory are left alone.
fn remove_stale_parts(dir: &Path) -> Result<(), DatagenError> {
    let entries = fs::read_dir(dir).map_err(|e| DatagenError::io("list table directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DatagenError::io("list table directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = (name.starts_with("part-") && name.ends_with(".parquet"))
            || (name.starts_with(".part-") && name.ends_with(".tmp"));
        if stale {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| DatagenError::io("remove stale part file", &path, e))?;
        }
    }
    Ok(())
}
