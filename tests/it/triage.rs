//! The support triage example (examples/triage): intake classifies each ticket, with keyword
//! rules when the system has no LLM and with the model when it has one (here the loopback
//! OpenAI-compatible server of tests/it/builtin_server), routes it by next_agent to billing,
//! technical or human, and technical answers from the SQLite knowledge base through the
//! database plugin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bilayer::prelude::*;
use bilayer::system_config::SystemDefinition;
use serde_json::{json, Value};

use crate::builtin_server::{Request, Response, TestServer};

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/triage")
}

fn tickets() -> Vec<Value> {
    std::fs::read_to_string(example_dir().join("tickets.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A copy of examples/triage/system.toml in a temporary directory, its paths pointing back at
/// the example's files, with `extra` appended.
fn example_with(test: &str, extra: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bilayer-triage-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let example = example_dir().display().to_string();
    let text = std::fs::read_to_string(example_dir().join("system.toml"))
        .unwrap()
        .replace("script = \"", &format!("script = \"{example}/"))
        .replace(
            "init_sql_file = \"",
            &format!("init_sql_file = \"{example}/"),
        );
    let path = dir.join("system.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    path
}

async fn start(path: &Path) -> AgentSystem {
    let definition = SystemDefinition::load(path).unwrap();
    assert_eq!(
        definition.check(),
        vec![],
        "the triage system should check clean"
    );
    definition.build().await.unwrap()
}

fn article_ids(output: &Value) -> Vec<i64> {
    output["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_llm_keyword_rules_triage_every_ticket() {
    let system = start(&example_dir().join("system.toml")).await;
    let mut by_ticket = BTreeMap::new();
    for ticket in tickets() {
        let id = ticket["id"].as_str().unwrap().to_string();
        let outcome = system.send(ticket).await;
        assert!(outcome.is_ok(), "{outcome:?}");
        let output = outcome.output.clone().unwrap();
        assert_eq!(output["triage"]["by"], "keywords", "{output}");
        assert!(output["triage"].get("llm_error").is_none(), "{output}");
        by_ticket.insert(id, (outcome.hops.clone(), output));
    }
    let hops = |id: &str| by_ticket[id].0.join(" > ");
    assert_eq!(hops("T-1"), "intake > billing");
    assert_eq!(hops("T-2"), "intake > technical");
    assert_eq!(hops("T-3"), "intake > technical");
    assert_eq!(hops("T-4"), "intake > human");
    assert_eq!(hops("T-5"), "intake > technical");
    assert_eq!(hops("T-6"), "intake > billing");
    // Technical, but nothing in the knowledge base matches: escalated to a human.
    assert_eq!(hops("T-7"), "intake > technical > human");
    assert_eq!(hops("T-8"), "intake > human");

    // The technical agent's answers come from the database plugin.
    let login = &by_ticket["T-2"].1;
    assert_eq!(login["status"], "answered_from_kb");
    assert_eq!(article_ids(login), [101, 102]);
    assert_eq!(
        login["articles"][0]["title"],
        "Resetting a forgotten password"
    );
    assert_eq!(
        login["customer"],
        json!({"name": "Globex", "plan": "pro", "sla_hours": 24})
    );
    assert_eq!(article_ids(&by_ticket["T-3"].1), [103, 104]);
    assert_eq!(by_ticket["T-5"].1["customer"]["plan"], "enterprise");
    assert_eq!(
        by_ticket["T-7"].1["reason"],
        "no knowledge base article matches"
    );
    assert_eq!(by_ticket["T-1"].1["priority"], "high");
    system.shutdown().await.unwrap();
}

/// The loopback model: answers the category written in its table for the ticket's subject
/// (`"503"`: fails with that status).
fn model(answers: &'static [(&'static str, &'static str)]) -> impl Fn(&Request, usize) -> Response {
    move |request, _| {
        let body = request.json();
        let prompt = body["messages"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .to_string();
        let answer = answers
            .iter()
            .find(|(subject, _)| prompt.starts_with(subject))
            .map_or("human", |(_, category)| category);
        if answer == "503" {
            return Response::json(503, json!({"error": {"message": "model overloaded"}}));
        }
        Response::json(
            200,
            json!({
                "id": "chatcmpl-triage",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": answer}}],
                "usage": {"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41}
            }),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_llm_routing_follows_the_model() {
    let server = TestServer::start(model(&[
        // The keywords would say billing ("invoice"); the model says technical.
        ("Invoice page broken", "technical"),
        // The keywords would say billing ("refund"); the model sends it to a person.
        ("Refund for a bereavement", " Human.\n"),
        // The keywords would say human; the model says billing.
        ("Question about my plan", "billing"),
        // Not a category: the keyword rules decide, and the output says why.
        ("Login loop", "I am not sure"),
        // The model is down: the keyword rules decide.
        ("Charged twice", "503"),
    ]))
    .await;
    let path = example_with(
        "llm",
        &format!(
            "[[plugins]]\nbuiltin = \"llm\"\n\
             config = {{ provider = \"local\", base_url = \"{}\", model = \"triage-model\", \
             max_retries = 0, timeout_ms = 5000 }}\n",
            server.url("/v1")
        ),
    );
    let system = start(&path).await;
    let ticket = |id: &str, subject: &str, body: &str| json!({"id": id, "customer": "C-1001", "subject": subject, "body": body});

    let outcome = system
        .send(ticket(
            "L-1",
            "Invoice page broken",
            "The invoice page shows a 500 error.",
        ))
        .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(outcome.hops, ["intake", "technical"]);
    let output = outcome.output.unwrap();
    assert_eq!(
        output["triage"],
        json!({"by": "llm", "category": "technical"})
    );
    assert_eq!(article_ids(&output), [107]);
    assert_eq!(output["customer"]["name"], "Acme Corp");

    let outcome = system
        .send(ticket(
            "L-2",
            "Refund for a bereavement",
            "My father passed away; please refund his plan.",
        ))
        .await;
    assert_eq!(outcome.hops, ["intake", "human"]);
    assert_eq!(outcome.output.unwrap()["triage"]["by"], "llm");

    let outcome = system
        .send(ticket(
            "L-3",
            "Question about my plan",
            "Can we add five seats?",
        ))
        .await;
    assert_eq!(outcome.hops, ["intake", "billing"]);

    let outcome = system
        .send(ticket(
            "L-4",
            "Login loop",
            "After login I land on the login page again.",
        ))
        .await;
    assert_eq!(outcome.hops, ["intake", "technical"]);
    let output = outcome.output.unwrap();
    assert_eq!(output["triage"]["by"], "keywords");
    assert!(
        output["triage"]["llm_error"]
            .as_str()
            .unwrap()
            .contains("I am not sure"),
        "{output}"
    );
    assert_eq!(article_ids(&output), [102]);

    let outcome = system
        .send(ticket(
            "L-5",
            "Charged twice",
            "Two payments for one invoice.",
        ))
        .await;
    assert_eq!(outcome.hops, ["intake", "billing"]);
    let output = outcome.output.unwrap();
    assert_eq!(output["triage"]["by"], "keywords");
    assert!(
        output["triage"]["llm_error"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{output}"
    );

    // The model saw each ticket once (no retries configured), with the triage instructions
    // and the configured model.
    let requests = server.requests();
    assert_eq!(requests.len(), 5);
    let first = requests[0].json();
    assert_eq!(first["model"], "triage-model");
    assert_eq!(first["messages"][0]["role"], "system");
    assert!(first["messages"][0]["content"]
        .as_str()
        .unwrap()
        .contains("billing"));
    system.shutdown().await.unwrap();
}

#[test]
fn the_cli_runs_the_example_without_an_llm() {
    let output = Command::new(env!("CARGO_BIN_EXE_bilayer"))
        .args([
            "run",
            "examples/triage/system.toml",
            "--input",
            "examples/triage/tickets.jsonl",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    assert!(lines.iter().all(|l| l["status"] == "ok"), "{lines:?}");
    assert!(
        stderr.contains("billing 2, human 3, technical 3"),
        "{stderr}"
    );
}

/// The header of examples/triage/system.toml shows how to classify with a local
/// OpenAI-compatible server: `[[plugins]] builtin = "llm"` with only a `base_url` (the README
/// says the same). Taken from the header as written, with the loopback server's address for
/// llama.cpp's, it classifies with the model: no API key, no provider name needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_headers_base_url_example_works_against_a_local_server_as_written() {
    let header = std::fs::read_to_string(example_dir().join("system.toml")).unwrap();
    // The commented-out line `#   # config = { base_url = "..." }   # a llama.cpp server`.
    let config = header
        .lines()
        .filter_map(|line| line.find("config = { base_url").map(|at| &line[at..]))
        .filter_map(|config| config.find('}').map(|end| config[..=end].to_string()))
        .next()
        .expect("the header shows a base_url config");
    assert_eq!(
        config,
        "config = { base_url = \"http://127.0.0.1:8080/v1\" }"
    );
    let server = TestServer::start(model(&[("Invoice page broken", "technical")])).await;
    let config = config.replace("http://127.0.0.1:8080/v1", &server.url("/v1"));
    let path = example_with(
        "llm-header",
        &format!("[[plugins]]\nbuiltin = \"llm\"\n{config}\n"),
    );
    let system = start(&path).await;
    let outcome = system
        .send(
            json!({"id": "H-1", "customer": "C-1001", "subject": "Invoice page broken",
                     "body": "The invoice page shows a 500 error."}),
        )
        .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    let output = outcome.output.unwrap();
    assert_eq!(
        output["triage"],
        json!({"by": "llm", "category": "technical"}),
        "{output}"
    );
    assert_eq!(outcome.hops, ["intake", "technical"]);
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.requests()[0].header("authorization"), None);
    system.shutdown().await.unwrap();
}
