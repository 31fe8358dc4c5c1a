//! `DatabasePlugin`: a sqlx pool behind the [`AgentPlugin`] interface.
//!
//! The pool is opened in `load` (so a wrong URL or a server that is down fails registration
//! with a message naming it) and closed in `unload`. For PostgreSQL one direct connection is
//! tried first: the pool retries a refused connection until `acquire_timeout_ms` is over and
//! then reports only a timeout, where the direct attempt says at once that nothing answered.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use serde_json::{json, Value};
#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
#[cfg(feature = "postgres")]
use sqlx::Connection;
use sqlx::{AssertSqlSafe, Executor};

use super::convert::bind_params;
use super::error_text::describe;
#[cfg(feature = "postgres")]
use super::postgres_row::postgres_row;
#[cfg(feature = "sqlite")]
use super::sqlite_row::sqlite_row;
use super::{DatabaseConfig, DbRequest};
use crate::builtin::{merge_config, ConfigOrigin};
use crate::{AgentPlugin, PluginContext, PluginError, PluginMetadata, PluginResult, PluginType};

/// Collects a row stream into a JSON array of objects, failing past `max` rows.
macro_rules! collect_rows {
    ($plugin:expr, $rows:ident, $max:expr, $convert:ident) => {{
        let mut out = Vec::new();
        loop {
            match $rows.try_next().await {
                Ok(Some(row)) => {
                    if out.len() == $max {
                        break Err(PluginError::execution(format!(
                            "the query returned more than max_rows ({}) rows; add a LIMIT clause \
                             or raise max_rows",
                            $max
                        )));
                    }
                    out.push(Value::Object($convert(&row)?));
                }
                Ok(None) => break Ok(Value::Array(out)),
                Err(e) => break Err($plugin.sql_error(e)),
            }
        }
    }};
}

#[derive(Debug, Clone)]
enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
}

/// SQL over a pooled connection (id `database` unless changed).
#[derive(Debug)]
pub struct DatabasePlugin {
    metadata: PluginMetadata,
    config: DatabaseConfig,
    pool: Option<Pool>,
}

impl Default for DatabasePlugin {
    fn default() -> Self {
        Self::new("sqlite::memory:")
    }
}

