//! Analysis jobs: a program (a WebAssembly module) computes a fixed-size
//! vector of numbers from a block of rows; the sandbox releases the noisy
//! average over disjoint blocks (sample and aggregate).
//!
//! ```text
//! admit → check the row query → charge ε → collect rows with their unit
//!   → assign units to k blocks (keyed hash, fresh secret key per job)
//!   → exactly k blocks, each sorted into a canonical order
//!   → run the program on each non-empty block (an empty or failed block
//!     contributes the default output)
//!   → clamp, average, noise (sandbox-dp) → record
//! ```

use crate::RuntimeError;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
use arrow::compute::{cast, concat_batches, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use arrow::row::{RowConverter, SortField};
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
    /// Runs on a block that carries **no real data** (generated from the
    /// input's schema before a job is charged, or rows of a public DP
    /// sample in a trial run): the raw, unclamped outputs, or the whole
    /// failure — the guest's own message and a hint — for the developer.
    fn trial_block(&self, block: &RecordBatch) -> Result<Vec<f64>, String> {
        self.run_block(block)
    }
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

/// The schema of the blocks a program sees, from the checked row query
/// (never from the data): its columns in order, numeric ones as Float64,
/// all nullable. The same whether the query selects rows or none.
pub fn block_schema(rows: &sandbox_sql::query::CheckedRows) -> SchemaRef {
    let source = rows.row_source.schema();
    let fields: Vec<Field> = rows
        .columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let t = source.fields().get(i).map_or(DataType::Null, |f| f.data_type().clone());
            Field::new(name, program_type(&t), true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The type a program sees for a column of type `t`.
fn program_type(t: &DataType) -> DataType {
    if t.is_numeric() { DataType::Float64 } else { t.clone() }
}

/// Splits rows (first column `__u`, the privacy unit; then the columns of
/// `schema`) into exactly `blocks` blocks by a keyed hash of the unit,
/// dropping the unit column and casting columns to `schema`'s types.
///
/// Every block has `schema`, and a block with no rows is an empty batch:
/// the number of blocks never depends on the data. Within a block, rows
/// are sorted by the keyed hash of their unit, then the unit, then their
/// values (Arrow's row format), so a block is a function of the multiset of
/// its rows, whatever batches and order the engine delivered them in.
pub fn split_into_blocks(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    blocks: usize,
    key: &[u8; 32],
) -> Result<Vec<RecordBatch>, RuntimeError> {
    let arrow_err = |e: arrow::error::ArrowError| RuntimeError::Setup(format!("cannot prepare blocks: {e}"));
    if blocks == 0 {
        return Err(RuntimeError::Setup("an analysis needs at least one block".into()));
    }
    let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); blocks];
    // Per block, the sort key of each row in `parts` order: (keyed hash, unit).
    let mut keys: Vec<Vec<([u8; 32], String)>> = vec![Vec::new(); blocks];
    for batch in batches {
        if batch.num_columns() != schema.fields().len() + 1 {
            return Err(RuntimeError::Setup(format!(
                "cannot prepare blocks: {} columns for a schema of {}",
                batch.num_columns(),
                schema.fields().len() + 1
            )));
        }
        let units = cast(batch.column(0), &DataType::Utf8).map_err(arrow_err)?;
        let units = units.as_string::<i32>();
        let mut indices: Vec<Vec<u32>> = vec![Vec::new(); blocks];
        for r in 0..batch.num_rows() {
            if units.is_null(r) {
                continue;
            }
            let unit = units.value(r);
            let h: [u8; 32] = Sha256::new()
                .chain_update(key)
                .chain_update(unit.as_bytes())
                .finalize()
                .into();
            let mut b8 = [0u8; 8];
            b8.copy_from_slice(&h[..8]);
            let b = (u64::from_le_bytes(b8) % blocks as u64) as usize;
            indices[b].push(r as u32);
            keys[b].push((h, unit.to_string()));
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
            let options = RecordBatchOptions::new().with_row_count(Some(idx.len()));
            parts[b].push(RecordBatch::try_new_with_options(schema.clone(), taken, &options).map_err(arrow_err)?);
        }
    }
    parts
        .into_iter()
        .zip(keys)
        .map(|(parts, keys)| {
            let block = concat_batches(schema, &parts).map_err(arrow_err)?;
            sort_block(block, &keys).map_err(arrow_err)
        })
        .collect()
}

/// Sorts a block's rows by (keyed unit hash, unit, values).
fn sort_block(block: RecordBatch, keys: &[([u8; 32], String)]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let n = block.num_rows();
    if n <= 1 {
        return Ok(block);
    }
    let values = if block.num_columns() == 0 {
        None
    } else {
        let converter = RowConverter::new(
            block
                .schema()
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        Some(converter.convert_columns(block.columns())?)
    };
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        keys[a].cmp(&keys[b]).then_with(|| match &values {
            Some(v) => v.row(a).cmp(&v.row(b)),
            None => std::cmp::Ordering::Equal,
        })
    });
    let order = arrow::array::PrimitiveArray::<UInt32Type>::from(order);
    let columns: Vec<ArrayRef> = block
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &order, None))
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new_with_options(
        block.schema(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};

    fn x_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]))
    }

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
        let blocks = split_into_blocks(&[batch.clone(), batch], &x_schema(), 8, &key).expect("blocks");
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
        let other = split_into_blocks(&[blocks_input()], &x_schema(), 8, &[9u8; 32]).expect("blocks");
        let same = split_into_blocks(&[blocks_input()], &x_schema(), 8, &[7u8; 32]).expect("blocks");
        assert_ne!(
            other.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            same.iter().map(|b| b.num_rows()).collect::<Vec<_>>()
        );
    }

    /// No rows at all (a filter that selects nothing): still k blocks, each
    /// an empty batch with the query's schema.
    #[test]
    fn empty_input_gives_k_empty_blocks_with_the_query_schema() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("label", DataType::Utf8, true),
        ]));
        for batches in [
            Vec::new(),
            vec![RecordBatch::new_empty(Arc::new(Schema::new(vec![
                Field::new("__u", DataType::Utf8, true),
                Field::new("x", DataType::Int32, true),
                Field::new("label", DataType::Utf8, true),
            ])))],
        ] {
            let blocks = split_into_blocks(&batches, &schema, 5, &[1u8; 32]).expect("blocks");
            assert_eq!(blocks.len(), 5);
            for b in &blocks {
                assert_eq!(b.num_rows(), 0);
                assert_eq!(b.schema(), schema);
            }
        }
    }

    /// Units u0..u39 with several rows each, some values repeated, some
    /// null; the rows in order `order`, cut into batches of `size`.
    fn delivered(order: &[usize], size: usize) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("__u", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
            Field::new("label", DataType::Utf8, true),
        ]));
        let rows: Vec<(String, Option<f64>, Option<String>)> = (0..200)
            .map(|i| {
                let x = if i % 17 == 0 { None } else { Some((i % 7) as f64) };
                let label = if i % 5 == 0 { None } else { Some(format!("l{}", i % 3)) };
                (format!("u{}", i % 40), x, label)
            })
            .collect();
        order
            .chunks(size)
            .map(|chunk| {
                let u: StringArray = chunk.iter().map(|&i| Some(rows[i].0.clone())).collect();
                let x: Float64Array = chunk.iter().map(|&i| rows[i].1).collect();
                let l: StringArray = chunk.iter().map(|&i| rows[i].2.clone()).collect();
                RecordBatch::try_new(schema.clone(), vec![Arc::new(u), Arc::new(x), Arc::new(l)]).expect("batch")
            })
            .collect()
    }

    #[test]
    fn blocks_do_not_depend_on_batching_or_row_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("label", DataType::Utf8, true),
        ]));
        let key = [3u8; 32];
        let forward: Vec<usize> = (0..200).collect();
        let backward: Vec<usize> = (0..200).rev().collect();
        // A fixed shuffle: i·73 mod 200 is a permutation (gcd(73, 200) = 1).
        let shuffled: Vec<usize> = (0..200).map(|i| (i * 73) % 200).collect();
        let reference = split_into_blocks(&delivered(&forward, 200), &schema, 6, &key).expect("blocks");
        let bytes = |blocks: &[RecordBatch]| -> Vec<Vec<u8>> {
            blocks
                .iter()
                .map(|b| {
                    let mut out = Vec::new();
                    for c in b.columns() {
                        let data = c.to_data();
                        for buffer in data.buffers() {
                            out.extend_from_slice(buffer.as_slice());
                        }
                        if let Some(nulls) = data.nulls() {
                            out.extend((0..nulls.len()).map(|i| u8::from(nulls.is_valid(i))));
                        }
                    }
                    out
                })
                .collect()
        };
        for (order, size) in [
            (&forward, 7),
            (&backward, 200),
            (&backward, 13),
            (&shuffled, 1),
            (&shuffled, 64),
        ] {
            let blocks = split_into_blocks(&delivered(order, size), &schema, 6, &key).expect("blocks");
            assert_eq!(blocks, reference, "batches of {size}");
            assert_eq!(bytes(&blocks), bytes(&reference), "batches of {size}");
        }
        assert_eq!(reference.iter().map(|b| b.num_rows()).sum::<usize>(), 200);
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
