//! Tests with hostile and well-behaved guests written in WAT.

mod admission;
mod guests;
mod happy;
mod hostile;
mod limits;
mod rows;
mod trial;

use crate::{RuntimeConfig, RuntimeConfigBuilder, SandboxEngine, WasmError};
use guests::{f64_batch, good_guest};

/// Test defaults: a small pool and a deadline long enough for a loaded CI
/// machine, short enough to keep runaway tests quick.
pub(crate) fn test_config() -> RuntimeConfigBuilder {
    RuntimeConfig::builder()
        .max_instances(4)
        .call_deadline(std::time::Duration::from_secs(5))
}

pub(crate) fn engine_with(builder: RuntimeConfigBuilder) -> SandboxEngine {
    SandboxEngine::new(builder.build().expect("test config is valid")).expect("engine starts")
}

pub(crate) fn engine() -> SandboxEngine {
    engine_with(test_config())
}

/// Admits `bytes` and expects a refusal.
pub(crate) fn refused(engine: &SandboxEngine, bytes: &[u8]) -> WasmError {
    match engine.admit(bytes) {
        Ok(module) => panic!("module was admitted: {module:?}"),
        Err(e) => e,
    }
}

/// After a hostile guest: the engine still admits and runs a good guest,
/// and no instance is left behind.
pub(crate) fn assert_healthy(engine: &SandboxEngine) {
    let module = engine.admit(&good_guest()).expect("good guest admitted");
    let out = engine
        .call_analyze(&module, &f64_batch(&[&[1.0, 2.0]]))
        .expect("good analysis runs");
    assert_eq!(out, vec![1.0, -2.5, 100.0]);
    let udf = engine
        .call_udf(&module, "echo", &f64_batch(&[&[0.25, 2.0, -1.0]]))
        .expect("good UDF runs");
    assert_eq!(udf.values().to_vec(), vec![0.25, 1.0, 0.0]);
    assert_eq!(engine.live_instances(), 0);
}

#[test]
fn engine_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SandboxEngine>();
    assert_send_sync::<crate::ModuleHandle>();
    assert_send_sync::<WasmError>();
}
