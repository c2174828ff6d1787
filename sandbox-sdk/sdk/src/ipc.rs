//! Arrow IPC encoding and decoding, and conversion of columns to `f64`.
//!
//! These are the wire formats of ABI version 1:
//!
//! * inputs: an Arrow IPC **stream** holding exactly one record batch
//!   ([`decode_batch`], [`encode_batch`]);
//! * UDF results: an Arrow IPC stream of one batch with a single non-null
//!   Float64 column named [`RESULT_COLUMN`] ([`encode_result`],
//!   [`decode_result`]);
//! * analysis results: raw little-endian `f64` values ([`encode_f64s`],
//!   [`decode_f64s`]).
//!
//! The encoders exist in the guest; the decoders of outputs are here so that a
//! job's host-side tests (and the host) can read what a guest returns.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType, Float64Array, RecordBatch};
use arrow_buffer::{Buffer, ScalarBuffer};
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema};

use crate::SdkError;

/// Name of the single column of a UDF's result batch.
pub const RESULT_COLUMN: &str = "result";

/// Decode an Arrow IPC stream that must hold exactly one record batch.
///
/// A stream with a schema but no batch decodes as an empty batch of that
/// schema; an empty input or more than one batch is rejected
/// ([`SdkError::BadInput`]). Decoding is incremental (Arrow's push-based
/// `StreamDecoder`), so a corrupt length prefix cannot make the guest allocate
/// more than the input's size, and the batch's arrays share one copy of the
/// input.
pub fn decode_batch(bytes: &[u8]) -> Result<RecordBatch, SdkError> {
    let bad = |e: arrow_schema::ArrowError| SdkError::BadInput(format!("not a valid Arrow IPC stream: {e}"));
    let mut buffer = Buffer::from(bytes);
    let mut decoder = StreamDecoder::new();
    let mut batch = None;
    while !buffer.is_empty() {
        if let Some(b) = decoder.decode(&mut buffer).map_err(bad)? {
            if batch.is_some() {
                return Err(SdkError::BadInput(
                    "the input stream holds more than one record batch".into(),
                ));
            }
            batch = Some(b);
        }
    }
    decoder.finish().map_err(bad)?;
    match (batch, decoder.schema()) {
        (Some(b), _) => Ok(b),
        (None, Some(schema)) => Ok(RecordBatch::new_empty(schema)),
        (None, None) => Err(SdkError::BadInput("the input stream holds no schema".into())),
    }
}

/// Encode one record batch as an Arrow IPC stream (what the host sends).
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, SdkError> {
    let err = |e: arrow_schema::ArrowError| SdkError::Output(format!("cannot encode Arrow IPC: {e}"));
    let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema()).map_err(err)?;
    writer.write(batch).map_err(err)?;
    writer.finish().map_err(err)?;
    writer.into_inner().map_err(err)
}

/// The schema of a UDF's result: one non-null Float64 column [`RESULT_COLUMN`].
pub fn result_schema() -> Schema {
    Schema::new(vec![Field::new(RESULT_COLUMN, DataType::Float64, false)])
}

/// Encode UDF results as an Arrow IPC stream of one batch with one Float64
/// column [`RESULT_COLUMN`].
pub fn encode_result(values: Vec<f64>) -> Result<Vec<u8>, SdkError> {
    let array = Float64Array::new(ScalarBuffer::from(values), None);
    let batch = RecordBatch::try_new(Arc::new(result_schema()), vec![Arc::new(array)])
        .map_err(|e| SdkError::Output(format!("cannot build the result batch: {e}")))?;
    encode_batch(&batch)
}

/// Decode a UDF's result stream back into its values (nulls, which the SDK
/// never writes, read as NaN).
pub fn decode_result(bytes: &[u8]) -> Result<Vec<f64>, SdkError> {
    let batch = decode_batch(bytes)?;
    if batch.num_columns() != 1 || batch.schema().field(0).name() != RESULT_COLUMN {
        return Err(SdkError::BadInput(format!(
            "a result batch has exactly one column `{RESULT_COLUMN}`"
        )));
    }
    to_f64_vec(batch.column(0).as_ref())
}

/// Encode analysis outputs as raw little-endian `f64` values.
pub fn encode_f64s(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Decode raw little-endian `f64` values (the output of an analysis).
pub fn decode_f64s(bytes: &[u8]) -> Result<Vec<f64>, SdkError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(SdkError::BadInput(format!(
            "{} bytes is not a whole number of f64 values",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            f64::from_le_bytes(b)
        })
        .collect())
}

