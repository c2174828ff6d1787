//! End-to-end tests: generate into a temporary directory and read the
//! Parquet files back with the `parquet` crate's Arrow reader.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sandbox_model::credit_code;
use tempfile::TempDir;

use crate::*;

/// Digest of `Scale::small()` with seed 42. Changes whenever the model,
/// the random streams or the Parquet encoding change; update it deliberately.
const SMALL_SEED_42_DIGEST: &str = "d5fd6df816af2e8dd0e248826d6147349dfc46ed9006f39a8a18152a09b4a3ca";

fn generate_small(seed: u64) -> (TempDir, GenerateReport) {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = generate(&GenerateOptions::new(seed, Scale::small(), dir.path())).expect("generate");
    (dir, report)
}

/// All batches of a dataset, parts in order, plus the schema of the first part.
fn read_table(out_dir: &Path, dataset: &str) -> (SchemaRef, Vec<RecordBatch>) {
    let dir = table_dir(out_dir, dataset);
    let mut parts: Vec<_> = fs::read_dir(&dir)
        .expect("table dir")
        .map(|e| e.expect("entry").path())
        .collect();
    parts.sort();
    let mut schema = None;
    let mut batches = Vec::new();
    for part in parts {
        let name = part.file_name().and_then(|n| n.to_str()).expect("utf-8 name");
        assert!(
            name.starts_with("part-") && name.ends_with(".parquet"),
            "stray file {name}"
        );
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&part).expect("open")).expect("parquet");
        schema.get_or_insert_with(|| builder.schema().clone());
        for batch in builder.build().expect("reader") {
            batches.push(batch.expect("batch"));
        }
    }
    (schema.expect("at least one part"), batches)
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let array = b.column_by_name(column).expect("column").as_string::<i32>().clone();
            (0..array.len()).map(move |i| array.value(i).to_owned())
        })
        .collect()
}

fn floats(batches: &[RecordBatch], column: &str) -> Vec<f64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(column)
                .expect("column")
                .as_primitive::<Float64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

fn ints(batches: &[RecordBatch], column: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(column)
                .expect("column")
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

fn dates(batches: &[RecordBatch], column: &str) -> Vec<i32> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(column)
                .expect("column")
                .as_primitive::<Date32Type>()
                .values()
                .to_vec()
        })
        .collect()
}

fn mean(xs: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = xs.into_iter().fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    sum / n.max(1) as f64
}

#[test]
fn digest_is_pinned_for_small_seed_42() {
    let (_dir, report) = generate_small(42);
    assert_eq!(report.digest, SMALL_SEED_42_DIGEST);
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let (_a, first) = generate_small(42);
    let (_b, again) = generate_small(42);
    let (_c, other) = generate_small(43);
    assert_eq!(first.digest, again.digest);
    assert_ne!(first.digest, other.digest);
    for (x, y) in first.tables.iter().zip(&other.tables) {
        assert_eq!(x.dataset, y.dataset);
    }
}

#[test]
fn schemas_are_exact() {
    let (dir, report) = generate_small(42);
    assert_eq!(report.tables.len(), DATASETS.len());
    for dataset in DATASETS {
        let (actual, batches) = read_table(dir.path(), dataset);
        let expected = schema(dataset).expect("schema");
        assert_eq!(actual.fields(), expected.fields(), "{dataset}");
        for field in expected.fields() {
            assert!(!field.is_nullable());
            assert!(matches!(
                field.data_type(),
                DataType::Utf8 | DataType::Int64 | DataType::Float64 | DataType::Date32
            ));
        }
        assert!(batches.iter().all(|b| b.columns().iter().all(|c| c.null_count() == 0)));
    }
}

