//! Proves that the seed's compile-time plugin (`examples/native_plugin.rs`, the seed's code with
//! only its `use` lines changed) compiles against `bilayer::prelude`, that the example's `main`
//! runs to completion, and that the seed's exact calls (`PluginManager::new("my-agent")`,
//! `manager.register(plugin).await?`, `load_all`, `start_all`,
//! `execute("my_plugin", "input data".to_string())`) give the seed's answer; and that a plugin
//! writing only `metadata` and `execute` (the trait's defaults for the rest) runs the same way.

#[path = "../../examples/native_plugin.rs"]
mod example;

use bilayer::prelude::*;
use example::MyCompileTimePlugin;

use crate::test_plugins::Shout;

/// The example's `main` builds its own tokio runtime (`#[tokio::main]`), so it is called from a
/// plain test thread, not from inside a runtime.
#[test]
fn the_example_main_runs_to_completion() {
    let outcome = example::main();
    assert!(outcome.is_ok(), "example main failed: {:?}", outcome.err());
}

/// The seed's calls, exactly as written, inside a function using `?` like the seed's.
async fn seed_calls() -> Result<(PluginManager, String), Box<dyn std::error::Error>> {
    let manager = PluginManager::new("my-agent");
    let plugin = MyCompileTimePlugin::new();
    manager.register(plugin).await?;
    manager.load_all().await?;
    manager.start_all().await?;
    let result = manager
        .execute("my_plugin", "input data".to_string())
        .await?;
    Ok((manager, result))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_calls_work_as_written_and_answer_processed() {
    let (manager, result) = seed_calls().await.expect("the seed's calls succeed");
    assert_eq!(result, "Processed: input data");
    assert_eq!(manager.name(), "my-agent");

    let listed = manager.list();
    assert_eq!(listed.len(), 1);
    let info = &listed[0];
    assert_eq!(info.metadata.id, "my_plugin");
    assert_eq!(info.metadata.name, "My Plugin");
    assert_eq!(
        info.metadata.plugin_type,
        PluginType::Custom("analytics".to_string())
    );
    assert_eq!(
        info.metadata.description,
        "High-performance analytics plugin"
    );
    assert!(info.metadata.has_capability("data_analysis"));
    assert_eq!(info.state, PluginState::Running);
    assert_eq!(info.stats.calls, 1);
    assert_eq!(info.stats.errors, 0);

    // A second call goes through the same actor; the answer depends on the input.
    assert_eq!(
        manager
            .execute("my_plugin", "more".to_string())
            .await
            .unwrap(),
        "Processed: more"
    );
    assert_eq!(manager.info("my_plugin").unwrap().stats.calls, 2);

    manager.shutdown().await.unwrap();
    assert!(manager.list().is_empty(), "shutdown removes every plugin");
    assert!(matches!(
        manager.execute("my_plugin", "late".to_string()).await,
        Err(PluginError::NotFound(id)) if id == "my_plugin"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_plugin_refuses_to_execute_before_it_is_started() {
    let manager = PluginManager::new("my-agent");
    manager.register(MyCompileTimePlugin::new()).await.unwrap();
    let err = manager
        .execute("my_plugin", "input data".to_string())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        PluginError::InvalidState {
            id: "my_plugin".to_string(),
            operation: "execute",
            state: PluginState::Unloaded,
            expected: "Running",
        }
    );
}

/// The seed's plugin keeps its own advisory state through the lifecycle when driven directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_plugin_tracks_its_own_state_when_driven_directly() {
    let mut plugin = MyCompileTimePlugin::new();
    assert_eq!(plugin.state(), PluginState::Unloaded);
    plugin.load(&PluginContext::new("my_plugin")).await.unwrap();
    assert_eq!(plugin.state(), PluginState::Loaded);
    plugin.init_plugin().await.unwrap();
    plugin.start().await.unwrap();
    assert_eq!(plugin.state(), PluginState::Running);
    assert_eq!(
        plugin.execute("input data".to_string()).await.unwrap(),
        "Processed: input data"
    );
    plugin.stop().await.unwrap();
    assert_eq!(plugin.state(), PluginState::Loaded);
    plugin.unload().await.unwrap();
    assert_eq!(plugin.state(), PluginState::Unloaded);
    assert!(plugin.as_any().is::<MyCompileTimePlugin>());
}

/// A plugin that writes only `metadata` and `execute` relies on the trait's defaults for the
/// rest; the manager drives it through the whole lifecycle and reports its state itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_writing_only_metadata_and_execute_runs_through_the_manager() {
    let manager = PluginManager::new("defaults");
    manager
        .register(Shout(PluginMetadata::new(
            "shout",
            "Shout",
            PluginType::Tool,
        )))
        .await
        .unwrap();
    assert_eq!(manager.state("shout"), Some(PluginState::Unloaded));
    manager.load_all().await.unwrap();
    assert_eq!(manager.state("shout"), Some(PluginState::Loaded));
    manager.start_all().await.unwrap();
    assert_eq!(manager.state("shout"), Some(PluginState::Running));
    assert_eq!(
        manager.execute("shout", "hi".to_string()).await.unwrap(),
        "HI"
    );
    manager.stop("shout").await.unwrap();
    assert_eq!(manager.state("shout"), Some(PluginState::Loaded));
    manager.unload("shout").await.unwrap();
    assert_eq!(manager.state("shout"), Some(PluginState::Unloaded));
    manager.shutdown().await.unwrap();
}
