use super::*;
use crate::EngineLimits;
use crate::session::TableBinding;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use std::collections::BTreeMap;
use std::sync::Arc;

fn binding(dir: &std::path::Path, id: &str, columns: &[&str], declared: &[(&str, u64)]) -> TableBinding {
    let path = dir.join(id);
    std::fs::create_dir_all(&path).expect("dir");
    TableBinding {
        dataset: id.parse().expect("id"),
        location: format!("{}/", path.display()),
        files: Vec::new(),
        pins: Vec::new(),
        schema: Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(*c, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        )),
        declared_max_rows_per_value: declared
            .iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect::<BTreeMap<_, _>>(),
        desensitize: BTreeMap::new(),
    }
}

/// A session over `bindings` that takes every declaration as verified
/// (the derivation is under test here, not the verification).
fn trusting(bindings: &[TableBinding]) -> JobSession {
    let mut session = JobSession::new(bindings, EngineLimits::default()).expect("session");
    for b in bindings {
        session.set_verified_max_rows_per_value(&b.dataset, b.declared_max_rows_per_value.clone());
    }
    session
}

/// The bound for the plan of `sql`, whose output columns `units` are
/// the unit columns.
fn bound(sql: &str, units: &[&str]) -> Option<u64> {
    let dir = tempfile::tempdir().expect("dir");
    let session = trusting(&[
        binding(
            dir.path(),
            "gov.usage",
            &["credit_code", "month"],
            &[("credit_code", 24)],
        ),
        binding(
            dir.path(),
            "gov.entities",
            &["credit_code", "district"],
            &[("credit_code", 1)],
        ),
        binding(
            dir.path(),
            "bank.loans",
            &["loan_id", "credit_code"],
            &[("credit_code", 3), ("loan_id", 1)],
        ),
        binding(dir.path(), "gov.districts", &["district", "name"], &[("district", 1)]),
        binding(dir.path(), "gov.plain", &["credit_code"], &[]),
    ]);
    let plan = session.plan(sql).expect("plan");
    let columns: Vec<Column> = units.iter().map(|u| Column::from_name(*u)).collect();
    unit_bounds(&plan, &columns, &[], &session).rows
}

/// The groups bound for the plan of `sql` grouped by its output
/// columns `keys`.
fn groups(sql: &str, units: &[&str], keys: &[&str]) -> Option<u64> {
    let dir = tempfile::tempdir().expect("dir");
    let session = trusting(&[
        binding(
            dir.path(),
            "gov.usage",
            &["credit_code", "month"],
            &[("credit_code", 24)],
        ),
        binding(
            dir.path(),
            "gov.entities",
            &["credit_code", "district"],
            &[("credit_code", 1)],
        ),
        binding(
            dir.path(),
            "bank.loans",
            &["loan_id", "credit_code"],
            &[("credit_code", 3)],
        ),
    ]);
    let plan = session.plan(sql).expect("plan");
    let columns: Vec<Column> = units.iter().map(|u| Column::from_name(*u)).collect();
    let keys: Vec<Expr> = keys.iter().map(|k| Expr::Column(Column::from_name(*k))).collect();
    unit_bounds(&plan, &columns, &keys, &session).groups
}

#[test]
fn a_key_that_is_a_function_of_the_unit_gives_one_group() {
    let joined = "SELECT b.credit_code AS u1, e.credit_code AS u2, e.district AS d, b.loan_id AS l \
                  FROM bank.loans b JOIN gov.entities e ON b.credit_code = e.credit_code";
    // district comes from the row of the unit's unique credit code.
    assert_eq!(groups(joined, &["u1", "u2"], &["d"]), Some(1));
    // loan_id does not: bounded by the unit's rows.
    assert_eq!(groups(joined, &["u1", "u2"], &["d", "l"]), Some(3));
    // Not joined on the unit: no function of it; bounded by its rows.
    let apart = "SELECT b.credit_code AS u, e.district AS d FROM bank.loans b \
                 JOIN gov.entities e ON b.loan_id = e.credit_code";
    assert_eq!(groups(apart, &["u"], &["d"]), Some(3));
    // A table without a unique column: month is no function of the unit.
    let usage = "SELECT credit_code AS u, month AS m FROM gov.usage";
    assert_eq!(groups(usage, &["u"], &["m"]), Some(24));
}