#[test]
fn row_counts_match_the_scale_and_the_report() {
    let scale = Scale::small();
    let (dir, report) = generate_small(42);
    for table in &report.tables {
        let (_, batches) = read_table(dir.path(), &table.dataset);
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows as u64, table.rows, "{}", table.dataset);
        let bytes: u64 = table.files.iter().map(|f| fs::metadata(f).expect("stat").len()).sum();
        assert_eq!(bytes, table.bytes);
    }
    let rows = |d: &str| report.table(d).expect("table").rows;
    assert_eq!(rows(DISTRICTS), 16);
    assert_eq!(rows(LEGAL_ENTITIES), scale.entities as u64);
    assert_eq!(rows(UTILITY_USAGE), scale.utility_rows());
    assert!(rows(TAX_PAYMENTS) <= 3 * scale.entities as u64);
    assert!(rows(TAX_PAYMENTS) >= 2 * scale.entities as u64);
    // ~35 % of entities borrow, 1.5 loans each on average.
    let loans = rows(LOANS) as f64 / scale.entities as f64;
    assert!((0.4..0.65).contains(&loans), "{loans} loans per entity");

    let (_, visits) = read_table(dir.path(), CLINIC_VISITS);
    let persons: HashSet<String> = strings(&visits, "person_id").into_iter().collect();
    assert_eq!(persons.len(), scale.persons);
}

#[test]
fn credit_codes_valid_unique_and_referenced() {
    let (dir, _) = generate_small(42);
    let (_, entities) = read_table(dir.path(), LEGAL_ENTITIES);
    let codes = strings(&entities, "credit_code");
    let unique: HashSet<&String> = codes.iter().collect();
    assert_eq!(unique.len(), codes.len());
    let divisions: HashMap<&str, &str> = sandbox_model::districts::SHANGHAI_DISTRICTS.iter().copied().collect();
    for (code, district) in codes.iter().zip(strings(&entities, "district")) {
        credit_code::validate(code).expect("valid credit code");
        assert!(code.starts_with("91") || code.starts_with("92") || code.starts_with("93"));
        assert_eq!(&code[2..8], divisions[district.as_str()]);
    }
    for dataset in [TAX_PAYMENTS, UTILITY_USAGE, LOANS] {
        let (_, batches) = read_table(dir.path(), dataset);
        for code in strings(&batches, "credit_code") {
            assert!(unique.contains(&code), "{dataset} references unknown {code}");
        }
    }
}

#[test]
fn legal_entity_attributes_are_plausible() {
    let (dir, _) = generate_small(42);
    let (_, batches) = read_table(dir.path(), LEGAL_ENTITIES);
    let mut by_district: HashMap<String, usize> = HashMap::new();
    for d in strings(&batches, "district") {
        *by_district.entry(d).or_default() += 1;
    }
    let largest = by_district.iter().max_by_key(|(_, n)| **n).expect("districts");
    assert_eq!(largest.0, "浦东新区");
    let mut by_industry: HashMap<String, usize> = HashMap::new();
    for i in strings(&batches, "industry") {
        *by_industry.entry(i).or_default() += 1;
    }
    let top = by_industry.iter().max_by_key(|(_, n)| **n).expect("industries");
    assert_eq!(top.0, "F");
    assert!(
        by_industry
            .keys()
            .all(|k| k.len() == 1 && ("A"..="T").contains(&k.as_str()))
    );
    for name in strings(&batches, "name") {
        assert!(name.starts_with("上海") && name.ends_with("有限公司"), "{name}");
    }
    assert!(
        floats(&batches, "registered_capital")
            .iter()
            .all(|c| (1.0..=100_000.0).contains(c))
    );
    assert!(
        ints(&batches, "insured_employees")
            .iter()
            .all(|e| (0..=5_000).contains(e))
    );
    let founded = dates(&batches, "founded");
    assert!(founded.iter().all(|d| (7_305..=20_088).contains(d)));
    // More recent years are more likely.
    let after_2010 = founded.iter().filter(|&&d| d >= 14_610).count();
    assert!(after_2010 * 2 > founded.len());
}

