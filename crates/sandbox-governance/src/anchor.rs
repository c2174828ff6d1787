//! The ledger head kept outside the database, so that a store that was
//! emptied, truncated or replaced is noticed: a database can be swapped for
//! another whose chain verifies on its own, but not for one that contains
//! the entry the head file names.
//!
//! A [`Checkpoint`] is a ledger position: entry `seq` has hash `hash`. The
//! store advances its head file (`ledger.head` in the data directory)
//! after every committed write, atomically (a new file renamed over the
//! old), and only forward. A checkpoint is a lower bound: the database may
//! be ahead of it (another process wrote last), never behind or different.
//! The operator can also export a checkpoint (`sandbox audit checkpoint`)
//! and keep it elsewhere: `sandbox audit verify --checkpoint FILE` checks
//! the store against it, which also covers a data directory deleted whole.

use crate::GovernanceError;
use crate::db::now;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The largest head file read (a checkpoint is a line of JSON).
const MAX_CHECKPOINT_BYTES: u64 = 4096;

/// A ledger position recorded outside the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The entry's sequence number (1-based).
    pub seq: u64,
    /// Its hash, hex.
    pub hash: String,
    /// When the checkpoint was taken (RFC 3339 UTC).
    pub at: String,
}

impl Checkpoint {
    /// Reads a checkpoint file: `None` if there is none; an error naming
    /// the file if it is larger than a checkpoint, not a regular file, or
    /// not a checkpoint.
    pub fn read(path: &Path) -> Result<Option<Checkpoint>, GovernanceError> {
        let bad = |why: String| GovernanceError::Invalid(format!("{}: {why}", path.display()));
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(bad(e.to_string())),
        };
        let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
        if !meta.is_file() {
            return Err(bad("not a regular file".into()));
        }
        let mut text = String::new();
        file.take(MAX_CHECKPOINT_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| bad(e.to_string()))?;
        if text.len() as u64 > MAX_CHECKPOINT_BYTES {
            return Err(bad(format!(
                "larger than a checkpoint ({MAX_CHECKPOINT_BYTES} bytes at most)"
            )));
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| bad(format!("not a ledger checkpoint: {e}")))
    }

    /// Writes the checkpoint atomically (a sibling file renamed over it).
    pub fn write(&self, path: &Path) -> Result<(), GovernanceError> {
        let io = |e: std::io::Error| GovernanceError::Storage(format!("{}: {e}", path.display()));
        let mut staging = path.as_os_str().to_owned();
        staging.push(".new");
        let staging = PathBuf::from(staging);
        std::fs::write(&staging, format!("{}\n", serde_json::to_string(self)?)).map_err(io)?;
        std::fs::rename(&staging, path).map_err(io)
    }
}

/// How a store is checked against its head file when it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// Refuse a store that does not contain the recorded head (every verb
    /// and `serve`).
    Require,
    /// Open whatever is there; verification reports a discontinuity
    /// (`audit verify`).
    Report,
    /// Start anew where the head file names an earlier store: the old head
    /// file is kept beside it as `<name>.replaced-<time>` (`--init`).
    Initialise,
}

/// The head file a store advances.
#[derive(Debug)]
pub(crate) struct Anchor {
    path: PathBuf,
    /// The recorded checkpoint when the store was opened, and the last
    /// one this process wrote.
    last: Mutex<Option<Checkpoint>>,
}

