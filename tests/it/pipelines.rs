//! The example pipelines, built from their TOML definitions exactly as `bilayer run` builds
//! them: the W1 order pipeline with Rhai agents gives the peers' reference figures, the
//! moderation pipeline routes block / flag / allow through its routing script, and a routing
//! policy can override `next_agent` and be swapped while the system runs.

use std::sync::Arc;

use bilayer::prelude::*;
use bilayer::routing::RhaiRoutingPolicy;
use bilayer::system_config::SystemDefinition;
use serde_json::json;

use crate::orders;

fn example(path: &str) -> String {
    format!("{}/examples/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rhai_order_pipeline_gives_the_w1_reference_figures() {
    let system = checked_example("orders/system.toml").await;
    let mut stream = system.outcome_stream().unwrap();
    let n = 2000;
    let producer = submit_orders(&system, n);
    let (mut shipped, mut rejected, mut total) = (0, 0, 0.0);
    for _ in 0..n {
        let outcome = stream.recv().await.unwrap();
        assert!(outcome.is_ok(), "{outcome:?}");
        match outcome.agent.as_deref().unwrap() {
            "fulfillment" => {
                shipped += 1;
                total += outcome.output.unwrap()["total"].as_f64().unwrap();
            }
            "audit" => {
                rejected += 1;
                assert_eq!(outcome.hops, ["intake", "manager", "audit"]);
            }
            other => panic!("unexpected terminal agent {other}"),
        }
    }
    producer.await.unwrap();
    assert_eq!(
        (shipped, rejected, format!("{total:.2}")),
        (1915, 85, "1836890.62".into())
    );
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_moderation_pipeline_blocks_flags_and_allows() {
    let definition = SystemDefinition::load(example("moderation/system.toml")).unwrap();
    assert!(definition.check().is_empty(), "{:?}", definition.check());
    let system = definition.build().await.unwrap();

    let spam = system.send(json!("BUY NOW and save")).await;
    assert_eq!(spam.hops, ["moderator"]);
    assert_eq!(spam.output.as_ref().unwrap()["decision"], "block");
    assert_eq!(spam.output.as_ref().unwrap()["rule"], "spam_filter");

    let rude = system.send(json!("this is damn annoying")).await;
    assert_eq!(rude.hops, ["moderator", "human_review"]);
    assert_eq!(rude.output.as_ref().unwrap()["status"], "queued_for_review");
    assert_eq!(rude.output.as_ref().unwrap()["reason"], "profanity");

    let fine = system.send(json!("lunch at noon?")).await;
    assert_eq!(fine.hops, ["moderator", "publish"]);
    assert_eq!(fine.output.as_ref().unwrap()["status"], "published");

    // The human review agent keeps its queue position in its state across messages.
    let second = system.send(json!("damn again")).await;
    assert_eq!(second.output.as_ref().unwrap()["position"], 2);
    system.shutdown().await.unwrap();
}

fn echo(
    id: &str,
) -> FnPlugin<impl Fn(serde_json::Value) -> PluginResult<serde_json::Value> + Send + Sync + 'static>
{
    let name = id.to_string();
    FnPlugin::new(id, PluginType::Custom("test".into()), move |mut message| {
        message["seen_by"] = json!(name);
        if name == "intake" {
            message["next_agent"] = json!("standard");
        } else {
            message.as_object_mut().unwrap().remove("next_agent");
        }
        Ok(message)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_script_overrides_next_agent_and_can_be_swapped_at_run_time() {
    let vip_rules = RhaiRoutingPolicy::from_source(
        r#"
        let rules = [
            #{ name: "vip", priority: "high",
               condition: |hop| hop.agent == "intake" && hop.message.vip == true,
               action: |hop| #{ next_agent: "priority" } },
            #{ name: "keep", priority: "low", condition: |hop| true, action: |hop| () }
        ];
        "#,
    )
    .unwrap();
    let system = AgentSystem::builder()
        .agent("intake", echo("intake"))
        .agent("standard", echo("standard"))
        .agent("priority", echo("priority"))
        .routing_policy(Arc::new(vip_rules))
        .build()
        .await
        .unwrap();

    let vip = system.send(json!({"vip": true})).await;
    assert_eq!(vip.hops, ["intake", "priority"], "{vip:?}");
    let normal = system.send(json!({"vip": false})).await;
    assert_eq!(normal.hops, ["intake", "standard"], "{normal:?}");

    // Swap in a policy that sends everything from intake to priority.
    let everyone = RhaiRoutingPolicy::from_source(
        "fn route(hop) { if hop.agent == \"intake\" { \"priority\" } else { () } } route",
    )
    .unwrap();
    system.set_routing_policy(Some(Arc::new(everyone)));
    let now = system.send(json!({"vip": false})).await;
    assert_eq!(now.hops, ["intake", "priority"]);

    // A routing script naming an unknown agent dead-letters the message with the reason.
    let broken = RhaiRoutingPolicy::from_source("fn route(hop) { \"nowhere\" } route").unwrap();
    system.set_routing_policy(Some(Arc::new(broken)));
    let lost = system.send(json!({})).await;
    assert_eq!(lost.status, OutcomeStatus::DeadLetter);
    assert!(lost
        .reason
        .unwrap()
        .contains("unknown next_agent `nowhere`"));

    // Without a policy, each output's own `next_agent` routes again (intake says standard).
    system.set_routing_policy(None);
    let own = system.send(json!({"vip": true})).await;
    assert_eq!(own.hops, ["intake", "standard"], "{own:?}");
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_built_without_a_routing_script_takes_one_at_run_time() {
    let system = AgentSystem::builder()
        .agent("intake", echo("intake"))
        .agent("standard", echo("standard"))
        .agent("priority", echo("priority"))
        .build()
        .await
        .unwrap();
    assert_eq!(system.send(json!({})).await.hops, ["intake", "standard"]);
    let everyone = RhaiRoutingPolicy::from_source(
        "fn route(hop) { if hop.agent == \"intake\" { \"priority\" } else { () } } route",
    )
    .unwrap();
    system.set_routing_policy(Some(Arc::new(everyone)));
    assert_eq!(system.send(json!({})).await.hops, ["intake", "priority"]);
    system.shutdown().await.unwrap();
}

/// Issue 5's third pipeline: a native agent, a WASM agent and a Rhai agent in one system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mixed_pipeline_runs_native_wasm_and_rhai_agents_in_order() {
    let system = checked_example("mixed/system.toml").await;
    let mut stream = system.outcome_stream().unwrap();
    let n = 2000;
    let producer = submit_orders(&system, n);
    let (mut approved, mut rejected) = (0, 0);
    for _ in 0..n {
        let outcome = stream.recv().await.unwrap();
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(outcome.hops, ["intake", "review", "decide"]);
        let output = outcome.output.unwrap();
        assert_eq!(output["checked_by"], "wasm");
        match output["status"].as_str().unwrap() {
            "approved" => approved += 1,
            "rejected" => rejected += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    producer.await.unwrap();
    // The same split as W1: totals over 3000 are rejected.
    assert_eq!((approved, rejected), (1915, 85));
    let kinds: Vec<_> = system
        .manager()
        .list()
        .into_iter()
        .map(|info| (info.metadata.id, info.metadata.plugin_type.to_string()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("intake".to_string(), "custom:orders".to_string()),
            ("review".to_string(), "wasm".to_string()),
            ("decide".to_string(), "script".to_string())
        ]
    );
    system.shutdown().await.unwrap();
}

/// A WASM module hosted by a `PluginManager` like any other plugin: its own actor, its
/// lifecycle, its traps contained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_plugin_is_hosted_by_the_plugin_manager() {
    let manager = PluginManager::new("wasm-host");
    let plugin =
        bilayer::wasm_runtime::WasmPlugin::from_file(example("mixed/wrap_for_review.wat")).unwrap();
    manager.register(plugin).await.unwrap();
    manager.load_all().await.unwrap();
    manager.start_all().await.unwrap();
    let out = manager
        .execute("wrap_for_review", r#"{"x":1}"#.to_string())
        .await
        .unwrap();
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["order"], json!({"x": 1}));
    assert_eq!(manager.state("wrap_for_review"), Some(PluginState::Running));
    manager.shutdown().await.unwrap();
}

/// The example system at `path` (under examples/), checked clean and built.
async fn checked_example(path: &str) -> AgentSystem {
    let definition = SystemDefinition::load(example(path)).unwrap();
    assert!(definition.check().is_empty(), "{:?}", definition.check());
    definition.build().await.unwrap()
}

/// Submits W1 orders 0..n from a task of their own.
fn submit_orders(system: &AgentSystem, n: u64) -> tokio::task::JoinHandle<()> {
    let system = system.clone();
    tokio::spawn(async move {
        for i in 0..n {
            system.submit(orders::order(i)).await;
        }
    })
}
