//! The quality report of one version: what was read, what was left out
//! and why, and what the stored rows look like. It never quotes a value
//! (values may be identifiers), only counts, lines and reasons.

use crate::spec::{Thresholds, ValueCheck};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// Row issues listed individually; the counts cover all of them.
pub const MAX_LISTED_ISSUES: usize = 50;

/// One problem with one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowIssue {
    /// CSV: the line in the file; Parquet: the row number; xlsx: the sheet's row number.
    pub line: u64,
    /// The column, when the problem is one value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub reason: String,
    /// Whether the row was left out of the stored data.
    pub rejected: bool,
}

/// Counts for one column over the stored rows (coercion failures over the
/// rows read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnQuality {
    pub name: String,
    pub nulls: u64,
    /// Values not of the declared type (their rows were left out).
    pub coercion_failures: u64,
    /// Of those, dates that could not be read.
    pub malformed_dates: u64,
    /// Measure values outside the policy's bounds (kept; clamped by jobs).
    pub out_of_bounds: u64,
    /// Credit codes with a wrong length, character or check character.
    pub invalid_codes: u64,
    /// District names not among Shanghai's 16.
    pub unknown_districts: u64,
    /// Values of a dimension outside the policy's public key set (kept;
    /// no job releases a group for them).
    #[serde(default)]
    pub outside_public_keys: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<ValueCheck>,
    /// Stored as keyed-hash pseudonyms.
    pub pseudonymized: bool,
}

/// The quality report of one version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    pub rows_read: u64,
    pub rows_stored: u64,
    pub rows_rejected: u64,
    /// The declared key (empty: none declared).
    pub key: Vec<String>,
    /// Stored rows whose key repeats an earlier row's.
    pub duplicate_keys: u64,
    pub columns: Vec<ColumnQuality>,
    /// The first [`MAX_LISTED_ISSUES`] issues, in file order.
    pub issues: Vec<RowIssue>,
    /// All issues, listed or not.
    pub issues_total: u64,
}

impl QualityReport {
    pub(crate) fn issue(&mut self, line: u64, column: Option<&str>, reason: &str, rejected: bool) {
        self.issues_total += 1;
        if self.issues.len() < MAX_LISTED_ISSUES {
            self.issues.push(RowIssue {
                line,
                column: column.map(str::to_string),
                reason: reason.to_string(),
                rejected,
            });
        }
    }

    fn total(&self, f: impl Fn(&ColumnQuality) -> u64) -> u64 {
        self.columns.iter().map(f).sum()
    }

    /// The thresholds this report breaks, in words (empty: none).
    pub fn breaches(&self, t: &Thresholds) -> Vec<String> {
        let mut out = Vec::new();
        let mut over = |what: &str, n: u64, max: Option<u64>, rule: &str| {
            if let Some(max) = max
                && n > max
            {
                out.push(format!("{n} {what} (at most {max} allowed, {rule})"));
            }
        };
        over(
            "rejected rows",
            self.rows_rejected,
            t.max_rejected_rows,
            "--max-rejected-rows",
        );
        over(
            "duplicate keys",
            self.duplicate_keys,
            t.max_duplicate_keys.filter(|_| !self.key.is_empty()),
            "--max-duplicate-keys",
        );
        over(
            "invalid credit codes",
            self.total(|c| c.invalid_codes),
            t.max_invalid_codes,
            "--max-invalid-codes",
        );
        over(
            "unknown district names",
            self.total(|c| c.unknown_districts),
            t.max_unknown_districts,
            "--max-unknown-districts",
        );
        over(
            "values outside the policy's bounds",
            self.total(|c| c.out_of_bounds),
            t.max_out_of_bounds,
            "--max-out-of-bounds",
        );
        if let Some(max) = t.max_null_fraction
            && self.rows_stored > 0
        {
            for c in &self.columns {
                let share = c.nulls as f64 / self.rows_stored as f64;
                if share > max {
                    out.push(format!(
                        "column `{}` is {:.1}% null (at most {:.1}% allowed, --max-null-fraction)",
                        c.name,
                        share * 100.0,
                        max * 100.0
                    ));
                }
            }
        }
        out
    }

    /// The report as the owner reads it.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "rows: {} read, {} stored, {} rejected",
            self.rows_read, self.rows_stored, self.rows_rejected
        );
        if !self.key.is_empty() {
            let _ = writeln!(
                s,
                "key ({}): {} duplicate{}",
                self.key.join(", "),
                self.duplicate_keys,
                if self.duplicate_keys == 1 { "" } else { "s" }
            );
        }
        let _ = writeln!(
            s,
            "  {:<22} {:>7} {:>8} {:>9} {:>9} {:>8} {:>9}  notes",
            "column", "nulls", "null %", "bad type", "bad date", "bounds", "bad code"
        );
        for c in &self.columns {
            let share = if self.rows_stored > 0 {
                100.0 * c.nulls as f64 / self.rows_stored as f64
            } else {
                0.0
            };
            let bad_code = match c.check {
                Some(ValueCheck::CreditCode) => c.invalid_codes.to_string(),
                Some(ValueCheck::District) => c.unknown_districts.to_string(),
                None => "-".into(),
            };
            let mut notes = Vec::new();
            match c.check {
                Some(ValueCheck::CreditCode) => notes.push("credit-code check"),
                Some(ValueCheck::District) => notes.push("district check"),
                None => {}
            }
            let outside = format!("{} outside public keys", c.outside_public_keys);
            if c.outside_public_keys > 0 {
                notes.push(&outside);
            }
            if c.pseudonymized {
                notes.push("pseudonymized");
            }
            let line = format!(
                "  {:<22} {:>7} {:>7.1}% {:>9} {:>9} {:>8} {:>9}  {}",
                c.name,
                c.nulls,
                share,
                c.coercion_failures,
                c.malformed_dates,
                c.out_of_bounds,
                bad_code,
                notes.join(", ")
            );
            let _ = writeln!(s, "{}", line.trim_end());
        }
        if self.issues_total > 0 {
            let _ = writeln!(
                s,
                "issues ({} in all{}):",
                self.issues_total,
                if self.issues_total as usize > self.issues.len() {
                    format!(", first {} listed", self.issues.len())
                } else {
                    String::new()
                }
            );
            for i in &self.issues {
                let _ = writeln!(
                    s,
                    "  line {}{}: {}{}",
                    i.line,
                    i.column.as_ref().map(|c| format!(", column `{c}`")).unwrap_or_default(),
                    i.reason,
                    if i.rejected { " (row left out)" } else { "" }
                );
            }
        }
        s
    }
}
