//! A job with only an analysis returning a fixed-size array.
#![allow(clippy::unwrap_used)]

use sandbox_sdk::RecordBatch;

fn rows(batch: &RecordBatch) -> [f64; 1] {
    [batch.num_rows() as f64]
}

sandbox_sdk::export! {
    analysis count(b: &RecordBatch) -> [rows in [0.0, 100.0]] => rows;
}

#[test]
fn analysis_only_job() {
    assert_eq!(
        SANDBOX_JOB.manifest_json(),
        r#"{"abi":1,"udfs":[],"analysis":{"name":"count","outputs":[{"name":"rows","lower":0.0,"upper":100.0}]}}"#
    );
    let batch = RecordBatch::new_empty(std::sync::Arc::new(sandbox_sdk::arrow_schema::Schema::empty()));
    assert_eq!(SANDBOX_JOB.analyze(&batch).unwrap(), vec![0.0]);
}
