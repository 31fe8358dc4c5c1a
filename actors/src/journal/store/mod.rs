//! The journal's SQL store: one set of tables (JOURNAL_CONTRACT.md, "The store") in SQLite
//! (a file, embedded, the default) or PostgreSQL (a server several processes share).
//!
//! [`JournalStore`] is a cheap handle (an `Arc` inside) on one connection pool. Its queries
//! are written once for both backends: every statement uses `$N` placeholders, which
//! PostgreSQL reads natively and sqlx's SQLite driver reads as numbered parameters, and the
//! [`on_pool!`] macro expands a body once per backend, so each expansion is ordinary, fully
//! typed sqlx code. Only what truly differs is per backend: how a file or a server is opened,
//! how a transaction that must not interleave begins, and how the writer inserts a batch
//! (insert.rs says why).
//!
//! - error.rs: [`JournalError`], URL redaction, sqlx errors in words;
//! - schema.rs: creating the tables, checking the schema version;
//! - insert.rs: the multi-row inserts of group commit (the writer's half);
//! - read.rs: reading runs back, for resume, redelivery and `bilayer runs`;
//! - prune.rs: deleting or compacting finished runs.

#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(unused, unreachable_code)
)]

mod error;
mod insert;
mod prune;
mod read;
mod schema;
// SQLite always, PostgreSQL besides when built in and configured.
#[cfg(all(test, feature = "sqlite"))]
mod tests;

use std::sync::Arc;
use std::time::Duration;

pub use error::JournalError;
pub(crate) use error::{describe, redact};
pub(crate) use insert::Tables;

#[cfg(feature = "sqlite")]
use insert::InsertSql;

/// The schema version this build writes and reads (the `schema_version` row of
/// `bilayer_journal_meta`).
pub const SCHEMA_VERSION: u32 = 1;

/// How a store is opened and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// SQLite: `synchronous=FULL`, an fsync per commit, so a commit survives a power loss
    /// (not only a killed process, which `NORMAL` in WAL mode already survives). PostgreSQL
    /// is power-loss safe with its default settings either way.
    pub power_loss_safe: bool,
    /// Create the SQLite file and the tables when they are missing (`bilayer run`). Off, a
    /// missing file or a database without the journal's tables is an error (`bilayer runs`
    /// reading a mistyped path should not create an empty store there).
    pub create_if_missing: bool,
    /// Connections in the pool: the writer uses one at a time, readers the others.
    pub max_connections: u32,
    /// SQLite: how long a statement waits for another process's lock before failing.
    pub busy_timeout: Duration,
    /// How long opening waits for the first connection (and any statement for a free one).
    pub connect_timeout: Duration,
    /// The most entries one group commit writes in one transaction.
    pub max_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            power_loss_safe: false,
            create_if_missing: true,
            max_connections: 4,
            busy_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_batch: 4096,
        }
    }
}

/// A journal store: a pool of connections to one SQLite file or PostgreSQL database holding
/// the journal's tables. Cloning is cheap and shares the pool.
#[derive(Debug, Clone)]
pub struct JournalStore {
    core: Arc<Core>,
    options: Arc<StoreOptions>,
    runtime: tokio::runtime::Handle,
}

/// What the store's users (the handle, the writer task) share.
#[derive(Debug)]
pub(crate) struct Core {
    /// The URL as given, password redacted: every message names the store by it.
    pub(crate) url: String,
    pub(crate) pool: Pool,
    /// SQLite's insert statements (PostgreSQL's are fixed: insert.rs).
    #[cfg(feature = "sqlite")]
    pub(crate) insert: InsertSql,
}

/// The pool of one backend. Code that runs on both is written once, inside [`on_pool!`].
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    /// A build with `journal` but neither backend: no store can be opened, so no value of
    /// this variant exists; it keeps `match`es over the pool well-formed.
    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    #[allow(dead_code)]
    Unavailable(std::convert::Infallible),
}

/// What differs between the backends inside code written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Sqlite,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

impl Backend {
    /// The statement that begins a transaction which writes: SQLite takes the write lock at
    /// once (waiting up to the busy timeout for another process's), rather than failing when
    /// a read lock cannot be upgraded; PostgreSQL's default (READ COMMITTED) suffices.
    pub(crate) fn begin_write(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// The statement that begins a transaction which reads, then writes what it read, without
    /// another writer in between: SQLite takes the write lock at once (a deferred transaction
    /// would fail, not wait, when its read lock cannot be upgraded); PostgreSQL reads one
    /// snapshot throughout.
    pub(crate) fn begin_exclusive(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ",
        }
    }
}

