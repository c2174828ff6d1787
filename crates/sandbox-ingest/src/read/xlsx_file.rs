//! Excel `.xlsx` through `calamine`'s cell reader: cells arrive in sheet
//! order and one row is assembled at a time. The first row names the
//! columns unless there is no header.

use super::{RawCell, Sink, SourceRow, display_name, map_columns};
use crate::IngestError;
use calamine::{DataRef, Reader, Xlsx};
use sandbox_model::Field;
use std::path::Path;

/// Days from 0000-03-01-based civil date to 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn raw(value: &DataRef<'_>) -> RawCell {
    match value {
        DataRef::Empty => RawCell::Null,
        DataRef::Int(i) => RawCell::Int(*i),
        DataRef::Float(f) => RawCell::Float(*f),
        DataRef::Bool(b) => RawCell::Bool(*b),
        DataRef::String(s) => text(s),
        DataRef::SharedString(s) => text(s),
        DataRef::DateTimeIso(s) => text(s),
        DataRef::DateTime(dt) if dt.is_datetime() => {
            let (y, m, d, ..) = dt.to_ymd_hms_milli();
            match i32::try_from(days_from_civil(i64::from(y), u32::from(m), u32::from(d))) {
                Ok(days) => RawCell::Date(days),
                Err(_) => RawCell::Invalid("a date out of range"),
            }
        }
        DataRef::DateTime(_) | DataRef::DurationIso(_) => RawCell::Invalid("a duration, not a value"),
        DataRef::Error(_) => RawCell::Invalid("an Excel error cell (#N/A, #VALUE!, …)"),
    }
}

fn text(s: &str) -> RawCell {
    let s = s.trim();
    if s.is_empty() {
        RawCell::Null
    } else {
        RawCell::Text(s.to_string())
    }
}

pub(super) fn read(
    path: &Path,
    fields: &[Field],
    sheet: Option<&str>,
    header: bool,
    sink: &mut Sink<'_>,
) -> Result<(), IngestError> {
    let file = display_name(path);
    let format = |message: String| IngestError::Format {
        file: file.clone(),
        message,
    };
    let mut workbook: Xlsx<_> =
        calamine::open_workbook(path).map_err(|e| format(format!("not a readable .xlsx workbook: {e}")))?;
    let name = match sheet {
        Some(s) => s.to_string(),
        None => workbook
            .sheet_names()
            .first()
            .cloned()
            .ok_or_else(|| format("the workbook has no worksheet".into()))?,
    };
    let mut cells = workbook
        .worksheet_cells_reader(&name)
        .map_err(|e| format(format!("worksheet `{name}`: {e}")))?;
    let mut current: Option<(u32, Vec<RawCell>)> = None;
    let mut map: Option<(Vec<usize>, usize)> = if header {
        None
    } else {
        Some(((0..fields.len()).collect(), fields.len()))
    };
    let mut any = false;
    let mut emit = |row: u32, values: Vec<RawCell>, map: &mut Option<(Vec<usize>, usize)>| -> Result<(), IngestError> {
        any = true;
        let Some((m, width)) = map else {
            let names: Vec<String> = values
                .iter()
                .map(|v| match v {
                    RawCell::Text(s) => s.clone(),
                    RawCell::Null => String::new(),
                    other => format!("{other:?}"),
                })
                .collect();
            let names: Vec<String> = {
                let mut n = names;
                while n.last().is_some_and(String::is_empty) {
                    n.pop();
                }
                n
            };
            let width = names.len();
            *map = Some((map_columns(&file, &names, fields)?, width));
            return Ok(());
        };
        if values.iter().all(|v| *v == RawCell::Null) {
            return Ok(());
        }
        let line = u64::from(row) + 1;
        let cells = if values.len() > *width && values[*width..].iter().any(|v| *v != RawCell::Null) {
            Err(format!("values beyond the {width} named columns"))
        } else {
            Ok(m.iter()
                .map(|&i| values.get(i).cloned().unwrap_or(RawCell::Null))
                .collect())
        };
        sink(SourceRow { line, cells })
    };
    loop {
        let next = cells.next_cell().map_err(|e| IngestError::Format {
            file: display_name(path),
            message: format!("worksheet `{name}`: {e}"),
        })?;
        let Some(cell) = next else { break };
        let (row, col) = cell.get_position();
        match &mut current {
            Some((r, values)) if *r == row => {
                if values.len() <= col as usize {
                    values.resize(col as usize + 1, RawCell::Null);
                }
                values[col as usize] = raw(cell.get_value());
            }
            _ => {
                if let Some((r, values)) = current.take() {
                    emit(r, values, &mut map)?;
                }
                let mut values = vec![RawCell::Null; col as usize + 1];
                values[col as usize] = raw(cell.get_value());
                current = Some((row, values));
            }
        }
    }
    if let Some((r, values)) = current.take() {
        emit(r, values, &mut map)?;
    }
    if !any {
        return Err(IngestError::Empty {
            file: display_name(path),
            message: format!("worksheet `{name}` is empty"),
        });
    }
    Ok(())
}