impl Anchor {
    pub(crate) fn new(path: &Path, recorded: Option<Checkpoint>) -> Self {
        Anchor {
            path: path.to_path_buf(),
            last: Mutex::new(recorded),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint recorded last.
    pub(crate) fn recorded(&self) -> Option<Checkpoint> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records `seq, hash` unless the file already records a later entry.
    pub(crate) fn advance(&self, seq: u64, hash: &str) -> Result<(), GovernanceError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref().is_some_and(|c| c.seq >= seq) {
            return Ok(());
        }
        let checkpoint = Checkpoint {
            seq,
            hash: hash.to_string(),
            at: now(),
        };
        checkpoint.write(&self.path)?;
        *last = Some(checkpoint);
        Ok(())
    }

    /// Moves the head file aside (a deliberate new start).
    pub(crate) fn retire(&self) -> Result<PathBuf, GovernanceError> {
        let mut aside = self.path.as_os_str().to_owned();
        aside.push(format!(".replaced-{}", now().replace(':', "")));
        let aside = PathBuf::from(aside);
        std::fs::rename(&self.path, &aside)
            .map_err(|e| GovernanceError::Storage(format!("{}: {e}", self.path.display())))?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(aside)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_dbs;
    use crate::{AuditReport, Grant, JobCharge, Store};

    fn some_history(store: &Store, jobs: usize) {
        let dataset: sandbox_model::DatasetId = "gov.a".parse().expect("id");
        store
            .upsert_grant(&Grant::new("g", "h", vec![(dataset.clone(), 100.0)]))
            .expect("grant");
        for j in 0..jobs {
            store
                .reserve(&JobCharge::new(
                    &format!("j{j}"),
                    "g",
                    "sql",
                    "d",
                    vec![(dataset.clone(), 0.1, 0.0)],
                ))
                .expect("charge");
        }
    }

    fn broken(report: AuditReport) -> String {
        match report {
            AuditReport::Broken(b) => b.reason,
            intact => panic!("not broken: {intact:?}"),
        }
    }

    #[test]
    fn an_emptied_truncated_or_replaced_store_is_caught() {
        for db in test_dbs() {
            let dir = tempfile::tempdir().expect("tmp");
            let head = dir.path().join("ledger.head");
            let store = db.open().anchored(&head, Continuity::Require).expect("anchored");
            some_history(&store, 3);
            let recorded = Checkpoint::read(&head).expect("read").expect("a head file");
            assert_eq!(recorded.seq, 4, "{}: the file follows every write", db.name());
            assert!(store.verify_audit().expect("verify").is_intact());
            drop(store);
            assert!(
                db.open().anchored(&head, Continuity::Require).is_ok(),
                "the same store reopens"
            );

            // Truncated: the last entry and the head moved back.
            let store = db.open();
            store.raw("DELETE FROM ledger WHERE seq = 4").expect("truncate");
            store
                .raw("UPDATE ledger_head SET seq = 3, hash = (SELECT hash FROM ledger WHERE seq = 3)")
                .expect("head");
            assert!(
                store.verify_audit().expect("verify").is_intact(),
                "the chain alone looks fine"
            );
            let e = db.open().anchored(&head, Continuity::Require).expect_err("refused");
            assert!(matches!(e, GovernanceError::Discontinuous(_)), "{e}");
            assert!(
                e.to_string().contains("emptied, truncated or replaced") && e.to_string().contains("--init"),
                "{e}"
            );
            let reported = db.open().anchored(&head, Continuity::Report).expect("audit opens it");
            assert!(broken(reported.verify_audit().expect("verify")).contains("entry 4"));

            // Emptied.
            store.raw("DELETE FROM ledger").expect("empty");
            store.raw("DELETE FROM ledger_head").expect("empty");
            let reported = db.open().anchored(&head, Continuity::Report).expect("audit opens it");
            assert!(
                broken(reported.verify_audit().expect("verify")).contains("has 0 entries"),
                "{}",
                db.name()
            );

            // Replaced by another store with a chain of its own, as long.
            some_history(&store, 6);
            assert!(
                store.verify_audit().expect("verify").is_intact(),
                "its chain alone looks fine"
            );
            let e = db.open().anchored(&head, Continuity::Require).expect_err("replaced");
            assert!(e.to_string().contains("was replaced"), "{e}");

            // A deliberate new start sets the old file aside.
            let store = db.open().anchored(&head, Continuity::Initialise).expect("init");
            assert!(store.verify_audit().expect("verify").is_intact());
            let aside = std::fs::read_dir(dir.path())
                .expect("dir")
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("ledger.head.replaced-"))
                .count();
            assert_eq!(aside, 1);
            let new_head = Checkpoint::read(&head).expect("read").expect("new head");
            assert_eq!(
                Some((new_head.seq, new_head.hash)),
                store.checkpoint().expect("head").map(|c| (c.seq, c.hash))
            );
        }
    }

    #[test]
    fn an_exported_checkpoint_checks_a_store_that_lost_its_head_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(&dir.path().join("a.db")).expect("store");
        some_history(&store, 2);
        let checkpoint = store.checkpoint().expect("checkpoint").expect("some");
        assert!(store.verify_audit_against(&checkpoint).expect("verify").is_intact());
        let other = Store::open(&dir.path().join("b.db")).expect("store");
        some_history(&other, 2);
        assert!(broken(other.verify_audit_against(&checkpoint).expect("verify")).contains("replaced"));
        let empty = Store::open(&dir.path().join("c.db")).expect("store");
        assert!(broken(empty.verify_audit_against(&checkpoint).expect("verify")).contains("has 0 entries"));
    }

    /// What the head file costs a write (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn cost_of_the_head_file_per_write() {
        let dir = tempfile::tempdir().expect("tmp");
        let plain = Store::open(&dir.path().join("plain.db")).expect("store");
        let anchored = Store::open(&dir.path().join("anchored.db"))
            .expect("store")
            .anchored(&dir.path().join("ledger.head"), Continuity::Require)
            .expect("anchored");
        for (name, store) in [("anchored", &anchored), ("plain", &plain)] {
            let started = std::time::Instant::now();
            some_history(store, 500);
            eprintln!("{name}: {:?} per charged job", started.elapsed() / 500);
        }
    }

    #[test]
    fn a_head_file_is_read_within_bounds() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(Checkpoint::read(&dir.path().join("none")).expect("absent"), None);
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b' '; 10_000]).expect("write");
        assert!(
            Checkpoint::read(&big)
                .expect_err("big")
                .to_string()
                .contains("larger than a checkpoint")
        );
        assert!(
            Checkpoint::read(dir.path())
                .expect_err("a directory")
                .to_string()
                .contains("not a regular file")
        );
        assert!(Checkpoint::read(Path::new("/dev/zero")).is_err());
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "{}").expect("write");
        assert!(
            Checkpoint::read(&junk)
                .expect_err("junk")
                .to_string()
                .contains("not a ledger checkpoint")
        );
    }

    #[test]
    fn the_integrity_check_finds_a_damaged_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("s.db");
        let store = Store::open(&path).expect("store");
        some_history(&store, 200);
        assert_eq!(store.integrity().expect("check"), crate::Integrity::Ok);
        drop(store);
        // 4 KiB of garbage in the middle of the file.
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2 / 4096 * 4096;
        assert!(middle > 0, "{} bytes", bytes.len());
        bytes[middle..middle + 4096].fill(0xA5);
        std::fs::write(&path, bytes).expect("damage");
        let damaged = Store::open(&path).map(|s| s.integrity());
        assert!(
            !matches!(damaged, Ok(Ok(crate::Integrity::Ok))),
            "a damaged file is not reported intact: {damaged:?}"
        );
    }
}
