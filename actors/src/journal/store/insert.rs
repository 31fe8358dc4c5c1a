//! The writing half of group commit: a batch of entries, sorted by table, written in one
//! transaction, then committed.
//!
//! SQLite: multi-row `INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING`. Each statement
//! is a round trip to sqlx's SQLite worker thread, so rows per statement, not statements, set
//! the throughput. A statement's text depends on its row count, and only a few distinct texts
//! stay prepared in each connection's statement cache, so a batch of any length is written as
//! full chunks of [`LADDER`] sizes: 256 rows, then 32, 4 and 1 for the rest. The largest
//! statement binds 2 560 parameters, far below SQLite's limit (32 766). Placeholders are
//! anonymous `?`: sqlx looks up every parameter's name before binding it, and SQLite finds a
//! name by walking the list of them, so with numbered names (`$N`) a 2 560-parameter statement
//! spent 88% of the writer's time there.
//!
//! PostgreSQL: one statement per table and batch, `INSERT ... SELECT * FROM UNNEST($1::text[],
//! ...)`, each column bound as one array: ten parameters whatever the batch's size, one round
//! trip per table (multi-row VALUES, one round trip per 256 rows, wrote 150 k rows/s here).
//!
//! `ON CONFLICT DO NOTHING` everywhere: a redelivered hop writes its rows again, and the first
//! write stands (also within one statement, where PostgreSQL's DO NOTHING skips duplicates).

#[cfg(feature = "sqlite")]
use std::sync::Arc;

#[cfg(feature = "sqlite")]
use sqlx::AssertSqlSafe;

use super::{Core, Pool};
use crate::journal::{CallRow, Entry, HopRow, OutcomeRow, RunRow};

/// Rows per statement, largest first; the last must be 1.
#[cfg(feature = "sqlite")]
pub(crate) const LADDER: [usize; 4] = [256, 32, 4, 1];

/// One batch's rows, per table. The vectors keep their capacity from batch to batch.
#[derive(Debug, Default)]
pub(crate) struct Tables {
    pub(crate) runs: Vec<RunRow>,
    pub(crate) hops: Vec<HopRow>,
    pub(crate) calls: Vec<CallRow>,
    pub(crate) outcomes: Vec<OutcomeRow>,
}

impl Tables {
    /// Files `entry` under its table.
    pub(crate) fn push(&mut self, entry: Entry) {
        match entry {
            Entry::Run(row) => self.runs.push(row),
            Entry::Hop(row) => self.hops.push(row),
            Entry::Call(row) => self.calls.push(row),
            Entry::Outcome(row) => self.outcomes.push(row),
        }
    }

    /// Forgets every row (after a failed write: the rows are not retried).
    pub(crate) fn clear(&mut self) {
        self.runs.clear();
        self.hops.clear();
        self.calls.clear();
        self.outcomes.clear();
    }
}

/// SQLite's insert statements, one per table and [`LADDER`] size, built once per store.
#[cfg(feature = "sqlite")]
#[derive(Debug)]
pub(crate) struct InsertSql {
    runs: [Arc<str>; LADDER.len()],
    hops: [Arc<str>; LADDER.len()],
    calls: [Arc<str>; LADDER.len()],
    outcomes: [Arc<str>; LADDER.len()],
}

#[cfg(feature = "sqlite")]
const RUN_COLUMNS: &[&str] = &["run_id", "batch_id", "input_no", "input", "started_at"];
#[cfg(feature = "sqlite")]
const HOP_COLUMNS: &[&str] = &[
    "run_id",
    "branch",
    "hop_no",
    "agent",
    "version",
    "output",
    "error",
    "decision",
    "started_at",
    "elapsed_us",
];
#[cfg(feature = "sqlite")]
const CALL_COLUMNS: &[&str] = &[
    "run_id",
    "branch",
    "hop_no",
    "call_key",
    "target",
    "result",
    "error",
    "elapsed_us",
];
#[cfg(feature = "sqlite")]
const OUTCOME_COLUMNS: &[&str] = &["run_id", "status", "outcome", "finished_at"];

#[cfg(feature = "sqlite")]
impl InsertSql {
    pub(crate) fn new() -> Self {
        let ladder = |table: &str, columns: &[&str]| {
            LADDER.map(|rows| Arc::from(insert_statement(table, columns, rows)))
        };
        Self {
            runs: ladder("bilayer_runs", RUN_COLUMNS),
            hops: ladder("bilayer_hops", HOP_COLUMNS),
            calls: ladder("bilayer_calls", CALL_COLUMNS),
            outcomes: ladder("bilayer_outcomes", OUTCOME_COLUMNS),
        }
    }
}

/// `INSERT INTO table (a, b) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING` for `rows` rows.
#[cfg(feature = "sqlite")]
fn insert_statement(table: &str, columns: &[&str], rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    let row = format!("({})", vec!["?"; columns.len()].join(", "));
    sql.push_str(&vec![row; rows].join(", "));
    sql.push_str(" ON CONFLICT DO NOTHING");
    sql
}

/// A count or number as the BIGINT the tables hold (saturating: no run has 2^63 inputs).
fn bigint(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Writes `$rows` (a `Vec`, drained) in [`LADDER`]-sized statements `$sql` on `$tx`, binding
/// each row with `$bind` (which gets the query `$q` and the row `$row`, and returns the query).
#[cfg(feature = "sqlite")]
macro_rules! insert_chunks {
    ($tx:ident, $sql:expr, $rows:expr, |$q:ident, $row:ident| $bind:expr) => {{
        let mut left = $rows.len();
        let mut rows = $rows.drain(..);
        for (size, sql) in LADDER.iter().zip($sql.iter()) {
            while left >= *size {
                let mut $q = sqlx::query(AssertSqlSafe(Arc::clone(sql)));
                for $row in rows.by_ref().take(*size) {
                    $q = $bind;
                }
                $q.execute(&mut *$tx).await?;
                left -= size;
            }
        }
    }};
}

impl Core {
    /// Writes every row of `tables` in one transaction and commits; the vectors are left
    /// empty (their capacity kept) whether it succeeded or not.
    pub(crate) async fn insert(&self, tables: &mut Tables) -> Result<(), sqlx::Error> {
        let written = match &self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => insert_sqlite(pool, &self.insert, tables).await,
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => insert_postgres(pool, tables).await,
            #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
            Pool::Unavailable(never) => match *never {},
        };
        tables.clear();
        written
    }
}

