//! Red team of commit a9c480e (units counted distinctly by a keyed 64-bit
//! hash, `functions::UnitHash`; plans with a join keep the public-key
//! filter). Claims under attack: a unit's hash depends on its value only
//! (equal units share one hash, whatever the array that carries them), a
//! NULL unit stays NULL, the hashed count never exceeds the exact count
//! (the per-unit path's `GROUP BY unit`), the function never fails on data,
//! and it travels unchanged to an executor.

use super::red_team_support::{flat, measure, query_over, unit_hashes};
use super::*;
use crate::limits::EngineLimits;
use crate::session::JobSession;
use datafusion::arrow::array::{
    BinaryArray, BinaryViewArray, BooleanArray, Date32Array, Decimal128Array, DictionaryArray, FixedSizeBinaryArray,
    Float64Array, Int64Array, LargeBinaryArray, LargeStringArray, ListArray, RunArray, StringArray, StringViewArray,
    StructArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{Field, Int8Type, Int32Type};
use datafusion::prelude::SessionContext;
use sandbox_policy::PublicKey::Str;

fn h(units: ArrayRef) -> Vec<Option<u64>> {
    unit_hashes(0x5eed, units).iter().collect()
}

/// HELD (guard): one value, one hash, whatever carries it: dictionaries
/// with other value orders or duplicate values, sliced arrays, long view
/// strings in other buffers; `-0.0` and `0.0` (equal units) share a hash;
/// a NULL hidden in a dictionary's or run array's values is a NULL unit.
#[test]
fn red_team_unithash_equal_units_share_one_hash_whatever_the_array() {
    let long = "91310000MA1FL0000X-a-long-unit-code";
    let plain = h(Arc::new(StringArray::from(vec!["x", long])));
    // Dictionary: other value order, duplicate values, another key type.
    let d1: DictionaryArray<Int32Type> = vec!["x", long].into_iter().collect();
    let d2 = DictionaryArray::<Int32Type>::try_new(
        datafusion::arrow::array::Int32Array::from(vec![2, 0]),
        Arc::new(StringArray::from(vec![long, "x", "x"])),
    )
    .expect("dict");
    let d3: DictionaryArray<Int8Type> = vec!["x", long].into_iter().collect();
    assert_eq!(h(Arc::new(d1)), h(Arc::new(d2)), "dictionary value order");
    assert_eq!(h(Arc::new(d3.clone())), h(Arc::new(d3)));
    // Slices: the same value at another offset.
    let wide = StringArray::from(vec!["pad", "x", long]);
    assert_eq!(h(Arc::new(wide.slice(1, 2))), plain, "slice");
    // Views: short (inline) and long values, in one or two buffers.
    let v1 = StringViewArray::from(vec!["x", long]);
    let v2 = StringViewArray::from(vec!["another long value in the same buffer", "x", long]).slice(1, 2);
    assert_eq!(h(Arc::new(v1)), h(Arc::new(v2)), "view buffers");
    // Floats: -0.0 = 0.0 as units.
    let f = h(Arc::new(Float64Array::from(vec![0.0, -0.0])));
    assert_eq!(f[0], f[1], "-0.0 and 0.0");
    // A NULL in the values of a dictionary or a run array is a NULL unit.
    let dn = DictionaryArray::<Int32Type>::try_new(
        datafusion::arrow::array::Int32Array::from(vec![0, 1]),
        Arc::new(StringArray::from(vec![Some("x"), None])),
    )
    .expect("dict");
    assert_eq!(h(Arc::new(dn))[1], None, "NULL dictionary value");
    let run = RunArray::<Int32Type>::try_new(
        &datafusion::arrow::array::Int32Array::from(vec![1, 2]),
        &StringArray::from(vec![Some("x"), None]),
    )
    .expect("run");
    assert_eq!(h(Arc::new(run))[1], None, "NULL run value");
}

/// Units per group on the path under attack (bounds known, not binding,
/// units counted distinctly) and on the per-unit path (bounds unknown:
/// `GROUP BY unit, key`, the exact count).
async fn units_both(batches: Vec<RecordBatch>) -> (Vec<i128>, Vec<i128>) {
    let ctx = SessionContext::new();
    let plan = ctx.read_batches(batches).expect("frame").logical_plan().clone();
    let q = query_over(
        plan,
        &["u"],
        vec![("k".to_string(), vec![Str("a".into()), Str("b".into())])],
    );
    let unbounded = UnitBounds {
        rows: Some(2),
        groups: Some(1),
        rows_per_group: None,
        unit_never_null: false,
    };
    let session = JobSession::new(&[], EngineLimits::default()).expect("session");
    let a = compute_totals(&session, &q, &[measure()], Bounding::Exact, unbounded, true)
        .await
        .expect("hashed path");
    let session = JobSession::new(&[], EngineLimits::default()).expect("session");
    let b = compute_totals(&session, &q, &[measure()], Bounding::Exact, UnitBounds::default(), true)
        .await
        .expect("per-unit path");
    let units = |s: &GroupStatistics| flat(s).iter().map(|r| r.1).collect::<Vec<_>>();
    (units(&a), units(&b))
}

/// Two batches (so DataFusion merges partial counts): the first has units
/// 0..n under key "a" and one NULL unit; the second repeats every unit
/// (each unit: two rows) under "a", and units 0..2 again under "b".
fn two_batches(first: ArrayRef, second: ArrayRef) -> Vec<RecordBatch> {
    let batch = |u: ArrayRef, keys: Vec<&str>| {
        let n = u.len();
        // Every column declared nullable, as a Parquet column is.
        RecordBatch::try_from_iter_with_nullable([
            ("u", u, true),
            ("k", Arc::new(StringArray::from(keys)) as ArrayRef, true),
            ("v", Arc::new(Int64Array::from(vec![1i64; n])) as ArrayRef, true),
        ])
        .expect("batch")
    };
    let n1 = first.len();
    let n2 = second.len();
    let keys2: Vec<&str> = (0..n2).map(|i| if i < n1 - 1 { "a" } else { "b" }).collect();
    vec![batch(first, vec!["a"; n1]), batch(second, keys2)]
}

/// HELD (guard): for every unit type a catalog or a cast can give, the
/// hashed count equals the exact count (few units: no collision), and a
/// NULL unit is not counted.
#[tokio::test]
async fn red_team_unithash_counts_units_as_grouping_does_for_every_unit_type() {
    let long = |i: usize| format!("91310000MA1FL{i:05}-long-enough-for-a-buffer");
    let strs1: Vec<Option<String>> = (0..4).map(|i| Some(long(i))).chain([None]).collect();
    let strs2: Vec<Option<String>> = (0..4)
        .rev()
        .map(|i| Some(long(i)))
        .chain([0, 1].map(|i| Some(long(i))))
        .collect();
    let shorts1: Vec<Option<String>> = (0..4).map(|i| Some(format!("u{i}"))).chain([None]).collect();
    let shorts2: Vec<Option<String>> = (0..4)
        .rev()
        .map(|i| Some(format!("u{i}")))
        .chain([0, 1].map(|i| Some(format!("u{i}"))))
        .collect();
    let order2 = [3usize, 2, 1, 0, 0, 1];
    let ints1: Vec<Option<i64>> = (0..4).map(|i| Some(i as i64 * 1_000_003)).chain([None]).collect();
    let ints2: Vec<Option<i64>> = order2.iter().map(|&i| Some(i as i64 * 1_000_003)).collect();
    let cases: Vec<(&str, ArrayRef, ArrayRef)> = vec![
        (
            "Utf8",
            Arc::new(StringArray::from(strs1.clone())),
            Arc::new(StringArray::from(strs2.clone())),
        ),
        (
            "LargeUtf8",
            Arc::new(LargeStringArray::from(strs1.clone())),
            Arc::new(LargeStringArray::from(strs2.clone())),
        ),
        (
            "Utf8View long",
            Arc::new(StringViewArray::from(strs1.clone())),
            Arc::new(StringViewArray::from(strs2.clone())),
        ),
        (
            "Utf8View short",
            Arc::new(StringViewArray::from(shorts1.clone())),
            Arc::new(StringViewArray::from(shorts2.clone())),
        ),
        (
            "Dictionary",
            Arc::new(
                strs1
                    .iter()
                    .map(|s| s.as_deref())
                    .collect::<DictionaryArray<Int32Type>>(),
            ),
            Arc::new(
                strs2
                    .iter()
                    .map(|s| s.as_deref())
                    .collect::<DictionaryArray<Int32Type>>(),
            ),
        ),
        (
            "Binary",
            Arc::new(BinaryArray::from_iter(
                strs1.iter().map(|s| s.as_deref().map(str::as_bytes)),
            )),
            Arc::new(BinaryArray::from_iter(
                strs2.iter().map(|s| s.as_deref().map(str::as_bytes)),
            )),
        ),
        (
            "LargeBinary",
            Arc::new(LargeBinaryArray::from_iter(
                strs1.iter().map(|s| s.as_deref().map(str::as_bytes)),
            )),
            Arc::new(LargeBinaryArray::from_iter(
                strs2.iter().map(|s| s.as_deref().map(str::as_bytes)),
            )),
        ),
        (
            "BinaryView",
            Arc::new(BinaryViewArray::from_iter(
                shorts1.iter().map(|s| s.as_deref().map(str::as_bytes)),
            )),
            Arc::new(BinaryViewArray::from_iter(
                shorts2.iter().map(|s| s.as_deref().map(str::as_bytes)),
            )),
        ),
        (
            "FixedSizeBinary",
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    shorts1.iter().map(|s| s.as_deref().map(str::as_bytes)),
                    2,
                )
                .expect("fsb"),
            ),
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    shorts2.iter().map(|s| s.as_deref().map(str::as_bytes)),
                    2,
                )
                .expect("fsb"),
            ),
        ),
        (
            "Decimal128",
            Arc::new(
                Decimal128Array::from(ints1.iter().map(|v| v.map(i128::from)).collect::<Vec<_>>())
                    .with_precision_and_scale(20, 2)
                    .expect("dec"),
            ),
            Arc::new(
                Decimal128Array::from(ints2.iter().map(|v| v.map(i128::from)).collect::<Vec<_>>())
                    .with_precision_and_scale(20, 2)
                    .expect("dec"),
            ),
        ),
        (
            "Date32",
            Arc::new(Date32Array::from(
                ints1.iter().map(|v| v.map(|v| v as i32)).collect::<Vec<_>>(),
            )),
            Arc::new(Date32Array::from(
                ints2.iter().map(|v| v.map(|v| v as i32)).collect::<Vec<_>>(),
            )),
        ),
        (
            "Timestamp",
            Arc::new(TimestampMicrosecondArray::from(ints1.clone()).with_timezone("+08:00")),
            Arc::new(TimestampMicrosecondArray::from(ints2.clone()).with_timezone("+08:00")),
        ),
        (
            "Float64",
            Arc::new(Float64Array::from(
                ints1.iter().map(|v| v.map(|v| v as f64 + 0.5)).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                ints2.iter().map(|v| v.map(|v| v as f64 + 0.5)).collect::<Vec<_>>(),
            )),
        ),
        (
            "Boolean",
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
            Arc::new(BooleanArray::from(vec![Some(false), Some(true), Some(true)])),
        ),
    ];
    let mut failures = Vec::new();
    for (name, first, second) in cases {
        let (hashed, exact) = units_both(two_batches(first, second)).await;
        if hashed != exact {
            failures.push(format!("{name}: hashed {hashed:?} exact {exact:?}"));
        }
    }
    // Structs and lists of strings (a unit of several columns).
    let strukt = |v: &[Option<String>]| -> ArrayRef {
        let a: ArrayRef = Arc::new(StringArray::from(v.to_vec()));
        let b: ArrayRef = Arc::new(Int64Array::from(
            v.iter().map(|s| s.as_ref().map(|s| s.len() as i64)).collect::<Vec<_>>(),
        ));
        let nulls = datafusion::arrow::buffer::NullBuffer::from(v.iter().map(Option::is_some).collect::<Vec<_>>());
        Arc::new(
            StructArray::try_new(
                vec![
                    Field::new("a", DataType::Utf8, true),
                    Field::new("b", DataType::Int64, true),
                ]
                .into(),
                vec![a, b],
                Some(nulls),
            )
            .expect("struct"),
        )
    };
    let (hashed, exact) = units_both(two_batches(strukt(&shorts1), strukt(&shorts2))).await;
    if hashed != exact {
        failures.push(format!("Struct: hashed {hashed:?} exact {exact:?}"));
    }
    let list = |v: &[Option<String>]| -> ArrayRef {
        Arc::new(ListArray::from_iter_primitive::<
            datafusion::arrow::datatypes::Int64Type,
            _,
            _,
        >(v.iter().map(|s| {
            s.as_ref()
                .map(|s| s.bytes().map(|b| Some(b as i64)).collect::<Vec<_>>())
        })))
    };
    let (hashed, exact) = units_both(two_batches(list(&shorts1), list(&shorts2))).await;
    if hashed != exact {
        failures.push(format!("List: hashed {hashed:?} exact {exact:?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Float units whose bits differ but that are one unit as the per-unit
/// path groups them (`-0.0` and `0.0`; NaNs of other payloads): the hashed
/// count must not exceed the exact one (one unit counted twice would be a
/// sensitivity of 2).
#[tokio::test]
async fn red_team_unithash_float_units_are_never_counted_twice() {
    let other_nan = f64::from_bits(f64::NAN.to_bits() | 1);
    let neg_nan = -f64::NAN;
    let first: ArrayRef = Arc::new(Float64Array::from(vec![Some(0.0), Some(f64::NAN), Some(1.5), None]));
    let second: ArrayRef = Arc::new(Float64Array::from(vec![
        Some(-0.0),
        Some(other_nan),
        Some(neg_nan),
        Some(1.5),
        Some(0.0),
    ]));
    let (hashed, exact) = units_both(two_batches(first, second)).await;
    eprintln!("hashed {hashed:?} exact {exact:?}");
    assert!(
        hashed.iter().zip(&exact).all(|(h, e)| h <= e),
        "a float unit counted more often by its hash than by grouping: hashed {hashed:?} exact {exact:?}"
    );
}

fn show(r: &Result<GroupStatistics, SqlError>) -> String {
    match r {
        Ok(s) => format!("ok {:?}", flat(s).iter().take(4).collect::<Vec<_>>()),
        Err(e) => format!("error {e:?}"),
    }
}

/// `ent(eu, region)` and `use(su, kind, v)`: `in_set` units whose rows
/// are in the public group "a-x", and `out` further entities, each with
/// one usage row, whose region "z" puts them outside every public set.
fn join_tables(ctx: &SessionContext, in_set: usize, out: usize) {
    let n = in_set + out;
    let eu: Vec<String> = (0..n).map(|i| format!("91310000MA1FL{i:08}")).collect();
    let region: Vec<&str> = (0..n).map(|i| if i < in_set { "a" } else { "z" }).collect();
    let ent = RecordBatch::try_from_iter([
        ("eu", Arc::new(StringViewArray::from(eu.clone())) as ArrayRef),
        ("region", Arc::new(StringViewArray::from(region)) as ArrayRef),
    ])
    .expect("ent");
    let used = RecordBatch::try_from_iter([
        ("su", Arc::new(StringViewArray::from(eu)) as ArrayRef),
        ("kind", Arc::new(StringViewArray::from(vec!["x"; n])) as ArrayRef),
        ("v", Arc::new(Int64Array::from(vec![1i64; n])) as ArrayRef),
    ])
    .expect("use");
    ctx.register_batch("ent", ent).expect("register");
    ctx.register_batch("used", used).expect("register");
}

/// Outcome of the hashed path (units counted distinctly, bounds known) on
/// `sql` over `join_tables(in_set, out)`, under `limits`.
async fn join_outcome(sql: &str, in_set: usize, out: usize, limits: EngineLimits) -> Result<GroupStatistics, SqlError> {
    join_outcome_with(sql, in_set, out, limits, true).await
}

async fn join_outcome_with(
    sql: &str,
    in_set: usize,
    out: usize,
    limits: EngineLimits,
    bounds_known: bool,
) -> Result<GroupStatistics, SqlError> {
    let ctx = SessionContext::new();
    join_tables(&ctx, in_set, out);
    let plan = ctx.sql(sql).await.expect("sql").logical_plan().clone();
    let q = query_over(plan, &["u"], vec![("k".to_string(), vec![Str("a-x".into())])]);
    let unbounded = UnitBounds {
        rows: Some(2),
        groups: Some(1),
        rows_per_group: None,
        unit_never_null: true,
    };
    let unbounded = if bounds_known { unbounded } else { UnitBounds::default() };
    let session = JobSession::new(&[], limits).expect("session");
    compute_totals(&session, &q, &[measure()], Bounding::Exact, unbounded, true).await
}

/// Found, and documented rather than fixed (docs/threat-model.md, resource
/// limits): a group key computed from both sides of a join
/// (`concat(e.region, '-', s.kind)`) cannot be filtered below the join, so
/// entities outside the public set sit in the join's hash table like every
/// other joined row (300 000 of them fail a 12 MB pool that 10 in-set
/// units pass); the per-unit path does the same. This guards what holds:
/// with a key from one side, the filter is pushed below the join, and the
/// job's outcome does not depend on how many out-of-set rows there are.
#[tokio::test]
async fn red_team_unithash_a_key_from_one_join_side_is_filtered_below_the_join() {
    let limits = EngineLimits {
        memory_bytes: 12_000_000,
        ..EngineLimits::default()
    };
    let one_side = "SELECT e.eu AS u, concat(e.region, '-x') AS k, s.v AS v \
                    FROM used s JOIN ent e ON s.su = e.eu";
    let few = join_outcome(one_side, 10, 0, limits.clone()).await;
    let many = join_outcome(one_side, 10, 300_000, limits.clone()).await;
    let outcomes = format!("no out-of-set rows {} / 300k {}", show(&few), show(&many));
    assert!(few.is_ok() && many.is_ok(), "{outcomes}");
    assert_eq!(flat(&few.expect("ok")), flat(&many.expect("ok")), "{outcomes}");
}

/// HELD (guard): a join hidden in a CTE and a UNION, units of two types
/// (text and integer, cast to text and coalesced) hashed: the totals equal
/// the per-unit path's.
#[tokio::test]
async fn red_team_unithash_joined_units_of_two_types_count_as_grouping_does() {
    let ctx = SessionContext::new();
    let a = RecordBatch::try_from_iter([
        (
            "au",
            Arc::new(Int64Array::from(vec![Some(1), Some(2), Some(3), None])) as ArrayRef,
        ),
        ("k", Arc::new(StringArray::from(vec!["a", "a", "b", "a"])) as ArrayRef),
    ])
    .expect("a");
    let b = RecordBatch::try_from_iter([
        (
            "bu",
            Arc::new(StringArray::from(vec![
                Some("1"),
                Some("1"),
                Some("2"),
                Some("9"),
                Some("01"),
            ])) as ArrayRef,
        ),
        ("v", Arc::new(Int64Array::from(vec![1i64, 1, 1, 1, 1])) as ArrayRef),
    ])
    .expect("b");
    ctx.register_batch("ta", a).expect("register");
    ctx.register_batch("tb", b).expect("register");
    let sql = "WITH j AS (SELECT ta.au, tb.bu, coalesce(ta.k, 'a') AS k, tb.v FROM tb FULL JOIN ta ON ta.au = tb.bu) \
               SELECT au, bu, k, v FROM j UNION ALL SELECT au, bu, k, v FROM j";
    let plan = ctx.sql(sql).await.expect("sql").logical_plan().clone();
    let q = query_over(
        plan,
        &["au", "bu"],
        vec![("k".to_string(), vec![Str("a".into()), Str("b".into())])],
    );
    let unbounded = UnitBounds {
        rows: Some(4),
        groups: Some(2),
        rows_per_group: None,
        unit_never_null: false,
    };
    let session = JobSession::new(&[], EngineLimits::default()).expect("session");
    let hashed = compute_totals(&session, &q, &[measure()], Bounding::Exact, unbounded, true).await;
    let session = JobSession::new(&[], EngineLimits::default()).expect("session");
    let exact = compute_totals(&session, &q, &[measure()], Bounding::Exact, UnitBounds::default(), true).await;
    let (hashed, exact) = (show(&hashed), show(&exact));
    assert_eq!(hashed, exact);
}

/// HELD (guard): the unit hash rebuilt on an executor gives the same
/// hashes for strings, views and dictionaries.
#[test]
fn red_team_unithash_travels_with_its_key() {
    let udf = ScalarUDF::new_from_impl(UnitHash::new(0x5eed_1234));
    let back = crate::portable::decode(&crate::portable::encode(&udf).expect("encode")).expect("decode");
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![Some("91310000A"), None])),
        Arc::new(StringViewArray::from(vec![Some("91310000A-long-long-long"), None])),
        Arc::new(
            vec![Some("x"), None]
                .into_iter()
                .collect::<DictionaryArray<Int32Type>>(),
        ),
    ];
    let inner = |u: &ScalarUDF| u.inner().as_ref().downcast_ref::<UnitHash>().expect("unit hash").key();
    assert_eq!(inner(&udf), inner(&back));
    for a in arrays {
        assert_eq!(
            unit_hashes(inner(&udf), a.clone()),
            unit_hashes(inner(&back), a),
            "rebuilt hash differs"
        );
    }
}

