//! Parquet, in record batches of [`BATCH_ROWS`] rows: the file's column
//! types must fit the entry's declared types; values are taken cell by
//! cell so that the same checks run as for text formats.

use super::{RawCell, Sink, SourceRow, display_name, map_columns};
use crate::{IngestError, io};
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sandbox_model::{Field, FieldType};
use std::path::Path;

const BATCH_ROWS: usize = 8192;

/// Whether a file column of type `t` can hold values of the declared type.
fn fits(declared: FieldType, t: &DataType) -> bool {
    let int = matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    );
    match declared {
        FieldType::Utf8 => matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
        FieldType::Int64 => int,
        FieldType::Float64 => int || matches!(t, DataType::Float32 | DataType::Float64),
        FieldType::Boolean => matches!(t, DataType::Boolean),
        FieldType::Date => matches!(t, DataType::Date32 | DataType::Date64),
    }
}

fn type_name(t: FieldType) -> &'static str {
    match t {
        FieldType::Utf8 => "utf8",
        FieldType::Int64 => "int64",
        FieldType::Float64 => "float64",
        FieldType::Boolean => "boolean",
        FieldType::Date => "date",
    }
}

fn cell(a: &ArrayRef, i: usize) -> RawCell {
    if a.is_null(i) {
        return RawCell::Null;
    }
    match a.data_type() {
        DataType::Utf8 => RawCell::Text(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => RawCell::Text(a.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => RawCell::Text(a.as_string_view().value(i).to_string()),
        DataType::Int8 => RawCell::Int(i64::from(a.as_primitive::<Int8Type>().value(i))),
        DataType::Int16 => RawCell::Int(i64::from(a.as_primitive::<Int16Type>().value(i))),
        DataType::Int32 => RawCell::Int(i64::from(a.as_primitive::<Int32Type>().value(i))),
        DataType::Int64 => RawCell::Int(a.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => RawCell::Int(i64::from(a.as_primitive::<UInt8Type>().value(i))),
        DataType::UInt16 => RawCell::Int(i64::from(a.as_primitive::<UInt16Type>().value(i))),
        DataType::UInt32 => RawCell::Int(i64::from(a.as_primitive::<UInt32Type>().value(i))),
        DataType::UInt64 => match i64::try_from(a.as_primitive::<UInt64Type>().value(i)) {
            Ok(v) => RawCell::Int(v),
            Err(_) => RawCell::Invalid("an unsigned integer too large for int64"),
        },
        DataType::Float32 => RawCell::Float(f64::from(a.as_primitive::<arrow::datatypes::Float32Type>().value(i))),
        DataType::Float64 => RawCell::Float(a.as_primitive::<arrow::datatypes::Float64Type>().value(i)),
        DataType::Boolean => RawCell::Bool(a.as_boolean().value(i)),
        DataType::Date32 => RawCell::Date(a.as_primitive::<arrow::datatypes::Date32Type>().value(i)),
        DataType::Date64 => {
            let ms = a.as_primitive::<arrow::datatypes::Date64Type>().value(i);
            match i32::try_from(ms.div_euclid(86_400_000)) {
                Ok(d) => RawCell::Date(d),
                Err(_) => RawCell::Invalid("a date out of range"),
            }
        }
        _ => RawCell::Invalid("a value of an unsupported type"),
    }
}

pub(super) fn read(path: &Path, fields: &[Field], sink: &mut Sink<'_>) -> Result<(), IngestError> {
    let file = display_name(path);
    let corrupt = |e: parquet::errors::ParquetError| IngestError::Format {
        file: file.clone(),
        message: format!("not a complete Parquet file (truncated, or a corrupt footer): {e}"),
    };
    let input = std::fs::File::open(path).map_err(io(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(input).map_err(corrupt)?;
    let schema = builder.schema().clone();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let map = map_columns(&file, &names, fields)?;
    let mut wrong = Vec::new();
    for (field, &i) in fields.iter().zip(&map) {
        let t = schema.field(i).data_type();
        if !fits(field.data_type, t) {
            wrong.push(format!(
                "column `{}` is {t} in the file but the entry declares {}",
                field.name,
                type_name(field.data_type)
            ));
        }
    }
    if !wrong.is_empty() {
        return Err(IngestError::Schema {
            file,
            message: wrong.join("; "),
        });
    }
    if builder.metadata().file_metadata().num_rows() == 0 {
        return Err(IngestError::Empty {
            file,
            message: "the Parquet file has no rows".into(),
        });
    }
    let reader = builder.with_batch_size(BATCH_ROWS).build().map_err(corrupt)?;
    let mut row = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| IngestError::Format {
            file: file.clone(),
            message: format!("after row {row}: the file is truncated or corrupt: {e}"),
        })?;
        let columns: Vec<&ArrayRef> = map.iter().map(|&i| batch.column(i)).collect();
        for r in 0..batch.num_rows() {
            row += 1;
            let cells = columns.iter().map(|a| cell(a, r)).collect();
            sink(SourceRow {
                line: row,
                cells: Ok(cells),
            })?;
        }
    }
    Ok(())
}
