//! Red team 2026-12-01 (keys of several columns): for each shape, the
//! declarations are verified on real files by the runtime's own count,
//! and the bound `unit_bounds` derives for one unit's rows in one group
//! (and in all) must hold on the rows the engine actually produces.

use super::*;
use crate::EngineLimits;
use crate::session::TableBinding;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{Field, Schema};
use std::sync::Arc;

/// One table of `columns` (name, values) written to a Parquet file,
/// with its declarations.
fn table(dir: &std::path::Path, id: &str, columns: Vec<(&str, ArrayRef)>, declared: &[(&str, u64)]) -> TableBinding {
    let path = dir.join(id);
    std::fs::create_dir_all(&path).expect("dir");
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a)| a).collect()).expect("batch");
    let file_path = path.join("part-0.parquet");
    let file = std::fs::File::create(&file_path).expect("file");
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    TableBinding {
        dataset: id.parse().expect("id"),
        location: format!("{}/", path.display()),
        files: vec![file_path.display().to_string()],
        pins: Vec::new(),
        schema,
        declared_max_rows_per_value: declared.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        desensitize: BTreeMap::new(),
    }
}

fn strings(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

/// A session over `tables` with exactly the declarations that hold on
/// their files installed, as the runtime's verify step does.
async fn verified_session(tables: &[TableBinding]) -> JobSession {
    let mut session = JobSession::new(tables, EngineLimits::default()).expect("session");
    for t in tables {
        let keys: Vec<String> = t.declared_max_rows_per_value.keys().cloned().collect();
        let counted = count_max_rows_per_value(&session, &t.dataset, &keys)
            .await
            .expect("count");
        let holds: BTreeMap<String, u64> = t
            .declared_max_rows_per_value
            .iter()
            .filter(|(k, b)| counted.get(*k).is_some_and(|c| c <= *b))
            .map(|(k, b)| (k.clone(), *b))
            .collect();
        session.set_verified_max_rows_per_value(&t.dataset, holds);
    }
    session
}

/// The most rows one unit (output column `u`, non-null) has in one
/// group of `keys`, and in all, on the rows of `plan`.
async fn actual(session: &JobSession, plan: &LogicalPlan, keys: &[&str]) -> (u64, u64) {
    let one = |b: &[RecordBatch]| -> u64 {
        b.iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| b.column(0).as_primitive::<Int64Type>().value(0))
            .map_or(0, |v| u64::try_from(v).unwrap_or(0))
    };
    let mut by = vec![col("u")];
    by.extend(keys.iter().map(|k| col(*k)));
    let per_group = LogicalPlanBuilder::from(plan.clone())
        .filter(col("u").is_not_null())
        .and_then(|b| b.aggregate(by, vec![count(lit(1i64)).alias("__n")]))
        .and_then(|b| b.aggregate(Vec::<Expr>::new(), vec![max(col("__n"))]))
        .and_then(|b| b.build())
        .expect("plan");
    let per_unit = LogicalPlanBuilder::from(plan.clone())
        .filter(col("u").is_not_null())
        .and_then(|b| b.aggregate(vec![col("u")], vec![count(lit(1i64)).alias("__n")]))
        .and_then(|b| b.aggregate(Vec::<Expr>::new(), vec![max(col("__n"))]))
        .and_then(|b| b.build())
        .expect("plan");
    let g = crate::partials::execute(session, per_group).await.expect("run");
    let r = crate::partials::execute(session, per_unit).await.expect("run");
    (one(&g), one(&r))
}

