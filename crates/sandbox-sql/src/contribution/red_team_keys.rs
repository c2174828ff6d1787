//! Red team (out-of-set keys, 2026-12-01 b): without a per-unit stage the
//! rows whose keys lie outside their public sets are aggregated and dropped
//! when read. The totals of public groups must equal those of the per-unit
//! path (rows filtered first), whatever the out-of-set keys are; and a
//! plan's success must not depend on out-of-set values.

use super::red_team_support::{flat, measure, query_over};
use super::*;
use crate::limits::EngineLimits;
use crate::session::JobSession;
use datafusion::arrow::array::{Int64Array, StringArray, StringViewArray};
use datafusion::prelude::SessionContext;
use sandbox_policy::PublicKey::{Int, Str};

fn query(plan: LogicalPlan, keys: Vec<(&str, Vec<PublicKey>)>) -> CheckedQuery {
    query_over(
        plan,
        &["u"],
        keys.into_iter().map(|(k, set)| (k.to_string(), set)).collect(),
    )
}

fn bounding() -> Bounding {
    Bounding::PerGroup {
        bounds: ContributionBounds {
            max_groups_per_unit: 1,
            max_rows_per_group: 1,
            max_rows_per_unit: None,
        },
        key: 7,
    }
}

async fn both_paths(
    batch: RecordBatch,
    keys: Vec<(&str, Vec<PublicKey>)>,
    limits: EngineLimits,
) -> (Result<GroupStatistics, SqlError>, Result<GroupStatistics, SqlError>) {
    let unbounded = UnitBounds {
        rows: Some(1),
        groups: Some(1),
        rows_per_group: Some(1),
        unit_never_null: true,
    };
    both_paths_with(batch, keys, limits, unbounded, bounding()).await
}

async fn both_paths_with(
    batch: RecordBatch,
    keys: Vec<(&str, Vec<PublicKey>)>,
    limits: EngineLimits,
    unbounded: UnitBounds,
    bounding: Bounding,
) -> (Result<GroupStatistics, SqlError>, Result<GroupStatistics, SqlError>) {
    let ctx = SessionContext::new();
    let plan = ctx.read_batch(batch).expect("frame").logical_plan().clone();
    let q = query(plan, keys);
    let session = JobSession::new(&[], limits).expect("session");
    assert!(!bounding_can_bind(bounding, Some(1000), unbounded));
    let a = compute_totals(&session, &q, &[measure()], bounding, unbounded, true).await;
    let b = compute_totals(&session, &q, &[measure()], bounding, UnitBounds::default(), true).await;
    (a, b)
}

