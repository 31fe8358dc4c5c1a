//! `DatabaseConfig`: which database, and what the plugin allows against it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of a [`DatabasePlugin`](super::DatabasePlugin); every field is also a key of the
/// plugin's JSON config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseConfig {
    /// `postgres://user@host:port/db` (or `postgresql://`), `sqlite:path`, `sqlite::memory:`,
    /// `:memory:`, or a plain file path (an SQLite file, created when missing unless read-only).
    pub url: String,
    /// Refuse writes: statements that modify data are rejected before they reach the server,
    /// and the connection itself is read-only (`PRAGMA query_only` for SQLite,
    /// `default_transaction_read_only` for PostgreSQL), so a write hidden in a query fails too.
    pub read_only: bool,
    /// A query returning more rows than this fails (rather than being cut silently); add a
    /// `LIMIT` or raise it.
    pub max_rows: usize,
    /// Pool size. An in-memory SQLite database always uses one connection (each connection would
    /// otherwise see its own, empty database).
    pub max_connections: u32,
    /// How long to wait for a free pooled connection (and for the first one at load time).
    pub acquire_timeout_ms: u64,
    /// SQL run once each time the plugin loads, before any request and before read-only mode
    /// takes effect: schema and seed data (several `;`-separated statements allowed). It runs
    /// on every load, so for a file or a server make it idempotent (`CREATE TABLE IF NOT
    /// EXISTS`, `INSERT OR IGNORE`); an in-memory database starts empty each time anyway.
    #[serde(default)]
    pub init_sql: Option<String>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self::new("sqlite::memory:")
    }
}

impl DatabaseConfig {
    /// Settings for `url` with the defaults: writable, 10 000 rows at most, 5 connections,
    /// a 10 s acquire timeout, no init SQL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            read_only: false,
            max_rows: 10_000,
            max_connections: 5,
            acquire_timeout_ms: 10_000,
            init_sql: None,
        }
    }

    /// [`acquire_timeout_ms`](Self::acquire_timeout_ms) as a `Duration`.
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    /// Whether `url` names a PostgreSQL server (`postgres://` or `postgresql://`).
    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")
    }

    /// Whether `url` names an in-memory SQLite database (one connection only).
    pub fn is_sqlite_memory(&self) -> bool {
        matches!(
            self.url.as_str(),
            ":memory:" | "sqlite::memory:" | "sqlite://:memory:"
        ) || self.url.contains("mode=memory")
    }

    /// The URL with any password replaced, for error messages and logs.
    pub fn redacted_url(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut parsed) if parsed.password().is_some() => {
                let _ = parsed.set_password(Some("***"));
                parsed.to_string()
            }
            _ => self.url.clone(),
        }
    }
}
