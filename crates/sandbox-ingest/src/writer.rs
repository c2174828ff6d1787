//! Writes a version's rows as Parquet in batches of [`BATCH_ROWS`] and row
//! groups of [`ROW_GROUP_ROWS`], hashing the bytes as they go: memory stays
//! bounded by one row group whatever the file's size.

use crate::convert::Cell;
use crate::{IngestError, io};
use arrow::array::{ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use sandbox_model::{Field, FieldType};
use serde::{Deserialize, Serialize};
use sha2_11::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per Arrow batch handed to the Parquet writer.
pub const BATCH_ROWS: usize = 8192;
/// Rows per Parquet row group (what the writer buffers, encoded).
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// One stored data file of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// The Arrow type a catalog type is stored as (as the runtime reads it).
pub fn arrow_type(t: FieldType) -> DataType {
    match t {
        FieldType::Utf8 => DataType::Utf8,
        FieldType::Int64 => DataType::Int64,
        FieldType::Float64 => DataType::Float64,
        FieldType::Boolean => DataType::Boolean,
        FieldType::Date => DataType::Date32,
    }
}

struct HashingFile {
    file: std::fs::File,
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

enum Builder {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
}

impl Builder {
    fn new(t: FieldType) -> Self {
        match t {
            FieldType::Utf8 => Builder::Str(StringBuilder::new()),
            FieldType::Int64 => Builder::Int(Int64Builder::new()),
            FieldType::Float64 => Builder::Float(Float64Builder::new()),
            FieldType::Boolean => Builder::Bool(BooleanBuilder::new()),
            FieldType::Date => Builder::Date(Date32Builder::new()),
        }
    }

    /// Appends a value already coerced to this column's type.
    fn push(&mut self, cell: &Cell) {
        match (self, cell) {
            (Builder::Str(b), Cell::Str(s)) => b.append_value(s),
            (Builder::Int(b), Cell::Int(v)) => b.append_value(*v),
            (Builder::Float(b), Cell::Float(v)) => b.append_value(*v),
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (Builder::Date(b), Cell::Date(v)) => b.append_value(*v),
            (Builder::Str(b), _) => b.append_null(),
            (Builder::Int(b), _) => b.append_null(),
            (Builder::Float(b), _) => b.append_null(),
            (Builder::Bool(b), _) => b.append_null(),
            (Builder::Date(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
        }
    }
}

pub(crate) struct VersionWriter {
    path: PathBuf,
    writer: ArrowWriter<HashingFile>,
    schema: SchemaRef,
    builders: Vec<Builder>,
    pending: usize,
    rows: u64,
}

fn parquet_err(e: impl std::fmt::Display) -> IngestError {
    IngestError::Parquet(e.to_string())
}

impl VersionWriter {
    pub(crate) fn create(path: &Path, fields: &[Field]) -> Result<Self, IngestError> {
        let schema: SchemaRef = Arc::new(Schema::new(
            fields
                .iter()
                .map(|f| ArrowField::new(&f.name, arrow_type(f.data_type), true))
                .collect::<Vec<_>>(),
        ));
        let file = std::fs::File::create(path).map_err(io(path))?;
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_compression(Compression::SNAPPY)
            .build();
        let sink = HashingFile {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        };
        let writer = ArrowWriter::try_new(sink, schema.clone(), Some(props)).map_err(parquet_err)?;
        Ok(VersionWriter {
            path: path.to_path_buf(),
            writer,
            schema,
            builders: fields.iter().map(|f| Builder::new(f.data_type)).collect(),
            pending: 0,
            rows: 0,
        })
    }

    pub(crate) fn push(&mut self, cells: &[Cell]) -> Result<(), IngestError> {
        for (b, c) in self.builders.iter_mut().zip(cells) {
            b.push(c);
        }
        self.pending += 1;
        self.rows += 1;
        if self.pending >= BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), IngestError> {
        if self.pending == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(parquet_err)?;
        self.writer.write(&batch).map_err(parquet_err)?;
        self.pending = 0;
        Ok(())
    }

    /// Writes what is left and the footer, and syncs the file to disk.
    pub(crate) fn finish(mut self) -> Result<StoredFile, IngestError> {
        self.flush_batch()?;
        let sink = self.writer.into_inner().map_err(parquet_err)?;
        sink.file.sync_all().map_err(io(&self.path))?;
        Ok(StoredFile {
            name: self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            rows: self.rows,
            bytes: sink.bytes,
            sha256: hex::encode(sink.hasher.finalize()),
        })
    }
}
