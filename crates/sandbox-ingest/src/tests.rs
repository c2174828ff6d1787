//! Registration end to end on a temporary data directory: formats and
//! encodings, malformed files, quality thresholds, pseudonyms, versions,
//! and failures injected at every stage.

use crate::register::FAIL_AT;
use crate::*;
use sandbox_model::credit_code;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ENTRY: &str = r#"
id = "gov.inspections"
title = "市场监管抽查"
provider = { id = "shanghai-market-regulation", name = "上海市市场监督管理局", kind = "government" }
domain = "市场监管"
summary = "Random inspections of enterprises."
update_frequency = "每月"
time_coverage = "2024"
area_coverage = "上海市"
format = "CSV"
open_class = "conditional"
open_conditions = "有条件开放: 仅在数据沙箱内使用。"
fields = [
  { name = "credit_code", type = "utf8", description = "统一社会信用代码" },
  { name = "district", type = "utf8", description = "区" },
  { name = "inspected", type = "date", description = "检查日期" },
  { name = "fine", type = "float64", description = "罚款", unit = "万元" },
  { name = "staff", type = "int64", description = "检查人员数" },
]
"#;

const POLICY: &str = r#"
dataset = "gov.inspections"
version = "1"
unit_entity = "enterprise"
[release]
mode = "dp"
min_units = 10
aggregates = ["count", "sum", "avg"]
[dp]
epsilon_per_query = 1.0
delta = 1e-6
epsilon_budget = 10.0
max_groups_per_unit = 1
max_rows_per_group = 5
[jobs]
sql = true
wasm = false
[columns]
credit_code = { roles = ["identifier", "privacy_unit"] }
district = { role = "dimension", public_keys = ["浦东新区", "黄浦区", "徐汇区"] }
inspected = { role = "dimension" }
fine = { role = "measure", bounds = [0.0, 100.0] }
staff = { role = "measure", bounds = [0.0, 10.0] }
"#;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    layout: DataLayout,
    key: PseudonymKey,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("data-dir");
        for d in ["catalog", "policies", "data"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        Fixture {
            layout: DataLayout::new(&root),
            root,
            key: PseudonymKey::from_secret(&[42; 32]).expect("key"),
            _tmp: tmp,
        }
    }

    /// A file outside the data directory.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.root.parent().expect("parent").join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    fn register_with(
        &self,
        file: &Path,
        entry: &str,
        policy: &str,
        options: IngestOptions,
    ) -> Result<VersionManifest, IngestError> {
        let reg = Registration {
            file,
            entry,
            policy: Some(policy),
            owner: "market-regulator",
            options,
        };
        stage(&self.layout, &self.key, &reg)?.commit(|_| Ok(()))
    }

    fn register(&self, file: &Path, options: IngestOptions) -> Result<VersionManifest, IngestError> {
        self.register_with(file, ENTRY, POLICY, options)
    }

    /// Every file under the data directory with its bytes: what a failed
    /// registration must leave unchanged.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.file_name().is_some_and(|n| n != ".lock") {
                    out.insert(p.clone(), std::fs::read(&p).expect("read"));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root, &mut out);
        out
    }

    fn dataset_dir(&self) -> PathBuf {
        self.root.join("data/gov/inspections")
    }

    fn current(&self) -> Option<String> {
        layout::current_version_name(&self.dataset_dir()).expect("current")
    }
}

fn code(n: u32) -> String {
    credit_code::compose('9', '1', "310115", &format!("{n:08}")).expect("code")
}

/// `rows` valid rows: distinct codes, known districts, dates, fines.
fn csv_text(rows: u32) -> String {
    let mut s = String::from("credit_code,district,inspected,fine,staff\n");
    for i in 0..rows {
        let district = ["浦东新区", "黄浦区", "徐汇区"][i as usize % 3];
        s.push_str(&format!(
            "{},{district},2024-0{}-1{},{}.5,{}\n",
            code(i),
            1 + i % 9,
            i % 10,
            i % 50,
            1 + i % 5
        ));
    }
    s
}

