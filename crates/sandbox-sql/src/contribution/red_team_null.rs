//! Red team of commit 2991cdb (out-of-set keys made NULL in the unbounded
//! totals, `public_set::PublicKeyOrNull`): the released totals must equal
//! those of the filter-first path, and nothing a job shows (its success
//! included) may depend on rows whose keys lie outside their public sets.
//! `docs/threat-model.md` states that such rows "cost no memory beyond
//! their scan".

use super::red_team_support::{flat, measure, query_over};
use super::*;
use crate::limits::EngineLimits;
use crate::session::JobSession;
use datafusion::arrow::array::{
    BooleanArray, Date32Array, Decimal128Array, DictionaryArray, Float64Array, Int8Array, Int16Array, Int32Array,
    Int64Array, LargeStringArray, StringArray, StringViewArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::Int32Type;
use datafusion::prelude::SessionContext;
use sandbox_dp::fixed_point::Quantizer;
use sandbox_policy::PublicKey::{Int, Str};

fn query(plan: LogicalPlan, keys: Vec<(String, Vec<PublicKey>)>) -> CheckedQuery {
    query_over(plan, &["u"], keys)
}

fn show(r: &Result<GroupStatistics, SqlError>) -> String {
    match r {
        Ok(s) => format!("ok {:?}", flat(s).iter().take(4).collect::<Vec<_>>()),
        Err(e) => format!("error {e:?}"),
    }
}

/// Runs `q`'s totals on the path under attack (`unbounded`, which must
/// not bind) and on the per-unit path (bounds unknown: filter first).
async fn run(
    batch: RecordBatch,
    keys: Vec<(String, Vec<PublicKey>)>,
    limits: EngineLimits,
    unbounded: UnitBounds,
    bounding: Bounding,
    measures: usize,
) -> (Result<GroupStatistics, SqlError>, Result<GroupStatistics, SqlError>) {
    let ctx = SessionContext::new();
    let plan = ctx.read_batch(batch).expect("frame").logical_plan().clone();
    let q = query(plan, keys);
    let public = public_groups(&q, limits.max_groups).map(|p| p.len());
    assert!(public.is_some(), "public groups expected");
    assert!(
        !bounding_can_bind(bounding, public, unbounded),
        "the unbounded path expected"
    );
    let session = JobSession::new(&[], limits).expect("session");
    let ms = vec![measure(); measures];
    let a = compute_totals(&session, &q, &ms, bounding, unbounded, true).await;
    let session = JobSession::new(&[], session.limits().clone()).expect("session");
    let b = compute_totals(&session, &q, &ms, bounding, UnitBounds::default(), true).await;
    (a, b)
}

fn one_row_per_unit() -> (UnitBounds, Bounding) {
    (
        UnitBounds {
            rows: Some(1),
            groups: Some(1),
            rows_per_group: Some(1),
            unit_never_null: true,
        },
        Bounding::PerGroup {
            bounds: ContributionBounds {
                max_groups_per_unit: 1,
                max_rows_per_group: 1,
                max_rows_per_unit: None,
            },
            key: 7,
        },
    )
}

/// FINDING (memory, `COUNT(DISTINCT unit)`): where a unit may have two
/// rows (units counted by `COUNT(DISTINCT __u)`), the NULL group of the
/// out-of-set rows holds the set of their distinct units. Two databases
/// with the same in-set rows and the same number of out-of-set rows,
/// differing only in how many distinct units the out-of-set rows have
/// (two rows a unit, or one), give different outcomes under the same
/// pool: the job's success depends on data it never releases. The
/// filter-first path (per-unit oracle) succeeds on both.
#[tokio::test]
async fn red_team_null_distinct_units_outside_the_set_decide_the_job() {
    let in_set = 10usize;
    let out = 600_000usize;
    let database = |units_per_two_rows: bool| {
        let mut u = Vec::with_capacity(in_set + out);
        let mut k = Vec::with_capacity(in_set + out);
        for i in 0..in_set {
            u.push(i as i64);
            k.push("a".to_string());
        }
        for i in 0..out {
            // Same rows, same keys; only the unit of each out-of-set row
            // differs (each unit keeps at most two rows: the public bound).
            let unit = if units_per_two_rows { i / 2 } else { i };
            u.push(1_000_000 + unit as i64);
            k.push("out of set".to_string());
        }
        RecordBatch::try_from_iter([
            ("u", Arc::new(Int64Array::from(u)) as ArrayRef),
            ("k", Arc::new(StringViewArray::from(k)) as ArrayRef),
            ("v", Arc::new(Int64Array::from(vec![1i64; in_set + out])) as ArrayRef),
        ])
        .expect("batch")
    };
    let unbounded = UnitBounds {
        rows: Some(2),
        groups: Some(1),
        rows_per_group: None,
        unit_never_null: true,
    };
    let bounding = Bounding::PerGroup {
        bounds: ContributionBounds {
            max_groups_per_unit: 1,
            max_rows_per_group: 2,
            max_rows_per_unit: None,
        },
        key: 7,
    };
    let limits = EngineLimits {
        memory_bytes: 16_000_000,
        ..EngineLimits::default()
    };
    let keys = || vec![("k".to_string(), vec![Str("a".into())])];
    let (a2, b2) = run(database(true), keys(), limits.clone(), unbounded, bounding, 1).await;
    let (a1, b1) = run(database(false), keys(), limits.clone(), unbounded, bounding, 1).await;
    let outcomes = format!(
        "two rows a unit: unbounded {} / per-unit {}\none row a unit: unbounded {} / per-unit {}",
        show(&a2),
        show(&b2),
        show(&a1),
        show(&b1)
    );
    eprintln!("{outcomes}");
    assert!(b2.is_ok() && b1.is_ok(), "the filter-first oracle: {outcomes}");
    assert_eq!(
        a2.is_ok(),
        a1.is_ok(),
        "the distinct units of out-of-set rows decide the job's failure: {outcomes}"
    );
    assert!(a1.is_ok(), "out-of-set rows cost memory beyond their scan: {outcomes}");
}

/// Totals of `keys_n` key columns, each with the public set {"a"} (one
/// public group), over `2^keys_n` rows of one unit each: row 0 is the one
/// in-set row; every other row is out of the sets in at least one column,
/// either "b" in every column (`distinct_patterns` false) or "b" exactly
/// where bit c of the row number is set (every pattern once). Returns the
/// outcomes of (one pattern, many patterns) on the path under attack,
/// after checking that the filter-first path succeeds on both with the
/// same one-row total.
async fn pattern_outcomes(
    keys_n: usize,
    limits: EngineLimits,
    measures: usize,
) -> (
    Result<GroupStatistics, SqlError>,
    Result<GroupStatistics, SqlError>,
    String,
) {
    let n = 1usize << keys_n;
    let database = |distinct_patterns: bool| {
        let mut columns: Vec<(String, ArrayRef)> = vec![(
            "u".to_string(),
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef,
        )];
        for c in 0..keys_n {
            let values: Vec<&str> = (0..n)
                .map(|r| {
                    let out = if distinct_patterns { (r >> c) & 1 == 1 } else { r > 0 };
                    if out { "b" } else { "a" }
                })
                .collect();
            columns.push((format!("k{c}"), Arc::new(StringViewArray::from(values)) as ArrayRef));
        }
        columns.push(("v".to_string(), Arc::new(Int64Array::from(vec![1i64; n])) as ArrayRef));
        RecordBatch::try_from_iter(columns).expect("batch")
    };
    let keys = || {
        (0..keys_n)
            .map(|c| (format!("k{c}"), vec![Str("a".into())]))
            .collect::<Vec<_>>()
    };
    let (unbounded, bounding) = one_row_per_unit();
    let started = std::time::Instant::now();
    let (a_same, b_same) = run(database(false), keys(), limits.clone(), unbounded, bounding, measures).await;
    let same_took = started.elapsed();
    let started = std::time::Instant::now();
    let (a_many, b_many) = run(database(true), keys(), limits.clone(), unbounded, bounding, measures).await;
    let many_took = started.elapsed();
    let outcomes = format!(
        "one out-of-set pattern ({same_took:?}): unbounded {} / per-unit {}\n\
         every pattern ({many_took:?}): unbounded {} / per-unit {}",
        show(&a_same),
        show(&b_same),
        show(&a_many),
        show(&b_many)
    );
    eprintln!("{outcomes}");
    let one = vec![(1, 1, 1, 1, 1)];
    assert!(
        b_same.as_ref().is_ok_and(|s| flat(s) == one) && b_many.as_ref().is_ok_and(|s| flat(s) == one),
        "the filter-first oracle: {outcomes}"
    );
    (a_same, a_many, outcomes)
}

/// FINDING (memory, several keys): each key column is made NULL on its
/// own, so a row outside the sets lands in one of up to ∏(|Sᵢ| + 1)
/// groups (in-set value or NULL, per column) where the public groups are
/// ∏|Sᵢ| (≤ `max_groups`). With 14 keys whose sets hold one value each
/// (one public group) the out-of-set rows spread over as many groups as
/// they have distinct patterns of out-of-set columns (up to 2^14 − 1):
/// the "distinct out-of-set keys" channel of 2026-12-01 again, at a limit
/// the query moves with its number of keys and measures. Same rows, same
/// in-set data, same public totals; only the out-of-set values differ,
/// and the job fails on its pool for one database only.
#[tokio::test]
async fn red_team_null_patterns_of_out_of_set_keys_decide_the_job() {
    let limits = EngineLimits {
        memory_bytes: 1_000_000,
        ..EngineLimits::default()
    };
    let (same, many, outcomes) = pattern_outcomes(14, limits, 1).await;
    assert_eq!(
        same.is_ok(),
        many.is_ok(),
        "the patterns of out-of-set keys decide the job's failure: {outcomes}"
    );
}

/// FINDING (deadline, several keys; hash collisions): DataFusion's row
/// hash skips NULL columns, so a row whose key columns are "a" or NULL
/// hashes by how many are "a", not which: the 2^k NULL patterns fall into
/// k + 1 hash values and grouping them is quadratic (2^14 rows: ~0.2 s
/// with one pattern, 6–11 s with every pattern in a debug build; 2^16:
/// over the 60 s default deadline). Out-of-set rows, filtered before any
/// aggregation until 2991cdb, now decide whether the job meets its
/// deadline, super-linearly in their count.
#[tokio::test]
async fn red_team_null_patterns_of_out_of_set_keys_decide_the_deadline() {
    let limits = EngineLimits {
        deadline: std::time::Duration::from_secs(4),
        ..EngineLimits::default()
    };
    let (same, many, outcomes) = pattern_outcomes(14, limits, 1).await;
    assert_eq!(
        same.is_ok(),
        many.is_ok(),
        "the patterns of out-of-set keys decide whether the job meets its deadline: {outcomes}"
    );
}

/// HELD: for keys of every type (strings of three layouts with padding,
/// NUL, case, multi-byte and long values; integers of every width;
/// unsigned beyond i64; dictionary, decimal, date, boolean, float; NULL;
/// empty sets) and for two key columns, the public totals of the NULL
/// path equal those of the filter-first per-unit path.
#[tokio::test]
async fn red_team_null_public_totals_equal_the_filter_first_path_for_every_key_type() {
    let texts = vec![
        Some("a"),
        Some("a "),
        Some("A"),
        Some("a\0"),
        Some(""),
        None,
        Some("黄浦区"),
        Some("黄浦"),
        Some("a long string beyond twelve bytes"),
        Some("a long string beyond twelve byte"),
        Some("1"),
        Some("exactly12byt"),
        Some("a"),
    ];
    let n = texts.len();
    let string_set = vec![
        Str("a".into()),
        Str("".into()),
        Str("黄浦区".into()),
        Str("a long string beyond twelve bytes".into()),
        Str("exactly12byt".into()),
        Int(1),
    ];
    let int_set = vec![
        Int(1),
        Int(-1),
        Int(127),
        Int(300),
        Int(i64::MAX),
        Int(i64::MIN),
        Str("1".into()),
    ];
    let ints: Vec<Option<i64>> = vec![
        Some(1),
        Some(-1),
        Some(0),
        None,
        Some(127),
        Some(300),
        Some(i64::MAX),
        Some(i64::MIN),
        Some(1),
        Some(2),
        Some(-128),
        Some(44),
        Some(1),
    ];
    assert_eq!(ints.len(), n);
    let unsigned: Vec<Option<u64>> = vec![
        Some(1),
        Some(u64::MAX),
        Some(0),
        None,
        Some(127),
        Some(i64::MAX as u64),
        Some(i64::MAX as u64 + 1),
        Some(300),
        Some(1),
        Some(2),
        Some(u64::MAX - 1),
        Some(44),
        Some(1),
    ];
    let narrow = |f: fn(i64) -> bool| ints.iter().map(|v| v.filter(|v| f(*v))).collect::<Vec<_>>();
    let cases: Vec<(&str, ArrayRef, Vec<PublicKey>)> = vec![
        ("Utf8", Arc::new(StringArray::from(texts.clone())), string_set.clone()),
        (
            "LargeUtf8",
            Arc::new(LargeStringArray::from(texts.clone())),
            string_set.clone(),
        ),
        (
            "Utf8View",
            Arc::new(StringViewArray::from(texts.clone())),
            string_set.clone(),
        ),
        (
            "Utf8View empty set",
            Arc::new(StringViewArray::from(texts.clone())),
            vec![],
        ),
        (
            "Utf8View int set",
            Arc::new(StringViewArray::from(texts.clone())),
            int_set.clone(),
        ),
        (
            "Int8",
            Arc::new(Int8Array::from(
                narrow(|v| i8::try_from(v).is_ok())
                    .into_iter()
                    .map(|v| v.map(|v| v as i8))
                    .collect::<Vec<_>>(),
            )),
            int_set.clone(),
        ),
        (
            "Int16",
            Arc::new(Int16Array::from(
                narrow(|v| i16::try_from(v).is_ok())
                    .into_iter()
                    .map(|v| v.map(|v| v as i16))
                    .collect::<Vec<_>>(),
            )),
            int_set.clone(),
        ),
        (
            "Int32",
            Arc::new(Int32Array::from(
                narrow(|v| i32::try_from(v).is_ok())
                    .into_iter()
                    .map(|v| v.map(|v| v as i32))
                    .collect::<Vec<_>>(),
            )),
            int_set.clone(),
        ),
        ("Int64", Arc::new(Int64Array::from(ints.clone())), int_set.clone()),
        (
            "Int64 string set",
            Arc::new(Int64Array::from(ints.clone())),
            string_set.clone(),
        ),
        (
            "UInt8",
            Arc::new(UInt8Array::from(
                unsigned
                    .iter()
                    .map(|v| v.and_then(|v| u8::try_from(v).ok()))
                    .collect::<Vec<_>>(),
            )),
            int_set.clone(),
        ),
        (
            "UInt16",
            Arc::new(UInt16Array::from(
                unsigned
                    .iter()
                    .map(|v| v.and_then(|v| u16::try_from(v).ok()))
                    .collect::<Vec<_>>(),
            )),
            int_set.clone(),
        ),
        (
            "UInt32",
            Arc::new(UInt32Array::from(
                unsigned
                    .iter()
                    .map(|v| v.and_then(|v| u32::try_from(v).ok()))
                    .collect::<Vec<_>>(),
            )),
            int_set.clone(),
        ),
        ("UInt64", Arc::new(UInt64Array::from(unsigned.clone())), int_set.clone()),
        (
            "Dictionary",
            Arc::new(texts.iter().copied().collect::<DictionaryArray<Int32Type>>()),
            string_set.clone(),
        ),
        (
            "Decimal128",
            Arc::new(
                Decimal128Array::from(ints.iter().map(|v| v.map(i128::from)).collect::<Vec<_>>())
                    .with_precision_and_scale(38, 0)
                    .expect("decimal"),
            ),
            int_set.clone(),
        ),
        (
            "Date32",
            Arc::new(Date32Array::from(
                narrow(|v| i32::try_from(v).is_ok())
                    .into_iter()
                    .map(|v| v.map(|v| v as i32))
                    .collect::<Vec<_>>(),
            )),
            int_set.clone(),
        ),
        (
            "Boolean",
            Arc::new(BooleanArray::from(
                ints.iter().map(|v| v.map(|v| v == 1)).collect::<Vec<_>>(),
            )),
            int_set.clone(),
        ),
        (
            "Float64",
            Arc::new(Float64Array::from(
                ints.iter().map(|v| v.map(|v| v as f64)).collect::<Vec<_>>(),
            )),
            int_set.clone(),
        ),
    ];
    let (unbounded, bounding) = one_row_per_unit();
    let mut bad = Vec::new();
    for (name, k, set) in cases {
        let batch = RecordBatch::try_from_iter([
            (
                "u",
                Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef,
            ),
            ("k", k.clone()),
            (
                "v",
                Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef,
            ),
        ])
        .expect("batch");
        let (a, b) = run(
            batch,
            vec![("k".to_string(), set.clone())],
            EngineLimits::default(),
            unbounded,
            bounding,
            1,
        )
        .await;
        match (&a, &b) {
            (Ok(x), Ok(y)) if flat(x) == flat(y) => {}
            _ => bad.push(format!("{name}: unbounded {} / per-unit {}", show(&a), show(&b))),
        }
        // Two key columns: this key and a UInt64 key.
        let batch = RecordBatch::try_from_iter([
            (
                "u",
                Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef,
            ),
            ("k", k),
            ("j", Arc::new(UInt64Array::from(unsigned.clone())) as ArrayRef),
            (
                "v",
                Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef,
            ),
        ])
        .expect("batch");
        let (a, b) = run(
            batch,
            vec![
                ("k".to_string(), set),
                ("j".to_string(), vec![Int(1), Int(-1), Int(i64::MAX), Int(0)]),
            ],
            EngineLimits::default(),
            unbounded,
            bounding,
            1,
        )
        .await;
        match (&a, &b) {
            (Ok(x), Ok(y)) if flat(x) == flat(y) => {}
            _ => bad.push(format!(
                "{name} × UInt64: unbounded {} / per-unit {}",
                show(&a),
                show(&b)
            )),
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

/// HELD: `grid::on_grid` (rounding without `f64::round`) against
/// `Quantizer::to_grid` on every tie of two grids whose quantum is 1 (so
/// the quotient is the value itself): each integer m in ±(max_abs + 2),
/// m ± 0.5 and the doubles either side of each tie.
#[test]
fn red_team_null_grid_rounds_every_tie_as_the_reference() {
    use datafusion::arrow::datatypes::{Field, Int64Type};
    use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl};
    let grids = [
        Quantizer::for_sum(-1048576.0, 1048576.0).expect("grid"),
        Quantizer::for_variance(-32768.0, 32768.0).expect("grid"),
        Quantizer::for_mean(-1048576.0, 1048576.0).expect("grid"),
    ];
    for g in grids {
        assert_eq!(g.quantum, 1.0, "{g:?}");
        let reach = g.max_abs + 2;
        let mut values = Vec::with_capacity((2 * reach as usize + 1) * 5);
        for m in -reach..=reach {
            let m = m as f64;
            for x in [m, m + 0.5, m - 0.5] {
                values.push(x);
                values.push(f64::from_bits(x.to_bits() + 1));
                if x != 0.0 {
                    values.push(f64::from_bits(x.to_bits() - 1));
                }
            }
        }
        let udf = crate::grid::GridValue::new(g);
        let n = values.len();
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(Arc::new(Float64Array::from(values.clone())))],
            arg_fields: vec![Arc::new(Field::new(
                "x",
                datafusion::arrow::datatypes::DataType::Float64,
                true,
            ))],
            number_rows: n,
            return_field: Arc::new(Field::new("g", datafusion::arrow::datatypes::DataType::Int64, true)),
            config_options: Arc::new(Default::default()),
        };
        let ColumnarValue::Array(out) = udf.invoke_with_args(args).expect("invoke") else {
            panic!("an array")
        };
        let out = out.as_primitive::<Int64Type>();
        for (i, x) in values.iter().enumerate() {
            assert_eq!(Some(out.value(i)), g.to_grid(*x), "grid {g:?} value {x:?}");
        }
    }
}

/// FINDING (the query moves the threshold): on the same databases as
/// above with 12 keys, a pool that one measure fits fails with many
/// measures only where the out-of-set rows have many patterns. The
/// number of the query's measures sets the count of out-of-set patterns
/// at which the job fails.
#[tokio::test]
async fn red_team_null_measures_move_the_out_of_set_threshold() {
    let limits = EngineLimits {
        memory_bytes: 1_000_000,
        ..EngineLimits::default()
    };
    let mut outcomes = Vec::new();
    for measures in [1usize, 24] {
        let (same, many, shown) = pattern_outcomes(12, limits.clone(), measures).await;
        outcomes.push((measures, same.is_ok(), many.is_ok(), shown));
    }
    for (measures, same, many, shown) in &outcomes {
        assert_eq!(
            same, many,
            "{measures} measures: out-of-set patterns decide the job's failure: {shown}"
        );
    }
}
