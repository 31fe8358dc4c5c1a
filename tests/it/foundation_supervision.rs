//! Proves the supervision contract: a plugin that panics answers its caller with
//! `PluginError::Panicked` (naming the panic) while the process carries on; every message queued
//! behind the poison message is answered by the restarted plugin; a factory-registered plugin
//! restarts as a fresh instance while an instance-registered one re-runs its lifecycle; restarts
//! are counted; supervision events (Started, Failed, Restarted, GaveUp, Escalated) reach the
//! application; exceeding the restart intensity leaves the plugin failed; and the three OTP
//! strategies restart exactly the plugins they should.

use std::time::Duration;

use bilayer::prelude::*;
use futures::future::join_all;

use crate::common::{events_until, start_plugins, wait_until};
use crate::test_plugins::{Log, PanicsOnStart, Spec};

fn panicked(err: &PluginError, id: &str, input: &str) -> bool {
    matches!(
        err,
        PluginError::Panicked { id: failed, message }
            if failed == id && message.contains(&format!("exploded on {input}"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_answers_its_caller_and_the_fifty_messages_queued_behind_it_are_served() {
    let log = Log::new();
    let manager = PluginManager::new("supervision");
    let spec = Spec::new("p", &log)
        .panics_on("boom")
        .panic_delay(Duration::from_millis(300));
    let factory_spec = spec.clone();
    manager
        .register_factory(move || factory_spec.build())
        .await
        .unwrap();
    let bystander = Spec::new("bystander", &log);
    manager.register(bystander.build()).await.unwrap();
    manager.load_all().await.unwrap();
    manager.start_all().await.unwrap();

    let poison = tokio::spawn({
        let manager = manager.clone();
        async move { manager.execute("p", "boom".into()).await }
    });
    // Once the plugin is inside the poison call, everything sent now queues behind it.
    wait_until("the plugin is handling the poison message", || {
        log.count("p", "entered boom") == 1
    })
    .await;
    let queued = join_all((0..50).map(|i| {
        let manager = manager.clone();
        tokio::spawn(async move { manager.execute("p", format!("msg {i}")).await })
    }));
    let (poison, queued) = tokio::join!(poison, queued);

    let err = poison.unwrap().unwrap_err();
    assert!(panicked(&err, "p", "boom"), "unexpected error: {err:?}");
    assert!(err.to_string().contains("panicked"), "{err}");
    for (i, answer) in queued.into_iter().enumerate() {
        assert_eq!(answer.unwrap().unwrap(), format!("p: msg {i}"));
    }
    // All fifty were served by the restarted instance (#2): the poison's instance (#1) panicked
    // before any of them, and the supervisor restarted it exactly once.
    assert_eq!(spec.instances_built(), 2);
    assert_eq!(
        manager.execute("p", "ping".into()).await.unwrap(),
        "pong p#2"
    );
    assert_eq!(log.count("p", "entered boom"), 1);

    let info = manager.info("p").unwrap();
    assert_eq!(info.state, PluginState::Running);
    assert_eq!(info.stats.restarts, 1);
    assert_eq!(info.stats.panics, 1);
    assert_eq!(info.stats.calls, 52, "poison + 50 queued + ping");
    assert_eq!(info.stats.errors, 1);
    // The other plugin never noticed.
    let other = manager.info("bystander").unwrap();
    assert_eq!(other.stats.restarts, 0);
    assert_eq!(
        manager.execute("bystander", "ping".into()).await.unwrap(),
        "pong bystander#1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factory_plugin_restarts_as_a_fresh_instance() {
    let log = Log::new();
    let manager = PluginManager::new("supervision");
    let spec = Spec::new("p", &log).panics_on("boom");
    let factory_spec = spec.clone();
    manager
        .register_factory(move || factory_spec.build())
        .await
        .unwrap();
    manager.load_all().await.unwrap();
    manager.start_all().await.unwrap();

    for expected in ["1", "2", "3"] {
        assert_eq!(
            manager.execute("p", "count".into()).await.unwrap(),
            expected
        );
    }
    let err = manager.execute("p", "boom".into()).await.unwrap_err();
    assert!(panicked(&err, "p", "boom"), "{err:?}");
    // The counter lived in the old instance: the new one starts from zero.
    assert_eq!(manager.execute("p", "count".into()).await.unwrap(), "1");
    assert_eq!(spec.instances_built(), 2);
    assert_eq!(
        log.of("p"),
        [
            "p#1:load",
            "p#1:init",
            "p#1:start", // first life
            "p#1:entered boom",
            "p#1:stop",
            "p#1:unload", // the failed instance is torn down
            "p#2:load",
            "p#2:init",
            "p#2:start", // a fresh instance is brought back
        ]
    );
    assert_eq!(manager.info("p").unwrap().stats.restarts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_plugin_restarts_by_re_running_its_lifecycle() {
    let log = Log::new();
    let manager = PluginManager::new("supervision");
    let spec = Spec::new("p", &log).panics_on("boom");
    manager.register(spec.build()).await.unwrap();
    manager.load_all().await.unwrap();
    manager.start_all().await.unwrap();

    for expected in ["1", "2", "3"] {
        assert_eq!(
            manager.execute("p", "count".into()).await.unwrap(),
            expected
        );
    }
    let err = manager.execute("p", "boom".into()).await.unwrap_err();
    assert!(panicked(&err, "p", "boom"), "{err:?}");
    assert_eq!(
        manager.execute("p", "ping".into()).await.unwrap(),
        "pong p#1"
    );
    // Same instance (#1), taken down and brought back through its lifecycle.
    assert_eq!(spec.instances_built(), 1);
    assert_eq!(
        log.of("p"),
        [
            "p#1:load",
            "p#1:init",
            "p#1:start",
            "p#1:entered boom",
            "p#1:stop",
            "p#1:unload",
            "p#1:load",
            "p#1:init",
            "p#1:start",
        ]
    );
    assert_eq!(log.count("p", "load"), 2);
    // Fields the plugin does not reset in `load` survive, since it is the same instance.
    assert_eq!(manager.execute("p", "count".into()).await.unwrap(), "4");
    let info = manager.info("p").unwrap();
    assert_eq!(info.stats.restarts, 1);
    assert_eq!(info.state, PluginState::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sibling_returns_to_the_state_it_was_driven_to() {
    // Under one_for_all, a sibling the application had stopped (Loaded) is restarted back to
    // Loaded, not started behind the application's back.
    let log = Log::new();
    let manager = PluginManager::builder("targets")
        .strategy(SupervisionStrategy::OneForAll)
        .build();
    let a = Spec::new("a", &log);
    let b = Spec::new("b", &log).panics_on("boom");
    start_plugins(&manager, &[&a, &b]).await;
    manager.stop("a").await.unwrap();

    let err = manager.execute("b", "boom".into()).await.unwrap_err();
    assert!(panicked(&err, "b", "boom"), "{err:?}");
    assert_eq!(
        manager.execute("b", "ping".into()).await.unwrap(),
        "pong b#1"
    );
    wait_until("a was restarted", || log.count("a", "load") == 2).await;
    // A lifecycle step queues behind the restart in a's mailbox: once it answers, a is settled.
    assert_eq!(
        manager.stop("a").await.unwrap_err(),
        PluginError::InvalidState {
            id: "a".to_string(),
            operation: "stop",
            state: PluginState::Loaded,
            expected: "Running",
        }
    );
    assert_eq!(
        log.of("a"),
        [
            "a#1:load",
            "a#1:init",
            "a#1:start",
            "a#1:stop", // driven by the application
            "a#1:unload",
            "a#1:load",
            "a#1:init", // the restart, back to Loaded
        ]
    );
    assert_eq!(manager.state("a"), Some(PluginState::Loaded));
    assert_eq!(manager.state("b"), Some(PluginState::Running));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervision_events_report_restarts_then_giving_up_and_escalating() {
    let log = Log::new();
    let manager = PluginManager::builder("sup-events")
        .restart_intensity(2, Duration::from_secs(10))
        .build();
    let mut events = manager.supervision_events();
    let spec = Spec::new("p", &log).panics_on("boom");
    let factory_spec = spec.clone();
    manager
        .register_factory(move || factory_spec.build())
        .await
        .unwrap();
    manager.load_all().await.unwrap();
    manager.start_all().await.unwrap();

    for _ in 0..3 {
        let err = manager.execute("p", "boom".into()).await.unwrap_err();
        assert!(panicked(&err, "p", "boom"), "{err:?}");
    }
    // The third failure exceeded 2 restarts in 10 s: the plugin is failed for good.
    assert_eq!(
        manager.execute("p", "ping".into()).await.unwrap_err(),
        PluginError::Failed {
            id: "p".to_string(),
            restarts: 2
        }
    );
    assert_eq!(manager.state("p"), Some(PluginState::Error));
    let info = manager.info("p").unwrap();
    assert_eq!(info.stats.restarts, 2);
    assert_eq!(info.stats.panics, 3);
    assert_eq!(
        spec.instances_built(),
        3,
        "the first instance and two restarts"
    );

    let seen = events_until(&mut events, |e| {
        matches!(e, SupervisorEvent::Escalated { .. })
    })
    .await;
    let failed_reason_ok = |e: &SupervisorEvent| {
        matches!(e, SupervisorEvent::Failed { plugin_id, reason }
            if plugin_id == "p" && reason.contains("exploded on boom"))
    };
    let restarted = |n: u32| SupervisorEvent::Restarted {
        plugin_id: "p".to_string(),
        cause: "p".to_string(),
        restarts: n,
    };
    assert_eq!(seen.len(), 8, "{seen:#?}");
    assert_eq!(
        seen[0],
        SupervisorEvent::Started {
            plugin_id: "p".to_string()
        }
    );
    assert!(failed_reason_ok(&seen[1]), "{seen:#?}");
    assert_eq!(seen[2], restarted(1));
    assert!(failed_reason_ok(&seen[3]), "{seen:#?}");
    assert_eq!(seen[4], restarted(2));
    assert!(failed_reason_ok(&seen[5]), "{seen:#?}");
    assert_eq!(
        seen[6],
        SupervisorEvent::GaveUp {
            plugin_id: "p".to_string(),
            restarts: 2
        }
    );
    let SupervisorEvent::Escalated { supervisor, reason } = &seen[7] else {
        panic!("expected Escalated last: {seen:#?}");
    };
    assert_eq!(supervisor, "sup-events");
    assert!(reason.contains("`p`"), "{reason}");

    // Still failed on later calls, with no further restarts.
    assert!(matches!(
        manager.execute("p", "count".into()).await,
        Err(PluginError::Failed { .. })
    ));
    assert_eq!(spec.instances_built(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_outside_the_intensity_window_do_not_accumulate() {
    let log = Log::new();
    let manager = PluginManager::builder("window")
        .restart_intensity(1, Duration::from_millis(500))
        .build();
    manager
        .register(Spec::new("p", &log).panics_on("boom").build())
        .await
        .unwrap();
    manager.load_all().await.unwrap();
    manager.start_all().await.unwrap();

    for _ in 0..2 {
        assert!(manager.execute("p", "boom".into()).await.is_err());
        assert_eq!(
            manager.execute("p", "ping".into()).await.unwrap(),
            "pong p#1"
        );
        // Let the previous restart age out of the window.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert_eq!(manager.info("p").unwrap().stats.restarts, 2);
    assert_eq!(manager.state("p"), Some(PluginState::Running));

    // Two failures inside the window exceed 1 restart: given up.
    assert!(manager.execute("p", "boom".into()).await.is_err());
    assert!(manager.execute("p", "boom".into()).await.is_err());
    assert!(matches!(
        manager.execute("p", "ping".into()).await,
        Err(PluginError::Failed { restarts: 3, .. })
    ));
}

/// Registers a, b, c (in that order) under `strategy`, makes b panic, and returns how many
/// times each was loaded and restarted once everything has settled.
async fn loads_after_b_fails(strategy: SupervisionStrategy) -> Vec<(String, usize, u32)> {
    let log = Log::new();
    let manager = PluginManager::builder("strategies")
        .strategy(strategy)
        .build();
    let mut events = manager.supervision_events();
    let a = Spec::new("a", &log);
    let b = Spec::new("b", &log).panics_on("boom");
    let c = Spec::new("c", &log);
    start_plugins(&manager, &[&a, &b, &c]).await;

    let err = manager.execute("b", "boom".into()).await.unwrap_err();
    assert!(panicked(&err, "b", "boom"), "{err:?}");
    // b serves this only after its supervisor answered, which is after the supervisor sent any
    // sibling restarts; a and c then serve theirs after any restart in their own mailboxes.
    for id in ["b", "a", "c"] {
        assert_eq!(
            manager.execute(id, "ping".into()).await.unwrap(),
            format!("pong {id}#1")
        );
        assert_eq!(manager.state(id), Some(PluginState::Running));
    }
    let restarted_events = events_until(
        &mut events,
        |e| matches!(e, SupervisorEvent::Restarted { plugin_id, .. } if plugin_id == "b"),
    )
    .await;
    assert!(restarted_events.iter().any(|e| matches!(
        e,
        SupervisorEvent::Failed { plugin_id, .. } if plugin_id == "b"
    )));

    // The restart counts come from the application's view: `list()`.
    manager
        .list()
        .into_iter()
        .map(|info| {
            let id = info.metadata.id;
            let loads = log.count(&id, "load");
            (id, loads, info.stats.restarts)
        })
        .collect()
}

fn row(id: &str, loads: usize, restarts: u32) -> (String, usize, u32) {
    (id.to_string(), loads, restarts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_one_restarts_only_the_failed_plugin() {
    assert_eq!(
        loads_after_b_fails(SupervisionStrategy::OneForOne).await,
        [row("a", 1, 0), row("b", 2, 1), row("c", 1, 0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_restarts_every_sibling() {
    assert_eq!(
        loads_after_b_fails(SupervisionStrategy::OneForAll).await,
        [row("a", 2, 1), row("b", 2, 1), row("c", 2, 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_for_one_restarts_the_plugins_registered_after_the_failed_one() {
    assert_eq!(
        loads_after_b_fails(SupervisionStrategy::RestForOne).await,
        [row("a", 1, 0), row("b", 2, 1), row("c", 2, 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_reports_each_sibling_restart_with_its_cause() {
    let log = Log::new();
    let manager = PluginManager::builder("ofa-events")
        .strategy(SupervisionStrategy::OneForAll)
        .build();
    let mut events = manager.supervision_events();
    let a = Spec::new("a", &log);
    let b = Spec::new("b", &log).panics_on("boom");
    start_plugins(&manager, &[&a, &b]).await;
    assert!(manager.execute("b", "boom".into()).await.is_err());

    let seen = events_until(
        &mut events,
        |e| matches!(e, SupervisorEvent::Restarted { plugin_id, .. } if plugin_id == "a"),
    )
    .await;
    assert!(seen.contains(&SupervisorEvent::Restarted {
        plugin_id: "b".to_string(),
        cause: "b".to_string(),
        restarts: 1
    }));
    assert_eq!(
        seen.last().unwrap(),
        &SupervisorEvent::Restarted {
            plugin_id: "a".to_string(),
            cause: "b".to_string(),
            restarts: 1
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_lifecycle_step_is_an_error_not_a_crash() {
    let manager = PluginManager::new("lifecycle-panic");
    manager
        .register(PanicsOnStart(PluginMetadata::new(
            "s",
            "S",
            PluginType::Tool,
        )))
        .await
        .unwrap();
    manager.load("s").await.unwrap();
    let err = manager.start("s").await.unwrap_err();
    assert!(
        matches!(&err, PluginError::Panicked { id, message } if id == "s" && message == "cannot start today"),
        "{err:?}"
    );
    // The failed step leaves the plugin where it was, and its actor still answers.
    assert_eq!(manager.state("s"), Some(PluginState::Loaded));
    manager.unload("s").await.unwrap();
    assert_eq!(manager.state("s"), Some(PluginState::Unloaded));
}