fn options() -> IngestOptions {
    IngestOptions {
        key: vec!["credit_code".into()],
        ..Default::default()
    }
}

fn read_parquet(path: &Path) -> Vec<arrow::record_batch::RecordBatch> {
    let f = std::fs::File::open(path).expect("open");
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .expect("parquet")
        .build()
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("batches")
}

fn column_strings(path: &Path, column: &str) -> Vec<String> {
    use arrow::array::AsArray;
    read_parquet(path)
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(column).expect("column");
            a.as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn stored_file(f: &Fixture) -> PathBuf {
    f.dataset_dir()
        .join(f.current().expect("current"))
        .join(layout::DATA_FILE)
}

/// Every file under `root`, as bytes, contains none of `needles`.
fn assert_nowhere(root: &Path, needles: &[String]) {
    fn walk(dir: &Path, needles: &[String], files: &mut usize) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, needles, files);
                continue;
            }
            *files += 1;
            let bytes = std::fs::read(&p).expect("read");
            for n in needles {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                    "raw code found in {}",
                    p.display()
                );
            }
        }
    }
    let mut files = 0;
    walk(root, needles, &mut files);
    assert!(files >= 5, "scanned only {files} files");
}

#[test]
fn a_utf8_csv_registers_with_pseudonyms_and_a_report() {
    let f = Fixture::new();
    let file = f.file("inspections.csv", csv_text(300).as_bytes());
    let m = f.register(&file, options()).expect("register");
    assert_eq!((m.version, m.rows, m.owner.as_str()), (1, 300, "market-regulator"));
    assert_eq!(m.pseudonymized_columns, ["credit_code"]);
    assert_eq!(m.quality.rows_stored, 300);
    assert_eq!(m.quality.duplicate_keys, 0);
    assert!(m.quality.columns.iter().all(|c| c.nulls == 0 && c.invalid_codes == 0));
    assert_eq!(f.current().as_deref(), Some("v000001"));
    // The catalog entry and policy are installed where the runtime loads them.
    assert!(f.root.join("catalog/gov.inspections.toml").exists());
    assert!(f.root.join("policies/gov.inspections.toml").exists());
    let stored = column_strings(&stored_file(&f), "credit_code");
    assert_eq!(stored.len(), 300);
    assert_eq!(stored[0], f.key.pseudonym(&code(0)));
    assert!(stored.iter().all(|p| p.len() == PSEUDONYM_HEX));
    // No raw credit code anywhere under the data directory.
    let codes: Vec<String> = (0..300).map(code).collect();
    assert_nowhere(&f.root, &codes);
    // The manifest on disk is the one returned.
    assert_eq!(
        current_manifest(&f.layout, &"gov.inspections".parse().expect("id")).expect("read"),
        Some(m)
    );
}

#[test]
fn gb18030_registers_and_one_code_has_one_pseudonym_across_datasets() {
    let f = Fixture::new();
    let text = csv_text(50);
    let (gb, _, unmappable) = encoding_rs::GB18030.encode(&text);
    assert!(!unmappable);
    let file = f.file("gb.csv", &gb);
    let mut opts = options();
    opts.csv.encoding = TextEncoding::Gb18030;
    let m = f.register(&file, opts).expect("gb18030");
    assert_eq!(m.source.encoding.as_deref(), Some("GB18030"));
    // The district names were decoded (a mis-decoded name would be unknown).
    let d = m
        .quality
        .columns
        .iter()
        .find(|c| c.name == "district")
        .expect("district");
    assert_eq!(d.unknown_districts, 0);
    // Another dataset (an enterprise's) with the same codes: same pseudonyms.
    let entry = ENTRY.replace("gov.inspections", "bank.visits");
    let policy = POLICY.replace("gov.inspections", "bank.visits");
    let file2 = f.file("visits.csv", csv_text(50).as_bytes());
    f.register_with(&file2, &entry, &policy, options())
        .expect("second dataset");
    let a = column_strings(&stored_file(&f), "credit_code");
    let b_dir = f.root.join("data/bank/visits");
    let b_current = layout::current_version_name(&b_dir).expect("current").expect("some");
    let b = column_strings(&b_dir.join(b_current).join(layout::DATA_FILE), "credit_code");
    assert_eq!(a, b);
}