#[test]
fn a_scan_filter_and_projection_keep_the_declared_bound() {
    assert_eq!(
        bound("SELECT credit_code AS u FROM gov.usage WHERE month > '2023-06'", &["u"]),
        Some(24)
    );
    assert_eq!(bound("SELECT credit_code AS u FROM gov.plain", &["u"]), None);
}

#[test]
fn an_equi_join_multiplies_by_the_matches_a_row_can_meet() {
    // Joined on the unit: both unit columns are one value.
    let on_unit = "SELECT b.credit_code AS u1, e.credit_code AS u2 FROM bank.loans b \
                   JOIN gov.entities e ON b.credit_code = e.credit_code";
    assert_eq!(bound(on_unit, &["u1", "u2"]), Some(3));
    let usage = "SELECT u.credit_code AS u1, e.credit_code AS u2 FROM gov.usage u \
                 JOIN gov.entities e ON u.credit_code = e.credit_code WHERE e.district = 'x'";
    assert_eq!(bound(usage, &["u1", "u2"]), Some(24));
    // A lookup on a unique key keeps the left side's bound.
    let lookup = "SELECT e.credit_code AS u FROM gov.entities e JOIN gov.districts d ON e.district = d.district";
    assert_eq!(bound(lookup, &["u"]), Some(1));
    // Unit columns not joined to each other: a unit's rows are covered
    // by the rows where either equals it.
    let apart = "SELECT b.credit_code AS u1, e.credit_code AS u2 FROM bank.loans b \
                 JOIN gov.entities e ON b.loan_id = e.credit_code";
    assert_eq!(bound(apart, &["u1", "u2"]), Some(3 + 1));
}

#[test]
fn unknown_shapes_give_no_bound() {
    // The right key has no declaration: a left row may meet any number.
    let undeclared = "SELECT b.credit_code AS u FROM bank.loans b JOIN gov.plain p ON b.credit_code = p.credit_code";
    assert_eq!(bound(undeclared, &["u"]), None);
    // A join on a non-equality.
    let theta = "SELECT b.credit_code AS u FROM bank.loans b JOIN gov.entities e ON b.credit_code < e.credit_code";
    assert_eq!(bound(theta, &["u"]), None);
    // Outer joins, aggregations and unions are not followed.
    let outer = "SELECT b.credit_code AS u FROM bank.loans b LEFT JOIN gov.entities e ON b.credit_code = e.credit_code";
    assert_eq!(bound(outer, &["u"]), None);
    let grouped =
        "SELECT credit_code AS u FROM (SELECT credit_code, COUNT(*) AS n FROM gov.usage GROUP BY credit_code)";
    assert_eq!(bound(grouped, &["u"]), None);
    let union = "SELECT credit_code AS u FROM gov.usage UNION ALL SELECT credit_code FROM gov.usage";
    assert_eq!(bound(union, &["u"]), None);
    // A self-join on the unit squares the bound.
    let selfjoin = "SELECT a.credit_code AS u FROM bank.loans a JOIN bank.loans b ON a.credit_code = b.credit_code";
    assert_eq!(bound(selfjoin, &["u"]), Some(9));
}

fn write_parquet(path: &std::path::Path, column: datafusion::arrow::array::ArrayRef) {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "credit_code",
        column.data_type().clone(),
        true,
    )]));
    let batch = datafusion::arrow::array::RecordBatch::try_new(schema.clone(), vec![column]).expect("batch");
    let file = std::fs::File::create(path).expect("file");
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

