//! Agents' inboxes (actors/src/system/inbox.rs): routed messages wait in the agent's inbox and
//! the actor serves them in turns of at most 128. These tests hold the properties the batching
//! must keep: a flood of routed messages does not lock the mailbox against other calls, an
//! agent that routes to itself while its turn runs is served, and agents that borrow their
//! input (`FnPlugin::reading`) still leave the message intact for the dead-letter queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bilayer::prelude::*;
use serde_json::{json, Value};

fn busy_for(duration: Duration) {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_flooded_agent_is_served_between_turns_not_after_the_flood() {
    const FLOOD: u64 = 4000;
    let system = AgentSystem::builder()
        .max_in_flight(FLOOD as usize)
        .agent(
            "worker",
            FnPlugin::reading("worker", PluginType::Tool, |input| {
                // ~200 µs per message: the flood is ~0.8 s of work for the one actor, far
                // longer than submitting it.
                busy_for(Duration::from_micros(200));
                Ok(json!({ "done": input["n"].clone() }))
            }),
        )
        .build()
        .await
        .unwrap();
    let mut stream = system.outcome_stream().unwrap();
    for n in 0..FLOOD {
        system.submit(json!({ "n": n })).await;
    }
    // The call goes through the same actor's mailbox, behind the running inbox turn.
    let served_before_the_call = system.totals().ok;
    let answer = system
        .manager()
        .execute("worker", r#"{"n":"direct"}"#.to_string())
        .await
        .unwrap();
    let served_while_the_call_waited = system.totals().ok - served_before_the_call;
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap(),
        json!({"done": "direct"})
    );
    // At most the running turn and the next (2 × 128), plus slack; without turns it would be
    // every message still waiting.
    assert!(
        served_while_the_call_waited < 1000,
        "the call waited for {served_while_the_call_waited} of {FLOOD} routed messages \
         ({served_before_the_call} were served before it was sent): the inbox turns do not \
         yield the mailbox"
    );
    for _ in 0..FLOOD {
        assert!(stream.recv().await.unwrap().is_ok());
    }
    assert_eq!(system.totals().ok, FLOOD);
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_routing_to_itself_is_served_by_its_own_running_turn() {
    let system = AgentSystem::builder()
        .max_hops(64)
        .agent(
            "count",
            FnPlugin::reading("count", PluginType::Tool, |input| {
                let n = input["n"].as_u64().unwrap_or(0) + 1;
                let limit = input["limit"].as_u64().unwrap_or(0);
                Ok(if n < limit {
                    json!({ "n": n, "limit": limit, "next_agent": "count" })
                } else {
                    json!({ "n": n, "limit": limit })
                })
            }),
        )
        .build()
        .await
        .unwrap();
    let mut stream = system.outcome_stream().unwrap();
    // Many inputs at once, so self-deliveries land while turns are running.
    for i in 0..500u64 {
        system.submit(json!({ "n": 0, "limit": 1 + i % 40 })).await;
    }
    for _ in 0..500 {
        let outcome = stream.recv().await.unwrap();
        assert!(outcome.is_ok(), "{outcome:?}");
        let limit = outcome.output.as_ref().unwrap()["limit"].as_u64().unwrap();
        assert_eq!(outcome.hops.len() as u64, limit);
        assert!(outcome.hops.iter().all(|hop| hop == "count"));
    }
    // Past the hop limit the loop is a dead letter, not a hang.
    let outcome = system.send(json!({ "n": 0, "limit": 1000 })).await;
    assert_eq!(outcome.status, OutcomeStatus::DeadLetter);
    assert!(outcome.reason.unwrap().contains("hop limit of 64"));
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_agent_that_fails_or_panics_leaves_the_message_for_the_dead_letter() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let system = AgentSystem::builder()
        .agent(
            "picky",
            FnPlugin::reading("picky", PluginType::Tool, move |input| {
                counted.fetch_add(1, Ordering::Relaxed);
                match input["kind"].as_str() {
                    Some("panic") => panic!("picky panicked on {input}"),
                    Some("ok") => Ok(json!({ "fine": true })),
                    _ => Err(PluginError::InvalidInput("picky refuses it".into())),
                }
            }),
        )
        .build()
        .await
        .unwrap();
    let refused = json!({ "kind": "bad", "order": { "id": "ORD-9", "lines": [1, 2, 3] } });
    let outcome = system.send(refused.clone()).await;
    assert_eq!(outcome.status, OutcomeStatus::DeadLetter);
    assert!(outcome.reason.unwrap().contains("picky refuses it"));
    assert_eq!(system.dead_letters().pop().unwrap().payload, refused);

    let poison = json!({ "kind": "panic", "n": 1 });
    let outcome = system.send(poison.clone()).await;
    assert_eq!(outcome.status, OutcomeStatus::DeadLetter);
    assert!(outcome.reason.unwrap().contains("panicked"));
    assert_eq!(system.dead_letters().pop().unwrap().payload, poison);

    // Restarted, it serves the next message.
    assert!(system.send(json!({ "kind": "ok" })).await.is_ok());
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    system.shutdown().await.unwrap();
}
