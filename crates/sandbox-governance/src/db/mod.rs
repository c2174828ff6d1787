//! The storage interface the governance logic is written against, so that
//! one implementation of every rule runs on both backends: SQLite (embedded,
//! the default) and PostgreSQL.
//!
//! SQL is written once in the common dialect: `?1`, `?2`, … placeholders
//! (rewritten to `$1`, `$2`, … for PostgreSQL), `INSERT … ON CONFLICT`,
//! `BIGINT` and `DOUBLE PRECISION` columns, and timestamps passed in from
//! Rust (never `now()` in SQL). Every write runs in one transaction that
//! excludes every other writer (SQLite `BEGIN IMMEDIATE`; PostgreSQL a
//! transaction-scoped advisory lock), so checks and charges never race and
//! ledger entries have one total order.

mod postgres;
mod sqlite;

pub use postgres::PostgresBackend;
pub use sqlite::SqliteBackend;

use crate::GovernanceError;

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Value::Null, Value::from)
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, GovernanceError> {
        self.0
            .get(i)
            .ok_or_else(|| GovernanceError::Storage(format!("a row has no column {i}")))
    }

    pub fn text(&self, i: usize) -> Result<String, GovernanceError> {
        match self.at(i)? {
            Value::Text(s) => Ok(s.clone()),
            other => Err(GovernanceError::Storage(format!(
                "column {i}: expected text, found {other:?}"
            ))),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, GovernanceError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, GovernanceError> {
        match self.at(i)? {
            Value::Int(v) => Ok(*v),
            other => Err(GovernanceError::Storage(format!(
                "column {i}: expected an integer, found {other:?}"
            ))),
        }
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, GovernanceError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    /// A number (SQLite returns whole REAL sums as integers sometimes).
    pub fn real(&self, i: usize) -> Result<f64, GovernanceError> {
        match self.at(i)? {
            Value::Real(v) => Ok(*v),
            Value::Int(v) => Ok(*v as f64),
            Value::Null => Ok(0.0),
            other => Err(GovernanceError::Storage(format!(
                "column {i}: expected a number, found {other:?}"
            ))),
        }
    }
}

/// Statements inside one transaction.
pub trait Tx {
    /// Runs a statement; returns the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, GovernanceError>;
    /// Runs a query; returns every row.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, GovernanceError>;
    /// The first row of a query, if any.
    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, GovernanceError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

/// The body of a transaction.
pub type TxBody<'a> = dyn FnMut(&mut dyn Tx) -> Result<(), GovernanceError> + Send + 'a;

/// A database the store can live in.
pub trait Backend: Send + Sync {
    /// `sqlite` or `postgresql`, for messages.
    fn name(&self) -> &'static str;
    /// Creates the tables if missing (`schema` in the common dialect).
    fn migrate(&self, schema: &str) -> Result<(), GovernanceError>;
    /// Runs `body` in a transaction that excludes every other writer;
    /// commits if it returns `Ok`, rolls back otherwise.
    fn write(&self, body: &mut TxBody<'_>) -> Result<(), GovernanceError>;
    /// Runs `body` in a read-only snapshot.
    fn read(&self, body: &mut TxBody<'_>) -> Result<(), GovernanceError>;
    /// Runs one statement outside the store's rules (tests tamper with the
    /// ledger through it).
    #[cfg(test)]
    fn raw(&self, sql: &str) -> Result<(), GovernanceError>;
}

/// The current time, RFC 3339 UTC with milliseconds: the store's clock.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