#[test]
fn defaults_follow_falling_usage_and_small_size() {
    let (dir, _) = generate_small(42);
    let (_, usage) = read_table(dir.path(), UTILITY_USAGE);
    let (_, loans) = read_table(dir.path(), LOANS);
    let (_, entities) = read_table(dir.path(), LEGAL_ENTITIES);

    // Per entity: mean electricity, and last-6 over first-6 months.
    let mut series: HashMap<String, Vec<f64>> = HashMap::new();
    for (code, kwh) in strings(&usage, "credit_code")
        .into_iter()
        .zip(floats(&usage, "electricity_kwh"))
    {
        series.entry(code).or_default().push(kwh);
    }
    let employees: HashMap<String, i64> = strings(&entities, "credit_code")
        .into_iter()
        .zip(ints(&entities, "insured_employees"))
        .collect();

    let loan_codes = strings(&loans, "credit_code");
    let defaulted = ints(&loans, "defaulted");
    assert!(defaulted.iter().all(|d| *d == 0 || *d == 1));
    let rate = defaulted.iter().sum::<i64>() as f64 / defaulted.len() as f64;
    assert!((0.04..=0.09).contains(&rate), "overall default rate {rate}");

    let mut entity_defaulted: HashMap<&str, bool> = HashMap::new();
    for (code, d) in loan_codes.iter().zip(&defaulted) {
        *entity_defaulted.entry(code).or_default() |= *d == 1;
    }
    let usage_of = |want: bool| {
        mean(
            entity_defaulted
                .iter()
                .filter(|(_, d)| **d == want)
                .map(|(code, _)| mean(series[*code].iter().copied())),
        )
    };
    // Last six months over first six, for entities founded before 2023.
    let trend_of = |want: bool| {
        mean(
            entity_defaulted
                .iter()
                .filter(|(code, d)| **d == want && series[**code][0] > 0.0)
                .map(|(code, _)| {
                    let s = &series[*code];
                    mean(s[s.len() - 6..].iter().copied()) / mean(s[..6].iter().copied())
                }),
        )
    };
    let (bad, good) = (usage_of(true), usage_of(false));
    assert!(bad < good, "defaulted mean electricity {bad} vs {good}");
    let (bad_trend, good_trend) = (trend_of(true), trend_of(false));
    assert!(bad_trend < 0.9 * good_trend, "usage trend {bad_trend} vs {good_trend}");

    // Small firms (below median insured employees) default more.
    let mut sizes: Vec<i64> = loan_codes.iter().map(|c| employees[c]).collect();
    sizes.sort_unstable();
    let median = sizes[sizes.len() / 2];
    let rate_where = |small: bool| {
        let picked: Vec<i64> = loan_codes
            .iter()
            .zip(&defaulted)
            .filter(|(c, _)| (employees[*c] < median) == small)
            .map(|(_, d)| *d)
            .collect();
        picked.iter().sum::<i64>() as f64 / picked.len() as f64
    };
    let (small, large) = (rate_where(true), rate_where(false));
    assert!(small > large, "small-firm default rate {small} vs large {large}");

    for r in floats(&loans, "rate") {
        assert!((3.0..=12.0).contains(&r));
    }
    for a in floats(&loans, "amount") {
        assert!((1.0..=5_000.0).contains(&a));
    }
    assert!(
        ints(&loans, "term_months")
            .iter()
            .all(|t| [6, 12, 24, 36, 60].contains(t))
    );
    let ids = strings(&loans, "loan_id");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    assert!(
        ids.iter()
            .all(|id| id.len() == 11 && id.starts_with('L') && id[1..].bytes().all(|b| b.is_ascii_digit()))
    );
}