/// Fails when a unit has more rows in one group, or in all, than the
/// derived bounds allow; returns the derived bounds.
async fn assert_bounds_hold(session: &JobSession, sql: &str, keys: &[&str]) -> UnitBounds {
    let plan = session.plan(sql).expect("plan");
    let group_keys: Vec<Expr> = keys.iter().map(|k| Expr::Column(Column::from_name(*k))).collect();
    let bounds = unit_bounds(&plan, &[Column::from_name("u")], &group_keys, session);
    let (in_group, in_all) = actual(session, &plan, keys).await;
    if let Some(r) = bounds.rows_per_group {
        assert!(
            in_group <= r,
            "{sql}: a unit has {in_group} rows in one group where rows_per_group = {r}"
        );
    }
    if let Some(r) = bounds.rows {
        assert!(in_all <= r, "{sql}: a unit has {in_all} rows where rows = {r}");
    }
    bounds
}

/// The usage table: one row per enterprise and month, declared and
/// true (months "1" and "01" are two values of a text column).
fn usage(dir: &std::path::Path) -> TableBinding {
    table(
        dir,
        "gov.usage",
        vec![
            (
                "credit_code",
                strings(&[Some("A"), Some("A"), Some("A"), Some("B"), Some("B")]),
            ),
            (
                "month",
                strings(&[Some("1"), Some("01"), Some("2"), Some("1"), Some("2")]),
            ),
            ("kwh", strings(&[Some("5"), Some("5"), Some("5"), Some("5"), Some("5")])),
        ],
        &[("credit_code", 24), ("credit_code+month", 1)],
    )
}

/// A lookup joined on an implicit cast: `month` (text) = `month_no`
/// (an integer, one row per value). DataFusion coerces the text side
/// to the integer, so "1" and "01" (two values of the declared key)
/// meet the same lookup row and fall into one group of `month_no`,
/// although the join's classes take `month` and `month_no` as equal.
#[tokio::test]
async fn a_join_on_an_implicit_cast_does_not_make_a_group_key_equal_to_the_key_column() {
    let dir = tempfile::tempdir().expect("dir");
    let calendar = table(
        dir.path(),
        "gov.calendar",
        vec![
            ("month_no", Arc::new(Int64Array::from(vec![1i64, 2])) as ArrayRef),
            ("label", strings(&[Some("jan"), Some("feb")])),
        ],
        &[("month_no", 1)],
    );
    let session = verified_session(&[usage(dir.path()), calendar]).await;
    assert_eq!(
        session
            .max_rows_per_value(&"gov.usage".parse().expect("id"))
            .and_then(|m| m.get("credit_code+month")),
        Some(&1),
        "the declaration holds on the files"
    );
    assert_bounds_hold(
        &session,
        "SELECT g.credit_code AS u, g.month AS gm, c.month_no AS m FROM gov.usage g JOIN gov.calendar c ON g.month = c.month_no",
        &["m"],
    )
    .await;
}

/// The same cast the other way round breaks the row bound itself: a
/// text lookup column declared unique holds "1" and "01", which both
/// equal the integer 1 after the coercion, so a usage row meets two
/// lookup rows where the derivation multiplies by one.
#[tokio::test]
async fn a_join_on_an_implicit_cast_does_not_keep_a_unique_columns_bound() {
    let dir = tempfile::tempdir().expect("dir");
    let usage = table(
        dir.path(),
        "gov.usage",
        vec![
            ("credit_code", strings(&[Some("A"), Some("A"), Some("B")])),
            ("month_no", Arc::new(Int64Array::from(vec![1i64, 2, 1])) as ArrayRef),
        ],
        &[("credit_code", 2), ("credit_code+month_no", 1)],
    );
    let codes = table(
        dir.path(),
        "gov.codes",
        vec![
            ("code", strings(&[Some("1"), Some("01"), Some("2")])),
            ("label", strings(&[Some("x"), Some("y"), Some("z")])),
        ],
        &[("code", 1)],
    );
    let session = verified_session(&[usage, codes]).await;
    assert_bounds_hold(
        &session,
        "SELECT g.credit_code AS u, g.month_no AS m, c.label AS l FROM gov.usage g JOIN gov.codes c ON g.month_no = c.code",
        &["m"],
    )
    .await;
}

