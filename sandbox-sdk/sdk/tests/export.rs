//! The `export!` macro on a job with every kind of declaration, run on the
//! host through `SANDBOX_JOB` (the same code paths the wasm exports use).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use sandbox_sdk::arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
use sandbox_sdk::sandbox_abi::{ERR_BAD_INPUT, ERR_GUEST, ERR_OUTPUT};
use sandbox_sdk::{Analysis, Job, Output, RecordBatch, SdkError, Udf, column_f64, ipc};

fn weighted(a: f64, b: f64, c: f64) -> f64 {
    a + 2.0 * b + 3.0 * c
}

fn one(x: f64) -> f64 {
    if x.is_nan() { -1.0 } else { x }
}

fn clipped(x: f64) -> f64 {
    x.clamp(-10.0, 10.0)
}

fn stats(batch: &RecordBatch) -> Result<Vec<f64>, SdkError> {
    let x = column_f64(batch, "x")?;
    if x.iter().any(|v| *v < -1000.0) {
        return Err(SdkError::Guest("refusing".into()));
    }
    let n = x.len() as f64;
    Ok(vec![x.iter().sum::<f64>(), n])
}

sandbox_sdk::export! {
    udf weighted(a: f64, b: f64, c: f64) -> f64 in [-1e3, 1e3] => weighted;
    analysis stats(batch: &RecordBatch) -> [
        sum in [-1.0e6, 1.0e6],
        count in [0.0, 1e9],
    ] => stats;
    udf one(x: f64) -> f64 in [-1.0, 1.0] => crate::one;
    udf clipped(x: f64,) -> f64 in [-10.0, 10.0,] => clipped;
}

fn col(v: Vec<Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from(v))
}

#[test]
fn manifest_is_exact_and_valid_json() {
    let json = SANDBOX_JOB.manifest_json();
    assert_eq!(
        json,
        concat!(
            r#"{"abi":1,"udfs":["#,
            r#"{"name":"weighted","args":["float64","float64","float64"],"returns":"float64","bounds":[-1000.0,1000.0]},"#,
            r#"{"name":"one","args":["float64"],"returns":"float64","bounds":[-1.0,1.0]},"#,
            r#"{"name":"clipped","args":["float64"],"returns":"float64","bounds":[-10.0,10.0]}],"#,
            r#""analysis":{"name":"stats","outputs":[{"name":"sum","lower":-1000000.0,"upper":1000000.0},"#,
            r#"{"name":"count","lower":0.0,"upper":1000000000.0}]}}"#
        )
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["abi"], 1);
    assert_eq!(v["udfs"][0]["bounds"][0].as_f64(), Some(-1000.0));
    assert_eq!(v["analysis"]["outputs"][1]["name"], "count");
    assert_eq!(SANDBOX_JOB.udf("weighted").unwrap().args, &["a", "b", "c"]);
}

#[test]
fn per_row_udf_over_ipc() {
    let batch = RecordBatch::try_from_iter([
        ("first", col(vec![Some(1.0), Some(0.0), None])),
        ("second", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
        ("third", col(vec![Some(1.0), Some(1.0), Some(1.0)])),
    ])
    .unwrap();
    let input = ipc::encode_batch(&batch).unwrap();
    let out = SANDBOX_JOB.call_udf_ipc("weighted", &input).unwrap();
    let values = ipc::decode_result(&out).unwrap();
    assert_eq!(values.len(), 3);
    assert_eq!(values[0], 1.0 + 2.0 + 3.0);
    assert_eq!(values[1], 4.0 + 3.0);
    assert!(values[2].is_nan(), "a null argument reaches the function as NaN");
}

#[test]
fn one_argument_udfs_and_null_handling() {
    let batch = RecordBatch::try_from_iter([("x", col(vec![Some(-11.0), Some(3.0)]))]).unwrap();
    assert_eq!(SANDBOX_JOB.call_udf("clipped", &batch).unwrap(), vec![-10.0, 3.0]);
    let batch = RecordBatch::try_from_iter([("x", col(vec![None, Some(0.5)]))]).unwrap();
    assert_eq!(SANDBOX_JOB.call_udf("one", &batch).unwrap(), vec![-1.0, 0.5]);
}

#[test]
fn udf_errors_map_to_abi_codes() {
    let one_col = RecordBatch::try_from_iter([("x", col(vec![Some(1.0)]))]).unwrap();
    // Wrong number of argument columns.
    assert_eq!(
        SANDBOX_JOB.call_udf("weighted", &one_col).unwrap_err().code(),
        ERR_BAD_INPUT
    );
    // Unknown UDF.
    assert_eq!(
        SANDBOX_JOB.call_udf("nope", &one_col).unwrap_err().code(),
        ERR_BAD_INPUT
    );
    // Non-numeric argument.
    let text = RecordBatch::try_from_iter([("x", Arc::new(StringArray::from(vec!["a"])) as ArrayRef)]).unwrap();
    assert_eq!(SANDBOX_JOB.call_udf("one", &text).unwrap_err().code(), ERR_BAD_INPUT);
    // Garbage bytes.
    assert_eq!(
        SANDBOX_JOB.call_udf_ipc("one", b"\x00\x01").unwrap_err().code(),
        ERR_BAD_INPUT
    );
}

#[test]
fn output_contracts_are_enforced() {
    // A hand-built job whose UDF and analysis break their contracts.
    static BROKEN: Job = Job {
        udfs: &[Udf {
            name: "broken",
            args: &["x"],
            lower: 0.0,
            upper: 1.0,
            run: |batch| Ok(vec![0.0; batch.num_rows() + 1]),
        }],
        analysis: Some(Analysis {
            name: "short",
            outputs: &[
                Output {
                    name: "a",
                    lower: 0.0,
                    upper: 1.0,
                },
                Output {
                    name: "b",
                    lower: 0.0,
                    upper: 1.0,
                },
            ],
            run: |_| Ok(vec![0.5]),
        }),
    };
    let one = RecordBatch::try_from_iter([("x", col(vec![Some(1.0)]))]).unwrap();
    assert_eq!(BROKEN.call_udf("broken", &one).unwrap_err().code(), ERR_OUTPUT);
    assert_eq!(BROKEN.analyze(&one).unwrap_err().code(), ERR_OUTPUT);
}

#[test]
fn empty_batch_gives_empty_result() {
    let batch = RecordBatch::try_from_iter([("x", col(vec![]))]).unwrap();
    let out = SANDBOX_JOB
        .call_udf_ipc("one", &ipc::encode_batch(&batch).unwrap())
        .unwrap();
    assert_eq!(ipc::decode_result(&out).unwrap(), Vec::<f64>::new());
}

#[test]
fn analysis_over_ipc_and_errors() {
    let batch = RecordBatch::try_from_iter([("x", col(vec![Some(1.0), Some(2.5)]))]).unwrap();
    let out = SANDBOX_JOB.analyze_ipc(&ipc::encode_batch(&batch).unwrap()).unwrap();
    assert_eq!(out.len(), 16);
    assert_eq!(ipc::decode_f64s(&out).unwrap(), vec![3.5, 2.0]);

    let refused = RecordBatch::try_from_iter([("x", col(vec![Some(-5000.0)]))]).unwrap();
    assert_eq!(SANDBOX_JOB.analyze(&refused).unwrap_err().code(), ERR_GUEST);
    let missing = RecordBatch::try_from_iter([("y", col(vec![Some(1.0)]))]).unwrap();
    assert_eq!(SANDBOX_JOB.analyze(&missing).unwrap_err().code(), ERR_BAD_INPUT);
}