/// Runs `$body` against the store's pool, expanded once per backend: inside it `$pool` is
/// the backend's own pool type (`SqlitePool`, `PgPool`) and `$backend` the [`Backend`].
/// The body may `.await` and `?` (it is inlined into the enclosing async fn).
macro_rules! on_pool {
    ($pool:expr, |$p:ident, $backend:ident| $body:expr) => {
        match $pool {
            #[cfg(feature = "sqlite")]
            $crate::journal::store::Pool::Sqlite($p) => {
                #[allow(unused_variables)]
                let $backend = $crate::journal::store::Backend::Sqlite;
                $body
            }
            #[cfg(feature = "postgres")]
            $crate::journal::store::Pool::Postgres($p) => {
                #[allow(unused_variables)]
                let $backend = $crate::journal::store::Backend::Postgres;
                $body
            }
            #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
            $crate::journal::store::Pool::Unavailable(never) => match *never {},
        }
    };
}
pub(crate) use on_pool;

/// Which backend a URL names.
fn backend_of(url: &str) -> Option<Backend> {
    if url.starts_with("sqlite:") {
        Some(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(Backend::Postgres)
    } else {
        None
    }
}

impl JournalStore {
    /// Opens the store at `url` (`sqlite:PATH`, `sqlite://PATH`, `postgres://…`,
    /// `postgresql://…`), creating the SQLite file and the tables when missing (unless
    /// `options.create_if_missing` is off), and checks that its schema version is one this
    /// build reads.
    ///
    /// A relative SQLite path is relative to the current directory. SQLite runs in WAL mode,
    /// `synchronous=NORMAL` (`FULL` with `options.power_loss_safe`), with a busy timeout so
    /// that processes sharing the file wait for each other's locks.
    ///
    /// PostgreSQL: the tables live in the connection's current schema, so one server can hold
    /// several journals side by side, e.g. with `?options=-csearch_path%3Dmy_schema` on the
    /// URL (the schema must exist).
    ///
    /// Must be called inside a tokio runtime: the store's writer task runs on it.
    pub async fn open(url: &str, options: StoreOptions) -> Result<JournalStore, JournalError> {
        let shown = redact(url);
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| JournalError::Open {
            url: shown.clone(),
            cause: "not called inside a tokio runtime".to_string(),
            advice: "open the store from async code running on tokio".to_string(),
        })?;
        let Some(backend) = backend_of(url) else {
            return Err(JournalError::UnsupportedUrl { url: shown });
        };
        let pool = match backend {
            Backend::Sqlite => open_sqlite(url, &shown, &options).await?,
            Backend::Postgres => open_postgres(url, &shown, &options).await?,
        };
        let core = Core {
            url: shown,
            pool,
            #[cfg(feature = "sqlite")]
            insert: InsertSql::new(),
        };
        schema::ensure(&core, options.create_if_missing).await?;
        Ok(JournalStore {
            core: Arc::new(core),
            options: Arc::new(options),
            runtime,
        })
    }

    /// The store's URL, password redacted (what its errors name).
    pub fn url(&self) -> &str {
        &self.core.url
    }

    /// The options it was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Closes the pool: waits for statements in progress, then closes every connection.
    /// Afterwards every query of this store and its clones fails; a writer still running
    /// fails its batches. Close writers first ([`JournalWriter::close`](crate::journal::JournalWriter::close)).
    pub async fn close(&self) {
        on_pool!(&self.core.pool, |pool, _backend| pool.close().await)
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }
}

impl Core {
    /// The error of a failed statement, naming what the journal was doing.
    pub(crate) fn query_error(
        &self,
        action: impl Into<String>,
        error: &sqlx::Error,
    ) -> JournalError {
        JournalError::Query {
            url: self.url.clone(),
            action: action.into(),
            cause: describe(error),
        }
    }
}

fn open_error(url: &str, cause: impl Into<String>, advice: impl Into<String>) -> JournalError {
    JournalError::Open {
        url: url.to_string(),
        cause: cause.into(),
        advice: advice.into(),
    }
}

