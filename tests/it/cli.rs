//! The `bilayer` binary, run as a user runs it: a child process started from the package root
//! (`CARGO_MANIFEST_DIR`), its stdout, stderr and exit status checked exactly.
//!
//! Contract (issue 2 item 8, issue 3 item 8, issue 5 items 4-6):
//! - `--help` lists the subcommands, `--version` prints the version, a wrong invocation exits
//!   non-zero with a message on stderr;
//! - no arguments runs the bundled order pipeline and prints the W1 check;
//! - `exec FILE --input JSON` runs an entry script, a rules script, a tool script or a named
//!   function; errors (missing file, syntax error, runaway script) go to stderr with a
//!   non-zero exit, syntax errors with file:line:column;
//! - `tools PATH` prints tool definitions in the OpenAI or MCP format;
//! - `run SYSTEM --input FILE|-` prints one JSON line per outcome and a summary on stderr;
//!   malformed lines are errors naming their line, unknown targets are dead letters;
//! - `check SYSTEM` validates a system and reports every problem with path:line:column;
//! - `--metrics-addr ADDR` serves Prometheus metrics while a run is in progress.
//!
//! Scratch files live in unique directories under `std::env::temp_dir()`, removed on drop.
//! Every child runs under a deadline (generous: the machine is a noisy 2-core box) and is
//! killed if it overruns, so a hang fails the test instead of stalling the suite.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
#[cfg(unix)]
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Deadline for quick commands (exec, tools, check, small runs).
const QUICK: Duration = Duration::from_secs(60);
/// Deadline for the bigger runs (2000 orders, the 10 000-order default pipeline).
const SLOW: Duration = Duration::from_secs(300);

/// The W1 reference for the 2000 orders in examples/orders/orders.jsonl.
const W1_2000_SHIPPED: usize = 1915;
const W1_2000_REJECTED: usize = 85;
const W1_2000_SHIPPED_TOTAL: &str = "1836890.62";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The binary, started from the package root with a quiet, predictable log filter.
fn bilayer<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_bilayer"));
    command
        .args(args)
        .current_dir(root())
        .env("RUST_LOG", "error");
    command
}

/// What a finished child left behind.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "expected success, got {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    fn assert_failure(&self) -> &Self {
        assert!(
            !self.status.success(),
            "expected a non-zero exit, got {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        assert!(
            self.status.code().is_some(),
            "the process was killed by a signal instead of exiting: {}\nstderr:\n{}",
            self.status,
            self.stderr
        );
        self
    }

    fn stdout_json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// One JSON object per stdout line.
    fn stdout_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
            })
            .collect()
    }
}

