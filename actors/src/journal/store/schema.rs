//! The journal's tables (JOURNAL_CONTRACT.md, "The store"), created when missing, and the
//! schema version check: a store written by a newer bilayer is refused rather than misread.
//!
//! The DDL is the same text for SQLite and PostgreSQL. Primary-key columns are declared
//! `NOT NULL` as well: PostgreSQL implies it, SQLite (for rowid tables) does not.

use super::{on_pool, Backend, Core, JournalError, SCHEMA_VERSION, STORE_SETTING};

/// The tables and their index, in creation order.
const TABLES: [&str; 7] = [
    "CREATE TABLE IF NOT EXISTS bilayer_journal_meta (key TEXT NOT NULL PRIMARY KEY, \
     value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bilayer_batches (batch_id TEXT NOT NULL PRIMARY KEY, \
     system_digest TEXT NOT NULL, system_summary TEXT NOT NULL, source TEXT NOT NULL, \
     started_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bilayer_runs (run_id TEXT NOT NULL PRIMARY KEY, \
     batch_id TEXT NOT NULL, input_no BIGINT NOT NULL, input TEXT NOT NULL, \
     started_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS bilayer_runs_batch ON bilayer_runs (batch_id, input_no)",
    "CREATE TABLE IF NOT EXISTS bilayer_hops (run_id TEXT NOT NULL, branch TEXT NOT NULL, \
     hop_no BIGINT NOT NULL, agent TEXT NOT NULL, version TEXT NOT NULL, output TEXT NULL, \
     error TEXT NULL, decision TEXT NOT NULL, started_at BIGINT NOT NULL, \
     elapsed_us BIGINT NOT NULL, PRIMARY KEY (run_id, branch, hop_no))",
    "CREATE TABLE IF NOT EXISTS bilayer_calls (run_id TEXT NOT NULL, branch TEXT NOT NULL, \
     hop_no BIGINT NOT NULL, call_key TEXT NOT NULL, target TEXT NOT NULL, result TEXT NULL, \
     error TEXT NULL, elapsed_us BIGINT NOT NULL, \
     PRIMARY KEY (run_id, branch, hop_no, call_key))",
    "CREATE TABLE IF NOT EXISTS bilayer_outcomes (run_id TEXT NOT NULL PRIMARY KEY, \
     status TEXT NOT NULL, outcome TEXT NOT NULL, finished_at BIGINT NOT NULL)",
];

const READ_VERSION: &str = "SELECT value FROM bilayer_journal_meta WHERE key = 'schema_version'";

/// An arbitrary constant: the PostgreSQL advisory lock that serialises processes creating
/// the tables at the same time (concurrent `CREATE TABLE IF NOT EXISTS` can fail on
/// PostgreSQL's catalog constraints).
const SCHEMA_LOCK: &str = "SELECT pg_advisory_xact_lock(7237005577332262213)";

/// Checks the schema version, creating the tables first when there are none (and `create`).
pub(super) async fn ensure(core: &Core, create: bool) -> Result<(), JournalError> {
    match read_version(core).await {
        Ok(Some(found)) => return check_version(core, found),
        // The meta table without its row: a creation interrupted, or cleared by hand.
        Ok(None) | Err(_) if create => {}
        Ok(None) | Err(_) => {
            return Err(JournalError::Open {
                url: core.url.clone(),
                cause: "it holds no bilayer journal (no bilayer_journal_meta table with a \
                        schema_version)"
                    .to_string(),
                advice: format!(
                    "check the URL ({STORE_SETTING}); `bilayer run --store URL` creates a journal"
                ),
            });
        }
    }
    create_tables(core).await.map_err(|e| JournalError::Open {
        url: core.url.clone(),
        cause: format!(
            "creating the journal's tables failed: {}",
            super::describe(&e)
        ),
        advice: "check that the store is writable and that its user may create tables".to_string(),
    })?;
    match read_version(core).await {
        Ok(Some(found)) => check_version(core, found),
        Ok(None) => Err(core.query_error(
            "reading the schema version just written",
            &sqlx::Error::RowNotFound,
        )),
        Err(e) => Err(core.query_error("reading the schema version", &e)),
    }
}

async fn read_version(core: &Core) -> Result<Option<String>, sqlx::Error> {
    on_pool!(&core.pool, |pool, _backend| {
        sqlx::query_scalar::<_, String>(READ_VERSION)
            .fetch_optional(pool)
            .await
    })
}

fn check_version(core: &Core, found: String) -> Result<(), JournalError> {
    match found.trim().parse::<u32>() {
        Ok(version) if version <= SCHEMA_VERSION => Ok(()),
        _ => Err(JournalError::SchemaTooNew {
            url: core.url.clone(),
            found,
            supported: SCHEMA_VERSION,
        }),
    }
}

async fn create_tables(core: &Core) -> Result<(), sqlx::Error> {
    let set_version = format!(
        "INSERT INTO bilayer_journal_meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}') \
         ON CONFLICT DO NOTHING"
    );
    on_pool!(&core.pool, |pool, backend| {
        let mut tx = pool.begin_with(backend.begin_write()).await?;
        if backend == Backend::Postgres {
            sqlx::query(SCHEMA_LOCK).execute(&mut *tx).await?;
        }
        for ddl in TABLES {
            sqlx::query(ddl).execute(&mut *tx).await?;
        }
        sqlx::query(sqlx::AssertSqlSafe(set_version))
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    })
}
