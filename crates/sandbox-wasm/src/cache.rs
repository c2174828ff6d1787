//! A small least-recently-used cache of admitted modules keyed by the
//! SHA-256 of their bytes, so resubmitting a module skips validation,
//! compilation and the manifest check.

use std::collections::HashMap;
use std::sync::Mutex;

/// SHA-256 digest of a module's bytes.
pub(crate) type Digest = [u8; 32];

/// Bounded map from digest to value; evicts the least recently used entry.
pub(crate) struct ModuleCache<V> {
    capacity: usize,
    inner: Mutex<Entries<V>>,
}

struct Entries<V> {
    clock: u64,
    map: HashMap<Digest, (V, u64)>,
}

impl<V: Clone> ModuleCache<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        ModuleCache {
            capacity: capacity.max(1),
            inner: Mutex::new(Entries {
                clock: 0,
                map: HashMap::new(),
            }),
        }
    }

    pub(crate) fn get(&self, digest: &Digest) -> Option<V> {
        let mut entries = self.lock();
        entries.clock += 1;
        let now = entries.clock;
        entries.map.get_mut(digest).map(|(value, used)| {
            *used = now;
            value.clone()
        })
    }

    /// Inserts `value` unless another thread cached the same digest first;
    /// returns the cached value either way.
    pub(crate) fn insert(&self, digest: Digest, value: V) -> V {
        let mut entries = self.lock();
        entries.clock += 1;
        let now = entries.clock;
        if let Some((existing, used)) = entries.map.get_mut(&digest) {
            *used = now;
            return existing.clone();
        }
        if entries.map.len() >= self.capacity {
            // A linear scan is fine: the capacity is small (≤ 4096).
            let oldest = entries.map.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                entries.map.remove(&oldest);
            }
        }
        entries.map.insert(digest, (value.clone(), now));
        value
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    // A panic while holding the lock leaves the map consistent (every
    // update is a single insert or remove), so poisoning is ignored.
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<V>> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
