//! The store and the writer against real SQLite files (scratch directories under the system
//! temp dir, removed on drop) and, when `BILAYER_TEST_POSTGRES_URL` names a server, a real
//! PostgreSQL database: each PostgreSQL test gets a fresh schema of its own (the tables have
//! fixed names), selected through the URL's `options=-csearch_path=...` parameter.
//!
//! `cargo test -p bilayer-actors --features sqlite,postgres journal`; the writer's throughput:
//! `cargo test --release -p bilayer-actors --features sqlite journal_writer_throughput -- --ignored --nocapture`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::journal::{
    BatchRow, CallRow, Entry, HopRow, JournalWriter, OutcomeRow, RunRecord, RunRow, RunStatus, Then,
};

#[cfg(feature = "postgres")]
const POSTGRES_ENV: &str = "BILAYER_TEST_POSTGRES_URL";

/// A scratch directory, unique per process and call, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bilayer-journal-{}-{}-{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn url(&self, file: &str) -> String {
        format!("sqlite:{}", self.0.join(file).display())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store to test against: a SQLite file, or a PostgreSQL schema of its own.
struct TestStore {
    store: JournalStore,
    _scratch: Option<Scratch>,
    /// PostgreSQL: the server's URL and the test's schema, dropped when the test is done.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    schema: Option<(String, String)>,
}

impl TestStore {
    /// Closes the store and drops a PostgreSQL test's schema (a failed test leaves it for
    /// inspection; the next run drops it first).
    async fn finish(self) {
        self.store.close().await;
        #[cfg(feature = "postgres")]
        if let Some((url, schema)) = self.schema {
            use sqlx::{Connection, Executor};
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .await
                .expect("drop the test schema");
            let _ = conn.close().await;
        }
    }
}

async fn sqlite_store(label: &str) -> TestStore {
    let scratch = Scratch::new(label);
    let store = JournalStore::open(&scratch.url("runs.db"), StoreOptions::default())
        .await
        .expect("open the SQLite store");
    TestStore {
        store,
        _scratch: Some(scratch),
        schema: None,
    }
}

/// A fresh schema for `label` (dropped first if an earlier run left it) on the test server:
/// the server's URL, the schema, and the URL that makes it the connection's search path.
#[cfg(feature = "postgres")]
async fn postgres_url(label: &str) -> Option<(String, String, String)> {
    use sqlx::{Connection, Executor};
    let Ok(url) = std::env::var(POSTGRES_ENV) else {
        eprintln!("journal: PostgreSQL check skipped: {POSTGRES_ENV} is not set");
        return None;
    };
    let schema = format!("bilayer_journal_test_{label}");
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("connect to the test PostgreSQL server");
    conn.execute(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    )))
    .await
    .expect("create the test schema");
    let _ = conn.close().await;
    let separator = if url.contains('?') { '&' } else { '?' };
    let with_path = format!("{url}{separator}options=-csearch_path%3D{schema}");
    Some((url, schema, with_path))
}

#[cfg(not(feature = "postgres"))]
async fn postgres_url(_label: &str) -> Option<(String, String, String)> {
    None
}

async fn postgres_store(label: &str) -> Option<TestStore> {
    let (url, schema, with_path) = postgres_url(label).await?;
    let store = JournalStore::open(&with_path, StoreOptions::default())
        .await
        .expect("open the PostgreSQL store");
    Some(TestStore {
        store,
        _scratch: None,
        schema: Some((url, schema)),
    })
}

/// The stores a test runs on: SQLite always, PostgreSQL when configured.
async fn stores(label: &str) -> Vec<TestStore> {
    let mut stores = vec![sqlite_store(label).await];
    stores.extend(postgres_store(label).await);
    stores
}

/// Runs raw SQL on the store (to damage it, or look under it).
async fn raw(store: &JournalStore, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    on_pool!(&store.core().pool, |pool, _backend| {
        sqlx::raw_sql(sql).execute(pool).await.expect("raw SQL");
    });
}

