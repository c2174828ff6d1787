//! The rules beneath the plan: a job's every reference to a column with a
//! rule reads the coarsened value, computed exactly as the policy's
//! functions compute it; the checker releases the coarsened public keys;
//! a session that misses a rule is refused.

use super::*;
use crate::EngineLimits;
use crate::session::JobSession;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, Float64Type, Int64Type, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use sandbox_model::{Catalog, OpenClass};
use sandbox_policy::DateUnit;
use sandbox_policy::desensitize::days_from_civil;
use sandbox_policy::{parse_catalog_entry, parse_policy};
use std::sync::Arc;

/// One stored row: (person, age, cost, name, phone, visit day, address).
type Row = (
    String,
    Option<i64>,
    Option<f64>,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<String>,
);

fn rows() -> Vec<Row> {
    let names = ["张三丰", "李", "欧阳娜娜", "", "Wang Wei"];
    let phones = ["13812345678", "5678", "021-6543 2100", "1"];
    let addresses = ["上海市浦东新区世纪大道100号", "徐汇", "", "静安区南京西路"];
    let mut out: Vec<Row> = (0..60i64)
        .map(|i| {
            let date = days_from_civil(2020 + i % 4, (i % 12) as u32 + 1, (i % 28) as u32 + 1) as i32;
            (
                format!("p{}", i % 23),
                Some(i - 3),
                Some(i as f64 * 37.5 - 20.0),
                Some(names[i as usize % names.len()].to_string()),
                Some(phones[i as usize % phones.len()].to_string()),
                Some(date),
                Some(addresses[i as usize % addresses.len()].to_string()),
            )
        })
        .collect();
    // Edges: NULLs everywhere, leap day, year ends, negative values.
    out.push(("p1".into(), None, None, None, None, None, None));
    out.push((
        "p2".into(),
        Some(-1),
        Some(-0.5),
        Some("A".into()),
        Some("".into()),
        Some(days_from_civil(2024, 2, 29) as i32),
        Some("x".into()),
    ));
    out.push((
        "p3".into(),
        Some(1_000_000),
        Some(1e9),
        Some("ab".into()),
        Some("12345".into()),
        Some(days_from_civil(1969, 12, 31) as i32),
        Some("上海市".into()),
    ));
    // The ends of each type's range: coarsened without failing.
    out.push((
        "p4".into(),
        Some(i64::MIN),
        Some(f64::NEG_INFINITY),
        Some("末".into()),
        Some("9".into()),
        Some(i32::MIN),
        Some("".into()),
    ));
    out.push((
        "p5".into(),
        Some(i64::MAX),
        Some(f64::INFINITY),
        Some("z".repeat(500)),
        Some("8".repeat(500)),
        Some(i32::MAX),
        Some("长".repeat(500)),
    ));
    out
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Utf8, true),
        Field::new("age", DataType::Int64, true),
        Field::new("cost", DataType::Float64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("phone", DataType::Utf8, true),
        Field::new("visit", DataType::Date32, true),
        Field::new("address", DataType::Utf8, true),
    ]))
}

fn rules() -> BTreeMap<String, Desensitization> {
    BTreeMap::from([
        ("age".to_string(), Desensitization::band(5).expect("width")),
        ("cost".to_string(), Desensitization::Bands(vec![0.0, 100.0, 1000.0])),
        ("name".to_string(), Desensitization::MaskKeepFirst(1)),
        ("phone".to_string(), Desensitization::MaskKeepLast(4)),
        ("visit".to_string(), Desensitization::TruncateDate(DateUnit::Month)),
        ("address".to_string(), Desensitization::TruncateChars(6)),
    ])
}

