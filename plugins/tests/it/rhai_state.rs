//! The host-provided `state`: persisted in the plugin's `PluginStateStore`, across calls and
//! across plugin instances (restart, hot reload).

use bilayer_plugins::rhai_runtime::RhaiPlugin;
use bilayer_plugins::{AgentPlugin, PluginContext, PluginError, PluginStateStore};
use serde_json::json;

const COUNTER: &str = r#"
fn count(input) {
    state.count = (state.count ?? 0) + 1;
    state["last"] = input;
    state.count
}
count
"#;

async fn loaded(source: &str, store: &PluginStateStore) -> RhaiPlugin {
    let mut plugin = RhaiPlugin::from_source("counter", source).unwrap();
    let ctx = PluginContext::new("counter").with_state(store.clone());
    plugin.load(&ctx).await.unwrap();
    plugin.init_plugin().await.unwrap();
    plugin.start().await.unwrap();
    plugin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_persists_across_calls_in_the_host_store() {
    let store = PluginStateStore::new();
    let mut plugin = loaded(COUNTER, &store).await;
    assert_eq!(plugin.execute("\"a\"".to_string()).await.unwrap(), "1");
    assert_eq!(plugin.execute("\"b\"".to_string()).await.unwrap(), "2");
    assert_eq!(
        plugin.execute(r#"{"id": 3}"#.to_string()).await.unwrap(),
        "3"
    );
    assert_eq!(store.get("count"), Some(json!(3)));
    assert_eq!(store.get("last"), Some(json!({"id": 3})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_with_the_same_store_continues() {
    let store = PluginStateStore::new();
    let mut first = loaded(COUNTER, &store).await;
    first.execute("1".to_string()).await.unwrap();
    first.execute("2".to_string()).await.unwrap();
    first.stop().await.unwrap();
    first.unload().await.unwrap();
    drop(first);

    // A restart or hot reload: a new instance (here of an edited script) gets the same store.
    let edited = format!("{COUNTER}\n// v2");
    let mut second = loaded(&edited, &store).await;
    assert_eq!(second.execute("3".to_string()).await.unwrap(), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_supports_map_operations_and_read_modify_write() {
    let source = r#"
    fn run(input) {
        if !("items" in state) { state.items = []; }
        state.items.push(input);
        state.temp = 1;
        let removed = state.remove("temp");
        #{ items: state.items, len: state.len(), removed: removed, keys: state.keys(), absent: state.nothing ?? "default" }
    }
    run
    "#;
    let store = PluginStateStore::new();
    let mut plugin = loaded(source, &store).await;
    plugin.execute("\"x\"".to_string()).await.unwrap();
    let output: serde_json::Value =
        serde_json::from_str(&plugin.execute("\"y\"".to_string()).await.unwrap()).unwrap();
    assert_eq!(
        output,
        json!({"items": ["x", "y"], "len": 1, "removed": 1, "keys": ["items"], "absent": "default"})
    );
    assert_eq!(store.get("items"), Some(json!(["x", "y"])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_closures_see_the_same_state() {
    let source = r#"
    let rules = [
        #{ name: "repeat", priority: "high",
           condition: |m| state.seen == m,
           action: |m| #{ decision: "drop", reason: "duplicate" } },
        #{ name: "remember", priority: "low",
           condition: |m| { state.seen = m; true },
           action: |m| #{ decision: "allow" } },
    ];
    "#;
    let store = PluginStateStore::new();
    let mut plugin = loaded(source, &store).await;
    assert!(plugin
        .execute("\"hello\"".to_string())
        .await
        .unwrap()
        .contains("remember"));
    assert!(plugin
        .execute("\"hello\"".to_string())
        .await
        .unwrap()
        .contains("duplicate"));
}

#[test]
fn state_is_unavailable_before_a_host_loads_the_plugin() {
    let plugin = RhaiPlugin::from_source("counter", COUNTER).unwrap();
    let err = plugin.execute_sync("1").unwrap_err();
    assert!(
        matches!(&err, PluginError::Runtime { message, .. } if message.contains("loaded by a host")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_variable_named_state_shadows_the_host_state() {
    let source = "fn run(x) { let state = #{ count: 41 }; state.count + 1 }\nrun";
    let mut plugin = loaded(source, &PluginStateStore::new()).await;
    assert_eq!(plugin.execute("null".to_string()).await.unwrap(), "42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_values_must_be_json_data_within_limits() {
    let source = "fn run(x) { state.f = |a| a; }\nrun";
    let mut plugin = loaded(source, &PluginStateStore::new()).await;
    assert!(plugin.execute("null".to_string()).await.is_err());
}

/// Siblings of one script (the host runs them side by side when its hops wait) count without
/// losing a write when they use `compare_and_set`; the plain `state.count = state.count + 1`
/// is not promised to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_counts_every_call_of_concurrent_siblings() {
    let source = r#"
    fn count(input) {
        loop {
            let seen = state.count;
            if state.compare_and_set("count", seen, (seen ?? 0) + 1) { break; }
        }
        state.count
    }
    count
    "#;
    let store = PluginStateStore::new();
    let plugin = loaded(source, &store).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut sibling = plugin
            .concurrent_instance()
            .expect("a Rhai plugin makes siblings");
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                sibling.execute(i.to_string()).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.get("count"), Some(json!(2000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_stores_only_over_the_expected_value() {
    let source = r#"
    fn run(input) {
        let first = state.compare_and_set("k", (), 1);       // missing reads as ()
        let stale = state.compare_and_set("k", 0, 5);        // holds 1, not 0
        let next = state.compare_and_set("k", 1, #{ n: 2 }); // any JSON value
        [first, stale, next, state.k.n]
    }
    run
    "#;
    let store = PluginStateStore::new();
    let mut plugin = loaded(source, &store).await;
    assert_eq!(
        plugin.execute("null".to_string()).await.unwrap(),
        "[true,false,true,2]"
    );
    assert_eq!(store.get("k"), Some(json!({"n": 2})));
}
