//! The routing script hot-reloads with the agents (what `bilayer run --watch` and `bilayer
//! worker --watch` start): a saved change routes the next messages by the new rules, a broken
//! version is refused while the serving one keeps routing, and a deleted file keeps the last
//! version. Real files, real notify, a real agent system built from a TOML definition.

use bilayer::hot_reload::ReloadEvent;
use bilayer::system_config::SystemDefinition;
use bilayer::system_reload::ROUTING_SCRIPT_ID;
use bilayer::{AgentSystem, OutcomeStatus};
use serde_json::json;

use crate::hot_reload_support::{ended_reload, routing_to, terminal_agent, until, Scratch};

const SYSTEM: &str = r#"
name = "routed"
entry = "intake"
routing = "routing.rhai"

[[agents]]
name = "intake"
script = "intake.rhai"

[[agents]]
name = "left"
script = "left.rhai"

[[agents]]
name = "right"
script = "right.rhai"
"#;

async fn terminal_agent_of(system: &AgentSystem, n: i64) -> String {
    let outcome = system.send(json!({ "n": n })).await;
    assert_eq!(outcome.status, OutcomeStatus::Ok, "{outcome:?}");
    assert_eq!(outcome.output.as_ref().unwrap()["n"], n);
    outcome.agent.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routing_script_reloads_refuses_a_broken_version_and_survives_deletion() {
    let dir = Scratch::new("routing");
    dir.write("system.toml", SYSTEM);
    // intake proposes `left` itself; the routing script decides.
    dir.write(
        "intake.rhai",
        "fn intake(msg) {\n    #{ n: msg.n, next_agent: \"left\" }\n}\n\nintake\n",
    );
    dir.write("left.rhai", &terminal_agent("left", "left"));
    dir.write("right.rhai", &terminal_agent("right", "right"));
    dir.write("routing.rhai", &routing_to("left"));

    let definition = SystemDefinition::load(dir.file("system.toml")).unwrap();
    let system = definition.build().await.unwrap();
    let reloader = definition.hot_reload(&system);
    let mut events = reloader.events();
    reloader.start().await.unwrap();
    assert!(
        events.try_recv().is_none(),
        "the serving routing script is only recorded at start"
    );
    assert_eq!(terminal_agent_of(&system, 1).await, "left");

    // A new version routes the next messages.
    dir.write_and_rename("routing.rhai", &routing_to("right"));
    let seen = until(&mut events, "the routing script to reload", |e| {
        ended_reload(e, ROUTING_SCRIPT_ID)
    })
    .await;
    assert!(
        matches!(seen.last(), Some(ReloadEvent::ReloadCompleted { plugin_id, .. }) if plugin_id == ROUTING_SCRIPT_ID),
        "{seen:?}"
    );
    for n in 2..20 {
        assert_eq!(terminal_agent_of(&system, n).await, "right");
    }

    // A version that does not compile is refused; the serving one keeps routing.
    dir.write(
        "routing.rhai",
        "fn route(hop) {\n    if hop.agent == \n}\n\nroute\n",
    );
    let seen = until(&mut events, "the broken routing script to fail", |e| {
        ended_reload(e, ROUTING_SCRIPT_ID)
    })
    .await;
    match seen.last() {
        Some(ReloadEvent::ReloadFailed {
            plugin_id, error, ..
        }) => {
            assert_eq!(plugin_id, ROUTING_SCRIPT_ID);
            assert!(error.to_string().contains("routing.rhai"), "{error}");
        }
        other => panic!("expected the reload to fail, got {other:?} after {seen:?}"),
    }
    assert_eq!(terminal_agent_of(&system, 20).await, "right");

    // Fixed again: it serves.
    dir.write("routing.rhai", &routing_to("left"));
    until(&mut events, "the fixed routing script to reload", |e| {
        matches!(e, ReloadEvent::ReloadCompleted { plugin_id, .. } if plugin_id == ROUTING_SCRIPT_ID)
    })
    .await;
    assert_eq!(terminal_agent_of(&system, 21).await, "left");

    // Deleting the file keeps the last version routing.
    dir.remove("routing.rhai");
    until(
        &mut events,
        "the deletion to be seen",
        |e| matches!(e, ReloadEvent::FileChanged { path } if path.ends_with("routing.rhai")),
    )
    .await;
    assert_eq!(terminal_agent_of(&system, 22).await, "left");

    // The agents still reload beside it.
    dir.write_and_rename(
        "left.rhai",
        "fn left(msg) {\n    #{ served_by: \"left v2\", n: msg.n }\n}\n\nleft\n",
    );
    until(&mut events, "left to reload", |e| ended_reload(e, "left")).await;
    let outcome = system.send(json!({ "n": 23 })).await;
    assert_eq!(outcome.output.unwrap()["served_by"], "left v2");

    reloader.stop().await;
    system.shutdown().await.unwrap();
}