#[tokio::test]
async fn red_team_keys_out_of_set_keys_change_no_public_total_on_either_path() {
    // Keys that differ from "a" only in case, whitespace, normalization,
    // a NUL byte, or are NULL; and the integer key is out of set too.
    let text = vec![
        Some("a"),
        Some("A"),
        Some("a "),
        Some("\u{FF41}"),
        Some("a\0"),
        Some("a\u{0301}"),
        None,
        Some("b"),
        Some("a"),
        Some("b"),
    ];
    let n = text.len();
    for view in [false, true] {
        let k: ArrayRef = if view {
            Arc::new(StringViewArray::from(text.clone()))
        } else {
            Arc::new(StringArray::from(text.clone()))
        };
        let j: ArrayRef = Arc::new(Int64Array::from(
            (0..n as i64)
                .map(|i| if i == 8 { Some(2) } else { Some(i % 2) })
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_from_iter([
            (
                "u",
                Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef,
            ),
            ("k", k),
            ("j", j),
            ("v", Arc::new(Int64Array::from(vec![1_000i64; n])) as ArrayRef),
        ])
        .expect("batch");
        let keys = vec![
            ("k", vec![Str("a".into()), Str("b".into()), Int(0)]),
            ("j", vec![Int(0), Int(1)]),
        ];
        let (a, b) = both_paths(batch, keys, EngineLimits::default()).await;
        let (a, b) = (a.expect("unbounded"), b.expect("per unit"));
        assert_eq!(
            flat(&a),
            flat(&b),
            "view={view}: the two paths release different totals"
        );
        // Only ("a",0), ("b",1) rows 0 and 7, 9 (row 8 has j = 2).
        let rows: i128 = flat(&a).iter().map(|t| t.0).sum();
        assert_eq!(rows, 3, "view={view}: {:?}", flat(&a));
    }
}

/// Out-of-set keys cost memory in the unbounded path only: whether a job
/// fails then depends on how many distinct values lie outside the set (the
/// threat model documents it). This test records the behaviour: the same
/// public data (one in-set row) with many distinct out-of-set keys.
#[tokio::test]
async fn red_team_keys_many_out_of_set_keys_and_the_memory_pool() {
    let n = 400_000usize;
    let keys: Vec<String> = (0..n)
        .map(|i| {
            if i == 0 {
                "a".to_string()
            } else {
                format!("out-of-set key number {i:>12}")
            }
        })
        .collect();
    let batch = RecordBatch::try_from_iter([
        (
            "u",
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef,
        ),
        ("k", Arc::new(StringArray::from(keys)) as ArrayRef),
        ("v", Arc::new(Int64Array::from(vec![1i64; n])) as ArrayRef),
    ])
    .expect("batch");
    let limits = EngineLimits {
        memory_bytes: 4 << 20,
        ..EngineLimits::default()
    };
    let (a, b) = both_paths(batch, vec![("k", vec![Str("a".into())])], limits).await;
    let show = |r: &Result<GroupStatistics, SqlError>| match r {
        Ok(s) => format!("ok {:?}", flat(s)),
        Err(e) => format!("error {e:?}"),
    };
    eprintln!("unbounded path: {}\nper-unit path: {}", show(&a), show(&b));
    assert_eq!(
        a.is_ok(),
        b.is_ok(),
        "out-of-set keys decide the job's failure on one path only: unbounded {}, per-unit {}",
        show(&a),
        show(&b)
    );
}

/// Units of two rows (counted by `COUNT(DISTINCT unit)`), with NULL units
/// and out-of-set and NULL keys: the same units and totals on both paths.
#[tokio::test]
async fn red_team_keys_distinct_units_with_out_of_set_rows() {
    let u = vec![
        Some(1),
        Some(1),
        Some(2),
        Some(2),
        Some(3),
        Some(3),
        None,
        Some(4),
        Some(4),
        Some(5),
    ];
    let k = vec![
        Some("a"),
        Some("x"),
        Some("a"),
        Some("a"),
        None,
        Some("b"),
        Some("a"),
        Some("A"),
        Some("b"),
        Some("b"),
    ];
    let n = u.len();
    let batch = RecordBatch::try_from_iter([
        ("u", Arc::new(Int64Array::from(u)) as ArrayRef),
        ("k", Arc::new(StringViewArray::from(k)) as ArrayRef),
        (
            "v",
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef,
        ),
    ])
    .expect("batch");
    let unbounded = UnitBounds {
        rows: Some(2),
        groups: Some(2),
        rows_per_group: None,
        unit_never_null: false,
    };
    let bounding = Bounding::PerGroup {
        bounds: ContributionBounds {
            max_groups_per_unit: 2,
            max_rows_per_group: 2,
            max_rows_per_unit: Some(2),
        },
        key: 3,
    };
    let (a, b) = both_paths_with(
        batch,
        vec![("k", vec![Str("a".into()), Str("b".into())])],
        EngineLimits::default(),
        unbounded,
        bounding,
    )
    .await;
    let (a, b) = (a.expect("unbounded"), b.expect("per unit"));
    assert_eq!(flat(&a), flat(&b));
    // a: units 1, 2 (3 rows); b: units 3, 4, 5 (3 rows).
    assert_eq!(
        flat(&a).iter().map(|t| (t.0, t.1)).collect::<Vec<_>>(),
        vec![(3, 2), (3, 3)]
    );
}

/// The analyst sets the threshold: the same data (one in-set row, many
/// distinct out-of-set keys) with one measure or with many measures. With
/// per-group state multiplied by the query's measures, the failure is an
/// oracle for "more than N distinct values outside the set", N chosen by
/// the query (records the outcomes; fails when they differ).
#[tokio::test]
async fn red_team_keys_the_query_sets_the_out_of_set_memory_threshold() {
    let n = 60_000usize;
    let keys: Vec<String> = (0..n)
        .map(|i| if i == 0 { "a".to_string() } else { format!("k{i}") })
        .collect();
    let batch = RecordBatch::try_from_iter([
        (
            "u",
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef,
        ),
        ("k", Arc::new(StringArray::from(keys)) as ArrayRef),
        ("v", Arc::new(Int64Array::from(vec![1i64; n])) as ArrayRef),
    ])
    .expect("batch");
    let ctx = SessionContext::new();
    let plan = ctx.read_batch(batch).expect("frame").logical_plan().clone();
    let q = query(plan, vec![("k", vec![Str("a".into())])]);
    let unbounded = UnitBounds {
        rows: Some(1),
        groups: Some(1),
        rows_per_group: Some(1),
        unit_never_null: true,
    };
    let mut outcomes = Vec::new();
    for m in [1usize, 16] {
        let session = JobSession::new(
            &[],
            EngineLimits {
                memory_bytes: 4 << 20,
                ..EngineLimits::default()
            },
        )
        .expect("session");
        let measures = vec![measure(); m];
        let r = compute_totals(&session, &q, &measures, bounding(), unbounded, true).await;
        outcomes.push((m, r.as_ref().err().map(|e| format!("{e:?}"))));
    }
    eprintln!("{outcomes:?}");
    assert_eq!(outcomes[0].1, outcomes[1].1, "{outcomes:?}");
}

/// The release step's path (`compute_partials`, per-unit partials for the
/// dominance rule or bounding outside the engine) filters out-of-set keys
/// before its aggregation too: with many distinct keys outside the set and
/// a small pool, it succeeds like the in-engine paths, with the same
/// public totals.
#[tokio::test]
async fn red_team_keys_the_partials_path_filters_out_of_set_keys_first() {
    let n = 400_000usize;
    let keys: Vec<String> = (0..n)
        .map(|i| {
            if i % 1000 == 0 {
                "a".to_string()
            } else {
                format!("out-of-set key number {i:>12}")
            }
        })
        .collect();
    let batch = RecordBatch::try_from_iter([
        (
            "u",
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef,
        ),
        ("k", Arc::new(StringArray::from(keys)) as ArrayRef),
        ("v", Arc::new(Int64Array::from(vec![1i64; n])) as ArrayRef),
    ])
    .expect("batch");
    let ctx = SessionContext::new();
    let plan = ctx.read_batch(batch).expect("frame").logical_plan().clone();
    let q = query(plan, vec![("k", vec![Str("a".into())])]);
    let session = JobSession::new(
        &[],
        EngineLimits {
            memory_bytes: 4 << 20,
            ..EngineLimits::default()
        },
    )
    .expect("session");
    let partials = crate::partials::compute_partials(&session, &q, &[measure()], 7)
        .await
        .expect("out-of-set keys cost the partials path no memory");
    let Contributions::Partials(p) = &partials.contributions else {
        panic!("partials expected")
    };
    assert_eq!(partials.groups.keys.len(), 1, "one public group");
    assert_eq!(p.len(), n / 1000, "one partial per unit in the public group");
}
