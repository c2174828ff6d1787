//! The file readers. Each pushes rows, as cells in the catalog entry's
//! field order, to a sink; the pipeline (`crate::register`) coerces,
//! checks, pseudonymizes and writes them.

mod csv_file;
pub(crate) mod decode;
mod parquet_file;
mod xlsx_file;

pub(crate) use xlsx_file::days_from_civil;

use crate::spec::{FileFormat, IngestOptions};
use crate::{IngestError, io};
use sandbox_model::Field;
use std::io::Read;
use std::path::Path;

/// One value as the file holds it, before coercion to the declared type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawCell {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Days since 1970-01-01.
    Date(i32),
    /// A value of the file's own type that the declared type cannot hold
    /// (an unsigned integer beyond i64, an Excel error cell): the reason.
    Invalid(&'static str),
}

/// One row: its line (CSV: the physical line; Parquet: the row number;
/// xlsx: the sheet's row number), and its cells or why the row as a whole
/// is unreadable.
pub(crate) struct SourceRow {
    pub line: u64,
    pub cells: Result<Vec<RawCell>, String>,
}

pub(crate) type Sink<'a> = dyn FnMut(SourceRow) -> Result<(), IngestError> + 'a;

/// The first bytes of each binary format.
const PARQUET_MAGIC: &[u8] = b"PAR1";
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// What the first bytes say a file is.
fn sniff(head: &[u8]) -> &'static str {
    if head.starts_with(PARQUET_MAGIC) {
        "a Parquet file"
    } else if head.starts_with(ZIP_MAGIC) {
        "a ZIP archive (an .xlsx workbook?)"
    } else if head.starts_with(b"\xD0\xCF\x11\xE0") {
        "an old Excel .xls (OLE) file; save it as .xlsx or CSV"
    } else if head.starts_with(b"%PDF") {
        "a PDF document"
    } else {
        "text"
    }
}

pub(crate) fn display_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Decides the format (given, else by extension) and refuses a file whose
/// first bytes say it is something else.
pub(crate) fn detect_format(path: &Path, options: &IngestOptions) -> Result<FileFormat, IngestError> {
    let file = display_name(path);
    let format = match options.format.or_else(|| FileFormat::from_extension(path)) {
        Some(f) => f,
        None => {
            return Err(IngestError::Format {
                file,
                message: "unknown format: name the file .csv, .parquet or .xlsx, or pass --format".into(),
            });
        }
    };
    // A regular file only: a device or a FIFO never ends or never starts.
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if !meta.is_file() {
        return Err(IngestError::Format {
            file,
            message: "not a regular file (a directory, device or pipe)".into(),
        });
    }
    let mut head = [0u8; 8];
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..]).map_err(io(path))?;
        if k == 0 {
            break;
        }
        n += k;
    }
    if n == 0 {
        return Err(IngestError::Empty {
            file,
            message: "the file is empty (0 bytes)".into(),
        });
    }
    let seen = sniff(&head[..n]);
    let ok = match format {
        FileFormat::Csv => seen == "text",
        FileFormat::Parquet => seen == "a Parquet file",
        FileFormat::Xlsx => seen.starts_with("a ZIP archive"),
    };
    if !ok {
        return Err(IngestError::Format {
            file,
            message: format!(
                "the file is read as {} but its first bytes say it is {seen}",
                format.as_str()
            ),
        });
    }
    Ok(format)
}

/// Maps the file's column names to the entry's fields: for each field, the
/// index of its column. Missing and extra columns are errors naming them.
pub(crate) fn map_columns(file: &str, names: &[String], fields: &[Field]) -> Result<Vec<usize>, IngestError> {
    let mut seen = std::collections::BTreeSet::new();
    for n in names {
        if !seen.insert(n.as_str()) {
            return Err(IngestError::Schema {
                file: file.to_string(),
                message: format!("column `{n}` appears twice in the header"),
            });
        }
    }
    let missing: Vec<&str> = fields
        .iter()
        .filter(|f| !names.contains(&f.name))
        .map(|f| f.name.as_str())
        .collect();
    let extra: Vec<&str> = names
        .iter()
        .filter(|n| !fields.iter().any(|f| f.name == **n))
        .map(String::as_str)
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "missing column{} {} (declared in the catalog entry)",
            if missing.len() > 1 { "s" } else { "" },
            missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    if !extra.is_empty() {
        problems.push(format!(
            "extra column{} {} (not in the catalog entry: add {} to the entry or remove {} from the file)",
            if extra.len() > 1 { "s" } else { "" },
            extra.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
            if extra.len() > 1 { "them" } else { "it" },
            if extra.len() > 1 { "them" } else { "it" },
        ));
    }
    if !problems.is_empty() {
        return Err(IngestError::Schema {
            file: file.to_string(),
            message: problems.join("; "),
        });
    }
    Ok(fields
        .iter()
        .map(|f| names.iter().position(|n| *n == f.name).unwrap_or_default())
        .collect())
}

/// Reads a Parquet file (a stored version's part file), pushing each row to `sink`.
pub(crate) fn read_parquet(path: &Path, fields: &[Field], sink: &mut Sink<'_>) -> Result<(), IngestError> {
    parquet_file::read(path, fields, sink)
}

/// Reads `path` as `format`, pushing each row to `sink`.
pub(crate) fn read_rows(
    path: &Path,
    format: FileFormat,
    fields: &[Field],
    options: &IngestOptions,
    sink: &mut Sink<'_>,
) -> Result<(), IngestError> {
    match format {
        FileFormat::Csv => csv_file::read(path, fields, &options.csv, sink),
        FileFormat::Parquet => parquet_file::read(path, fields, sink),
        FileFormat::Xlsx => xlsx_file::read(path, fields, options.sheet.as_deref(), options.csv.header, sink),
    }
}
