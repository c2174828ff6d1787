//! Complaints (投诉): anyone with an account may complain that a dataset's
//! opening harms their rights; the operator and the dataset's owner see
//! the complaint and decide whether to suspend the dataset.

use crate::GovernanceError;
use crate::audit;
use crate::db::now;
use crate::store::Store;
use serde::Serialize;
use serde_json::json;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS complaints (
    id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    filed_by TEXT NOT NULL,
    text TEXT NOT NULL,
    filed_at TEXT NOT NULL
);
";

/// A complaint as filed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Complaint {
    pub id: String,
    pub dataset: String,
    pub filed_by: String,
    pub text: String,
    pub filed_at: String,
}

/// The longest complaint text kept.
pub const MAX_COMPLAINT_BYTES: usize = 8 * 1024;

impl Store {
    /// Files a complaint about `dataset` (recorded in the ledger).
    pub fn file_complaint(&self, id: &str, dataset: &str, by: &str, text: &str) -> Result<(), GovernanceError> {
        crate::fields::text("text", text, MAX_COMPLAINT_BYTES, true)?;
        if text.trim().is_empty() {
            return Err(GovernanceError::Invalid("a complaint must say what is wrong".into()));
        }
        if text.len() > MAX_COMPLAINT_BYTES {
            return Err(GovernanceError::Invalid(format!(
                "a complaint has at most {MAX_COMPLAINT_BYTES} bytes"
            )));
        }
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO complaints (id, dataset, filed_by, text, filed_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO NOTHING",
                &[id.into(), dataset.into(), by.into(), text.into(), now().into()],
            )?;
            if inserted == 0 {
                return Err(GovernanceError::Invalid(format!("complaint `{id}` exists already")));
            }
            audit::append(
                tx,
                by,
                "complaint_filed",
                json!({"complaint": id, "dataset": dataset, "text": text}),
            )?;
            Ok(())
        })
    }

    /// Every complaint, oldest first (callers filter by who may see them).
    pub fn complaints(&self) -> Result<Vec<Complaint>, GovernanceError> {
        let rows = self.read(|tx| {
            tx.query(
                "SELECT id, dataset, filed_by, text, filed_at FROM complaints ORDER BY filed_at, id",
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(Complaint {
                    id: r.text(0)?,
                    dataset: r.text(1)?,
                    filed_by: r.text(2)?,
                    text: r.text(3)?,
                    filed_at: r.text(4)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::test_dbs;

    #[test]
    fn complaints_are_kept_and_recorded() {
        for db in test_dbs() {
            let store = db.open();
            store
                .file_complaint("c1", "gov.tax_payments", "citizen", "my firm is identifiable")
                .expect("file");
            assert!(
                store
                    .file_complaint("c1", "gov.tax_payments", "citizen", "again")
                    .is_err()
            );
            assert!(store.file_complaint("c2", "gov.tax_payments", "citizen", "  ").is_err());
            let all = store.complaints().expect("list");
            assert_eq!(all.len(), 1);
            assert_eq!(all[0].filed_by, "citizen");
            let entries = store.audit_entries().expect("entries");
            assert_eq!(entries.last().map(|e| e.kind.as_str()), Some("complaint_filed"));
        }
    }
}