#[cfg(feature = "sqlite")]
async fn insert_sqlite(
    pool: &sqlx::SqlitePool,
    sql: &InsertSql,
    tables: &mut Tables,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    insert_chunks!(tx, sql.runs, tables.runs, |q, run| q
        .bind(run.run_id)
        .bind(run.batch_id)
        .bind(bigint(run.input_no))
        .bind(run.input)
        .bind(run.started_at));
    insert_chunks!(tx, sql.hops, tables.hops, |q, hop| q
        .bind(hop.run_id)
        .bind(hop.branch)
        .bind(i64::from(hop.hop_no))
        .bind(hop.agent)
        .bind(hop.version)
        .bind(hop.output)
        .bind(hop.error)
        .bind(hop.decision)
        .bind(hop.started_at)
        .bind(hop.elapsed_us));
    insert_chunks!(tx, sql.calls, tables.calls, |q, call| q
        .bind(call.run_id)
        .bind(call.branch)
        .bind(i64::from(call.hop_no))
        .bind(call.call_key)
        .bind(call.target)
        .bind(call.result)
        .bind(call.error)
        .bind(call.elapsed_us));
    insert_chunks!(tx, sql.outcomes, tables.outcomes, |q, outcome| q
        .bind(outcome.run_id)
        .bind(outcome.status)
        .bind(outcome.outcome)
        .bind(outcome.finished_at));
    tx.commit().await
}

/// One column of `rows` as the array PostgreSQL's `UNNEST` takes.
#[cfg(feature = "postgres")]
fn column<'a, R, T>(rows: &'a [R], cell: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(cell).collect()
}

#[cfg(feature = "postgres")]
async fn insert_postgres(pool: &sqlx::PgPool, tables: &Tables) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let runs = &tables.runs;
    if !runs.is_empty() {
        sqlx::query(
            "INSERT INTO bilayer_runs (run_id, batch_id, input_no, input, started_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], \
             $5::bigint[]) ON CONFLICT DO NOTHING",
        )
        .bind(column(runs, |r| &*r.run_id))
        .bind(column(runs, |r| &*r.batch_id))
        .bind(column(runs, |r| bigint(r.input_no)))
        .bind(column(runs, |r| r.input.as_str()))
        .bind(column(runs, |r| r.started_at))
        .execute(&mut *tx)
        .await?;
    }
    let hops = &tables.hops;
    if !hops.is_empty() {
        sqlx::query(
            "INSERT INTO bilayer_hops (run_id, branch, hop_no, agent, version, output, error, \
             decision, started_at, elapsed_us) SELECT * FROM UNNEST($1::text[], $2::text[], \
             $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
             $9::bigint[], $10::bigint[]) ON CONFLICT DO NOTHING",
        )
        .bind(column(hops, |h| &*h.run_id))
        .bind(column(hops, |h| &*h.branch))
        .bind(column(hops, |h| i64::from(h.hop_no)))
        .bind(column(hops, |h| &*h.agent))
        .bind(column(hops, |h| h.version.as_str()))
        .bind(column(hops, |h| h.output.as_deref()))
        .bind(column(hops, |h| h.error.as_deref()))
        .bind(column(hops, |h| h.decision.as_str()))
        .bind(column(hops, |h| h.started_at))
        .bind(column(hops, |h| h.elapsed_us))
        .execute(&mut *tx)
        .await?;
    }
    let calls = &tables.calls;
    if !calls.is_empty() {
        sqlx::query(
            "INSERT INTO bilayer_calls (run_id, branch, hop_no, call_key, target, result, error, \
             elapsed_us) SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], \
             $5::text[], $6::text[], $7::text[], $8::bigint[]) ON CONFLICT DO NOTHING",
        )
        .bind(column(calls, |c| &*c.run_id))
        .bind(column(calls, |c| &*c.branch))
        .bind(column(calls, |c| i64::from(c.hop_no)))
        .bind(column(calls, |c| c.call_key.as_str()))
        .bind(column(calls, |c| c.target.as_str()))
        .bind(column(calls, |c| c.result.as_deref()))
        .bind(column(calls, |c| c.error.as_deref()))
        .bind(column(calls, |c| c.elapsed_us))
        .execute(&mut *tx)
        .await?;
    }
    let outcomes = &tables.outcomes;
    if !outcomes.is_empty() {
        sqlx::query(
            "INSERT INTO bilayer_outcomes (run_id, status, outcome, finished_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(column(outcomes, |o| &*o.run_id))
        .bind(column(outcomes, |o| o.status.as_str()))
        .bind(column(outcomes, |o| o.outcome.as_str()))
        .bind(column(outcomes, |o| o.finished_at))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    #[test]
    fn statements_have_one_placeholder_per_cell() {
        assert_eq!(
            insert_statement("t", &["a", "b"], 2),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING"
        );
        assert_eq!(LADDER.last(), Some(&1), "every remainder must be writable");
        let most = LADDER[0] * HOP_COLUMNS.len();
        assert!(most <= 32_766, "SQLite's bound-parameter limit: {most}");
    }
}
