//! A guest made of mistakes, for the host's tests (not an example to copy).
//!
//! UDFs:
//! * `panics(x)` always panics;
//! * `clock(x)` reads `std::time::SystemTime::now()` (which panics on
//!   `wasm32-unknown-unknown`: a job has no clock);
//! * `fails_above(x)` panics when `x >= 1000` — a failure that depends on
//!   the data (the host's generated trial input stays below 100) — returns
//!   -1 (outside its bounds) when `x < 0`, else `x / 1000`.
//!
//! The analysis `mistakes` reads column `value` (a query without it is the
//! "missing input column" mistake) and then, by which other column the
//! input query provides:
//! * `mode_panic`: panics;
//! * `mode_clock`: reads the clock;
//! * `mode_three`: returns 3 values where 2 are declared;
//! * `mode_nan`: returns NaN on a block of fewer than 20 rows;
//! * otherwise, a column `fail`: the call fails (an error) on a block where
//!   any `fail` is at least 1000 — a failure that depends on the data (the
//!   host's generated trial input stays below 100) — and
//!   returns the mean of `value` and the number of rows.

use sandbox_sdk::{RecordBatch, SdkError, column_f64, export};

fn panics(x: f64) -> f64 {
    panic!("deliberate panic in `panics` (x = {x})")
}

fn clock(x: f64) -> f64 {
    let now = std::time::SystemTime::now();
    x + now.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn fails_above(x: f64) -> f64 {
    if x >= 1000.0 {
        panic!("x = {x} is at least 1000");
    }
    if x < 0.0 { -1.0 } else { x / 1000.0 }
}

fn has(batch: &RecordBatch, name: &str) -> bool {
    batch.column_by_name(name).is_some()
}

fn analysis(batch: &RecordBatch) -> Result<Vec<f64>, SdkError> {
    let value = column_f64(batch, "value")?;
    let n = value.len() as f64;
    let mean = if value.is_empty() {
        0.0
    } else {
        value.iter().sum::<f64>() / n
    };
    if has(batch, "mode_panic") {
        panic!("deliberate panic in the analysis on {n} rows");
    }
    if has(batch, "mode_clock") {
        let started = std::time::Instant::now();
        return Ok(vec![mean, started.elapsed().as_secs_f64()]);
    }
    if has(batch, "mode_three") {
        return Ok(vec![mean, n, 0.0]);
    }
    if has(batch, "mode_nan") && n < 20.0 {
        return Ok(vec![f64::NAN, n]);
    }
    if has(batch, "fail") && column_f64(batch, "fail")?.iter().any(|f| *f >= 1000.0) {
        return Err(SdkError::Guest("a row of this block has fail >= 1000".into()));
    }
    Ok(vec![mean, n])
}

export! {
    udf panics(x: f64) -> f64 in [0.0, 1.0] => panics;
    udf clock(x: f64) -> f64 in [0.0, 1.0] => clock;
    udf fails_above(x: f64) -> f64 in [0.0, 1.0] => fails_above;
    analysis mistakes(batch: &RecordBatch) -> [mean in [0.0, 10000.0], rows in [0.0, 1000.0]] => analysis;
}