#[test]
fn a_gb18030_file_read_as_utf8_is_refused_with_its_line_and_changes_nothing() {
    let f = Fixture::new();
    let v1 = f.file("v1.csv", csv_text(20).as_bytes());
    f.register(&v1, options()).expect("v1");
    let before = f.snapshot();
    let text = csv_text(20);
    let (gb, _, _) = encoding_rs::GB18030.encode(&text);
    let file = f.file("gb.csv", &gb);
    let err = f.register(&file, options()).expect_err("wrong encoding");
    let text = err.to_string();
    assert!(matches!(err, IngestError::Encoding { line: 2, .. }), "{text}");
    assert!(text.contains("--encoding gb18030"), "{text}");
    assert_eq!(f.snapshot(), before);
}

#[test]
fn a_utf8_file_declared_gb18030_is_refused_by_its_byte_order_mark() {
    let f = Fixture::new();
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(csv_text(3).as_bytes());
    let file = f.file("bom.csv", &bytes);
    let mut opts = options();
    opts.csv.encoding = TextEncoding::Gb18030;
    let err = f.register(&file, opts).expect_err("bom").to_string();
    assert!(err.contains("UTF-8 byte-order mark; pass --encoding utf-8"), "{err}");
    // Declared UTF-8, the mark is dropped and the header matches.
    assert_eq!(f.register(&file, options()).expect("utf-8").rows, 3);
}

#[test]
fn wrong_types_are_reported_by_line_and_column_and_refused() {
    let f = Fixture::new();
    let mut text = csv_text(5);
    text.push_str(&format!("{},黄浦区,2024-02-30,1.0,2\n", code(100))); // line 7: bad date
    text.push_str(&format!("{},黄浦区,2024-02-01,lots,two\n", code(101))); // line 8: two bad values
    text.push_str(&format!("{},黄浦区,2024-02-01\n", code(102))); // line 9: short row
    let file = f.file("types.csv", text.as_bytes());
    let before = f.snapshot();
    let err = f.register(&file, options()).expect_err("bad rows");
    let IngestError::Quality { reasons, report } = &err else {
        panic!("expected a quality refusal, got {err}");
    };
    assert_eq!(report.rows_rejected, 3, "{reasons:?}");
    let issues: Vec<(u64, Option<&str>, &str)> = report
        .issues
        .iter()
        .map(|i| (i.line, i.column.as_deref(), i.reason.as_str()))
        .collect();
    assert_eq!(
        issues,
        [
            (
                7,
                Some("inspected"),
                "not a date (expected YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD)"
            ),
            (8, Some("fine"), "not a finite number"),
            (8, Some("staff"), "not an integer"),
            (9, None, "3 fields, expected 5"),
        ]
    );
    let inspected = report.columns.iter().find(|c| c.name == "inspected").expect("column");
    assert_eq!(inspected.malformed_dates, 1);
    assert!(err.to_string().contains("3 rejected rows"), "{err}");
    // The report names no value.
    assert!(!format!("{report:?}").contains("lots"));
    assert_eq!(f.snapshot(), before);
    // An owner who accepts three bad rows gets the rest registered.
    let mut opts = options();
    opts.thresholds.max_rejected_rows = Some(3);
    let m = f.register(&file, opts).expect("tolerated");
    assert_eq!((m.rows, m.quality.rows_rejected), (5, 3));
}

