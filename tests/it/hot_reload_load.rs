//! Hot reload under load: while several tasks keep calling a plugin (thousands of calls per
//! second), its file is rewritten many times, some of them broken. Every call is answered
//! without error, every answer names exactly one version, each caller sees the versions in the
//! order they were saved and never a broken one, the events say what happened, and (Rhai) the
//! state written by every call of every version is all there at the end.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bilayer::hot_reload::{HotReloadConfig, ReloadEvent, ReloadStrategy};
use bilayer::prelude::*;

use crate::hot_reload_support::{counting_script, rhai_version, wat_answering, Rig};

const CALLERS: usize = 4;
/// Each caller makes at least this many calls, and goes on until the rewrites are done.
const MIN_CALLS_PER_CALLER: usize = 1_000;

/// What one caller saw: the version number in every answer, in order.
type Seen = Vec<u64>;

fn spawn_callers(
    plugins: &PluginManager,
    id: &'static str,
    done: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Seen>> {
    (0..CALLERS)
        .map(|caller| {
            let plugins = plugins.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let call = |n: usize| {
                    let plugins = plugins.clone();
                    async move {
                        let answer = plugins
                            .execute(id, format!("{{\"caller\": {caller}}}"))
                            .await
                            .unwrap_or_else(|e| panic!("call {n} of caller {caller} failed: {e}"));
                        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
                        answer["v"]
                            .as_u64()
                            .expect("every answer names its version")
                    }
                };
                let mut seen = Vec::new();
                while seen.len() < MIN_CALLS_PER_CALLER || !done.load(Ordering::Acquire) {
                    seen.push(call(seen.len()).await);
                }
                // Sent after the last reload completed: the last version answers it.
                seen.push(call(seen.len()).await);
                seen
            })
        })
        .collect()
}

/// Rewrites `file` with each text in turn, waiting for each reload to end; returns for each
/// rewrite whether it completed. Prints the median time from a change being seen (after the
/// debounce window) to the new version serving.
async fn rewrite_all(rig: &mut Rig, file: &str, id: &str, texts: &[(u32, String)]) -> Vec<bool> {
    let mut completed = Vec::new();
    let mut latencies = Vec::new();
    for (_, text) in texts {
        rig.dir.write(file, text);
        let seen = rig.reload_of(id).await;
        let last = seen.last().unwrap();
        if let ReloadEvent::ReloadCompleted { duration, .. } = last {
            latencies.push(*duration);
        }
        completed.push(matches!(last, ReloadEvent::ReloadCompleted { .. }));
        let kinds: Vec<_> = seen
            .iter()
            .filter(|e| e.plugin_id() == Some(id) || matches!(e, ReloadEvent::FileChanged { .. }))
            .collect();
        assert!(
            matches!(
                kinds[..],
                [
                    ReloadEvent::FileChanged { .. },
                    ReloadEvent::ReloadStarted { .. },
                    _
                ]
            ),
            "each rewrite: changed, started, then completed or failed: {seen:#?}"
        );
    }
    latencies.sort();
    println!(
        "change seen → new version serving, under load: median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies.last().unwrap()
    );
    completed
}

/// Checks what the callers saw: only good versions, in save order, none skipped backwards.
fn check_callers(seen: &[Seen], good: &[u64]) -> usize {
    let rank = |v: u64| {
        good.iter()
            .position(|g| *g == v)
            .unwrap_or_else(|| panic!("answer from version {v}, which never went live"))
    };
    let mut observed = BTreeSet::new();
    let mut total = 0;
    for calls in seen {
        total += calls.len();
        for pair in calls.windows(2) {
            assert!(
                rank(pair[0]) <= rank(pair[1]),
                "versions went backwards: {} then {}",
                pair[0],
                pair[1]
            );
        }
        observed.extend(calls.iter().copied());
    }
    assert_eq!(
        observed.last(),
        good.last(),
        "the last version serves at the end"
    );
    assert!(
        observed.len() >= 2,
        "the callers saw the versions change: {observed:?}"
    );
    println!("versions observed: {observed:?} of {good:?}");
    total
}

/// Versions 2..=21, every fourth one broken (5 broken).
fn rhai_rewrites() -> Vec<(u32, String)> {
    (2..=21)
        .map(|v| {
            let text = if v % 4 == 0 {
                format!("fn run(input) {{\n    #{{ v: {v} \n}}\nrun\n")
            } else {
                counting_script(v)
            };
            (v, text)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rhai_plugin_rewritten_20_times_under_load_loses_and_fails_nothing() {
    let config =
        HotReloadConfig::new().with_strategy(ReloadStrategy::Debounced(Duration::from_millis(200)));
    let mut rig = Rig::start("load-rhai", config, &[("p.rhai", &counting_script(1))]).await;
    let done = Arc::new(AtomicBool::new(false));
    let callers = spawn_callers(&rig.plugins, "p", &done);

    let rewrites = rhai_rewrites();
    let completed = rewrite_all(&mut rig, "p.rhai", "p", &rewrites).await;
    done.store(true, Ordering::Release);
    let mut seen = Vec::new();
    for caller in callers {
        seen.push(caller.await.unwrap());
    }

    let mut good = vec![1u64];
    for ((v, _), ok) in rewrites.iter().zip(&completed) {
        assert_eq!(*ok, v % 4 != 0, "version {v} completed: {ok}");
        if *ok {
            good.push(u64::from(*v));
        }
    }
    assert_eq!(good.len(), 16, "15 good rewrites and the first version");
    assert_eq!(
        rig.plugins.version("p"),
        Some(rhai_version(&counting_script(21)))
    );
    let total = check_callers(&seen, &good);
    let calls = rig.plugins.state_store("p").unwrap().get("calls");
    assert_eq!(
        calls,
        Some(serde_json::json!(total)),
        "every call of every version counted in the preserved state"
    );
    let stats = rig.plugins.info("p").unwrap().stats;
    assert_eq!(stats.errors, 0);
    println!("{total} calls over {} versions", good.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_plugin_rewritten_under_load_loses_and_fails_nothing() {
    let config =
        HotReloadConfig::new().with_strategy(ReloadStrategy::Debounced(Duration::from_millis(200)));
    let mut rig = Rig::start("load-wasm", config, &[("w.wat", &wat_answering(1))]).await;
    let done = Arc::new(AtomicBool::new(false));
    let callers = spawn_callers(&rig.plugins, "w", &done);

    // Versions 2..=21, every fourth one broken (5 broken), as for the Rhai plugin.
    let rewrites: Vec<(u32, String)> = (2..=21)
        .map(|v| {
            let text = if v % 4 == 0 {
                "(module (func (export \"execute\"".to_string()
            } else {
                wat_answering(v)
            };
            (v, text)
        })
        .collect();
    let completed = rewrite_all(&mut rig, "w.wat", "w", &rewrites).await;
    done.store(true, Ordering::Release);
    let mut seen = Vec::new();
    for caller in callers {
        seen.push(caller.await.unwrap());
    }
    let mut good = vec![1u64];
    for ((v, _), ok) in rewrites.iter().zip(&completed) {
        assert_eq!(*ok, v % 4 != 0, "version {v} completed: {ok}");
        if *ok {
            good.push(u64::from(*v));
        }
    }
    let total = check_callers(&seen, &good);
    assert_eq!(rig.plugins.info("w").unwrap().stats.errors, 0);
    println!("{total} calls over {} versions", good.len());
}
