//! Reading the journal back: a batch's runs for resume, one run for `bilayer runs show`, one
//! hop's recorded calls for a redelivered hop, summaries for `bilayer runs list`.
//!
//! Bulk loads run one query per table and group the rows in Rust (a resume of 10 000 runs is
//! four queries, not 40 000), streaming rows rather than holding every row of a table twice.
//! A row that cannot be decoded (a wrong type, a NULL where a value belongs: the store was
//! altered outside bilayer) marks its run [`RunRecord::unreadable`] with the table and the
//! cause, and the load goes on: one damaged run must not stop a resume of the others.
//! (A row whose JSON text does not parse is for the resume path to judge: the store hands
//! text back as text.)

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::TryStreamExt;
use sqlx::Row;

use super::{on_pool, JournalError, JournalStore};
use crate::journal::{
    BatchRow, CallRow, HopRow, OutcomeRow, RunRecord, RunRow, RunStatus, RunSummary,
};

const BATCH_COLUMNS: &str = "batch_id, system_digest, system_summary, source, started_at";
const RUN_COLUMNS: &str = "r.run_id, r.batch_id, r.input_no, r.input, r.started_at";
const HOP_COLUMNS: &str = "h.run_id, h.branch, h.hop_no, h.agent, h.version, h.output, h.error, \
                           h.decision, h.started_at, h.elapsed_us";
const CALL_COLUMNS: &str =
    "c.run_id, c.branch, c.hop_no, c.call_key, c.target, c.result, c.error, c.elapsed_us";
const OUTCOME_COLUMNS: &str = "o.run_id, o.status, o.outcome, o.finished_at";

/// Which runs a load reads.
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    Batch(&'a str),
    Run(&'a str),
}

impl Scope<'_> {
    fn key(self) -> String {
        match self {
            Scope::Batch(id) | Scope::Run(id) => id.to_string(),
        }
    }

    /// The query of `table` (aliased `alias`, columns `columns`) for these runs.
    fn sql(self, table: &str, alias: &str, columns: &str) -> String {
        match (self, table) {
            (Scope::Batch(_), "bilayer_runs") => {
                format!("SELECT {columns} FROM bilayer_runs r WHERE r.batch_id = $1")
            }
            (Scope::Batch(_), _) => format!(
                "SELECT {columns} FROM {table} {alias} JOIN bilayer_runs r \
                 ON r.run_id = {alias}.run_id WHERE r.batch_id = $1"
            ),
            (Scope::Run(_), _) => {
                format!("SELECT {columns} FROM {table} {alias} WHERE {alias}.run_id = $1")
            }
        }
    }
}

/// What the journal's decoders need of a row, whichever the backend: a column as text, as
/// optional text, as an integer; an error says which column and why.
trait Cells {
    fn text(&self, column: usize) -> Result<String, String>;
    fn opt_text(&self, column: usize) -> Result<Option<String>, String>;
    fn int(&self, column: usize) -> Result<i64, String>;
}

macro_rules! impl_cells {
    ($row:ty) => {
        impl Cells for $row {
            fn text(&self, column: usize) -> Result<String, String> {
                self.try_get(column)
                    .map_err(|e| cell_error(self, column, &e))
            }
            fn opt_text(&self, column: usize) -> Result<Option<String>, String> {
                self.try_get(column)
                    .map_err(|e| cell_error(self, column, &e))
            }
            fn int(&self, column: usize) -> Result<i64, String> {
                self.try_get(column)
                    .map_err(|e| cell_error(self, column, &e))
            }
        }
    };
}
#[cfg(feature = "sqlite")]
impl_cells!(sqlx::sqlite::SqliteRow);
#[cfg(feature = "postgres")]
impl_cells!(sqlx::postgres::PgRow);

/// `column output: <why>`, without sqlx's "error occurred while decoding column 5" preamble
/// (an index the reader cannot map back).
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
fn cell_error(row: &impl Row, column: usize, error: &sqlx::Error) -> String {
    use sqlx::Column;
    let name = row
        .columns()
        .get(column)
        .map_or_else(|| format!("#{column}"), |c| c.name().to_string());
    let why = match error {
        sqlx::Error::ColumnDecode { source, .. } => source.to_string(),
        other => other.to_string(),
    };
    format!("column {name}: {why}")
}

/// A hop or call number as stored (BIGINT) back to the row type's `u32`.
fn hop_no(value: i64) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("column hop_no: {value} is not a hop number"))
}

/// Shares one `Arc<str>` among the many rows naming the same agent or branch.
#[derive(Default)]
struct Interner(HashSet<Arc<str>>);

