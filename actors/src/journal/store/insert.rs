//! The writing half of group commit: a batch of entries, sorted by table, written in one
//! transaction with multi-row `INSERT ... ON CONFLICT DO NOTHING` statements.
//!
//! Why multi-row: each statement is a round trip (to sqlx's SQLite worker thread, or to the
//! PostgreSQL server), so rows per statement, not statements, set the throughput. Why a fixed
//! ladder of sizes ([`LADDER`]): a statement's text depends on its row count, and only a few
//! distinct texts stay prepared in each connection's statement cache; a batch of any length is
//! written as full chunks of 256 rows, then 32, 4 and 1 for the rest. The largest statement
//! binds 2 560 parameters, far below SQLite's limit (32 766) and PostgreSQL's (65 535).
//!
//! Placeholders: `$N` for PostgreSQL, but anonymous `?` for SQLite, where sqlx looks up every
//! parameter's name before binding it, and SQLite finds a name by walking the list of them:
//! with numbered names a 2 560-parameter statement spent 88% of the writer's time there.
//!
//! `ON CONFLICT DO NOTHING` everywhere: a redelivered hop writes its rows again, and the first
//! write stands.

use std::sync::Arc;

use sqlx::AssertSqlSafe;

use super::{on_pool, Backend, Core};
use crate::journal::{CallRow, Entry, HopRow, OutcomeRow, RunRow};

/// Rows per statement, largest first; the last must be 1.
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

/// The insert statements, one per table and [`LADDER`] size, built once per store.
#[derive(Debug)]
pub(crate) struct InsertSql {
    runs: [Arc<str>; LADDER.len()],
    hops: [Arc<str>; LADDER.len()],
    calls: [Arc<str>; LADDER.len()],
    outcomes: [Arc<str>; LADDER.len()],
}

const RUN_COLUMNS: &[&str] = &["run_id", "batch_id", "input_no", "input", "started_at"];
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
const OUTCOME_COLUMNS: &[&str] = &["run_id", "status", "outcome", "finished_at"];

impl InsertSql {
    pub(crate) fn new(backend: Backend) -> Self {
        let ladder = |table: &str, columns: &[&str]| {
            LADDER.map(|rows| Arc::from(insert_statement(backend, table, columns, rows)))
        };
        Self {
            runs: ladder("bilayer_runs", RUN_COLUMNS),
            hops: ladder("bilayer_hops", HOP_COLUMNS),
            calls: ladder("bilayer_calls", CALL_COLUMNS),
            outcomes: ladder("bilayer_outcomes", OUTCOME_COLUMNS),
        }
    }
}

/// `INSERT INTO table (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING` for `rows` rows
/// (`?` in place of `$N` for SQLite).
fn insert_statement(backend: Backend, table: &str, columns: &[&str], rows: usize) -> String {
    use std::fmt::Write;
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    let mut n = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns.len() {
            n += 1;
            sql.push_str(if column == 0 { "" } else { ", " });
            let _ = match backend {
                Backend::Sqlite => write!(sql, "?"),
                Backend::Postgres => write!(sql, "${n}"),
            };
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT DO NOTHING");
    sql
}

/// A count or number as the BIGINT the tables hold (saturating: no run has 2^63 inputs).
fn bigint(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Writes `$rows` (a `Vec`, drained) in [`LADDER`]-sized statements `$sql` on `$tx`, binding
/// each row with `$bind` (which gets the query `$q` and the row `$row`, and returns the query).
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
        let written = self.insert_all(tables).await;
        tables.clear();
        written
    }

    async fn insert_all(&self, tables: &mut Tables) -> Result<(), sqlx::Error> {
        let sql = &self.insert;
        on_pool!(&self.pool, |pool, _backend| {
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_number_their_parameters_row_by_row() {
        assert_eq!(
            insert_statement(Backend::Postgres, "t", &["a", "b"], 2),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            insert_statement(Backend::Sqlite, "t", &["a", "b"], 2),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING"
        );
        assert_eq!(LADDER.last(), Some(&1), "every remainder must be writable");
        let most = LADDER[0] * HOP_COLUMNS.len();
        assert!(most <= 32_766, "SQLite's bound-parameter limit: {most}");
    }
}
