//! A released table as one Arrow record batch.
//!
//! Group keys keep their type (`Int64`, `Float64`, `Boolean`, else `Utf8`);
//! every aggregate is a nullable `Float64` (noisy or rounded value; `NULL`
//! when withheld). Nothing is added that the release did not contain: the
//! whole released table (noise scales, 95% intervals, suppressions, notes)
//! travels as JSON in the schema's metadata under [`RELEASE_METADATA_KEY`].

use crate::FlightError;
use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use sandbox_model::{ReleasedCell, ReleasedTable};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Schema metadata: the released table as JSON (the same document the HTTP
/// API returns), with each number's mechanism, noise scale and interval.
pub const RELEASE_METADATA_KEY: &str = "sandbox.release";
/// Schema metadata: the job's id (for `sandbox report`, the ledger).
pub const JOB_ID_METADATA_KEY: &str = "sandbox.job_id";
/// Schema metadata: ε spent by the job.
pub const EPSILON_METADATA_KEY: &str = "sandbox.epsilon_spent";
/// Schema metadata: δ spent by the job.
pub const DELTA_METADATA_KEY: &str = "sandbox.delta_spent";
/// Field metadata: `group_key` or the aggregate, e.g. `avg(gov.tax_payments.tax_paid)`.
pub const KIND_METADATA_KEY: &str = "sandbox.kind";

const GROUP_KEY: &str = "group_key";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum KeyType {
    Int,
    Float,
    Bool,
    Text,
}

/// The narrowest Arrow type that holds every value of a group-key column.
fn key_type<'a>(values: impl Iterator<Item = &'a Value>) -> KeyType {
    let mut seen: Option<KeyType> = None;
    for v in values {
        let t = match v {
            Value::Null => continue,
            Value::Number(n) if n.is_i64() => KeyType::Int,
            Value::Number(_) => KeyType::Float,
            Value::Bool(_) => KeyType::Bool,
            _ => KeyType::Text,
        };
        seen = Some(match (seen, t) {
            (None, t) => t,
            (Some(a), b) if a == b => a,
            (Some(KeyType::Int | KeyType::Float), KeyType::Int | KeyType::Float) => KeyType::Float,
            _ => KeyType::Text,
        });
    }
    seen.unwrap_or(KeyType::Text)
}

fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn cell_number(c: &ReleasedCell) -> Option<f64> {
    match c {
        ReleasedCell::Noisy { value, .. } | ReleasedCell::Rounded { value, .. } => Some(*value),
        ReleasedCell::Derived { value, .. } => *value,
        ReleasedCell::Withheld { .. } => None,
        ReleasedCell::Key { value } => value.as_f64(),
    }
}

fn key_column(table: &ReleasedTable, i: usize) -> (DataType, ArrayRef) {
    static NULL: Value = Value::Null;
    let values = || {
        table.rows.iter().map(move |r| match r.get(i) {
            Some(ReleasedCell::Key { value }) => value,
            _ => &NULL,
        })
    };
    match key_type(values()) {
        KeyType::Int => {
            let mut b = Int64Builder::with_capacity(table.rows.len());
            values().for_each(|v| b.append_option(v.as_i64()));
            (DataType::Int64, Arc::new(b.finish()))
        }
        KeyType::Float => {
            let mut b = Float64Builder::with_capacity(table.rows.len());
            values().for_each(|v| b.append_option(v.as_f64()));
            (DataType::Float64, Arc::new(b.finish()))
        }
        KeyType::Bool => {
            let mut b = BooleanBuilder::with_capacity(table.rows.len());
            values().for_each(|v| b.append_option(v.as_bool()));
            (DataType::Boolean, Arc::new(b.finish()))
        }
        KeyType::Text => {
            let mut b = StringBuilder::new();
            values().for_each(|v| b.append_option(key_text(v)));
            (DataType::Utf8, Arc::new(b.finish()))
        }
    }
}

fn aggregate_column(table: &ReleasedTable, i: usize) -> ArrayRef {
    let mut b = Float64Builder::with_capacity(table.rows.len());
    for row in &table.rows {
        b.append_option(row.get(i).and_then(cell_number));
    }
    Arc::new(b.finish())
}

