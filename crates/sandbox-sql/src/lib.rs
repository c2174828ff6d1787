//! sandbox-sql