/// Writes the rows as one Parquet file; returns the binding with `rules`.
fn bound(dir: &std::path::Path, rules: BTreeMap<String, Desensitization>) -> TableBinding {
    let data = rows();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(
            data.iter().map(|r| Some(r.0.clone())).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(data.iter().map(|r| r.1).collect::<Vec<_>>())),
        Arc::new(Float64Array::from(data.iter().map(|r| r.2).collect::<Vec<_>>())),
        Arc::new(StringArray::from(data.iter().map(|r| r.3.clone()).collect::<Vec<_>>())),
        Arc::new(StringArray::from(data.iter().map(|r| r.4.clone()).collect::<Vec<_>>())),
        Arc::new(Date32Array::from(data.iter().map(|r| r.5).collect::<Vec<_>>())),
        Arc::new(StringArray::from(data.iter().map(|r| r.6.clone()).collect::<Vec<_>>())),
    ];
    let batch = RecordBatch::try_new(schema(), columns).expect("batch");
    let table = dir.join("health/visits");
    std::fs::create_dir_all(&table).expect("mkdir");
    let file = std::fs::File::create(table.join("part-0.parquet")).expect("create");
    let mut writer = ArrowWriter::try_new(file, schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    TableBinding {
        dataset: "health.visits".parse().expect("id"),
        location: format!("{}/", table.display()),
        files: Vec::new(),
        pins: Vec::new(),
        schema: schema(),
        declared_max_rows_per_value: BTreeMap::new(),
        desensitize: rules,
    }
}

/// Runs `sql` unchecked on the session (exact values: the mechanism beneath
/// the plan is under test, not the release).
async fn run(session: &JobSession, sql: &str) -> Vec<RecordBatch> {
    let plan = session.plan(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    crate::partials::execute(session, plan)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn ints(batches: &[RecordBatch], column: usize) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            let c = datafusion::arrow::compute::cast(b.column(column), &DataType::Int64).expect("cast");
            let a = c.as_primitive::<Int64Type>().clone();
            (0..a.len()).map(move |i| a.is_valid(i).then(|| a.value(i)))
        })
        .collect()
}

fn texts(batches: &[RecordBatch], column: usize) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let c = datafusion::arrow::compute::cast(b.column(column), &DataType::Utf8).expect("cast");
            let a = c.as_string::<i32>().clone();
            (0..a.len()).map(move |i| a.is_valid(i).then(|| a.value(i).to_string()))
        })
        .collect()
}

#[tokio::test]
async fn every_column_reads_as_the_policy_function_of_the_stored_value() {
    let dir = tempfile::tempdir().expect("dir");
    let session = JobSession::new(&[bound(dir.path(), rules())], EngineLimits::default()).expect("session");
    let batches = run(
        &session,
        "SELECT person_id, age, cost, name, phone, visit, address FROM health.visits",
    )
    .await;
    let rules = rules();
    let rule = |c: &str| rules.get(c).expect("rule");
    let stored = rows();
    let mut seen = 0;
    for b in &batches {
        let age = b.column(1).as_primitive::<Int64Type>();
        let cost = b.column(2).as_primitive::<Float64Type>();
        let name = b.column(3).as_string::<i32>();
        let phone = b.column(4).as_string::<i32>();
        let visit = b.column(5).as_primitive::<Date32Type>();
        let address = b.column(6).as_string::<i32>();
        for i in 0..b.num_rows() {
            let row = &stored[seen];
            let opt = |valid: bool| valid.then_some(());
            assert_eq!(
                opt(age.is_valid(i)).map(|_| age.value(i)),
                row.1.map(|x| rule("age").apply_i64(x))
            );
            assert_eq!(
                opt(cost.is_valid(i)).map(|_| cost.value(i)),
                row.2.map(|x| rule("cost").apply_f64(x))
            );
            assert_eq!(
                opt(name.is_valid(i)).map(|_| name.value(i).to_string()),
                row.3.as_deref().map(|x| rule("name").apply_str(x)),
                "name of row {seen}"
            );
            assert_eq!(
                opt(phone.is_valid(i)).map(|_| phone.value(i).to_string()),
                row.4.as_deref().map(|x| rule("phone").apply_str(x)),
                "phone of row {seen}"
            );
            assert_eq!(
                opt(visit.is_valid(i)).map(|_| visit.value(i)),
                row.5.map(|x| rule("visit").apply_date(x))
            );
            assert_eq!(
                opt(address.is_valid(i)).map(|_| address.value(i).to_string()),
                row.6.as_deref().map(|x| rule("address").apply_str(x)),
            );
            seen += 1;
        }
    }
    assert_eq!(seen, stored.len());
    // The stored values are not what the job reads (the test is not vacuous).
    assert!(stored.iter().any(|r| r.1 == Some(37)));
}

