//! The audit ledger inside the store: entries appended in the same
//! transaction as the state change they record, a stored head (last sequence
//! number and hash) so that a truncated tail is caught, and verification.
//!
//! The entry format and hashing belong to `sandbox-ledger`; this module
//! stores them.

use crate::GovernanceError;
use crate::anchor::Checkpoint;
use crate::db::{Tx, now};
use sandbox_ledger::{Broken, Chain, Entry};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger (
    seq BIGINT PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
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

impl AuditReport {
    pub fn is_intact(&self) -> bool {
        matches!(self, AuditReport::Intact { .. })
    }
}

pub(crate) fn head(tx: &mut dyn Tx) -> Result<Option<(u64, String)>, GovernanceError> {
    match tx.query_opt("SELECT seq, hash FROM ledger_head WHERE id = 1", &[])? {
        Some(r) => Ok(Some((r.int(0)? as u64, r.text(1)?))),
        None => Ok(None),
    }
}

/// Appends one entry after the stored head, inside `tx`.
pub(crate) fn append(
    tx: &mut dyn Tx,
    actor: &str,
    kind: &str,
    payload: serde_json::Value,
) -> Result<Entry, GovernanceError> {
    let mut chain = match head(tx)? {
        Some((seq, hash)) => Chain::resume(seq, &hash),
        None => Chain::new(),
    };
    let entry = chain.append(&now(), actor, kind, payload);
    tx.execute(
        "INSERT INTO ledger (seq, at, actor, kind, payload, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        &[
            (entry.seq as i64).into(),
            (&entry.at).into(),
            (&entry.actor).into(),
            (&entry.kind).into(),
            serde_json::to_string(&entry.payload)?.into(),
            (&entry.prev).into(),
            (&entry.hash).into(),
        ],
    )?;
    tx.execute(
        "INSERT INTO ledger_head (id, seq, hash) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        &[(entry.seq as i64).into(), (&entry.hash).into()],
    )?;
    Ok(entry)
}

/// Every entry in stored order. A payload that is not JSON is kept as a
/// string so that verification reports the entry instead of failing to read.
pub(crate) fn entries(tx: &mut dyn Tx) -> Result<Vec<Entry>, GovernanceError> {
    tx.query(
        "SELECT seq, at, actor, kind, payload, prev, hash FROM ledger ORDER BY seq",
        &[],
    )?
    .iter()
    .map(|r| {
        let payload = r.text(4)?;
        Ok(Entry {
            seq: r.int(0)? as u64,
            at: r.text(1)?,
            actor: r.text(2)?,
            kind: r.text(3)?,
            payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
            prev: r.text(5)?,
            hash: r.text(6)?,
        })
    })
    .collect()
}

/// What a check of the database file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// The backend's own check passed (SQLite `PRAGMA integrity_check`).
    Ok,
    /// What the backend's check reported (at most 20 lines).
    Damaged(Vec<String>),
    /// The backend has no such check here (PostgreSQL: its data
    /// checksums and `amcheck` are the operator's).
    NotAvailable,
}

/// Runs the backend's integrity check.
pub(crate) fn integrity(tx: &mut dyn Tx, backend: &str) -> Result<Integrity, GovernanceError> {
    if backend != "sqlite" {
        return Ok(Integrity::NotAvailable);
    }
    let lines: Vec<String> = match tx.query("PRAGMA integrity_check(20)", &[]) {
        Ok(rows) => rows.iter().map(|r| r.text(0)).collect::<Result<_, _>>()?,
        // A file damaged badly enough fails the check itself.
        Err(e) => vec![e.to_string()],
    };
    Ok(if lines.len() == 1 && lines[0] == "ok" {
        Integrity::Ok
    } else {
        Integrity::Damaged(lines)
    })
}

/// Why the stored ledger does not contain `checkpoint` (an entry recorded
/// outside the database), if it does not.
pub(crate) fn discontinuity(tx: &mut dyn Tx, checkpoint: &Checkpoint) -> Result<Option<Broken>, GovernanceError> {
    if checkpoint.seq == 0 {
        return Ok(None);
    }
    let row = tx.query_opt(
        "SELECT hash FROM ledger WHERE seq = ?1",
        &[(checkpoint.seq as i64).into()],
    )?;
    let (count, _) = head(tx)?.unwrap_or((0, String::new()));
    let reason = match row.map(|r| r.text(0)).transpose()? {
        Some(hash) if hash == checkpoint.hash => return Ok(None),
        Some(_) => format!(
            "entry {} is not the one recorded outside the database at {}: the store was replaced",
            checkpoint.seq, checkpoint.at
        ),
        None => format!(
            "the store's ledger has {count} entries but entry {} was recorded outside the database at {}: \
             the store was emptied, truncated or replaced",
            checkpoint.seq, checkpoint.at
        ),
    };
    Ok(Some(Broken {
        seq: checkpoint.seq.min(count + 1),
        reason,
    }))
}