fn drain<R: Read + Send + 'static>(mut pipe: R) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` (whose stdout and stderr are piped and not yet taken) under a deadline;
/// kills that child and panics if it overruns.
fn wait_with_deadline(mut child: Child, deadline: Duration, what: &str) -> Finished {
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            panic!("`{what}` did not finish within {deadline:?}; stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs the binary with `args`, feeding `stdin` (or nothing) and waiting at most `deadline`.
fn run_cli<I, S>(args: I, stdin: Option<&[u8]>, deadline: Duration) -> Finished
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let what = format!(
        "bilayer {}",
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = bilayer(&args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the bilayer binary");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let bytes = bytes.to_vec();
        // A thread, so a child that stops reading cannot block the test; dropping the pipe
        // closes the child's stdin.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    wait_with_deadline(child, deadline, &what)
}

/// A scratch directory under the system temp dir, unique per process and call, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bilayer-cli-{}-{}-{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    /// Writes `name` in the directory and returns its path.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `path:line:column` as the binary prints it.
fn at(path: &Path, line: usize, column: usize) -> String {
    format!("{}:{line}:{column}", path.display())
}

fn assert_contains(haystack: &str, needle: &str, what: &str) {
    assert!(
        haystack.contains(needle),
        "{what} should contain {needle:?}; it is:\n{haystack}"
    );
}

// ---------------------------------------------------------------------------------------------
// The command line itself
// ---------------------------------------------------------------------------------------------

#[test]
fn help_lists_every_subcommand() {
    let done = run_cli(["--help"], None, QUICK);
    done.assert_success();
    assert_contains(&done.stdout, "Usage: bilayer", "--help");
    let commands: Vec<&str> = done
        .stdout
        .lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        ["exec", "run", "worker", "check", "runs", "tools", "help"],
        "--help's command list:\n{}",
        done.stdout
    );
    assert_contains(&done.stdout, "--metrics-addr", "--help");
    assert!(done.stderr.is_empty(), "stderr: {}", done.stderr);
}

#[test]
fn version_prints_the_package_version() {
    let done = run_cli(["--version"], None, QUICK);
    done.assert_success();
    assert_eq!(
        done.stdout,
        format!("bilayer {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_subcommand_fails_with_a_message() {
    let done = run_cli(["frobnicate"], None, QUICK);
    done.assert_failure();
    assert!(done.stdout.is_empty(), "stdout: {}", done.stdout);
    assert_contains(&done.stderr, "unrecognized subcommand", "stderr");
    assert_contains(&done.stderr, "frobnicate", "stderr");
}

#[test]
fn a_missing_required_argument_fails_with_a_message() {
    let cases: [(&[&str], &[&str]); 5] = [
        (&["exec"], &["<FILE>", "--input"]),
        (&["exec", "scripts/discount.rhai"], &["--input"]),
        (&["run", "examples/orders/system.toml"], &["--input"]),
        (&["check"], &["<SYSTEM>"]),
        (&["tools"], &["<PATH>"]),
    ];
    for (args, missing) in cases {
        let done = run_cli(args, None, QUICK);
        done.assert_failure();
        assert!(done.stdout.is_empty(), "{args:?}: stdout: {}", done.stdout);
        assert_contains(
            &done.stderr,
            "required arguments were not provided",
            &format!("stderr of {args:?}"),
        );
        for name in missing {
            assert_contains(&done.stderr, name, &format!("stderr of {args:?}"));
        }
    }
}

#[test]
fn an_unknown_tool_format_is_refused() {
    let done = run_cli(["tools", "scripts/tools", "--format", "xml"], None, QUICK);
    done.assert_failure();
    assert!(done.stdout.is_empty(), "stdout: {}", done.stdout);
    assert_contains(&done.stderr, "xml", "stderr");
}

// ---------------------------------------------------------------------------------------------
// No arguments: the bundled order pipeline
// ---------------------------------------------------------------------------------------------

#[test]
fn no_arguments_runs_the_bundled_order_pipeline_and_checks_w1() {
    let done = run_cli(Vec::<&str>::new(), None, SLOW);
    done.assert_success();
    assert_contains(
        &done.stdout,
        "W1 check: shipped 9581 rejected 419 shipped_total 9198005.40 (ok)",
        "stdout",
    );
    assert_contains(
        &done.stdout,
        "outcomes: ok 10000, error 0, dead_letter 0",
        "stdout",
    );
    assert_contains(
        &done.stdout,
        "terminal agents: audit 419, fulfillment 9581",
        "stdout",
    );
}

// ---------------------------------------------------------------------------------------------
// exec
// ---------------------------------------------------------------------------------------------

#[test]
fn exec_order_processor_sends_a_large_order_to_the_manager() {
    let done = run_cli(
        [
            "exec",
            "scripts/order_processor.rhai",
            "--input",
            r#"{"id":"ORD-123","quantity":5,"price":250.0}"#,
        ],
        None,
        QUICK,
    );
    done.assert_success();
    assert_eq!(
        done.stdout_json(),
        json!({
            "status": "pending_approval",
            "reason": "High value order",
            "next_agent": "manager"
        })
    );
}

#[test]
fn exec_order_processor_approves_a_small_order_with_its_total() {
    let done = run_cli(
        [
            "exec",
            "scripts/order_processor.rhai",
            "--input",
            r#"{"id":"ORD-7","quantity":2,"price":10.5}"#,
        ],
        None,
        QUICK,
    );
    done.assert_success();
    assert_eq!(
        done.stdout_json(),
        json!({ "status": "approved", "order_id": "ORD-7", "total": 21.0 })
    );
}

#[test]
fn exec_rules_script_names_the_rule_that_fired() {
    let spam = run_cli(
        [
            "exec",
            "scripts/rules/content_moderation.rhai",
            "--input",
            "BUY NOW",
        ],
        None,
        QUICK,
    );
    spam.assert_success();
    assert_eq!(
        spam.stdout_json(),
        json!({ "rule": "spam_filter", "decision": "block", "reason": "spam" })
    );

    // A JSON string input is the same message; nothing matches but the default rule.
    let clean = run_cli(
        [
            "exec",
            "scripts/rules/content_moderation.rhai",
            "--input",
            r#""see you at lunch""#,
        ],
        None,
        QUICK,
    );
    clean.assert_success();
    assert_eq!(
        clean.stdout_json(),
        json!({ "rule": "allow_default", "decision": "allow" })
    );
}

#[test]
fn exec_tool_script_runs_its_execute() {
    let done = run_cli(
        [
            "exec",
            "scripts/tools/weather.rhai",
            "--input",
            r#"{"city":"Paris"}"#,
        ],
        None,
        QUICK,
    );
    done.assert_success();
    assert_eq!(
        done.stdout_json(),
        json!({ "city": "Paris", "temperature": 72, "condition": "Sunny", "humidity": 45 })
    );
}

#[test]
fn exec_tool_script_without_a_required_argument_fails_naming_it() {
    let done = run_cli(
        ["exec", "scripts/tools/weather.rhai", "--input", "{}"],
        None,
        QUICK,
    );
    done.assert_failure();
    assert!(done.stdout.is_empty(), "stdout: {}", done.stdout);
    assert_contains(&done.stderr, "`city`", "stderr");
    assert_contains(&done.stderr, "missing required argument", "stderr");
}

#[test]
fn exec_calls_a_named_function_with_json_arguments() {
    for (tier, expected) in [("gold", 80.0), ("silver", 90.0), ("bronze", 100.0)] {
        let input = json!({ "function": "calculate_discount", "args": [100.0, tier] });
        let done = run_cli(
            [
                "exec",
                "scripts/discount.rhai",
                "--input",
                &input.to_string(),
            ],
            None,
            QUICK,
        );
        done.assert_success();
        assert_eq!(done.stdout_json(), json!(expected), "tier {tier}");
    }
}

#[test]
fn exec_a_missing_file_fails_naming_it() {
    let done = run_cli(
        ["exec", "scripts/no_such_script.rhai", "--input", "{}"],
        None,
        QUICK,
    );
    done.assert_failure();
    assert!(done.stdout.is_empty(), "stdout: {}", done.stdout);
    assert_contains(&done.stderr, "scripts/no_such_script.rhai", "stderr");
}

#[test]
fn exec_a_syntax_error_reports_file_line_and_column() {
    let scratch = Scratch::new("syntax");
    let script = scratch.write("broken.rhai", "fn f(x) {\n    let y = x +;\n}\n\nf\n");
    let done = run_cli(
        [
            "exec".as_ref(),
            script.as_os_str(),
            "--input".as_ref(),
            "{}".as_ref(),
        ],
        None,
        QUICK,
    );
    done.assert_failure();
    assert!(done.stdout.is_empty(), "stdout: {}", done.stdout);
    // Line 2, column 16: the `;` where the right operand of `+` should be.
    assert_contains(&done.stderr, &at(&script, 2, 16), "stderr");
}

#[test]
fn exec_an_infinite_loop_ends_with_a_limit_error() {
    let scratch = Scratch::new("spin");
    let script = scratch.write(
        "spin.rhai",
        "fn spin(x) {\n    let i = 0;\n    loop { i += 1; }\n}\n\nspin\n",
    );
    let started = Instant::now();
    let done = run_cli(
        [
            "exec".as_ref(),
            script.as_os_str(),
            "--input".as_ref(),
            "1".as_ref(),
        ],
        None,
        QUICK,
    );
    let elapsed = started.elapsed();
    done.assert_failure();
    assert!(done.stdout.is_empty(), "stdout: {}", done.stdout);
    assert_contains(&done.stderr, "limit exceeded", "stderr");
    // Which limit trips first depends on the machine's speed: the operation count or the
    // wall-clock timeout. Either way the error names it.
    assert!(
        done.stderr.contains("max_operations") || done.stderr.contains("timeout"),
        "the error should name the limit: {}",
        done.stderr
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "a runaway script should be stopped within seconds, took {elapsed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// tools
// ---------------------------------------------------------------------------------------------

#[test]
fn tools_prints_openai_function_definitions() {
    for path in ["scripts/tools", "scripts/tools/weather.rhai"] {
        let done = run_cli(["tools", path], None, QUICK);
        done.assert_success();
        let tools = done.stdout_json();
        let tools = tools.as_array().expect("a JSON array");
        let weather = tools
            .iter()
            .find(|t| t["function"]["name"] == "get_weather")
            .unwrap_or_else(|| panic!("{path}: no get_weather in {}", done.stdout));
        assert_eq!(weather["type"], "function");
        assert_eq!(
            weather["function"]["description"],
            "Get current weather for a city"
        );
        let parameters = &weather["function"]["parameters"];
        assert_eq!(parameters["type"], "object");
        assert_eq!(parameters["required"], json!(["city"]));
        assert_eq!(parameters["properties"]["city"]["type"], "string");
    }
}

#[test]
fn tools_prints_mcp_definitions_with_input_schema() {
    let done = run_cli(["tools", "scripts/tools", "--format", "mcp"], None, QUICK);
    done.assert_success();
    let tools = done.stdout_json();
    let tools = tools.as_array().expect("a JSON array");
    let weather = tools
        .iter()
        .find(|t| t["name"] == "get_weather")
        .unwrap_or_else(|| panic!("no get_weather in {}", done.stdout));
    assert_eq!(weather["description"], "Get current weather for a city");
    assert_eq!(weather["inputSchema"]["type"], "object");
    assert_eq!(weather["inputSchema"]["required"], json!(["city"]));
    assert_eq!(
        weather["inputSchema"]["properties"]["city"]["type"],
        "string"
    );
    assert!(weather.get("function").is_none(), "not the OpenAI shape");
    assert!(weather.get("parameters").is_none(), "not the OpenAI shape");
}

#[test]
fn tools_on_a_missing_path_fails() {
    let done = run_cli(["tools", "scripts/no_such_tools"], None, QUICK);
    done.assert_failure();
    assert!(done.stdout.is_empty(), "stdout: {}", done.stdout);
    assert_contains(&done.stderr, "no_such_tools", "stderr");
}

// ---------------------------------------------------------------------------------------------
// run
// ---------------------------------------------------------------------------------------------

/// Checks the fields every outcome line carries.
fn assert_outcome_shape(line: &Value) {
    let object = line.as_object().expect("each outcome is a JSON object");
    for key in ["input", "status", "hops", "trace_id"] {
        assert!(object.contains_key(key), "no `{key}` in {line}");
    }
    assert!(line["input"].as_u64().is_some_and(|n| n >= 1), "{line}");
    assert!(
        ["ok", "error", "dead_letter"].contains(&line["status"].as_str().unwrap_or("")),
        "{line}"
    );
    assert!(line["hops"].is_array(), "{line}");
    assert!(
        line["trace_id"].as_str().is_some_and(|t| !t.is_empty()),
        "{line}"
    );
}

#[test]
fn run_orders_file_prints_one_outcome_per_order_and_a_summary() {
    let done = run_cli(
        [
            "run",
            "examples/orders/system.toml",
            "--input",
            "examples/orders/orders.jsonl",
        ],
        None,
        SLOW,
    );
    done.assert_success();

    let orders: Vec<Value> = std::fs::read_to_string(root().join("examples/orders/orders.jsonl"))
        .expect("read orders.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("orders.jsonl is JSON lines"))
        .collect();
    assert_eq!(orders.len(), 2000);

    let lines = done.stdout_lines();
    assert_eq!(lines.len(), 2000, "one outcome line per input");
    let mut seen = HashSet::new();
    let mut trace_ids = HashSet::new();
    let mut per_agent: BTreeMap<String, usize> = BTreeMap::new();
    let mut shipped_total = 0.0;
    for line in &lines {
        assert_outcome_shape(line);
        for key in ["agent", "output"] {
            assert!(line.get(key).is_some(), "no `{key}` in {line}");
        }
        let input = line["input"].as_u64().expect("input number") as usize;
        assert!((1..=2000).contains(&input), "input out of range: {line}");
        assert!(seen.insert(input), "input {input} reported twice");
        assert!(
            trace_ids.insert(line["trace_id"].as_str().unwrap().to_string()),
            "trace id reused: {line}"
        );
        assert_eq!(line["status"], "ok", "{line}");

        // The outcome belongs to the order on that line of the file.
        let order = &orders[input - 1];
        let output = &line["output"];
        assert_eq!(output["order_id"], order["order_id"], "{line}");
        let total = order["quantity"].as_f64().unwrap() * order["price"].as_f64().unwrap();
        // Within a few ULPs, not bit for bit: serde_json's default float parser (used by the
        // binary for the input and by this test for both files) may be one ULP off for
        // 17-digit decimals; see `run_and_exec_keep_float_results_bit_exact`.
        let got = output["total"].as_f64().expect("a numeric total");
        assert!(
            (got - total).abs() <= 1e-12 * total.abs().max(1.0),
            "total {got} != {total}: {line}"
        );

        let agent = line["agent"].as_str().expect("agent").to_string();
        let hops = line["hops"].clone();
        match agent.as_str() {
            "fulfillment" => {
                assert_eq!(output["status"], "shipped", "{line}");
                let expected = if total > 1000.0 {
                    json!(["intake", "manager", "fulfillment"])
                } else {
                    json!(["intake", "fulfillment"])
                };
                assert_eq!(hops, expected, "{line}");
                shipped_total += output["total"].as_f64().unwrap();
            }
            "audit" => {
                assert_eq!(output["status"], "audited", "{line}");
                assert!(total > 3000.0, "{line}");
                assert_eq!(hops, json!(["intake", "manager", "audit"]), "{line}");
            }
            other => panic!("unexpected terminal agent {other}: {line}"),
        }
        *per_agent.entry(agent).or_default() += 1;
    }
    assert_eq!(seen.len(), 2000);
    assert_eq!(per_agent.get("fulfillment"), Some(&W1_2000_SHIPPED));
    assert_eq!(per_agent.get("audit"), Some(&W1_2000_REJECTED));
    assert_eq!(format!("{shipped_total:.2}"), W1_2000_SHIPPED_TOTAL);

    assert_contains(&done.stderr, "2000 inputs in ", "stderr summary");
    assert_contains(
        &done.stderr,
        "outcomes: ok 2000, error 0, dead_letter 0",
        "stderr summary",
    );
    assert_contains(
        &done.stderr,
        "terminal agents: audit 85, fulfillment 1915",
        "stderr summary",
    );
    let latency = done
        .stderr
        .lines()
        .find(|l| l.starts_with("latency: "))
        .unwrap_or_else(|| panic!("no latency line in stderr:\n{}", done.stderr));
    assert!(
        latency.contains("p50 ") && latency.contains("p99 "),
        "{latency}"
    );
}

#[test]
fn run_from_stdin_reports_a_malformed_line_and_goes_on() {
    let input = concat!(
        r#"{"order_id":"S-1","quantity":1,"price":2.5}"#,
        "\n",
        "{not json\n",
        "\n",
        r#"{"order_id":"S-4","quantity":100,"price":50.0}"#,
        "\n",
    );
    let done = run_cli(
        ["run", "examples/orders/system.toml", "--input", "-"],
        Some(input.as_bytes()),
        QUICK,
    );
    done.assert_success();
    let lines = done.stdout_lines();
    assert_eq!(
        lines.len(),
        3,
        "the blank line is no input:\n{}",
        done.stdout
    );
    let by_input: BTreeMap<u64, &Value> = lines
        .iter()
        .inspect(|l| assert_outcome_shape(l))
        .map(|l| (l["input"].as_u64().unwrap(), l))
        .collect();
    assert_eq!(
        by_input.keys().copied().collect::<Vec<_>>(),
        [1, 2, 4],
        "inputs are numbered by their line in the input"
    );

    let first = by_input[&1];
    assert_eq!(first["status"], "ok");
    assert_eq!(first["agent"], "fulfillment");
    assert_eq!(first["hops"], json!(["intake", "fulfillment"]));
    assert_eq!(
        first["output"],
        json!({ "order_id": "S-1", "status": "shipped", "total": 2.5 })
    );

    let malformed = by_input[&2];
    assert_eq!(malformed["status"], "error");
    assert_eq!(malformed["hops"], json!([]));
    let error = malformed["error"].as_str().expect("an error message");
    assert!(
        error.contains("line 2"),
        "the error names its line: {error}"
    );

    let fourth = by_input[&4];
    assert_eq!(fourth["status"], "ok");
    assert_eq!(fourth["agent"], "audit");
    assert_eq!(fourth["hops"], json!(["intake", "manager", "audit"]));
    assert_eq!(
        fourth["output"],
        json!({ "order_id": "S-4", "status": "audited", "total": 5000.0 })
    );

    assert_contains(&done.stderr, "3 inputs in ", "stderr summary");
    assert_contains(
        &done.stderr,
        "outcomes: ok 2, error 1, dead_letter 0",
        "stderr summary",
    );
    assert_contains(
        &done.stderr,
        "terminal agents: audit 1, fulfillment 1",
        "stderr summary",
    );
}

#[test]
fn run_routes_an_unknown_next_agent_to_the_dead_letters() {
    let scratch = Scratch::new("dead-letter");
    scratch.write(
        "start.rhai",
        "fn start(msg) {\n    #{ status: \"sent\", next_agent: \"nowhere\" }\n}\n\nstart\n",
    );
    let system = scratch.write(
        "system.toml",
        "name = \"lost\"\n\n[[agents]]\nname = \"start\"\nscript = \"start.rhai\"\n",
    );
    let done = run_cli(
        [
            "run".as_ref(),
            system.as_os_str(),
            "--input".as_ref(),
            "-".as_ref(),
        ],
        Some(b"{\"n\":1}\n{\"n\":2}\n"),
        QUICK,
    );
    done.assert_success();
    let lines = done.stdout_lines();
    assert_eq!(lines.len(), 2, "{}", done.stdout);
    let mut inputs = Vec::new();
    for line in &lines {
        assert_outcome_shape(line);
        inputs.push(line["input"].as_u64().unwrap());
        assert_eq!(line["status"], "dead_letter", "{line}");
        assert_eq!(line["agent"], "start", "{line}");
        assert_eq!(line["hops"], json!(["start"]), "{line}");
        let reason = line["reason"].as_str().expect("a reason");
        assert!(
            reason.contains("unknown next_agent") && reason.contains("nowhere"),
            "the reason names the unknown agent: {reason}"
        );
    }
    inputs.sort_unstable();
    assert_eq!(inputs, [1, 2]);
    assert_contains(
        &done.stderr,
        "outcomes: ok 0, error 0, dead_letter 2",
        "stderr summary",
    );
}

#[test]
fn run_with_a_missing_input_file_fails() {
    let done = run_cli(
        [
            "run",
            "examples/orders/system.toml",
            "--input",
            "examples/orders/no_such_orders.jsonl",
        ],
        None,
        QUICK,
    );
    done.assert_failure();
    assert!(done.stdout.is_empty(), "stdout: {}", done.stdout);
    assert_contains(&done.stderr, "no_such_orders.jsonl", "stderr");
}

/// Floats must survive the trip exactly: 3 × 1.8199999999999998 is 5.459999999999999 in IEEE
/// doubles (as Python and the Rhai script compute it), and 15 × 30.54 is 458.09999999999997.
/// The comparison is on stdout's text, since this test's own serde_json shares the lossy parser.
#[test]
fn run_and_exec_keep_float_results_bit_exact() {
    let done = run_cli(
        ["run", "examples/orders/system.toml", "--input", "-"],
        Some(b"{\"order_id\":\"F\",\"quantity\":3,\"price\":1.8199999999999998}\n"),
        QUICK,
    );
    done.assert_success();
    assert_contains(&done.stdout, "\"total\":5.459999999999999", "run stdout");

    let done = run_cli(
        [
            "exec",
            "scripts/order_processor.rhai",
            "--input",
            r#"{"id":"F","quantity":15,"price":30.54}"#,
        ],
        None,
        QUICK,
    );
    done.assert_success();
    assert_contains(&done.stdout, "\"total\": 458.09999999999997", "exec stdout");
}

// ---------------------------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------------------------

#[test]
fn check_accepts_the_bundled_order_system() {
    let done = run_cli(["check", "examples/orders/system.toml"], None, QUICK);
    done.assert_success();
    assert_eq!(
        done.stdout,
        "examples/orders/system.toml: ok (4 agents: intake, manager, fulfillment, audit)\n"
    );
    assert!(done.stderr.is_empty(), "stderr: {}", done.stderr);
}

/// Two scripts for the `check` tests, in `scratch`: start.rhai routes to `nowhere` (line 2,
/// column 34) and broken.rhai does not compile (line 2, column 13).
fn faulty_scripts(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let start = scratch.write(
        "start.rhai",
        "fn start(msg) {\n    #{ status: \"ok\", next_agent: \"nowhere\" }\n}\n\nstart\n",
    );
    let broken = scratch.write(
        "broken.rhai",
        "fn broken(msg) {\n    let x = ;\n}\n\nbroken\n",
    );
    (start, broken)
}

#[test]
fn check_reports_every_problem_with_its_position() {
    let scratch = Scratch::new("check");
    let (start, broken) = faulty_scripts(&scratch);
    let system = scratch.write(
        "system.toml",
        concat!(
            "name = \"faulty\"\n",           // 1
            "entry = \"start\"\n",           // 2
            "\n",                            // 3
            "[[agents]]\n",                  // 4
            "name = \"start\"\n",            // 5
            "script = \"start.rhai\"\n",     // 6
            "\n",                            // 7
            "[[agents]]\n",                  // 8
            "name = \"breaks\"\n",           // 9
            "script = \"broken.rhai\"\n",    // 10
            "\n",                            // 11
            "[[agents]]\n",                  // 12
            "name = \"robot\"\n",            // 13
            "native = \"no_such_plugin\"\n", // 14
        ),
    );
    let done = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    done.assert_failure();
    assert!(done.stdout.is_empty(), "stdout: {}", done.stdout);

    // The literal "nowhere" (its opening quote) on line 2 of start.rhai.
    assert_contains(
        &done.stderr,
        &format!(
            "{}: next_agent `nowhere` is not an agent of this system",
            at(&start, 2, 34)
        ),
        "stderr",
    );
    // The `;` where an expression should be, line 2 of broken.rhai.
    assert_contains(&done.stderr, &format!("{}: ", at(&broken, 2, 13)), "stderr");
    // The agent's name on line 13 of the TOML file.
    assert_contains(
        &done.stderr,
        &format!(
            "{}: agent `robot`: unknown native plugin `no_such_plugin`",
            at(&system, 13, 8)
        ),
        "stderr",
    );
    assert!(
        done.stderr.lines().any(|l| l == "3 problems"),
        "a count of the problems: {}",
        done.stderr
    );
}

/// The position of an unknown native plugin must point at its own agent table, even when the
/// agent's name also appears earlier in the file (here: as the system's name and in a comment).
#[test]
fn check_locates_an_agent_problem_at_the_agent_even_if_its_name_appears_earlier() {
    let scratch = Scratch::new("check-name");
    let system = scratch.write(
        "system.toml",
        concat!(
            "# \"robot\" is the only agent\n", // 1
            "name = \"robot\"\n",              // 2
            "\n",                              // 3
            "[[agents]]\n",                    // 4
            "name = \"robot\"\n",              // 5
            "native = \"no_such_plugin\"\n",   // 6
        ),
    );
    let done = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    done.assert_failure();
    assert_contains(
        &done.stderr,
        &format!(
            "{}: agent `robot`: unknown native plugin",
            at(&system, 5, 8)
        ),
        "stderr",
    );
}

#[test]
fn check_reports_a_toml_syntax_error_with_its_position() {
    let scratch = Scratch::new("check-toml");
    let system = scratch.write(
        "system.toml",
        "name = \"x\"\n[[agents]\nname = \"a\"\nscript = \"a.rhai\"\n",
    );
    let done = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    done.assert_failure();
    assert!(done.stdout.is_empty(), "stdout: {}", done.stdout);
    // The unclosed `[[agents]` header is on line 2; the column depends on the parser.
    let prefix = format!("{}:2:", system.display());
    let position = done
        .stderr
        .find(&prefix)
        .unwrap_or_else(|| panic!("no {prefix}COLUMN in stderr:\n{}", done.stderr));
    let column: String = done.stderr[position + prefix.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(
        column.parse::<usize>().is_ok_and(|c| c >= 1),
        "a column after {prefix}: {}",
        done.stderr
    );
    assert!(
        done.stderr.lines().any(|l| l == "1 problem"),
        "{}",
        done.stderr
    );
}

#[test]
fn check_a_missing_system_file_fails_naming_it() {
    let done = run_cli(
        ["check", "examples/orders/no_such_system.toml"],
        None,
        QUICK,
    );
    done.assert_failure();
    assert!(done.stdout.is_empty(), "stdout: {}", done.stdout);
    assert_contains(&done.stderr, "no_such_system.toml", "stderr");
}

// ---------------------------------------------------------------------------------------------
// --metrics-addr
// ---------------------------------------------------------------------------------------------

/// GET /metrics over HTTP/1.0; `None` while nothing answers (or the answer is cut short).
fn scrape(addr: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    if !response.starts_with("HTTP/1.") {
        return None;
    }
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(
        head.lines().next().is_some_and(|l| l.contains(" 200")),
        "GET /metrics answered {head}"
    );
    Some(body.to_string())
}

/// The value of the counter sample `name{...plugin="PLUGIN"...}` in a Prometheus text body.
fn plugin_counter(body: &str, name: &str, plugin: &str) -> Option<f64> {
    let label = format!("plugin=\"{plugin}\"");
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_addr_serves_prometheus_metrics_while_running() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        listener.local_addr().expect("local addr").port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = bilayer([
        "--metrics-addr",
        addr.as_str(),
        "run",
        "examples/orders/system.toml",
        "--input",
        "-",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn the bilayer binary");

    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(
            concat!(
                r#"{"order_id":"M-1","quantity":1,"price":2.5}"#,
                "\n",
                r#"{"order_id":"M-2","quantity":100,"price":50.0}"#,
                "\n",
            )
            .as_bytes(),
        )
        .expect("write to the child's stdin");
    stdin.flush().expect("flush the child's stdin");

    // Poll until the exporter answers and both orders went through intake; stdin stays open,
    // so the run is still in progress.
    let deadline = Instant::now() + QUICK;
    let body = loop {
        if let Some(body) = scrape(&addr) {
            if plugin_counter(&body, "bilayer_plugin_calls_total", "intake") == Some(2.0) {
                break body;
            }
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            let finished = wait_with_deadline(child, QUICK, "metrics run");
            panic!(
                "the run ended ({status}) while its stdin was open; stderr:\n{}",
                finished.stderr
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let finished = wait_with_deadline(child, QUICK, "metrics run");
            panic!(
                "no metrics showing two intake calls on {addr} within {QUICK:?}; stderr:\n{}",
                finished.stderr
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_contains(
        &body,
        "# TYPE bilayer_plugin_calls_total counter",
        "metrics",
    );
    assert_eq!(
        plugin_counter(&body, "bilayer_plugin_calls_total", "manager"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        plugin_counter(&body, "bilayer_plugin_errors_total", "intake"),
        Some(0.0),
        "{body}"
    );

    // Closing stdin ends the input: the run drains, prints, and exits 0.
    drop(stdin);
    let done = wait_with_deadline(child, QUICK, "metrics run");
    done.assert_success();
    let lines = done.stdout_lines();
    assert_eq!(lines.len(), 2, "{}", done.stdout);
    let agents: BTreeMap<u64, String> = lines
        .iter()
        .map(|l| {
            (
                l["input"].as_u64().unwrap(),
                l["agent"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        agents,
        BTreeMap::from([(1, "fulfillment".to_string()), (2, "audit".to_string())])
    );
    assert_contains(
        &done.stderr,
        "outcomes: ok 2, error 0, dead_letter 0",
        "stderr summary",
    );
}

#[test]
fn exec_runs_a_wasm_module_like_a_script() {
    let wrapped = run_cli(
        [
            "exec",
            "examples/mixed/wrap_for_review.wat",
            "--input",
            r#"{"order_id":"ORD-1","total":12.5}"#,
        ],
        None,
        QUICK,
    );
    wrapped.assert_success();
    assert_eq!(
        wrapped.stdout_json(),
        json!({
            "next_agent": "decide",
            "checked_by": "wasm",
            "order": { "order_id": "ORD-1", "total": 12.5 }
        })
    );

    // A module importing a host function it was not granted does not load.
    let denied = run_cli(
        [
            "exec",
            "plugins/tests/fixtures/wasm/host_probe.wat",
            "--input",
            "{}",
        ],
        None,
        QUICK,
    );
    assert!(!denied.status.success(), "an ungranted import must fail");
    assert_contains(&denied.stderr, "capabilit", "stderr");
}

#[test]
fn run_watch_hot_reloads_an_agent_script_while_running() {
    let scratch = Scratch::new("watch");
    let system = scratch.write(
        "system.toml",
        "entry = \"intake\"\n[[agents]]\nname = \"intake\"\nscript = \"stamp.rhai\"\n",
    );
    let script = |version: u32| {
        format!("fn stamp(msg) {{ #{{ id: msg.id, version: {version} }} }}\n\nstamp\n")
    };
    scratch.write("stamp.rhai", &script(1));

    let mut child = bilayer(["run", system.to_str().unwrap(), "--input", "-", "--watch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the bilayer binary");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut send = |id: u32| {
        writeln!(stdin, "{{\"id\":{id}}}").expect("write to stdin");
        stdin.flush().expect("flush stdin");
        let line = lines
            .recv_timeout(QUICK)
            .expect("an outcome line for every input");
        serde_json::from_str::<serde_json::Value>(&line).expect("outcome lines are JSON")
    };

    assert_eq!(send(1)["output"]["version"], 1);
    scratch.write("stamp.rhai", &script(2));
    // The new version serves once the watcher has swapped it in; keep sending until it does.
    let deadline = Instant::now() + QUICK;
    let mut id = 2;
    loop {
        let outcome = send(id);
        assert_eq!(outcome["status"], "ok", "{outcome}");
        if outcome["output"]["version"] == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edited script never went live"
        );
        std::thread::sleep(Duration::from_millis(100));
        id += 1;
    }
    drop(stdin);
    let deadline = Instant::now() + QUICK;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the watch run did not end after its stdin closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(status.success(), "{status}\n{stderr}");
    assert_contains(&stderr, "ReloadCompleted", "stderr");
}

// ---------------------------------------------------------------------------------------------
// NATS transport: `worker` and `run --transport nats` refuse bad setups clearly (the
// scale-out itself is proven in tests/it/nats_scale_out.rs)
// ---------------------------------------------------------------------------------------------

#[test]
fn run_over_nats_with_no_server_fails_naming_the_server() {
    let done = run_cli(
        [
            "run",
            "examples/orders/system.toml",
            "--input",
            "examples/orders/orders.jsonl",
            "--transport",
            "nats",
            "--nats-url",
            "nats://127.0.0.1:1",
        ],
        None,
        QUICK,
    );
    done.assert_failure();
    assert_contains(
        &done.stderr,
        "cannot connect to NATS at nats://127.0.0.1:1",
        "stderr",
    );
}

#[test]
fn run_over_nats_refuses_watch_and_points_at_worker_watch() {
    let done = run_cli(
        [
            "run",
            "examples/orders/system.toml",
            "--input",
            "examples/orders/orders.jsonl",
            "--transport",
            "nats",
            "--watch",
        ],
        None,
        QUICK,
    );
    done.assert_failure();
    assert_contains(&done.stderr, "bilayer worker --watch", "stderr");
}

#[test]
fn worker_refuses_an_agent_the_system_does_not_have() {
    let done = run_cli(
        [
            "worker",
            "examples/orders/system.toml",
            "--agents",
            "intake,nobody",
        ],
        None,
        QUICK,
    );
    done.assert_failure();
    assert_contains(
        &done.stderr,
        "`nobody` is not an agent of this system",
        "stderr",
    );
    assert_contains(
        &done.stderr,
        "intake, manager, fulfillment, audit",
        "stderr",
    );
}

#[test]
fn check_reports_a_bad_transport_table() {
    let scratch = Scratch::new("transport");
    let system = scratch.0.join("system.toml");
    std::fs::write(
        &system,
        "name = \"t\"\nhop_timeout_ms = 5000\n\n[transport]\nkind = \"nats\"\nack_wait_ms = 1000\n\n\
         [[agents]]\nname = \"a\"\nnative = \"order_intake\"\n",
    )
    .unwrap();
    let done = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    done.assert_failure();
    assert_contains(&done.stderr, "system.toml:4:1", "stderr");
    assert_contains(
        &done.stderr,
        "ack_wait_ms (1000 ms) must exceed hop_timeout_ms (5000 ms)",
        "stderr",
    );

    std::fs::write(
        &system,
        "[transport]\nkind = \"carrier-pigeon\"\n\n[[agents]]\nname = \"a\"\nnative = \"order_intake\"\n",
    )
    .unwrap();
    let done = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    done.assert_failure();
    assert_contains(
        &done.stderr,
        "unknown transport kind `carrier-pigeon`",
        "stderr",
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile input (issue 21 items 1, 2, 7, 9): a bad line costs only itself, an endless one
// costs no memory, Ctrl-C and a closed pipe lose nothing already finished and say nothing
// spurious
// ---------------------------------------------------------------------------------------------

const ORDER_LINE: &str = r#"{"order_id":"S-1","quantity":1,"price":2.5}"#;

/// Sends `signal` (a `kill` name: INT, TERM) to `child`.
fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// The resident memory of a running process, in KiB (Linux).
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn run_goes_on_past_a_line_that_is_not_utf8_and_accepts_a_byte_order_mark() {
    let mut input = Vec::new();
    input.extend_from_slice(b"\xEF\xBB\xBF");
    input.extend_from_slice(ORDER_LINE.as_bytes());
    input.extend_from_slice(b"\n{\"order_id\":\"S-\xff\xfe\",\"quantity\":1,\"price\":2.5}\n");
    input.extend_from_slice(ORDER_LINE.as_bytes());
    input.push(b'\n');
    let scratch = Scratch::new("utf8");
    let file = scratch.0.join("bad.jsonl");
    std::fs::write(&file, &input).expect("write input");
    for source in ["file", "stdin"] {
        let done = if source == "file" {
            run_cli(
                [
                    "run",
                    "examples/orders/system.toml",
                    "--input",
                    file.to_str().unwrap(),
                ],
                None,
                QUICK,
            )
        } else {
            run_cli(
                ["run", "examples/orders/system.toml", "--input", "-"],
                Some(&input),
                QUICK,
            )
        };
        done.assert_success();
        let by_input: BTreeMap<u64, Value> = done
            .stdout_lines()
            .into_iter()
            .map(|l| (l["input"].as_u64().unwrap(), l))
            .collect();
        assert_eq!(by_input.len(), 3, "{source}: {}", done.stdout);
        assert_eq!(
            by_input[&1]["status"], "ok",
            "{source}: the BOM is accepted"
        );
        assert_eq!(by_input[&2]["status"], "error");
        assert_eq!(
            by_input[&2]["error"], "line 2 is not valid UTF-8 (byte 16 of the line)",
            "{source}"
        );
        assert_eq!(by_input[&3]["status"], "ok", "{source}: the run goes on");
        assert_contains(
            &done.stderr,
            "outcomes: ok 2, error 1, dead_letter 0",
            "stderr summary",
        );
    }
}

#[test]
fn run_refuses_an_over_long_line_and_reads_the_next() {
    let scratch = Scratch::new("long-line");
    let mut input = format!("{{\"order_id\":\"{}\"}}\n", "x".repeat(200_000));
    input.push_str(ORDER_LINE);
    input.push('\n');
    let file = scratch.write("long.jsonl", &input);
    let done = run_cli(
        [
            "run",
            "examples/orders/system.toml",
            "--input",
            file.to_str().unwrap(),
            "--max-line-bytes",
            "100000",
        ],
        None,
        QUICK,
    );
    done.assert_success();
    let lines = done.stdout_lines();
    assert_eq!(lines.len(), 2, "{}", done.stdout);
    let refused = lines.iter().find(|l| l["input"] == 1).expect("line 1");
    assert_eq!(refused["status"], "error");
    assert_eq!(
        refused["error"],
        "line 1 is longer than 100000 bytes (raise --max-line-bytes to accept it)"
    );
    let next = lines.iter().find(|l| l["input"] == 2).expect("line 2");
    assert_eq!(next["status"], "ok");
}

#[test]
fn run_on_an_endless_line_holds_no_memory_and_ctrl_c_writes_what_finished() {
    let mut child = bilayer([
        "run",
        "examples/orders/system.toml",
        "--input",
        "/dev/zero",
        "--max-line-bytes",
        "65536",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn the bilayer binary");
    // Reading /dev/zero runs at gigabytes a second: a reader that held the line would be
    // gigabytes large by now.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the run ended by itself on an endless input"
    );
    let rss = resident_kib(child.id());
    assert!(rss < 256 * 1024, "resident memory grew to {rss} KiB");
    send_signal(&child, "INT");
    let done = wait_with_deadline(child, QUICK, "bilayer run --input /dev/zero");
    // Ended by the signal itself (the shell shows 130), so that a shell loop running the
    // command stops at the Ctrl-C too instead of taking it as handled.
    assert_eq!(
        done.status.signal(),
        Some(2),
        "{}\nstderr:\n{}",
        done.status,
        done.stderr
    );
    // The refusal of line 1 was finished (and buffered, the input being a file): it is written.
    let lines = done.stdout_lines();
    assert_eq!(lines.len(), 1, "{}", done.stdout);
    assert_eq!(lines[0]["status"], "error");
    assert_contains(
        lines[0]["error"].as_str().unwrap(),
        "line 1 is longer than 65536 bytes",
        "the refusal",
    );
    assert_contains(&done.stderr, "1 inputs in ", "the summary");
    assert_contains(&done.stderr, "interrupted by SIGINT", "the summary");
}

#[test]
fn run_stopped_by_sigterm_writes_every_finished_outcome_and_its_summary() {
    let mut child = bilayer(["run", "examples/orders/system.toml", "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the bilayer binary");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    for _ in 0..3 {
        writeln!(stdin, "{ORDER_LINE}").expect("write to stdin");
    }
    stdin.flush().expect("flush stdin");
    // stdin stays open: the run is waiting for more input when the signal comes.
    std::thread::sleep(Duration::from_millis(1500));
    send_signal(&child, "TERM");
    let done = wait_with_deadline(child, QUICK, "bilayer run --input -");
    drop(stdin);
    assert_eq!(
        done.status.signal(),
        Some(15),
        "{}\nstderr:\n{}",
        done.status,
        done.stderr
    );
    let lines = done.stdout_lines();
    assert_eq!(lines.len(), 3, "{}", done.stdout);
    assert!(lines.iter().all(|l| l["status"] == "ok"), "{}", done.stdout);
    assert_contains(&done.stderr, "3 inputs in ", "the summary");
    assert_contains(&done.stderr, "interrupted by SIGTERM", "the summary");
}

#[test]
fn run_into_a_closed_pipe_ends_quietly() {
    let scratch = Scratch::new("closed-pipe");
    let input = format!("{ORDER_LINE}\n").repeat(20_000);
    let file = scratch.write("orders.jsonl", &input);
    // The default log filter (warnings), as a user has it.
    let mut child = bilayer([
        "run",
        "examples/orders/system.toml",
        "--input",
        file.to_str().unwrap(),
    ])
    .env_remove("RUST_LOG")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn the bilayer binary");
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    {
        // `| head -1`: one line read, then the pipe closed.
        use std::io::BufRead;
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("read the first line");
        assert!(first.contains("\"status\":\"ok\""), "{first}");
    }
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > QUICK {
            let _ = child.kill();
            panic!("the run did not end after its stdout closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = stderr.join().expect("stderr reader");
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(stderr, "", "nothing said on stderr");
}

/// A stdout that fails otherwise than by closing (`> /dev/full`: a full disk) loses the outcomes:
/// the run must say so and fail, not end quietly with status 0 as for `| head -1`.
#[cfg(target_os = "linux")]
#[test]
fn run_into_a_full_disk_fails_saying_the_outcomes_were_not_written() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let mut child = bilayer(["run", "examples/orders/system.toml", "--input", "-"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(full)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the bilayer binary");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    writeln!(stdin, "{ORDER_LINE}").expect("write to stdin");
    drop(stdin);
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > QUICK {
            let _ = child.kill();
            panic!("the run did not end on a full stdout");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = stderr.join().expect("stderr reader");
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert_contains(&stderr, "1 inputs in ", "the summary");
    assert_contains(
        &stderr,
        "error: cannot write the outcomes to stdout (No space left on device",
        "the error",
    );
}

#[test]
fn run_watch_accepts_a_definition_given_as_a_bare_file_name() {
    let scratch = Scratch::new("watch-bare");
    scratch.write(
        "system.toml",
        "[[agents]]\nname = \"stamp\"\nscript = \"stamp.rhai\"\n",
    );
    scratch.write(
        "stamp.rhai",
        "fn stamp(msg) { #{ id: msg.id, stamped: true } }\n\nstamp\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_bilayer"))
        .args(["run", "system.toml", "--input", "-", "--watch"])
        .current_dir(&scratch.0)
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the bilayer binary");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    writeln!(stdin, "{{\"id\":7}}").expect("write to stdin");
    drop(stdin);
    let done = wait_with_deadline(child, QUICK, "bilayer run system.toml --watch");
    done.assert_success();
    let lines = done.stdout_lines();
    assert_eq!(lines.len(), 1, "{}", done.stdout);
    assert_eq!(lines[0]["output"], json!({"id": 7, "stamped": true}));
}

#[test]
fn run_bounds_a_self_fan_out_by_max_branches_and_check_warns_of_it() {
    let scratch = Scratch::new("fan-out");
    scratch.write(
        "twin.rhai",
        "fn twin(msg) {\n    msg.next_agent = [\"twin\", \"twin\"];\n    msg\n}\n\ntwin\n",
    );
    let system = scratch.write(
        "system.toml",
        "max_branches = 32\n\n[[agents]]\nname = \"twin\"\nscript = \"twin.rhai\"\n",
    );
    let done = run_cli(
        ["run", system.to_str().unwrap(), "--input", "-"],
        Some(b"{\"n\":1}\n{\"n\":2}\n"),
        QUICK,
    );
    done.assert_success();
    let lines = done.stdout_lines();
    assert_eq!(lines.len(), 2, "{}", done.stdout);
    for line in &lines {
        assert_eq!(line["status"], "dead_letter");
        assert_contains(
            line["reason"].as_str().unwrap(),
            "more than 32 branches (max_branches",
            "the reason",
        );
        assert_eq!(line["branches"].as_array().map(Vec::len), Some(32));
    }
    let checked = run_cli(["check", system.to_str().unwrap()], None, QUICK);
    checked.assert_success();
    assert_contains(
        &checked.stderr,
        &format!(
            "warning: {}: agent `twin` fans out to itself",
            at(&scratch.0.join("twin.rhai"), 2, 22)
        ),
        "check's warning",
    );
}

#[test]
fn run_refuses_a_state_write_past_max_state_bytes_and_keeps_serving() {
    let scratch = Scratch::new("state-cap");
    scratch.write(
        "hoard.rhai",
        "fn hoard(msg) {\n    if msg.keep { state[`k${msg.n}`] = \"0123456789012345678901234567890123456789\"; }\n    #{ n: msg.n, kept: state.len() }\n}\n\nhoard\n",
    );
    let system = scratch.write(
        "system.toml",
        "[limits]\nmax_state_bytes = 450\n\n[[agents]]\nname = \"hoard\"\nscript = \"hoard.rhai\"\n",
    );
    let mut input = String::new();
    for n in 1..=20 {
        input.push_str(&format!("{{\"n\":{n},\"keep\":true}}\n"));
    }
    input.push_str("{\"n\":21,\"keep\":false}\n");
    let done = run_cli(
        ["run", system.to_str().unwrap(), "--input", "-"],
        Some(input.as_bytes()),
        QUICK,
    );
    done.assert_success();
    let by_input: BTreeMap<u64, Value> = done
        .stdout_lines()
        .into_iter()
        .map(|l| (l["input"].as_u64().unwrap(), l))
        .collect();
    // Each entry is its key (`k1`, …, `k10`) and 42 bytes of JSON string: ten take 441 bytes,
    // the eleventh would take the state to 486, past 450.
    for n in 1..=10 {
        assert_eq!(by_input[&n]["status"], "ok", "{}", by_input[&n]);
    }
    for n in 11..=20 {
        assert_eq!(by_input[&n]["status"], "dead_letter", "{}", by_input[&n]);
        assert_contains(
            by_input[&n]["reason"].as_str().unwrap(),
            "max_state_bytes = 450",
            "the reason",
        );
        // A definition's user is told which TOML key to change.
        assert_contains(
            by_input[&n]["reason"].as_str().unwrap(),
            "raise max_state_bytes ([limits] or the agent's [agents.limits]",
            "the reason",
        );
    }
    assert_eq!(by_input[&21]["status"], "ok", "the agent keeps serving");
    assert_eq!(by_input[&21]["output"]["kept"], 10);
}

// ---------------------------------------------------------------------------------------------
// Messages that point at the right place (issue 21 item 8): a system definition's user is told
// the TOML key to change, `check` lists every problem, `--quiet` prints only the summary, and
// malformed input or grants are refused rather than reinterpreted.
// ---------------------------------------------------------------------------------------------

/// Runs `system` on `input` (stdin) and returns the outcome lines.
fn run_system(system: &Path, input: &[u8]) -> (Finished, Vec<Value>) {
    let done = run_cli(
        [
            "run".as_ref(),
            system.as_os_str(),
            "--input".as_ref(),
            "-".as_ref(),
        ],
        Some(input),
        QUICK,
    );
    done.assert_success();
    let lines = done.stdout_lines();
    (done, lines)
}

/// Every problem at once, TOML shape (unknown keys, wrong types, a missing key) and meaning
/// (a missing script, one that does not compile, an unknown next_agent, limits an agent kind
/// does not use) alike, each at its position; not only the first TOML error.
#[test]
fn check_reports_every_problem_of_the_toml_and_of_what_it_says() {
    let scratch = Scratch::new("check-all");
    let (start, broken) = faulty_scripts(&scratch);
    let system = scratch.write(
        "system.toml",
        concat!(
            "name = \"faulty\"\n",                 // 1
            "max_hops = \"many\"\n",               // 2
            "colour = \"red\"\n",                  // 3
            "\n",                                  // 4
            "[limits]\n",                          // 5
            "max_operations = 1000\n",             // 6
            "max_opertions = 10\n",                // 7
            "\n",                                  // 8
            "[[agents]]\n",                        // 9
            "script = \"start.rhai\"\n",           // 10
            "\n",                                  // 11
            "[[agents]]\n",                        // 12
            "name = \"start\"\n",                  // 13
            "script = \"start.rhai\"\n",           // 14
            "flavour = 1\n",                       // 15
            "\n",                                  // 16
            "[[agents]]\n",                        // 17
            "name = \"breaks\"\n",                 // 18
            "script = \"broken.rhai\"\n",          // 19
            "\n",                                  // 20
            "[[agents]]\n",                        // 21
            "name = \"gone\"\n",                   // 22
            "script = \"missing.rhai\"\n",         // 23
            "\n",                                  // 24
            "[[agents]]\n",                        // 25
            "name = \"robot\"\n",                  // 26
            "native = \"order_intake\"\n",         // 27
            "limits = { max_string_size = 10 }\n", // 28
        ),
    );
    let done = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    done.assert_failure();
    assert!(done.stdout.is_empty(), "stdout: {}", done.stdout);
    let expected = [
        format!(
            "{}: `max_hops`: invalid type: string \"many\", expected usize",
            at(&system, 2, 12)
        ),
        format!("{}: unknown field `colour`", at(&system, 3, 1)),
        format!("{}: unknown field `max_opertions`", at(&system, 7, 1)),
        format!("{}: missing field `name`", at(&system, 9, 1)),
        format!("{}: unknown field `flavour`", at(&system, 15, 1)),
        format!(
            "{}: next_agent `nowhere` is not an agent of this system",
            at(&start, 2, 34)
        ),
        format!("{}: ", at(&broken, 2, 13)),
        "missing.rhai".to_string(),
        format!(
            "{}: agent `robot`: `limits.max_string_size` is a Rhai script limit, and this agent \
             is the native plugin `order_intake`, which does not use it; remove the key",
            at(&system, 28, 12)
        ),
    ];
    for line in &expected {
        assert_contains(&done.stderr, line, "stderr");
    }
    assert!(
        done.stderr.lines().any(|l| l == "9 problems"),
        "a count of every problem: {}",
        done.stderr
    );

    // `run` refuses the same file at its first problem, and says there are more.
    let refused = run_cli(
        [
            "run".as_ref(),
            system.as_os_str(),
            "--input".as_ref(),
            "-".as_ref(),
        ],
        Some(b""),
        QUICK,
    );
    refused.assert_failure();
    assert_contains(&refused.stderr, &at(&system, 2, 12), "stderr");
    assert_contains(&refused.stderr, "`bilayer check` lists them all", "stderr");
}

/// `[limits]` sets script and WASM limits; a system with no agent of the kinds a key concerns
/// uses none of it, and `check` says so instead of ignoring it; `max_state_bytes` concerns
/// every agent.
#[test]
fn check_refuses_top_level_limits_no_agent_uses() {
    let scratch = Scratch::new("check-limits");
    let system = scratch.write(
        "system.toml",
        "[limits]\ntimeout_ms = 50\n\n[[agents]]\nname = \"a\"\nnative = \"order_intake\"\n",
    );
    let done = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    done.assert_failure();
    assert_contains(
        &done.stderr,
        &format!(
            "{}: `[limits] timeout_ms` is a limit of Rhai scripts and WASM modules, and this \
             system has no script agent, routing script or WASM agent to use it; remove the key",
            at(&system, 2, 1)
        ),
        "stderr",
    );

    // A WASM limit needs a WASM agent; `max_state_bytes` is every agent's, never reported.
    let system = scratch.write(
        "system.toml",
        "[limits]\nfuel = 50\nmax_state_bytes = 4096\n\n[[agents]]\nname = \"a\"\n\
         native = \"order_intake\"\n",
    );
    let done = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    done.assert_failure();
    assert_contains(
        &done.stderr,
        &format!(
            "{}: `[limits] fuel` is a WASM module limit, and this system has no WASM agent to \
             use it; remove the key",
            at(&system, 2, 1)
        ),
        "stderr",
    );
    assert!(!done.stderr.contains("max_state_bytes"), "{}", done.stderr);
    assert!(
        done.stderr.lines().any(|l| l == "1 problem"),
        "{}",
        done.stderr
    );
}

/// A script agent that breaks a Rhai limit is told the TOML key that raises it: the system's
/// `[limits]`, or the agent's own `limits` when it sets that key; never the Rust builder.
#[test]
fn run_names_the_toml_key_of_a_rhai_limit_an_agent_broke() {
    let scratch = Scratch::new("limit-key");
    scratch.write(
        "grow.rhai",
        "fn grow(msg) {\n    let s = \"boom\";\n    loop { s += s; }\n}\n\ngrow\n",
    );
    let system = scratch.write(
        "system.toml",
        "[limits]\nmax_string_size = 1000\n\n[[agents]]\nname = \"shared\"\nscript = \"grow.rhai\"\n",
    );
    let (_, lines) = run_system(&system, b"{\"n\":1}\n");
    let reason = lines[0]["reason"]
        .as_str()
        .expect("a dead letter")
        .to_string();
    assert_contains(&reason, "max_string_size", "reason");
    assert_contains(&reason, "raise `[limits] max_string_size`", "reason");
    assert!(!reason.contains("RhaiConfig"), "{reason}");

    let own = scratch.write(
        "own.toml",
        concat!(
            "[limits]\nmax_string_size = 1000\n\n",
            "[[agents]]\nname = \"own\"\nscript = \"grow.rhai\"\n",
            "limits = { max_string_size = 100 }\n",
        ),
    );
    let (_, lines) = run_system(&own, b"{\"n\":1}\n");
    let reason = lines[0]["reason"].as_str().expect("a dead letter");
    assert_contains(
        reason,
        "raise `limits.max_string_size` in the [[agents]] table of `own`",
        "reason",
    );
    assert!(!reason.contains("RhaiConfig"), "{reason}");

    // The same script run by `exec` has no system definition: the Rust name stays.
    let exec = run_cli(
        [
            "exec".as_ref(),
            scratch.0.join("grow.rhai").as_os_str(),
            "--input".as_ref(),
            "{}".as_ref(),
        ],
        None,
        QUICK,
    );
    exec.assert_failure();
    assert_contains(&exec.stderr, "max_string_size", "stderr");
}

/// What the agent system builder would word for a Rust caller (".agent(name, plugin)",
/// "unregister it first") reaches a TOML user in TOML terms, with the position.
#[test]
fn run_refuses_a_definition_with_no_agent_or_a_taken_name_in_toml_terms() {
    let scratch = Scratch::new("toml-terms");
    let empty = scratch.write("empty.toml", "name = \"nothing\"\n");
    let done = run_cli(
        [
            "run".as_ref(),
            empty.as_os_str(),
            "--input".as_ref(),
            "-".as_ref(),
        ],
        Some(b""),
        QUICK,
    );
    done.assert_failure();
    assert_contains(
        &done.stderr,
        "the system has no agents; add an [[agents]] table",
        "stderr",
    );
    assert!(!done.stderr.contains(".agent("), "{}", done.stderr);

    let twice = scratch.write(
        "twice.toml",
        concat!(
            "[[agents]]\nname = \"a\"\nnative = \"order_intake\"\n\n", // 1-4
            "[[agents]]\nname = \"a\"\nnative = \"order_intake\"\n\n", // 5-8
            "[[plugins]]\nbuiltin = \"http\"\nid = \"a\"\n",           // 9-11
        ),
    );
    let done = run_cli(
        [
            "run".as_ref(),
            twice.as_os_str(),
            "--input".as_ref(),
            "-".as_ref(),
        ],
        Some(b""),
        QUICK,
    );
    done.assert_failure();
    assert_contains(
        &done.stderr,
        &format!(
            "{}: agent `a` is defined twice; give each [[agents]] table its own `name`",
            at(&twice, 6, 8)
        ),
        "stderr",
    );
    assert!(!done.stderr.contains("unregister"), "{}", done.stderr);

    let plugin = scratch.write(
        "plugin.toml",
        "[[agents]]\nname = \"a\"\nnative = \"order_intake\"\n\n[[plugins]]\nbuiltin = \"http\"\nid = \"a\"\n",
    );
    let done = run_cli(
        [
            "run".as_ref(),
            plugin.as_os_str(),
            "--input".as_ref(),
            "-".as_ref(),
        ],
        Some(b""),
        QUICK,
    );
    done.assert_failure();
    assert_contains(
        &done.stderr,
        "plugin id `a` is already taken by an agent or another plugin; give it another `id`",
        "stderr",
    );
    assert!(!done.stderr.contains("unregister"), "{}", done.stderr);
}

/// A run with no outcome for a while says so; in process there is no worker to ask about.
/// The agent is an LLM whose server accepts the connection and never answers (its 12 s timeout
/// ends the run after the 10 s warning).
#[test]
fn an_in_process_stall_warning_does_not_talk_about_nats_workers() {
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base_url = format!("http://{}/v1", silent.local_addr().unwrap());
    let scratch = Scratch::new("stall");
    let system = scratch.write(
        "system.toml",
        &format!(
            "[[agents]]\nname = \"model\"\nbuiltin = \"llm\"\n\
             config = {{ base_url = \"{base_url}\", timeout_ms = 12000, max_retries = 0 }}\n"
        ),
    );
    let done = run_cli(
        [
            "run".as_ref(),
            system.as_os_str(),
            "--input".as_ref(),
            "-".as_ref(),
        ],
        Some(b"{\"prompt\":\"hello?\"}\n"),
        QUICK,
    );
    done.assert_success();
    assert_contains(
        &done.stderr,
        "bilayer run: no outcome in the last 10 s, 1 inputs waiting",
        "stderr",
    );
    assert!(
        !done.stderr.contains("NATS") && !done.stderr.contains("worker"),
        "an in-process run has no workers: {}",
        done.stderr
    );
    drop(silent);
}

/// `--quiet` prints the summary and nothing else, however many messages are dead-lettered
/// (each one is a debug-level log line, shown with RUST_LOG=debug, not a warning).
#[test]
fn run_quiet_prints_only_the_summary_even_with_dead_letters() {
    let scratch = Scratch::new("quiet");
    scratch.write(
        "start.rhai",
        "fn start(msg) {\n    if msg.n % 2 == 0 { throw \"even\"; }\n    #{ next_agent: \"nowhere\" }\n}\n\nstart\n",
    );
    let system = scratch.write(
        "system.toml",
        "[[agents]]\nname = \"start\"\nscript = \"start.rhai\"\n",
    );
    let input: String = (1..=50).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    // The default log filter, as a user has it (the helper's RUST_LOG=error would hide
    // the warnings this test is about).
    let mut command = bilayer([
        "run".as_ref(),
        system.as_os_str(),
        "--input".as_ref(),
        "-".as_ref(),
        "--quiet".as_ref(),
    ]);
    let mut child = command
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the bilayer binary");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("write the input");
    let done = wait_with_deadline(child, QUICK, "bilayer run --quiet");
    done.assert_success();
    assert!(done.stdout.is_empty(), "stdout: {}", done.stdout);
    let lines: Vec<&str> = done.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "only the summary: {}", done.stderr);
    assert!(lines[0].starts_with("50 inputs in "), "{}", done.stderr);
    assert_eq!(lines[1], "outcomes: ok 0, error 0, dead_letter 50");
    assert_eq!(lines[2], "terminal agents: -");
    assert!(lines[3].starts_with("latency: "), "{}", done.stderr);
}

#[test]
fn exec_refuses_input_that_looks_like_json_but_is_not() {
    let done = run_cli(
        [
            "exec",
            "scripts/order_processor.rhai",
            "--input",
            r#"{"id":"ORD-123","quantity":5,"price":}"#,
        ],
        None,
        QUICK,
    );
    done.assert_failure();
    assert!(done.stdout.is_empty(), "stdout: {}", done.stdout);
    assert_contains(
        &done.stderr,
        "--input is not valid JSON: expected value at line 1 column 38",
        "stderr",
    );
    // Plain words are still a string for rules scripts.
    let words = run_cli(
        [
            "exec",
            "scripts/rules/content_moderation.rhai",
            "--input",
            "BUY NOW",
        ],
        None,
        QUICK,
    );
    words.assert_success();
}

/// Every way to grant a capability refuses a name it does not know: `exec --grant` whatever
/// the file, and `capabilities` in a system definition (at `run` and at `check`, naming the key).
#[test]
fn an_unknown_grant_is_refused_by_exec_run_and_check() {
    for file in [
        "examples/mixed/wrap_for_review.wat",
        "scripts/order_processor.rhai",
    ] {
        let done = run_cli(
            ["exec", file, "--input", "{}", "--grant", "flying"],
            None,
            QUICK,
        );
        done.assert_failure();
        assert_contains(
            &done.stderr,
            "--grant: unknown WASM capability `flying`",
            "stderr",
        );
    }
    // A known grant on a script, which has none to grant, is refused too.
    let done = run_cli(
        [
            "exec",
            "scripts/order_processor.rhai",
            "--input",
            "{}",
            "--grant",
            "log",
        ],
        None,
        QUICK,
    );
    done.assert_failure();
    assert_contains(&done.stderr, "--grant is for WASM modules", "stderr");

    let scratch = Scratch::new("grant");
    let module = root().join("examples/mixed/wrap_for_review.wat");
    let system = scratch.write(
        "system.toml",
        &format!(
            "[[agents]]\nname = \"review\"\nwasm = \"{}\"\ncapabilities = [\"log\", \"flying\"]\n",
            module.display()
        ),
    );
    let message = "agent `review`: `capabilities`: unknown WASM capability `flying`";
    let run = run_cli(
        [
            "run".as_ref(),
            system.as_os_str(),
            "--input".as_ref(),
            "-".as_ref(),
        ],
        Some(b""),
        QUICK,
    );
    run.assert_failure();
    assert_contains(
        &run.stderr,
        &format!("{}: {message}", at(&system, 4, 1)),
        "stderr",
    );
    let check = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    check.assert_failure();
    assert_contains(
        &check.stderr,
        &format!("{}: {message}", at(&system, 4, 1)),
        "stderr",
    );
}

/// A WASM agent's errors name the agent, as the system knows it, not the module's file.
#[test]
fn a_wasm_agent_error_names_the_agent_not_the_module_file() {
    let scratch = Scratch::new("wasm-name");
    scratch.write(
        "broken_module.wat",
        concat!(
            "(module\n",
            "  (memory (export \"memory\") 1)\n",
            "  (func (export \"alloc\") (param i32) (result i32) (i32.const 1024))\n",
            "  (func (export \"execute\") (param i32 i32) (result i64) unreachable))\n",
        ),
    );
    let system = scratch.write(
        "system.toml",
        "[[agents]]\nname = \"reviewer\"\nwasm = \"broken_module.wat\"\n",
    );
    let (_, lines) = run_system(&system, b"{\"n\":1}\n");
    let reason = lines[0]["reason"].as_str().expect("a dead letter");
    assert_contains(reason, "WASM plugin `reviewer`", "reason");
    assert!(!reason.contains("broken_module"), "{reason}");

    // `check` links the module before anything runs, and names the agent too.
    let probe = root().join("plugins/tests/fixtures/wasm/host_probe.wat");
    let system = scratch.write(
        "probe.toml",
        &format!(
            "[[agents]]\nname = \"prober\"\nwasm = \"{}\"\n",
            probe.display()
        ),
    );
    let check = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    check.assert_failure();
    assert_contains(&check.stderr, "`prober`", "stderr");
    assert!(!check.stderr.contains("`host_probe`"), "{}", check.stderr);
}

/// A WASM agent past its timeout is told so, and told the TOML key that raises it
/// (`[limits] timeout_ms`), never `WasmLimits::timeout`, a Rust setting.
#[test]
fn a_wasm_agent_limit_error_does_not_name_a_rust_setting() {
    let scratch = Scratch::new("wasm-limit");
    let module = root().join("plugins/tests/fixtures/wasm/infinite_loop.wat");
    let system = scratch.write(
        "system.toml",
        &format!(
            "[[agents]]\nname = \"spinner\"\nwasm = \"{}\"\n",
            module.display()
        ),
    );
    let (_, lines) = run_system(&system, b"{\"n\":1}\n");
    let reason = lines[0]["reason"].as_str().expect("a dead letter");
    assert_contains(reason, "WASM plugin `spinner` was stopped", "reason");
    assert_contains(reason, "past its timeout", "reason");
    assert_contains(reason, "raise `[limits] timeout_ms`", "reason");
    assert!(!reason.contains("WasmLimits"), "{reason}");
}

// ---------------------------------------------------------------------------------------------
// Files that never end or are too big (issue 21): every user-named file is read through
// bilayer::user_file, which refuses devices and FIFOs from their metadata and files past a
// size limit, without reading more than the limit + 1 bytes.
// ---------------------------------------------------------------------------------------------

/// Makes a FIFO at `path` (`mkfifo`, so the test needs no FFI); nothing ever writes to it, so
/// opening it for reading would block forever.
fn fifo(path: PathBuf) -> PathBuf {
    let made = Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
    path
}

/// A sparse file of `len` zero bytes: cheap to make whatever its size.
fn sparse(path: PathBuf, len: u64) -> PathBuf {
    std::fs::File::create(&path)
        .and_then(|file| file.set_len(len))
        .expect("make a sparse file");
    path
}

/// `check` and `run` on `system` both fail promptly, their stderr holding each of `needles`.
fn check_and_run_refuse(system: &Path, needles: &[&str]) {
    let check = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    check.assert_failure();
    let run = run_cli(
        [
            "run".as_ref(),
            system.as_os_str(),
            "--input".as_ref(),
            "-".as_ref(),
        ],
        Some(b""),
        QUICK,
    );
    run.assert_failure();
    for needle in needles {
        assert_contains(&check.stderr, needle, "check's stderr");
        assert_contains(&run.stderr, needle, "run's stderr");
    }
}

#[test]
fn a_concurrency_of_zero_is_refused_naming_its_key() {
    let scratch = Scratch::new("concurrency-zero");
    scratch.write("a.rhai", "fn a(msg) { msg }\n\na\n");
    let system = scratch.write(
        "system.toml",
        concat!(
            "[[agents]]\n",
            "name = \"a\"\n",
            "script = \"a.rhai\"\n",
            "concurrency = 0\n",
            "\n",
            "[[plugins]]\n",
            "builtin = \"http\"\n",
            "max_concurrency = 0\n",
        ),
    );
    let check = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    check.assert_failure();
    assert_contains(
        &check.stderr,
        &format!(
            "{}: agent `a`: `concurrency` must be at least 1",
            at(&system, 4, 15)
        ),
        "check's stderr",
    );
    assert_contains(
        &check.stderr,
        "plugin `http`: `max_concurrency` must be at least 1",
        "check's stderr",
    );
    check_and_run_refuse(&system, &["`concurrency` must be at least 1"]);
    // A negative number is not a count at all.
    let negative = scratch.write(
        "negative.toml",
        "[[agents]]\nname = \"a\"\nscript = \"a.rhai\"\nconcurrency = -4\n",
    );
    check_and_run_refuse(&negative, &["`concurrency`: invalid value: integer `-4`"]);
}

#[test]
fn a_device_named_as_a_script_or_init_sql_file_is_refused_not_read() {
    let scratch = Scratch::new("dev-zero");
    let system = scratch.write(
        "script.toml",
        "[[agents]]\nname = \"zero\"\nscript = \"/dev/zero\"\n",
    );
    check_and_run_refuse(
        &system,
        &[
            "Rhai script /dev/zero",
            "a character device, not a regular file",
        ],
    );
    // `check` points at the key to change.
    let check = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    assert_contains(
        &check.stderr,
        &format!("{}: agent `zero`: `script`:", at(&system, 3, 1)),
        "stderr",
    );
    let system = scratch.write(
        "sql.toml",
        "[[agents]]\nname = \"db\"\nbuiltin = \"database\"\ninit_sql_file = \"/dev/zero\"\n",
    );
    check_and_run_refuse(
        &system,
        &[
            "init_sql_file /dev/zero",
            "a character device, not a regular file",
        ],
    );
    let system = scratch.write(
        "routing.toml",
        "routing = \"/dev/urandom\"\n[[agents]]\nname = \"a\"\nnative = \"order_intake\"\n",
    );
    let check = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    check.assert_failure();
    assert_contains(&check.stderr, "Rhai script /dev/urandom", "stderr");
    assert_contains(
        &check.stderr,
        &format!("{}: `routing`:", at(&system, 1, 1)),
        "stderr",
    );
}

#[test]
fn a_fifo_named_as_a_module_is_refused_without_opening_it() {
    let scratch = Scratch::new("fifo-module");
    fifo(scratch.0.join("pipe.wasm"));
    let system = scratch.write(
        "system.toml",
        "[[agents]]\nname = \"piped\"\nwasm = \"pipe.wasm\"\n",
    );
    check_and_run_refuse(
        &system,
        &["pipe.wasm", "a FIFO (named pipe), not a regular file"],
    );
}

#[test]
fn a_file_past_its_size_limit_is_refused_naming_the_limit() {
    let scratch = Scratch::new("over-limit");
    sparse(scratch.0.join("huge.rhai"), (16 << 20) + 1);
    let system = scratch.write(
        "system.toml",
        "[[agents]]\nname = \"huge\"\nscript = \"huge.rhai\"\n",
    );
    check_and_run_refuse(
        &system,
        &[
            "huge.rhai",
            "larger than the 16 MiB limit for a Rhai script",
        ],
    );
    sparse(scratch.0.join("huge.wat"), (256 << 20) + 1);
    let system = scratch.write(
        "wasm.toml",
        "[[agents]]\nname = \"huge\"\nwasm = \"huge.wat\"\n",
    );
    check_and_run_refuse(
        &system,
        &[
            "huge.wat",
            "larger than the 256 MiB limit for a WASM module",
        ],
    );
    // The definition itself.
    let system = sparse(scratch.0.join("huge.toml"), (16 << 20) + 1);
    check_and_run_refuse(
        &system,
        &["larger than the 16 MiB limit for a system definition"],
    );
}

#[test]
fn exec_and_tools_refuse_a_device_or_fifo() {
    let scratch = Scratch::new("exec-dev");
    let done = run_cli(["exec", "/dev/zero", "--input", "{}"], None, QUICK);
    done.assert_failure();
    assert_contains(&done.stderr, "/dev/zero", "stderr");
    // Named like a script, so that `exec` reads it: the metadata check refuses it.
    let zero = scratch.0.join("zero.rhai");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
    let done = run_cli(
        [
            "exec".as_ref(),
            zero.as_os_str(),
            "--input".as_ref(),
            "{}".as_ref(),
        ],
        None,
        QUICK,
    );
    done.assert_failure();
    assert_contains(&done.stderr, "a character device", "stderr");
    let pipe = fifo(scratch.0.join("pipe.wat"));
    let done = run_cli(
        [
            "exec".as_ref(),
            pipe.as_os_str(),
            "--input".as_ref(),
            "{}".as_ref(),
        ],
        None,
        QUICK,
    );
    done.assert_failure();
    assert_contains(&done.stderr, "a FIFO (named pipe)", "stderr");

    let done = run_cli(["tools", "/dev/zero"], None, QUICK);
    done.assert_failure();
    assert_contains(&done.stderr, "Rhai script /dev/zero", "stderr");
    assert_contains(&done.stderr, "a character device", "stderr");
    // In a tool directory, a script past the limit is refused, naming it.
    sparse(scratch.0.join("huge.rhai"), (16 << 20) + 1);
    let done = run_cli(["tools".as_ref(), scratch.0.as_os_str()], None, QUICK);
    done.assert_failure();
    assert_contains(&done.stderr, "huge.rhai", "stderr");
    assert_contains(&done.stderr, "larger than the 16 MiB limit", "stderr");
}

// ---------------------------------------------------------------------------------------------
// Hostile plugins: timeouts that bound, WASM limits from flags and TOML, deep Rhai values
// (issue 21 items 4 and 5)
// ---------------------------------------------------------------------------------------------

/// A module whose `execute` sleeps 30 s in WASI `poll_oneoff` (a blocking host call no epoch
/// interrupt can stop).
const WASI_SLEEPER: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (i64.store (i32.const 0) (i64.const 1))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 30000000000))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll (i32.const 0) (i32.const 104) (i32.const 1) (i32.const 200)))
    (i64.const 0)))"#;

/// A module whose `execute` spins forever.
const SPINNER: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (loop $spin (br $spin))
    (i64.const 0)))"#;

/// A module whose `execute` grows its memory by `pages` (64 KiB each) and traps if refused.
fn memory_grower(pages: u32) -> String {
    format!(
        r#"(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (if (i32.lt_s (memory.grow (i32.const {pages})) (i32.const 0)) (then unreachable))
    (i64.const 0)))"#
    )
}

#[test]
fn exec_timeout_abandons_a_module_blocked_in_wasi_and_exits() {
    let scratch = Scratch::new("wasi-sleep");
    let module = scratch.write("sleeper.wat", WASI_SLEEPER);
    let started = Instant::now();
    let done = run_cli(
        [
            "exec".as_ref(),
            module.as_os_str(),
            "--grant".as_ref(),
            "wasi".as_ref(),
            "--timeout-ms".as_ref(),
            "200".as_ref(),
            "--input".as_ref(),
            "{}".as_ref(),
        ],
        None,
        QUICK,
    );
    let elapsed = started.elapsed();
    done.assert_failure();
    assert_contains(&done.stderr, "did not answer within 200ms", "stderr");
    // The process waited neither for the 30 s sleep nor for its blocking thread.
    assert!(
        elapsed < Duration::from_secs(3),
        "exec should exit about when its timeout fires, took {elapsed:?}"
    );
}

#[test]
fn exec_timeout_stops_a_spinning_module_whose_own_limit_is_its_timeout() {
    let scratch = Scratch::new("wasm-spin");
    let module = scratch.write("spin.wat", SPINNER);
    let started = Instant::now();
    let done = run_cli(
        [
            "exec".as_ref(),
            module.as_os_str(),
            "--timeout-ms".as_ref(),
            "300".as_ref(),
            "--input".as_ref(),
            "{}".as_ref(),
        ],
        None,
        QUICK,
    );
    let elapsed = started.elapsed();
    done.assert_failure();
    assert_contains(&done.stderr, "300ms", "stderr");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[test]
fn exec_sets_wasm_fuel_and_memory_from_its_flags() {
    let scratch = Scratch::new("wasm-flags");
    let spin = scratch.write("spin.wat", SPINNER);
    let done = run_cli(
        [
            "exec".as_ref(),
            spin.as_os_str(),
            "--fuel".as_ref(),
            "100000".as_ref(),
            "--input".as_ref(),
            "{}".as_ref(),
        ],
        None,
        QUICK,
    );
    done.assert_failure();
    assert_contains(&done.stderr, "fuel", "stderr");
    assert_contains(&done.stderr, "100000 units", "stderr");
    assert_contains(&done.stderr, "raise --fuel", "the flag that raises it");

    // 2 MiB more than the initial 64 KiB: refused under --memory-mb 1, fine by default.
    let grower = scratch.write("grow.wat", &memory_grower(32));
    let args = |extra: &[&str]| {
        let mut args = vec![
            "exec".to_string(),
            grower.display().to_string(),
            "--input".to_string(),
            "{}".to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let refused = run_cli(args(&["--memory-mb", "1"]), None, QUICK);
    refused.assert_failure();
    assert_contains(&refused.stderr, "max_memory_bytes", "stderr");
    assert_contains(
        &refused.stderr,
        "raise --memory-mb",
        "the flag that raises it",
    );
    run_cli(args(&[]), None, QUICK).assert_success();

    // They are WASM limits: a script is told where its limits are set instead.
    let script = scratch.write("echo.rhai", "fn echo(x) { x }\n\necho\n");
    let done = run_cli(
        [
            "exec".as_ref(),
            script.as_os_str(),
            "--fuel".as_ref(),
            "5".as_ref(),
            "--input".as_ref(),
            "1".as_ref(),
        ],
        None,
        QUICK,
    );
    done.assert_failure();
    assert_contains(&done.stderr, "[limits]", "stderr");
}

#[test]
fn run_hop_timeout_bounds_a_wasm_hop_whatever_the_module_does() {
    let scratch = Scratch::new("hop-timeout");
    scratch.write("sleeper.wat", WASI_SLEEPER);
    scratch.write("spin.wat", SPINNER);
    let input = scratch.write("in.jsonl", "{\"n\":1}\n{\"n\":2}\n");
    for (module, grant) in [
        ("sleeper.wat", "capabilities = [\"wasi\"]\n"),
        ("spin.wat", ""),
    ] {
        // The module's own timeout is a minute; the hop's is 300 ms.
        let system = scratch.write(
            "system.toml",
            &format!(
                "hop_timeout_ms = 300\n\n[limits]\ntimeout_ms = 60000\n\n[[agents]]\n\
                 name = \"slow\"\nwasm = \"{module}\"\n{grant}"
            ),
        );
        let started = Instant::now();
        let done = run_cli(
            [
                "run".as_ref(),
                system.as_os_str(),
                "--input".as_ref(),
                input.as_os_str(),
            ],
            None,
            QUICK,
        );
        let elapsed = started.elapsed();
        done.assert_success();
        let lines = done.stdout_lines();
        assert_eq!(lines.len(), 2, "{module}: {}", done.stdout);
        for line in &lines {
            assert_eq!(line["status"], "dead_letter", "{module}: {line}");
            let reason = line["reason"].as_str().unwrap_or_default();
            assert!(
                reason.contains("did not answer within 300ms"),
                "{module}: the hop fails with its timeout: {line}"
            );
        }
        // Two hops of 300 ms, not two of 30 s or a minute.
        assert!(
            elapsed < Duration::from_secs(10),
            "{module}: the run took {elapsed:?}"
        );
    }
}

#[test]
fn run_sets_wasm_limits_from_the_definition() {
    let scratch = Scratch::new("wasm-toml-limits");
    scratch.write("spin.wat", SPINNER);
    scratch.write("grow.wat", &memory_grower(32));
    let input = scratch.write("in.jsonl", "{\"n\":1}\n");
    for (module, limits, expected) in [
        ("spin.wat", "fuel = 100000", "fuel"),
        ("grow.wat", "max_memory_bytes = 1048576", "max_memory_bytes"),
    ] {
        let system = scratch.write(
            "system.toml",
            &format!(
                "[[agents]]\nname = \"limited\"\nwasm = \"{module}\"\n\n\
                 [agents.limits]\n{limits}\n"
            ),
        );
        run_cli(["check".as_ref(), system.as_os_str()], None, QUICK).assert_success();
        let (_, lines) = run_system(&system, &std::fs::read(&input).expect("read the input"));
        let line = &lines[0];
        assert_eq!(line["status"], "dead_letter", "{line}");
        assert_contains(
            line["reason"].as_str().unwrap_or_default(),
            expected,
            "reason",
        );
    }

    // A script-only limit on a WASM agent, and a WASM-only one on a script, are mistakes
    // `check` names at their keys; the state cap and the shared timeout are not.
    scratch.write("noop.rhai", "fn noop(msg) { msg }\n\nnoop\n");
    let system = scratch.write(
        "system.toml",
        "[[agents]]\nname = \"limited\"\nwasm = \"spin.wat\"\n\n[agents.limits]\n\
         max_operations = 5\ntimeout_ms = 50\nmax_state_bytes = 4096\n\n\
         [[agents]]\nname = \"script\"\nscript = \"noop.rhai\"\n\n[agents.limits]\n\
         fuel = 5\ntimeout_ms = 50\nmax_state_bytes = 4096\n",
    );
    let done = run_cli(["check".as_ref(), system.as_os_str()], None, QUICK);
    done.assert_failure();
    assert_contains(
        &done.stderr,
        &format!(
            "{}: agent `limited`: `limits.max_operations` is a Rhai script limit, and this agent \
             is a WASM module, which does not use it; remove the key",
            at(&system, 6, 1)
        ),
        "stderr",
    );
    assert_contains(
        &done.stderr,
        &format!(
            "{}: agent `script`: `limits.fuel` is a WASM module limit, and this agent is a Rhai \
             script, which does not use it; remove the key",
            at(&system, 15, 1)
        ),
        "stderr",
    );
    assert!(
        done.stderr.lines().any(|l| l == "2 problems"),
        "{}",
        done.stderr
    );
}

/// The largest Rhai size limits a definition accepts: together they may let values nest at most
/// as deep as the threads running scripts can print, compare and drop.
const LARGEST_LIMITS: &str = "max_operations = 9223372036854775807\n\
    max_call_stack_depth = 9223372036854775807\n\
    max_string_size = 9223372036854775807\n\
    max_array_size = 16000\nmax_map_size = 16000\nmax_expr_depth = 376\n";

#[test]
fn run_survives_the_deepest_values_a_script_can_build_under_the_largest_limits() {
    let scratch = Scratch::new("deep-values");
    // Each script builds its value one level per iteration until a limit stops it (the size
    // limits, or in a debug build the timeout first: every level re-measures the whole value,
    // so a few thousand levels), printing it every 250 levels (printing recurses once per level
    // with no check: ~7 KB a level in a debug build, past a 2 MiB stack at ~300 levels);
    // comparing recurses through the progress hook, so its stack budget stops it; the last one
    // recurses until its stack budget runs out.
    scratch.write(
        "arrays.rhai",
        "fn build(x) {\n  let a = 0; let n = 0;\n  loop {\n    a = [a]; n += 1;\n    \
         if n % 250 == 0 { let s = a.to_string(); let t = `${a}`; }\n  }\n}\n\nbuild\n",
    );
    scratch.write(
        "maps.rhai",
        "fn build(x) {\n  let m = #{}; let n = 0;\n  loop {\n    m = #{inner: m}; n += 1;\n    \
         if n % 250 == 0 { let s = m.to_string(); debug(m); }\n  }\n}\n\nbuild\n",
    );
    scratch.write(
        "compare.rhai",
        "fn build(x) {\n  let a = 0;\n  loop { a = [a]; let same = a == a; }\n}\n\nbuild\n",
    );
    scratch.write(
        "recurse.rhai",
        "fn down(n) { [down(n + 1)] }\nfn start(x) { down(0) }\n\nstart\n",
    );
    let input = scratch.write("in.jsonl", "{\"n\":1}\n");
    for script in ["arrays.rhai", "maps.rhai", "compare.rhai", "recurse.rhai"] {
        let system = scratch.write(
            "system.toml",
            &format!(
                "hop_timeout_ms = 60000\n\n[limits]\ntimeout_ms = 5000\n{LARGEST_LIMITS}\n\
                 [[agents]]\nname = \"deep\"\nscript = \"{script}\"\n"
            ),
        );
        run_cli(["check".as_ref(), system.as_os_str()], None, QUICK).assert_success();
        // The process is alive at the end (a stack overflow aborts it with a signal: run_system
        // asserts a clean exit) and reports the input's outcome: a dead letter naming the limit
        // that stopped the script.
        let (_, lines) = run_system(&system, &std::fs::read(&input).expect("read the input"));
        let line = &lines[0];
        assert_eq!(line["status"], "dead_letter", "{script}: {line}");
        assert_contains(
            line["reason"].as_str().unwrap_or_default(),
            "limit exceeded",
            script,
        );
    }

    // One level more than the threads can hold is refused, naming the keys to lower.
    let system = scratch.write(
        "system.toml",
        "[limits]\nmax_array_size = 16001\nmax_map_size = 16000\nmax_expr_depth = 376\n\n\
         [[agents]]\nname = \"deep\"\nscript = \"arrays.rhai\"\n",
    );
    for command in ["check", "run"] {
        let done = run_cli(
            [
                command.as_ref(),
                system.as_os_str(),
                "--input".as_ref(),
                input.as_os_str(),
            ]
            .into_iter()
            .take(if command == "check" { 2 } else { 4 }),
            None,
            QUICK,
        );
        done.assert_failure();
        assert_contains(&done.stderr, "max_array_size (16001)", command);
        assert_contains(&done.stderr, "native stack", command);
    }
}