#[tokio::test]
async fn grouping_filtering_and_expressions_see_only_the_bands() {
    let dir = tempfile::tempdir().expect("dir");
    let session = JobSession::new(&[bound(dir.path(), rules())], EngineLimits::default()).expect("session");
    let stored = rows();

    // GROUP BY age groups by band: the groups are the bands, with every
    // row of the band counted in its group.
    let grouped = run(
        &session,
        "SELECT age, COUNT(*) AS n FROM health.visits WHERE age IS NOT NULL GROUP BY age ORDER BY age",
    )
    .await;
    let mut want: BTreeMap<i64, i64> = BTreeMap::new();
    for r in &stored {
        if let Some(a) = r.1 {
            *want.entry(a.saturating_sub(a.rem_euclid(5))).or_default() += 1;
        }
    }
    let got: BTreeMap<i64, i64> = ints(&grouped, 0)
        .into_iter()
        .zip(ints(&grouped, 1))
        .map(|(k, n)| (k.expect("key"), n.expect("count")))
        .collect();
    assert_eq!(got, want);
    assert_eq!(got.get(&35), Some(&5), "ages 35 to 39 are one group");
    // Every band starts at a multiple of 5 (but the bottom of the range,
    // where the band would start below i64::MIN).
    assert!(got.keys().all(|k| k.rem_euclid(5) == 0 || *k == i64::MIN));

    // A filter on one age within a band matches nothing; on the band's
    // value, the whole band.
    let count = |sql: &'static str| {
        let session = &session;
        async move { ints(&run(session, sql).await, 0)[0] }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM health.visits WHERE age = 37").await,
        Some(0)
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM health.visits WHERE age = 35").await,
        Some(5)
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM health.visits WHERE age BETWEEN 37 AND 37").await,
        Some(0)
    );
    // Expressions over the column: no finer than the band.
    let keys = |sql: &'static str| {
        let session = &session;
        async move { ints(&run(session, sql).await, 0) }
    };
    for k in keys("SELECT age + 0 AS k, COUNT(*) FROM health.visits WHERE age IS NOT NULL GROUP BY age + 0").await {
        let k = k.expect("key");
        assert!(k.rem_euclid(5) == 0 || k == i64::MIN, "{k}");
    }
    let case = run(
        &session,
        "SELECT CASE WHEN age = 37 THEN 'one' ELSE 'other' END AS k, COUNT(*) FROM health.visits GROUP BY 1",
    )
    .await;
    assert_eq!(texts(&case, 0), [Some("other".to_string())]);
    // A join on the column joins bands: each row of a band meets the band.
    let joined =
        count("SELECT COUNT(*) FROM health.visits a JOIN health.visits b ON a.age = b.age WHERE a.age = 35").await;
    assert_eq!(joined, Some(25));
    // Text: a prefix of a masked name is a prefix of the mask.
    let prefixes = run(
        &session,
        "SELECT substr(name, 1, 3) AS k, COUNT(*) FROM health.visits WHERE name IS NOT NULL GROUP BY 1",
    )
    .await;
    for k in texts(&prefixes, 0) {
        let k = k.expect("key");
        assert!(k.chars().skip(1).all(|c| c == '*'), "{k}");
    }
    // Dates: the day is gone.
    let days =
        keys("SELECT date_part('day', visit) AS k, COUNT(*) FROM health.visits WHERE visit IS NOT NULL GROUP BY 1")
            .await;
    // (date_part of a date beyond the calendar's range is NULL.)
    let days: Vec<i64> = days.into_iter().flatten().collect();
    assert_eq!(days, [1]);
}

#[tokio::test]
async fn without_rules_the_stored_values_are_read() {
    let dir = tempfile::tempdir().expect("dir");
    let session = JobSession::new(&[bound(dir.path(), BTreeMap::new())], EngineLimits::default()).expect("session");
    let n = ints(
        &run(&session, "SELECT COUNT(*) FROM health.visits WHERE age = 37").await,
        0,
    );
    assert_eq!(n, [Some(1)]);
}

struct Lookup {
    policy: Policy,
}

impl PolicyLookup for Lookup {
    fn policy(&self, dataset: &DatasetId) -> Option<&Policy> {
        (dataset == &self.policy.dataset).then_some(&self.policy)
    }
    fn open_class(&self, dataset: &DatasetId) -> Option<OpenClass> {
        (dataset == &self.policy.dataset).then_some(OpenClass::Conditional)
    }
}

fn policy() -> Policy {
    policy_named("health.visits", true)
}

/// The test policy of `dataset` (the same columns and roles), with the
/// `[desensitize]` table or without it.
fn policy_named(dataset: &str, with_rules: bool) -> Policy {
    policy_edited(dataset, &|text| match (with_rules, text.find("[desensitize]")) {
        (false, Some(at)) => text[..at].to_string(),
        _ => text,
    })
}

