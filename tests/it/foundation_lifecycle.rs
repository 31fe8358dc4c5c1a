//! Proves that `PluginManager` enforces the plugin lifecycle (`Unloaded → Loaded → Running ⇄
//! Loaded → Unloaded`) with precise `PluginError`s instead of panics, that `state(id)` and
//! `list()` report each transition, that registration and unregistration behave (`NotFound`,
//! `AlreadyRegistered`, `InUse`), and that declared dependencies order loading and starting
//! (dependencies first) and stopping and unloading (dependents first), with missing
//! dependencies and cycles reported by name; single `load`/`start`/`stop`/`unload` steps that
//! would break that order are refused with what to do first.

use bilayer::prelude::*;

use crate::common::start_plugins;
use crate::test_plugins::{Log, Spec};

fn invalid(
    id: &str,
    operation: &'static str,
    state: PluginState,
    expected: &'static str,
) -> PluginError {
    PluginError::InvalidState {
        id: id.to_string(),
        operation,
        state,
        expected,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_is_refused_until_the_plugin_is_running() {
    let log = Log::new();
    let manager = PluginManager::new("lifecycle");
    manager
        .register(Spec::new("p", &log).build())
        .await
        .unwrap();

    let err = manager.execute("p", "x".into()).await.unwrap_err();
    assert_eq!(
        err,
        invalid("p", "execute", PluginState::Unloaded, "Running")
    );

    manager.load("p").await.unwrap();
    let err = manager.execute("p", "x".into()).await.unwrap_err();
    assert_eq!(err, invalid("p", "execute", PluginState::Loaded, "Running"));

    manager.start("p").await.unwrap();
    assert_eq!(manager.execute("p", "x".into()).await.unwrap(), "p: x");

    manager.stop("p").await.unwrap();
    let err = manager.execute("p", "x".into()).await.unwrap_err();
    assert_eq!(err, invalid("p", "execute", PluginState::Loaded, "Running"));

    // Refused calls never reached the plugin.
    assert_eq!(manager.info("p").unwrap().stats.calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_transitions_are_refused_and_leave_the_state_unchanged() {
    let log = Log::new();
    let manager = PluginManager::new("lifecycle");
    manager
        .register(Spec::new("p", &log).build())
        .await
        .unwrap();

    assert_eq!(
        manager.start("p").await.unwrap_err(),
        invalid("p", "start", PluginState::Unloaded, "Loaded")
    );
    assert_eq!(
        manager.stop("p").await.unwrap_err(),
        invalid("p", "stop", PluginState::Unloaded, "Running")
    );
    assert_eq!(
        manager.unload("p").await.unwrap_err(),
        invalid("p", "unload", PluginState::Unloaded, "Loaded")
    );
    assert_eq!(manager.state("p"), Some(PluginState::Unloaded));

    manager.load("p").await.unwrap();
    assert_eq!(
        manager.load("p").await.unwrap_err(),
        invalid("p", "load", PluginState::Loaded, "Unloaded")
    );
    assert_eq!(
        manager.stop("p").await.unwrap_err(),
        invalid("p", "stop", PluginState::Loaded, "Running")
    );
    assert_eq!(manager.state("p"), Some(PluginState::Loaded));

    manager.start("p").await.unwrap();
    assert_eq!(
        manager.start("p").await.unwrap_err(),
        invalid("p", "start", PluginState::Running, "Loaded")
    );
    // Unloading a running plugin must go through stop first.
    assert_eq!(
        manager.unload("p").await.unwrap_err(),
        invalid("p", "unload", PluginState::Running, "Loaded")
    );
    assert_eq!(
        manager.load("p").await.unwrap_err(),
        invalid("p", "load", PluginState::Running, "Unloaded")
    );
    assert_eq!(manager.state("p"), Some(PluginState::Running));

    manager.stop("p").await.unwrap();
    manager.unload("p").await.unwrap();

    // The plugin saw each lifecycle call exactly once, in order: refusals never reached it.
    assert_eq!(
        log.of("p"),
        [
            "p#1:load",
            "p#1:init",
            "p#1:start",
            "p#1:stop",
            "p#1:unload"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_list_follow_every_transition() {
    let log = Log::new();
    let manager = PluginManager::new("lifecycle");
    assert_eq!(manager.state("p"), None);
    assert!(manager.list().is_empty());

    manager
        .register(Spec::new("p", &log).build())
        .await
        .unwrap();
    manager
        .register(Spec::new("q", &log).build())
        .await
        .unwrap();
    let states = |m: &PluginManager| {
        m.list()
            .into_iter()
            .map(|i| (i.metadata.id, i.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        states(&manager),
        [
            ("p".to_string(), PluginState::Unloaded),
            ("q".to_string(), PluginState::Unloaded)
        ]
    );

    manager.load("p").await.unwrap();
    assert_eq!(manager.state("p"), Some(PluginState::Loaded));
    assert_eq!(manager.state("q"), Some(PluginState::Unloaded));

    manager.load_all().await.unwrap();
    manager.start_all().await.unwrap();
    assert_eq!(
        states(&manager),
        [
            ("p".to_string(), PluginState::Running),
            ("q".to_string(), PluginState::Running)
        ]
    );

    manager.stop("q").await.unwrap();
    assert_eq!(manager.state("q"), Some(PluginState::Loaded));
    assert_eq!(manager.state("p"), Some(PluginState::Running));

    manager.stop_all().await.unwrap();
    assert_eq!(
        states(&manager),
        [
            ("p".to_string(), PluginState::Loaded),
            ("q".to_string(), PluginState::Loaded)
        ]
    );
    manager.unload_all().await.unwrap();
    assert_eq!(
        states(&manager),
        [
            ("p".to_string(), PluginState::Unloaded),
            ("q".to_string(), PluginState::Unloaded)
        ]
    );

    // The listing carries the plugin's metadata.
    let p = manager.info("p").unwrap();
    assert_eq!(p.metadata.name, "Test p");
    assert_eq!(p.metadata.plugin_type, PluginType::Tool);
    assert_eq!(p.metadata.description, "integration-test plugin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregister_stops_unloads_and_forgets_the_plugin() {
    let log = Log::new();
    let manager = PluginManager::new("lifecycle");
    let p = Spec::new("p", &log);
    let other = Spec::new("other", &log);
    start_plugins(&manager, &[&p, &other]).await;
    assert_eq!(manager.execute("p", "x".into()).await.unwrap(), "p: x");

    manager.unregister("p").await.unwrap();
    assert_eq!(
        manager.execute("p", "x".into()).await.unwrap_err(),
        PluginError::NotFound("p".to_string())
    );
    assert_eq!(manager.state("p"), None);
    assert!(!manager.contains("p"));
    assert_eq!(
        manager
            .list()
            .into_iter()
            .map(|i| i.metadata.id)
            .collect::<Vec<_>>(),
        ["other"]
    );
    // Unregistering a running plugin took it down properly.
    assert_eq!(
        log.of("p"),
        [
            "p#1:load",
            "p#1:init",
            "p#1:start",
            "p#1:stop",
            "p#1:unload"
        ]
    );
    assert_eq!(
        manager.unregister("p").await.unwrap_err(),
        PluginError::NotFound("p".to_string())
    );
    // The other plugin is untouched, and the id can be registered again.
    assert_eq!(
        manager.execute("other", "y".into()).await.unwrap(),
        "other: y"
    );
    manager.register(p.build()).await.unwrap();
    assert_eq!(manager.state("p"), Some(PluginState::Unloaded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_registration_is_refused_and_the_first_plugin_keeps_serving() {
    let log = Log::new();
    let manager = PluginManager::new("lifecycle");
    let p = Spec::new("p", &log);
    start_plugins(&manager, &[&p]).await;

    assert_eq!(
        manager.register(p.build()).await.unwrap_err(),
        PluginError::AlreadyRegistered("p".to_string())
    );
    assert_eq!(
        manager
            .register_factory(|| Spec::new("p", &Log::new()).build())
            .await
            .unwrap_err(),
        PluginError::AlreadyRegistered("p".to_string())
    );
    assert_eq!(manager.list().len(), 1);
    // The first instance (#1) still answers; the refused instances never replaced it.
    assert_eq!(
        manager.execute("p", "ping".into()).await.unwrap(),
        "pong p#1"
    );
    assert_eq!(manager.state("p"), Some(PluginState::Running));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_not_found_for_every_operation() {
    let manager = PluginManager::new("lifecycle");
    let not_found = PluginError::NotFound("ghost".to_string());
    assert_eq!(
        manager.execute("ghost", "x".into()).await.unwrap_err(),
        not_found
    );
    assert_eq!(manager.load("ghost").await.unwrap_err(), not_found);
    assert_eq!(manager.start("ghost").await.unwrap_err(), not_found);
    assert_eq!(manager.stop("ghost").await.unwrap_err(), not_found);
    assert_eq!(manager.unload("ghost").await.unwrap_err(), not_found);
    assert_eq!(manager.unregister("ghost").await.unwrap_err(), not_found);
    assert!(manager.info("ghost").is_none());
}

/// Registration order deliberately puts dependents before their dependencies:
/// app → {db, cache}, db → config, cache, config.
fn dependency_specs(log: &Log) -> Vec<Spec> {
    vec![
        Spec::new("app", log).depends_on("db").depends_on("cache"),
        Spec::new("db", log).depends_on("config"),
        Spec::new("cache", log),
        Spec::new("config", log),
    ]
}

fn assert_before(order: &[String], first: &str, then: &str) {
    let at = |id: &str| {
        order
            .iter()
            .position(|o| o == id)
            .unwrap_or_else(|| panic!("{id} missing from {order:?}"))
    };
    assert!(
        at(first) < at(then),
        "{first} should come before {then} in {order:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_are_loaded_and_started_first_and_stopped_last() {
    let log = Log::new();
    let manager = PluginManager::new("deps");
    for spec in dependency_specs(&log) {
        manager.register(spec.build()).await.unwrap();
    }
    manager.load_all().await.unwrap();
    manager.start_all().await.unwrap();

    let edges = [("db", "app"), ("cache", "app"), ("config", "db")];
    for step in ["load", "init", "start"] {
        let order = log.order_of(step);
        assert_eq!(order.len(), 4, "{step}: {order:?}");
        for (dependency, dependent) in edges {
            assert_before(&order, dependency, dependent);
        }
    }
    let started = log.order_of("start");

    manager.stop_all().await.unwrap();
    manager.unload_all().await.unwrap();
    let stopped = log.order_of("stop");
    let unloaded = log.order_of("unload");
    for (dependency, dependent) in edges {
        assert_before(&stopped, dependent, dependency);
        assert_before(&unloaded, dependent, dependency);
    }
    let mut reversed = started.clone();
    reversed.reverse();
    assert_eq!(stopped, reversed, "stop order is the start order reversed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_also_stops_dependents_first() {
    let log = Log::new();
    let manager = PluginManager::new("deps");
    for spec in dependency_specs(&log) {
        manager.register(spec.build()).await.unwrap();
    }
    manager.load_all().await.unwrap();
    manager.start_all().await.unwrap();
    manager.shutdown().await.unwrap();

    let stopped = log.order_of("stop");
    assert_eq!(stopped.len(), 4);
    assert_before(&stopped, "app", "db");
    assert_before(&stopped, "app", "cache");
    assert_before(&stopped, "db", "config");
    assert!(manager.list().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dependency_is_named_and_nothing_is_loaded() {
    let log = Log::new();
    let manager = PluginManager::new("deps");
    manager
        .register(Spec::new("app", &log).depends_on("db").build())
        .await
        .unwrap();
    manager
        .register(Spec::new("other", &log).build())
        .await
        .unwrap();

    let missing = PluginError::MissingDependency {
        plugin: "app".to_string(),
        dependency: "db".to_string(),
    };
    assert_eq!(manager.load_all().await.unwrap_err(), missing);
    assert_eq!(manager.start_all().await.unwrap_err(), missing);
    assert!(
        log.entries().is_empty(),
        "no plugin was loaded: {:?}",
        log.entries()
    );
    assert!(missing.to_string().contains("app") && missing.to_string().contains("db"));

    // Starting the dependent alone also names the missing dependency.
    assert_eq!(manager.start("app").await.unwrap_err(), missing);
    assert_eq!(manager.state("app"), Some(PluginState::Unloaded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_cycle_is_named() {
    let log = Log::new();
    let manager = PluginManager::new("deps");
    manager
        .register(Spec::new("a", &log).depends_on("b").build())
        .await
        .unwrap();
    manager
        .register(Spec::new("b", &log).depends_on("a").build())
        .await
        .unwrap();
    manager
        .register(Spec::new("c", &log).build())
        .await
        .unwrap();

    let err = manager.load_all().await.unwrap_err();
    let PluginError::DependencyCycle(cycle) = &err else {
        panic!("expected DependencyCycle, got {err:?}");
    };
    assert_eq!(cycle.len(), 3, "{cycle:?}");
    assert_eq!(
        cycle.first(),
        cycle.last(),
        "a cycle closes on itself: {cycle:?}"
    );
    assert!(cycle.contains(&"a".to_string()) && cycle.contains(&"b".to_string()));
    assert!(
        !cycle.contains(&"c".to_string()),
        "c is not in the cycle: {cycle:?}"
    );
    assert!(err.to_string().contains("a -> b") || err.to_string().contains("b -> a"));
    assert!(log.entries().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_a_plugin_whose_dependency_is_not_running_is_refused() {
    let log = Log::new();
    let manager = PluginManager::new("deps");
    manager
        .register(Spec::new("db", &log).build())
        .await
        .unwrap();
    manager
        .register(Spec::new("app", &log).depends_on("db").build())
        .await
        .unwrap();
    manager.load_all().await.unwrap();

    assert_eq!(
        manager.start("app").await.unwrap_err(),
        PluginError::DependencyNotReady {
            plugin: "app".to_string(),
            dependency: "db".to_string(),
            state: PluginState::Loaded,
        }
    );
    assert_eq!(manager.state("app"), Some(PluginState::Loaded));
    assert_eq!(log.count("app", "start"), 0);

    manager.start("db").await.unwrap();
    manager.start("app").await.unwrap();
    assert_eq!(manager.state("app"), Some(PluginState::Running));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_cannot_be_unregistered_while_a_dependent_is_loaded() {
    let log = Log::new();
    let manager = PluginManager::new("deps");
    let db = Spec::new("db", &log);
    let app = Spec::new("app", &log).depends_on("db");
    start_plugins(&manager, &[&db, &app]).await;

    let in_use = PluginError::InUse {
        id: "db".to_string(),
        dependent: "app".to_string(),
    };
    assert_eq!(manager.unregister("db").await.unwrap_err(), in_use);
    assert_eq!(
        manager.state("db"),
        Some(PluginState::Running),
        "db untouched"
    );
    assert_eq!(log.count("db", "stop"), 0);

    // Still refused while the dependent is merely loaded.
    manager.stop("app").await.unwrap();
    assert_eq!(manager.unregister("db").await.unwrap_err(), in_use);

    manager.unload("app").await.unwrap();
    manager.unregister("db").await.unwrap();
    assert!(!manager.contains("db"));
    assert_eq!(log.count("db", "unload"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_steps_keep_the_dependency_order_or_say_what_to_do_first() {
    let log = Log::new();
    let manager = PluginManager::new("deps");
    manager
        .register(Spec::new("db", &log).build())
        .await
        .unwrap();
    manager
        .register(Spec::new("app", &log).depends_on("db").build())
        .await
        .unwrap();

    // Loading the dependent before its dependency.
    let err = manager.load("app").await.unwrap_err();
    assert_eq!(
        err,
        PluginError::DependencyOrder {
            plugin: "app".to_string(),
            operation: "load",
            detail: "its dependency `db` is Unloaded; load `db` first".to_string(),
        }
    );
    assert_eq!(
        err.to_string(),
        "plugin `app` cannot load: its dependency `db` is Unloaded; load `db` first"
    );
    assert_eq!(log.count("app", "load"), 0);

    manager.load("db").await.unwrap();
    manager.load("app").await.unwrap();
    manager.start("db").await.unwrap();
    manager.start("app").await.unwrap();

    // Stopping the dependency under a running dependent.
    let err = manager.stop("db").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `db` cannot stop: `app`, which depends on it, is Running; stop `app` first"
    );
    assert_eq!(
        manager.state("db"),
        Some(PluginState::Running),
        "db untouched"
    );
    assert_eq!(log.count("db", "stop"), 0);

    // Once the dependent is stopped, the dependency may stop; unloading it still waits for
    // the dependent to unload.
    manager.stop("app").await.unwrap();
    manager.stop("db").await.unwrap();
    let err = manager.unload("db").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `db` cannot unload: `app`, which depends on it, is Loaded; unload `app` first"
    );
    assert_eq!(manager.state("db"), Some(PluginState::Loaded));
    manager.unload("app").await.unwrap();
    manager.unload("db").await.unwrap();
    assert_eq!(manager.state("db"), Some(PluginState::Unloaded));

    // A dependency that is not registered at all is named as missing.
    manager
        .register(Spec::new("orphan", &log).depends_on("ghost").build())
        .await
        .unwrap();
    assert_eq!(
        manager.load("orphan").await.unwrap_err(),
        PluginError::MissingDependency {
            plugin: "orphan".to_string(),
            dependency: "ghost".to_string(),
        }
    );
}