/// Verifies the stored entries and the head, and that the ledger contains
/// `checkpoint` when one is given.
pub(crate) fn verify(tx: &mut dyn Tx, checkpoint: Option<&Checkpoint>) -> Result<AuditReport, GovernanceError> {
    if let Some(c) = checkpoint
        && let Some(broken) = discontinuity(tx, c)?
    {
        return Ok(AuditReport::Broken(broken));
    }
    let entries = entries(tx)?;
    let checked = match sandbox_ledger::verify(&entries) {
        Ok(n) => n,
        Err(broken) => return Ok(AuditReport::Broken(broken)),
    };
    let (head_seq, head_hash) = head(tx)?.unwrap_or((0, sandbox_ledger::GENESIS.to_string()));
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
    use crate::testing::test_dbs;
    use crate::{Grant, JobCharge, Store};
    use sandbox_model::{DatasetId, JobOutcome, UsageRecord};

    fn ds(s: &str) -> DatasetId {
        s.parse().expect("dataset id")
    }

    /// A grant and three jobs: charged+released, charged+failed, refused:
    /// 1 + 2 + 2 + 1 = 6 entries.
    fn populate(store: &Store) {
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
    }

    /// Populates a fresh store on every backend, tampers with `sql`, and
    /// returns where verification says the ledger breaks.
    fn broken_at(sql: &str) -> Vec<(&'static str, Option<u64>)> {
        test_dbs()
            .iter()
            .map(|db| {
                let store = db.open();
                populate(&store);
                store.raw(sql).expect("tamper");
                let at = match store.verify_audit().expect("verify") {
                    AuditReport::Broken(b) => Some(b.seq),
                    AuditReport::Intact { .. } => None,
                };
                (db.name(), at)
            })
            .collect()
    }

    fn assert_broken_at(sql: &str, seq: u64) {
        for (backend, at) in broken_at(sql) {
            assert_eq!(at, Some(seq), "{backend}: {sql}");
        }
    }

    #[test]
    fn every_change_is_recorded_and_the_ledger_verifies() {
        for db in test_dbs() {
            let store = db.open();
            populate(&store);
            let entries = store.audit_entries().expect("entries");
            let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
            assert_eq!(
                kinds,
                [
                    "grant_created",
                    "job_charged",
                    "job_finished",
                    "job_charged",
                    "job_finished",
                    "job_refused"
                ],
                "{}",
                db.name()
            );
            assert!(entries.iter().all(|e| e.actor == "bank"));
            assert_eq!(entries[1].payload["charges"][0]["epsilon"], 0.5);
            assert_eq!(entries[2].payload["usage"]["columns_read"][0], "gov.a.x");
            // Re-upserting an unchanged grant records nothing; reopening
            // continues the same chain.
            let store = db.open();
            store
                .upsert_grant(&Grant::new("g", "bank", vec![(ds("gov.a"), 5.0)]))
                .expect("grant");
            assert!(matches!(
                store.verify_audit().expect("verify"),
                AuditReport::Intact { entries: 6, .. }
            ));
        }
    }

    #[test]
    fn editing_any_field_of_any_entry_is_found_at_that_entry() {
        for seq in 1..=6 {
            for column in ["at", "actor", "kind", "payload", "prev", "hash"] {
                let value = if column == "payload" {
                    "{\"job\":\"forged\"}"
                } else {
                    "forged"
                };
                // Forging the hash of the last entry shows at the head check.
                assert_broken_at(
                    &format!("UPDATE ledger SET {column} = '{value}' WHERE seq = {seq}"),
                    seq,
                );
            }
        }
    }

    #[test]
    fn deleting_inserting_or_swapping_entries_is_found() {
        for seq in 1..=6 {
            assert_broken_at(&format!("DELETE FROM ledger WHERE seq = {seq}"), seq);
        }
        // A forged entry in the middle, renumbering those after it.
        assert_broken_at(
            "UPDATE ledger SET seq = seq + 100 WHERE seq >= 3; UPDATE ledger SET seq = seq - 99 WHERE seq >= 103;
             INSERT INTO ledger (seq, at, actor, kind, payload, prev, hash)
               SELECT 3, at, actor, 'job_charged', '{}', hash, hash FROM ledger WHERE seq = 2;",
            3,
        );
        // Two entries swapped.
        assert_broken_at(
            "UPDATE ledger SET seq = 100 WHERE seq = 4; UPDATE ledger SET seq = 4 WHERE seq = 5;
             UPDATE ledger SET seq = 5 WHERE seq = 100;",
            4,
        );
    }

    #[test]
    fn a_truncated_tail_or_an_appended_entry_is_found_against_the_head() {
        assert_broken_at("DELETE FROM ledger WHERE seq >= 5", 5);
        assert_broken_at(
            "INSERT INTO ledger (seq, at, actor, kind, payload, prev, hash)
               SELECT 7, at, actor, kind, payload, hash, hash FROM ledger WHERE seq = 6",
            7,
        );
    }
}