#[test]
fn missing_extra_and_repeated_columns_are_named() {
    let f = Fixture::new();
    let before = f.snapshot();
    let missing = f.file(
        "missing.csv",
        b"credit_code,district,inspected,fine\nx,y,2024-01-01,1\n",
    );
    let err = f.register(&missing, options()).expect_err("missing").to_string();
    assert!(err.contains("missing column `staff`"), "{err}");
    let extra = f.file(
        "extra.csv",
        b"credit_code,district,inspected,fine,staff,owner_phone\nx,y,2024-01-01,1,1,1\n",
    );
    let err = f.register(&extra, options()).expect_err("extra").to_string();
    assert!(err.contains("extra column `owner_phone`"), "{err}");
    let twice = f.file("twice.csv", b"credit_code,district,district,inspected,fine,staff\n");
    let err = f.register(&twice, options()).expect_err("twice").to_string();
    assert!(err.contains("`district` appears twice"), "{err}");
    assert_eq!(f.snapshot(), before);
}

#[test]
fn empty_files_are_refused() {
    let f = Fixture::new();
    let before = f.snapshot();
    let empty = f.file("empty.csv", b"");
    let err = f.register(&empty, options()).expect_err("empty");
    assert!(matches!(err, IngestError::Empty { .. }), "{err}");
    assert!(err.to_string().contains("0 bytes"), "{err}");
    let header = f.file("header.csv", b"credit_code,district,inspected,fine,staff\n");
    let err = f.register(&header, options()).expect_err("header only");
    assert!(err.to_string().contains("no data rows"), "{err}");
    assert_eq!(f.snapshot(), before);
}

#[test]
fn duplicate_keys_are_counted_and_refused_unless_allowed() {
    let f = Fixture::new();
    let mut text = csv_text(10);
    let line = text.lines().nth(3).expect("row").to_string();
    text.push_str(&line);
    text.push('\n');
    let file = f.file("dups.csv", text.as_bytes());
    let err = f.register(&file, options()).expect_err("duplicate");
    let IngestError::Quality { report, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(report.duplicate_keys, 1);
    assert_eq!(report.issues[0].line, 12);
    assert!(f.current().is_none());
    let mut opts = options();
    opts.thresholds.max_duplicate_keys = Some(1);
    assert_eq!(f.register(&file, opts).expect("allowed").quality.duplicate_keys, 1);
}

#[test]
fn codes_districts_and_bounds_are_checked_and_thresholds_refuse() {
    let f = Fixture::new();
    let mut text = csv_text(4);
    let mut bad = code(77);
    bad.replace_range(17..18, if bad.ends_with('0') { "1" } else { "0" });
    text.push_str(&format!("{bad},黄浦区,2024-01-01,1.0,1\n"));
    text.push_str(&format!("{},浦东区,2024-01-01,1.0,1\n", code(78)));
    text.push_str(&format!("{},黄浦区,2024-01-01,250.0,11\n", code(79)));
    text.push_str(&format!("{},,2024-01-01,,1\n", code(80)));
    let file = f.file("checks.csv", text.as_bytes());
    let mut opts = options();
    opts.thresholds.max_invalid_codes = Some(0);
    let err = f.register(&file, opts).expect_err("invalid code");
    assert!(err.to_string().contains("1 invalid credit codes"), "{err}");
    let m = f.register(&file, options()).expect("report only");
    let col = |n: &str| m.quality.columns.iter().find(|c| c.name == n).expect("column").clone();
    assert_eq!(col("credit_code").invalid_codes, 1);
    assert_eq!(col("district").unknown_districts, 1);
    assert_eq!(col("district").nulls, 1);
    assert_eq!(col("district").outside_public_keys, 1);
    assert_eq!((col("fine").out_of_bounds, col("staff").out_of_bounds), (1, 1));
    assert_eq!(col("fine").nulls, 1);
    let rendered = m.quality.render();
    assert!(rendered.contains("rows: 8 read, 8 stored, 0 rejected"), "{rendered}");
    assert!(rendered.contains("line 6, column `credit_code`"), "{rendered}");
    // The invalid code is not stored raw either.
    assert_nowhere(&f.root, &[bad]);
    let mut opts = options();
    opts.thresholds.max_null_fraction = Some(0.1);
    let err = f.register(&file, opts).expect_err("nulls").to_string();
    assert!(err.contains("column `district` is 12.5% null"), "{err}");
}

fn write_parquet(path: &Path, fine_as_text: bool, rows: u32) {
    use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, StringArray};
    use std::sync::Arc;
    let codes: Vec<String> = (0..rows).map(code).collect();
    let fine: ArrayRef = if fine_as_text {
        Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("{i}"))))
    } else {
        Arc::new(Float64Array::from_iter_values((0..rows).map(f64::from)))
    };
    let batch = arrow::record_batch::RecordBatch::try_from_iter([
        (
            "staff",
            Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i64::from(i % 5)))) as ArrayRef,
        ),
        ("credit_code", Arc::new(StringArray::from_iter_values(codes))),
        (
            "district",
            Arc::new(StringArray::from_iter_values((0..rows).map(|_| "静安区"))),
        ),
        (
            "inspected",
            Arc::new(Date32Array::from_iter_values((0..rows).map(|i| 19_700 + i as i32))),
        ),
        ("fine", fine),
    ])
    .expect("batch");
    let file = std::fs::File::create(path).expect("create");
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

