//! CSV in UTF-8 or GB18030/GBK, through the `csv` crate over a streaming
//! decoder: one record in memory at a time.

use super::decode::{DecodeProblem, DecodingReader};
use super::{RawCell, Sink, SourceRow, display_name, map_columns};
use crate::spec::{CsvOptions, TextEncoding};
use crate::{IngestError, io};
use sandbox_model::Field;
use std::path::Path;

fn csv_error(file: &str, options: &CsvOptions, e: csv::Error) -> IngestError {
    if let csv::ErrorKind::Io(inner) = e.kind()
        && let Some(problem) = inner.get_ref().and_then(|p| p.downcast_ref::<DecodeProblem>())
    {
        return match *problem {
            DecodeProblem::Malformed { line, offset } => IngestError::Encoding {
                file: file.to_string(),
                encoding: options.encoding.as_str(),
                line,
                offset,
                hint: match options.encoding {
                    TextEncoding::Utf8 => {
                        " text; if the file is GB18030 or GBK (common in government exports), pass --encoding gb18030"
                    }
                    TextEncoding::Gb18030 => " text; check the encoding the file was saved in",
                },
            },
            DecodeProblem::LineTooLong { line } => IngestError::LineTooLong {
                file: file.to_string(),
                line,
                limit: options.max_line_bytes,
            },
        };
    }
    let line = e.position().map(|p| p.line());
    IngestError::Format {
        file: file.to_string(),
        message: match line {
            Some(l) => format!("line {l}: not readable as CSV: {e}"),
            None => format!("not readable as CSV: {e}"),
        },
    }
}

pub(super) fn read(
    path: &Path,
    fields: &[Field],
    options: &CsvOptions,
    sink: &mut Sink<'_>,
) -> Result<(), IngestError> {
    let file = display_name(path);
    let mut input = std::fs::File::open(path).map_err(io(path))?;
    // A UTF-8 byte-order mark says the file is UTF-8 whatever was declared.
    let mut bom = [0u8; 3];
    let n = std::io::Read::read(&mut input, &mut bom).map_err(io(path))?;
    if options.encoding != TextEncoding::Utf8 && n == 3 && bom == [0xEF, 0xBB, 0xBF] {
        return Err(IngestError::Encoding {
            file,
            encoding: options.encoding.as_str(),
            line: 1,
            offset: 0,
            hint: " text: it starts with a UTF-8 byte-order mark; pass --encoding utf-8",
        });
    }
    std::io::Seek::rewind(&mut input).map_err(io(path))?;
    let decoded = DecodingReader::new(
        std::io::BufReader::new(input),
        options.encoding.encoding(),
        options.max_line_bytes,
    );
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(options.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(decoded);
    let mut record = csv::StringRecord::new();
    let map: Vec<usize> = if options.header {
        if !reader
            .read_record(&mut record)
            .map_err(|e| csv_error(&file, options, e))?
        {
            return Err(IngestError::Empty {
                file,
                message: "the file has no lines".into(),
            });
        }
        let names: Vec<String> = record.iter().map(|n| n.trim().to_string()).collect();
        map_columns(&file, &names, fields)?
    } else {
        (0..fields.len()).collect()
    };
    let width = if options.header { record.len() } else { fields.len() };
    while reader
        .read_record(&mut record)
        .map_err(|e| csv_error(&file, options, e))?
    {
        let line = record.position().map_or(0, |p| p.line());
        let cells = if record.len() != width {
            Err(format!("{} fields, expected {width}", record.len()))
        } else {
            Ok(map
                .iter()
                .map(|&i| match record.get(i).map(str::trim) {
                    None | Some("") => RawCell::Null,
                    Some(v) => RawCell::Text(v.to_string()),
                })
                .collect())
        };
        sink(SourceRow { line, cells })?;
    }
    Ok(())
}
