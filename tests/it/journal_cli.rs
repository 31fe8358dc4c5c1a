//! `bilayer runs list|show|prune` (issue 24 item 5, JOURNAL_CONTRACT.md "CLI") run as a user
//! runs them, on a SQLite journal filled through the Rust API (`bilayer::journal`): the table
//! and `--json` forms, the filters, an unknown run, prune and compact, and the errors of a bad
//! age or a missing store.
//!
//! Scratch stores live in unique directories under `std::env::temp_dir()`, removed on drop;
//! every child runs under a deadline.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bilayer::journal::{
    BatchRow, CallRow, Entry, HopRow, JournalStore, OutcomeRow, RunRow, StoreOptions,
};
use serde_json::{json, Value};

use crate::concurrency::bilayer_command;
use crate::hot_reload_support::Scratch;

const DEADLINE: Duration = Duration::from_secs(60);
const STARTED: i64 = 1_765_000_000_000;
const DAY_MS: i64 = 86_400_000;

/// The URL of the SQLite store in `scratch`.
fn store_in(scratch: &Scratch) -> String {
    format!("sqlite:{}", scratch.file("runs.db").display())
}

struct Done {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args` under the deadline (killed if it overruns).
fn bilayer(args: &[&str]) -> Done {
    let mut child = bilayer_command(Path::new(env!("CARGO_MANIFEST_DIR")), args)
        .spawn()
        .expect("spawn the bilayer binary");
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!(
                "`bilayer {}` did not finish within {DEADLINE:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("collect the output");
    Done {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

impl Done {
    fn ok(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }
}

fn hop(run_id: &str, hop_no: u32, agent: &str, decision: &str) -> HopRow {
    HopRow {
        run_id: Arc::from(run_id),
        branch: Arc::from(""),
        hop_no,
        agent: Arc::from(agent),
        version: format!("v{}", hop_no + 1),
        output: Some(format!(r#"{{"agent":"{agent}"}}"#)),
        error: None,
        decision: decision.to_string(),
        started_at: STARTED + 10 + i64::from(hop_no),
        elapsed_us: 1_500,
    }
}

/// Four runs of batch `b1`: 1 done (two hops, the first with two calls), 2 failed, 3 running
/// (its second hop in progress: a call recorded, not the hop), 4 a dead letter. Outcomes
/// finished `finished_ago` ms before now.
async fn fill(url: &str, finished_ago: i64) {
    let store = JournalStore::open(url, StoreOptions::default())
        .await
        .expect("open the store");
    store
        .begin_batch(&BatchRow {
            batch_id: "b1".to_string(),
            system_digest: "d".to_string(),
            system_summary: "{}".to_string(),
            source: "orders.jsonl".to_string(),
            started_at: STARTED,
        })
        .await
        .unwrap();
    let writer = store.writer();
    let finished = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - finished_ago;
    for n in 1..=4_u64 {
        let id = format!("b1-{n}");
        writer.append(
            Entry::Run(RunRow {
                run_id: Arc::from(id.as_str()),
                batch_id: Arc::from("b1"),
                input_no: n,
                input: format!(r#"{{"order":{n}}}"#),
                started_at: STARTED + n as i64,
            }),
            None,
        );
        writer.append(
            Entry::Hop(hop(&id, 0, "intake", r#"{"next":"manager"}"#)),
            None,
        );
        let status = match n {
            1 => Some("ok"),
            2 => Some("error"),
            4 => Some("dead_letter"),
            _ => None,
        };
        if n == 1 {
            writer.append(Entry::Hop(hop(&id, 1, "manager", r#""terminal""#)), None);
            for (k, (result, error)) in [(Some("[1,2]"), None), (None, Some("refused"))]
                .into_iter()
                .enumerate()
            {
                writer.append(
                    Entry::Call(CallRow {
                        run_id: Arc::from(id.as_str()),
                        branch: Arc::from(""),
                        hop_no: 0,
                        call_key: format!("call:{k}"),
                        target: "database".to_string(),
                        result: result.map(str::to_string),
                        error: error.map(str::to_string),
                        elapsed_us: 250,
                    }),
                    None,
                );
            }
        }
        if n == 3 {
            writer.append(
                Entry::Call(CallRow {
                    run_id: Arc::from(id.as_str()),
                    branch: Arc::from(""),
                    hop_no: 1,
                    call_key: "call:0".to_string(),
                    target: "llm".to_string(),
                    result: Some("plain text".to_string()),
                    error: None,
                    elapsed_us: 2_000_000,
                }),
                None,
            );
        }
        if let Some(status) = status {
            writer.append(
                Entry::Outcome(OutcomeRow {
                    run_id: Arc::from(id.as_str()),
                    status: status.to_string(),
                    outcome: format!(r#"{{"input":{n},"status":"{status}","run_id":"{id}"}}"#),
                    finished_at: finished,
                }),
                None,
            );
        }
    }
    writer.close().await.expect("commit");
    store.close().await;
}

fn filled(label: &str, finished_ago: i64) -> (Scratch, String) {
    let scratch = Scratch::new(label);
    let url = store_in(&scratch);
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(fill(&url, finished_ago));
    (scratch, url)
}

#[test]
fn list_prints_runs_newest_first_as_a_table_or_json_lines() {
    let (_scratch, url) = filled("list", 0);
    let done = bilayer(&["runs", "list", "--store", &url, "--json"]).ok();
    let lines = done.json_lines();
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b1-4", "b1-3", "b1-2", "b1-1"]);
    let first = &lines[3];
    let finished = first["finished_at"]
        .as_i64()
        .expect("a finished run has finished_at");
    assert_eq!(
        first,
        &json!({"run_id": "b1-1", "batch_id": "b1", "input": 1, "status": "done", "hops": 2,
                "started_at": STARTED + 1, "finished_at": finished})
    );
    assert_eq!(lines[1]["status"], "running");
    assert_eq!(lines[1]["finished_at"], Value::Null);
    assert_eq!(
        lines[0]["status"], "failed",
        "a dead letter is a failed run"
    );

    let failed = bilayer(&[
        "runs", "list", "--store", &url, "--json", "--status", "failed",
    ])
    .ok();
    let ids: Vec<String> = failed
        .json_lines()
        .iter()
        .map(|l| l["run_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["b1-4", "b1-2"]);
    let limited = bilayer(&["runs", "list", "--store", &url, "--json", "--limit", "1"]).ok();
    assert_eq!(limited.json_lines().len(), 1);

    let table = bilayer(&["runs", "list", "--store", &url]).ok();
    let rows: Vec<Vec<&str>> = table
        .stdout
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["RUN_ID", "INPUT", "STATUS", "HOPS", "STARTED", "(UTC)", "FINISHED", "(UTC)"]
    );
    assert_eq!(rows.len(), 5, "{}", table.stdout);
    assert_eq!(&rows[2][..4], ["b1-3", "3", "running", "1"]);
    assert_eq!(rows[2].last(), Some(&"-"), "a running run has no end");
    assert_eq!(
        &rows[4][..6],
        ["b1-1", "1", "done", "2", "2025-12-06", "05:46:40.001"]
    );
    assert!(table.stderr.is_empty(), "{}", table.stderr);
}

#[test]
fn show_prints_hops_with_their_calls_and_the_outcome() {
    let (_scratch, url) = filled("show", 0);
    let done = bilayer(&["runs", "show", "b1-1", "--store", &url, "--json"]).ok();
    let document: Value = serde_json::from_str(&done.stdout).expect("one JSON document");
    let finished = document["finished_at"].as_i64().expect("finished_at");
    assert_eq!(
        document,
        json!({
            "run_id": "b1-1", "batch_id": "b1", "input_no": 1, "input": {"order": 1},
            "status": "done", "started_at": STARTED + 1, "finished_at": finished,
            "hops": [
                {"branch": "", "hop_no": 0, "agent": "intake", "version": "v1",
                 "output": {"agent": "intake"}, "error": null, "decision": {"next": "manager"},
                 "started_at": STARTED + 10, "elapsed_us": 1500,
                 "calls": [
                    {"key": "call:0", "target": "database", "result": [1, 2], "error": null,
                     "elapsed_us": 250},
                    {"key": "call:1", "target": "database", "result": null,
                     "error": "refused", "elapsed_us": 250}
                 ]},
                {"branch": "", "hop_no": 1, "agent": "manager", "version": "v2",
                 "output": {"agent": "manager"}, "error": null, "decision": "terminal",
                 "started_at": STARTED + 11, "elapsed_us": 1500, "calls": []}
            ],
            "outcome": {"input": 1, "status": "ok", "run_id": "b1-1"}
        })
    );

    // A run stopped inside a hop: the hop's recorded calls, the hop marked in progress.
    let running = bilayer(&["runs", "show", "b1-3", "--store", &url, "--json"]).ok();
    let document: Value = serde_json::from_str(&running.stdout).unwrap();
    assert_eq!(document["status"], "running");
    assert_eq!(document["outcome"], Value::Null);
    assert_eq!(
        document["hops"][1],
        json!({"branch": "", "hop_no": 1, "in_progress": true, "calls": [
            {"key": "call:0", "target": "llm", "result": "plain text", "error": null,
             "elapsed_us": 2_000_000}]})
    );

    let text = bilayer(&["runs", "show", "b1-1", "--store", &url]).ok();
    for expected in [
        "run b1-1  (batch b1, input 1)  done",
        "input     {\"order\":1}",
        "hop 0  intake (version v1)  at 2025-12-06 05:46:40.010 UTC, 1.5 ms",
        "  decision  {\"next\":\"manager\"}",
        "  call call:0 -> database, 250 µs",
        "    result  [1,2]",
        "    error   refused",
        "outcome   {\"input\":1,\"status\":\"ok\",\"run_id\":\"b1-1\"}",
    ] {
        assert!(
            text.stdout.contains(expected),
            "{expected:?} in:\n{}",
            text.stdout
        );
    }
}

#[test]
fn an_unknown_run_exits_1_naming_the_run_and_the_store() {
    let (_scratch, url) = filled("unknown", 0);
    let done = bilayer(&["runs", "show", "b9-9", "--store", &url]);
    assert_eq!(done.code, Some(1));
    assert_eq!(
        done.stderr.trim_end(),
        format!("error: no run b9-9 in {url}")
    );
    assert!(done.stdout.is_empty());
}

#[test]
fn prune_deletes_or_compacts_old_finished_runs_only() {
    // Finished ten days ago; run 3 is running.
    let (_scratch, url) = filled("prune", 10 * DAY_MS);
    let kept = bilayer(&["runs", "prune", "--store", &url, "--older-than", "11d"]).ok();
    assert_eq!(kept.stdout, "pruned 0 runs\n");

    let compacted = bilayer(&[
        "runs",
        "prune",
        "--store",
        &url,
        "--older-than",
        "7d",
        "--compact",
    ])
    .ok();
    assert_eq!(compacted.stdout, "compacted 3 runs\n");
    let shown = bilayer(&["runs", "show", "b1-1", "--store", &url, "--json"]).ok();
    let document: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(document["hops"], json!([]));
    assert_eq!(document["outcome"]["status"], "ok", "the outcome stays");

    let pruned = bilayer(&["runs", "prune", "--store", &url, "--older-than", "0s"]).ok();
    assert_eq!(pruned.stdout, "pruned 3 runs\n");
    let left = bilayer(&["runs", "list", "--store", &url, "--json"]).ok();
    let left = left.json_lines();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (&left[0]["run_id"], &left[0]["status"], &left[0]["hops"]),
        (&json!("b1-3"), &json!("running"), &json!(1)),
        "a running run is never touched"
    );
}

#[test]
fn a_bad_age_or_a_missing_store_says_what_to_do() {
    let (scratch, url) = filled("errors", 0);
    let done = bilayer(&["runs", "prune", "--store", &url, "--older-than", "7w"]);
    assert_eq!(done.code, Some(2), "a usage error");
    assert!(
        done.stderr.contains(
            "`7w` is not an age: write a number and a unit, s (seconds), m (minutes), h (hours) \
             or d (days), e.g. 7d, 12h or 0s"
        ),
        "{}",
        done.stderr
    );

    let missing = scratch.file("missing.db");
    let missing_url = format!("sqlite:{}", missing.display());
    let done = bilayer(&["runs", "list", "--store", &missing_url]);
    assert_eq!(done.code, Some(1));
    assert_eq!(
        done.stderr.trim_end(),
        format!(
            "error: cannot open the journal store {missing_url}: the file {} does not exist; \
             check the path (`bilayer run --store URL` creates the store)",
            missing.display()
        )
    );
    assert!(!Path::new(&missing).exists(), "listing creates no store");

    let done = bilayer(&["runs", "list", "--store", "mysql://db/runs"]);
    assert_eq!(done.code, Some(1));
    assert!(
        done.stderr.contains("not a store URL; use sqlite:PATH"),
        "{}",
        done.stderr
    );
}