#[test]
fn parquet_registers_and_wrong_types_or_truncation_are_refused() {
    let f = Fixture::new();
    let good = f.root.parent().expect("parent").join("good.parquet");
    write_parquet(&good, false, 100);
    let m = f.register(&good, options()).expect("parquet");
    assert_eq!((m.rows, m.source.format), (100, FileFormat::Parquet));
    assert_nowhere(&f.root, &(0..100).map(code).collect::<Vec<_>>());
    let before = f.snapshot();
    let typed = f.root.parent().expect("parent").join("typed.parquet");
    write_parquet(&typed, true, 10);
    let err = f.register(&typed, options()).expect_err("text fine").to_string();
    assert!(
        err.contains("column `fine` is Utf8 in the file but the entry declares float64"),
        "{err}"
    );
    let bytes = std::fs::read(&good).expect("read");
    let cut = f.file("cut.parquet", &bytes[..bytes.len() * 2 / 3]);
    let err = f.register(&cut, options()).expect_err("truncated");
    assert!(matches!(err, IngestError::Format { .. }), "{err}");
    assert!(err.to_string().contains("not a complete Parquet file"), "{err}");
    assert_eq!(f.snapshot(), before);
}

#[test]
fn a_file_that_is_not_what_its_extension_says_is_refused() {
    let f = Fixture::new();
    let pq = f.root.parent().expect("parent").join("real.parquet");
    write_parquet(&pq, false, 3);
    let disguised = f.file("really_parquet.csv", &std::fs::read(&pq).expect("read"));
    let err = f
        .register(&disguised, options())
        .expect_err("parquet as csv")
        .to_string();
    assert!(
        err.contains("read as csv but its first bytes say it is a Parquet file"),
        "{err}"
    );
    let text_as_pq = f.file("text.parquet", csv_text(3).as_bytes());
    let err = f
        .register(&text_as_pq, options())
        .expect_err("csv as parquet")
        .to_string();
    assert!(
        err.contains("read as parquet but its first bytes say it is text"),
        "{err}"
    );
    let text_as_xlsx = f.file("text.xlsx", csv_text(3).as_bytes());
    let err = f
        .register(&text_as_xlsx, options())
        .expect_err("csv as xlsx")
        .to_string();
    assert!(err.contains("read as xlsx"), "{err}");
    let dir = f.root.parent().expect("parent").join("a_dir.csv");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let err = f.register(&dir, options()).expect_err("directory").to_string();
    assert!(err.contains("not a regular file"), "{err}");
    let unknown = f.file("data.bin", b"x");
    let err = f.register(&unknown, options()).expect_err("unknown").to_string();
    assert!(err.contains("unknown format"), "{err}");
}

#[test]
fn a_line_longer_than_the_limit_stops_the_read() {
    let f = Fixture::new();
    let mut text = csv_text(3);
    text.push_str(&"x".repeat(2 << 20));
    text.push('\n');
    let file = f.file("long.csv", text.as_bytes());
    let err = f.register(&file, options()).expect_err("long line");
    assert!(matches!(err, IngestError::LineTooLong { line: 5, .. }), "{err}");
}

