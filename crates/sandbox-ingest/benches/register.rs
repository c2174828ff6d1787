//! Registration throughput: the same rows as a UTF-8 CSV, a GB18030 CSV
//! and a Parquet file, each registered (read, coerced, checked,
//! pseudonymized, written as Parquet, synced) into a fresh data directory.
//! Prints rows/s per format from one run. `INGEST_BENCH_ROWS` sets the
//! row count (default 1,000,000).
//!
//! `cargo bench -p sandbox-ingest --bench register`

use sandbox_ingest::{DataLayout, IngestOptions, PseudonymKey, Registration, TextEncoding, stage};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

const ENTRY: &str = include_str!("../../../examples/onboarding/gov.market_inspections.entry.toml");
const POLICY: &str = include_str!("../../../examples/onboarding/gov.market_inspections.policy.toml");
const DISTRICTS: [&str; 4] = ["静安区", "浦东新区", "黄浦区", "徐汇区"];

fn write_csv(path: &Path, rows: usize, gb18030: bool) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut line = String::new();
    f.write_all(b"credit_code,district,inspected,outcome,fine\n")?;
    for i in 0..rows {
        line.clear();
        line.push_str(&format!(
            "91310115MA{i:08},{},2024-{:02}-{:02},{},{}\n",
            DISTRICTS[i % 4],
            1 + i % 12,
            1 + i % 28,
            if i % 10 == 0 { "立案查处" } else { "合格" },
            if i % 10 == 0 {
                format!("{}.5", i % 40)
            } else {
                String::new()
            }
        ));
        if gb18030 {
            let (bytes, _, _) = encoding_rs::GB18030.encode(&line);
            f.write_all(&bytes)?;
        } else {
            f.write_all(line.as_bytes())?;
        }
    }
    f.flush()
}

fn register(root: &Path, file: &Path, options: IngestOptions, key: &PseudonymKey) -> (u64, f64) {
    let layout = DataLayout::new(root);
    let reg = Registration {
        file,
        entry: ENTRY,
        policy: Some(POLICY),
        owner: "bench",
        options,
    };
    let started = Instant::now();
    let manifest = stage(&layout, key, &reg)
        .and_then(|s| s.commit(|_| Ok(())))
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    (manifest.rows, started.elapsed().as_secs_f64())
}

fn main() {
    let rows: usize = std::env::var("INGEST_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let key = PseudonymKey::from_secret(&[9; 32]).unwrap_or_else(|e| panic!("{e}"));
    let utf8 = tmp.path().join("rows.csv");
    let gb = tmp.path().join("rows-gb.csv");
    write_csv(&utf8, rows, false).unwrap_or_else(|e| panic!("{e}"));
    write_csv(&gb, rows, true).unwrap_or_else(|e| panic!("{e}"));
    println!("registration of {rows} rows (5 columns, credit code pseudonymized, checks on):");
    let (n, secs) = register(&tmp.path().join("a"), &utf8, IngestOptions::default(), &key);
    println!(
        "  CSV UTF-8    {:>10.0} rows/s  ({n} rows in {secs:.2} s)",
        n as f64 / secs
    );
    let mut options = IngestOptions::default();
    options.csv.encoding = TextEncoding::Gb18030;
    let (n, secs) = register(&tmp.path().join("b"), &gb, options, &key);
    println!(
        "  CSV GB18030  {:>10.0} rows/s  ({n} rows in {secs:.2} s)",
        n as f64 / secs
    );
    // The Parquet input: the first registration's own output (pseudonyms
    // are pseudonymized again: the work is the same).
    let parquet = tmp.path().join("rows.parquet");
    let current = std::fs::read_to_string(tmp.path().join("a/data/gov/market_inspections/CURRENT"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(
        tmp.path()
            .join("a/data/gov/market_inspections")
            .join(current.trim())
            .join("part-00000.parquet"),
        &parquet,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (n, secs) = register(&tmp.path().join("c"), &parquet, IngestOptions::default(), &key);
    println!(
        "  Parquet      {:>10.0} rows/s  ({n} rows in {secs:.2} s)",
        n as f64 / secs
    );
}
