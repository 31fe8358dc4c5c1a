//! `bilayer worker --watch`: a worker process serving a system's agents over NATS hot-reloads
//! what it serves while a submitter in this process keeps sending: a saved routing script
//! routes the next messages by its new rules, a saved agent script serves the next messages,
//! and the worker still stops cleanly on SIGTERM. A real worker process, real files, a real
//! NATS server (skipped without one unless `BILAYER_REQUIRE_NATS=1`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bilayer::system_config::{Deployment, SystemDefinition};
use bilayer::{AgentSystem, OutcomeStatus};
use serde_json::json;

use crate::hot_reload_support::{routing_to, terminal_agent, Scratch};
use crate::nats_support::{delete_streams, jetstream_or_skip, nats_url, unique_system};

/// The worker process and every line it wrote to stderr so far.
struct Worker {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    fn start(system: &std::path::Path) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bilayer"))
            .arg("worker")
            .arg(system)
            .arg("--watch")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bilayer worker starts");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[worker] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let worker = Worker { child, lines };
        worker.wait_for_line("the worker to serve", |l| {
            l.contains("bilayer worker: serving") && l.contains("watching for changes")
        });
        worker
    }

    /// Waits (up to a minute) for a stderr line `matches` accepts; returns how many lines
    /// there were then.
    fn wait_for_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            {
                let lines = self.lines.lock().unwrap();
                if lines.iter().any(|l| matches(l)) {
                    return lines.len();
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn completed_reloads(&self, id: &str) -> usize {
        let quoted = format!("plugin_id: \"{id}\"");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("ReloadCompleted") && l.contains(&quoted))
            .count()
    }
}

async fn served_by(system: &AgentSystem, n: i64) -> (String, String) {
    let outcome = system.send(json!({ "n": n })).await;
    assert_eq!(outcome.status, OutcomeStatus::Ok, "{outcome:?}");
    let output = outcome.output.unwrap();
    assert_eq!(output["n"], n);
    (
        outcome.agent.unwrap(),
        output["served_by"].as_str().unwrap().to_string(),
    )
}

async fn until_reloaded(worker: &Worker, id: &str, before: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while worker.completed_reloads(id) <= before {
        assert!(
            Instant::now() < deadline,
            "the worker never reloaded `{id}`"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watching_worker_reloads_routing_and_agents_while_serving() {
    let Some(js) =
        jetstream_or_skip("a_watching_worker_reloads_routing_and_agents_while_serving").await
    else {
        return;
    };
    let name = unique_system("watch");
    let dir = Scratch::new("worker-watch");
    dir.write(
        "system.toml",
        &format!(
            r#"
name = "{name}"
entry = "intake"
routing = "routing.rhai"

[transport]
kind = "nats"
url = "{url}"

[[agents]]
name = "intake"
script = "intake.rhai"

[[agents]]
name = "left"
script = "left.rhai"

[[agents]]
name = "right"
script = "right.rhai"
"#,
            url = nats_url()
        ),
    );
    dir.write(
        "intake.rhai",
        "fn intake(msg) {\n    #{ n: msg.n, next_agent: \"left\" }\n}\n\nintake\n",
    );
    dir.write("left.rhai", &terminal_agent("left", "left"));
    dir.write("right.rhai", &terminal_agent("right", "right"));
    dir.write("routing.rhai", &routing_to("left"));

    let mut worker = Worker::start(&dir.file("system.toml"));
    // This process submits and collects; the worker serves every agent.
    let definition = SystemDefinition::load(dir.file("system.toml")).unwrap();
    let submitter = definition
        .build_with(&Deployment {
            transport: None,
            serve: Some(Vec::new()),
            ..Deployment::default()
        })
        .await
        .unwrap();
    assert!(
        submitter.agents().is_empty(),
        "the submitter serves no agent"
    );
    assert_eq!(
        served_by(&submitter, 1).await,
        ("left".into(), "left".into())
    );

    // The routing script changes under the running worker.
    dir.write_and_rename("routing.rhai", &routing_to("right"));
    until_reloaded(&worker, "$routing", 0).await;
    for n in 2..12 {
        assert_eq!(
            served_by(&submitter, n).await,
            ("right".into(), "right".into())
        );
    }

    // So does an agent it serves.
    dir.write_and_rename("right.rhai", &terminal_agent("right", "right v2"));
    until_reloaded(&worker, "right", 0).await;
    assert_eq!(
        served_by(&submitter, 12).await,
        ("right".into(), "right v2".into())
    );

    submitter.shutdown().await.unwrap();
    let stopped = Command::new("kill")
        .args(["-TERM", &worker.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = worker.child.wait().unwrap();
    assert!(
        status.success(),
        "the worker exits 0 on SIGTERM: {status:?}"
    );
    worker.wait_for_line("the worker's stop report", |l| {
        l.contains("bilayer worker: stopped")
    });
    delete_streams(&js, &name).await;
}