/// The test policy of `dataset`, its text changed by `edit` first.
fn policy_edited(dataset: &str, edit: &dyn Fn(String) -> String) -> Policy {
    let entry = r#"
id = "health.visits"
title = "visits"
provider = { id = "h", name = "H", kind = "government" }
domain = "health"
summary = "Visits."
update_frequency = "yearly"
time_coverage = "2024"
area_coverage = "上海市"
format = "Parquet"
open_class = "conditional"
open_conditions = "research only"
fields = [
  { name = "person_id", type = "utf8", description = "p" },
  { name = "age", type = "int64", description = "a" },
  { name = "cost", type = "float64", description = "c" },
  { name = "name", type = "utf8", description = "n" },
  { name = "phone", type = "utf8", description = "t" },
  { name = "visit", type = "date", description = "v" },
  { name = "address", type = "utf8", description = "d" },
]
"#;
    let entry = entry.replace("health.visits", dataset);
    let mut catalog = Catalog::new();
    catalog
        .insert(parse_catalog_entry(&format!("{dataset}.toml"), &entry).expect("entry"))
        .expect("insert");
    let text = r#"
dataset = "health.visits"
version = "1"
unit_entity = "person"
[release]
mode = "dp"
min_units = 2
aggregates = ["count", "sum", "avg"]
[dp]
epsilon_per_query = 1.0
delta = 1e-6
epsilon_budget = 10.0
max_groups_per_unit = 2
max_rows_per_group = 3
[jobs]
sql = true
wasm = false
[columns]
person_id = { roles = ["identifier", "privacy_unit"] }
age = { role = "dimension", public_keys = [18, 19, 20, 23, 37] }
cost = { role = "measure", bounds = [0.0, 5000.0] }
name = { role = "dimension" }
phone = { role = "dimension" }
visit = { role = "dimension" }
address = { role = "public" }
[desensitize]
age = { band = 5 }
cost = { bands = [0, 100, 1000] }
name = { mask_keep_first = 1 }
phone = { mask_keep_last = 4 }
visit = { truncate_to = "month" }
address = { truncate_chars = 6 }
"#;
    let text = edit(text.replace("health.visits", dataset));
    parse_policy(&format!("{dataset}.toml"), &text, &catalog).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn scan_rules_are_every_columns_rule_whatever_its_role() {
    // The measure's rule (`cost`) included: a rule means one thing.
    assert_eq!(scan_rules(&policy()), rules());
    assert!(scan_rules(&policy_named("health.coarse", false)).is_empty());
}

#[test]
fn the_checker_releases_the_coarsened_public_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let lookup = Lookup { policy: policy() };
    let session = JobSession::new(
        &[bound(dir.path(), scan_rules(&lookup.policy))],
        EngineLimits::default(),
    )
    .expect("session");
    let q = session
        .plan_and_check("SELECT age, COUNT(*) FROM health.visits GROUP BY age", &lookup)
        .unwrap_or_else(|e| panic!("{e}"));
    use sandbox_policy::PublicKey::Int;
    assert_eq!(q.group_keys[0].public_keys, Some(vec![Int(15), Int(20), Int(35)]));
}

#[test]
fn a_session_without_the_policys_rules_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let lookup = Lookup { policy: policy() };
    // Bound without the rules (as a runtime bug would): no job runs on it.
    let session = JobSession::new(&[bound(dir.path(), BTreeMap::new())], EngineLimits::default()).expect("session");
    for sql in [
        "SELECT age, COUNT(*) FROM health.visits GROUP BY age",
        "SELECT COUNT(*) FROM health.visits",
    ] {
        match session.plan_and_check(sql, &lookup) {
            Err(SqlError::Internal(m)) => assert!(m.contains("desensitization"), "{m}"),
            other => panic!("{sql}: {other:?}"),
        }
    }
    // And with only some of them.
    let mut partial = scan_rules(&lookup.policy);
    partial.remove("age");
    let dir = tempfile::tempdir().expect("dir");
    let session = JobSession::new(&[bound(dir.path(), partial)], EngineLimits::default()).expect("session");
    assert!(matches!(
        session.plan_and_check("SELECT COUNT(*) FROM health.visits", &lookup),
        Err(SqlError::Internal(_))
    ));
}

mod attack;
mod measures;
