//! Durable runs (issue 24), tested as a user meets them: `bilayer run --store URL`, the process
//! killed with SIGKILL, `bilayer run ... --resume`, and `bilayer runs list|show|prune`, on real
//! processes, a real SQLite file and (when `BILAYER_TEST_POSTGRES_URL` names a server) a real
//! PostgreSQL database, with a loopback OpenAI-compatible model that counts what it is asked.
//! Written from the issue and the contract shared by its builders (the store's tables and the
//! CLI), before the implementation, by a tester who has not read it.
//!
//! Contract (issue 24, items 1-3, 5-7; the CLI and tables of the shared contract):
//! - with a store every outcome line gains `"run_id": "<batch_id>-<input>"`; without one the
//!   lines are today's, byte for byte, and nothing is written anywhere;
//! - `--resume` prints one outcome line per input line: those recorded before the crash read
//!   back with `"replayed": true` and not run again, the others run (in-flight runs from their
//!   last recorded hop), with the statuses, agents, hops and outputs of an uninterrupted run;
//! - an outcome is printed only once it is durable; a call the journal holds is never made
//!   again (the model is not asked twice for it);
//! - a store that cannot be opened fails the command (exit 1) before any input is read, naming
//!   the URL and the cause; an unknown kind of URL names the accepted forms;
//! - a journal row whose JSON does not parse fails that run only, with an error outcome naming
//!   the run, the table and the parse error;
//! - `--resume` with a definition whose agents changed is refused naming the difference, unless
//!   `--accept-changed-system`;
//! - `bilayer runs list|show|prune` read and trim the journal; an unknown run id exits 1;
//! - NATS workers sharing a PostgreSQL store: a worker killed mid-stream loses nothing and its
//!   recorded calls are not made again.
//!
//! What "no duplicate model request" can mean: a call the process made and was killed before
//! recording (its request in flight at the kill) has to be made again, there is no answer to
//! read back. So the kill tests check the exact form: after each kill the journal's recorded
//! calls are read, and the model must never again be asked about any of them; in the end the
//! model has been asked about every input and the journal holds exactly one call per input.
//!
//! Every child runs under a deadline and is killed if it overruns, so a hang fails the test
//! instead of stalling the suite; nothing asserts on durations. The long tests (10 000 inputs
//! killed four times, and the PostgreSQL and NATS variants) take the CPU lock
//! (`common::cpu_bound`) so that they do not load the machine under the timing tests.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bilayer::builtin::DatabasePlugin;
use bilayer::prelude::*;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::builtin_database::{loaded, sql};
use crate::builtin_server::{Response, TestServer};
use crate::common::cpu_bound;
use crate::concurrency::{bilayer, bilayer_command, completion, number_in, Finished};
use crate::hot_reload_support::Scratch;

/// How long one `bilayer run` of a kill test may take before the test gives up on it: far
/// beyond what it needs (seconds), so only a hang fails on it.
const LIFE_DEADLINE: Duration = Duration::from_secs(300);

/// How long a test waits for a store to reach a state (runs recorded, calls in flight).
const STORE_PATIENCE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// The model, the system, the inputs.

/// The model's answer to the prompt `n`: deterministic, so that every run prints the same.
fn answer_to(n: u64) -> String {
    format!("answer {}", 3 * n + 1)
}

/// Which prompts the model holds unanswered (until [`Hold::release`]): a run known to be in
/// flight while the test acts.
struct Hold {
    held: Mutex<BTreeSet<u64>>,
    gate: Arc<Semaphore>,
}

impl Hold {
    fn on(inputs: &[u64]) -> Arc<Hold> {
        Arc::new(Hold {
            held: Mutex::new(inputs.iter().copied().collect()),
            gate: Arc::new(Semaphore::new(0)),
        })
    }

    fn none() -> Arc<Hold> {
        Hold::on(&[])
    }

    fn holds(&self, n: u64) -> bool {
        self.held.lock().unwrap().contains(&n)
    }

    /// Answers from now on at once, and lets go of the answers held so far (their caller may
    /// be gone: killed).
    fn release(&self) {
        self.held.lock().unwrap().clear();
        self.gate.add_permits(1024);
    }
}

/// A loopback OpenAI-compatible model that answers the prompt `n` with [`answer_to`] after
/// 2-5 ms, except the prompts `hold` holds; it records every request (`TestServer::requests`).
async fn model(hold: &Arc<Hold>) -> TestServer {
    let hold = Arc::clone(hold);
    TestServer::start(move |request, _| {
        let n = number_in(request);
        let answer = Response::json(200, completion(&answer_to(n)))
            .delayed(Duration::from_millis(2 + n % 4));
        if hold.holds(n) {
            answer.gated(&hold.gate)
        } else {
            answer
        }
    })
    .await
}

/// What varies between the definitions the tests write.
struct Spec {
    /// The system's name (NATS subjects and streams are named after it).
    name: String,
    /// Tables placed before the agents: `[durability]`, `[transport]`.
    tables: String,
    /// The terminal agent's name (`finish`; renamed in the changed-system test).
    terminal: &'static str,
    /// One more agent, `audit`, that no message reaches (the changed-system test).
    audit: bool,
    /// The hop timeout (below the NATS test's `ack_wait_ms`, which a worker requires).
    hop_timeout_ms: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            name: "durable".into(),
            tables: String::new(),
            terminal: "finish",
            audit: false,
            hop_timeout_ms: 60_000,
        }
    }
}

/// Writes `system.toml` and its scripts in `dir`: `prepare` (no calls) → `ask` (one call to
/// the LLM plugin on `server`; throws after it when the input says `"fail": true`, a dead
/// letter) → the terminal agent, whose output is `{id, answer, done}`.
fn write_system(dir: &Scratch, server: &TestServer, spec: &Spec) {
    let Spec {
        name,
        tables,
        terminal,
        audit,
        hop_timeout_ms,
    } = spec;
    let audit_agent = if *audit {
        "[[agents]]\nname = \"audit\"\nscript = \"audit.rhai\"\n"
    } else {
        ""
    };
    dir.write(
        "system.toml",
        &format!(
            r#"name = "{name}"
entry = "prepare"
hop_timeout_ms = {hop_timeout_ms}

{tables}

[[agents]]
name = "prepare"
script = "prepare.rhai"

[[agents]]
name = "ask"
script = "ask.rhai"
limits = {{ timeout_ms = 60000 }}   # waiting in call_plugin counts towards it

[[agents]]
name = "{terminal}"
script = "{terminal}.rhai"

{audit_agent}
[[plugins]]
builtin = "llm"
config = {{ base_url = "{base}", model = "test-model", max_retries = 0, timeout_ms = 60000 }}
"#,
            base = server.url("/v1"),
        ),
    );
    dir.write(
        "prepare.rhai",
        "fn prepare(msg) {\n    #{ id: msg.id, fail: msg.fail ?? false, next_agent: \"ask\" }\n}\n\nprepare\n",
    );
    dir.write(
        "ask.rhai",
        &format!(
            r#"fn ask(msg) {{
    let reply = parse_json(call_plugin("llm", #{{ prompt: `${{msg.id}}` }}));
    if msg.fail {{
        throw `ask refuses input ${{msg.id}} after asking`;
    }}
    #{{ id: msg.id, answer: reply.content, next_agent: "{terminal}" }}
}}

ask
"#
        ),
    );
    dir.write(
        &format!("{terminal}.rhai"),
        &format!(
            "fn {terminal}(msg) {{\n    #{{ id: msg.id, answer: msg.answer, done: true }}\n}}\n\n{terminal}\n"
        ),
    );
    if *audit {
        dir.write("audit.rhai", "fn audit(msg) {\n    msg\n}\n\naudit\n");
    }
}