impl DatabasePlugin {
    /// A plugin for `url` (see [`DatabaseConfig::url`] for the accepted forms).
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_config(DatabaseConfig::new(url))
    }

    /// A plugin with these settings, registered as `database`.
    pub fn with_config(config: DatabaseConfig) -> Self {
        let metadata = PluginMetadata::new("database", "Database (sqlx)", PluginType::Storage)
            .with_description("SQL queries with bound parameters; rows as JSON objects")
            .with_capability("sql");
        Self {
            metadata,
            config,
            pool: None,
        }
    }

    /// Registers the plugin under `id` instead of `database`.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.metadata.id = id.into();
        self
    }

    /// Refuses writes (see [`DatabaseConfig::read_only`]).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.config.read_only = read_only;
        self
    }

    /// Fails queries returning more than `max_rows` rows (see [`DatabaseConfig::max_rows`]).
    pub fn max_rows(mut self, max_rows: usize) -> Self {
        self.config.max_rows = max_rows;
        self
    }

    /// Sets the pool size (see [`DatabaseConfig::max_connections`]).
    pub fn max_connections(mut self, max_connections: u32) -> Self {
        self.config.max_connections = max_connections;
        self
    }

    /// SQL run at load time before any request (see [`DatabaseConfig::init_sql`]).
    pub fn init_sql(mut self, sql: impl Into<String>) -> Self {
        self.config.init_sql = Some(sql.into());
        self
    }

    /// How long to wait for a free pooled connection (see [`DatabaseConfig::acquire_timeout_ms`]).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.config.acquire_timeout_ms = timeout.as_millis().try_into().unwrap_or(u64::MAX);
        self
    }

    /// The configuration in effect (after `load`, including the host's config).
    pub fn config(&self) -> &DatabaseConfig {
        &self.config
    }

    /// Runs one request: rows as a JSON array of objects, or `{"rows_affected": n}` for a
    /// write without `RETURNING`.
    pub async fn query(&self, request: &DbRequest) -> PluginResult<Value> {
        let pool = self.pool.as_ref().ok_or_else(|| {
            PluginError::execution(format!(
                "database plugin `{}` has no connection pool; load it before executing",
                self.metadata.id
            ))
        })?;
        if self.config.read_only && request.is_write() {
            return Err(PluginError::InvalidInput(format!(
                "database plugin `{}` is read-only and refuses `{}` statements; use a plugin \
                 configured with read_only = false for writes",
                self.metadata.id,
                request.first_keyword()
            )));
        }
        let max_rows = self.config.max_rows;
        let sql = request.sql.clone();
        match pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => {
                let query = bind_params!(sqlx::query(AssertSqlSafe(sql)), &request.params);
                if request.returns_rows() {
                    let mut rows = query.fetch(pool);
                    collect_rows!(self, rows, max_rows, sqlite_row)
                } else {
                    query
                        .execute(pool)
                        .await
                        .map(|done| json!({ "rows_affected": done.rows_affected() }))
                        .map_err(|e| self.sql_error(e))
                }
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => {
                let query = bind_params!(sqlx::query(AssertSqlSafe(sql)), &request.params);
                if request.returns_rows() {
                    let mut rows = query.fetch(pool);
                    collect_rows!(self, rows, max_rows, postgres_row)
                } else {
                    query
                        .execute(pool)
                        .await
                        .map(|done| json!({ "rows_affected": done.rows_affected() }))
                        .map_err(|e| self.sql_error(e))
                }
            }
        }
    }

    fn sql_error(&self, e: sqlx::Error) -> PluginError {
        let hint = match &e {
            sqlx::Error::Database(db)
                if self.config.read_only && is_read_only_violation(db.message()) =>
            {
                "; the plugin is read-only"
            }
            sqlx::Error::PoolTimedOut => {
                "; every pooled connection is busy: raise max_connections or acquire_timeout_ms"
            }
            _ => "",
        };
        PluginError::execution(format!(
            "database `{}`: {}{hint}",
            self.config.redacted_url(),
            describe(&e)
        ))
    }

    /// Opens the pool, running `init_sql` first when there is one: on the pool itself for an
    /// in-memory SQLite database (its only connection holds the data; read-only mode is switched
    /// on afterwards), otherwise on a short-lived writable pool before the real one opens.
    async fn open(&self) -> PluginResult<Pool> {
        let Some(sql) = self.config.init_sql.clone() else {
            return self.connect(self.config.read_only).await;
        };
        if !self.config.is_postgres() && self.config.is_sqlite_memory() {
            let pool = self.connect(false).await?;
            self.run_init(&pool, &sql).await?;
            #[cfg(feature = "sqlite")]
            #[allow(irrefutable_let_patterns)]
            // a build without PostgreSQL has only SQLite pools
            if self.config.read_only {
                if let Pool::Sqlite(sqlite) = &pool {
                    sqlite
                        .execute("PRAGMA query_only = ON")
                        .await
                        .map_err(|e| self.sql_error(e))?;
                }
            }
            return Ok(pool);
        }
        let setup = self.connect(false).await?;
        let ran = self.run_init(&setup, &sql).await;
        close(setup).await;
        ran?;
        self.connect(self.config.read_only).await
    }

    async fn run_init(&self, pool: &Pool, sql: &str) -> PluginResult<()> {
        let raw = sqlx::raw_sql(AssertSqlSafe(sql.to_string()));
        let done = match pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => raw.execute(pool).await.map(|_| ()),
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => raw.execute(pool).await.map(|_| ()),
        };
        done.map_err(|e| {
            PluginError::Config(format!(
                "database `{}`: init_sql failed: {}",
                self.config.redacted_url(),
                describe(&e)
            ))
        })
    }

    async fn connect(&self, read_only: bool) -> PluginResult<Pool> {
        if self.config.is_postgres() {
            self.connect_postgres(read_only).await
        } else {
            self.connect_sqlite(read_only).await
        }
    }

    /// The error of a failed connection, saying what to check.
    fn open_failed(&self, why: String) -> PluginError {
        PluginError::Config(format!(
            "cannot open database {}: {why}; check `url` and that the server is running",
            self.config.redacted_url()
        ))
    }

    /// The error for a URL whose backend this build lacks, naming the feature that has it.
    #[cfg(any(not(feature = "sqlite"), not(feature = "postgres")))]
    fn backend_missing(&self, backend: &str, feature: &str) -> PluginError {
        PluginError::Config(format!(
            "cannot open database {}: it is a {backend} database, and this build has no \
             {backend} support (built without the `{feature}` feature); rebuild with \
             `cargo build --features {feature}`",
            self.config.redacted_url()
        ))
    }

    #[cfg(not(feature = "postgres"))]
    async fn connect_postgres(&self, _read_only: bool) -> PluginResult<Pool> {
        Err(self.backend_missing("PostgreSQL", "postgres"))
    }

    #[cfg(not(feature = "sqlite"))]
    async fn connect_sqlite(&self, _read_only: bool) -> PluginResult<Pool> {
        Err(self.backend_missing("SQLite", "sqlite"))
    }

    #[cfg(feature = "postgres")]
    async fn connect_postgres(&self, read_only: bool) -> PluginResult<Pool> {
        let config = &self.config;
        let fail_with = |why: String| self.open_failed(why);
        let fail = |e: sqlx::Error| fail_with(describe(&e));
        let options = PgConnectOptions::from_str(&config.url).map_err(fail)?;
        // One attempt, answered at once: refused, unknown host, bad credentials.
        match tokio::time::timeout(
            config.acquire_timeout(),
            PgConnection::connect_with(&options),
        )
        .await
        {
            Err(_) => {
                return Err(fail_with(format!(
                    "no answer within acquire_timeout_ms ({} ms)",
                    config.acquire_timeout_ms
                )))
            }
            Ok(Err(e)) => return Err(fail(e)),
            Ok(Ok(probe)) => {
                let _ = probe.close().await;
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.acquire_timeout())
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if read_only {
                        conn.execute("SET default_transaction_read_only = on")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(fail)?;
        Ok(Pool::Postgres(pool))
    }

    #[cfg(feature = "sqlite")]
    async fn connect_sqlite(&self, read_only: bool) -> PluginResult<Pool> {
        let config = &self.config;
        let fail = |e: sqlx::Error| self.open_failed(describe(&e));
        let memory = config.is_sqlite_memory();
        let options = if config.url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(&config.url).map_err(fail)?
        } else if config.url == ":memory:" {
            SqliteConnectOptions::from_str("sqlite::memory:").map_err(fail)?
        } else {
            SqliteConnectOptions::new().filename(&config.url)
        };
        let mut options = options.create_if_missing(!read_only);
        if read_only {
            options = options.pragma("query_only", "ON");
            if !memory {
                options = options.read_only(true);
            }
        }
        let mut pool = SqlitePoolOptions::new()
            .max_connections(if memory {
                1
            } else {
                config.max_connections.max(1)
            })
            .acquire_timeout(config.acquire_timeout());
        if memory {
            // The database lives exactly as long as its one connection.
            pool = pool
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        Ok(Pool::Sqlite(
            pool.connect_with(options).await.map_err(fail)?,
        ))
    }
}

async fn close(pool: Pool) {
    match pool {
        #[cfg(feature = "sqlite")]
        Pool::Sqlite(pool) => pool.close().await,
        #[cfg(feature = "postgres")]
        Pool::Postgres(pool) => pool.close().await,
    }
}

fn is_read_only_violation(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("read-only") || message.contains("readonly") || message.contains("query_only")
}

#[async_trait]
impl AgentPlugin for DatabasePlugin {
    fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }

    async fn load(&mut self, ctx: &PluginContext) -> PluginResult<()> {
        self.config = merge_config(ConfigOrigin::Host("database"), &self.config, ctx.config())?;
        self.pool = Some(self.open().await?);
        Ok(())
    }

    async fn unload(&mut self) -> PluginResult<()> {
        if let Some(pool) = self.pool.take() {
            close(pool).await;
        }
        Ok(())
    }

    /// Another handle on the same connection pool: statements overlap up to the plugin's
    /// concurrency, which a definition sets to the pool's `max_connections` unless
    /// `max_concurrency` says otherwise, so calls queue in the host rather than time out
    /// waiting for a connection. (A sibling never closes the pool: only the plugin's own
    /// `unload` does.)
    fn concurrent_instance(&self) -> Option<Box<dyn AgentPlugin>> {
        Some(Box::new(DatabasePlugin {
            metadata: self.metadata.clone(),
            config: self.config.clone(),
            pool: self.pool.clone(),
        }))
    }

    async fn execute(&mut self, input: String) -> PluginResult<String> {
        // Plain text that is not JSON is SQL (the seed sends bare statements).
        let input = serde_json::from_str(&input).unwrap_or(Value::String(input));
        Ok(self.execute_json(input).await?.to_string())
    }

    async fn execute_json(&mut self, input: Value) -> PluginResult<Value> {
        let request = DbRequest::from_input(input).map_err(PluginError::InvalidInput)?;
        self.query(&request).await
    }
}

