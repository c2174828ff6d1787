//! Analysis jobs: a program (a WebAssembly module) computes a fixed-size
//! vector of numbers from a block of rows; the sandbox releases the noisy
//! average over disjoint blocks (sample and aggregate).
//!
//! ```text
//! admit → check the row query → charge ε → collect rows with their unit
//!   → assign units to k blocks (keyed hash, fresh secret key per job)
//!   → run the program on each block (a failure is a default output)
//!   → clamp, average, noise (sandbox-dp) → record
//! ```

use crate::RuntimeError;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{cast, concat_batches, take};
use arrow::datatypes::{DataType, Field, Schema, UInt32Type};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A program run on each block.
pub trait AnalysisProgram: Send + Sync {
    /// The name of the analysis.
    fn name(&self) -> &str;
    /// Each output coordinate: (name, lower, upper).
    fn outputs(&self) -> Vec<(String, f64, f64)>;
    /// SHA-256 of the program, for the record.
    fn digest(&self) -> String;
    /// Runs on one block. The error text goes to the operator log only.
    fn run_block(&self, block: &RecordBatch) -> Result<Vec<f64>, String>;
}

/// Options of an analysis job.
#[derive(Debug, Clone)]
pub struct AnalysisOptions {
    /// k: disjoint blocks (default 32). More blocks: less noise per
    /// coordinate (range · d / (k · ε)) but fewer rows per block.
    pub blocks: usize,
    /// ε to spend (default: the policies' per-query cap).
    pub epsilon: Option<f64>,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            blocks: 32,
            epsilon: None,
        }
    }
}

/// The largest k accepted.
pub const MAX_BLOCKS: usize = 4096;

/// Splits rows (first column `__u`, the privacy unit) into `k` blocks by
/// a keyed hash of the unit, dropping the unit column and casting numeric
/// columns to Float64 for the program.
pub fn split_into_blocks(
    batches: &[RecordBatch],
    blocks: usize,
    key: &[u8; 32],
) -> Result<Vec<RecordBatch>, RuntimeError> {
    let arrow_err = |e: arrow::error::ArrowError| RuntimeError::Setup(format!("cannot prepare blocks: {e}"));
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let fields: Vec<Field> = first
        .schema()
        .fields()
        .iter()
        .skip(1)
        .map(|f| {
            let t = if f.data_type().is_numeric() {
                DataType::Float64
            } else {
                f.data_type().clone()
            };
            Field::new(f.name(), t, true)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let mut per_block: Vec<Vec<RecordBatch>> = vec![Vec::new(); blocks];
    for batch in batches {
        let units = cast(batch.column(0), &DataType::Utf8).map_err(arrow_err)?;
        let units = units.as_string::<i32>();
        let mut indices: Vec<Vec<u32>> = vec![Vec::new(); blocks];
        for r in 0..batch.num_rows() {
            if units.is_null(r) {
                continue;
            }
            let h = Sha256::new()
                .chain_update(key)
                .chain_update(units.value(r).as_bytes())
                .finalize();
            let mut b8 = [0u8; 8];
            b8.copy_from_slice(&h[..8]);
            indices[(u64::from_le_bytes(b8) % blocks as u64) as usize].push(r as u32);
        }
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .skip(1)
            .zip(schema.fields())
            .map(|(c, f)| cast(c, f.data_type()))
            .collect::<Result<_, _>>()
            .map_err(arrow_err)?;
        for (b, idx) in indices.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let idx = arrow::array::PrimitiveArray::<UInt32Type>::from(idx);
            let taken: Vec<ArrayRef> = columns
                .iter()
                .map(|c| take(c.as_ref(), &idx, None))
                .collect::<Result<_, _>>()
                .map_err(arrow_err)?;
            per_block[b].push(RecordBatch::try_new(schema.clone(), taken).map_err(arrow_err)?);
        }
    }
    per_block
        .into_iter()
        .map(|parts| concat_batches(&schema, &parts).map_err(arrow_err))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};

    #[test]
    fn one_unit_lands_in_exactly_one_block() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("__u", DataType::Utf8, true),
            Field::new("x", DataType::Int64, true),
        ]));
        let units: Vec<String> = (0..300).map(|i| format!("unit-{}", i % 37)).collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(units.clone())),
                Arc::new(Int64Array::from((0..300).map(|i| (i % 37) as i64).collect::<Vec<_>>())),
            ],
        )
        .expect("batch");
        let key = [7u8; 32];
        let blocks = split_into_blocks(&[batch.clone(), batch], 8, &key).expect("blocks");
        assert_eq!(blocks.len(), 8);
        assert_eq!(blocks.iter().map(|b| b.num_rows()).sum::<usize>(), 600);
        // x identifies the unit here: each value must appear in one block only.
        let mut seen = std::collections::HashMap::new();
        for (b, block) in blocks.iter().enumerate() {
            let x = block
                .column(0)
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("float64");
            for v in x.values() {
                let prev = seen.insert(*v as i64, b);
                assert!(prev.is_none() || prev == Some(b), "unit {v} in two blocks");
            }
        }
        assert_eq!(seen.len(), 37);
        // A different key moves units around (with overwhelming probability).
        let other = split_into_blocks(&[blocks_input()], 8, &[9u8; 32]).expect("blocks");
        let same = split_into_blocks(&[blocks_input()], 8, &[7u8; 32]).expect("blocks");
        assert_ne!(
            other.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            same.iter().map(|b| b.num_rows()).collect::<Vec<_>>()
        );
    }

    fn blocks_input() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("__u", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let units: Vec<String> = (0..1000).map(|i| format!("u{i}")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(units)),
                Arc::new(Float64Array::from(vec![1.0; 1000])),
            ],
        )
        .expect("batch")
    }
}