/// A minimal .xlsx workbook with inline strings and numbers.
fn write_xlsx(path: &Path, rows: &[Vec<String>]) {
    use std::io::Write;
    let file = std::fs::File::create(path).expect("create");
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let parts = [
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#.to_string(),
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.to_string(),
        ),
        (
            "xl/workbook.xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="检查" sheetId="1" r:id="rId1"/></sheets></workbook>"#.to_string(),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#.to_string(),
        ),
    ];
    for (name, body) in parts {
        zip.start_file(name, opts).expect("start");
        zip.write_all(body.as_bytes()).expect("write");
    }
    let mut sheet = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
    );
    for (r, row) in rows.iter().enumerate() {
        sheet.push_str(&format!("<row r=\"{}\">", r + 1));
        for (c, v) in row.iter().enumerate() {
            let col = (b'A' + c as u8) as char;
            let cell = format!("{col}{}", r + 1);
            // Codes stay text, as in real exports (a number would lose digits).
            if c != 1 && !v.is_empty() && v.parse::<f64>().is_ok() {
                sheet.push_str(&format!("<c r=\"{cell}\"><v>{v}</v></c>"));
            } else {
                sheet.push_str(&format!("<c r=\"{cell}\" t=\"inlineStr\"><is><t>{v}</t></is></c>"));
            }
        }
        sheet.push_str("</row>");
    }
    sheet.push_str("</sheetData></worksheet>");
    zip.start_file("xl/worksheets/sheet1.xml", opts).expect("start");
    zip.write_all(sheet.as_bytes()).expect("write");
    zip.finish().expect("finish");
}

