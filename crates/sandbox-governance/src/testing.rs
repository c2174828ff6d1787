//! Test databases: every store test runs on SQLite and, when
//! `SANDBOX_TEST_POSTGRES_URL` is set (scripts/test.sh starts a server and
//! sets it), on PostgreSQL too, each in a fresh database or schema. With
//! `SANDBOX_REQUIRE_POSTGRES=1` a missing URL fails the tests instead of
//! skipping PostgreSQL.

use crate::Store;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) enum TestDb {
    Sqlite { path: PathBuf, _dir: tempfile::TempDir },
    Postgres { url: String, schema: String },
}

impl TestDb {
    /// Opens (or reopens) a store on this database.
    pub(crate) fn open(&self) -> Store {
        match self {
            TestDb::Sqlite { path, .. } => Store::open(path).expect("open SQLite"),
            TestDb::Postgres { url, schema } => Store::open_postgres(url, Some(schema)).expect("open PostgreSQL"),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            TestDb::Sqlite { .. } => "sqlite",
            TestDb::Postgres { .. } => "postgresql",
        }
    }
}

/// Fresh databases, one per backend available.
pub(crate) fn test_dbs() -> Vec<TestDb> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut dbs = vec![TestDb::Sqlite {
        path: dir.path().join("s.db"),
        _dir: dir,
    }];
    match std::env::var("SANDBOX_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let schema = format!(
                "t_{}_{}_{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed),
                nanos
            );
            dbs.push(TestDb::Postgres { url, schema });
        }
        _ => assert!(
            std::env::var("SANDBOX_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "SANDBOX_REQUIRE_POSTGRES=1 but SANDBOX_TEST_POSTGRES_URL is not set"
        ),
    }
    dbs
}
