//! Throughput of the largest table: `gov.utility_usage` at
//! `Scale::bench_10m()` (just over ten million rows), written to a temporary
//! directory. The time includes deriving the entity model.
//!
//! Run with `cargo bench -p sandbox-datagen`.

use std::error::Error;
use std::time::Instant;

use sandbox_datagen::{GenerateOptions, Scale, UTILITY_USAGE, generate};

/// The digest the unit tests pin for `Scale::small()`, seed 42 (debug build);
/// the benchmark checks that an optimised build produces the same bytes.
const SMALL_SEED_42_DIGEST: &str = "d5fd6df816af2e8dd0e248826d6147349dfc46ed9006f39a8a18152a09b4a3ca";

/// 10000008 → "10,000,008".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let opts = GenerateOptions::new(42, Scale::bench_10m(), dir.path()).only([UTILITY_USAGE]);
    let start = Instant::now();
    let report = generate(&opts)?;
    let seconds = start.elapsed().as_secs_f64();
    let table = report
        .table(UTILITY_USAGE)
        .ok_or("the report has no gov.utility_usage table")?;
    println!(
        "utility_usage: {} rows in {:.2} s = {} rows/s, {:.1} MB",
        thousands(table.rows),
        seconds,
        thousands((table.rows as f64 / seconds) as u64),
        table.bytes as f64 / 1_000_000.0,
    );
    println!(
        "  ({} part files, entity model included; seed 42, Scale::bench_10m)",
        table.files.len()
    );

    let small_dir = tempfile::tempdir()?;
    let small = generate(&GenerateOptions::new(42, Scale::small(), small_dir.path()))?;
    let verdict = if small.digest == SMALL_SEED_42_DIGEST {
        "matches the pinned digest"
    } else {
        "DIFFERS from the pinned digest"
    };
    println!("  Scale::small() seed 42 digest {} ({verdict})", small.digest);
    Ok(())
}