/// Converts a released table (and its job id) to a record batch whose
/// schema carries the release's details as metadata.
pub fn released_to_batch(job_id: &str, table: &ReleasedTable) -> Result<RecordBatch, FlightError> {
    let mut fields = Vec::with_capacity(table.columns.len());
    let mut arrays = Vec::with_capacity(table.columns.len());
    for (i, column) in table.columns.iter().enumerate() {
        let (data_type, array) = if column.kind == GROUP_KEY {
            key_column(table, i)
        } else {
            (DataType::Float64, aggregate_column(table, i))
        };
        let metadata = HashMap::from([(KIND_METADATA_KEY.to_string(), column.kind.clone())]);
        fields.push(Field::new(&column.name, data_type, true).with_metadata(metadata));
        arrays.push(array);
    }
    let release = serde_json::to_string(table).map_err(|e| FlightError::Encode(e.to_string()))?;
    let metadata = HashMap::from([
        (RELEASE_METADATA_KEY.to_string(), release),
        (JOB_ID_METADATA_KEY.to_string(), job_id.to_string()),
        (EPSILON_METADATA_KEY.to_string(), table.epsilon_spent.to_string()),
        (DELTA_METADATA_KEY.to_string(), table.delta_spent.to_string()),
    ]);
    let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
    let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(table.rows.len()));
    Ok(RecordBatch::try_new_with_options(schema, arrays, &options)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array, Int64Array, StringArray};
    use sandbox_model::ReleasedColumn;

    fn noisy(value: f64) -> ReleasedCell {
        ReleasedCell::Noisy {
            value,
            mechanism: "discrete_laplace".into(),
            scale: 1.0,
            ci95: [value - 1.0, value + 1.0],
        }
    }

    fn table(rows: Vec<Vec<ReleasedCell>>) -> ReleasedTable {
        ReleasedTable {
            columns: vec![
                ReleasedColumn {
                    name: "year".into(),
                    kind: GROUP_KEY.into(),
                },
                ReleasedColumn {
                    name: "district".into(),
                    kind: GROUP_KEY.into(),
                },
                ReleasedColumn {
                    name: "avg(tax_paid)".into(),
                    kind: "avg(gov.tax_payments.tax_paid)".into(),
                },
            ],
            rows,
            epsilon_spent: 0.5,
            delta_spent: 0.0,
            suppressed: vec![],
            notes: vec!["note".into()],
        }
    }

    fn key(v: Value) -> ReleasedCell {
        ReleasedCell::Key { value: v }
    }

    #[test]
    fn keys_keep_their_types_and_withheld_values_are_null() {
        let t = table(vec![
            vec![key(2023.into()), key("Pudong".into()), noisy(12.5)],
            vec![
                key(2024.into()),
                key(Value::Null),
                ReleasedCell::Withheld { rule: "k".into() },
            ],
            vec![
                key(2025.into()),
                key("Xuhui".into()),
                ReleasedCell::Rounded { value: 10.0, base: 5.0 },
            ],
        ]);
        let b = released_to_batch("job-1", &t).expect("batch");
        assert_eq!(b.num_rows(), 3);
        let schema = b.schema();
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(2).data_type(), &DataType::Float64);
        assert_eq!(
            schema.field(2).metadata().get(KIND_METADATA_KEY).map(String::as_str),
            Some("avg(gov.tax_payments.tax_paid)")
        );
        assert_eq!(
            schema.metadata().get(JOB_ID_METADATA_KEY).map(String::as_str),
            Some("job-1")
        );
        let back: ReleasedTable = serde_json::from_str(&schema.metadata()[RELEASE_METADATA_KEY]).expect("release json");
        assert_eq!(back, t);
        let years = b.column(0).as_any().downcast_ref::<Int64Array>().expect("int");
        assert_eq!(years.value(2), 2025);
        let districts = b.column(1).as_any().downcast_ref::<StringArray>().expect("text");
        assert!(districts.is_null(1));
        let avg = b.column(2).as_any().downcast_ref::<Float64Array>().expect("float");
        assert_eq!(avg.value(0), 12.5);
        assert!(avg.is_null(1));
        assert_eq!(avg.value(2), 10.0);
    }

    #[test]
    fn mixed_numbers_widen_and_empty_tables_convert() {
        let t = table(vec![vec![key(1.into()), key(2.5.into()), noisy(1.0)]]);
        let mut t2 = t.clone();
        t2.rows[0][1] = key(3.into());
        t2.rows.push(vec![key(2.into()), key(2.5.into()), noisy(2.0)]);
        let b = released_to_batch("j", &t2).expect("batch");
        assert_eq!(b.schema().field(1).data_type(), &DataType::Float64);
        let empty = released_to_batch("j", &table(vec![])).expect("empty");
        assert_eq!(empty.num_rows(), 0);
        assert_eq!(empty.schema().field(0).data_type(), &DataType::Utf8);
        assert_eq!(key_type([Value::Bool(true), Value::Null].iter()), KeyType::Bool);
        assert_eq!(key_type([Value::from(1), Value::from("a")].iter()), KeyType::Text);
    }
}
