//! Scale-out proof: W1 with 100 000 orders through three `bilayer worker` processes over NATS
//! JetStream, one of them killed (SIGKILL) mid-stream and restarted. Every order must end
//! exactly once with the reference counts (95 810 shipped, 4 190 rejected), the killed
//! worker's unacknowledged messages must have been redelivered to the others, and the
//! results stream must hold exactly one result per order. Needs NATS (tests/it/nats_support).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::nats_support::{
    delete_streams, jetstream_or_skip, nats_url, stored, streams_of, unique_system,
};
use crate::orders;

const ORDERS: u64 = 100_000;

pub(crate) struct Worker {
    pub(crate) child: Child,
    metrics_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `bilayer worker` for every agent and waits until it serves.
fn start_worker(system: &Path) -> Worker {
    start_worker_with(system, &[])
}

/// Starts `bilayer worker SYSTEM` followed by `extra` (e.g. `--store URL`) for every agent and
/// waits until it serves.
pub(crate) fn start_worker_with(system: &Path, extra: &[&OsStr]) -> Worker {
    let metrics_port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bilayer"))
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
            "worker",
        ])
        .arg(system)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bilayer worker starts");
    let stderr = child.stderr.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("bilayer worker: serving") {
                let _ = ready_tx.send(());
            }
            eprintln!("[worker] {line}");
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("worker reports that it serves (what it said is above, as [worker] lines)");
    Worker {
        child,
        metrics_port,
    }
}

/// Sum of a counter over its labels, scraped from a worker's Prometheus endpoint.
fn scrape_counter(worker: &Worker, name: &str) -> f64 {
    let url = format!("http://127.0.0.1:{}/metrics", worker.metrics_port);
    let text = reqwest::blocking_get(&url);
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

mod reqwest {
    /// A plain HTTP/1.0 GET on loopback (the test needs nothing more).
    pub fn blocking_get(url: &str) -> String {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut stream = std::net::TcpStream::connect(host).expect("metrics endpoint");
        write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        body
    }
}

fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w1_over_three_workers_survives_a_killed_worker() {
    let Some(js) = jetstream_or_skip("w1_over_three_workers_survives_a_killed_worker").await else {
        return;
    };
    let name = unique_system("w1");
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let system = dir.join("system.toml");
    std::fs::write(
        &system,
        format!(
            r#"name = "{name}"
entry = "intake"
hop_timeout_ms = 2000

[transport]
kind = "nats"
url = "{url}"
ack_wait_ms = 10000

[[agents]]
name = "intake"
native = "order_intake"

[[agents]]
name = "manager"
native = "order_manager"

[[agents]]
name = "fulfillment"
native = "order_fulfillment"

[[agents]]
name = "audit"
native = "order_audit"
"#,
            url = nats_url()
        ),
    )
    .unwrap();
    let input = dir.join("orders.jsonl");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for i in 0..ORDERS {
            serde_json::to_writer(&mut file, &orders::order(i)).unwrap();
            file.write_all(b"\n").unwrap();
        }
    }

    let mut workers: Vec<Worker> = (0..3).map(|_| start_worker(&system)).collect();
    let outcomes = dir.join("outcomes.jsonl");
    let mut run = Command::new(env!("CARGO_BIN_EXE_bilayer"))
        .arg("run")
        .arg(&system)
        .arg("--input")
        .arg(&input)
        .stdout(std::fs::File::create(&outcomes).unwrap())
        .stderr(std::fs::File::create(dir.join("run.stderr")).unwrap())
        .spawn()
        .expect("bilayer run starts");

    // Mid-stream (some outcomes, far from all): kill worker 1 without warning, then restart it.
    let started = Instant::now();
    while count_lines(&outcomes) < (ORDERS as usize) / 10 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no progress: {} outcomes after 300 s",
            count_lines(&outcomes)
        );
        assert!(run.try_wait().unwrap().is_none(), "run ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let at_kill = count_lines(&outcomes);
    workers[1].child.kill().expect("SIGKILL worker 1");
    workers[1].child.wait().unwrap();
    assert!(at_kill < ORDERS as usize, "the kill must land mid-stream");
    std::thread::sleep(Duration::from_millis(500));
    workers[1] = start_worker(&system);

    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "run did not finish in 600 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "run failed: {}",
        std::fs::read_to_string(dir.join("run.stderr")).unwrap_or_default()
    );

    // Every order exactly once, with the reference figures.
    let text = std::fs::read_to_string(&outcomes).unwrap();
    let mut seen = HashSet::new();
    let (mut shipped, mut rejected, mut total) = (0u64, 0u64, 0.0f64);
    for line in text.lines() {
        let outcome: Value = serde_json::from_str(line).unwrap();
        let input = outcome["input"].as_u64().unwrap();
        assert!(seen.insert(input), "order {input} ended twice");
        assert_eq!(outcome["status"], "ok", "{outcome}");
        match outcome["agent"].as_str() {
            Some("fulfillment") => {
                shipped += 1;
                total += outcome["output"]["total"].as_f64().unwrap();
            }
            Some("audit") => rejected += 1,
            other => panic!("unexpected terminal agent {other:?}"),
        }
    }
    assert_eq!(seen.len() as u64, ORDERS, "every order ended");
    let (want_shipped, want_rejected, want_total) = orders::expected(ORDERS);
    assert_eq!((shipped, rejected), (want_shipped, want_rejected));
    assert_eq!((shipped, rejected), (95_810, 4_190));
    assert_eq!(format!("{total:.2}"), format!("{want_total:.2}"));

    // The killed worker's messages were redelivered to the others.
    let redelivered: f64 = workers
        .iter()
        .map(|w| scrape_counter(w, "bilayer_nats_redelivered_total"))
        .sum();
    assert!(
        redelivered > 0.0,
        "no message was redelivered after the kill"
    );
    eprintln!("outcomes at the kill: {at_kill}; messages redelivered: {redelivered}");

    // Graceful stop of the workers (SIGTERM): each finishes what it took and exits 0.
    for worker in &mut workers {
        let pid = worker.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
    }
    for worker in &mut workers {
        assert!(
            worker.child.wait().unwrap().success(),
            "worker exits cleanly"
        );
    }

    // Nothing left unacknowledged, one stored result per order, no dead letters.
    let [work, results, dead] = streams_of(&name);
    assert_eq!(
        stored(&js, &work).await,
        0,
        "agent messages left unacknowledged"
    );
    assert_eq!(
        stored(&js, &results).await,
        ORDERS,
        "results stored once each"
    );
    assert_eq!(stored(&js, &dead).await, 0);
    delete_streams(&js, &name).await;
    let _ = std::fs::remove_dir_all(&dir);
}