/// Convert a numeric Arrow column to `f64` values, **nulls becoming NaN**.
///
/// Supported types: Float64, Float32, Int8–Int64, UInt8–UInt64 (64-bit
/// integers beyond 2^53 lose precision), Boolean (`true` = 1.0) and Null (all
/// NaN). Anything else is [`SdkError::BadInput`].
pub fn to_f64_vec(array: &dyn Array) -> Result<Vec<f64>, SdkError> {
    fn prim<T: ArrowPrimitiveType>(array: &dyn Array, f: impl Fn(T::Native) -> f64) -> Vec<f64> {
        let a = array.as_primitive::<T>();
        let values = a.values().iter().map(|&v| f(v));
        match a.nulls().filter(|n| n.null_count() > 0) {
            // The common case: one tight loop over the values buffer.
            None => values.collect(),
            Some(nulls) => values
                .zip(nulls.iter())
                .map(|(v, valid)| if valid { v } else { f64::NAN })
                .collect(),
        }
    }
    Ok(match array.data_type() {
        DataType::Float64 => prim::<Float64Type>(array, |v| v),
        DataType::Float32 => prim::<Float32Type>(array, f64::from),
        DataType::Int8 => prim::<Int8Type>(array, f64::from),
        DataType::Int16 => prim::<Int16Type>(array, f64::from),
        DataType::Int32 => prim::<Int32Type>(array, f64::from),
        DataType::Int64 => prim::<Int64Type>(array, |v| v as f64),
        DataType::UInt8 => prim::<UInt8Type>(array, f64::from),
        DataType::UInt16 => prim::<UInt16Type>(array, f64::from),
        DataType::UInt32 => prim::<UInt32Type>(array, f64::from),
        DataType::UInt64 => prim::<UInt64Type>(array, |v| v as f64),
        DataType::Boolean => {
            let a = array.as_boolean();
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        f64::NAN
                    } else {
                        f64::from(u8::from(a.value(i)))
                    }
                })
                .collect()
        }
        DataType::Null => vec![f64::NAN; array.len()],
        other => return Err(SdkError::BadInput(format!("column type {other} is not numeric"))),
    })
}

/// The column `name` of `batch` as `f64` values, nulls becoming NaN (see
/// [`to_f64_vec`]). A missing column is [`SdkError::BadInput`].
pub fn column_f64(batch: &RecordBatch, name: &str) -> Result<Vec<f64>, SdkError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| SdkError::BadInput(format!("the input has no column `{name}`")))?;
    to_f64_vec(column.as_ref()).map_err(|e| SdkError::BadInput(format!("column `{name}`: {}", e.message())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BooleanArray, Int32Array, StringArray, UInt64Array};

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            (
                "a",
                Arc::new(Float64Array::from(vec![Some(1.5), None, Some(-2.0)])) as Arc<dyn Array>,
            ),
            (
                "b",
                Arc::new(Int32Array::from(vec![Some(7), Some(8), None])) as Arc<dyn Array>,
            ),
            (
                "c",
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])) as Arc<dyn Array>,
            ),
            ("d", Arc::new(UInt64Array::from(vec![1u64, 2, 3])) as Arc<dyn Array>),
        ])
        .unwrap()
    }

    #[test]
    fn batch_round_trips_through_ipc() {
        let b = batch();
        let bytes = encode_batch(&b).unwrap();
        let back = decode_batch(&bytes).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn nulls_become_nan() {
        let b = batch();
        let a = column_f64(&b, "a").unwrap();
        assert_eq!(a[0], 1.5);
        assert!(a[1].is_nan());
        assert_eq!(a[2], -2.0);
        let i = column_f64(&b, "b").unwrap();
        assert_eq!(&i[..2], &[7.0, 8.0]);
        assert!(i[2].is_nan());
        let c = column_f64(&b, "c").unwrap();
        assert_eq!(&c[..2], &[1.0, 0.0]);
        assert!(c[2].is_nan());
        assert_eq!(column_f64(&b, "d").unwrap(), vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn missing_and_non_numeric_columns_are_bad_input() {
        let b = batch();
        assert_eq!(column_f64(&b, "zz").unwrap_err().code(), sandbox_abi::ERR_BAD_INPUT);
        let s = StringArray::from(vec!["x"]);
        assert_eq!(to_f64_vec(&s).unwrap_err().code(), sandbox_abi::ERR_BAD_INPUT);
    }

    #[test]
    fn result_round_trips() {
        let values = vec![0.25, 0.5, f64::NAN, 1.0];
        let bytes = encode_result(values.clone()).unwrap();
        let batch = decode_batch(&bytes).unwrap();
        assert_eq!(batch.num_columns(), 1);
        assert_eq!(batch.schema().field(0).name(), RESULT_COLUMN);
        assert_eq!(batch.schema().field(0).data_type(), &DataType::Float64);
        let back = decode_result(&bytes).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(&back[..2], &values[..2]);
        assert!(back[2].is_nan());
        // An empty result is still a valid one-batch stream.
        assert_eq!(
            decode_result(&encode_result(vec![]).unwrap()).unwrap(),
            Vec::<f64>::new()
        );
    }

    #[test]
    fn f64s_round_trip() {
        let v = [1.0, -2.5, 1e-300, f64::MAX];
        let bytes = encode_f64s(&v);
        assert_eq!(bytes.len(), 32);
        assert_eq!(&bytes[..8], &1.0f64.to_le_bytes());
        assert_eq!(decode_f64s(&bytes).unwrap(), v.to_vec());
        assert!(decode_f64s(&bytes[..7]).is_err());
    }

    #[test]
    fn garbage_and_multi_batch_streams_are_rejected() {
        assert_eq!(
            decode_batch(b"definitely not arrow").unwrap_err().code(),
            sandbox_abi::ERR_BAD_INPUT
        );
        assert!(decode_batch(&[]).is_err());
        let b = batch();
        let mut w = StreamWriter::try_new(Vec::new(), &b.schema()).unwrap();
        w.write(&b).unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        let two = w.into_inner().unwrap();
        assert_eq!(decode_batch(&two).unwrap_err().code(), sandbox_abi::ERR_BAD_INPUT);
    }

    #[test]
    fn schema_only_stream_is_an_empty_batch() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
        let mut w = StreamWriter::try_new(Vec::new(), &schema).unwrap();
        w.finish().unwrap();
        let bytes = w.into_inner().unwrap();
        let b = decode_batch(&bytes).unwrap();
        assert_eq!(b.num_rows(), 0);
        assert_eq!(b.schema(), schema);
    }
}
