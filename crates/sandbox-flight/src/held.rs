//! Things the endpoint holds for an account between calls: released
//! results waiting for their `DoGet`, and prepared statements. Each is
//! named by 16 random bytes (hex), bound to the account that made it,
//! expires after a TTL, and counts against a per-account and a total cap.
//! Another account's handle behaves exactly like an unknown one.

use crate::FlightError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tonic::Status;

/// 16 random bytes from the operating system, as hex.
pub(crate) fn random_handle() -> Result<String, FlightError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| FlightError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

struct Entry<V> {
    account: String,
    expires: Instant,
    /// `None` while reserved (a job is still running for it).
    value: Option<V>,
}

type Map<V> = Arc<Mutex<HashMap<String, Entry<V>>>>;

fn lock<V>(map: &Map<V>) -> MutexGuard<'_, HashMap<String, Entry<V>>> {
    // A panic while holding the lock leaves the map consistent (every
    // change is one insert or remove), so a poisoned lock is still usable.
    map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Limits of one kind of holding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub ttl: Duration,
    pub max_total: usize,
    pub max_per_account: usize,
}

pub(crate) struct Holdings<V> {
    map: Map<V>,
    limits: Limits,
    /// What is held, for messages: `results`, `prepared statements`.
    what: &'static str,
}

impl<V> Holdings<V> {
    pub(crate) fn new(limits: Limits, what: &'static str) -> Self {
        Holdings {
            map: Arc::new(Mutex::new(HashMap::new())),
            limits,
            what,
        }
    }

    fn purge(map: &mut HashMap<String, Entry<V>>, now: Instant) {
        map.retain(|_, e| e.value.is_none() || e.expires > now);
    }

    /// Reserves a slot for `account` (refused when a cap is reached); the
    /// slot is freed again if the reservation is dropped unfilled.
    pub(crate) fn reserve(&self, account: &str) -> Result<Reservation<V>, Status> {
        let handle = random_handle()?;
        let mut map = lock(&self.map);
        Self::purge(&mut map, Instant::now());
        let mine = map.values().filter(|e| e.account == account).count();
        if mine >= self.limits.max_per_account {
            return Err(Status::resource_exhausted(format!(
                "you hold {mine} {} already (the limit); fetch or close them, or wait {} s for them to expire",
                self.what,
                self.limits.ttl.as_secs()
            )));
        }
        if map.len() >= self.limits.max_total {
            return Err(Status::resource_exhausted(format!(
                "the endpoint holds {} {} already; try again shortly",
                map.len(),
                self.what
            )));
        }
        map.insert(
            handle.clone(),
            Entry {
                account: account.to_string(),
                expires: Instant::now() + self.limits.ttl,
                value: None,
            },
        );
        Ok(Reservation {
            map: Arc::clone(&self.map),
            handle,
            ttl: self.limits.ttl,
            filled: false,
        })
    }

    /// Removes and returns the value of `handle` if `account` holds it.
    pub(crate) fn take(&self, handle: &str, account: &str) -> Option<V> {
        let mut map = lock(&self.map);
        Self::purge(&mut map, Instant::now());
        match map.get(handle) {
            Some(e) if e.account == account && e.value.is_some() => map.remove(handle).and_then(|e| e.value),
            _ => None,
        }
    }

    /// Removes `handle` if `account` holds it; true if it did.
    pub(crate) fn remove(&self, handle: &str, account: &str) -> bool {
        self.take(handle, account).is_some()
    }

    /// Number of entries held (reserved or filled), after purging.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let mut map = lock(&self.map);
        Self::purge(&mut map, Instant::now());
        map.len()
    }
}

impl<V: Clone> Holdings<V> {
    /// The value of `handle` if `account` holds it; its TTL starts again.
    pub(crate) fn get(&self, handle: &str, account: &str) -> Option<V> {
        let mut map = lock(&self.map);
        let now = Instant::now();
        Self::purge(&mut map, now);
        let e = map.get_mut(handle).filter(|e| e.account == account)?;
        e.expires = now + self.limits.ttl;
        e.value.clone()
    }
}

/// A reserved slot; [`fill`](Reservation::fill) it or drop it.
pub(crate) struct Reservation<V> {
    map: Map<V>,
    handle: String,
    ttl: Duration,
    filled: bool,
}

impl<V> Reservation<V> {
    pub(crate) fn handle(&self) -> &str {
        &self.handle
    }

    /// Stores the value; its TTL starts now.
    pub(crate) fn fill(mut self, value: V) {
        let mut map = lock(&self.map);
        if let Some(e) = map.get_mut(&self.handle) {
            e.value = Some(value);
            e.expires = Instant::now() + self.ttl;
        }
        self.filled = true;
    }
}

impl<V> Drop for Reservation<V> {
    fn drop(&mut self) {
        if !self.filled {
            lock(&self.map).remove(&self.handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holdings(ttl: Duration) -> Holdings<u32> {
        Holdings::new(
            Limits {
                ttl,
                max_total: 3,
                max_per_account: 2,
            },
            "results",
        )
    }

    #[test]
    fn single_use_bound_to_the_account() {
        let h = holdings(Duration::from_secs(60));
        let r = h.reserve("a").expect("reserve");
        let handle = r.handle().to_string();
        assert_eq!(handle.len(), 32);
        assert_eq!(h.take(&handle, "a"), None, "not filled yet");
        r.fill(7);
        assert_eq!(h.take(&handle, "b"), None, "another account");
        assert_eq!(h.take(&handle, "a"), Some(7));
        assert_eq!(h.take(&handle, "a"), None, "single use");
    }

    #[test]
    fn caps_and_dropped_reservations() {
        let h = holdings(Duration::from_secs(60));
        let a1 = h.reserve("a").expect("1");
        let _a2 = h.reserve("a").expect("2");
        assert_eq!(
            h.reserve("a").err().map(|s| s.code()),
            Some(tonic::Code::ResourceExhausted)
        );
        let _b1 = h.reserve("b").expect("b1");
        assert_eq!(
            h.reserve("c").err().map(|s| s.code()),
            Some(tonic::Code::ResourceExhausted)
        );
        drop(a1);
        assert_eq!(h.len(), 2);
        h.reserve("c").expect("freed").fill(1);
    }

    #[test]
    fn expired_entries_are_gone() {
        let h = holdings(Duration::from_millis(1));
        let r = h.reserve("a").expect("reserve");
        let handle = r.handle().to_string();
        r.fill(1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(h.get(&handle, "a"), None);
        assert_eq!(h.len(), 0);
    }
}
