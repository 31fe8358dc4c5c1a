//! Which version a rollback goes to, and the replay of the messages the failing version failed
//! (issue 21 item 10), with real files and real notify: after good saves each serving messages,
//! a throwing save goes back to the last good one (not to the version the run started with); a
//! version that failed before it was replaced is not a rollback target; under load through an
//! agent system a bad save costs no message; a message that fails on both versions is
//! dead-lettered once, with the rolled-back version's reason; a failure no rollback follows is
//! answered with its error once its hold runs out.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bilayer::hot_reload::{HotReloadConfig, HotReloadManager, ReloadEvent, ReloadStrategy};
use bilayer::prelude::*;
use bilayer::rhai_runtime::RhaiPlugin;
use serde_json::{json, Value};

use crate::hot_reload_support::{
    counting_script, ended_reload, rhai_version, until, Rig, Scratch, PATIENCE,
};

fn debounced() -> HotReloadConfig {
    HotReloadConfig::new().with_strategy(ReloadStrategy::Debounced(Duration::from_millis(150)))
}

/// A Rhai entry script that throws on every call.
const THROWING: &str = "fn run(input) {\n    throw \"this save is broken\";\n}\nrun\n";

/// The `RolledBack` event among `events`: (from, to, replayed).
fn rolled_back(events: &[ReloadEvent]) -> (String, String, u32) {
    events
        .iter()
        .find_map(|e| match e {
            ReloadEvent::RolledBack {
                from_version,
                to_version,
                replayed,
                ..
            } => Some((from_version.clone(), to_version.clone(), *replayed)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no rollback among {events:#?}"))
}

/// Callers that keep executing `id` until `done`, each answer's `v` recorded; a failed call
/// fails the test.
fn spawn_callers(
    plugins: &PluginManager,
    id: &'static str,
    callers: usize,
    done: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<u64>>> {
    (0..callers)
        .map(|caller| {
            let (plugins, done) = (plugins.clone(), done.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !done.load(Ordering::Acquire) {
                    let answer = plugins
                        .execute(id, "{}".to_string())
                        .await
                        .unwrap_or_else(|e| {
                            panic!("call {} of caller {caller} failed: {e}", seen.len())
                        });
                    let answer: Value = serde_json::from_str(&answer).unwrap();
                    seen.push(
                        answer["v"]
                            .as_u64()
                            .expect("every answer names its version"),
                    );
                }
                seen
            })
        })
        .collect()
}

/// Calls `id` until `n` answers came from version `v` (other callers may be calling too).
async fn served_by(rig: &Rig, id: &str, v: u64, n: usize) {
    let mut from_v = 0;
    let deadline = Instant::now() + PATIENCE;
    while from_v < n {
        assert!(
            Instant::now() < deadline,
            "version {v} never served {n} calls"
        );
        if rig.call(id, "{}").await["v"] == v {
            from_v += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_save_after_good_ones_rolls_back_to_the_last_good_one_and_loses_no_call() {
    const GOOD_SAVES: u32 = 5;
    // The default policy: 3 failures tolerated within 30 s, so every save below lands while
    // the one before it is still on probation.
    let mut rig = Rig::start("last-good", debounced(), &[("p.rhai", &counting_script(0))]).await;
    let mut supervision = rig.plugins.supervision_events();
    let done = Arc::new(AtomicBool::new(false));
    let callers = spawn_callers(&rig.plugins, "p", 8, &done);

    for v in 1..=GOOD_SAVES {
        rig.dir.write("p.rhai", &counting_script(v));
        let seen = rig.reload_of("p").await;
        assert!(
            matches!(seen.last(), Some(ReloadEvent::ReloadCompleted { .. })),
            "{seen:#?}"
        );
        served_by(&rig, "p", u64::from(v), 200).await;
    }
    let last_good = rhai_version(&counting_script(GOOD_SAVES));

    rig.dir.write("p.rhai", THROWING);
    let seen = rig
        .until("the rollback", |e| {
            matches!(e, ReloadEvent::RolledBack { .. })
        })
        .await;
    let (from, to, replayed) = rolled_back(&seen);
    assert_eq!(from, rhai_version(THROWING));
    assert_eq!(
        to, last_good,
        "rolled back to the last good save, not to the version the run started with"
    );
    assert_eq!(
        replayed, 4,
        "the 3 failures tolerated and the one past them are run again"
    );
    assert_eq!(rig.plugins.version("p"), Some(last_good.clone()));
    served_by(&rig, "p", u64::from(GOOD_SAVES), 200).await;

    done.store(true, Ordering::Release);
    let mut calls = 0;
    for caller in callers {
        let seen = caller.await.unwrap();
        calls += seen.len();
        assert!(seen.iter().all(|v| *v <= u64::from(GOOD_SAVES)), "{seen:?}");
    }
    println!("{calls} calls from the callers, none failed");
    tokio::time::timeout(PATIENCE, async {
        loop {
            match supervision.recv().await {
                Ok(SupervisorEvent::RolledBack { to_version, .. }) => {
                    break assert_eq!(to_version, last_good);
                }
                Ok(_) => continue,
                Err(e) => panic!("supervision events ended: {e}"),
            }
        }
    })
    .await
    .expect("the supervisor reports the rollback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_failed_before_it_was_replaced_is_not_a_rollback_target() {
    // No hold: each failure is answered at once, so one caller can walk through the steps.
    let config = debounced()
        .with_max_attempts(1)
        .with_replay_hold(Duration::ZERO);
    let mut rig = Rig::start("not-proved", config, &[("p.rhai", &counting_script(1))]).await;
    rig.call("p", "{}").await;

    // Version 2 serves, and fails one call (within what its policy tolerates).
    let flaky = "fn run(input) {\n    if input.fail == true { throw \"version 2 fails this one\"; }\n    #{ v: 2 }\n}\nrun\n";
    rig.dir.write("p.rhai", flaky);
    rig.reload_of("p").await;
    assert_eq!(rig.call("p", "{}").await["v"], 2);
    let error = rig
        .plugins
        .execute("p", r#"{"fail": true}"#.into())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("version 2 fails this one"),
        "{error}"
    );
    rig.until("version 2's failure", |e| {
        matches!(e, ReloadEvent::ReloadFailed { attempt: 1, .. })
    })
    .await;
    assert_eq!(rig.call("p", "{}").await["v"], 2);

    // Replaced by a version that throws: back to version 1, the last that served without a
    // fault.
    rig.dir.write("p.rhai", THROWING);
    let seen = rig.reload_of("p").await;
    assert!(
        matches!(seen.last(), Some(ReloadEvent::ReloadCompleted { .. })),
        "{seen:#?}"
    );
    for _ in 0..2 {
        let _ = rig.plugins.execute("p", "{}".into()).await;
    }
    let seen = rig
        .until("the rollback", |e| {
            matches!(e, ReloadEvent::RolledBack { .. })
        })
        .await;
    let (_, to, _) = rolled_back(&seen);
    assert_eq!(to, rhai_version(&counting_script(1)));
    assert_eq!(rig.call("p", "{}").await["v"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_no_rollback_follows_is_answered_with_its_error_once_its_hold_runs_out() {
    let hold = Duration::from_millis(400);
    let config = debounced().with_replay_hold(hold);
    let mut rig = Rig::start("hold", config, &[("p.rhai", &counting_script(1))]).await;
    let flaky = "fn run(input) {\n    if input.fail == true { throw \"version 2 fails this one\"; }\n    #{ v: 2 }\n}\nrun\n";
    rig.dir.write("p.rhai", flaky);
    rig.reload_of("p").await;

    let started = Instant::now();
    let error = rig
        .plugins
        .execute("p", r#"{"fail": true}"#.into())
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(error, PluginError::Runtime { .. }), "{error}");
    assert!(
        waited >= hold - Duration::from_millis(50),
        "held for a rollback that did not come: answered after {waited:?}"
    );
    assert_eq!(rig.call("p", "{}").await["v"], 2, "no rollback");
    let rest = rig.barrier().await;
    assert!(
        !rest
            .iter()
            .any(|e| matches!(e, ReloadEvent::RolledBack { .. })),
        "{rest:#?}"
    );
}

/// An agent system `intake → worker` whose agents' scripts are in `dir`, and hot reload on
/// that directory.
async fn reloading_system(
    dir: &Scratch,
    worker: &str,
    config: HotReloadConfig,
) -> (AgentSystem, HotReloadManager) {
    dir.write(
        "intake.rhai",
        "fn intake(msg) {\n    msg.next_agent = \"worker\";\n    msg\n}\n\nintake\n",
    );
    dir.write("worker.rhai", worker);
    let system = AgentSystem::builder()
        .agent(
            "intake",
            RhaiPlugin::from_file(dir.file("intake.rhai")).unwrap(),
        )
        .agent(
            "worker",
            RhaiPlugin::from_file(dir.file("worker.rhai")).unwrap(),
        )
        .build()
        .await
        .unwrap();
    let hot = HotReloadManager::new(dir.path(), config.with_add_new_files(false))
        .with_target(system.manager().clone());
    (system, hot)
}

/// A worker agent script answering `#{ v: V, n: msg.n }`.
fn worker(v: u32) -> String {
    format!("fn worker(msg) {{\n    #{{ v: {v}, n: msg.n }}\n}}\n\nworker\n")
}

const THROWING_WORKER: &str = "fn worker(msg) {\n    throw \"this save is broken\";\n}\n\nworker\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_through_an_agent_system_a_bad_save_costs_no_message() {
    let dir = Scratch::new("replay-load");
    let (system, hot) = reloading_system(&dir, &worker(0), debounced()).await;
    let mut events = hot.events();
    hot.start().await.unwrap();
    let mut outcomes = system.outcome_stream().unwrap();

    // One producer submits without waiting for outcomes; the consumer counts what each
    // version answered.
    let done = Arc::new(AtomicBool::new(false));
    let by_version: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    // How many outcomes the consumer waits for, once the producer has finished.
    let expected = Arc::new(AtomicU64::new(u64::MAX));
    let producer = {
        let (system, done) = (system.clone(), done.clone());
        tokio::spawn(async move {
            let mut submitted = HashSet::new();
            let mut n = 0u64;
            while !done.load(Ordering::Acquire) {
                submitted.insert(system.submit(json!({ "n": n })).await);
                n += 1;
                if n.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
            submitted
        })
    };
    let consumer = {
        let (by_version, expected) = (by_version.clone(), expected.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while (seen.len() as u64) < expected.load(Ordering::Acquire) {
                let outcome =
                    match tokio::time::timeout(Duration::from_millis(50), outcomes.recv()).await {
                        Ok(Some(outcome)) => outcome,
                        Ok(None) => break,
                        Err(_) => continue,
                    };
                if outcome.status == OutcomeStatus::Ok {
                    let v = outcome.output.as_ref().unwrap()["v"].as_u64().unwrap();
                    by_version[v as usize].fetch_add(1, Ordering::Relaxed);
                }
                seen.push(outcome);
            }
            seen
        })
    };
    let wait_for = |v: usize, n: u64| {
        let by_version = by_version.clone();
        async move {
            tokio::time::timeout(PATIENCE, async {
                while by_version[v].load(Ordering::Relaxed) < n {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("version {v} never answered {n} messages"))
        }
    };

    wait_for(0, 1_000).await;
    dir.write("worker.rhai", &worker(1));
    until(&mut events, "version 1", |e| ended_reload(e, "worker")).await;
    wait_for(1, 1_000).await;
    dir.write("worker.rhai", THROWING_WORKER);
    let seen_events = until(&mut events, "the rollback", |e| {
        matches!(e, ReloadEvent::RolledBack { .. })
    })
    .await;
    let served_before = by_version[1].load(Ordering::Relaxed);
    wait_for(1, served_before + 1_000).await;
    done.store(true, Ordering::Release);

    let submitted = producer.await.unwrap();
    expected.store(submitted.len() as u64, Ordering::Release);
    let seen = tokio::time::timeout(PATIENCE, consumer)
        .await
        .unwrap_or_else(|_| panic!("outcomes missing: {:?}", system.totals()))
        .unwrap();
    let (_, to, replayed) = rolled_back(&seen_events);
    assert_eq!(to, rhai_version(&worker(1)));
    assert_eq!(replayed, 4, "3 tolerated failures and the one past them");
    assert_eq!(
        system.dead_letter_count(),
        0,
        "{:#?}",
        system.dead_letters()
    );
    hot.stop().await;
    system.shutdown().await.unwrap();

    let mut answered = HashSet::new();
    for outcome in &seen {
        assert_eq!(outcome.status, OutcomeStatus::Ok, "{outcome:?}");
        assert!(
            answered.insert(outcome.input),
            "input {} answered twice",
            outcome.input
        );
        let n = outcome.output.as_ref().unwrap()["n"].as_u64().unwrap();
        assert_eq!(
            outcome.input,
            n + 1,
            "each input answered with its own message"
        );
    }
    assert_eq!(answered, submitted, "every input exactly one outcome");
    println!(
        "{} inputs, {replayed} replayed after the rollback, answers by version: {:?}",
        seen.len(),
        by_version
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_fails_on_both_versions_is_dead_lettered_once_with_its_reason() {
    let dir = Scratch::new("replay-both");
    let picky = "fn worker(msg) {\n    if msg.poison == true { throw \"version 1 refuses poison\"; }\n    #{ v: 1, n: msg.n }\n}\n\nworker\n";
    // One failure tolerated; held long enough for the next message to trigger the rollback
    // however slow the machine.
    let config = debounced().with_max_attempts(1).with_replay_hold(PATIENCE);
    let (system, hot) = reloading_system(&dir, picky, config).await;
    let mut events = hot.events();
    hot.start().await.unwrap();
    assert_eq!(
        system.send(json!({ "n": 1 })).await.status,
        OutcomeStatus::Ok
    );

    dir.write("worker.rhai", THROWING_WORKER);
    until(&mut events, "the throwing version", |e| {
        ended_reload(e, "worker")
    })
    .await;

    // The poison message fails on the new version and is held...
    let poison = {
        let system = system.clone();
        tokio::spawn(async move { system.send(json!({ "n": 2, "poison": true })).await })
    };
    until(&mut events, "the first failure", |e| {
        matches!(e, ReloadEvent::ReloadFailed { attempt: 1, .. })
    })
    .await;
    // ...the next one fails too, which rolls the version back: both run again on version 1.
    let plain = system.send(json!({ "n": 3 })).await;
    assert_eq!(plain.status, OutcomeStatus::Ok, "{plain:?}");
    assert_eq!(plain.output.as_ref().unwrap()["v"], 1);

    let poison = tokio::time::timeout(PATIENCE, poison)
        .await
        .expect("the poison message is answered")
        .unwrap();
    assert_eq!(poison.status, OutcomeStatus::DeadLetter, "{poison:?}");
    let reason = poison.reason.as_deref().unwrap();
    assert!(reason.contains("version 1 refuses poison"), "{reason}");
    let letters = system.dead_letters();
    assert_eq!(letters.len(), 1, "dead-lettered once: {letters:#?}");
    assert_eq!(letters[0].input, poison.input);
    assert_eq!(letters[0].reason, reason);
    let seen = until(&mut events, "the rollback", |e| {
        matches!(e, ReloadEvent::RolledBack { .. })
    })
    .await;
    assert_eq!(rolled_back(&seen).2, 2);
    assert_eq!(system.totals().dead_letter, 1);
    assert_eq!(system.totals().ok, 2);

    hot.stop().await;
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execute_that_fails_on_both_versions_gets_the_rolled_back_versions_error() {
    let picky = "fn run(input) {\n    if input.poison == true { throw \"version 1 refuses poison\"; }\n    #{ v: 1 }\n}\nrun\n";
    // The first failure rolls the version back.
    let config = debounced().with_max_attempts(0);
    let mut rig = Rig::start("both-execute", config, &[("p.rhai", picky)]).await;
    assert_eq!(rig.call("p", "{}").await["v"], 1);
    rig.dir.write("p.rhai", THROWING);
    rig.reload_of("p").await;

    let error = rig
        .plugins
        .execute("p", r#"{"poison": true}"#.into())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("version 1 refuses poison"),
        "{error}"
    );
    let seen = rig
        .until("the rollback", |e| {
            matches!(e, ReloadEvent::RolledBack { .. })
        })
        .await;
    assert_eq!(rolled_back(&seen).2, 1);
    assert_eq!(rig.call("p", "{}").await["v"], 1);
}
