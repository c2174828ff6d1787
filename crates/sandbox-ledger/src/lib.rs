//! # sandbox-ledger
//!
//! The tamper-evident audit ledger: an append-only sequence of entries, each
//! committing to the previous one with SHA-256, so that editing, deleting,
//! inserting or reordering any entry breaks the chain at that entry.
//! Storage is someone else's job (the governance store keeps entries in its
//! database, in the same transaction as the state they record); this crate
//! owns the entry format, the hashing and verification.
//!
//! Where it sits on the job path: every step that changes state or releases
//! data appends one entry (`record`).
//!
//! ```
//! use sandbox_ledger::{Chain, verify};
//! let mut chain = Chain::new();
//! let a = chain.append("2026-11-22T10:00:00Z", "operator", "dataset_registered", serde_json::json!({"dataset": "gov.tax_payments"}));
//! let b = chain.append("2026-11-22T10:01:00Z", "demo-bank", "job_submitted", serde_json::json!({"job": "j1"}));
//! assert_eq!(verify([a.clone(), b.clone()].iter()).unwrap(), 2);
//! let mut edited = b.clone();
//! edited.actor = "someone-else".into();
//! assert_eq!(verify([a, edited].iter()).unwrap_err().seq, 2);
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The hash that the first entry commits to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// 1, 2, 3, … without gaps.
    pub seq: u64,
    /// RFC 3339 time of the event.
    pub at: String,
    /// The account the event is attributed to.
    pub actor: String,
    /// What happened (`job_submitted`, `budget_charged`, `release`, …).
    pub kind: String,
    /// Event details (never data values).
    pub payload: serde_json::Value,
    /// The previous entry's hash (GENESIS for the first).
    pub prev: String,
    /// SHA-256 over `prev` and the canonical encoding of the fields above.
    pub hash: String,
}

/// The canonical bytes an entry's hash covers: a JSON array with a fixed
/// field order (object keys inside `payload` are sorted by serde_json's
/// map, which is a BTreeMap without the `preserve_order` feature).
fn canonical(seq: u64, at: &str, actor: &str, kind: &str, payload: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&(seq, at, actor, kind, payload)).unwrap_or_default()
}

/// The hash of an entry with these fields after `prev`.
pub fn entry_hash(prev: &str, seq: u64, at: &str, actor: &str, kind: &str, payload: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(canonical(seq, at, actor, kind, payload));
    hex::encode(h.finalize())
}

/// Builds entries in order (for a store, or for tests).
#[derive(Debug, Clone)]
pub struct Chain {
    next_seq: u64,
    head: String,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    pub fn new() -> Self {
        Chain {
            next_seq: 1,
            head: GENESIS.to_string(),
        }
    }

    /// Continues after the last stored entry.
    pub fn after(last: &Entry) -> Self {
        Chain {
            next_seq: last.seq + 1,
            head: last.hash.clone(),
        }
    }

    /// Continues after a stored head: the last entry's sequence number and
    /// hash (0 and [`GENESIS`] for an empty ledger).
    pub fn resume(last_seq: u64, last_hash: &str) -> Self {
        Chain {
            next_seq: last_seq + 1,
            head: last_hash.to_string(),
        }
    }

    pub fn append(&mut self, at: &str, actor: &str, kind: &str, payload: serde_json::Value) -> Entry {
        let seq = self.next_seq;
        let hash = entry_hash(&self.head, seq, at, actor, kind, &payload);
        let entry = Entry {
            seq,
            at: at.to_string(),
            actor: actor.to_string(),
            kind: kind.to_string(),
            payload,
            prev: self.head.clone(),
            hash: hash.clone(),
        };
        self.next_seq += 1;
        self.head = hash;
        entry
    }
}

/// Where and why verification failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("ledger broken at entry {seq}: {reason}")]
pub struct Broken {
    /// The position (1-based) of the first bad entry.
    pub seq: u64,
    pub reason: String,
}

/// Verifies entries in stored order; returns how many were checked, or
/// the first bad one (by position, so a deleted or inserted entry is named
/// where the sequence goes wrong).
pub fn verify<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Result<u64, Broken> {
    let mut prev = GENESIS.to_string();
    let mut n = 0u64;
    for e in entries {
        n += 1;
        let bad = |reason: &str| Broken {
            seq: n,
            reason: reason.to_string(),
        };
        if e.seq != n {
            return Err(bad(
                "sequence number out of order (an entry was deleted, inserted or moved)",
            ));
        }
        if e.prev != prev {
            return Err(bad("does not follow the previous entry"));
        }
        if entry_hash(&e.prev, e.seq, &e.at, &e.actor, &e.kind, &e.payload) != e.hash {
            return Err(bad("contents do not match the entry's hash (edited)"));
        }
        prev = e.hash.clone();
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<Entry> {
        let mut c = Chain::new();
        (0..n)
            .map(|i| {
                c.append(
                    &format!("2026-11-22T10:{i:02}:00Z"),
                    "actor",
                    "event",
                    serde_json::json!({"i": i, "b": "x"}),
                )
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(10)), Ok(10));
        assert_eq!(verify(&[]), Ok(0));
    }

    #[test]
    fn every_kind_of_tampering_is_found_at_its_entry() {
        let good = chain(8);
        for i in 0..8 {
            // edit each field
            for field in 0..4 {
                let mut t = good.clone();
                match field {
                    0 => t[i].actor.push('!'),
                    1 => t[i].kind = "other".into(),
                    2 => t[i].payload = serde_json::json!({"i": 99}),
                    _ => t[i].at = "2030-01-01T00:00:00Z".into(),
                }
                assert_eq!(verify(&t).map_err(|e| e.seq), Err(i as u64 + 1), "edit {field} at {i}");
            }
            // delete
            let mut t = good.clone();
            t.remove(i);
            if i < 7 {
                assert_eq!(verify(&t).map_err(|e| e.seq), Err(i as u64 + 1), "delete {i}");
            } else {
                assert_eq!(
                    verify(&t),
                    Ok(7),
                    "deleting the last entry is only visible against a stored head"
                );
            }
            // insert a forged entry
            let mut t = good.clone();
            let mut forged = good[i].clone();
            forged.kind = "forged".into();
            t.insert(i, forged);
            assert_eq!(verify(&t).map_err(|e| e.seq), Err(i as u64 + 1), "insert {i}");
        }
        // swap two neighbours
        for i in 0..7 {
            let mut t = good.clone();
            t.swap(i, i + 1);
            assert_eq!(verify(&t).map_err(|e| e.seq), Err(i as u64 + 1), "swap {i}");
        }
    }

    #[test]
    fn a_re_hashed_suffix_is_still_caught_at_the_edit() {
        // An attacker edits entry 3 and recomputes its hash: entry 4 no longer follows.
        let mut t = chain(5);
        t[2].payload = serde_json::json!({"i": 42});
        t[2].hash = entry_hash(&t[2].prev, t[2].seq, &t[2].at, &t[2].actor, &t[2].kind, &t[2].payload);
        assert_eq!(verify(&t).map_err(|e| e.seq), Err(4));
    }

    #[test]
    fn chains_continue_after_a_stored_head() {
        let first = chain(3);
        let mut c = Chain::after(&first[2]);
        let mut all = first.clone();
        all.push(c.append("t", "a", "k", serde_json::json!(null)));
        assert_eq!(verify(&all), Ok(4));
    }
}