#[tokio::test]
async fn values_are_counted_as_the_scan_sees_them_on_the_pinned_files() {
    use datafusion::arrow::array::{Int64Array, StringArray};
    let dir = tempfile::tempdir().expect("dir");
    // One enterprise as an integer in one file and as text in another:
    // one value once cast to the catalog's text type, as a join sees it.
    let a = dir.path().join("a.parquet");
    let b = dir.path().join("b.parquet");
    write_parquet(&a, Arc::new(Int64Array::from(vec![Some(100000), Some(7), None])));
    write_parquet(&b, Arc::new(StringArray::from(vec![Some("100000"), None])));
    // A file outside the pinned list is neither counted nor scanned.
    let hidden = dir.path().join("x=1");
    std::fs::create_dir_all(&hidden).expect("dir");
    write_parquet(
        &hidden.join("c.parquet"),
        Arc::new(StringArray::from(vec!["100000"; 5])),
    );
    let mut table = binding(dir.path(), "gov.usage", &["credit_code"], &[("credit_code", 1)]);
    table.location = format!("{}/", dir.path().display());
    table.files = vec![a.display().to_string(), b.display().to_string()];
    let session = JobSession::new(&[table], EngineLimits::default()).expect("session");
    let dataset: DatasetId = "gov.usage".parse().expect("id");
    let counted = count_max_rows_per_value(&session, &dataset, &["credit_code".to_string()])
        .await
        .expect("counted");
    assert_eq!(counted.get("credit_code"), Some(&2));
    // The job's scan reads the same two files: three non-null codes.
    let plan = session
        .plan("SELECT COUNT(credit_code) AS n FROM gov.usage")
        .expect("plan");
    let batches = crate::partials::execute(&session, plan).await.expect("run");
    let n = batches[0].column(0).as_primitive::<Int64Type>().value(0);
    assert_eq!(n, 3);
}

/// The bound on one unit's rows in one group for the plan of `sql`
/// grouped by its output columns `keys`, with one row per enterprise
/// and month declared on the usage table.
fn rows_per_group(sql: &str, units: &[&str], keys: &[&str]) -> Option<u64> {
    let dir = tempfile::tempdir().expect("dir");
    let session = trusting(&[
        binding(
            dir.path(),
            "gov.usage",
            &["credit_code", "month", "kwh"],
            &[("credit_code", 24), ("credit_code+month", 1)],
        ),
        binding(
            dir.path(),
            "bank.loans",
            &["loan_id", "credit_code"],
            &[("credit_code", 3), ("loan_id", 1)],
        ),
    ]);
    let plan = session.plan(sql).expect("plan");
    let columns: Vec<Column> = units.iter().map(|u| Column::from_name(*u)).collect();
    let keys: Vec<Expr> = keys.iter().map(|k| Expr::Column(Column::from_name(*k))).collect();
    unit_bounds(&plan, &columns, &keys, &session).rows_per_group
}

#[test]
fn a_unit_column_without_nulls_in_the_files_gives_every_row_a_unit() {
    let dir = tempfile::tempdir().expect("dir");
    let mut session = trusting(&[
        binding(
            dir.path(),
            "gov.usage",
            &["credit_code", "month"],
            &[("credit_code", 24)],
        ),
        binding(
            dir.path(),
            "gov.entities",
            &["credit_code", "district"],
            &[("credit_code", 1)],
        ),
    ]);
    session.set_null_free_columns(&"gov.usage".parse().expect("id"), ["credit_code".to_string()].into());
    let never_null = |sql: &str, units: &[&str]| {
        let plan = session.plan(sql).expect("plan");
        let columns: Vec<Column> = units.iter().map(|u| Column::from_name(*u)).collect();
        unit_bounds(&plan, &columns, &[], &session).unit_never_null
    };
    assert!(never_null(
        "SELECT credit_code AS u, month FROM gov.usage WHERE month > '2023'",
        &["u"]
    ));
    let inner = "SELECT g.credit_code AS u, e.credit_code AS v FROM gov.usage g \
                 JOIN gov.entities e ON g.credit_code = e.credit_code";
    assert!(never_null(inner, &["v", "u"]));
    // The entities' column was not counted: it may hold NULLs.
    assert!(!never_null("SELECT credit_code AS u FROM gov.entities", &["u"]));
    // An outer join can give a row without the other side's values.
    let outer = "SELECT g.credit_code AS u FROM gov.entities e LEFT JOIN gov.usage g ON g.credit_code = e.credit_code";
    assert!(!never_null(outer, &["u"]));
    // A computed unit is not the column.
    assert!(!never_null(
        "SELECT CASE WHEN month > '2023' THEN credit_code END AS u FROM gov.usage",
        &["u"]
    ));
}

