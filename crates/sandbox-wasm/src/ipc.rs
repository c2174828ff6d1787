//! Arrow IPC on the host side of the ABI: encode a call's input, decode and
//! check a guest's output. Guest bytes are untrusted: every failure becomes
//! [`WasmError::BadOutput`], and decoding runs under `catch_unwind` in case a
//! malformed stream reaches a panic inside Arrow.

use crate::error::WasmError;
use crate::manifest::Bounds;
use arrow::array::{Array, Float64Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Encodes `batch` as an Arrow IPC stream of one batch.
pub(crate) fn encode(batch: &RecordBatch, max_bytes: usize) -> Result<Vec<u8>, WasmError> {
    let encode_err = |e: arrow::error::ArrowError| WasmError::Encode(e.to_string());
    let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema()).map_err(encode_err)?;
    writer.write(batch).map_err(encode_err)?;
    writer.finish().map_err(encode_err)?;
    let bytes = writer.into_inner().map_err(encode_err)?;
    if bytes.len() > max_bytes {
        return Err(WasmError::InputTooLarge {
            size: bytes.len(),
            max: max_bytes,
        });
    }
    Ok(bytes)
}

fn bad(detail: impl Into<String>) -> WasmError {
    WasmError::BadOutput { detail: detail.into() }
}

/// Decodes a UDF's result: one batch, one Float64 column, `rows` rows;
/// values clamped to `bounds` (NaN and nulls kept).
pub(crate) fn decode_udf_output(bytes: &[u8], rows: usize, bounds: Bounds) -> Result<Float64Array, WasmError> {
    let decoded = catch_unwind(AssertUnwindSafe(|| read_single_batch(bytes)))
        .map_err(|_| bad("the Arrow IPC stream made the decoder panic"))??;
    if decoded.num_columns() != 1 {
        return Err(bad(format!("{} columns instead of one", decoded.num_columns())));
    }
    let column = decoded.column(0);
    if column.data_type() != &DataType::Float64 {
        return Err(bad(format!(
            "a column of type {} instead of Float64",
            column.data_type()
        )));
    }
    if column.len() != rows {
        return Err(bad(format!("{} rows for an input of {rows}", column.len())));
    }
    let Some(values) = column.as_any().downcast_ref::<Float64Array>() else {
        return Err(bad("a Float64 column that is not a Float64Array"));
    };
    let nans = values.iter().flatten().filter(|v| v.is_nan()).count();
    if nans > 0 {
        tracing::debug!(nans, rows, "UDF returned NaN values; passed through unclamped");
    }
    Ok(values.unary(|v| bounds.clamp(v)))
}

fn read_single_batch(bytes: &[u8]) -> Result<RecordBatch, WasmError> {
    let arrow_err = |e: arrow::error::ArrowError| bad(format!("unreadable Arrow IPC stream ({e})"));
    let mut reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(arrow_err)?;
    let batch = match reader.next() {
        Some(batch) => batch.map_err(arrow_err)?,
        None => return Err(bad("an Arrow IPC stream with no record batch")),
    };
    if reader.next().is_some() {
        return Err(bad("an Arrow IPC stream with more than one record batch"));
    }
    Ok(batch)
}

/// Decodes an analysis result: exactly one little-endian f64 per declared
/// output, each clamped to its bounds (NaN kept).
pub(crate) fn decode_analysis_output(bytes: &[u8], bounds: &[Bounds]) -> Result<Vec<f64>, WasmError> {
    if bytes.len() != bounds.len() * 8 {
        return Err(bad(format!(
            "{} bytes instead of {} (8 per declared output)",
            bytes.len(),
            bounds.len() * 8
        )));
    }
    let values: Vec<f64> = bytes
        .chunks_exact(8)
        .zip(bounds)
        .map(|(chunk, b)| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(chunk);
            b.clamp(f64::from_le_bytes(raw))
        })
        .collect();
    let nans = values.iter().filter(|v| v.is_nan()).count();
    if nans > 0 {
        tracing::debug!(nans, "analysis returned NaN values; passed through unclamped");
    }
    Ok(values)
}
