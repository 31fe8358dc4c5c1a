//! The NATS server the scale-out tests run against, and clean-up of the streams they create.
//!
//! The server is `BILAYER_TEST_NATS_URL` or `nats://127.0.0.1:4222` (the project's machines run
//! one there; `.ci/run` starts it when it is not running). When it is unreachable the tests
//! skip with a message, unless `BILAYER_REQUIRE_NATS=1` (set by `.ci/run`), when they fail.

use std::time::Duration;

use async_nats::jetstream;

pub fn nats_url() -> String {
    std::env::var("BILAYER_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A JetStream context on the test server, or `None` (skip) when it is unreachable.
pub async fn jetstream_or_skip(test: &str) -> Option<jetstream::Context> {
    let url = nats_url();
    let connected = tokio::time::timeout(Duration::from_secs(5), async_nats::connect(&url)).await;
    match connected {
        Ok(Ok(client)) => Some(jetstream::new(client)),
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".into(),
                Ok(Ok(_)) => unreachable!(),
            };
            if std::env::var("BILAYER_REQUIRE_NATS").as_deref() == Ok("1") {
                panic!("{test}: NATS at {url} is required (BILAYER_REQUIRE_NATS=1) but unreachable: {why}");
            }
            eprintln!("{test}: skipped, NATS at {url} unreachable ({why})");
            None
        }
    }
}

/// A system name no other test run uses, so streams never collide.
pub fn unique_system(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// The default stream names of system `name` (work, results, dead letters).
pub fn streams_of(name: &str) -> [String; 3] {
    let work = format!("BILAYER_{}", name.to_uppercase().replace('-', "_"));
    [
        work.clone(),
        format!("{work}_RESULTS"),
        format!("{work}_DEAD"),
    ]
}

/// Messages currently stored in `stream`.
pub async fn stored(js: &jetstream::Context, stream: &str) -> u64 {
    let mut stream = js.get_stream(stream).await.expect("stream exists");
    stream.info().await.expect("stream info").state.messages
}

/// The records in `stream` (all of them, as JSON).
pub async fn records(js: &jetstream::Context, stream: &str) -> Vec<serde_json::Value> {
    use futures::StreamExt;
    let stream = js.get_stream(stream).await.expect("stream exists");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let count = stored(js, stream.cached_info().config.name.as_str()).await;
    let mut out = Vec::new();
    while (out.len() as u64) < count {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("record arrives")
            .expect("stream open")
            .expect("message");
        out.push(serde_json::from_slice(&message.payload).expect("JSON record"));
    }
    out
}

/// Deletes the streams of system `name`.
pub async fn delete_streams(js: &jetstream::Context, name: &str) {
    for stream in streams_of(name) {
        let _ = js.delete_stream(&stream).await;
    }
}