#[test]
fn utility_and_tax_rows_are_well_formed() {
    let (dir, _) = generate_small(42);
    let (_, usage) = read_table(dir.path(), UTILITY_USAGE);
    let months: HashSet<String> = strings(&usage, "month").into_iter().collect();
    assert_eq!(months.len(), 24);
    assert!(months.contains("2023-01") && months.contains("2024-12"));
    assert!(floats(&usage, "electricity_kwh").iter().all(|x| *x >= 0.0));
    let gas = floats(&usage, "gas_m3");
    assert!(gas.contains(&0.0) && gas.iter().any(|g| *g > 0.0));

    let (_, entities) = read_table(dir.path(), LEGAL_ENTITIES);
    let founded: HashMap<String, i32> = strings(&entities, "credit_code")
        .into_iter()
        .zip(dates(&entities, "founded"))
        .collect();
    // Zero usage before the founding month, positive electricity after.
    let mut before_founding = 0;
    for (((code, month), kwh), water) in strings(&usage, "credit_code")
        .iter()
        .zip(strings(&usage, "month"))
        .zip(floats(&usage, "electricity_kwh"))
        .zip(floats(&usage, "water_m3"))
    {
        let year: i32 = month[..4].parse().expect("year");
        let month: u32 = month[5..].parse().expect("month");
        let next = if month == 12 {
            crate::calendar::days_from_civil(year + 1, 1, 1)
        } else {
            crate::calendar::days_from_civil(year, month + 1, 1)
        };
        if founded[code] >= next {
            before_founding += 1;
            assert_eq!((kwh, water), (0.0, 0.0));
        } else {
            assert!(kwh > 0.0);
        }
    }
    assert!(before_founding > 0);

    let (_, tax) = read_table(dir.path(), TAX_PAYMENTS);
    let years = ints(&tax, "year");
    let codes = strings(&tax, "credit_code");
    let mut seen = HashSet::new();
    for (code, year) in codes.iter().zip(&years) {
        assert!([2022, 2023, 2024].contains(year));
        let first_day = crate::calendar::days_from_civil(*year as i32, 1, 1);
        assert!(founded[code] < first_day, "{code} taxed before it was founded");
        assert!(seen.insert((code.clone(), *year)), "duplicate tax row");
    }
    for (tax_paid, vat) in floats(&tax, "tax_paid").into_iter().zip(floats(&tax, "vat")) {
        assert!(tax_paid > 0.0 && vat >= 0.0 && vat <= tax_paid);
    }
}

#[test]
fn clinic_visits_depend_on_age() {
    let (dir, _) = generate_small(42);
    let (_, visits) = read_table(dir.path(), CLINIC_VISITS);
    let ages = ints(&visits, "age");
    let chapters = strings(&visits, "diagnosis_chapter");
    let share = |chapter: &str, young: bool| {
        let group: Vec<&String> = ages
            .iter()
            .zip(&chapters)
            .filter(|(a, _)| if young { **a < 15 } else { **a >= 60 })
            .map(|(_, c)| c)
            .collect();
        group.iter().filter(|c| c.as_str() == chapter).count() as f64 / group.len() as f64
    };
    assert!(share("X", true) > 0.25, "respiratory among children");
    assert!(
        share("IX", false) > share("IX", true) + 0.1,
        "circulatory among the old"
    );
    assert!(ages.iter().all(|a| (0..=100).contains(a)));
    assert!(strings(&visits, "sex").iter().all(|s| s == "F" || s == "M"));
    assert!(floats(&visits, "cost").iter().all(|c| (0.0..=20_000.0).contains(c)));
    assert!(
        dates(&visits, "visit_date")
            .iter()
            .all(|d| (19_358..=20_088).contains(d))
    );
    let districts: HashSet<&str> = sandbox_model::districts::SHANGHAI_DISTRICTS
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert!(
        strings(&visits, "district")
            .iter()
            .all(|d| districts.contains(d.as_str()))
    );

    let mut per_person: HashMap<String, usize> = HashMap::new();
    for id in strings(&visits, "person_id") {
        assert!(id.len() == 13 && id.starts_with('P') && id[1..].bytes().all(|b| b.is_ascii_hexdigit()));
        *per_person.entry(id).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_person.into_values().collect();
    counts.sort_unstable();
    assert!((1..=5).contains(&counts[counts.len() / 2]), "median visits");
    assert!(counts[counts.len() * 9 / 10] <= 6, "most persons visit 1-5 times");
    assert!(
        counts.iter().filter(|&&c| c >= 30).count() > 10,
        "a few chronic patients"
    );
}

#[test]
fn subset_generation_matches_the_full_run() {
    let (full_dir, full) = generate_small(42);
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = GenerateOptions::new(42, Scale::small(), dir.path()).only([LOANS, UTILITY_USAGE]);
    let subset = generate(&opts).expect("generate");
    assert_eq!(
        subset.tables.iter().map(|t| t.dataset.as_str()).collect::<Vec<_>>(),
        vec![UTILITY_USAGE, LOANS]
    );
    for dataset in [UTILITY_USAGE, LOANS] {
        let a = &full.table(dataset).expect("full").files;
        let b = &subset.table(dataset).expect("subset").files;
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(fs::read(x).expect("read"), fs::read(y).expect("read"), "{dataset}");
        }
    }
    assert!(!table_dir(dir.path(), LEGAL_ENTITIES).exists());
    drop(full_dir);
}

