//! What an agent system reports about each hop: a `agent.hop` span per hop carrying the
//! input's trace id, and per-agent metrics (messages in and out, failures, hop latency), next
//! to the dead-letter count. Metrics and spans are read from a recorder and a subscriber scoped
//! to the test's own runtime (`common::capture::run`): the orders agents' names are shared with
//! other tests of the binary.

use bilayer::prelude::*;
use serde_json::json;

use crate::common;
use crate::orders;

#[test]
fn every_hop_has_a_span_with_the_trace_id_and_agents_have_metrics() {
    common::capture::run(|captured| async move {
        let mut builder = AgentSystem::builder().name("observed");
        for (name, plugin) in orders::native_agents() {
            builder = builder.agent_with(name, plugin, PluginOptions::new());
        }
        let system = builder.build().await.unwrap();

        let small = system.send(orders::order(0)).await; // 1 × 1.00: intake → fulfillment
        let high = system
            .send(json!({"order_id": "H-1", "quantity": 20, "price": 100.0}))
            .await; // 2000: intake → manager → fulfillment
        let bad = system.send(json!({"order_id": "B-1"})).await; // dead letter at intake
        assert_eq!(small.hops, ["intake", "fulfillment"]);
        assert_eq!(high.hops, ["intake", "manager", "fulfillment"]);
        assert_eq!(bad.status, OutcomeStatus::DeadLetter);

        // One closed span per hop, each carrying its input's trace id (the outcome's, in hex).
        let hops_of = |trace_id: &str| {
            captured
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.get("span").map(String::as_str) == Some("agent.hop"))
                .filter(|s| {
                    s.get("trace_id")
                        .and_then(|t| t.parse::<u64>().ok())
                        .is_some_and(|t| format!("{t:016x}") == trace_id)
                })
                .map(|s| s["agent"].clone())
                .collect::<Vec<_>>()
        };
        common::wait_until("the six hop spans closed", || {
            hops_of(&small.trace_id).len() == 2
                && hops_of(&high.trace_id).len() == 3
                && hops_of(&bad.trace_id).len() == 1
        })
        .await;
        assert_eq!(
            hops_of(&high.trace_id),
            ["intake", "manager", "fulfillment"]
        );

        let counter = |name: &str, agent: &str| {
            captured
                .counters
                .lock()
                .unwrap()
                .get(&format!("{name}{{agent={agent}}}"))
                .copied()
                .unwrap_or(0)
        };
        assert_eq!(counter("bilayer_agent_messages_in_total", "intake"), 3);
        assert_eq!(counter("bilayer_agent_messages_out_total", "intake"), 2);
        assert_eq!(counter("bilayer_agent_failures_total", "intake"), 1);
        assert_eq!(counter("bilayer_agent_messages_in_total", "fulfillment"), 2);
        assert_eq!(counter("bilayer_agent_messages_in_total", "manager"), 1);
        let hop_seconds = captured
            .histograms
            .lock()
            .unwrap()
            .get("bilayer_agent_hop_seconds{agent=intake}")
            .cloned()
            .unwrap_or_default();
        assert_eq!(hop_seconds.len(), 3, "one latency sample per hop");
        assert!(
            hop_seconds.iter().all(|s| (0.0..5.0).contains(s)),
            "{hop_seconds:?}"
        );
        assert_eq!(system.dead_letter_count(), 1);
        system.shutdown().await.unwrap();
    });
}