/// Writes `inputs.jsonl`: `{"id": n}` for n in 1..=count (line n is input n), with
/// `"fail": true` where `fails(n)`.
fn write_inputs(dir: &Scratch, count: u64, fails: impl Fn(u64) -> bool) {
    let mut text = String::new();
    for n in 1..=count {
        let line = if fails(n) {
            json!({ "id": n, "fail": true })
        } else {
            json!({ "id": n })
        };
        text.push_str(&line.to_string());
        text.push('\n');
    }
    dir.write("inputs.jsonl", &text);
}

/// The output an ok run of input `n` ends with.
fn expected_output(n: u64) -> Value {
    json!({ "id": n, "answer": answer_to(n), "done": true })
}

/// `run SYSTEM --input INPUTS` with `more` after it.
fn run_args(dir: &Scratch, more: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "run".into(),
        dir.file("system.toml").into(),
        "--input".into(),
        dir.file("inputs.jsonl").into(),
    ];
    args.extend(more.iter().map(OsString::from));
    args
}

/// The binary with `args` in `dir` (quick commands: the concurrency tests' runner).
async fn cli(dir: &Scratch, args: &[OsString]) -> Finished {
    bilayer(dir.path(), args.iter().map(OsString::as_os_str)).await
}

/// `bilayer` with `words` (plain arguments) in `dir`.
async fn cli_words(dir: &Scratch, words: &[&str]) -> Finished {
    bilayer(dir.path(), words.iter().map(OsStr::new)).await
}

// ---------------------------------------------------------------------------------------------
// Outcome lines.

/// One JSON outcome per stdout line.
fn outcome_lines(finished: &Finished) -> Vec<Value> {
    parse_lines(
        &finished
            .stdout
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>(),
    )
}

fn parse_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not one JSON outcome ({e}): {line}"))
        })
        .collect()
}

fn input_of(line: &Value) -> u64 {
    line["input"]
        .as_u64()
        .unwrap_or_else(|| panic!("an outcome line without its input number: {line}"))
}

fn is_replayed(line: &Value) -> bool {
    line.get("replayed") == Some(&Value::Bool(true))
}

/// The line without what differs between two runs of the same input (`trace_id`, `run_id`,
/// `replayed`, `latency`): what an uninterrupted run must print alike.
fn comparable(line: &Value) -> Value {
    let mut line = line.clone();
    if let Some(fields) = line.as_object_mut() {
        for volatile in ["trace_id", "run_id", "replayed", "latency"] {
            fields.remove(volatile);
        }
    }
    line
}

/// The batch id of a line's `run_id`, checking that it is a string `<batch_id>-<input>`.
fn batch_of(line: &Value) -> String {
    let run_id = line["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run_id string in {line}"));
    let suffix = format!("-{}", input_of(line));
    run_id
        .strip_suffix(&suffix)
        .filter(|batch| !batch.is_empty())
        .unwrap_or_else(|| panic!("run_id `{run_id}` is not `<batch_id>{suffix}`: {line}"))
        .to_string()
}

/// Checks the one-line-per-input law on `lines` for inputs 1..=n and returns them by input.
fn one_per_input(lines: &[Value], n: u64) -> BTreeMap<u64, Value> {
    let mut by_input = BTreeMap::new();
    for line in lines {
        let input = input_of(line);
        assert!(
            (1..=n).contains(&input),
            "an outcome for input {input}, beyond the {n} inputs: {line}"
        );
        if let Some(earlier) = by_input.insert(input, line.clone()) {
            panic!("input {input} has two outcome lines:\n{earlier}\n{line}");
        }
    }
    let missing: Vec<u64> = (1..=n).filter(|i| !by_input.contains_key(i)).collect();
    assert!(
        missing.is_empty(),
        "{} inputs have no outcome line, the first: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    by_input
}

// ---------------------------------------------------------------------------------------------
// Reading the store, as the test sees it: through the database plugin (sqlx), SQLite or
// PostgreSQL alike (the tables are the same).

/// The rows `query` returns from the store at `url` (`sqlite:PATH` or `postgres://...`).
/// Fails rather than panics, so that a test polling a store that is being created can wait.
async fn store_rows(url: &str, query: &str) -> PluginResult<Vec<Value>> {
    let mut db = DatabasePlugin::new(url)
        .max_connections(1)
        .max_rows(usize::MAX);
    db.load(&PluginContext::new("database")).await?;
    db.start().await?;
    let rows = sql(&db, query, json!([])).await;
    let _ = db.unload().await;
    match rows? {
        Value::Array(rows) => Ok(rows),
        other => Ok(vec![other]),
    }
}

/// The first column of `query`'s rows as numbers, failing the test if the store cannot answer.
async fn store_numbers(url: &str, query: &str) -> Vec<u64> {
    store_rows(url, query)
        .await
        .unwrap_or_else(|e| panic!("the store {url} cannot answer `{query}`: {e}"))
        .iter()
        .map(|row| {
            row.as_object()
                .and_then(|fields| fields.values().next())
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("`{query}` gave a row without a number: {row}"))
        })
        .collect()
}

async fn store_count(url: &str, query: &str) -> u64 {
    store_numbers(url, query)
        .await
        .first()
        .copied()
        .unwrap_or(0)
}

/// Inputs whose outcome the store holds.
const OUTCOME_INPUTS: &str = "SELECT r.input_no FROM bilayer_outcomes o \
     JOIN bilayer_runs r ON r.run_id = o.run_id";
/// Inputs with a call whose result the store holds (one call per input here, in `ask`).
const CALLED_INPUTS: &str = "SELECT r.input_no FROM bilayer_calls c \
     JOIN bilayer_runs r ON r.run_id = c.run_id WHERE c.result IS NOT NULL";

async fn inputs_in(url: &str, query: &str) -> BTreeSet<u64> {
    store_numbers(url, query).await.into_iter().collect()
}

/// What the store holds after a kill: the inputs whose outcome and whose call are recorded.
#[derive(Default, Clone)]
struct Recorded {
    outcomes: BTreeSet<u64>,
    calls: BTreeSet<u64>,
}

async fn recorded(url: &str) -> Recorded {
    Recorded {
        outcomes: inputs_in(url, OUTCOME_INPUTS).await,
        calls: inputs_in(url, CALLED_INPUTS).await,
    }
}