impl Interner {
    fn get(&mut self, text: String) -> Arc<str> {
        if let Some(shared) = self.0.get(text.as_str()) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(Arc::clone(&shared));
        shared
    }
}

/// The runs being loaded, found by id.
#[derive(Default)]
struct Loaded {
    records: Vec<RunRecord>,
    index: HashMap<Arc<str>, usize>,
    names: Interner,
}

impl Loaded {
    /// The record of the run a row belongs to (`None`: the row's run is not in the load).
    fn find(&self, row: &impl Cells) -> Option<(usize, Arc<str>)> {
        let run_id = row.text(0).ok()?;
        let (run_id, &at) = self.index.get_key_value(run_id.as_str())?;
        Some((at, Arc::clone(run_id)))
    }

    fn mark(&mut self, at: usize, table: &str, cause: String) {
        let record = &mut self.records[at];
        if record.unreadable.is_none() {
            record.unreadable = Some(format!("{table}: {cause}"));
        }
    }

    fn add_run(&mut self, row: &impl Cells, scope: Scope<'_>) {
        let Ok(run_id) = row.text(0) else {
            // Unreachable through the queries (they select by run id), but never a panic.
            tracing::warn!("journal: a bilayer_runs row without a readable run_id was skipped");
            return;
        };
        let run_id: Arc<str> = Arc::from(run_id);
        let mut unreadable = None;
        let mut note = |cause: String| {
            unreadable.get_or_insert_with(|| format!("bilayer_runs: {cause}"));
        };
        let batch_id = row.text(1).unwrap_or_else(|cause| {
            note(cause);
            match scope {
                Scope::Batch(batch) => batch.to_string(),
                Scope::Run(_) => String::new(),
            }
        });
        let input_no = row
            .int(2)
            .and_then(|n| u64::try_from(n).map_err(|_| format!("column input_no: {n}")))
            .unwrap_or_else(|cause| {
                note(cause);
                input_no_of(&run_id)
            });
        let input = row.text(3).unwrap_or_else(|cause| {
            note(cause);
            String::new()
        });
        let started_at = row.int(4).unwrap_or_else(|cause| {
            note(cause);
            0
        });
        self.index.insert(Arc::clone(&run_id), self.records.len());
        self.records.push(RunRecord {
            run: RunRow {
                run_id,
                batch_id: Arc::from(batch_id),
                input_no,
                input,
                started_at,
            },
            hops: Vec::new(),
            calls: Vec::new(),
            outcome: None,
            unreadable,
        });
    }

    fn add_hop(&mut self, row: &impl Cells) {
        let Some((at, run_id)) = self.find(row) else {
            return;
        };
        match decode_hop(row, run_id, &mut self.names) {
            Ok(hop) => self.records[at].hops.push(hop),
            Err(cause) => self.mark(at, "bilayer_hops", cause),
        }
    }

    fn add_call(&mut self, row: &impl Cells) {
        let Some((at, run_id)) = self.find(row) else {
            return;
        };
        match decode_call(row, run_id, &mut self.names) {
            Ok(call) => self.records[at].calls.push(call),
            Err(cause) => self.mark(at, "bilayer_calls", cause),
        }
    }

    fn add_outcome(&mut self, row: &impl Cells) {
        let Some((at, run_id)) = self.find(row) else {
            return;
        };
        match decode_outcome(row, run_id) {
            Ok(outcome) => self.records[at].outcome = Some(outcome),
            Err(cause) => self.mark(at, "bilayer_outcomes", cause),
        }
    }

    /// The records in input order, each run's hops and calls in path order.
    fn finish(mut self) -> Vec<RunRecord> {
        self.records
            .sort_by(|a, b| (a.run.input_no, &a.run.run_id).cmp(&(b.run.input_no, &b.run.run_id)));
        for record in &mut self.records {
            record
                .hops
                .sort_by(|a, b| branch_order(&a.branch, &b.branch).then(a.hop_no.cmp(&b.hop_no)));
            record.calls.sort_by(|a, b| {
                branch_order(&a.branch, &b.branch)
                    .then(a.hop_no.cmp(&b.hop_no))
                    .then_with(|| call_key_order(&a.call_key, &b.call_key))
            });
        }
        self.records
    }
}

