//! Hot reload against real files and real notify: each way editors save (in place,
//! write-temp-then-rename, delete-and-recreate, bursts), saves that change nothing, new and
//! deleted files, state carried over (and migrated) or not, versions that never go live
//! (compile, self-test, migration failures), and rollback of a live version that keeps failing.
//! The reload under load is in tests/it/hot_reload_load.rs.

use std::time::Duration;

use bilayer::hot_reload::{DeleteAction, HotReloadConfig, ReloadEvent, ReloadStrategy};
use bilayer::prelude::*;
use bilayer::rhai_runtime::RhaiPlugin;
use serde_json::json;

use crate::hot_reload_support::{
    counting_script, ended_reload, mentions, rhai_version, until, wat_answering, Rig, Scratch,
    PATIENCE,
};

fn debounced(ms: u64) -> HotReloadConfig {
    HotReloadConfig::new().with_strategy(ReloadStrategy::Debounced(Duration::from_millis(ms)))
}

fn completed_version(events: &[ReloadEvent], id: &str) -> Option<String> {
    events.iter().find_map(|e| match e {
        ReloadEvent::ReloadCompleted {
            plugin_id, version, ..
        } if plugin_id == id => Some(version.clone()),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_registration_then_a_save_in_place_swaps_the_new_version_in() {
    let dir = Scratch::new("seed");
    let script = dir.file("order_processor.rhai");
    std::fs::copy("scripts/order_processor.rhai", &script).unwrap();
    let plugins = PluginManager::new("seed");
    plugins
        .register(RhaiPlugin::from_file(&script).unwrap())
        .await
        .unwrap();
    plugins.load_all().await.unwrap();
    plugins.start_all().await.unwrap();
    let v1 = plugins.version("order_processor").unwrap();

    let hot = HotReloadManager::new(dir.path(), debounced(150)).with_target(plugins.clone());
    let mut events = hot.events();
    hot.start().await.unwrap();
    assert!(
        events.try_recv().is_none(),
        "a file whose version already serves is only recorded at start"
    );

    let order = json!({"id": "ORD-123", "quantity": 5, "price": 250.0}).to_string();
    let before = plugins
        .execute("order_processor", order.clone())
        .await
        .unwrap();
    assert!(before.contains("pending_approval"), "{before}");

    let raised = std::fs::read_to_string(&script)
        .unwrap()
        .replace("1000.0", "2000.0");
    std::fs::write(&script, &raised).unwrap();
    let seen = until(&mut events, "the reload", |e| {
        ended_reload(e, "order_processor")
    })
    .await;
    assert!(
        matches!(seen[0], ReloadEvent::FileChanged { .. }),
        "{seen:#?}"
    );
    assert!(
        matches!(seen[1], ReloadEvent::ReloadStarted { .. }),
        "{seen:#?}"
    );
    let ReloadEvent::ReloadCompleted {
        version,
        previous_version,
        ..
    } = seen.last().unwrap().clone()
    else {
        panic!("expected a completed reload: {seen:#?}");
    };
    assert_eq!(previous_version, v1);
    assert_eq!(version, rhai_version(&raised));
    assert_eq!(plugins.version("order_processor"), Some(version));

    let after = plugins.execute("order_processor", order).await.unwrap();
    assert!(after.contains("\"approved\""), "{after}");
    hot.stop().await;
    assert!(events.recv().await.is_none(), "stop ends the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_temp_then_rename_and_delete_then_recreate_each_reload_once() {
    let mut rig = Rig::start("rename", debounced(150), &[("p.rhai", &counting_script(1))]).await;

    rig.dir.write_and_rename("p.rhai", &counting_script(2));
    let seen = rig.reload_of("p").await;
    assert_eq!(
        completed_version(&seen, "p"),
        Some(rhai_version(&counting_script(2))),
        "{seen:#?}"
    );
    assert_eq!(rig.call("p", "{}").await["v"], 2);

    // Some editors delete the file and write a new one.
    rig.dir.remove("p.rhai");
    rig.dir.write("p.rhai", &counting_script(3));
    let seen = rig.reload_of("p").await;
    assert_eq!(
        completed_version(&seen, "p"),
        Some(rhai_version(&counting_script(3)))
    );
    assert_eq!(rig.call("p", "{}").await["v"], 3);

    let rest = rig.barrier().await;
    let about_p: Vec<_> = rest.iter().filter(|e| mentions(e, "p")).collect();
    assert!(
        about_p.is_empty(),
        "one reload per save, no removal: {about_p:#?}"
    );
    assert!(rig.plugins.contains("p"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_gives_one_reload_after_the_debounce_window() {
    let mut rig = Rig::start("burst", debounced(2000), &[("p.rhai", &counting_script(1))]).await;
    for v in 2..=6 {
        rig.dir.write("p.rhai", &counting_script(v));
    }
    let seen = rig.reload_of("p").await;
    assert_eq!(
        completed_version(&seen, "p"),
        Some(rhai_version(&counting_script(6))),
        "the reload reads the last write: {seen:#?}"
    );
    let rest = rig.barrier().await;
    let reloads = seen
        .iter()
        .chain(&rest)
        .filter(|e| matches!(e, ReloadEvent::ReloadStarted { plugin_id, .. } if plugin_id == "p"))
        .count();
    assert_eq!(reloads, 1, "{seen:#?} {rest:#?}");
    assert_eq!(rig.call("p", "{}").await["v"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_that_changes_nothing_reloads_nothing() {
    let mut rig = Rig::start("noop", debounced(150), &[("p.rhai", &counting_script(1))]).await;
    let version = rig.plugins.version("p").unwrap();
    rig.dir.write("p.rhai", &counting_script(1));
    rig.dir.write_and_rename("p.rhai", &counting_script(1));
    let rest = rig.barrier().await;
    let about_p: Vec<_> = rest.iter().filter(|e| mentions(e, "p")).collect();
    assert!(about_p.is_empty(), "no-op saves: {about_p:#?}");
    assert_eq!(rig.plugins.version("p"), Some(version));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_adds_a_plugin_and_deleting_it_removes_the_plugin() {
    let mut rig = Rig::start("add", debounced(150), &[]).await;
    rig.dir.write("fresh.rhai", &counting_script(1));
    let seen = rig
        .until(
            "fresh added",
            |e| matches!(e, ReloadEvent::PluginAdded { plugin_id, .. } if plugin_id == "fresh"),
        )
        .await;
    assert!(
        matches!(seen[0], ReloadEvent::FileChanged { .. }),
        "{seen:#?}"
    );
    assert_eq!(rig.call("fresh", "{}").await["v"], 1);

    rig.dir.remove("fresh.rhai");
    rig.until(
        "fresh removed",
        |e| matches!(e, ReloadEvent::PluginRemoved { plugin_id, .. } if plugin_id == "fresh"),
    )
    .await;
    assert!(!rig.plugins.contains("fresh"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_file_can_stop_its_plugin_instead() {
    let config = debounced(150).with_on_delete(DeleteAction::Stop);
    let mut rig = Rig::start("stop", config, &[("p.rhai", &counting_script(1))]).await;
    rig.dir.remove("p.rhai");
    rig.until(
        "p stopped",
        |e| matches!(e, ReloadEvent::PluginRemoved { plugin_id, .. } if plugin_id == "p"),
    )
    .await;
    assert_eq!(rig.plugins.state("p"), Some(PluginState::Loaded));
    let refused = rig.plugins.execute("p", "{}".into()).await.unwrap_err();
    assert!(
        matches!(refused, PluginError::InvalidState { .. }),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserved_state_carries_over_and_the_new_version_can_migrate_it() {
    let mut rig = Rig::start("state", debounced(150), &[("p.rhai", &counting_script(1))]).await;
    for _ in 0..3 {
        rig.call("p", "{}").await;
    }
    let store = rig.plugins.state_store("p").unwrap();

    // Without a migration the state is handed over as it is.
    rig.dir.write("p.rhai", &counting_script(2));
    rig.reload_of("p").await;
    assert_eq!(rig.call("p", "{}").await, json!({"v": 2, "calls": 4}));
    assert!(rig.plugins.state_store("p").unwrap().same_store(&store));

    // `fn migrate(old_state)` reshapes it between two messages.
    let migrating = "fn migrate(old_state) {\n    #{ calls: old_state.calls * 10, schema: 2 }\n}\n\
                     fn run(input) {\n    state.calls += 1;\n    #{ v: 3, calls: state.calls, schema: state.schema }\n}\nrun\n";
    rig.dir.write("p.rhai", migrating);
    let seen = rig.reload_of("p").await;
    assert!(completed_version(&seen, "p").is_some(), "{seen:#?}");
    assert_eq!(
        rig.call("p", "{}").await,
        json!({"v": 3, "calls": 41, "schema": 2})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_preserved_state_the_new_version_starts_empty() {
    let config = debounced(150).with_preserve_state(false);
    let mut rig = Rig::start("fresh-state", config, &[("p.rhai", &counting_script(1))]).await;
    for _ in 0..3 {
        rig.call("p", "{}").await;
    }
    let old_store = rig.plugins.state_store("p").unwrap();
    rig.dir.write("p.rhai", &counting_script(2));
    rig.reload_of("p").await;
    assert_eq!(rig.call("p", "{}").await, json!({"v": 2, "calls": 1}));
    assert!(!rig.plugins.state_store("p").unwrap().same_store(&old_store));
    assert_eq!(
        old_store.get("calls"),
        Some(json!(3)),
        "the old store is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_fails_to_compile_validate_or_migrate_never_replaces_the_serving_one() {
    let mut rig = Rig::start("broken", debounced(150), &[("p.rhai", &counting_script(1))]).await;
    let serving = rig.plugins.version("p").unwrap();
    let broken = [
        "fn run(input) {\n    let x = ;\n}\nrun\n",
        "fn run(input) {\n    #{ v: 9 \n}\nrun\n",
        // A self-test that fails.
        "fn self_test() { false }\nfn run(input) { #{ v: 9 } }\nrun\n",
        // A migration that throws.
        "fn migrate(old) { throw \"cannot migrate\"; }\nfn run(input) { #{ v: 9 } }\nrun\n",
    ];
    for (n, text) in broken.iter().enumerate() {
        rig.dir.write("p.rhai", text);
        let seen = rig.reload_of("p").await;
        let Some(ReloadEvent::ReloadFailed { error, attempt, .. }) = seen.last() else {
            panic!("expected a failed reload: {seen:#?}");
        };
        assert_eq!(*attempt, n as u32 + 1, "consecutive failures are counted");
        if n == 0 {
            assert!(matches!(error, PluginError::Compile { .. }), "{error}");
            assert!(
                error.to_string().contains("p.rhai:2:"),
                "file:line:col: {error}"
            );
        }
        assert_eq!(rig.plugins.version("p"), Some(serving.clone()));
        assert_eq!(rig.call("p", "{}").await["v"], 1, "the old version serves");
    }
    assert_eq!(
        rig.plugins.state_store("p").unwrap().get("calls"),
        Some(json!(4)),
        "the failed migration left the state alone"
    );

    rig.dir.write("p.rhai", &counting_script(2));
    let seen = rig.reload_of("p").await;
    assert!(completed_version(&seen, "p").is_some(), "{seen:#?}");
    assert_eq!(rig.call("p", "{}").await["v"], 2);

    rig.dir.write("p.rhai", broken[0]);
    let seen = rig.reload_of("p").await;
    assert!(
        matches!(
            seen.last(),
            Some(ReloadEvent::ReloadFailed { attempt: 1, .. })
        ),
        "a success resets the count: {seen:#?}"
    );
}

/// A native plugin per file, for failures Rhai cannot produce: `ok TAG` answers
/// `{"tag": TAG}`, `panic TAG` panics on every call.
fn native_loader(path: &std::path::Path) -> PluginResult<Box<dyn AgentPlugin>> {
    let text = std::fs::read_to_string(path)?;
    let (mode, tag) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    let (mode, tag) = (mode.to_string(), tag.to_string());
    let id = path.file_stem().unwrap().to_str().unwrap();
    let metadata = PluginMetadata::new(id, id, PluginType::Tool).with_version(text.trim());
    Ok(Box::new(FnPlugin::with_metadata(
        metadata,
        move |_input: serde_json::Value| {
            if mode == "panic" {
                panic!("version {tag} is broken");
            }
            Ok(json!({ "tag": tag }))
        },
    )))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_version_that_panics_past_max_attempts_is_rolled_back() {
    let config = debounced(150)
        .with_max_attempts(2)
        .with_loader("native", native_loader);
    let mut rig = Rig::start("rollback", config, &[("n.native", "ok A")]).await;
    let mut supervision = rig.plugins.supervision_events();
    assert_eq!(rig.call("n", "{}").await["tag"], "A");

    rig.dir.write("n.native", "panic B");
    let seen = rig.reload_of("n").await;
    assert_eq!(completed_version(&seen, "n").as_deref(), Some("panic B"));

    // max_attempts = 2: two failures are tolerated, the third rolls back. One caller at a time,
    // so each tolerated failure is answered once its hold for a rollback runs out; the call
    // that rolls the version back is run again on the old version, which answers it.
    for attempt in 1..=3u32 {
        let answer = rig.plugins.execute("n", "{}".into()).await;
        if attempt < 3 {
            let error = answer.unwrap_err();
            assert!(matches!(error, PluginError::Panicked { .. }), "{error}");
        } else {
            let answer: serde_json::Value = serde_json::from_str(&answer.unwrap()).unwrap();
            assert_eq!(answer["tag"], "A", "run again on the old version");
        }
        let seen = rig
            .until(
                &format!("failure {attempt}"),
                |e| matches!(e, ReloadEvent::ReloadFailed { plugin_id, .. } if plugin_id == "n"),
            )
            .await;
        assert!(
            matches!(seen.last(), Some(ReloadEvent::ReloadFailed { attempt: a, .. }) if *a == attempt),
            "{seen:#?}"
        );
        if attempt < 3 {
            assert_eq!(rig.plugins.version("n").as_deref(), Some("panic B"));
        }
    }
    let seen = rig
        .until("the rollback", |e| {
            matches!(e, ReloadEvent::RolledBack { .. })
        })
        .await;
    let Some(ReloadEvent::RolledBack {
        from_version,
        to_version,
        ..
    }) = seen.last()
    else {
        unreachable!()
    };
    assert_eq!(
        (from_version.as_str(), to_version.as_str()),
        ("panic B", "ok A")
    );
    assert_eq!(rig.plugins.version("n").as_deref(), Some("ok A"));
    for _ in 0..5 {
        assert_eq!(
            rig.call("n", "{}").await["tag"],
            "A",
            "the old version serves"
        );
    }
    // The supervisor hears of it asynchronously.
    tokio::time::timeout(PATIENCE, async {
        loop {
            match supervision.recv().await {
                Ok(SupervisorEvent::RolledBack { to_version, .. }) => {
                    break assert_eq!(to_version, "ok A");
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
async fn a_script_that_throws_after_going_live_is_rolled_back_and_its_state_restored() {
    let config = debounced(150).with_max_attempts(1);
    let mut rig = Rig::start("throws", config, &[("p.rhai", &counting_script(1))]).await;
    rig.call("p", "{}").await;
    let throwing = "fn migrate(old) { #{ calls: -100 } }\n\
                    fn run(input) { throw \"version 2 is broken\"; }\nrun\n";
    rig.dir.write("p.rhai", throwing);
    rig.reload_of("p").await;
    let error = rig.plugins.execute("p", "{}".into()).await.unwrap_err();
    assert!(matches!(error, PluginError::Runtime { .. }), "{error}");
    // The second failure rolls the version back; the call is run again on version 1.
    assert_eq!(
        rig.call("p", "{}").await,
        json!({"v": 1, "calls": 2}),
        "the known-good version runs on the state it left, not the migrated one"
    );
    rig.until("the rollback", |e| {
        matches!(e, ReloadEvent::RolledBack { .. })
    })
    .await;
    assert_eq!(rig.call("p", "{}").await, json!({"v": 1, "calls": 3}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_rollback_a_failing_version_stays() {
    let config = debounced(150)
        .with_auto_rollback(false)
        .with_loader("native", native_loader);
    let mut rig = Rig::start("no-rollback", config, &[("n.native", "ok A")]).await;
    rig.dir.write("n.native", "panic B");
    rig.reload_of("n").await;
    for _ in 0..2 {
        rig.plugins.execute("n", "{}".into()).await.unwrap_err();
    }
    let rest = rig.barrier().await;
    assert!(
        !rest
            .iter()
            .any(|e| matches!(e, ReloadEvent::RolledBack { .. })),
        "{rest:#?}"
    );
    assert_eq!(rig.plugins.version("n").as_deref(), Some("panic B"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_modules_are_reloaded_like_scripts() {
    let mut rig = Rig::start("wasm", debounced(150), &[("w.wat", &wat_answering(1))]).await;
    assert_eq!(rig.call("w", "{}").await, json!({"v": 1}));

    rig.dir.write_and_rename("w.wat", &wat_answering(2));
    let seen = rig.reload_of("w").await;
    assert!(completed_version(&seen, "w").is_some(), "{seen:#?}");
    assert_eq!(rig.call("w", "{}").await, json!({"v": 2}));

    rig.dir.write("w.wat", "(module (func (export \"execute\"");
    let seen = rig.reload_of("w").await;
    assert!(
        matches!(seen.last(), Some(ReloadEvent::ReloadFailed { .. })),
        "{seen:#?}"
    );
    assert_eq!(rig.call("w", "{}").await, json!({"v": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_immediate_strategy_reloads_on_each_save() {
    let config = HotReloadConfig::new().with_strategy(ReloadStrategy::Immediate);
    let mut rig = Rig::start("immediate", config, &[("p.rhai", &counting_script(1))]).await;
    for v in 2..=4 {
        rig.dir.write("p.rhai", &counting_script(v));
        let expected = rhai_version(&counting_script(v));
        rig.until(
            &format!("version {v}"),
            |e| matches!(e, ReloadEvent::ReloadCompleted { version, .. } if *version == expected),
        )
        .await;
        assert_eq!(rig.call("p", "{}").await["v"], v);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manual_strategy_reloads_only_when_asked() {
    let config = HotReloadConfig::new().with_strategy(ReloadStrategy::Manual);
    let rig = Rig::start("manual", config, &[("p.rhai", &counting_script(1))]).await;
    rig.dir.write("p.rhai", &counting_script(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rig.call("p", "{}").await["v"],
        1,
        "nothing reloads on its own"
    );

    let outcome = rig.hot.reload_now(rig.dir.file("p.rhai")).await.unwrap();
    assert!(
        matches!(outcome, bilayer::hot_reload::ReloadOutcome::Reloaded { .. }),
        "{outcome:?}"
    );
    assert_eq!(rig.call("p", "{}").await["v"], 2);
    let again = rig.hot.reload_now(rig.dir.file("p.rhai")).await.unwrap();
    assert_eq!(again, bilayer::hot_reload::ReloadOutcome::Unchanged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_can_host_a_plugin_registered_under_another_id() {
    let dir = Scratch::new("alias");
    dir.write("triage.rhai", &counting_script(1));
    let plugins = PluginManager::new("alias");
    let script = RhaiPlugin::from_file(dir.file("triage.rhai")).unwrap();
    plugins
        .register_with(Box::new(script), PluginOptions::new().id("intake"))
        .await
        .unwrap();
    plugins.load_all().await.unwrap();
    plugins.start_all().await.unwrap();

    let config = debounced(150).with_plugin_id("triage.rhai", "intake");
    let hot = HotReloadManager::new(dir.path(), config).with_target(plugins.clone());
    let mut events = hot.events();
    hot.start().await.unwrap();
    assert!(
        events.try_recv().is_none(),
        "the serving version is recorded"
    );

    dir.write("triage.rhai", &counting_script(2));
    let seen = until(&mut events, "intake reloaded", |e| {
        ended_reload(e, "intake")
    })
    .await;
    assert!(completed_version(&seen, "intake").is_some(), "{seen:#?}");
    let answer = plugins.execute("intake", "{}".into()).await.unwrap();
    assert!(answer.contains("\"v\":2"), "{answer}");
    assert!(!plugins.contains("triage"));
}

/// A FIFO or an over-limit file appearing in a watched directory fails its reload with an error
/// naming the file, instead of blocking the reloader on `open` or reading gigabytes; the
/// reloader goes on serving later changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_or_an_over_limit_file_fails_its_reload_and_the_reloader_goes_on() {
    let mut rig = Rig::start("hostile", debounced(150), &[]).await;
    let made = std::process::Command::new("mkfifo")
        .arg(rig.dir.file("pipe.rhai"))
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let seen = rig.reload_of("pipe").await;
    let Some(ReloadEvent::ReloadFailed { error, .. }) = seen.last() else {
        panic!("expected a failed reload: {seen:#?}");
    };
    assert!(error.to_string().contains("a FIFO (named pipe)"), "{error}");

    std::fs::File::create(rig.dir.file("huge.wat"))
        .and_then(|file| file.set_len(bilayer::user_file::MAX_WASM_FILE_BYTES + 1))
        .unwrap();
    let seen = rig.reload_of("huge").await;
    let Some(ReloadEvent::ReloadFailed { error, .. }) = seen.last() else {
        panic!("expected a failed reload: {seen:#?}");
    };
    assert!(
        error.to_string().contains("larger than the 256 MiB limit"),
        "{error}"
    );
    rig.barrier().await;
}
