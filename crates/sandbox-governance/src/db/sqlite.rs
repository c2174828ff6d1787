//! SQLite: one connection per process behind a mutex, WAL and
//! `synchronous = FULL` (a committed charge survives power loss), writers
//! ordered by `BEGIN IMMEDIATE` across processes.

use super::{Backend, Row, Tx, TxBody, Value};
use crate::GovernanceError;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql, TransactionBehavior};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

pub struct SqliteBackend {
    conn: Mutex<Connection>,
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// Retries an operation that SQLite may refuse with SQLITE_BUSY without
/// calling the busy handler (lock upgrades it resolves by failing fast).
fn retry_busy<T>(mut op: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let mut attempt = 0;
    loop {
        match op() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && attempt < 200 =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

impl SqliteBackend {
    pub fn open(path: &Path) -> Result<Self, GovernanceError> {
        let conn = Connection::open(path)?;
        // Wait for other processes before the first statement: switching
        // to WAL needs a lock too.
        conn.busy_timeout(Duration::from_secs(30))?;
        retry_busy(|| conn.pragma_update(None, "journal_mode", "WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Self, GovernanceError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, GovernanceError> {
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(SqliteBackend { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A poisoned lock only means another thread panicked mid-call; the
        // transaction it held was rolled back by SQLite, so carry on.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self, behavior: TransactionBehavior, body: &mut TxBody<'_>) -> Result<(), GovernanceError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(behavior)?;
        let mut handle = SqliteTx { tx: &tx };
        body(&mut handle)?;
        tx.commit()?;
        Ok(())
    }
}

struct SqliteTx<'a, 'c> {
    tx: &'a rusqlite::Transaction<'c>,
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

impl Tx for SqliteTx<'_, '_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, GovernanceError> {
        let mut stmt = self.tx.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params.iter()))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, GovernanceError> {
        let mut stmt = self.tx.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
            (0..columns)
                .map(|i| r.get_ref(i).map(value))
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(rows.map(|r| r.map(Row)).collect::<Result<_, _>>()?)
    }
}

impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn migrate(&self, schema: &str) -> Result<(), GovernanceError> {
        let conn = self.conn();
        // Schema creation in an IMMEDIATE transaction: a deferred one can fail
        // at once with SQLITE_BUSY when another process creates it first.
        retry_busy(|| conn.execute_batch(&format!("BEGIN IMMEDIATE; {schema} COMMIT;")))?;
        Ok(())
    }

    fn write(&self, body: &mut TxBody<'_>) -> Result<(), GovernanceError> {
        self.run(TransactionBehavior::Immediate, body)
    }

    fn read(&self, body: &mut TxBody<'_>) -> Result<(), GovernanceError> {
        self.run(TransactionBehavior::Deferred, body)
    }

    #[cfg(test)]
    fn raw(&self, sql: &str) -> Result<(), GovernanceError> {
        self.conn().execute_batch(sql)?;
        Ok(())
    }
}