/// The input number at the end of a run id (`<batch>-<n>`), for a run row whose own
/// `input_no` cannot be read.
fn input_no_of(run_id: &str) -> u64 {
    run_id
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn decode_hop(row: &impl Cells, run_id: Arc<str>, names: &mut Interner) -> Result<HopRow, String> {
    Ok(HopRow {
        run_id,
        branch: names.get(row.text(1)?),
        hop_no: hop_no(row.int(2)?)?,
        agent: names.get(row.text(3)?),
        version: row.text(4)?,
        output: row.opt_text(5)?,
        error: row.opt_text(6)?,
        decision: row.text(7)?,
        started_at: row.int(8)?,
        elapsed_us: row.int(9)?,
    })
}

fn decode_call(
    row: &impl Cells,
    run_id: Arc<str>,
    names: &mut Interner,
) -> Result<CallRow, String> {
    Ok(CallRow {
        run_id,
        branch: names.get(row.text(1)?),
        hop_no: hop_no(row.int(2)?)?,
        call_key: row.text(3)?,
        target: row.text(4)?,
        result: row.opt_text(5)?,
        error: row.opt_text(6)?,
        elapsed_us: row.int(7)?,
    })
}

fn decode_outcome(row: &impl Cells, run_id: Arc<str>) -> Result<OutcomeRow, String> {
    Ok(OutcomeRow {
        run_id,
        status: row.text(1)?,
        outcome: row.text(2)?,
        finished_at: row.int(3)?,
    })
}

fn decode_batch(row: &impl Cells) -> Result<BatchRow, String> {
    Ok(BatchRow {
        batch_id: row.text(0)?,
        system_digest: row.text(1)?,
        system_summary: row.text(2)?,
        source: row.text(3)?,
        started_at: row.int(4)?,
    })
}

/// Branches in path order: "" (the run's first branch) first, then "0", "0.1", "0.2", "0.10",
/// "1", "2", "10" (numbers compared as numbers, not as text).
pub(crate) fn branch_order(a: &str, b: &str) -> Ordering {
    fn segments(branch: &str) -> impl Iterator<Item = &str> {
        branch.split('.').filter(|segment| !segment.is_empty())
    }
    let mut a = segments(a);
    let mut b = segments(b);
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// Call keys in the order the hop made them: `call:2` before `call:10`, `step:x#1` before
/// `step:x#10` (the trailing number compared as a number).
pub(crate) fn call_key_order(a: &str, b: &str) -> Ordering {
    fn split(key: &str) -> (&str, Option<u64>) {
        let digits = key.len() - key.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (head, tail) = key.split_at(key.len() - digits);
        (head, tail.parse().ok())
    }
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

/// The status a run's outcome row gives it.
fn status_of(outcome_status: Option<&str>) -> RunStatus {
    match outcome_status {
        None => RunStatus::Running,
        Some("ok") => RunStatus::Done,
        Some(_) => RunStatus::Failed,
    }
}

impl RunRecord {
    /// Where the run is: running (no outcome), done (outcome `ok`) or failed.
    pub fn status(&self) -> RunStatus {
        status_of(self.outcome.as_ref().map(|o| o.status.as_str()))
    }
}

impl JournalStore {
    /// The batch most recently begun in this store, if any.
    pub async fn latest_batch(&self) -> Result<Option<BatchRow>, JournalError> {
        self.latest_batch_of(None).await
    }

    /// The batch most recently begun in this store over inputs from `source` (what
    /// `--resume` resumes: another input file's batch in the same store is not this one's).
    pub async fn latest_batch_from(&self, source: &str) -> Result<Option<BatchRow>, JournalError> {
        self.latest_batch_of(Some(source)).await
    }

    async fn latest_batch_of(
        &self,
        source: Option<&str>,
    ) -> Result<Option<BatchRow>, JournalError> {
        let core = self.core();
        let filter = if source.is_some() {
            "WHERE source = $1 "
        } else {
            ""
        };
        let sql = format!(
            "SELECT {BATCH_COLUMNS} FROM bilayer_batches {filter}ORDER BY started_at DESC, \
             batch_id DESC LIMIT 1"
        );
        let row: Option<Result<BatchRow, String>> = on_pool!(&core.pool, |pool, _backend| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            if let Some(source) = source {
                query = query.bind(source);
            }
            match query.fetch_optional(pool).await {
                Ok(Some(row)) => Some(decode_batch(&row)),
                Ok(None) => None,
                Err(e) => return Err(core.query_error("reading the latest batch", &e)),
            }
        });
        row.transpose().map_err(|cause| JournalError::Corrupt {
            url: core.url.clone(),
            run_id: "(none: a batch row)".to_string(),
            table: "bilayer_batches",
            cause,
        })
    }

    /// Records the beginning of a batch, committed before this returns (its runs' rows come
    /// through the writer). Writing the same batch again does nothing.
    pub async fn begin_batch(&self, batch: &BatchRow) -> Result<(), JournalError> {
        let core = self.core();
        on_pool!(&core.pool, |pool, _backend| {
            sqlx::query(
                "INSERT INTO bilayer_batches (batch_id, system_digest, system_summary, source, \
                 started_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(batch.batch_id.as_str())
            .bind(batch.system_digest.as_str())
            .bind(batch.system_summary.as_str())
            .bind(batch.source.as_str())
            .bind(batch.started_at)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(|e| core.query_error(format!("recording batch {}", batch.batch_id), &e))
        })
    }

    /// Every run of `batch_id`, in input order, with its hops, calls and outcome: four
    /// queries whatever the number of runs. A run with a row that cannot be read comes back
    /// with [`RunRecord::unreadable`] set.
    pub async fn load_runs(&self, batch_id: &str) -> Result<Vec<RunRecord>, JournalError> {
        self.load(Scope::Batch(batch_id)).await
    }

    /// One run with its hops, calls and outcome, if the store has it.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, JournalError> {
        Ok(self.load(Scope::Run(run_id)).await?.into_iter().next())
    }

    async fn load(&self, scope: Scope<'_>) -> Result<Vec<RunRecord>, JournalError> {
        let core = self.core();
        let action = match scope {
            Scope::Batch(id) => format!("reading the runs of batch {id}"),
            Scope::Run(id) => format!("reading run {id}"),
        };
        let fail = |e: sqlx::Error| core.query_error(action.as_str(), &e);
        let mut loaded = Loaded::default();
        let runs = scope.sql("bilayer_runs", "r", RUN_COLUMNS);
        let hops = scope.sql("bilayer_hops", "h", HOP_COLUMNS);
        let calls = scope.sql("bilayer_calls", "c", CALL_COLUMNS);
        let outcomes = scope.sql("bilayer_outcomes", "o", OUTCOME_COLUMNS);
        on_pool!(&core.pool, |pool, _backend| {
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(runs))
                .bind(scope.key())
                .fetch(pool);
            while let Some(row) = rows.try_next().await.map_err(fail)? {
                loaded.add_run(&row, scope);
            }
            drop(rows);
            if loaded.records.is_empty() {
                return Ok(Vec::new());
            }
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(hops))
                .bind(scope.key())
                .fetch(pool);
            while let Some(row) = rows.try_next().await.map_err(fail)? {
                loaded.add_hop(&row);
            }
            drop(rows);
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(calls))
                .bind(scope.key())
                .fetch(pool);
            while let Some(row) = rows.try_next().await.map_err(fail)? {
                loaded.add_call(&row);
            }
            drop(rows);
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(outcomes))
                .bind(scope.key())
                .fetch(pool);
            while let Some(row) = rows.try_next().await.map_err(fail)? {
                loaded.add_outcome(&row);
            }
        });
        Ok(loaded.finish())
    }

    /// The hop `hop_no` of `branch` of run `run_id`, if recorded (a redelivered hop checks
    /// whether it already ran).
    pub async fn hop(
        &self,
        run_id: &str,
        branch: &str,
        hop_no: u32,
    ) -> Result<Option<HopRow>, JournalError> {
        let core = self.core();
        let sql = format!(
            "SELECT {HOP_COLUMNS} FROM bilayer_hops h WHERE h.run_id = $1 AND h.branch = $2 \
             AND h.hop_no = $3"
        );
        let decoded: Option<Result<HopRow, String>> = on_pool!(&core.pool, |pool, _backend| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(run_id)
                .bind(branch)
                .bind(i64::from(hop_no))
                .fetch_optional(pool)
                .await
                .map_err(|e| {
                    core.query_error(format!("reading hop {hop_no} of run {run_id}"), &e)
                })?;
            row.map(|row| decode_hop(&row, Arc::from(run_id), &mut Interner::default()))
        });
        decoded.transpose().map_err(|cause| JournalError::Corrupt {
            url: core.url.clone(),
            run_id: run_id.to_string(),
            table: "bilayer_hops",
            cause,
        })
    }

    /// The calls hop `hop_no` of `branch` of run `run_id` made, in the order it made them
    /// (what a hop run again answers its calls with).
    pub async fn recorded_calls(
        &self,
        run_id: &str,
        branch: &str,
        hop_no: u32,
    ) -> Result<Vec<CallRow>, JournalError> {
        let core = self.core();
        let sql = format!(
            "SELECT {CALL_COLUMNS} FROM bilayer_calls c WHERE c.run_id = $1 AND c.branch = $2 \
             AND c.hop_no = $3"
        );
        let run: Arc<str> = Arc::from(run_id);
        let mut names = Interner::default();
        let decoded: Result<Vec<CallRow>, String> = on_pool!(&core.pool, |pool, _backend| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(run_id)
                .bind(branch)
                .bind(i64::from(hop_no))
                .fetch_all(pool)
                .await
                .map_err(|e| {
                    core.query_error(
                        format!("reading the calls of hop {hop_no} of run {run_id}"),
                        &e,
                    )
                })?;
            rows.iter()
                .map(|row| decode_call(row, Arc::clone(&run), &mut names))
                .collect()
        });
        let mut calls = decoded.map_err(|cause| JournalError::Corrupt {
            url: core.url.clone(),
            run_id: run_id.to_string(),
            table: "bilayer_calls",
            cause,
        })?;
        calls.sort_by(|a, b| call_key_order(&a.call_key, &b.call_key));
        Ok(calls)
    }

    /// Runs newest first (by start time), at most `limit`, only those with `status` if given.
    /// A row that cannot be read is shown with what could be read (and logged), not dropped.
    pub async fn list_runs(
        &self,
        status: Option<RunStatus>,
        limit: u64,
    ) -> Result<Vec<RunSummary>, JournalError> {
        let core = self.core();
        let filter = match status {
            None => "",
            Some(RunStatus::Running) => "WHERE o.run_id IS NULL",
            Some(RunStatus::Done) => "WHERE o.status = 'ok'",
            Some(RunStatus::Failed) => "WHERE o.status <> 'ok'",
        };
        // The newest `limit` runs first, then their hop counts: counting inside the sorted
        // query would count the hops of every run in the store.
        let order = "ORDER BY x.started_at DESC, x.batch_id DESC, x.input_no DESC";
        let sql = format!(
            "SELECT x.run_id, x.batch_id, x.input_no, x.started_at, x.status, x.finished_at, \
             (SELECT COUNT(*) FROM bilayer_hops h WHERE h.run_id = x.run_id) \
             FROM (SELECT r.run_id, r.batch_id, r.input_no, r.started_at, o.status, \
             o.finished_at FROM bilayer_runs r LEFT JOIN bilayer_outcomes o \
             ON o.run_id = r.run_id {filter} {} LIMIT $1) x {order}",
            order.replace("x.", "r.")
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        on_pool!(&core.pool, |pool, _backend| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(|e| core.query_error("listing runs", &e))?;
            Ok(rows.iter().filter_map(summary).collect())
        })
    }
}