#[cfg(all(test, any(not(feature = "sqlite"), not(feature = "postgres"))))]
mod tests {
    use super::*;

    /// The refusal of a URL whose backend the build lacks, as `load` words it.
    async fn refusal(url: &str) -> String {
        match DatabasePlugin::new(url).connect(false).await {
            Err(PluginError::Config(message)) => message,
            Err(other) => panic!("expected a configuration error, got {other}"),
            Ok(_) => panic!("{url} was opened by a build without its backend"),
        }
    }

    #[cfg(not(feature = "postgres"))]
    #[tokio::test]
    async fn a_postgres_url_names_the_feature_to_build_with() {
        let message = refusal("postgres://app:secret@127.0.0.1:5432/db").await;
        assert!(
            message.contains("built without the `postgres` feature"),
            "{message}"
        );
        assert!(
            message.contains("cargo build --features postgres"),
            "{message}"
        );
        assert!(!message.contains("secret"), "{message}");
    }

    #[cfg(not(feature = "sqlite"))]
    #[tokio::test]
    async fn a_sqlite_url_names_the_feature_to_build_with() {
        let message = refusal("sqlite::memory:").await;
        assert!(
            message.contains("built without the `sqlite` feature"),
            "{message}"
        );
        assert!(
            message.contains("cargo build --features sqlite"),
            "{message}"
        );
    }
}