/// Shapes the derivation must get right without casts: the key's own
/// columns, renames, filters, a self-join on the unit, a join on the
/// unit with a table of several rows per unit, group keys computed
/// from the month, and NULL months.
#[tokio::test]
async fn declared_keys_bound_the_rows_the_engine_produces() {
    let dir = tempfile::tempdir().expect("dir");
    let loans = table(
        dir.path(),
        "bank.loans",
        vec![
            ("credit_code", strings(&[Some("A"), Some("A"), Some("B")])),
            ("loan_id", strings(&[Some("l1"), Some("l2"), Some("l3")])),
        ],
        &[("credit_code", 3), ("loan_id", 1)],
    );
    let session = verified_session(&[usage(dir.path()), loans]).await;
    let cases: &[(&str, &[&str], Option<u64>)] = &[
        ("SELECT credit_code AS u, month AS m FROM gov.usage", &["m"], Some(1)),
        (
            "SELECT t.c AS u, t.mm AS m FROM (SELECT credit_code AS c, month AS mm FROM gov.usage WHERE kwh > '0') t",
            &["m"],
            Some(1),
        ),
        (
            "SELECT credit_code AS u, substr(month, 2) AS m FROM gov.usage",
            &["m"],
            None,
        ),
        (
            "SELECT credit_code AS u, CAST(month AS BIGINT) AS m FROM gov.usage",
            &["m"],
            None,
        ),
        ("SELECT credit_code AS u, kwh AS m FROM gov.usage", &["m"], None),
        (
            "SELECT a.credit_code AS u, a.month AS m, b.month AS m2 FROM gov.usage a \
             JOIN gov.usage b ON a.credit_code = b.credit_code",
            &["m"],
            Some(24),
        ),
        (
            "SELECT a.credit_code AS u, b.month AS m FROM gov.usage a \
             JOIN gov.usage b ON a.credit_code = b.credit_code",
            &["m"],
            // b's key does not reach the output whole: no bound.
            None,
        ),
        (
            "SELECT g.credit_code AS u, g.month AS m FROM gov.usage g \
             JOIN bank.loans l ON g.credit_code = l.credit_code",
            &["m"],
            Some(3),
        ),
        (
            "SELECT l.credit_code AS u, g.month AS m, l.loan_id AS id FROM gov.usage g \
             JOIN bank.loans l ON g.credit_code = l.credit_code",
            &["m", "id"],
            // g.credit_code is not output: the key does not survive.
            None,
        ),
        (
            "SELECT l.credit_code AS u, g.credit_code AS c, g.month AS m, l.loan_id AS id FROM gov.usage g \
             JOIN bank.loans l ON g.credit_code = l.credit_code",
            &["m", "id"],
            Some(3),
        ),
    ];
    for (sql, keys, expected) in cases {
        let b = assert_bounds_hold(&session, sql, keys).await;
        assert_eq!(b.rows_per_group, *expected, "{sql}");
    }

    // NULL months: two rows of A with no month break the declaration,
    // which is then not installed (no bound per group).
    let dir = tempfile::tempdir().expect("dir");
    let nulls = table(
        dir.path(),
        "gov.usage",
        vec![
            ("credit_code", strings(&[Some("A"), Some("A"), Some("B")])),
            ("month", strings(&[None, None, Some("1")])),
            ("kwh", strings(&[Some("5"), Some("5"), Some("5")])),
        ],
        &[("credit_code", 24), ("credit_code+month", 1)],
    );
    let session = verified_session(&[nulls]).await;
    let installed = session.max_rows_per_value(&"gov.usage".parse().expect("id")).cloned();
    assert_eq!(installed, Some(BTreeMap::from([("credit_code".to_string(), 24)])));
    let b = assert_bounds_hold(&session, "SELECT credit_code AS u, month AS m FROM gov.usage", &["m"]).await;
    assert_eq!(b.rows_per_group, None);
}
