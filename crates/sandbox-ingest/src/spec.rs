//! What an owner hands over with a file: its format and reading options,
//! the checks to run on its columns, and the thresholds that refuse it.

use crate::IngestError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The file formats a dataset may be registered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Csv,
    Parquet,
    Xlsx,
}

impl FileFormat {
    /// The format a file name's extension says (`.csv`, `.txt`, `.tsv`,
    /// `.parquet`, `.xlsx`), or `None`.
    pub fn from_extension(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "txt" | "tsv" => Some(FileFormat::Csv),
            "parquet" | "pq" => Some(FileFormat::Parquet),
            "xlsx" => Some(FileFormat::Xlsx),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Result<Self, IngestError> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(FileFormat::Csv),
            "parquet" => Ok(FileFormat::Parquet),
            "xlsx" | "excel" => Ok(FileFormat::Xlsx),
            other => Err(IngestError::Spec(format!(
                "unknown format `{other}`: expected csv, parquet or xlsx"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
            FileFormat::Xlsx => "xlsx",
        }
    }
}

/// Text encodings of CSV files. Government exports are often GB18030 or
/// its subset GBK; both are read by the GB18030 decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TextEncoding {
    #[default]
    Utf8,
    Gb18030,
}

impl TextEncoding {
    pub fn parse(s: &str) -> Result<Self, IngestError> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" => Ok(TextEncoding::Utf8),
            "gb18030" | "gbk" | "gb2312" | "cp936" => Ok(TextEncoding::Gb18030),
            other => Err(IngestError::Spec(format!(
                "unknown encoding `{other}`: expected utf-8, gb18030 or gbk"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::Gb18030 => "GB18030",
        }
    }

    pub(crate) fn encoding(self) -> &'static encoding_rs::Encoding {
        match self {
            TextEncoding::Utf8 => encoding_rs::UTF_8,
            TextEncoding::Gb18030 => encoding_rs::GB18030,
        }
    }
}

/// How a CSV file is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsvOptions {
    pub encoding: TextEncoding,
    /// One byte (`,`, `;`, `\t`, `|`).
    pub delimiter: u8,
    /// The first line names the columns (any order); without it, the
    /// columns are in the catalog entry's order.
    pub header: bool,
    /// The longest line read, in bytes; a longer one fails the
    /// registration instead of being held in memory.
    pub max_line_bytes: usize,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            encoding: TextEncoding::Utf8,
            delimiter: b',',
            header: true,
            max_line_bytes: 1 << 20,
        }
    }
}

/// A check of a column's values beyond its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueCheck {
    /// 统一社会信用代码: 18 characters with valid check characters (GB 32100-2015).
    CreditCode,
    /// One of Shanghai's 16 district names.
    District,
}

impl ValueCheck {
    pub fn parse(s: &str) -> Result<Self, IngestError> {
        match s {
            "credit_code" => Ok(ValueCheck::CreditCode),
            "district" => Ok(ValueCheck::District),
            other => Err(IngestError::Spec(format!(
                "unknown check `{other}`: expected credit_code or district"
            ))),
        }
    }

    /// The check a column gets when none is given: by its name.
    pub fn default_for(column: &str) -> Option<Self> {
        match column {
            "credit_code" => Some(ValueCheck::CreditCode),
            "district" => Some(ValueCheck::District),
            _ => None,
        }
    }
}

/// The owner's thresholds: a registration whose quality report exceeds any
/// of them is refused. `None` means report only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Rows that could not be read (wrong field count, a value not of the
    /// column's type, a malformed date); they are left out when allowed.
    pub max_rejected_rows: Option<u64>,
    /// Rows whose declared key repeats an earlier row's.
    pub max_duplicate_keys: Option<u64>,
    /// Credit codes with a wrong check character, over all columns.
    pub max_invalid_codes: Option<u64>,
    /// District names not in the list, over all columns.
    pub max_unknown_districts: Option<u64>,
    /// Measure values outside the policy's bounds, over all columns.
    pub max_out_of_bounds: Option<u64>,
    /// The largest share of nulls in any one column, 0 to 1.
    pub max_null_fraction: Option<f64>,
}

impl Default for Thresholds {
    /// Strict on what makes the stored data wrong (unreadable rows,
    /// duplicate keys), report-only on the rest.
    fn default() -> Self {
        Thresholds {
            max_rejected_rows: Some(0),
            max_duplicate_keys: Some(0),
            max_invalid_codes: None,
            max_unknown_districts: None,
            max_out_of_bounds: None,
            max_null_fraction: None,
        }
    }
}

/// Everything about one registration besides the file, the catalog entry
/// and the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct IngestOptions {
    /// The format; `None` takes it from the file's extension.
    pub format: Option<FileFormat>,
    pub csv: CsvOptions,
    /// The worksheet of an `.xlsx` file (default: the first).
    pub sheet: Option<String>,
    /// Columns whose values together identify a row; duplicates are counted.
    pub key: Vec<String>,
    /// Checks by column; columns named `credit_code` or `district` get
    /// theirs unless listed here.
    pub checks: BTreeMap<String, ValueCheck>,
    pub thresholds: Thresholds,
}
