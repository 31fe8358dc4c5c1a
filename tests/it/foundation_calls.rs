//! Proves the call path: execute has a per-call timeout (the manager's, or one given per call)
//! that answers `PluginError::Timeout` promptly and cancels the abandoned call so the plugin
//! serves the next one; calls to different plugins run in parallel rather than behind a
//! manager-wide lock; plugins call each other through `PluginContext::call_plugin`; a call cycle
//! (A → B → A, or A → A) fails with `PluginError::CallCycle` instead of deadlocking; and call
//! statistics (calls, errors, timeouts) are counted in `list()`.

use std::time::{Duration, Instant};

use bilayer::prelude::*;
use futures::future::join_all;

use crate::common;
use crate::common::start_plugins;
use crate::test_plugins::{Log, Spec, Top};

/// Generous enough for a noisy 2-core machine, far below the 10 s the slow plugin sleeps.
const PROMPT: Duration = Duration::from_secs(3);

#[test]
fn the_default_execute_timeout_is_the_documented_thirty_seconds() {
    assert_eq!(bilayer::DEFAULT_EXECUTE_TIMEOUT, Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_execute_timeout_fails_fast_and_the_plugin_serves_the_next_call() {
    let log = Log::new();
    let limit = Duration::from_millis(100);
    let manager = PluginManager::builder("timeouts")
        .execute_timeout(Some(limit))
        .build();
    let slow = Spec::new("slow", &log);
    start_plugins(&manager, &[&slow]).await;

    let started = Instant::now();
    let err = manager
        .execute("slow", "sleep:10000".into())
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert_eq!(
        err,
        PluginError::Timeout {
            id: "slow".to_string(),
            after: limit
        }
    );
    assert!(waited >= limit, "answered before the deadline: {waited:?}");
    assert!(waited < PROMPT, "the timeout took {waited:?}");

    // The abandoned 10 s call was cancelled: the next call is served right away, not after it.
    let started = Instant::now();
    let answer = manager
        .execute_with_timeout("slow", "ping".into(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer, "pong slow#1");
    assert!(
        started.elapsed() < PROMPT,
        "next call took {:?}",
        started.elapsed()
    );

    let stats = manager.info("slow").unwrap().stats;
    assert_eq!(stats.timeouts, 1);
    assert_eq!(stats.calls, 2, "the cancelled call and the ping");
    assert_eq!(stats.errors, 1, "the cancelled call counts as an error");
    assert_eq!(manager.state("slow"), Some(PluginState::Running));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_with_timeout_overrides_the_manager_timeout_per_call() {
    let log = Log::new();
    // The manager would wait forever; this one call does not.
    let manager = PluginManager::builder("per-call")
        .execute_timeout(None)
        .build();
    let slow = Spec::new("slow", &log);
    start_plugins(&manager, &[&slow]).await;

    let limit = Duration::from_millis(100);
    let started = Instant::now();
    let err = manager
        .execute_with_timeout("slow", "sleep:10000".into(), limit)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        PluginError::Timeout {
            id: "slow".to_string(),
            after: limit
        }
    );
    assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());

    // A call that fits its deadline succeeds.
    assert_eq!(
        manager
            .execute_with_timeout("slow", "sleep:10".into(), Duration::from_secs(5))
            .await
            .unwrap(),
        "slept slow"
    );
    // And a plain execute (no manager timeout) still gets its answer.
    let answer = tokio::time::timeout(PROMPT, manager.execute("slow", "ping".into()))
        .await
        .expect("the plugin was not left busy with the abandoned call")
        .unwrap();
    assert_eq!(answer, "pong slow#1");
    assert_eq!(manager.info("slow").unwrap().stats.timeouts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_calls_on_a_hundred_plugins_run_in_parallel() {
    let log = Log::new();
    let manager = PluginManager::new("parallel");
    let specs: Vec<Spec> = (0..100)
        .map(|i| Spec::new(&format!("p{i}"), &log))
        .collect();
    start_plugins(&manager, &specs.iter().collect::<Vec<_>>()).await;

    let started = Instant::now();
    let answers = join_all((0..100).map(|i| {
        let manager = manager.clone();
        tokio::spawn(async move { manager.execute(&format!("p{i}"), "sleep:200".into()).await })
    }))
    .await;
    let elapsed = started.elapsed();

    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap().unwrap(), format!("slept p{i}"));
    }
    // One at a time would take 100 × 200 ms = 20 s.
    assert!(
        elapsed < Duration::from_secs(5),
        "100 calls of 200 ms took {elapsed:?}: they did not run in parallel"
    );
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    for info in manager.list() {
        assert_eq!(info.stats.calls, 1, "{}", info.metadata.id);
        assert!(info.stats.max_latency >= Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_call_on_one_plugin_does_not_hold_up_the_others_or_the_listing() {
    let log = Log::new();
    let manager = PluginManager::new("isolation");
    let slow = Spec::new("slow", &log);
    let quick = Spec::new("quick", &log);
    start_plugins(&manager, &[&slow, &quick]).await;

    let busy = tokio::spawn({
        let manager = manager.clone();
        async move { manager.execute("slow", "sleep:1500".into()).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    assert_eq!(
        manager.execute("quick", "x".into()).await.unwrap(),
        "quick: x"
    );
    assert_eq!(manager.list().len(), 2);
    assert_eq!(manager.state("slow"), Some(PluginState::Running));
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "quick waited {:?} behind slow",
        started.elapsed()
    );
    assert_eq!(busy.await.unwrap().unwrap(), "slept slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_call_each_other_through_their_context() {
    let log = Log::new();
    let manager = PluginManager::new("chain");
    let front = Spec::new("front", &log).calls("middle");
    let middle = Spec::new("middle", &log).calls("back");
    let back = Spec::new("back", &log);
    start_plugins(&manager, &[&front, &middle, &back]).await;

    assert_eq!(
        manager.execute("front", "hello".into()).await.unwrap(),
        "front>middle>back: hello"
    );
    // Errors of the callee reach the outermost caller unchanged.
    assert_eq!(
        manager.execute("front", "fail".into()).await.unwrap_err(),
        PluginError::execution("front was asked to fail")
    );
    let err = manager
        .execute("middle", "sleep:x".into())
        .await
        .unwrap_err();
    assert_eq!(err, PluginError::InvalidInput("sleep:x".to_string()));

    // Each hop went through the callee's actor and was counted there.
    assert_eq!(manager.info("back").unwrap().stats.calls, 1);
    assert_eq!(manager.info("middle").unwrap().stats.calls, 2);
    assert_eq!(manager.info("front").unwrap().stats.calls, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_an_unknown_or_stopped_plugin_is_an_error_for_the_caller() {
    let log = Log::new();
    let manager = PluginManager::new("chain");
    let caller = Spec::new("caller", &log).calls("callee");
    let callee = Spec::new("callee", &log);
    start_plugins(&manager, &[&caller, &callee]).await;

    manager.stop("callee").await.unwrap();
    assert_eq!(
        manager.execute("caller", "x".into()).await.unwrap_err(),
        PluginError::InvalidState {
            id: "callee".to_string(),
            operation: "execute",
            state: PluginState::Loaded,
            expected: "Running",
        }
    );
    manager.unload("callee").await.unwrap();
    manager.unregister("callee").await.unwrap();
    assert_eq!(
        manager.execute("caller", "x".into()).await.unwrap_err(),
        PluginError::NotFound("callee".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cycle_is_refused_instead_of_deadlocking() {
    let log = Log::new();
    let manager = PluginManager::new("cycle");
    let a = Spec::new("a", &log).calls("b");
    let b = Spec::new("b", &log).calls("a");
    start_plugins(&manager, &[&a, &b]).await;

    let outcome = tokio::time::timeout(PROMPT, manager.execute("a", "x".into()))
        .await
        .expect("a call cycle deadlocked");
    assert_eq!(
        outcome.unwrap_err(),
        PluginError::CallCycle(vec!["a".to_string(), "b".to_string(), "a".to_string()])
    );
    // Entering the cycle from the other side names it from there.
    let outcome = tokio::time::timeout(PROMPT, manager.execute("b", "x".into()))
        .await
        .expect("a call cycle deadlocked");
    assert_eq!(
        outcome.unwrap_err(),
        PluginError::CallCycle(vec!["b".to_string(), "a".to_string(), "b".to_string()])
    );
    // Neither mailbox was left blocked.
    assert_eq!(
        manager.execute("a", "ping".into()).await.unwrap(),
        "pong a#1"
    );
    assert_eq!(
        manager.execute("b", "ping".into()).await.unwrap(),
        "pong b#1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_calling_itself_is_a_call_cycle() {
    let log = Log::new();
    let manager = PluginManager::new("cycle");
    let narcissus = Spec::new("narcissus", &log).calls("narcissus");
    start_plugins(&manager, &[&narcissus]).await;

    let outcome = tokio::time::timeout(PROMPT, manager.execute("narcissus", "x".into()))
        .await
        .expect("a self-call deadlocked");
    let err = outcome.unwrap_err();
    assert_eq!(
        err,
        PluginError::CallCycle(vec!["narcissus".to_string(), "narcissus".to_string()])
    );
    assert!(err.to_string().contains("narcissus -> narcissus"), "{err}");
    assert_eq!(
        manager.execute("narcissus", "ping".into()).await.unwrap(),
        "pong narcissus#1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_plugin_may_be_called_twice_on_one_path_when_it_is_not_waiting() {
    // Diamond: top calls left and right, both call bottom. Not a cycle: bottom is never
    // waiting on itself.
    let log = Log::new();
    let manager = PluginManager::new("diamond");
    manager
        .register(Top {
            metadata: PluginMetadata::new("top", "Top", PluginType::Tool),
            ctx: None,
        })
        .await
        .unwrap();
    let left = Spec::new("left", &log).calls("bottom");
    let right = Spec::new("right", &log).calls("bottom");
    let bottom = Spec::new("bottom", &log);
    start_plugins(&manager, &[&left, &right, &bottom]).await;

    assert_eq!(
        manager.execute("top", "x".into()).await.unwrap(),
        "left>bottom: x | right>bottom: x"
    );
    assert_eq!(manager.info("bottom").unwrap().stats.calls, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_errors_are_counted_per_plugin() {
    let log = Log::new();
    let manager = PluginManager::new("stats");
    let counted = Spec::new("counted", &log);
    let idle = Spec::new("idle", &log);
    start_plugins(&manager, &[&counted, &idle]).await;

    for input in ["a", "fail", "b", "fail", "c"] {
        let _ = manager.execute("counted", input.into()).await;
    }
    // Refused before reaching the plugin: not a call of it.
    manager.stop("counted").await.unwrap();
    assert!(manager.execute("counted", "d".into()).await.is_err());

    let listed = manager.list();
    assert_eq!(listed.len(), 2);
    let counted = listed.iter().find(|i| i.metadata.id == "counted").unwrap();
    assert_eq!(counted.stats.calls, 5);
    assert_eq!(counted.stats.errors, 2);
    assert_eq!(counted.stats.panics, 0);
    assert_eq!(counted.stats.timeouts, 0);
    assert_eq!(counted.stats.restarts, 0);
    assert!(counted.stats.max_latency >= counted.stats.mean_latency);
    let idle = listed.iter().find(|i| i.metadata.id == "idle").unwrap();
    assert_eq!(idle.stats.calls, 0);
    assert_eq!(idle.stats.errors, 0);
}

#[test]
fn every_execute_has_a_span_and_per_plugin_metrics() {
    common::capture::run(|captured| async move {
        let log = Log::new();
        let manager = PluginManager::new("observed");
        let watched = Spec::new("watched", &log).panics_on("boom");
        start_plugins(&manager, &[&watched]).await;

        assert!(manager.execute("watched", "x".into()).await.is_ok());
        assert!(manager.execute("watched", "fail".into()).await.is_err());
        assert!(manager.execute("watched", "boom".into()).await.is_err());
        assert_eq!(
            manager.execute("watched", "ping".into()).await.unwrap(),
            "pong watched#1"
        );

        let labels = "{manager=observed,plugin=watched}";
        let counter = |name: &str| {
            captured
                .counters
                .lock()
                .unwrap()
                .get(&format!("{name}{labels}"))
                .copied()
                .unwrap_or(0)
        };
        assert_eq!(counter("bilayer_plugin_calls_total"), 4);
        assert_eq!(
            counter("bilayer_plugin_errors_total"),
            2,
            "the error and the panic"
        );
        assert_eq!(counter("bilayer_plugin_restarts_total"), 1);
        let latencies = captured
            .histograms
            .lock()
            .unwrap()
            .get(&format!("bilayer_plugin_execute_seconds{labels}"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(latencies.len(), 4, "one latency sample per call");
        assert!(
            latencies.iter().all(|s| *s >= 0.0 && *s < 5.0),
            "{latencies:?}"
        );

        // Spans close when the actor drops them, just after answering: wait for all four.
        let outcomes = || {
            captured
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.get("span").map(String::as_str) == Some("plugin.execute"))
                .filter(|s| s.get("plugin").map(String::as_str) == Some("watched"))
                .map(|s| {
                    assert!(s.contains_key("micros"), "span without a duration: {s:?}");
                    s.get("outcome").cloned().unwrap_or_default()
                })
                .collect::<Vec<_>>()
        };
        common::wait_until("the four execute spans closed", || outcomes().len() == 4).await;
        assert_eq!(outcomes(), ["ok", "error", "panic", "ok"]);
    });
}
