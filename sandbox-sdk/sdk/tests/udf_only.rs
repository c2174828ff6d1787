//! A job without an analysis: the manifest has no `analysis` key and
//! `analyze` is refused.
#![allow(clippy::unwrap_used)]

use sandbox_sdk::RecordBatch;
use sandbox_sdk::sandbox_abi::ERR_BAD_INPUT;

fn double(x: f64) -> f64 {
    2.0 * x
}

const HI: f64 = 2.5e-3;

sandbox_sdk::export! {
    udf double(x: f64) -> f64 in [-HI, HI] => double;
}

#[test]
fn manifest_without_analysis() {
    assert_eq!(
        SANDBOX_JOB.manifest_json(),
        r#"{"abi":1,"udfs":[{"name":"double","args":["float64"],"returns":"float64","bounds":[-0.0025,0.0025]}]}"#
    );
    let v: serde_json::Value = serde_json::from_str(&SANDBOX_JOB.manifest_json()).unwrap();
    assert!(v.get("analysis").is_none());
}

#[test]
fn analyze_is_refused() {
    let batch = RecordBatch::new_empty(std::sync::Arc::new(sandbox_sdk::arrow_schema::Schema::empty()));
    assert_eq!(SANDBOX_JOB.analyze(&batch).unwrap_err().code(), ERR_BAD_INPUT);
}
