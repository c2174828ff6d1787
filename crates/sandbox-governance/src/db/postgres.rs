//! PostgreSQL: one connection per store behind a mutex; every write takes a
//! transaction-scoped advisory lock first, so writers are serialized exactly
//! as SQLite's `BEGIN IMMEDIATE` serializes them (budget checks and ledger
//! appends never interleave, across processes too).
//!
//! The `postgres` client drives its own Tokio runtime and must not be
//! called from inside another one, so each transaction runs on a short-lived
//! scoped thread (tens of microseconds; the store is called from async code).

use super::{Backend, Row, Tx, TxBody, Value};
use crate::GovernanceError;
use postgres::types::{ToSql, Type};
use postgres::{Client, IsolationLevel, NoTls};
use std::sync::Mutex;

/// The advisory lock every writer holds (an arbitrary constant: "sandbox").
const WRITE_LOCK: i64 = 0x0053_414e_4442_4f58;

pub struct PostgresBackend {
    client: Mutex<Client>,
}

fn pg(e: postgres::Error) -> GovernanceError {
    GovernanceError::Storage(format!("PostgreSQL: {e}"))
}

/// Runs `f` on a fresh thread, outside any async runtime of the caller.
fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T, GovernanceError> + Send) -> Result<T, GovernanceError> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .map_err(|_| GovernanceError::Storage("a database worker thread panicked".into()))?
    })
}

/// `?1` → `$1`: the common dialect's placeholders in PostgreSQL's form.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn params(values: &[Value]) -> Vec<Box<dyn ToSql + Sync>> {
    values
        .iter()
        .map(|v| -> Box<dyn ToSql + Sync> {
            match v {
                Value::Null => Box::new(None::<String>),
                Value::Int(i) => Box::new(*i),
                Value::Real(f) => Box::new(*f),
                Value::Text(s) => Box::new(s.clone()),
            }
        })
        .collect()
}

fn row(r: &postgres::Row) -> Result<Row, GovernanceError> {
    let mut values = Vec::with_capacity(r.len());
    for (i, column) in r.columns().iter().enumerate() {
        let t = column.type_();
        let v = if *t == Type::INT8 {
            r.try_get::<_, Option<i64>>(i).map_err(pg)?.map(Value::Int)
        } else if *t == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)
                .map_err(pg)?
                .map(|v| Value::Int(v.into()))
        } else if *t == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)
                .map_err(pg)?
                .map(|v| Value::Int(v.into()))
        } else if *t == Type::FLOAT8 {
            r.try_get::<_, Option<f64>>(i).map_err(pg)?.map(Value::Real)
        } else if *t == Type::FLOAT4 {
            r.try_get::<_, Option<f32>>(i)
                .map_err(pg)?
                .map(|v| Value::Real(v.into()))
        } else if *t == Type::TEXT || *t == Type::VARCHAR || *t == Type::NAME || *t == Type::BPCHAR {
            r.try_get::<_, Option<String>>(i).map_err(pg)?.map(Value::Text)
        } else if *t == Type::VOID {
            None
        } else {
            return Err(GovernanceError::Storage(format!(
                "PostgreSQL: column {} has type {t}, which the store does not read",
                column.name()
            )));
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

struct PgTx<'a, 'c> {
    tx: &'a mut postgres::Transaction<'c>,
}

impl Tx for PgTx<'_, '_> {
    fn execute(&mut self, sql: &str, values: &[Value]) -> Result<u64, GovernanceError> {
        let owned = params(values);
        let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|p| p.as_ref()).collect();
        self.tx.execute(placeholders(sql).as_str(), &refs).map_err(pg)
    }

    fn query(&mut self, sql: &str, values: &[Value]) -> Result<Vec<Row>, GovernanceError> {
        let owned = params(values);
        let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|p| p.as_ref()).collect();
        self.tx
            .query(placeholders(sql).as_str(), &refs)
            .map_err(pg)?
            .iter()
            .map(row)
            .collect()
    }
}

impl PostgresBackend {
    /// Connects to `url` (`postgresql://user@host:port/db`); with `schema`,
    /// the store's tables live in that schema (created if missing: one
    /// server can hold several sandboxes, and tests use one each).
    pub fn connect(url: &str, schema: Option<&str>) -> Result<Self, GovernanceError> {
        if let Some(s) = schema
            && (s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        {
            return Err(GovernanceError::Invalid(format!(
                "schema `{s}`: use lowercase letters, digits and `_`"
            )));
        }
        let url = url.to_string();
        let schema = schema.map(str::to_string);
        let client = off_runtime(move || {
            let mut client = Client::connect(&url, NoTls).map_err(pg)?;
            if let Some(s) = &schema {
                // Under the writers' lock: concurrent `CREATE SCHEMA IF NOT
                // EXISTS` can otherwise collide on the catalog's unique index.
                let mut tx = client.transaction().map_err(pg)?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
                    .map_err(pg)?;
                tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
                    .map_err(pg)?;
                tx.commit().map_err(pg)?;
                client.batch_execute(&format!("SET search_path TO {s}")).map_err(pg)?;
            }
            Ok(client)
        })?;
        Ok(PostgresBackend {
            client: Mutex::new(client),
        })
    }

    fn run(&self, write: bool, body: &mut TxBody<'_>) -> Result<(), GovernanceError> {
        off_runtime(|| {
            let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
            let mut tx = if write {
                let mut tx = client.transaction().map_err(pg)?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
                    .map_err(pg)?;
                tx
            } else {
                client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .map_err(pg)?
            };
            body(&mut PgTx { tx: &mut tx })?;
            tx.commit().map_err(pg)
        })
    }
}

impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgresql"
    }

    fn migrate(&self, schema: &str) -> Result<(), GovernanceError> {
        let schema = schema.to_string();
        off_runtime(move || {
            let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
            let mut tx = client.transaction().map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
                .map_err(pg)?;
            tx.batch_execute(&schema).map_err(pg)?;
            tx.commit().map_err(pg)
        })
    }

    fn write(&self, body: &mut TxBody<'_>) -> Result<(), GovernanceError> {
        self.run(true, body)
    }

    fn read(&self, body: &mut TxBody<'_>) -> Result<(), GovernanceError> {
        self.run(false, body)
    }

    #[cfg(test)]
    fn raw(&self, sql: &str) -> Result<(), GovernanceError> {
        let sql = sql.to_string();
        off_runtime(move || {
            let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
            client.batch_execute(&sql).map_err(pg)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_rewritten() {
        assert_eq!(
            placeholders("a = ?1 AND b = ?12 OR c = '?'"),
            "a = $1 AND b = $12 OR c = '?'"
        );
    }
}
