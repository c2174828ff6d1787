//! Red team 2026-12-01: the in-engine public-key filter (`in_public_set`)
//! and the release's group index (`PublicIndex`) must keep exactly the
//! same rows for every key type, or the two bounding places choose a
//! unit's G groups among different candidates.

use super::*;
use datafusion::arrow::array::{
    BooleanArray, Date32Array, Decimal128Array, DictionaryArray, Float64Array, Int8Array, Int32Array, Int64Array,
    LargeStringArray, StringArray, StringViewArray, UInt8Array, UInt64Array,
};
use datafusion::arrow::datatypes::Int32Type;
use datafusion::prelude::SessionContext;
use sandbox_policy::PublicKey::{Int, Str};

fn query(plan: LogicalPlan, set: Vec<PublicKey>) -> CheckedQuery {
    super::red_team_support::query_over(plan, &[], vec![("k".to_string(), set)])
}

#[tokio::test]
async fn red_team_1201_public_filter_and_public_index_keep_the_same_rows_for_every_key_type() {
    let strings = || {
        vec![
            Some("a"),
            None,
            Some(""),
            Some("a long string beyond twelve bytes"),
            Some("b"),
        ]
    };
    let string_set = || {
        vec![
            Str("a".into()),
            Str("".into()),
            Str("a long string beyond twelve bytes".into()),
            Int(1),
        ]
    };
    let cases: Vec<(&str, ArrayRef, Vec<PublicKey>)> = vec![
        (
            "Int8",
            Arc::new(Int8Array::from(vec![Some(1), Some(-128), Some(127), None, Some(44)])),
            vec![Int(1), Int(300), Int(-128), Int(127), Int(-129), Int(44 + 256)],
        ),
        (
            "UInt8",
            Arc::new(UInt8Array::from(vec![Some(255), Some(0), None, Some(1)])),
            vec![Int(255), Int(256), Int(-1), Int(0)],
        ),
        (
            "UInt64",
            Arc::new(UInt64Array::from(vec![
                Some(5),
                Some(u64::MAX),
                Some((1u64 << 63) + 5),
                None,
                Some(0),
                Some(i64::MAX as u64),
            ])),
            vec![
                Int(5),
                Int(-1),
                Int(i64::MIN + 5),
                Int(0),
                Int(i64::MAX),
                Str("5".into()),
            ],
        ),
        (
            "Int32",
            Arc::new(Int32Array::from(vec![Some(7), Some(-7), None])),
            vec![Int(7), Int(i64::from(i32::MAX) + 1), Int(-7 - (1 << 32))],
        ),
        (
            "Int64",
            Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(0), None, Some(3)])),
            vec![Int(i64::MIN), Int(3), Str("0".into())],
        ),
        ("Utf8", Arc::new(StringArray::from(strings())), string_set()),
        ("Utf8View", Arc::new(StringViewArray::from(strings())), string_set()),
        ("LargeUtf8", Arc::new(LargeStringArray::from(strings())), string_set()),
        (
            "Dictionary",
            Arc::new(strings().into_iter().collect::<DictionaryArray<Int32Type>>()),
            string_set(),
        ),
        (
            "Date32",
            Arc::new(Date32Array::from(vec![Some(0), Some(1), None])),
            vec![Int(0), Int(1), Str("1970-01-01".into())],
        ),
        (
            "Float64",
            Arc::new(Float64Array::from(vec![Some(1.0), Some(-0.0), None])),
            vec![Int(1), Int(0)],
        ),
        (
            "Boolean",
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
            vec![Int(1), Int(0), Str("true".into())],
        ),
        (
            "Decimal128",
            Arc::new(
                Decimal128Array::from(vec![Some(1), Some(-2), None])
                    .with_precision_and_scale(10, 0)
                    .expect("decimal"),
            ),
            vec![Int(1), Int(-2)],
        ),
    ];
    for (name, keys, set) in cases {
        let n = keys.len();
        let ids = Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef;
        let batch = RecordBatch::try_from_iter([("k", keys), ("row", ids)]).expect("batch");
        let ctx = SessionContext::new();
        let frame = ctx.read_batch(batch.clone()).expect("frame");
        let plan = frame.logical_plan().clone();
        let q = query(plan.clone(), set.clone());
        let key_type = col("k").get_type(plan.schema()).expect("type");
        let filter = in_public_set(col("k"), &key_type, &set);
        let kept: Vec<i64> = frame
            .filter(filter)
            .expect("filter")
            .collect()
            .await
            .expect("collect")
            .iter()
            .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        let groups = crate::partials::public_groups(&q, 1000).expect("public").len();
        let index = PublicIndex::new(&q, groups);
        let indexed: Vec<i64> = index
            .ids(&batch, 0, 1)
            .expect("ids")
            .into_iter()
            .enumerate()
            .filter_map(|(r, g)| g.map(|_| r as i64))
            .collect();
        let mut kept = kept;
        kept.sort_unstable();
        assert_eq!(
            kept, indexed,
            "{name} keys: the engine's public-key filter keeps rows {kept:?}, the release's group index {indexed:?}"
        );
    }
}

/// Sanity of the test itself: string and integer keys do match.
#[tokio::test]
async fn red_team_1201_public_filter_is_not_vacuous() {
    let batch = RecordBatch::try_from_iter([(
        "k",
        Arc::new(StringViewArray::from(vec![Some("a"), Some("z")])) as ArrayRef,
    )])
    .expect("batch");
    let ctx = SessionContext::new();
    let frame = ctx.read_batch(batch).expect("frame");
    let rows: usize = frame
        .filter(in_public_set(col("k"), &DataType::Utf8View, &[Str("a".into())]))
        .expect("filter")
        .collect()
        .await
        .expect("collect")
        .iter()
        .map(RecordBatch::num_rows)
        .sum();
    assert_eq!(rows, 1);
}
