//! The engine-wide count of live instances, so a call beyond
//! `max_instances` fails fast with [`WasmError::Busy`] in both allocation
//! modes (the pool would refuse too, but on-demand allocation would not).

use crate::error::WasmError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts live instances against a maximum.
#[derive(Clone)]
pub(crate) struct Slots {
    live: Arc<AtomicUsize>,
    max: usize,
}

/// One taken slot; released on drop.
pub(crate) struct SlotGuard {
    live: Arc<AtomicUsize>,
}

impl Slots {
    pub(crate) fn new(max: usize) -> Self {
        Slots {
            live: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    pub(crate) fn acquire(&self) -> Result<SlotGuard, WasmError> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .map_err(|_| WasmError::Busy { max: self.max })?;
        Ok(SlotGuard {
            live: Arc::clone(&self.live),
        })
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}
