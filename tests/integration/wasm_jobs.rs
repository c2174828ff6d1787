//! WebAssembly jobs end to end with the real example guests, built from
//! source by `scripts/build-guests.sh` (which `scripts/test.sh` runs first and
//! points `SANDBOX_WASM_GUESTS` at). Without that variable these tests say
//! so and return; with it, a missing guest is a failure.

use crate::fixture::{TEST_GRANT, sandbox};
use sandbox_model::ReleasedCell;
use sandbox_runtime::{AnalysisOptions, SqlJobOptions, SqlJobResult};
use sandbox_sql::datafusion::arrow::array::Float64Array;
use std::path::PathBuf;

fn guest(name: &str) -> Option<Vec<u8>> {
    let Some(dir) = std::env::var_os("SANDBOX_WASM_GUESTS") else {
        eprintln!("SANDBOX_WASM_GUESTS is not set: run scripts/test.sh to build the guests and run these tests");
        return None;
    };
    let path = PathBuf::from(dir).join(name);
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_score_udf_runs_inside_sql_and_is_released_as_a_measure() {
    let Some(bytes) = guest("risk_score.wasm") else { return };
    let s = sandbox();
    let job = s.load_wasm(&bytes).expect("admitted");
    let sql = "SELECT l.district, AVG(risk_score(u.electricity_kwh, u.gas_m3)) AS risk
               FROM gov.utility_usage u
               JOIN gov.legal_entities l ON u.credit_code = l.credit_code
               WHERE u.month = '2024-06'
               GROUP BY l.district";
    let r = s
        .run_sql_with_functions(TEST_GRANT, sql, &SqlJobOptions::default(), job.row_functions())
        .await
        .expect("released");
    let SqlJobResult::Released { table, .. } = r else {
        panic!("release")
    };
    assert_eq!(table.rows.len(), 16);
    for row in &table.rows {
        let ReleasedCell::Noisy { value, .. } = row[1] else {
            panic!("noisy")
        };
        assert!((0.0..=1.0).contains(&value));
    }
    let e = s
        .run_sql_with_functions(
            TEST_GRANT,
            "SELECT risk_score(electricity_kwh, gas_m3) FROM gov.utility_usage",
            &SqlJobOptions::default(),
            job.row_functions(),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.rule(), Some("measure-in-output"));
}

/// The guest uses the SDK's portable math, so its scores have the same bits
/// as the same formula compiled natively with `libm` — on ordinary values,
/// extremes, zeros, negatives and NaN — in batches and one row at a time.
#[test]
fn risk_score_udf_has_the_same_bits_as_native_code() {
    let Some(bytes) = guest("risk_score.wasm") else { return };
    let s = sandbox();
    let job = s.load_wasm(&bytes).expect("admitted");
    let functions = job.row_functions();
    let udf = functions.iter().find(|f| f.name() == "risk_score").expect("risk_score");
    let native = |kwh: f64, tax: f64| {
        let z = -2.7 - 0.6 * (libm::log1p(kwh.max(0.0)) - 7.5) - 0.5 * (libm::log1p(tax.max(0.0)) - 3.5);
        if kwh.is_nan() || tax.is_nan() {
            f64::NAN
        } else {
            1.0 / (1.0 + libm::exp(-z))
        }
    };
    let mut kwh: Vec<f64> = (0..5000).map(|i| (i as f64 * 7.3).powf(1.3)).collect();
    let mut tax: Vec<f64> = (0..5000).map(|i| (i as f64 * 0.37).powf(1.7)).collect();
    kwh.extend([0.0, -1.0, 1e300, f64::NAN, 5.0, f64::INFINITY]);
    tax.extend([0.0, -5.0, 1e-300, 1.0, f64::NAN, 3.0]);
    let batch = sandbox_sql::datafusion::arrow::array::RecordBatch::try_from_iter([
        ("arg0", std::sync::Arc::new(Float64Array::from(kwh.clone())) as _),
        ("arg1", std::sync::Arc::new(Float64Array::from(tax.clone())) as _),
    ])
    .expect("batch");
    let scores = udf.evaluate(&batch).expect("scores");
    assert_eq!(scores.len(), kwh.len());
    for (i, score) in scores.iter().enumerate() {
        let want = native(kwh[i], tax[i]);
        assert!(
            score.to_bits() == want.to_bits() || (score.is_nan() && want.is_nan()),
            "row {i}: WebAssembly {score:e}, native {want:e}"
        );
    }
    let alone = udf.evaluate(&batch.slice(17, 1)).expect("one row");
    assert_eq!(alone[0].to_bits(), scores[17].to_bits());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_model_analysis_is_released_by_sample_and_aggregate() {
    let Some(bytes) = guest("default_model.wasm") else {
        return;
    };
    let s = sandbox();
    let job = s.load_wasm(&bytes).expect("admitted");
    let program = job.analysis().expect("declares an analysis");
    let input = "SELECT u.electricity_kwh, u.gas_m3, CAST(b.defaulted AS DOUBLE) AS defaulted
                 FROM bank.loans b
                 JOIN gov.utility_usage u ON b.credit_code = u.credit_code
                 WHERE u.month = '2024-06'";
    let r = s
        .run_analysis(
            TEST_GRANT,
            program,
            input,
            &AnalysisOptions {
                blocks: 8,
                epsilon: Some(1.0),
            },
        )
        .await
        .expect("released");
    let names: Vec<String> = r
        .table
        .rows
        .iter()
        .map(|row| match &row[0] {
            ReleasedCell::Key { value } => value.as_str().unwrap_or_default().to_string(),
            _ => String::new(),
        })
        .collect();
    assert_eq!(
        names,
        [
            "intercept",
            "coef_log_kwh",
            "coef_log_gas",
            sandbox_runtime::sandbox::DEFAULTS_ROW
        ]
    );
    for row in &r.table.rows[..3] {
        let ReleasedCell::Noisy { value, scale, .. } = row[1] else {
            panic!("noisy")
        };
        assert!((-10.0..=10.0).contains(&value));
        // 90 % of ε for the outputs.
        assert!(
            (scale - 20.0 * 3.0 / (8.0 * 0.9)).abs() < 1e-9,
            "range · d / (k · 0.9 ε)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_modules_are_refused_by_name_and_the_host_stays_up() {
    let s = sandbox();
    let wasi = wat::parse_str(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                   (memory (export "memory") 1))"#,
    )
    .expect("wat");
    let e = s.load_wasm(&wasi).expect_err("refused");
    assert!(e.is_refusal(), "{e}");
    assert!(e.to_string().contains("wasi_snapshot_preview1.fd_write"), "{e}");
    for garbage in [&b""[..], &b"\0asm\x01\0\0\0\xff"[..], &b"not wasm at all"[..]] {
        let e = s.load_wasm(garbage).expect_err("refused");
        assert!(e.is_refusal(), "{e}");
    }
    // The host still runs SQL and, when built, real guests.
    s.run_sql(
        TEST_GRANT,
        "SELECT COUNT(*) FROM gov.legal_entities",
        &SqlJobOptions::default(),
    )
    .await
    .expect("still up");
    if let Some(bytes) = guest("risk_score.wasm") {
        s.load_wasm(&bytes).expect("a good module after bad ones");
    }
}