#[test]
fn an_xlsx_workbook_registers() {
    let f = Fixture::new();
    let mut rows: Vec<Vec<String>> = vec![
        ["fine", "credit_code", "district", "inspected", "staff"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    ];
    for i in 0..30u32 {
        rows.push(vec![
            format!("{}.25", i),
            code(i),
            "黄浦区".into(),
            format!("2024-03-{:02}", 1 + i % 28),
            format!("{}", i % 4),
        ]);
    }
    rows.push(vec![
        "oops".into(),
        code(99),
        "黄浦区".into(),
        "2024-03-01".into(),
        "1".into(),
    ]);
    let path = f.root.parent().expect("parent").join("inspections.xlsx");
    write_xlsx(&path, &rows);
    let mut opts = options();
    opts.thresholds.max_rejected_rows = Some(1);
    let m = f.register(&path, opts).expect("xlsx");
    assert_eq!((m.rows, m.quality.rows_rejected), (30, 1));
    assert_eq!(m.quality.issues[0].line, 32);
    assert_eq!(m.quality.issues[0].column.as_deref(), Some("fine"));
    let stored = column_strings(&stored_file(&f), "credit_code");
    assert_eq!(stored[3], f.key.pseudonym(&code(3)));
}

#[test]
fn a_new_version_replaces_the_old_and_the_old_files_stay_for_running_jobs() {
    let f = Fixture::new();
    let v1 = f
        .register(&f.file("a.csv", csv_text(10).as_bytes()), options())
        .expect("v1");
    let v2 = f
        .register(&f.file("b.csv", csv_text(20).as_bytes()), options())
        .expect("v2");
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(f.current().as_deref(), Some("v000002"));
    // A job that resolved v000001 before the switch still reads it whole.
    assert_eq!(
        column_strings(&f.dataset_dir().join("v000001").join(layout::DATA_FILE), "credit_code").len(),
        10
    );
    assert_eq!(column_strings(&stored_file(&f), "credit_code").len(), 20);
}

#[test]
fn a_failure_at_any_stage_leaves_the_previous_version_current() {
    for stage_name in ["writing", "naming", "recording", "switching"] {
        let f = Fixture::new();
        f.register(&f.file("a.csv", csv_text(10).as_bytes()), options())
            .expect("v1");
        let before = f.snapshot();
        FAIL_AT.with(|c| c.set(Some(stage_name)));
        let changed_entry = ENTRY.replace("Random inspections", "Inspections");
        let err = f
            .register_with(
                &f.file("b.csv", csv_text(20).as_bytes()),
                &changed_entry,
                POLICY,
                options(),
            )
            .expect_err("injected");
        FAIL_AT.with(|c| c.set(None));
        assert!(matches!(err, IngestError::Injected(s) if s == stage_name), "{err}");
        assert_eq!(f.snapshot(), before, "after a failure at {stage_name}");
        // The next registration works and numbers on.
        let v = f
            .register(&f.file("c.csv", csv_text(5).as_bytes()), options())
            .expect("next");
        assert_eq!(v.version, 2, "after a failure at {stage_name}");
    }
}

#[test]
fn a_failed_ledger_record_leaves_nothing() {
    let f = Fixture::new();
    f.register(&f.file("a.csv", csv_text(10).as_bytes()), options())
        .expect("v1");
    let before = f.snapshot();
    let file = f.file("b.csv", csv_text(20).as_bytes());
    let reg = Registration {
        file: &file,
        entry: ENTRY,
        policy: Some(POLICY),
        owner: "market-regulator",
        options: options(),
    };
    let staged = stage(&f.layout, &f.key, &reg).expect("stage");
    let err = staged
        .commit(|_| Err("ledger unavailable".into()))
        .expect_err("record fails");
    assert!(err.to_string().contains("ledger unavailable"), "{err}");
    assert_eq!(f.snapshot(), before);
}

#[test]
fn a_crash_after_switching_is_repaired_by_reconcile() {
    let f = Fixture::new();
    f.register(&f.file("a.csv", csv_text(10).as_bytes()), options())
        .expect("v1");
    FAIL_AT.with(|c| c.set(Some("installing")));
    let changed_entry = ENTRY.replace("Random inspections", "Inspections");
    let err = f
        .register_with(
            &f.file("b.csv", csv_text(20).as_bytes()),
            &changed_entry,
            POLICY,
            options(),
        )
        .expect_err("injected");
    FAIL_AT.with(|c| c.set(None));
    assert!(matches!(err, IngestError::Injected("installing")), "{err}");
    // The new version is current; its entry is not installed yet.
    assert_eq!(f.current().as_deref(), Some("v000002"));
    let installed = || std::fs::read_to_string(f.root.join("catalog/gov.inspections.toml")).expect("entry");
    assert!(!installed().contains("summary = \"Inspections"));
    assert_eq!(reconcile(&f.layout).expect("reconcile"), ["gov.inspections"]);
    assert!(installed().contains("summary = \"Inspections"));
    assert!(reconcile(&f.layout).expect("again").is_empty());
}

#[test]
fn leftovers_of_a_killed_registration_are_cleaned_and_never_read() {
    let f = Fixture::new();
    f.register(&f.file("a.csv", csv_text(10).as_bytes()), options())
        .expect("v1");
    // What kill -9 leaves: a half-written staging directory, and a version
    // named but never made current.
    std::fs::create_dir_all(f.dataset_dir().join(".staging-dead")).expect("staging");
    std::fs::write(
        f.dataset_dir().join(".staging-dead").join(layout::DATA_FILE),
        b"PAR1 half",
    )
    .expect("half");
    std::fs::create_dir_all(f.dataset_dir().join("v000002")).expect("orphan");
    assert_eq!(f.current().as_deref(), Some("v000001"));
    let v = f
        .register(&f.file("b.csv", csv_text(5).as_bytes()), options())
        .expect("next");
    assert_eq!(v.version, 2);
    assert!(!f.dataset_dir().join(".staging-dead").exists());
    assert_eq!(column_strings(&stored_file(&f), "credit_code").len(), 5);
}

#[test]
fn entries_and_policies_are_validated_against_each_other_and_the_file() {
    let f = Fixture::new();
    let file = f.file("a.csv", csv_text(3).as_bytes());
    let before = f.snapshot();
    let reg = |entry: &str, policy: Option<&str>, options: IngestOptions| {
        let r = Registration {
            file: &file,
            entry,
            policy,
            owner: "o",
            options,
        };
        stage(&f.layout, &f.key, &r)
            .map(|_| ())
            .expect_err("refused")
            .to_string()
    };
    let err = reg(ENTRY, None, options());
    assert!(err.contains("has no output policy installed"), "{err}");
    let int_code = ENTRY.replace(
        r#"{ name = "credit_code", type = "utf8""#,
        r#"{ name = "credit_code", type = "int64""#,
    );
    let err = reg(&int_code, Some(POLICY), options());
    assert!(err.contains("declare it `utf8`"), "{err}");
    let mut opts = options();
    opts.key = vec!["nope".into()];
    let err = reg(ENTRY, Some(POLICY), opts);
    assert!(err.contains("--key names column `nope`"), "{err}");
    let err = reg(
        &ENTRY.replace("fields = [", "colour = \"red\"\nfields = ["),
        Some(POLICY),
        options(),
    );
    assert!(err.contains("catalog entry"), "{err}");
    let err = reg(ENTRY, Some(&POLICY.replace("staff = {", "stafff = {")), options());
    assert!(err.contains("policy"), "{err}");
    // A JSON entry is accepted.
    let dataset: sandbox_model::Dataset = toml::from_str(ENTRY).expect("toml");
    let json = serde_json::to_string(&dataset).expect("json");
    let r = Registration {
        file: &file,
        entry: &json,
        policy: Some(POLICY),
        owner: "o",
        options: options(),
    };
    assert_eq!(f.snapshot(), before);
    stage(&f.layout, &f.key, &r)
        .expect("json entry")
        .commit(|_| Ok(()))
        .expect("commit");
    // A new version cannot change the provider.
    let other = ENTRY.replace("id = \"shanghai-market-regulation\"", "id = \"someone-else\"");
    let err = reg(&other, Some(POLICY), options());
    assert!(err.contains("cannot change its provider"), "{err}");
}

#[test]
fn withdrawal_records_the_version_and_removes_the_data() {
    let f = Fixture::new();
    f.register(&f.file("a.csv", csv_text(10).as_bytes()), options())
        .expect("v1");
    f.register(&f.file("b.csv", csv_text(12).as_bytes()), options())
        .expect("v2");
    let id: sandbox_model::DatasetId = "gov.inspections".parse().expect("id");
    let mut recorded = None;
    let m = withdraw(&f.layout, &id, |m| {
        recorded = m.map(|m| (m.version, m.rows));
        Ok(())
    })
    .expect("withdraw")
    .expect("had a version");
    assert_eq!(recorded, Some((2, 12)));
    assert_eq!(m.version, 2);
    assert!(f.current().is_none());
    assert!(!f.dataset_dir().join("v000001").exists() && !f.dataset_dir().join("v000002").exists());
    // A failed record withdraws nothing.
    f.register(&f.file("c.csv", csv_text(3).as_bytes()), options())
        .expect("v3");
    let err = withdraw(&f.layout, &id, |_| Err("no ledger".into())).expect_err("record fails");
    assert!(err.to_string().contains("no ledger"));
    assert!(f.current().is_some());
}

#[test]
fn a_first_registration_over_generated_data_removes_the_generated_files() {
    let f = Fixture::new();
    // Generated data lies directly in the dataset's directory, unversioned.
    std::fs::create_dir_all(f.dataset_dir()).expect("mkdir");
    let generated = f.dataset_dir().join("part-00000.parquet");
    write_parquet(&generated, false, 5);
    f.register(&f.file("a.csv", csv_text(10).as_bytes()), options())
        .expect("v1");
    assert!(!generated.exists(), "the generated raw file must go");
    assert_eq!(column_strings(&stored_file(&f), "credit_code").len(), 10);
    assert_nowhere(&f.root, &(0..10).map(code).collect::<Vec<_>>());
}

mod samples;
