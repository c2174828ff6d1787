//! The audit ledger inside the store: entries appended in the same
//! transaction as the state change they record, a stored head (last sequence
//! number and hash) so that a truncated tail is caught, and verification.
//!
//! The entry format and hashing belong to `sandbox-ledger`; this module
//! stores them.

use crate::GovernanceError;
use rusqlite::{OptionalExtension, Transaction, params};
use sandbox_ledger::{Broken, Chain, Entry};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
";

/// What a ledger check found.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditReport {
    /// Every entry follows its predecessor and the last one is the stored head.
    Intact { entries: u64, head: String },
    /// The first bad entry and why.
    Broken(Broken),
}

/// Appends one entry after the stored head, inside `tx`.
pub(crate) fn append(
    tx: &Transaction<'_>,
    actor: &str,
    kind: &str,
    payload: serde_json::Value,
) -> Result<Entry, GovernanceError> {
    let head: Option<(u64, String)> = tx
        .query_row("SELECT seq, hash FROM ledger_head WHERE id = 1", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })
        .optional()?;
    let mut chain = match &head {
        Some((seq, hash)) => Chain::resume(*seq, hash),
        None => Chain::new(),
    };
    let at: String = tx.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| r.get(0))?;
    let entry = chain.append(&at, actor, kind, payload);
    tx.execute(
        "INSERT INTO ledger (seq, at, actor, kind, payload, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            entry.seq as i64,
            entry.at,
            entry.actor,
            entry.kind,
            serde_json::to_string(&entry.payload)?,
            entry.prev,
            entry.hash
        ],
    )?;
    tx.execute(
        "INSERT INTO ledger_head (id, seq, hash) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        params![entry.seq as i64, entry.hash],
    )?;
    Ok(entry)
}

