//! The W2 "LLM-bound triage" example (examples/w2), run as a user runs it: `bilayer run` on its
//! tickets, against a loopback OpenAI-compatible model (tests/it/builtin_server). triage asks
//! the model `classify: <text>` and routes the ticket to the team the answer names; billing and
//! technical ask `reply to: <text>` and finish with `{id, team, reply}`. The model here answers
//! by a rule of its own, so the test knows where every ticket must end and with which reply:
//! what benches/w2_compare.sh checks against ../shared/peers/llm_server.py's rule, held to a
//! server that needs no Python.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bilayer::system_config::SystemDefinition;
use serde_json::{json, Value};

use crate::builtin_server::{Request, Response, TestServer};

/// The base URL written in examples/w2/system.toml: llm_server.py's default port.
const EXAMPLE_BASE_URL: &str = "http://127.0.0.1:8100/v1";
/// A run of 20 tickets takes a few seconds; the machine is a noisy 2-core box.
const DEADLINE: Duration = Duration::from_secs(120);

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/w2")
}

/// The loopback model's category for a ticket text: the sum of its bytes, even → billing.
/// (llm_server.py uses the first byte of its SHA-256; any fixed rule the test can recompute
/// does here.)
fn category(text: &str) -> &'static str {
    if text.bytes().map(u64::from).sum::<u64>() % 2 == 0 {
        "billing"
    } else {
        "technical"
    }
}

/// The loopback model's answer to any other prompt.
fn reply(prompt: &str) -> String {
    format!("reply-{}", prompt.len())
}

/// The model: the prompt must be the request's only message, a user message, for model `w2`.
fn model(request: &Request, _number: usize) -> Response {
    let body = request.json();
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let prompt = match messages.as_slice() {
        [only] if only["role"] == "user" && body["model"] == "w2" => {
            only["content"].as_str().unwrap_or("").to_string()
        }
        _ => {
            return Response::json(
                400,
                json!({"error": {"message": format!("not a W2 request: {body}")}}),
            )
        }
    };
    let answer = match prompt.strip_prefix("classify: ") {
        Some(text) => category(text).to_string(),
        None => reply(&prompt),
    };
    Response::json(
        200,
        json!({
            "id": "chatcmpl-w2",
            "object": "chat.completion",
            "model": "w2",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}
        }),
    )
}

/// A copy of examples/w2/system.toml in a scratch directory, its scripts pointing back at the
/// example's and its model at `base_url`: how benches/w2_compare.sh points it at its server.
fn example_pointed_at(base_url: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bilayer-w2-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(example_dir().join("system.toml")).unwrap();
    assert!(
        text.contains(EXAMPLE_BASE_URL),
        "the example's model should be llm_server.py's default address"
    );
    let text = text
        .replace(
            "script = \"",
            &format!("script = \"{}/", example_dir().display()),
        )
        .replace(EXAMPLE_BASE_URL, base_url);
    let path = dir.join("system.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary to its end, killing it past [`DEADLINE`] so a hang fails the test.
fn run_to_end(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > DEADLINE {
            child.kill().unwrap();
            panic!("bilayer run did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bilayer_run_sends_every_w2_ticket_to_the_team_the_model_names_with_its_reply() {
    let server = TestServer::start(model).await;
    let system = example_pointed_at(&server.url("/v1"));
    let definition = SystemDefinition::load(&system).unwrap();
    assert_eq!(
        definition.check(),
        vec![],
        "the w2 system should check clean"
    );

    let tickets: Vec<Value> = std::fs::read_to_string(example_dir().join("tickets.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tickets.len(), 20);
    let mut command = Command::new(env!("CARGO_BIN_EXE_bilayer"));
    command
        .args(["run", system.to_str().unwrap(), "--input"])
        .arg(example_dir().join("tickets.jsonl"))
        .env("RUST_LOG", "error");
    // The child is waited for on a blocking thread: the server answers on this runtime.
    let output = tokio::task::spawn_blocking(move || run_to_end(command))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    let outcomes: BTreeMap<u64, Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|o| (o["input"].as_u64().unwrap(), o))
        .collect();
    assert_eq!(outcomes.len(), tickets.len(), "one outcome per ticket");
    let mut teams = BTreeMap::new();
    for (line, ticket) in (1..).zip(&tickets) {
        let outcome = &outcomes[&line];
        let text = ticket["text"].as_str().unwrap();
        let team = category(text);
        assert_eq!(outcome["status"], "ok", "{outcome}");
        assert_eq!(outcome["agent"], team, "{outcome}");
        assert_eq!(outcome["hops"], json!(["triage", team]), "{outcome}");
        assert_eq!(
            outcome["output"],
            json!({"id": ticket["id"], "team": team, "reply": reply(&format!("reply to: {text}"))}),
        );
        *teams.entry(team).or_insert(0) += 1;
    }
    // Both teams are reached, as the summary on stderr says too.
    let summary = format!(
        "terminal agents: billing {}, technical {}",
        teams["billing"], teams["technical"]
    );
    assert!(stderr.contains(&summary), "{summary} in:\n{stderr}");
    // Two model calls a ticket, none retried.
    assert_eq!(server.requests().len(), 2 * tickets.len());
    std::fs::remove_dir_all(system.parent().unwrap()).unwrap();
}