/// A `list_runs` row; what cannot be read is logged and left at a default.
fn summary(row: &impl Cells) -> Option<RunSummary> {
    let Ok(run_id) = row.text(0) else {
        tracing::warn!("journal: a run without a readable run_id was left out of the list");
        return None;
    };
    let warn = |cause: String| {
        tracing::warn!(run_id = %run_id, "journal: run {run_id} cannot be read fully: {cause}");
    };
    let int = |column: usize| row.int(column).map_err(warn).unwrap_or(0);
    let batch_id = row.text(1).map_err(warn).unwrap_or_default();
    let input_no = u64::try_from(int(2)).unwrap_or_else(|_| input_no_of(&run_id));
    let started_at = int(3);
    let status = row.opt_text(4).map_err(warn).ok().flatten();
    let finished_at = match row.opt_text(4) {
        Ok(Some(_)) => Some(int(5)),
        _ => None,
    };
    let hops = u64::try_from(int(6)).unwrap_or(0);
    Some(RunSummary {
        status: status_of(status.as_deref()),
        run_id,
        batch_id,
        input_no,
        hops,
        started_at,
        finished_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_and_call_keys_sort_in_path_order() {
        let mut branches = vec!["1", "0.10", "", "10", "0", "0.2", "2"];
        branches.sort_by(|a, b| branch_order(a, b));
        assert_eq!(branches, ["", "0", "0.2", "0.10", "1", "2", "10"]);
        let mut keys = vec!["call:10", "step:a#2", "call:2", "call:0", "step:a#10"];
        keys.sort_by(|a, b| call_key_order(a, b));
        assert_eq!(
            keys,
            ["call:0", "call:2", "call:10", "step:a#2", "step:a#10"]
        );
        assert_eq!(input_no_of("b1-42"), 42);
        assert_eq!(input_no_of("nonsense"), 0);
    }
}
