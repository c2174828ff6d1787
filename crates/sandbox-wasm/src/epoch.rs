//! The background thread that advances the engine's epoch, which is how a
//! call's wall-clock deadline interrupts a running guest.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// Advances `engine`'s epoch every `tick` until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("sandbox-wasm-epoch".into())
            .spawn(move || {
                let mut next = Instant::now() + tick;
                while !flag.load(Ordering::Acquire) {
                    let now = Instant::now();
                    if now < next {
                        // park_timeout lets Drop wake the thread at once; it
                        // may also wake early, hence the loop on `next`.
                        std::thread::park_timeout(next - now);
                        continue;
                    }
                    // Catch up after a stall (a busy machine): epochs measure
                    // wall-clock time, so a missed tick still counts.
                    while next <= now {
                        engine.increment_epoch();
                        next += tick;
                    }
                }
            })?;
        Ok(EpochTicker {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            handle.thread().unpark();
            if handle.join().is_err() {
                tracing::warn!("the epoch ticker thread panicked");
            }
        }
    }
}
