//! Errors of this crate: every problem found in a catalog entry or policy
//! file, located by file, line, column and field path.

use std::fmt;
use thiserror::Error;

/// One problem in one file.
///
/// Displayed as `policies/x.toml:12:5: columns.amount.bounds: message`;
/// the line and column are left out when the problem has no place in the
/// text (line 0), the field path when it concerns the whole file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct PolicyError {
    pub file: String,
    /// 1-based; 0 when the problem has no place in the text.
    pub line: usize,
    /// 1-based, counted in characters; 0 when `line` is 0.
    pub column: usize,
    /// Dotted path of the offending value, e.g. `columns.amount.bounds` or
    /// `fusion[0].on`; empty when the problem concerns the whole file.
    pub field: String,
    pub message: String,
}

impl PolicyError {
    /// An error with no place in the text (I/O, a missing file, ...).
    pub fn unplaced(file: impl Into<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyError {
            file: file.into(),
            line: 0,
            column: 0,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All problems found, in file order and then line order. Never empty when
/// returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    pub fn iter(&self) -> impl Iterator<Item = &PolicyError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<PolicyError> {
        self.0
    }

    /// Orders by line within each file, keeping the files' own order, so
    /// a reader can walk the file top to bottom.
    pub(crate) fn sort_within_file(&mut self) {
        self.0.sort_by_key(|e| (e.line, e.column));
    }
}

impl From<PolicyError> for PolicyErrors {
    fn from(e: PolicyError) -> Self {
        PolicyErrors(vec![e])
    }
}

impl IntoIterator for PolicyErrors {
    type Item = PolicyError;
    type IntoIter = std::vec::IntoIter<PolicyError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a PolicyErrors {
    type Item = &'a PolicyError;
    type IntoIter = std::slice::Iter<'a, PolicyError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
