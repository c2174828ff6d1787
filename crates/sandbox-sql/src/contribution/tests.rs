use super::*;
use datafusion::arrow::array::{Int64Array, StringArray};
use sandbox_dp::fixed_point::Quantizer;

fn measure(grid: Quantizer, squares: bool) -> MeasureColumn {
    MeasureColumn {
        expr: lit(0i64),
        grid,
        squares,
    }
}

/// keys, units, rows, then count, sum (and sum of squares) per measure,
/// with `counts` as the measure's per-group row counts.
fn totals_batch(counts: &[i64], squares: bool) -> RecordBatch {
    let n = counts.len();
    let zeros = || Arc::new(Int64Array::from(vec![0i64; n])) as ArrayRef;
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        ("__g0", Arc::new(StringArray::from(vec!["a"; n])) as ArrayRef),
        ("__units", zeros()),
        ("__trows", zeros()),
        ("__tc0", Arc::new(Int64Array::from(counts.to_vec())) as ArrayRef),
        ("__ts0", zeros()),
    ];
    if squares {
        columns.push(("__tq0", zeros()));
    }
    RecordBatch::try_from_iter(columns).expect("a batch")
}

#[test]
fn int64_sums_are_exact_exactly_while_no_partial_sum_can_wrap() {
    let sum = measure(Quantizer::for_sum(0.0, 1.0).expect("grid"), false);
    let variance = measure(Quantizer::for_variance(0.0, 1.0).expect("grid"), true);
    let exact = |counts: &[i64], m: &MeasureColumn| {
        int64_sums_exact(&[totals_batch(counts, m.squares)], 1, std::slice::from_ref(m), false).expect("readable")
    };
    // Sums: 2^20 per row, so up to (2^63 − 1) / 2^20 rows.
    let sum_rows = i64::MAX / sum.grid.max_abs;
    assert!(exact(&[0, 5, sum_rows], &sum));
    assert!(!exact(&[5, sum_rows + 1], &sum));
    // Squares: 2^30 per row, so fewer rows (2^33 − 1).
    let square_rows = i64::MAX / (variance.grid.max_abs * variance.grid.max_abs);
    assert!(exact(&[square_rows], &variance));
    assert!(!exact(&[square_rows + 1], &variance));
    assert!(square_rows < sum_rows);
}

/// With public groups, the group of the rows outside the sets (NULL key)
/// is never read, so its size alone never calls for the exact second pass;
/// without public sets a NULL key is a group like any other.
#[test]
fn the_out_of_set_group_never_calls_for_the_exact_pass() {
    let sum = measure(Quantizer::for_sum(0.0, 1.0).expect("grid"), false);
    let huge = i64::MAX / sum.grid.max_abs + 1;
    let batch = |key: Option<&str>| {
        let b = totals_batch(&[huge], false);
        let mut columns: Vec<(String, ArrayRef)> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .zip(b.columns().iter().cloned())
            .collect();
        columns[0].1 = Arc::new(StringArray::from(vec![key]));
        RecordBatch::try_from_iter(columns).expect("a batch")
    };
    let m = std::slice::from_ref(&sum);
    assert!(int64_sums_exact(&[batch(None)], 1, m, true).expect("readable"));
    assert!(!int64_sums_exact(&[batch(Some("a"))], 1, m, true).expect("readable"));
    assert!(!int64_sums_exact(&[batch(None)], 1, m, false).expect("readable"));
}
