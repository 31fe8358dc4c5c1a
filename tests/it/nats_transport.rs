//! The NATS transport through the builder API, in one process: the same routing, fan-out,
//! dead letters and failures as in process, with messages on JetStream subjects; hostile
//! input on an agent's subject; two systems (a submitter and a worker) sharing the work; a
//! clear error when the server is not there. Needs NATS (tests/it/nats_support).

use std::time::Duration;

use bilayer::prelude::*;
use bilayer::{NatsTransport, Transport};
use serde_json::{json, Value};

use crate::nats_support::{
    delete_streams, jetstream_or_skip, nats_url, records, stored, streams_of, unique_system,
};
use crate::orders;
use crate::test_plugins::step;

fn nats() -> Transport {
    Transport::Nats(NatsTransport::new(nats_url()).ack_wait(Duration::from_secs(40)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_route_over_nats_like_in_process() {
    let Some(js) = jetstream_or_skip("orders_route_over_nats_like_in_process").await else {
        return;
    };
    let name = unique_system("orders");
    let mut builder = AgentSystem::builder().name(&name).transport(nats());
    for (agent, plugin) in orders::native_agents() {
        builder = builder.agent_with(agent, plugin, PluginOptions::new());
    }
    let system = builder.build().await.expect("system builds over NATS");
    let outcome = system
        .send(json!({"order_id": "ORD-1", "quantity": 5, "price": 250.0}))
        .await;
    assert_eq!(outcome.status, OutcomeStatus::Ok, "{outcome:?}");
    assert_eq!(outcome.hops, ["intake", "manager", "fulfillment"]);
    assert_eq!(outcome.output.as_ref().unwrap()["total"], json!(1250.0));

    // The W1 figures for 2000 orders, every input answered once.
    let n = 2000;
    let mut stream = system.outcome_stream().unwrap();
    for i in 0..n {
        system.submit_numbered(i + 1, orders::order(i)).await;
    }
    let (mut shipped, mut rejected) = (0, 0);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..n {
        let outcome = tokio::time::timeout(Duration::from_secs(60), stream.recv())
            .await
            .expect("outcome within 60 s")
            .unwrap();
        assert!(seen.insert(outcome.input), "input {} twice", outcome.input);
        match outcome.agent.as_deref() {
            Some("fulfillment") => shipped += 1,
            Some("audit") => rejected += 1,
            other => panic!("unexpected terminal {other:?}: {outcome:?}"),
        }
    }
    let (want_shipped, want_rejected, _) = orders::expected(n);
    assert_eq!((shipped, rejected), (want_shipped, want_rejected));
    drop(stream);
    system.shutdown().await.unwrap();
    let [work, results, dead] = streams_of(&name);
    assert_eq!(
        stored(&js, &work).await,
        0,
        "every agent message acknowledged"
    );
    assert_eq!(
        stored(&js, &results).await,
        n + 1,
        "one stored result per input"
    );
    assert_eq!(stored(&js, &dead).await, 0);
    delete_streams(&js, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_dead_letters_and_failures_end_as_in_process() {
    let Some(js) = jetstream_or_skip("fan_out_dead_letters_and_failures_end_as_in_process").await
    else {
        return;
    };
    let name = unique_system("hostile");
    let system = AgentSystem::builder()
        .name(&name)
        .transport(nats())
        .agent(
            "router",
            step("router", |input| {
                Ok(match input["to"].clone() {
                    Value::Null => json!({"done": true}),
                    to => json!({"next_agent": to, "n": input["n"]}),
                })
            }),
        )
        .agent(
            "double",
            step("double", |input| {
                Ok(json!({"n": input["n"].as_i64().unwrap_or(0) * 2}))
            }),
        )
        .agent(
            "fails",
            step("fails", |_| {
                Err(PluginError::execution("refused on purpose"))
            }),
        )
        .agent("panics", step("panics", |_| panic!("boom on purpose")))
        .build()
        .await
        .unwrap();

    let fan = system
        .send(json!({"to": ["double", "double"], "n": 21}))
        .await;
    assert_eq!(fan.status, OutcomeStatus::Ok, "{fan:?}");
    assert_eq!(fan.branches.len(), 2);
    assert_eq!(fan.output, Some(json!([{"n": 42}, {"n": 42}])));
    // The join's hops are the branches' shared path, as in process.
    assert_eq!(fan.hops, ["router", "double"]);
    assert_eq!(fan.branches[1].hops, ["router", "double"]);

    let unknown = system.send(json!({"to": "nobody", "n": 1})).await;
    assert_eq!(unknown.status, OutcomeStatus::DeadLetter);
    assert_eq!(
        unknown.reason.as_deref(),
        Some("unknown next_agent `nobody`")
    );

    let failed = system.send(json!({"to": "fails", "n": 1})).await;
    assert_eq!(failed.status, OutcomeStatus::DeadLetter);
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap()
            .contains("refused on purpose"),
        "{failed:?}"
    );

    let panicked = system.send(json!({"to": "panics", "n": 1})).await;
    assert_eq!(panicked.status, OutcomeStatus::DeadLetter);
    assert!(
        panicked.reason.as_deref().unwrap().contains("panicked"),
        "{panicked:?}"
    );

    // A fan-out with one good and one unknown branch: both branches end, the join reports
    // the dead one.
    let mixed = system
        .send(json!({"to": ["double", "nobody"], "n": 2}))
        .await;
    assert_eq!(mixed.status, OutcomeStatus::DeadLetter, "{mixed:?}");
    assert_eq!(mixed.branches.len(), 2);

    // Garbage on an agent's subject: dead-lettered with the reason, and the agent keeps
    // serving.
    let subject = format!("bilayer.{name}.agent.router");
    js.publish(subject, "not json {".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let after = system.send(json!({"to": "double", "n": 5})).await;
    assert_eq!(after.output, Some(json!({"n": 10})));

    system.shutdown().await.unwrap();
    let [work, _, dead] = streams_of(&name);
    assert_eq!(stored(&js, &work).await, 0);
    let letters = records(&js, &dead).await;
    let reasons: Vec<&str> = letters
        .iter()
        .filter_map(|l| l["reason"].as_str())
        .collect();
    assert_eq!(letters.len(), 5, "{reasons:?}");
    assert!(reasons
        .iter()
        .any(|r| r.contains("unreadable message for agent `router`")));
    assert!(reasons.iter().any(|r| r.contains("panicked")));
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == "unknown next_agent `nobody`")
            .count(),
        2
    );
    delete_streams(&js, &name).await;
}

/// `max_branches` holds across processes as in one: each worker decides from the branch's
/// own fork path, so a self-fan-out ends with exactly `max_branches` branches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_fan_out_over_nats_ends_at_max_branches() {
    let Some(js) = jetstream_or_skip("a_self_fan_out_over_nats_ends_at_max_branches").await else {
        return;
    };
    let name = unique_system("twins");
    let system = AgentSystem::builder()
        .name(&name)
        .transport(nats())
        .max_branches(8)
        .agent(
            "twin",
            step("twin", |mut m| {
                m["next_agent"] = json!(["twin", "twin"]);
                Ok(m)
            }),
        )
        .build()
        .await
        .expect("system builds over NATS");
    let outcome = tokio::time::timeout(Duration::from_secs(60), system.send(json!({"n": 1})))
        .await
        .expect("the input ends");
    assert_eq!(outcome.status, OutcomeStatus::DeadLetter, "{outcome:?}");
    assert_eq!(outcome.branches.len(), 8);
    assert!(
        outcome
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("more than 8 branches (max_branches")),
        "{:?}",
        outcome.reason
    );
    system.shutdown().await.unwrap();
    delete_streams(&js, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_and_a_worker_process_share_one_system() {
    let Some(js) = jetstream_or_skip("a_submitter_and_a_worker_process_share_one_system").await
    else {
        return;
    };
    let name = unique_system("split");
    // The "worker": serves both agents. The "submitter": serves none, declares them remote.
    let worker = AgentSystem::builder()
        .name(&name)
        .transport(nats())
        .agent(
            "a",
            step("a", |v| Ok(json!({"next_agent": "b", "v": v["v"]}))),
        )
        .agent("b", step("b", |v| Ok(json!({"v": v["v"], "by": "b"}))))
        .build()
        .await
        .unwrap();
    let submitter = AgentSystem::builder()
        .name(&name)
        .transport(nats())
        .remote_agent("a")
        .remote_agent("b")
        .build()
        .await
        .unwrap();
    assert!(
        submitter.agents().is_empty(),
        "the submitter serves no agent"
    );
    for v in 0..20 {
        let outcome = submitter.send(json!({"v": v})).await;
        assert_eq!(
            outcome.output,
            Some(json!({"v": v, "by": "b"})),
            "{outcome:?}"
        );
        assert_eq!(outcome.hops, ["a", "b"]);
    }
    submitter.shutdown().await.unwrap();
    worker.shutdown().await.unwrap();
    delete_streams(&js, &name).await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let error = AgentSystem::builder()
        .transport(Transport::Nats(NatsTransport::new("nats://127.0.0.1:1")))
        .agent("a", step("a", Ok))
        .build()
        .await
        .expect_err("no server on port 1");
    let message = error.to_string();
    assert!(
        message.contains("cannot connect to NATS at nats://127.0.0.1:1"),
        "{message}"
    );
    assert!(message.contains("nats-server"), "{message}");
}

#[tokio::test]
async fn remote_agents_need_the_nats_transport() {
    let error = AgentSystem::builder()
        .agent("a", step("a", Ok))
        .remote_agent("b")
        .build()
        .await
        .expect_err("in-process system with a remote agent");
    assert!(
        error.to_string().contains("need the NATS transport"),
        "{error}"
    );
}

/// A native agent that waits (a sleep standing in for a model) and makes siblings, counting
/// how many of its hops run at once.
#[derive(Clone)]
struct Waiting {
    metadata: PluginMetadata,
    running: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    peak: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait]
impl AgentPlugin for Waiting {
    fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }

    async fn execute(&mut self, input: String) -> PluginResult<String> {
        use std::sync::atomic::Ordering;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(input)
    }

    fn concurrent_instance(&self) -> Option<Box<dyn AgentPlugin>> {
        Some(Box::new(self.clone()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_overlaps_an_agents_waiting_hops_up_to_its_concurrency() {
    let Some(js) =
        jetstream_or_skip("a_worker_overlaps_an_agents_waiting_hops_up_to_its_concurrency").await
    else {
        return;
    };
    let name = unique_system("overlap");
    let waiting = Waiting {
        metadata: PluginMetadata::new("wait", "wait", PluginType::Tool),
        running: Default::default(),
        peak: Default::default(),
    };
    let peak = std::sync::Arc::clone(&waiting.peak);
    let worker = AgentSystem::builder()
        .name(&name)
        .transport(nats())
        .agent_with(
            "wait",
            Box::new(waiting),
            PluginOptions::new().concurrency(16),
        )
        .build()
        .await
        .unwrap();
    let submitter = AgentSystem::builder()
        .name(&name)
        .transport(nats())
        .remote_agent("wait")
        .build()
        .await
        .unwrap();
    let n = 64;
    let mut stream = submitter.outcome_stream().unwrap();
    let started = std::time::Instant::now();
    for i in 0..n {
        submitter.submit_numbered(i + 1, json!({"i": i})).await;
    }
    for _ in 0..n {
        let outcome = tokio::time::timeout(Duration::from_secs(60), stream.recv())
            .await
            .expect("outcome within 60 s")
            .unwrap();
        assert_eq!(outcome.status, OutcomeStatus::Ok, "{outcome:?}");
    }
    let took = started.elapsed();
    // One at a time would take 6.4 s; 16 at a time 0.4 s (plus the transport's own time).
    assert!(
        took < Duration::from_secs(3),
        "64 hops of 100 ms took {took:?}"
    );
    assert_eq!(
        peak.load(std::sync::atomic::Ordering::SeqCst),
        16,
        "the worker's agent ran its concurrency's worth of hops at once, no more"
    );
    drop(stream);
    submitter.shutdown().await.unwrap();
    worker.shutdown().await.unwrap();
    delete_streams(&js, &name).await;
}