/// HELD (guard): units that are NULL only logically (a `Null`-typed unit
/// column, a NULL among a dictionary's values) are no unit on either path
/// when the column is declared nullable (as Parquet columns are). (With a
/// field declared non-nullable, DataFusion drops `__u IS NOT NULL` and the
/// per-unit path counts such rows as one unit; the hashed path, which reads
/// logical nulls, still counts none.)
#[tokio::test]
async fn red_team_unithash_logically_null_units_are_no_unit_on_either_path() {
    let dict_nulls = |n: usize| -> ArrayRef {
        Arc::new(
            DictionaryArray::<Int32Type>::try_new(
                datafusion::arrow::array::Int32Array::from(vec![0; n]),
                Arc::new(StringArray::from(vec![None::<&str>])),
            )
            .expect("dict"),
        )
    };
    let cases: Vec<(&str, ArrayRef, ArrayRef)> = vec![
        (
            "Null",
            Arc::new(datafusion::arrow::array::NullArray::new(5)),
            Arc::new(datafusion::arrow::array::NullArray::new(6)),
        ),
        ("Dictionary with a NULL value", dict_nulls(5), dict_nulls(6)),
    ];
    let mut failures = Vec::new();
    for (name, first, second) in cases {
        let (hashed, exact) = units_both(two_batches(first, second)).await;
        if hashed != vec![0, 0] || exact != vec![0, 0] {
            failures.push(format!(
                "{name}: hashed {hashed:?} per-unit {exact:?} (no unit expected)"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