/// Every entry in stored order. A payload that is not JSON is kept as a
/// string so that verification reports the entry instead of failing to read.
pub(crate) fn entries(conn: &rusqlite::Connection) -> Result<Vec<Entry>, GovernanceError> {
    let mut stmt = conn.prepare("SELECT seq, at, actor, kind, payload, prev, hash FROM ledger ORDER BY seq")?;
    let rows = stmt.query_map([], |r| {
        let payload: String = r.get(4)?;
        Ok(Entry {
            seq: r.get::<_, i64>(0)? as u64,
            at: r.get(1)?,
            actor: r.get(2)?,
            kind: r.get(3)?,
            payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
            prev: r.get(5)?,
            hash: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Verifies the stored entries and the head.
pub(crate) fn verify(conn: &rusqlite::Connection) -> Result<AuditReport, GovernanceError> {
    let entries = entries(conn)?;
    let checked = match sandbox_ledger::verify(&entries) {
        Ok(n) => n,
        Err(broken) => return Ok(AuditReport::Broken(broken)),
    };
    let head: Option<(u64, String)> = conn
        .query_row("SELECT seq, hash FROM ledger_head WHERE id = 1", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })
        .optional()?;
    let (head_seq, head_hash) = head.unwrap_or((0, sandbox_ledger::GENESIS.to_string()));
    let last_hash = entries
        .last()
        .map_or(sandbox_ledger::GENESIS.to_string(), |e| e.hash.clone());
    if checked != head_seq {
        let reason = if checked < head_seq {
            format!(
                "the ledger ends at entry {checked} but its head records entry {head_seq}: entries were removed from the end"
            )
        } else {
            format!("entries after the recorded head (entry {head_seq}) were added outside the store")
        };
        return Ok(AuditReport::Broken(Broken {
            seq: checked.min(head_seq) + 1,
            reason,
        }));
    }
    if last_hash != head_hash {
        return Ok(AuditReport::Broken(Broken {
            seq: checked.max(1),
            reason: "the last entry is not the one the head records".into(),
        }));
    }
    Ok(AuditReport::Intact {
        entries: checked,
        head: head_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::AuditReport;
    use crate::{Grant, JobCharge, Store};
    use rusqlite::Connection;
    use sandbox_model::{DatasetId, JobOutcome, UsageRecord};

    fn ds(s: &str) -> DatasetId {
        s.parse().expect("dataset id")
    }

    /// A store with a grant and three jobs: charged+released, charged+failed,
    /// refused: 1 + 2 + 2 + 1 = 6 entries.
    fn populated() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let store = Store::open(&path).expect("open");
        store
            .upsert_grant(&Grant::new("g", "bank", vec![(ds("gov.a"), 5.0)]))
            .expect("grant");
        for (job, outcome) in [
            ("j1", JobOutcome::Released),
            ("j2", JobOutcome::Failed { message: "x".into() }),
        ] {
            store
                .reserve(&JobCharge::new(job, "g", "sql", "d", vec![(ds("gov.a"), 0.5, 0.0)]))
                .expect("reserve");
            let usage = UsageRecord {
                job_id: job.into(),
                grant_id: "g".into(),
                columns_read: vec!["gov.a.x".into()],
                epsilon: 0.5,
                ..Default::default()
            };
            store.finish(job, &outcome, &usage).expect("finish");
        }
        store
            .record_refusal("j3", "g", "sql", "d", &JobOutcome::Refused { rule: "k".into() })
            .expect("refusal");
        (dir, path)
    }

    fn report(path: &std::path::Path) -> AuditReport {
        Store::open(path).expect("open").verify_audit().expect("verify")
    }

    fn broken_at(path: &std::path::Path) -> u64 {
        match report(path) {
            AuditReport::Broken(b) => b.seq,
            AuditReport::Intact { .. } => panic!("tampering went unnoticed"),
        }
    }

    #[test]
    fn every_change_is_recorded_and_the_ledger_verifies() {
        let (_dir, path) = populated();
        let store = Store::open(&path).expect("open");
        let kinds: Vec<String> = store
            .audit_entries()
            .expect("entries")
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                "grant_created",
                "job_charged",
                "job_finished",
                "job_charged",
                "job_finished",
                "job_refused"
            ]
        );
        let entries = store.audit_entries().expect("entries");
        assert!(entries.iter().all(|e| e.actor == "bank"));
        assert_eq!(entries[1].payload["charges"][0]["epsilon"], 0.5);
        assert_eq!(entries[2].payload["usage"]["columns_read"][0], "gov.a.x");
        // Re-upserting an unchanged grant records nothing.
        store
            .upsert_grant(&Grant::new("g", "bank", vec![(ds("gov.a"), 5.0)]))
            .expect("grant");
        assert!(matches!(
            store.verify_audit().expect("verify"),
            AuditReport::Intact { entries: 6, .. }
        ));
    }

    #[test]
    fn editing_any_field_of_any_entry_is_found_at_that_entry() {
        for seq in 1..=6 {
            for column in ["at", "actor", "kind", "payload", "prev", "hash"] {
                let (_dir, path) = populated();
                let value = if column == "payload" {
                    "{\"job\":\"forged\"}"
                } else {
                    "forged"
                };
                Connection::open(&path)
                    .expect("raw")
                    .execute(
                        &format!("UPDATE ledger SET {column} = ?1 WHERE seq = ?2"),
                        rusqlite::params![value, seq],
                    )
                    .expect("tamper");
                // Forging the hash of the last entry shows at the head check.
                assert_eq!(broken_at(&path), seq, "{column} of entry {seq}");
            }
        }
    }

    #[test]
    fn deleting_inserting_or_swapping_entries_is_found() {
        for seq in 1..=6i64 {
            let (_dir, path) = populated();
            Connection::open(&path)
                .expect("raw")
                .execute("DELETE FROM ledger WHERE seq = ?1", [seq])
                .expect("delete");
            assert_eq!(broken_at(&path), seq as u64, "delete {seq}");
        }
        // Insert a forged entry in the middle (renumbering those after it).
        let (_dir, path) = populated();
        let raw = Connection::open(&path).expect("raw");
        raw.execute_batch(
            "UPDATE ledger SET seq = seq + 100 WHERE seq >= 3; UPDATE ledger SET seq = seq - 99 WHERE seq >= 103;
             INSERT INTO ledger (seq, at, actor, kind, payload, prev, hash)
               SELECT 3, at, actor, 'job_charged', '{}', hash, hash FROM ledger WHERE seq = 2;",
        )
        .expect("insert");
        assert_eq!(broken_at(&path), 3);
        // Swap two entries' positions.
        let (_dir, path) = populated();
        Connection::open(&path)
            .expect("raw")
            .execute_batch(
                "UPDATE ledger SET seq = 100 WHERE seq = 4; UPDATE ledger SET seq = 4 WHERE seq = 5;
                 UPDATE ledger SET seq = 5 WHERE seq = 100;",
            )
            .expect("swap");
        assert_eq!(broken_at(&path), 4);
    }

    #[test]
    fn a_truncated_tail_or_an_appended_entry_is_found_against_the_head() {
        let (_dir, path) = populated();
        Connection::open(&path)
            .expect("raw")
            .execute("DELETE FROM ledger WHERE seq >= 5", [])
            .expect("truncate");
        assert_eq!(broken_at(&path), 5);

        let (_dir, path) = populated();
        Connection::open(&path)
            .expect("raw")
            .execute(
                "INSERT INTO ledger SELECT 7, at, actor, kind, payload, hash, hash FROM ledger WHERE seq = 6",
                [],
            )
            .expect("append");
        assert_eq!(broken_at(&path), 7);
    }
}
