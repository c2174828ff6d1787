//! What the red-team tests of this module share: a checked query over a
//! plan whose group keys are columns with public key sets, a measure with
//! squares, and the totals flattened for comparison.

use super::*;
use sandbox_dp::fixed_point::Quantizer;

/// A checked query over `plan`: units in `unit_columns`, one group key per
/// `(column, public set)`, no aggregates (the tests pass measures).
pub(super) fn query_over(
    plan: LogicalPlan,
    unit_columns: &[&str],
    keys: Vec<(String, Vec<PublicKey>)>,
) -> CheckedQuery {
    CheckedQuery {
        row_source: plan,
        unit_columns: unit_columns.iter().map(|c| Column::from_name(*c)).collect(),
        group_keys: keys
            .into_iter()
            .map(|(name, set)| crate::query::GroupKey {
                expr: col(name.as_str()),
                name,
                source: None,
                public_keys: Some(set),
            })
            .collect(),
        aggregates: Vec::new(),
        outputs: Vec::new(),
        post: Vec::new(),
        datasets: Default::default(),
        protected: Default::default(),
        usage: Default::default(),
    }
}

/// Column `v` on the sum grid of [0, 1], with squares.
pub(super) fn measure() -> MeasureColumn {
    MeasureColumn {
        expr: col("v"),
        grid: Quantizer::for_sum(0.0, 1.0).expect("grid"),
        squares: true,
    }
}

/// Rows, units, count, sum, sumsq per group (first measure).
pub(super) fn flat(s: &GroupStatistics) -> Vec<(i128, i128, i128, i128, i128)> {
    let Contributions::Totals { totals, .. } = &s.contributions else {
        panic!("totals expected")
    };
    (0..totals.rows.len())
        .map(|g| {
            let m = &totals.measures[0];
            (totals.rows[g], totals.units[g], m.count[g], m.sum[g], m.sumsq[g])
        })
        .collect()
}

/// `UnitHash` under `key` applied to `units`, as the engine calls it.
pub(super) fn unit_hashes(
    key: u64,
    units: datafusion::arrow::array::ArrayRef,
) -> datafusion::arrow::array::UInt64Array {
    use datafusion::arrow::datatypes::Field;
    use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl};
    let n = units.len();
    let field = Arc::new(Field::new("u", units.data_type().clone(), true));
    UnitHash::new(key)
        .invoke_with_args(ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(units)],
            arg_fields: vec![field],
            number_rows: n,
            return_field: Arc::new(Field::new("h", DataType::UInt64, true)),
            config_options: Arc::new(Default::default()),
        })
        .expect("the unit hash never fails")
        .into_array(n)
        .expect("array")
        .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
        .clone()
}