#[test]
fn parts_split_and_stale_parts_are_removed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut opts = GenerateOptions::new(7, Scale::small(), dir.path()).only([UTILITY_USAGE]);
    opts.rows_per_file = 10_000;
    let split = generate(&opts).expect("generate");
    let table = split.table(UTILITY_USAGE).expect("table");
    assert_eq!(table.files.len(), 5);
    assert_eq!(table.rows, 48_000);
    let (_, batches) = read_table(dir.path(), UTILITY_USAGE);
    let split_codes = strings(&batches, "credit_code");

    // A stale temporary file of a crashed run is cleaned up as well.
    fs::write(
        table_dir(dir.path(), UTILITY_USAGE).join(".part-00009.parquet.tmp"),
        b"half",
    )
    .expect("write");
    opts.rows_per_file = 1_000_000;
    let single = generate(&opts).expect("generate");
    assert_eq!(single.table(UTILITY_USAGE).expect("table").files.len(), 1);
    let (_, batches) = read_table(dir.path(), UTILITY_USAGE);
    assert_eq!(strings(&batches, "credit_code"), split_codes);
}

#[test]
fn unusable_out_dir_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-directory");
    fs::write(&file, b"x").expect("write");
    for out_dir in [file.clone(), file.join("below")] {
        let opts = GenerateOptions::new(1, Scale::with_entities(10), &out_dir);
        let err = generate(&opts).expect_err("a file is not a directory");
        assert!(matches!(err, DatagenError::Io { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&*out_dir.to_string_lossy()), "{message}");
    }
    // A table directory blocked by a file.
    let out = dir.path().join("out");
    fs::create_dir_all(out.join("gov")).expect("mkdir");
    fs::write(out.join("gov").join("districts"), b"x").expect("write");
    let err = generate(&GenerateOptions::new(1, Scale::with_entities(10), &out)).expect_err("blocked");
    assert!(err.to_string().contains("districts"), "{err}");
}

#[test]
fn invalid_options_are_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut scale = Scale::small();
    scale.months = 25;
    let err = generate(&GenerateOptions::new(1, scale, dir.path())).expect_err("25 months");
    assert!(matches!(err, DatagenError::InvalidScale(_)));
    let err = generate(&GenerateOptions::new(1, Scale::small(), dir.path()).only(["gov.nothing"]))
        .expect_err("unknown dataset");
    assert!(err.to_string().contains("gov.nothing"));
    let mut opts = GenerateOptions::new(1, Scale::small(), dir.path());
    opts.rows_per_file = 0;
    assert!(matches!(generate(&opts), Err(DatagenError::InvalidOptions(_))));
}

#[test]
fn empty_scale_writes_empty_tables_with_schema() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scale = Scale {
        entities: 0,
        persons: 0,
        months: 3,
    };
    let report = generate(&GenerateOptions::new(1, scale, dir.path())).expect("generate");
    for table in &report.tables {
        assert_eq!(table.files.len(), 1);
        let (actual, _) = read_table(dir.path(), &table.dataset);
        assert_eq!(actual.fields(), schema(&table.dataset).expect("schema").fields());
    }
    assert_eq!(report.table(DISTRICTS).expect("districts").rows, 16);
    assert_eq!(report.table(UTILITY_USAGE).expect("usage").rows, 0);
}

#[test]
fn bench_scale_is_just_over_ten_million_rows() {
    let rows = Scale::bench_10m().utility_rows();
    assert!((10_000_000..10_000_024).contains(&rows), "{rows}");
}
