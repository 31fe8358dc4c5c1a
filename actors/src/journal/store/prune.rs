//! Deleting finished runs (`bilayer runs prune`), or compacting them to their run row and
//! outcome (`--compact`): the journal grows with every hop, and a finished run's hops and
//! calls are needed only to inspect it. A run without an outcome is never touched, whatever
//! its age: it may be resumed.
//!
//! One transaction that reads one state throughout (SQLite's write lock taken at once,
//! PostgreSQL's REPEATABLE READ), so a run finishing meanwhile is either pruned whole or not
//! at all. Batches stay: they are one row each, and `--resume` finds the latest by them.

use std::time::Duration;

use super::{on_pool, unix_millis, JournalError, JournalStore};

/// The finished runs old enough: outcomes at or before `$1` (unix milliseconds).
const OLD: &str = "SELECT run_id FROM bilayer_outcomes WHERE finished_at <= $1";

impl JournalStore {
    /// Deletes every finished run whose outcome is older than `older_than` (zero: every
    /// finished run), or with `compact_only` deletes only their hops and calls, keeping the
    /// run row and its outcome. Returns how many runs were pruned, or compacted (runs that had
    /// hops or calls to delete).
    pub async fn prune(
        &self,
        older_than: Duration,
        compact_only: bool,
    ) -> Result<u64, JournalError> {
        let core = self.core();
        let cutoff = if older_than.is_zero() {
            i64::MAX
        } else {
            let age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
            unix_millis().saturating_sub(age)
        };
        let action = if compact_only {
            "compacting finished runs"
        } else {
            "pruning finished runs"
        };
        let fail = |e: sqlx::Error| core.query_error(action, &e);
        let calls = format!("DELETE FROM bilayer_calls WHERE run_id IN ({OLD})");
        let hops = format!("DELETE FROM bilayer_hops WHERE run_id IN ({OLD})");
        let runs = format!("DELETE FROM bilayer_runs WHERE run_id IN ({OLD})");
        let compactable = "SELECT COUNT(*) FROM bilayer_outcomes o WHERE o.finished_at <= $1 AND \
             (EXISTS (SELECT 1 FROM bilayer_hops h WHERE h.run_id = o.run_id) OR \
             EXISTS (SELECT 1 FROM bilayer_calls c WHERE c.run_id = o.run_id))";
        on_pool!(&core.pool, |pool, backend| {
            let mut tx = pool
                .begin_with(backend.begin_exclusive())
                .await
                .map_err(fail)?;
            let counted = if compact_only {
                let n: i64 = sqlx::query_scalar(compactable)
                    .bind(cutoff)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(fail)?;
                u64::try_from(n).unwrap_or(0)
            } else {
                0
            };
            for sql in [calls, hops] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            let counted = if compact_only {
                counted
            } else {
                sqlx::query(sqlx::AssertSqlSafe(runs))
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                sqlx::query("DELETE FROM bilayer_outcomes WHERE finished_at <= $1")
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?
                    .rows_affected()
            };
            tx.commit().await.map_err(fail)?;
            Ok(counted)
        })
    }
}