/// The same, or nothing while the store has no tables yet (the process is starting).
async fn recorded_so_far(url: &str) -> Option<Recorded> {
    // Not created by the test's own reader before the process creates it.
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if !Path::new(path).exists() {
            return None;
        }
    }
    let outcomes = store_rows(url, OUTCOME_INPUTS).await.ok()?;
    let calls = store_rows(url, CALLED_INPUTS).await.ok()?;
    let numbers = |rows: Vec<Value>| {
        rows.iter()
            .filter_map(|row| row.as_object()?.values().next()?.as_u64())
            .collect()
    };
    Some(Recorded {
        outcomes: numbers(outcomes),
        calls: numbers(calls),
    })
}

/// The run id of input `n`, from the store.
async fn run_id_of(url: &str, n: u64) -> String {
    let rows = store_rows(
        url,
        &format!("SELECT run_id FROM bilayer_runs WHERE input_no = {n}"),
    )
    .await
    .unwrap_or_else(|e| panic!("the store {url} has no bilayer_runs: {e}"));
    assert_eq!(rows.len(), 1, "one run row for input {n}: {rows:?}");
    rows[0]["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("run_id is text: {rows:?}"))
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// One life of a `bilayer` process, read as it goes and killed on a condition.

/// A `bilayer` process as the test saw it.
struct Life {
    /// Its complete stdout lines (a line cut by a kill is left out).
    lines: Vec<String>,
    status: ExitStatus,
    /// Whether the test killed it (SIGKILL), rather than it ending by itself.
    killed: bool,
    stderr: String,
    took: Duration,
}

impl Life {
    fn outcomes(&self) -> Vec<Value> {
        parse_lines(&self.lines)
    }

    fn describe(&self) -> String {
        format!(
            "status {}, {} lines, stderr:\n{}",
            self.status,
            self.lines.len(),
            self.stderr
        )
    }
}

/// Runs `bilayer args` in `dir`, collecting its stdout lines as they come, and kills it with
/// SIGKILL as soon as `kill_when(lines so far)` holds (checked every few milliseconds), if it
/// has not ended by then. Blocking: call it from `spawn_blocking` when the test's runtime
/// serves a model. Panics past [`LIFE_DEADLINE`].
fn live(dir: &Path, args: &[OsString], mut kill_when: impl FnMut(usize) -> bool) -> Life {
    let started = Instant::now();
    let mut child = KillOnDrop(
        bilayer_command(dir, args)
            .spawn()
            .expect("spawn the bilayer binary"),
    );
    let lines = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let lines = Arc::clone(&lines);
        let mut stdout = BufReader::new(child.0.stdout.take().expect("stdout is piped"));
        std::thread::spawn(move || {
            let mut line = Vec::new();
            loop {
                line.clear();
                match stdout.read_until(b'\n', &mut line) {
                    // A line without its newline is one the kill cut short.
                    Ok(_) if line.last() == Some(&b'\n') => lines
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned()),
                    _ => break,
                }
            }
        })
    };
    let stderr = {
        let mut pipe = child.0.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let (status, killed) = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break (status, false);
        }
        let so_far = lines.lock().unwrap().len();
        if kill_when(so_far) {
            child.0.kill().expect("SIGKILL the bilayer process");
            break (child.0.wait().expect("wait for the killed process"), true);
        }
        if started.elapsed() > LIFE_DEADLINE {
            drop(child);
            panic!(
                "`bilayer {}` did not finish within {LIFE_DEADLINE:?} ({so_far} lines); stderr:\n{}",
                args.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    reader.join().expect("stdout reader");
    let lines = std::mem::take(&mut *lines.lock().unwrap());
    Life {
        lines,
        status,
        killed,
        stderr: stderr.join().expect("stderr reader"),
        took: started.elapsed(),
    }
}

/// A child process killed (SIGKILL) if it is still running when this is dropped: a test that
/// fails while it runs leaves no process behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// [`live`] off the async workers (the model runs on them).
async fn live_async(
    dir: &Scratch,
    args: Vec<OsString>,
    kill_when: impl FnMut(usize) -> bool + Send + 'static,
) -> Life {
    let dir = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || live(&dir, &args, kill_when))
        .await
        .expect("the process driver")
}

/// A SQLite store left by a run killed with runs in flight, the model that served it (no
/// longer holding anything), and the scratch directory with the system, the inputs and the
/// store (`runs.db`).
struct InFlight {
    server: TestServer,
    dir: Scratch,
    /// `sqlite:DIR/runs.db`: the store as the test reads it.
    store: String,
}

/// Runs `n` inputs (those `fails` selects dead-lettered) with `--store cli_store` (default
/// `sqlite:DIR/runs.db`; a relative one is relative to DIR) and kills the run with SIGKILL
/// once every input but `held` has its outcome recorded and the model holds the call of each
/// of `held`: their runs are in flight, their hop before `ask` recorded (`ask` received it).
async fn in_flight(
    label: &str,
    n: u64,
    held: &[u64],
    fails: impl Fn(u64) -> bool,
    cli_store: Option<&str>,
) -> InFlight {
    let hold = Hold::on(held);
    let server = model(&hold).await;
    let dir = Scratch::new(label);
    let store = format!("sqlite:{}", dir.file("runs.db").display());
    write_system(&dir, &server, &Spec::default());
    write_inputs(&dir, n, fails);
    let handle = tokio::runtime::Handle::current();
    let finished: BTreeSet<u64> = (1..=n).filter(|i| !held.contains(i)).collect();
    let life = {
        let (server, reader, held) = (server.clone(), store.clone(), held.to_vec());
        let finished = finished.clone();
        let started = Instant::now();
        let args = run_args(&dir, &["--store", cli_store.unwrap_or(&store)]);
        live_async(&dir, args, move |_| {
            // Past its patience the test kills the run anyway, and says below what was missing.
            if started.elapsed() > STORE_PATIENCE {
                return true;
            }
            let asked: BTreeSet<u64> = server.requests().iter().map(number_in).collect();
            held.iter().all(|h| asked.contains(h))
                && handle
                    .block_on(recorded_so_far(&reader))
                    .is_some_and(|r| r.outcomes == finished)
        })
        .await
    };
    assert!(
        life.killed,
        "the run ended by itself while calls were held: {}",
        life.describe()
    );
    let asked: BTreeSet<u64> = server.requests().iter().map(number_in).collect();
    assert!(
        held.iter().all(|h| asked.contains(h)),
        "within {STORE_PATIENCE:?} the model was not asked about every one of {held:?}: {}",
        life.describe()
    );
    assert_eq!(
        recorded(&store).await.outcomes,
        finished,
        "within {STORE_PATIENCE:?} the store did not hold the outcome of every input but \
         {held:?}: {}",
        life.describe()
    );
    hold.release();
    InFlight { server, dir, store }
}

/// Checks that every input of `lines` but `except` ended ok with its output, read back from
/// the journal (`"replayed": true`) unless it is one of `in_flight` (run on at the resume).
fn assert_ok_but(lines: &BTreeMap<u64, Value>, except: &[u64], in_flight: &[u64]) {
    for (input, line) in lines {
        if except.contains(input) {
            continue;
        }
        assert_eq!(line["status"], "ok", "{line}");
        assert_eq!(line["output"], expected_output(*input), "{line}");
        assert_eq!(
            is_replayed(line),
            !in_flight.contains(input),
            "replayed if and only if it had ended before the resume: {line}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Kill, resume, kill again.

/// Item 7 on one store: `n` inputs (every 997th a dead letter) run without a store for
/// reference, then with the store killed with SIGKILL after its first outcome line, resumed
/// and killed at 30 %, 50 % and 90 % of the outcome lines, and resumed to the end. Checks,
/// life by life, that every line has its run id in one batch, that what a life printed was
/// recorded, that a resumed life replays exactly what was recorded and runs nothing recorded
/// again; at the end, one outcome per input equal to the uninterrupted run's, and that the
/// model was never asked again about a call the journal held.
async fn kill_resume_chain(dir: &Scratch, store: &str, n: u64) {
    let server = model(&Hold::none()).await;
    write_system(dir, &server, &Spec::default());
    write_inputs(dir, n, |i| i % 997 == 0);

    // The reference: the same system and inputs, uninterrupted, without a store.
    let reference = live_async(dir, run_args(dir, &[]), |_| false).await;
    assert!(
        reference.status.success(),
        "the run without a store failed: {}",
        reference.describe()
    );
    let reference = one_per_input(&reference.outcomes(), n);
    for (input, line) in &reference {
        assert!(
            line.get("run_id").is_none() && line.get("replayed").is_none(),
            "{line}"
        );
        if input % 997 == 0 {
            assert_eq!(line["status"], "dead_letter", "{line}");
        } else {
            assert_eq!(line["status"], "ok", "{line}");
            assert_eq!(line["output"], expected_output(*input), "{line}");
        }
    }
    let asked_for_reference = server.requests().len();
    assert_eq!(
        asked_for_reference, n as usize,
        "without a store: one model call per input"
    );

    let kill_points = [1, n * 3 / 10, n / 2, n * 9 / 10];
    let mut batch: Option<String> = None;
    let mut before = Recorded::default();
    // After each kill: how many requests the model had had, and the calls then recorded.
    let mut kills: Vec<(usize, BTreeSet<u64>)> = Vec::new();
    let mut report = Vec::new();
    for (life_no, at) in kill_points.into_iter().enumerate() {
        let mut more = vec!["--store", store];
        if life_no > 0 {
            more.push("--resume");
        }
        let at = at as usize;
        let life = live_async(dir, run_args(dir, &more), move |lines| lines >= at).await;
        assert!(
            life.killed,
            "life {life_no} (to be killed at {at} lines) ended by itself: {}",
            life.describe()
        );
        let lines = life.outcomes();
        let mut printed = BTreeSet::new();
        for line in &lines {
            let input = input_of(line);
            assert!(
                printed.insert(input),
                "life {life_no} printed input {input} twice"
            );
            let line_batch = batch_of(line);
            let batch = batch.get_or_insert_with(|| line_batch.clone());
            assert_eq!(
                &line_batch, batch,
                "life {life_no}: a resumed run continues the store's batch: {line}"
            );
            if is_replayed(line) {
                assert!(
                    before.outcomes.contains(&input),
                    "life {life_no} marked input {input} replayed, but its outcome was not \
                     recorded before: {line}"
                );
            } else {
                assert!(
                    !before.outcomes.contains(&input),
                    "life {life_no} ran input {input} again though its outcome was recorded: \
                     {line}"
                );
            }
        }
        let after = recorded(store).await;
        let unrecorded: Vec<&u64> = printed.difference(&after.outcomes).collect();
        assert!(
            unrecorded.is_empty(),
            "life {life_no} printed outcomes that were not durable when it was killed: {:?}",
            &unrecorded[..unrecorded.len().min(10)]
        );
        assert!(
            before.outcomes.is_subset(&after.outcomes) && before.calls.is_subset(&after.calls),
            "life {life_no}: the journal lost what an earlier life recorded"
        );
        kills.push((server.requests().len(), after.calls.clone()));
        report.push(format!(
            "life {life_no}: killed at {} lines after {:?}, {} outcomes and {} calls recorded",
            lines.len(),
            life.took,
            after.outcomes.len(),
            after.calls.len()
        ));
        before = after;
    }

    // The last life, to the end.
    let last = live_async(dir, run_args(dir, &["--store", store, "--resume"]), |_| {
        false
    })
    .await;
    assert!(
        last.status.success(),
        "the last resume failed: {}",
        last.describe()
    );
    report.push(format!(
        "last life: {} lines in {:?}",
        last.lines.len(),
        last.took
    ));
    let lines = one_per_input(&last.outcomes(), n);
    let batch = batch.expect("the killed lives printed lines");
    let mut replayed = BTreeSet::new();
    let mut differing = Vec::new();
    for (input, line) in &lines {
        assert_eq!(batch_of(line), batch, "{line}");
        if is_replayed(line) {
            replayed.insert(*input);
        }
        if comparable(line) != comparable(&reference[input]) {
            differing.push(format!(
                "input {input}: resumed {line}\n  uninterrupted {}",
                reference[input]
            ));
        }
    }
    assert!(
        differing.is_empty(),
        "{} outcomes differ from the uninterrupted run's, e.g.:\n{}",
        differing.len(),
        differing[..differing.len().min(5)].join("\n")
    );
    assert_eq!(
        replayed, before.outcomes,
        "the last life replays exactly the outcomes recorded before it (and runs the rest)"
    );

    // The journal: one batch, one outcome and one call per input, one hop row per hop.
    assert_eq!(
        store_count(store, "SELECT COUNT(*) FROM bilayer_batches").await,
        1
    );
    assert_eq!(
        store_count(store, "SELECT COUNT(*) FROM bilayer_outcomes").await,
        n
    );
    let calls = store_count(store, "SELECT COUNT(*) FROM bilayer_calls").await;
    assert_eq!(calls, n, "one journaled call per input");
    let hops: usize = reference
        .values()
        .map(|line| line["hops"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(
        store_count(store, "SELECT COUNT(*) FROM bilayer_hops").await,
        hops as u64,
        "one hop row per hop of the uninterrupted run"
    );

    // The model: asked about every input, never again about a call the journal held.
    let requests = server.requests();
    let durable_asks = &requests[asked_for_reference..];
    let asked: BTreeSet<u64> = durable_asks.iter().map(number_in).collect();
    assert_eq!(
        asked,
        (1..=n).collect::<BTreeSet<u64>>(),
        "the model was asked about every input"
    );
    assert_eq!(
        asked.len() as u64,
        calls,
        "distinct model requests = distinct journaled calls"
    );
    for (kill_no, (requests_then, calls_then)) in kills.iter().enumerate() {
        let again: Vec<u64> = requests[*requests_then..]
            .iter()
            .map(number_in)
            .filter(|input| calls_then.contains(input))
            .collect();
        assert!(
            again.is_empty(),
            "after kill {kill_no} the model was asked again about {} calls the journal held, \
             e.g. inputs {:?}",
            again.len(),
            &again[..again.len().min(10)]
        );
    }
    report.push(format!(
        "model requests with the store: {} for {n} inputs ({} made again: in flight at a kill)",
        durable_asks.len(),
        durable_asks.len() as u64 - n
    ));
    eprintln!("{}", report.join("\n"));
}

/// LONG (about a minute in a debug build when the feature works): item 7's main test on a
/// SQLite file, 10 000 inputs, four SIGKILLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_run_killed_four_times_resumes_to_the_uninterrupted_outcomes_without_asking_twice() {
    let _cpu = cpu_bound::one_at_a_time().await;
    let dir = Scratch::new("durable-sqlite-kills");
    let store = format!("sqlite:{}", dir.file("runs.db").display());
    kill_resume_chain(&dir, &store, 10_000).await;
}

/// A PostgreSQL database of its own for one test, dropped when the test is done with it (the
/// store's tables have fixed names, so tests cannot share one).
struct Database {
    admin: String,
    name: String,
    url: String,
}

impl Database {
    /// A fresh database on the server of `BILAYER_TEST_POSTGRES_URL`, or `None` (skip) when it
    /// is not set.
    async fn create_or_skip(test: &str) -> Option<Database> {
        let Ok(admin) = std::env::var("BILAYER_TEST_POSTGRES_URL") else {
            eprintln!(
                "{test}: skipped, BILAYER_TEST_POSTGRES_URL is not set \
                 (e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            return None;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("bilayer_durable_{}_{nanos}", std::process::id());
        // CREATE DATABASE runs outside a transaction: as init SQL (the simple protocol).
        let mut db = loaded(
            DatabasePlugin::new(&admin)
                .max_connections(1)
                .init_sql(format!("CREATE DATABASE {name}")),
        )
        .await;
        let _ = db.unload().await;
        let url = with_database(&admin, &name);
        Some(Database { admin, name, url })
    }
}

impl Drop for Database {
    /// Drops the database however the test ended (a failed test too), on a runtime of its own:
    /// `Drop` cannot await, and the test's runtime may be the one unwinding.
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test's database");
            runtime.block_on(async {
                let mut db = DatabasePlugin::new(&admin)
                    .max_connections(1)
                    .init_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                if db.load(&PluginContext::new("database")).await.is_ok() {
                    let _ = db.unload().await;
                } else {
                    eprintln!("could not drop the test database {name} on {admin}");
                }
            });
        });
        let _ = dropped.join();
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |at| at + 3);
    let server = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}

/// LONG: item 7 on PostgreSQL (when `BILAYER_TEST_POSTGRES_URL` is set): 2000 inputs, four
/// SIGKILLs, in a database of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_run_killed_four_times_resumes_to_the_uninterrupted_outcomes_without_asking_twice()
{
    let Some(database) = Database::create_or_skip("postgres_run_killed_four_times").await else {
        return;
    };
    let _cpu = cpu_bound::one_at_a_time().await;
    let dir = Scratch::new("durable-postgres-kills");
    kill_resume_chain(&dir, &database.url, 2000).await;
    drop(database);
}

// ---------------------------------------------------------------------------------------------
// Stores that cannot be opened, and no store at all.

/// A store that cannot be opened fails `bilayer run` with exit status 1 before any input is
/// read (no outcome line, no model request), naming the URL and the cause: a SQLite file in a
/// directory that does not exist, a PostgreSQL server that does not answer, a URL of no known
/// kind (the message names the accepted forms), given with `--store` or in `[durability]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_opened_fails_before_any_input_naming_the_url_and_the_cause() {
    let server = model(&Hold::none()).await;
    let dir = Scratch::new("durable-bad-store");
    write_inputs(&dir, 3, |_| false);
    // (URL, given in the definition rather than with --store, any of these names the cause)
    let cases: [(&str, bool, &[&str]); 4] = [
        (
            "sqlite:/nonexistent-dir/x.db",
            false,
            &[
                "unable to open database file",
                "no such file or directory",
                "does not exist",
                "os error 2",
            ],
        ),
        ("postgres://nobody@127.0.0.1:1/x", false, &["refused"]),
        ("bogus:thing", false, &["sqlite:"]),
        ("bogus:thing", true, &["sqlite:"]),
    ];
    let mut wrong = Vec::new();
    for (url, in_definition, causes) in cases {
        let spec = Spec {
            tables: if in_definition {
                format!("[durability]\nstore = \"{url}\"\n")
            } else {
                String::new()
            },
            ..Spec::default()
        };
        write_system(&dir, &server, &spec);
        let args = if in_definition {
            run_args(&dir, &[])
        } else {
            run_args(&dir, &["--store", url])
        };
        let run = cli(&dir, &args).await;
        let stderr = run.stderr.to_lowercase();
        let case = format!(
            "store `{url}`{}",
            if in_definition {
                " (in [durability])"
            } else {
                ""
            }
        );
        if run.status.code() != Some(1) {
            wrong.push(format!(
                "{case}: exit status {}, not 1: {}",
                run.status, run.stderr
            ));
        }
        if !run.stdout.is_empty() {
            wrong.push(format!(
                "{case}: outcome lines were printed:\n{}",
                run.stdout
            ));
        }
        if !run.stderr.contains(url) {
            wrong.push(format!(
                "{case}: stderr does not name the URL: {}",
                run.stderr
            ));
        }
        if !causes.iter().any(|cause| stderr.contains(cause)) {
            wrong.push(format!(
                "{case}: stderr names no cause (any of {causes:?}): {}",
                run.stderr
            ));
        }
        if url.starts_with("bogus") && !stderr.contains("postgres://") {
            wrong.push(format!(
                "{case}: stderr does not name the accepted forms (sqlite:, postgres://): {}",
                run.stderr
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        server.requests().is_empty(),
        "no input may run when the store cannot be opened"
    );
}

/// Without a store (no `--store`, no `[durability]`) the outcome lines are today's, byte for
/// byte (no `run_id`, no `replayed`), and no file is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_outcome_lines_are_todays_byte_for_byte_and_nothing_is_written() {
    let server = model(&Hold::none()).await;
    let dir = Scratch::new("durable-no-store");
    write_system(&dir, &server, &Spec::default());
    write_inputs(&dir, 4, |i| i == 2);
    let files_before = files_in(dir.path());
    let run = cli(&dir, &run_args(&dir, &[])).await;
    assert!(run.status.success(), "{run:?}");
    let trace = regex::Regex::new(r#""trace_id":"[^"]+""#).unwrap();
    let mut lines: Vec<String> = run
        .stdout
        .lines()
        .map(|line| trace.replace(line, r#""trace_id":"T""#).into_owned())
        .collect();
    lines.sort_by_key(|line| input_of(&serde_json::from_str(line).unwrap()));
    let ok = |n: u64| {
        format!(
            r#"{{"input":{n},"status":"ok","agent":"finish","hops":["prepare","ask","finish"],"output":{{"answer":"{}","done":true,"id":{n}}},"trace_id":"T"}}"#,
            answer_to(n)
        )
    };
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    for n in [1, 3, 4] {
        assert_eq!(lines[n as usize - 1], ok(n));
    }
    let refused: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(
        refused
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["input", "status", "agent", "hops", "trace_id", "reason"]),
        "{refused}"
    );
    assert_eq!(refused["status"], "dead_letter");
    assert_eq!(
        files_in(dir.path()),
        files_before,
        "a run without a store writes no file"
    );
}

/// The names of the files in `dir`.
fn files_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// `[durability] store = "sqlite:runs.db"` is relative to the definition's directory (the run
/// starts elsewhere), `power_loss_safe = true` is accepted (and `bilayer check` accepts the
/// table), and every line then has a run id; `--store sqlite://other.db` overrides it,
/// relative to the working directory, leaving the definition's store alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_definitions_store_is_relative_to_its_file_and_store_overrides_it() {
    let server = model(&Hold::none()).await;
    let dir = Scratch::new("durable-definition-store");
    let elsewhere = Scratch::new("durable-definition-store-cwd");
    write_system(
        &dir,
        &server,
        &Spec {
            tables: "[durability]\nstore = \"sqlite:runs.db\"\npower_loss_safe = true\n".into(),
            ..Spec::default()
        },
    );
    write_inputs(&dir, 5, |_| false);
    let system = dir.file("system.toml").into_os_string();
    let checked = bilayer(elsewhere.path(), [OsStr::new("check"), &system]).await;
    assert!(
        checked.status.success(),
        "bilayer check refused [durability]: {checked:?}"
    );

    let run = bilayer(
        elsewhere.path(),
        run_args(&dir, &[]).iter().map(OsString::as_os_str),
    )
    .await;
    assert!(run.status.success(), "{run:?}");
    let lines = one_per_input(&outcome_lines(&run), 5);
    for line in lines.values() {
        batch_of(line);
        assert!(!is_replayed(line), "{line}");
        assert_eq!(line["output"], expected_output(input_of(line)), "{line}");
    }
    assert!(
        dir.file("runs.db").exists(),
        "the store is relative to the definition's directory"
    );
    assert!(
        !elsewhere.file("runs.db").exists(),
        "the store is not relative to the working directory"
    );
    let definition_store = format!("sqlite:{}", dir.file("runs.db").display());
    assert_eq!(
        store_count(&definition_store, "SELECT COUNT(*) FROM bilayer_outcomes").await,
        5
    );

    let run = bilayer(
        elsewhere.path(),
        run_args(&dir, &["--store", "sqlite://other.db"])
            .iter()
            .map(OsString::as_os_str),
    )
    .await;
    assert!(run.status.success(), "{run:?}");
    one_per_input(&outcome_lines(&run), 5)
        .values()
        .for_each(|line| {
            batch_of(line);
        });
    let other = format!("sqlite:{}", elsewhere.file("other.db").display());
    assert_eq!(
        store_count(&other, "SELECT COUNT(*) FROM bilayer_outcomes").await,
        5,
        "--store is relative to the working directory"
    );
    assert_eq!(
        store_count(&definition_store, "SELECT COUNT(*) FROM bilayer_batches").await,
        1,
        "--store overrides [durability] store: the definition's store got no second batch"
    );
}

// ---------------------------------------------------------------------------------------------
// Corrupt journal rows.

/// A truncated hop row (`output = '{"trunc'`) of a run in flight fails that run alone on
/// `--resume`, with an error outcome naming the run, the table and the parse error; the other
/// run in flight finishes normally and the finished ones are replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_hop_row_fails_its_run_alone_on_resume_naming_run_table_and_parse_error() {
    let InFlight { dir, store, .. } =
        in_flight("durable-corrupt-hop", 8, &[3, 5], |_| false, None).await;

    let run_id = run_id_of(&store, 3).await;
    let corrupted = store_rows(
        &store,
        &format!(
            "UPDATE bilayer_hops SET output = '{{\"trunc' \
             WHERE run_id = '{run_id}' AND branch = '' AND hop_no = 0"
        ),
    )
    .await
    .expect("corrupt the hop row");
    assert_eq!(
        corrupted,
        vec![json!({ "rows_affected": 1 })],
        "input 3's first hop (prepare) was recorded before its ask called the model"
    );

    resume_with_one_corrupt_run(&dir, &store, 8, (3, &run_id, "bilayer_hops"), &[5]).await;
}

/// Resumes the run of `dir` on `store` (`n` inputs) and checks that the corrupt run
/// (`input`, `run_id`, `table`) alone failed, with an error outcome naming the run, the table
/// and the parse error, and that every other input ended ok (`in_flight` run on, the others
/// read back).
async fn resume_with_one_corrupt_run(
    dir: &Scratch,
    store: &str,
    n: u64,
    (input, run_id, table): (u64, &str, &str),
    in_flight: &[u64],
) {
    let resumed = cli(dir, &run_args(dir, &["--store", store, "--resume"])).await;
    assert!(resumed.status.success(), "{resumed:?}");
    let lines = one_per_input(&outcome_lines(&resumed), n);
    let failed = &lines[&input];
    assert_eq!(failed["status"], "error", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    for needle in [run_id, table] {
        assert!(
            error.contains(needle),
            "the error does not name `{needle}`: {failed}"
        );
    }
    // serde_json's words for '{"trunc'; any parser's message says it could not parse.
    assert!(
        error.contains("EOF while parsing") || error.to_lowercase().contains("pars"),
        "the error does not name the parse error: {failed}"
    );
    assert_ok_but(&lines, &[input], in_flight);
}

/// A truncated outcome row of a finished run fails that run alone on `--resume` (an error
/// outcome naming the run, `bilayer_outcomes` and the parse error); every other input gets
/// its outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_outcome_row_fails_its_run_alone_on_resume() {
    let InFlight { dir, store, .. } =
        in_flight("durable-corrupt-outcome", 6, &[4], |_| false, None).await;

    let run_id = run_id_of(&store, 2).await;
    let corrupted = store_rows(
        &store,
        &format!("UPDATE bilayer_outcomes SET outcome = '{{\"trunc' WHERE run_id = '{run_id}'"),
    )
    .await
    .expect("corrupt the outcome row");
    assert_eq!(corrupted, vec![json!({ "rows_affected": 1 })]);

    resume_with_one_corrupt_run(&dir, &store, 6, (2, &run_id, "bilayer_outcomes"), &[4]).await;
}

// ---------------------------------------------------------------------------------------------
// A changed definition.

/// `--resume` with a definition whose agents changed is refused (exit 1, nothing run), naming
/// the difference: an agent added, an agent renamed. With `--accept-changed-system` the
/// resume proceeds: every input gets one outcome, the run in flight finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refuses_a_changed_definition_naming_the_difference_unless_accepted() {
    let InFlight { server, dir, store } =
        in_flight("durable-changed-system", 4, &[2], |_| false, None).await;
    let asked_before = server.requests().len();

    let renamed = Spec {
        terminal: "done",
        ..Spec::default()
    };
    let added = Spec {
        audit: true,
        ..Spec::default()
    };
    let resume = run_args(&dir, &["--store", &store, "--resume"]);
    let mut wrong = Vec::new();
    for (change, spec, names) in [
        (
            "an agent renamed (finish -> done)",
            &renamed,
            &["finish", "done"][..],
        ),
        ("an agent added (audit)", &added, &["audit"][..]),
    ] {
        write_system(&dir, &server, spec);
        let refused = cli(&dir, &resume).await;
        if refused.status.code() != Some(1) || !refused.stdout.is_empty() {
            wrong.push(format!("{change}: not refused: {refused:?}"));
        } else if !names.iter().any(|name| refused.stderr.contains(name)) {
            wrong.push(format!(
                "{change}: the refusal names none of {names:?}: {}",
                refused.stderr
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        server.requests().len(),
        asked_before,
        "a refused resume runs nothing"
    );
    assert_eq!(
        store_count(&store, "SELECT COUNT(*) FROM bilayer_outcomes").await,
        3,
        "a refused resume records nothing"
    );

    // The agent added, accepted.
    write_system(&dir, &server, &added);
    let accepted = cli(
        &dir,
        &run_args(
            &dir,
            &["--store", &store, "--resume", "--accept-changed-system"],
        ),
    )
    .await;
    assert!(accepted.status.success(), "{accepted:?}");
    assert_ok_but(&one_per_input(&outcome_lines(&accepted), 4), &[], &[2]);
}

// ---------------------------------------------------------------------------------------------
// bilayer runs.

/// `bilayer runs list|show|prune` on a store with four done runs, one failed (a dead letter)
/// and one running (killed in flight): the JSON lines and their filters, the limit, one run's
/// hops with their calls and its outcome, `--compact` keeping the outcome alone, `prune`
/// removing finished runs and never the running one, and an unknown run id refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_list_show_and_prune_read_and_trim_the_journal() {
    // The sqlite:// form, relative to the working directory (the scratch directory).
    let store = "sqlite://runs.db";
    let InFlight {
        dir, store: reader, ..
    } = in_flight("durable-runs-cli", 6, &[6], |i| i == 4, Some(store)).await;

    let list = |more: &'static [&'static str]| {
        let dir = &dir;
        async move {
            let mut words = vec!["runs", "list", "--store", store];
            words.extend(more);
            let listed = cli_words(dir, &words).await;
            assert!(listed.status.success(), "runs list {more:?}: {listed:?}");
            listed
        }
    };
    let rows = outcome_lines(&list(&["--json"]).await);
    assert_eq!(rows.len(), 6, "{rows:?}");
    let mut status_of = BTreeMap::new();
    let mut started = Vec::new();
    for row in &rows {
        for key in [
            "run_id",
            "batch_id",
            "input",
            "status",
            "hops",
            "started_at",
            "finished_at",
        ] {
            assert!(row.get(key).is_some(), "no `{key}` in {row}");
        }
        let run_id = row["run_id"].as_str().expect("run_id is text");
        let batch = row["batch_id"].as_str().expect("batch_id is text");
        let input: u64 = run_id
            .strip_prefix(&format!("{batch}-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("run_id is not <batch_id>-<input>: {row}"));
        status_of.insert(
            input,
            row["status"].as_str().unwrap_or_default().to_string(),
        );
        started.push(row["started_at"].as_u64().expect("started_at in unix ms"));
        if input == 6 {
            assert!(row["finished_at"].is_null(), "{row}");
        } else {
            assert!(row["finished_at"].as_u64().is_some(), "{row}");
        }
    }
    assert!(
        started.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {started:?}"
    );
    let expected: BTreeMap<u64, String> = [
        (1, "done"),
        (2, "done"),
        (3, "done"),
        (4, "failed"),
        (5, "done"),
        (6, "running"),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.to_string()))
    .collect();
    assert_eq!(status_of, expected);

    for (status, count) in [("done", 4), ("failed", 1), ("running", 1)] {
        let words: &'static [&'static str] = match status {
            "done" => &["--json", "--status", "done"],
            "failed" => &["--json", "--status", "failed"],
            _ => &["--json", "--status", "running"],
        };
        let rows = outcome_lines(&list(words).await);
        assert_eq!(rows.len(), count, "--status {status}: {rows:?}");
        assert!(rows.iter().all(|row| row["status"] == status), "{rows:?}");
    }
    assert_eq!(
        outcome_lines(&list(&["--json", "--limit", "2"]).await).len(),
        2
    );
    let table = list(&[]).await;
    let run_1 = run_id_of(&reader, 1).await;
    assert!(
        table.stdout.contains(&run_1),
        "the table lists the runs: {}",
        table.stdout
    );

    // One run, in full.
    let show = |run_id: String| {
        let dir = &dir;
        async move {
            cli_words(
                dir,
                &["runs", "show", run_id.as_str(), "--store", store, "--json"],
            )
            .await
        }
    };
    let shown = show(run_1.clone()).await;
    assert!(shown.status.success(), "{shown:?}");
    let run: Value = serde_json::from_str(&shown.stdout)
        .unwrap_or_else(|e| panic!("runs show --json is one JSON document ({e}): {shown:?}"));
    assert_eq!(run["run_id"], run_1.as_str());
    assert_eq!(run["input_no"], 1);
    assert_eq!(json_value(&run["input"]), json!({ "id": 1 }), "{run}");
    assert_eq!(run["status"], "done");
    assert!(
        run["batch_id"].is_string() && run["started_at"].is_u64(),
        "{run}"
    );
    let hops = run["hops"].as_array().expect("hops");
    let agents: Vec<&str> = hops.iter().filter_map(|h| h["agent"].as_str()).collect();
    assert_eq!(agents, ["prepare", "ask", "finish"], "{run}");
    let ask_calls = hops[1]["calls"].as_array().expect("the ask hop's calls");
    assert_eq!(ask_calls.len(), 1, "{run}");
    let call = &ask_calls[0];
    assert_eq!(call["target"], "llm", "{call}");
    assert!(
        call.get("key").or_else(|| call.get("call_key")) == Some(&json!("call:0")),
        "{call}"
    );
    assert!(
        call["result"].to_string().contains(&answer_to(1)),
        "the call's result is the model's answer: {call}"
    );
    assert!(
        hops[0]["calls"].as_array().is_some_and(Vec::is_empty),
        "prepare made no call: {run}"
    );
    let outcome = json_value(&run["outcome"]);
    assert_eq!(outcome["status"], "ok", "{run}");
    assert_eq!(outcome["output"], expected_output(1), "{run}");

    let unknown = cli_words(&dir, &["runs", "show", "no-such-run", "--store", store]).await;
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    assert!(
        unknown.stderr.contains("no run no-such-run in"),
        "{}",
        unknown.stderr
    );

    // Compacted: rows and outcomes stay, hops and calls go; the running run is untouched.
    let compacted = cli_words(
        &dir,
        &[
            "runs",
            "prune",
            "--store",
            store,
            "--older-than",
            "0s",
            "--compact",
        ],
    )
    .await;
    assert!(compacted.status.success(), "{compacted:?}");
    assert!(
        format!("{}{}", compacted.stdout, compacted.stderr).contains("compacted 5 runs"),
        "{compacted:?}"
    );
    assert_eq!(outcome_lines(&list(&["--json"]).await).len(), 6);
    let shown = show(run_1.clone()).await;
    let run: Value = serde_json::from_str(&shown.stdout).expect("runs show --json");
    assert!(run["hops"].as_array().is_some_and(Vec::is_empty), "{run}");
    assert_eq!(
        json_value(&run["outcome"])["output"],
        expected_output(1),
        "{run}"
    );
    let run_6 = run_id_of(&reader, 6).await;
    assert_eq!(
        store_count(
            &reader,
            &format!("SELECT COUNT(*) FROM bilayer_hops WHERE run_id = '{run_6}'")
        )
        .await,
        1,
        "the running run keeps its recorded hop (prepare)"
    );

    // Pruned: the finished runs go, the running one stays.
    let pruned = cli_words(
        &dir,
        &["runs", "prune", "--store", store, "--older-than", "0s"],
    )
    .await;
    assert!(pruned.status.success(), "{pruned:?}");
    assert!(
        format!("{}{}", pruned.stdout, pruned.stderr).contains("pruned 5 runs"),
        "{pruned:?}"
    );
    let rows = outcome_lines(&list(&["--json"]).await);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["run_id"], run_6.as_str());
    assert_eq!(rows[0]["status"], "running");
    let gone = show(run_1.clone()).await;
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    assert!(gone.stderr.contains(&format!("no run {run_1}")), "{gone:?}");
}

/// A JSON value of `runs show --json` that the journal stores as JSON text: the value itself,
/// or (the contract leaves it open) its text in a string.
fn json_value(value: &Value) -> Value {
    value
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_else(|| value.clone())
}

// ---------------------------------------------------------------------------------------------
// NATS workers sharing a PostgreSQL store.

/// LONG: item 6. 2000 inputs over NATS, two `bilayer worker --store postgres://...` processes,
/// one killed with SIGKILL mid-stream and another started: one outcome per input, the
/// uninterrupted outputs, and the model never asked again about a call the journal held.
/// Needs NATS and `BILAYER_TEST_POSTGRES_URL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_worker_killed_mid_stream_loses_nothing_and_repeats_no_recorded_call() {
    use crate::nats_scale_out::start_worker_with;
    use crate::nats_support::{delete_streams, jetstream_or_skip, nats_url, unique_system};

    const TEST: &str = "a_nats_worker_killed_mid_stream";
    let Some(js) = jetstream_or_skip(TEST).await else {
        return;
    };
    let Some(database) = Database::create_or_skip(TEST).await else {
        return;
    };
    let _cpu = cpu_bound::one_at_a_time().await;
    const N: u64 = 2000;
    let server = model(&Hold::none()).await;
    let dir = Scratch::new("durable-nats");
    let name = unique_system("durable");
    write_system(
        &dir,
        &server,
        &Spec {
            name: name.clone(),
            tables: format!(
                "[transport]\nkind = \"nats\"\nurl = \"{}\"\nack_wait_ms = 5000\n",
                nats_url()
            ),
            hop_timeout_ms: 4_000,
            ..Spec::default()
        },
    );
    write_inputs(&dir, N, |i| i % 997 == 0);
    let store = database.url.clone();
    let system = dir.file("system.toml");
    let worker_args = [OsStr::new("--store"), OsStr::new(&store)];
    let mut workers = Fleet(
        (0..2)
            .map(|_| start_worker_with(&system, &worker_args))
            .collect(),
    );

    // The run, killed never; worker 0 is killed once a quarter of the outcomes are recorded.
    let run = {
        let store = store.clone();
        let dir_path = dir.path().to_path_buf();
        let args = run_args(&dir, &["--transport", "nats", "--store", &store]);
        std::thread::spawn(move || live(&dir_path, &args, |_| false))
    };
    let started = Instant::now();
    loop {
        let recorded = recorded_so_far(&store)
            .await
            .map_or(0, |r| r.outcomes.len());
        if recorded as u64 >= N / 4 {
            break;
        }
        assert!(
            started.elapsed() < STORE_PATIENCE && !run.is_finished(),
            "no quarter of the outcomes recorded within {STORE_PATIENCE:?} ({recorded})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    workers.0[0].child.kill().expect("SIGKILL worker 0");
    workers.0[0].child.wait().unwrap();
    let calls_then = recorded(&store).await.calls;
    let requests_then = server.requests().len();
    workers.0[0] = start_worker_with(&system, &worker_args);

    let life = tokio::task::spawn_blocking(move || run.join().expect("the run's driver"))
        .await
        .unwrap();
    assert!(life.status.success(), "the run failed: {}", life.describe());
    let lines = one_per_input(&life.outcomes(), N);
    for (input, line) in &lines {
        batch_of(line);
        if input % 997 == 0 {
            assert_eq!(line["status"], "dead_letter", "{line}");
        } else {
            assert_eq!(line["status"], "ok", "{line}");
            assert_eq!(line["output"], expected_output(*input), "{line}");
            assert_eq!(line["hops"], json!(["prepare", "ask", "finish"]), "{line}");
        }
    }
    let requests = server.requests();
    let asked: BTreeSet<u64> = requests.iter().map(number_in).collect();
    assert_eq!(
        asked.len() as u64,
        N,
        "the model was asked about every input"
    );
    assert_eq!(
        store_count(&store, "SELECT COUNT(*) FROM bilayer_calls").await,
        N,
        "one journaled call per input"
    );
    let again: Vec<u64> = requests[requests_then..]
        .iter()
        .map(number_in)
        .filter(|input| calls_then.contains(input))
        .collect();
    assert!(
        again.is_empty(),
        "after the kill the model was asked again about {} recorded calls, e.g. {:?}",
        again.len(),
        &again[..again.len().min(10)]
    );
    eprintln!(
        "{TEST}: {} model requests for {N} inputs; {} calls recorded at the kill",
        requests.len(),
        calls_then.len()
    );

    drop(workers);
    delete_streams(&js, &name).await;
    drop(database);
}

/// The workers of a test, killed when it ends, however it ends.
struct Fleet(Vec<crate::nats_scale_out::Worker>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for worker in &mut self.0 {
            let _ = worker.child.kill();
            let _ = worker.child.wait();
        }
    }
}