/// The store name to use in advice: where a store URL comes from.
const STORE_SETTING: &str = "--store, or `store` in the definition's [durability]";

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(
    _url: &str,
    shown: &str,
    _options: &StoreOptions,
) -> Result<Pool, JournalError> {
    Err(JournalError::BackendMissing {
        url: shown.to_string(),
        backend: "SQLite",
        feature: "sqlite",
    })
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(
    _url: &str,
    shown: &str,
    _options: &StoreOptions,
) -> Result<Pool, JournalError> {
    Err(JournalError::BackendMissing {
        url: shown.to_string(),
        backend: "PostgreSQL",
        feature: "postgres",
    })
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str, shown: &str, options: &StoreOptions) -> Result<Pool, JournalError> {
    use std::str::FromStr;

    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };

    let parsed = SqliteConnectOptions::from_str(url).map_err(|e| {
        open_error(
            shown,
            describe(&e),
            "write the URL as sqlite:PATH or sqlite://PATH",
        )
    })?;
    let memory = url.contains(":memory:") || url.contains("mode=memory");
    if !memory && parsed.get_filename().as_os_str().is_empty() {
        // sqlx would open a private temporary database per connection: nothing durable.
        return Err(open_error(
            shown,
            "the URL names no file".to_string(),
            "write the URL as sqlite:PATH, e.g. sqlite:runs.db",
        ));
    }
    if !memory {
        check_sqlite_path(parsed.get_filename(), shown, options.create_if_missing)?;
    }
    let connect = parsed
        .create_if_missing(options.create_if_missing)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if options.power_loss_safe {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        })
        .busy_timeout(options.busy_timeout)
        // No foreign keys in the journal: do not pay for checking them.
        .foreign_keys(false);
    let mut pool = SqlitePoolOptions::new()
        .max_connections(if memory {
            1
        } else {
            options.max_connections.max(1)
        })
        .acquire_timeout(options.connect_timeout);
    if memory {
        // The database lives exactly as long as its one connection.
        pool = pool
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
    }
    let pool = pool.connect_with(connect).await.map_err(|e| {
        let advice = match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("26") => {
                format!("the file is not a SQLite database: point the store elsewhere ({STORE_SETTING})")
            }
            _ => format!(
                "check that the path is a file you may read and write, or point the store \
                 elsewhere ({STORE_SETTING})"
            ),
        };
        open_error(shown, describe(&e), advice)
    })?;
    Ok(Pool::Sqlite(pool))
}

/// Says what is wrong with a SQLite path before SQLite does ("unable to open database file"
/// names neither the path nor the reason).
#[cfg(feature = "sqlite")]
fn check_sqlite_path(
    path: &std::path::Path,
    shown: &str,
    create: bool,
) -> Result<(), JournalError> {
    if path.is_dir() {
        return Err(open_error(
            shown,
            format!("{} is a directory", path.display()),
            format!(
                "name a file inside it, e.g. sqlite:{}",
                path.join("runs.db").display()
            ),
        ));
    }
    if path.exists() {
        return Ok(());
    }
    if !create {
        return Err(open_error(
            shown,
            format!("the file {} does not exist", path.display()),
            "check the path (`bilayer run --store URL` creates the store)",
        ));
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    if !parent.is_dir() {
        return Err(open_error(
            shown,
            format!("the directory {} does not exist", parent.display()),
            format!("create it or point the store elsewhere ({STORE_SETTING})"),
        ));
    }
    Ok(())
}

#[cfg(feature = "postgres")]
async fn open_postgres(
    url: &str,
    shown: &str,
    options: &StoreOptions,
) -> Result<Pool, JournalError> {
    use std::str::FromStr;

    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use sqlx::{ConnectOptions, Connection};

    let advice = "check the URL, that the server is running, and that its user may connect";
    let parsed = PgConnectOptions::from_str(url).map_err(|e| {
        open_error(
            shown,
            describe(&e),
            "write the URL as postgres://USER@HOST:PORT/DATABASE",
        )
    })?;
    // One attempt first, answered at once (refused, unknown host, bad credentials), rather
    // than a pool retrying until its timeout and reporting only that it timed out.
    match tokio::time::timeout(options.connect_timeout, parsed.connect()).await {
        Err(_) => {
            return Err(open_error(
                shown,
                format!("no answer within {:?}", options.connect_timeout),
                advice,
            ))
        }
        Ok(Err(e)) => return Err(open_error(shown, describe(&e), advice)),
        Ok(Ok(probe)) => {
            let _ = probe.close().await;
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.connect_timeout)
        .connect_with(parsed)
        .await
        .map_err(|e| open_error(shown, describe(&e), advice))?;
    Ok(Pool::Postgres(pool))
}

/// Unix milliseconds now (0 if the clock is before 1970).
pub(crate) fn unix_millis() -> i64 {
    super::unix_ms(std::time::SystemTime::now())
}