#[tokio::test]
async fn nulls_are_counted_as_the_scan_sees_them() {
    use datafusion::arrow::array::StringArray;
    let dir = tempfile::tempdir().expect("dir");
    let a = dir.path().join("a.parquet");
    write_parquet(&a, Arc::new(StringArray::from(vec![Some("x"), None, None, Some("y")])));
    let mut table = binding(dir.path(), "gov.usage", &["credit_code"], &[("credit_code", 2)]);
    table.location = format!("{}/", dir.path().display());
    table.files = vec![a.display().to_string()];
    let session = JobSession::new(&[table], EngineLimits::default()).expect("session");
    let dataset: DatasetId = "gov.usage".parse().expect("id");
    let nulls = count_nulls(&session, &dataset, &["credit_code".to_string()])
        .await
        .expect("counted");
    assert_eq!(nulls.get("credit_code"), Some(&2));
}

#[test]
fn a_declared_key_of_the_unit_and_the_group_keys_bounds_a_units_rows_per_group() {
    let usage = "SELECT credit_code AS u, month AS m, kwh AS k FROM gov.usage";
    assert_eq!(rows_per_group(usage, &["u"], &["m"]), Some(1));
    // Renamed through an alias and a filter: still one.
    let aliased = "SELECT x.credit_code AS u, x.month AS m FROM gov.usage x WHERE x.kwh > '0'";
    assert_eq!(rows_per_group(aliased, &["u"], &["m"]), Some(1));
    // Grouped by something else than the key's other column: no bound.
    assert_eq!(rows_per_group(usage, &["u"], &["k"]), None);
    assert_eq!(rows_per_group(usage, &["u"], &[]), None);
    // The unit is not the key's first column's value: no bound.
    assert_eq!(rows_per_group(usage, &["k"], &["m"]), None);
    // A key computed from the month is not the month: no bound.
    let computed = "SELECT credit_code AS u, substr(month, 1, 4) AS m FROM gov.usage";
    assert_eq!(rows_per_group(computed, &["u"], &["m"]), None);
    // A join that gives each usage row up to 3 loans multiplies it.
    let joined = "SELECT g.credit_code AS u, g.month AS m, l.loan_id AS l \
                  FROM gov.usage g JOIN bank.loans l ON g.credit_code = l.credit_code";
    assert_eq!(rows_per_group(joined, &["u"], &["m"]), Some(3));
}

#[tokio::test]
async fn a_key_of_several_columns_counts_combinations_with_null_as_a_value() {
    use datafusion::arrow::array::{RecordBatch, StringArray};
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("a.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("credit_code", DataType::Utf8, true),
        Field::new("month", DataType::Utf8, true),
    ]));
    let codes = StringArray::from(vec![Some("a"), Some("a"), Some("a"), Some("b"), Some("b"), None]);
    let months = StringArray::from(vec![Some("01"), Some("02"), Some("02"), None, None, Some("01")]);
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(codes), Arc::new(months)]).expect("batch");
    let file = std::fs::File::create(&path).expect("file");
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    let mut table = binding(dir.path(), "gov.usage", &["credit_code", "month"], &[]);
    table.location = format!("{}/", dir.path().display());
    table.files = vec![path.display().to_string()];
    let session = JobSession::new(&[table], EngineLimits::default()).expect("session");
    let dataset: DatasetId = "gov.usage".parse().expect("id");
    let counted = count_max_rows_per_value(
        &session,
        &dataset,
        &["credit_code+month".to_string(), "credit_code".to_string()],
    )
    .await
    .expect("counted");
    // (a, 02) twice, (b, NULL) twice: NULL is a value of the key.
    assert_eq!(counted.get("credit_code+month"), Some(&2));
    assert_eq!(counted.get("credit_code"), Some(&3));
}