fn batch(id: &str, started_at: i64) -> BatchRow {
    BatchRow {
        batch_id: id.to_string(),
        system_digest: "digest".to_string(),
        system_summary: r#"{"agents":["a","b"]}"#.to_string(),
        source: "inputs.jsonl".to_string(),
        started_at,
    }
}

fn run(batch: &str, n: u64, started_at: i64) -> RunRow {
    RunRow {
        run_id: Arc::from(format!("{batch}-{n}")),
        batch_id: Arc::from(batch),
        input_no: n,
        input: format!(r#"{{"order":{n}}}"#),
        started_at,
    }
}

fn hop(run_id: &str, branch: &str, hop_no: u32) -> HopRow {
    HopRow {
        run_id: Arc::from(run_id),
        branch: Arc::from(branch),
        hop_no,
        agent: Arc::from(if hop_no == 0 { "intake" } else { "manager" }),
        version: "v1".to_string(),
        output: Some(format!(r#"{{"hop":{hop_no},"branch":"{branch}"}}"#)),
        error: None,
        decision: r#"{"next":"manager"}"#.to_string(),
        started_at: 1_000 + i64::from(hop_no),
        elapsed_us: 42,
    }
}

fn call(run_id: &str, branch: &str, hop_no: u32, n: u32) -> CallRow {
    CallRow {
        run_id: Arc::from(run_id),
        branch: Arc::from(branch),
        hop_no,
        call_key: format!("call:{n}"),
        target: "database".to_string(),
        result: Some(format!(r#"[{{"n":{n}}}]"#)),
        error: None,
        elapsed_us: 7,
    }
}

fn outcome(run_id: &str, status: &str, finished_at: i64) -> OutcomeRow {
    OutcomeRow {
        run_id: Arc::from(run_id),
        status: status.to_string(),
        outcome: format!(r#"{{"status":"{status}"}}"#),
        finished_at,
    }
}

/// Appends every entry without callbacks and flushes.
async fn write(writer: &JournalWriter, entries: Vec<Entry>) {
    for entry in entries {
        writer.append(entry, None);
    }
    writer.flush().await.expect("flush");
}

/// A run of `batch` with hops on the first branch and a fan-out, calls, and an outcome.
fn full_run(batch: &str, n: u64, status: Option<&str>) -> (RunRecord, Vec<Entry>) {
    let row = run(batch, n, 1_000 + n as i64);
    let id = row.run_id.to_string();
    let mut failed = hop(&id, "0", 1);
    failed.output = None;
    failed.error = Some("timeout".to_string());
    failed.decision = r#"{"dead_letter":"timeout"}"#.to_string();
    let hops = vec![hop(&id, "", 0), failed, hop(&id, "1", 1), hop(&id, "10", 1)];
    let mut failed_call = call(&id, "", 0, 1);
    failed_call.result = None;
    failed_call.error = Some("refused".to_string());
    let calls = vec![
        call(&id, "", 0, 0),
        failed_call,
        call(&id, "", 0, 2),
        call(&id, "", 0, 10),
        call(&id, "1", 1, 0),
    ];
    let outcome = status.map(|status| outcome(&id, status, 2_000 + n as i64));
    let mut entries = vec![Entry::Run(row.clone())];
    // Appended out of order: the load orders them.
    entries.extend(hops.iter().rev().cloned().map(Entry::Hop));
    entries.extend(calls.iter().rev().cloned().map(Entry::Call));
    entries.extend(outcome.iter().cloned().map(Entry::Outcome));
    let record = RunRecord {
        run: row,
        hops,
        calls,
        outcome,
        unreadable: None,
    };
    (record, entries)
}

#[tokio::test]
async fn open_creates_the_file_and_the_tables() {
    let scratch = Scratch::new("open");
    let file = scratch.path().join("runs.db");
    let store = JournalStore::open(
        &format!("sqlite://{}", file.display()),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    assert!(file.is_file(), "the file is created on first use");
    let tables: Vec<String> = on_pool!(&store.core().pool, |pool, _backend| {
        sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'bilayer_%' \
             ORDER BY name",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    });
    assert_eq!(
        tables,
        [
            "bilayer_batches",
            "bilayer_calls",
            "bilayer_hops",
            "bilayer_journal_meta",
            "bilayer_outcomes",
            "bilayer_runs"
        ]
    );
    let mode: String = on_pool!(&store.core().pool, |pool, _backend| {
        sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(mode, "wal");
    store.close().await;
    // Opened again, the tables are there and the version is read back.
    let again = JournalStore::open(&scratch.url("runs.db"), StoreOptions::default())
        .await
        .unwrap();
    assert!(again.latest_batch().await.unwrap().is_none());
    again.close().await;
}

#[tokio::test]
async fn a_store_that_cannot_be_opened_says_why_and_what_to_do() {
    let missing_dir =
        std::env::temp_dir().join(format!("bilayer-no-such-dir-{}", std::process::id()));
    let url = format!("sqlite:{}", missing_dir.join("x.db").display());
    let message = JournalStore::open(&url, StoreOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        format!(
            "cannot open the journal store {url}: the directory {} does not exist; create it or \
             point the store elsewhere (--store, or `store` in the definition's [durability])",
            missing_dir.display()
        )
    );

    let scratch = Scratch::new("unopenable");
    let dir_url = format!("sqlite:{}", scratch.path().display());
    let message = JournalStore::open(&dir_url, StoreOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("is a directory; name a file inside it"),
        "{message}"
    );

    let garbage = scratch.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 8192]).unwrap();
    let message = JournalStore::open(
        &format!("sqlite:{}", garbage.display()),
        StoreOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(message.contains("not a SQLite database"), "{message}");

    let absent = StoreOptions {
        create_if_missing: false,
        ..StoreOptions::default()
    };
    let message = JournalStore::open(&scratch.url("absent.db"), absent.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("absent.db does not exist; check the path"),
        "{message}"
    );
    assert!(!scratch.path().join("absent.db").exists(), "not created");

    let message = JournalStore::open("mysql://root@db/runs", StoreOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "cannot open the journal store `mysql://root@db/runs`: not a store URL; use sqlite:PATH, \
         sqlite://PATH, postgres://... or postgresql://..."
    );
    let message = JournalStore::open("runs.db", StoreOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("`runs.db`: not a store URL"), "{message}");

    // A server that is not there: the URL (password redacted) and the refusal.
    let message = JournalStore::open(
        "postgres://bob:s3cret@127.0.0.1:1/runs",
        StoreOptions {
            connect_timeout: Duration::from_secs(5),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap_err()
    .to_string();
    #[cfg(feature = "postgres")]
    assert!(
        message.starts_with("cannot open the journal store postgres://bob:***@127.0.0.1:1/runs: ")
            && message.contains("refused")
            && message.contains("check the URL, that the server is running"),
        "{message}"
    );
    #[cfg(not(feature = "postgres"))]
    assert!(
        message.contains("cargo build --features postgres"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
}

#[tokio::test]
async fn a_store_without_a_journal_is_refused_when_not_creating() {
    let scratch = Scratch::new("not-journal");
    // An SQLite file, but not a journal.
    let other = JournalStore::open(&scratch.url("other.db"), StoreOptions::default())
        .await
        .unwrap();
    raw(&other, "DROP TABLE bilayer_journal_meta").await;
    other.close().await;
    let reading = StoreOptions {
        create_if_missing: false,
        ..StoreOptions::default()
    };
    let message = JournalStore::open(&scratch.url("other.db"), reading)
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("it holds no bilayer journal"), "{message}");
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    for test in stores("newer").await {
        let store = &test.store;
        raw(
            store,
            "UPDATE bilayer_journal_meta SET value = '2' WHERE key = 'schema_version'",
        )
        .await;
        // The tests' URLs carry no password: the store's (redacted) URL is the URL.
        let url = store.url().to_string();
        let reopened = JournalStore::open(&url, StoreOptions::default()).await;
        assert_eq!(
            reopened.unwrap_err().to_string(),
            format!(
                "the journal store {url} has schema version 2, and this bilayer reads version 1 \
                 only: use the bilayer that wrote it (or a newer one), or another store"
            )
        );
        test.finish().await;
    }
}

#[tokio::test]
async fn every_entry_type_round_trips() {
    for test in stores("round_trip").await {
        let store = &test.store;
        assert_eq!(store.latest_batch().await.unwrap(), None);
        store.begin_batch(&batch("b0", 10)).await.unwrap();
        store.begin_batch(&batch("b1", 20)).await.unwrap();
        // Again: nothing changes.
        store.begin_batch(&batch("b1", 20)).await.unwrap();
        assert_eq!(store.latest_batch().await.unwrap(), Some(batch("b1", 20)));

        let writer = store.writer();
        let (done, done_entries) = full_run("b1", 1, Some("ok"));
        let (running, running_entries) = full_run("b1", 2, None);
        let (other, other_entries) = full_run("b0", 1, Some("error"));
        write(&writer, done_entries).await;
        write(&writer, running_entries).await;
        write(&writer, other_entries).await;

        let loaded = store.load_runs("b1").await.unwrap();
        assert_eq!(
            loaded,
            vec![done.clone(), running.clone()],
            "{}",
            store.url()
        );
        assert_eq!(loaded[0].status(), RunStatus::Done);
        assert_eq!(loaded[1].status(), RunStatus::Running);
        assert_eq!(store.load_runs("b0").await.unwrap(), vec![other.clone()]);
        assert_eq!(store.load_runs("nope").await.unwrap(), vec![]);
        assert_eq!(store.run("b1-1").await.unwrap(), Some(done.clone()));
        assert_eq!(
            store.run("b0-1").await.unwrap().unwrap().status(),
            RunStatus::Failed
        );
        assert_eq!(store.run("b9-9").await.unwrap(), None);

        assert_eq!(
            store.hop("b1-1", "0", 1).await.unwrap().as_ref(),
            done.hops.iter().find(|h| &*h.branch == "0")
        );
        assert_eq!(store.hop("b1-1", "0", 7).await.unwrap(), None);
        let calls = store.recorded_calls("b1-1", "", 0).await.unwrap();
        let keys: Vec<&str> = calls.iter().map(|c| c.call_key.as_str()).collect();
        assert_eq!(keys, ["call:0", "call:1", "call:2", "call:10"]);
        assert_eq!(calls[1].error.as_deref(), Some("refused"));
        assert!(store
            .recorded_calls("b1-1", "", 5)
            .await
            .unwrap()
            .is_empty());
        writer.close().await.unwrap();
        test.finish().await;
    }
}

#[tokio::test]
async fn callbacks_run_after_the_commit_in_append_order() {
    for test in stores("callbacks").await {
        let store = &test.store;
        let writer = store.writer();
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let order = Arc::new(Mutex::new(Vec::new()));
        let count = 3000_u32;
        for n in 0..count {
            let order = Arc::clone(&order);
            let seen_tx = seen_tx.clone();
            let then: Then = Box::new(move |result| {
                result.expect("committed");
                order.lock().unwrap().push(n);
                let _ = seen_tx.send(n);
            });
            writer.append(Entry::Hop(hop("r-1", "", n)), Some(then));
        }
        // What a callback says is committed is readable by then.
        let first = seen_rx.recv().await.unwrap();
        assert!(store.hop("r-1", "", first).await.unwrap().is_some());
        writer.flush().await.unwrap();
        assert_eq!(*order.lock().unwrap(), (0..count).collect::<Vec<_>>());

        // A failed batch: every callback of it gets the error, and so does the next flush.
        raw(store, "DROP TABLE bilayer_calls").await;
        let errors = Arc::new(Mutex::new(Vec::new()));
        for n in 0..3 {
            let errors = Arc::clone(&errors);
            writer.append(
                Entry::Call(call("r-1", "", 0, n)),
                Some(Box::new(move |result| {
                    errors.lock().unwrap().push(result.unwrap_err().to_string())
                })),
            );
        }
        let flushed = writer.flush().await.unwrap_err().to_string();
        assert!(flushed.contains("journal entries failed"), "{flushed}");
        let errors = errors.lock().unwrap().clone();
        assert_eq!(errors.len(), 3);
        assert!(errors.iter().all(|e| e == &flushed), "{errors:?}");
        // The error was reported once; the writer goes on.
        writer.append(Entry::Hop(hop("r-2", "", 0)), None);
        writer.flush().await.unwrap();
        assert!(store.hop("r-2", "", 0).await.unwrap().is_some());

        // A panicking callback does not stop the writer.
        writer.append(
            Entry::Hop(hop("r-3", "", 0)),
            Some(Box::new(|_| panic!("callback"))),
        );
        writer.append(Entry::Hop(hop("r-3", "", 1)), None);
        writer.flush().await.unwrap();
        assert!(store.hop("r-3", "", 1).await.unwrap().is_some());

        // Closed: later appends are refused at once, flushes too; clones share the task.
        let clone = writer.clone();
        writer.close().await.unwrap();
        let refused = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&refused);
        clone.append(
            Entry::Hop(hop("r-4", "", 0)),
            Some(Box::new(move |result| *slot.lock().unwrap() = Some(result))),
        );
        let refused = refused.lock().unwrap().take().expect("called at once");
        assert!(matches!(refused, Err(JournalError::WriterStopped { .. })));
        assert!(matches!(
            clone.flush().await,
            Err(JournalError::WriterStopped { .. })
        ));
        test.finish().await;
    }
}

#[tokio::test]
async fn writing_a_row_again_keeps_the_first() {
    for test in stores("idempotent").await {
        let store = &test.store;
        let writer = store.writer();
        let (record, entries) = full_run("b", 1, Some("ok"));
        write(&writer, entries.clone()).await;
        // A redelivered hop writes its rows again, some of them different: the first stand.
        let mut changed = entries;
        for entry in &mut changed {
            match entry {
                Entry::Hop(hop) => hop.output = Some("\"second\"".to_string()),
                Entry::Outcome(outcome) => outcome.status = "error".to_string(),
                _ => {}
            }
        }
        write(&writer, changed.clone()).await;
        assert_eq!(store.run("b-1").await.unwrap(), Some(record));
        // The same rows twice in one batch (one statement): the first stands there too.
        let (record, entries) = full_run("b", 2, Some("ok"));
        let twice = changed.into_iter().map(|entry| match entry {
            Entry::Run(mut run) => {
                run.run_id = record.run.run_id.clone();
                Entry::Run(run)
            }
            Entry::Hop(mut hop) => {
                hop.run_id = record.run.run_id.clone();
                Entry::Hop(hop)
            }
            Entry::Call(mut call) => {
                call.run_id = record.run.run_id.clone();
                Entry::Call(call)
            }
            Entry::Outcome(mut outcome) => {
                outcome.run_id = record.run.run_id.clone();
                Entry::Outcome(outcome)
            }
        });
        // Appended without yielding (the test's runtime has one thread, the writer's task
        // waits for the flush): one batch.
        write(&writer, entries.into_iter().chain(twice).collect()).await;
        assert_eq!(store.run("b-2").await.unwrap(), Some(record));
        writer.close().await.unwrap();
        test.finish().await;
    }
}

#[tokio::test]
async fn a_batch_loads_grouped_by_run_in_input_order() {
    for test in stores("grouping").await {
        let store = &test.store;
        let writer = store.writer();
        let mut expected = Vec::new();
        let mut entries = Vec::new();
        // 600 runs, appended interleaved (as concurrent runs write), with another batch's.
        for n in (1..=600).rev() {
            let (record, mut own) = full_run("big", n, (n % 3 != 0).then_some("ok"));
            expected.push(record);
            entries.append(&mut own);
            entries.extend(full_run("small", n, Some("ok")).1.into_iter().take(2));
        }
        entries.sort_by_key(|entry| match entry {
            Entry::Run(_) => 0,
            Entry::Hop(hop) => 1 + hop.hop_no,
            Entry::Call(_) => 5,
            Entry::Outcome(_) => 6,
        });
        write(&writer, entries).await;
        expected.reverse();
        let loaded = store.load_runs("big").await.unwrap();
        assert_eq!(loaded.len(), 600);
        assert_eq!(loaded, expected);
        assert_eq!(store.load_runs("small").await.unwrap().len(), 600);
        writer.close().await.unwrap();
        test.finish().await;
    }
}

#[tokio::test]
async fn a_damaged_row_marks_its_run_only() {
    for test in stores("corrupt").await {
        let store = &test.store;
        let writer = store.writer();
        let mut expected = Vec::new();
        for n in 1..=3 {
            let (record, entries) = full_run("b", n, Some("ok"));
            expected.push(record);
            write(&writer, entries).await;
        }
        let sqlite = store.url().starts_with("sqlite");
        if sqlite {
            // Text where an integer belongs, a blob where text belongs.
            raw(
                store,
                "UPDATE bilayer_hops SET started_at = 'yesterday' WHERE run_id = 'b-2' \
                 AND branch = '1'",
            )
            .await;
            raw(
                store,
                "UPDATE bilayer_outcomes SET outcome = x'00ff' WHERE run_id = 'b-3'",
            )
            .await;
        } else {
            // PostgreSQL enforces types: a NULL where a value belongs.
            raw(
                store,
                "ALTER TABLE bilayer_hops ALTER COLUMN decision DROP NOT NULL; \
                 UPDATE bilayer_hops SET decision = NULL WHERE run_id = 'b-2' AND branch = '1'; \
                 ALTER TABLE bilayer_outcomes ALTER COLUMN outcome DROP NOT NULL; \
                 UPDATE bilayer_outcomes SET outcome = NULL WHERE run_id = 'b-3'",
            )
            .await;
        }
        let loaded = store.load_runs("b").await.unwrap();
        assert_eq!(loaded[0], expected[0], "an intact run loads whole");
        let hop_cause = loaded[1].unreadable.clone().expect("run 2 is unreadable");
        let outcome_cause = loaded[2].unreadable.clone().expect("run 3 is unreadable");
        if sqlite {
            assert!(
                hop_cause.starts_with("bilayer_hops: column started_at: "),
                "{hop_cause}"
            );
            assert!(
                outcome_cause.starts_with("bilayer_outcomes: column outcome: "),
                "{outcome_cause}"
            );
        } else {
            assert!(
                hop_cause.starts_with("bilayer_hops: column decision: "),
                "{hop_cause}"
            );
            assert!(
                outcome_cause.contains("column outcome: "),
                "{outcome_cause}"
            );
        }
        // The rest of a damaged run is still there to show.
        assert_eq!(loaded[1].hops.len(), expected[1].hops.len() - 1);
        assert_eq!(loaded[2].outcome, None);
        // Read one at a time: the same marks, and the damaged hop itself is an error.
        assert_eq!(
            store.run("b-2").await.unwrap().unwrap().unreadable,
            Some(hop_cause)
        );
        let error = store.hop("b-2", "1", 1).await.unwrap_err().to_string();
        assert!(
            error.contains("run b-2: a row of bilayer_hops cannot be read"),
            "{error}"
        );
        writer.close().await.unwrap();
        test.finish().await;
    }
}

#[tokio::test]
async fn runs_are_listed_newest_first_filtered_and_limited() {
    for test in stores("list").await {
        let store = &test.store;
        let writer = store.writer();
        let statuses = [
            Some("ok"),
            Some("error"),
            None,
            Some("dead_letter"),
            Some("ok"),
        ];
        for (n, status) in statuses.iter().enumerate() {
            write(&writer, full_run("b", n as u64 + 1, *status).1).await;
        }
        let ids = |runs: Vec<crate::journal::RunSummary>| {
            runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>()
        };
        let all = store.list_runs(None, 50).await.unwrap();
        assert_eq!(ids(all.clone()), ["b-5", "b-4", "b-3", "b-2", "b-1"]);
        let first = &all[4];
        assert_eq!(
            (
                first.batch_id.as_str(),
                first.input_no,
                first.status,
                first.hops
            ),
            ("b", 1, RunStatus::Done, 4)
        );
        assert_eq!((first.started_at, first.finished_at), (1_001, Some(2_001)));
        assert_eq!(all[2].finished_at, None);
        assert_eq!(ids(store.list_runs(None, 2).await.unwrap()), ["b-5", "b-4"]);
        assert_eq!(
            ids(store.list_runs(Some(RunStatus::Done), 50).await.unwrap()),
            ["b-5", "b-1"]
        );
        assert_eq!(
            ids(store.list_runs(Some(RunStatus::Failed), 50).await.unwrap()),
            ["b-4", "b-2"]
        );
        assert_eq!(
            ids(store.list_runs(Some(RunStatus::Running), 50).await.unwrap()),
            ["b-3"]
        );
        writer.close().await.unwrap();
        test.finish().await;
    }
}

#[tokio::test]
async fn prune_and_compact_leave_running_runs_alone() {
    for test in stores("prune").await {
        let store = &test.store;
        let writer = store.writer();
        let now = unix_millis();
        let day = 86_400_000;
        let mut entries = Vec::new();
        // 1: finished 10 days ago; 2: finished an hour ago; 3: running since 10 days ago.
        for (n, finished) in [
            (1, Some(now - 10 * day)),
            (2, Some(now - 3_600_000)),
            (3, None),
        ] {
            let (_, own) = full_run("b", n, None);
            entries.extend(own);
            if let Some(at) = finished {
                entries.push(Entry::Outcome(outcome(&format!("b-{n}"), "ok", at)));
            }
        }
        write(&writer, entries).await;
        let week = Duration::from_secs(7 * 86_400);

        assert_eq!(store.prune(week, true).await.unwrap(), 1, "compacts run 1");
        let compacted = store.run("b-1").await.unwrap().unwrap();
        assert!(compacted.hops.is_empty() && compacted.calls.is_empty());
        assert!(compacted.outcome.is_some(), "the outcome stays");
        assert_eq!(
            store.prune(week, true).await.unwrap(),
            0,
            "nothing left to compact"
        );

        assert_eq!(store.prune(week, false).await.unwrap(), 1, "prunes run 1");
        assert_eq!(store.run("b-1").await.unwrap(), None);
        assert_eq!(store.run("b-2").await.unwrap().unwrap().hops.len(), 4);

        assert_eq!(
            store.prune(Duration::ZERO, false).await.unwrap(),
            1,
            "0s: run 2"
        );
        assert_eq!(store.run("b-2").await.unwrap(), None);
        let running = store.run("b-3").await.unwrap().unwrap();
        assert_eq!(
            (running.hops.len(), running.calls.len()),
            (4, 5),
            "never touched"
        );
        assert_eq!(store.prune(Duration::ZERO, true).await.unwrap(), 0);
        writer.close().await.unwrap();
        test.finish().await;
    }
}

#[tokio::test]
async fn power_loss_safe_stores_sync_fully() {
    let scratch = Scratch::new("full");
    let options = StoreOptions {
        power_loss_safe: true,
        ..StoreOptions::default()
    };
    let store = JournalStore::open(&scratch.url("runs.db"), options)
        .await
        .unwrap();
    let synchronous: i64 = on_pool!(&store.core().pool, |pool, _backend| {
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(synchronous, 2, "FULL");
    store.close().await;
}

/// The writer's throughput on SQLite: 200 000 rows as W1 writes them (per run: its run row,
/// four hops of ~200 bytes each with a commit callback, its outcome), appended as fast as
/// possible, then flushed. Run in release mode (see the module doc); prints rows/s and runs/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it in release mode with --ignored --nocapture"]
async fn journal_writer_throughput() {
    let rows: u64 = std::env::var("JOURNAL_ROWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let runs = rows / 6;
    let mut configurations = Vec::new();
    for power_loss_safe in [false, true] {
        let scratch = Scratch::new("throughput");
        let options = StoreOptions {
            power_loss_safe,
            ..StoreOptions::default()
        };
        let store = JournalStore::open(&scratch.url("runs.db"), options)
            .await
            .unwrap();
        let label = format!("SQLite, power_loss_safe={power_loss_safe}");
        configurations.push((label, store, Some(scratch), None));
    }
    if let Some((url, schema, with_path)) = postgres_url("throughput").await {
        let store = JournalStore::open(&with_path, StoreOptions::default())
            .await
            .unwrap();
        configurations.push(("PostgreSQL".to_string(), store, None, Some((url, schema))));
    }
    for (label, store, scratch, schema) in configurations {
        let writer = store.writer();
        let agents: [Arc<str>; 4] = ["intake", "manager", "fulfillment", "audit"].map(Arc::from);
        let batch: Arc<str> = Arc::from("7f3a9c21e0b44d1a");
        let branch: Arc<str> = Arc::from("");
        let released = Arc::new(AtomicUsize::new(0));
        let output = r#"{"order_id":"ORD-000123","status":"shipped","total":1234.5,"items":3,"warehouse":"north","carrier":"dhl","eta_days":2,"priority":false,"note":"ok"}"#;
        let started = std::time::Instant::now();
        for n in 0..runs {
            let run_id: Arc<str> = Arc::from(format!("{batch}-{n}"));
            writer.append(
                Entry::Run(RunRow {
                    run_id: Arc::clone(&run_id),
                    batch_id: Arc::clone(&batch),
                    input_no: n,
                    input: r#"{"order_id":"ORD-000123","quantity":3,"price":411.5}"#.to_string(),
                    started_at: 1_765_000_000_000,
                }),
                None,
            );
            for (hop_no, agent) in agents.iter().enumerate() {
                let released = Arc::clone(&released);
                writer.append(
                    Entry::Hop(HopRow {
                        run_id: Arc::clone(&run_id),
                        branch: Arc::clone(&branch),
                        hop_no: hop_no as u32,
                        agent: Arc::clone(agent),
                        version: "3".to_string(),
                        output: Some(output.to_string()),
                        error: None,
                        decision: r#"{"next":"audit"}"#.to_string(),
                        started_at: 1_765_000_000_000,
                        elapsed_us: 120,
                    }),
                    Some(Box::new(move |result| {
                        if result.is_ok() {
                            released.fetch_add(1, Ordering::Relaxed);
                        }
                    })),
                );
            }
            writer.append(
                Entry::Outcome(OutcomeRow {
                    run_id,
                    status: "ok".to_string(),
                    outcome: output.to_string(),
                    finished_at: 1_765_000_000_100,
                }),
                None,
            );
        }
        writer.flush().await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(released.load(Ordering::Relaxed) as u64, runs * 4);
        let bytes: u64 = ["runs.db", "runs.db-wal"]
            .iter()
            .filter_map(|file| std::fs::metadata(scratch.as_ref()?.path().join(file)).ok())
            .map(|m| m.len())
            .sum();
        let seconds = elapsed.as_secs_f64();
        println!(
            "journal writer, {label}: {} rows ({runs} runs) in {elapsed:?}: {:.0} rows/s, \
             {:.0} runs/s; {bytes} bytes in the SQLite files ({:.0} per row)",
            runs * 6,
            (runs * 6) as f64 / seconds,
            runs as f64 / seconds,
            bytes as f64 / (runs * 6) as f64
        );
        // Reading back: a resume's bulk load of the whole batch, a listing.
        let started = std::time::Instant::now();
        let loaded = store.load_runs(&batch).await.unwrap();
        let load = started.elapsed();
        assert_eq!(loaded.len() as u64, runs);
        assert!(loaded
            .iter()
            .all(|r| r.hops.len() == 4 && r.outcome.is_some()));
        let started = std::time::Instant::now();
        assert_eq!(store.list_runs(None, 50).await.unwrap().len(), 50);
        println!(
            "  load_runs of {runs} runs ({} rows): {load:?}; list_runs 50: {:?}",
            runs * 6,
            started.elapsed()
        );
        writer.close().await.unwrap();
        TestStore {
            store,
            _scratch: scratch,
            schema,
        }
        .finish()
        .await;
    }
}
