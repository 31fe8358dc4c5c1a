//! The host's call timeout (`PluginContext::call_timeout`: a manager's execute timeout, an agent
//! system's hop timeout) bounds every call of a script or module, whatever the plugin's own
//! limits say (issue 21 item 5):
//!
//! - a WASM guest still running at it is stopped by its epoch deadline, and the call fails with
//!   `PluginError::Timeout`;
//! - a WASM call blocked in a host call (a WASI sleep) can be abandoned: the future of
//!   `WasmPlugin::call` is dropped when its caller's timeout fires and the caller goes on at
//!   once, while the blocked thread finishes on its own;
//! - a Rhai script is stopped at it, with an error that names the host's timeout;
//! - without a call timeout, the plugin's own limit applies as before.

use std::time::{Duration, Instant};

use bilayer_plugins::rhai_runtime::{RhaiConfig, RhaiPlugin};
use bilayer_plugins::wasm_runtime::{WasmCapabilities, WasmLimits, WasmPlugin};
use bilayer_plugins::{AgentPlugin, PluginContext, PluginError};

use crate::cpu_bound;

const SPINNER: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (loop $spin (br $spin))
    (i64.const 0)))"#;

/// Sleeps 3 s in WASI `poll_oneoff`: a host call no epoch interrupt stops. (The test's runtime
/// waits for its blocking threads when it is dropped, so the sleep is kept short.)
const WASI_SLEEPER: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (i64.store (i32.const 0) (i64.const 1))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3000000000))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll (i32.const 0) (i32.const 104) (i32.const 1) (i32.const 200)))
    (i64.const 0)))"#;

fn hosted(timeout: Option<Duration>) -> PluginContext {
    PluginContext::new("guest").with_call_timeout(timeout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_stops_at_the_hosts_call_timeout_not_its_own() {
    let _cpu = cpu_bound::one_at_a_time_async().await;
    let mut plugin = WasmPlugin::from_bytes("spin", SPINNER)
        .unwrap()
        .with_limits(WasmLimits::default().timeout(Duration::from_secs(60)));
    plugin
        .load(&hosted(Some(Duration::from_millis(200))))
        .await
        .unwrap();
    let started = Instant::now();
    let err = plugin.call("{}".to_string()).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, PluginError::Timeout { after, .. } if after == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(err.is_plugin_fault());
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");

    // The plugin's own, shorter limit still reports itself.
    let mut own = WasmPlugin::from_bytes("spin", SPINNER)
        .unwrap()
        .with_limits(WasmLimits::default().timeout(Duration::from_millis(100)));
    own.load(&hosted(Some(Duration::from_secs(60))))
        .await
        .unwrap();
    match own.call("{}".to_string()).await.unwrap_err() {
        PluginError::LimitExceeded { limit, .. } => assert_eq!(limit, "timeout"),
        other => panic!("expected the plugin's own timeout, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_blocked_in_wasi_is_abandoned_when_its_caller_stops_waiting() {
    let mut plugin = WasmPlugin::from_bytes("sleeper", WASI_SLEEPER)
        .unwrap()
        .with_capabilities(WasmCapabilities::from_names(&["wasi".to_string()]).unwrap());
    plugin
        .load(&hosted(Some(Duration::from_millis(200))))
        .await
        .unwrap();
    let started = Instant::now();
    let waited = tokio::time::timeout(Duration::from_millis(200), plugin.call("{}".into())).await;
    let elapsed = started.elapsed();
    assert!(waited.is_err(), "the call cannot finish: it sleeps 3 s");
    assert!(
        elapsed < Duration::from_secs(2),
        "the caller went on at its timeout, not when the sleep returned: {elapsed:?}"
    );
    // The worker that awaited the call was never blocked: this task still runs promptly.
    let ping = Instant::now();
    tokio::task::yield_now().await;
    assert!(ping.elapsed() < Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_stops_at_the_hosts_call_timeout_and_says_so() {
    let _cpu = cpu_bound::one_at_a_time_async().await;
    let config = RhaiConfig::default()
        .max_operations(u64::MAX)
        .timeout(Duration::from_secs(60));
    let source = "fn spin(x) { let i = 0; loop { i += 1; } }\n\nspin\n";
    let mut plugin = RhaiPlugin::from_source_with_config("spin", source, config.clone()).unwrap();
    plugin
        .load(&hosted(Some(Duration::from_millis(150))))
        .await
        .unwrap();
    let started = Instant::now();
    let err = plugin.execute("1".into()).await.unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        PluginError::LimitExceeded { limit, detail } => {
            assert_eq!(limit, "timeout");
            assert!(detail.contains("hop_timeout_ms"), "{detail}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");

    // Unloaded and loaded again without a host bound, its own timeout applies.
    plugin.unload().await.unwrap();
    let short = RhaiPlugin::from_source_with_config(
        "spin",
        source,
        config.timeout(Duration::from_millis(100)),
    )
    .unwrap();
    let mut short = short;
    short.load(&hosted(None)).await.unwrap();
    match short.execute("1".into()).await.unwrap_err() {
        PluginError::LimitExceeded { limit, detail } => {
            assert_eq!(limit, "timeout");
            assert!(detail.contains("RhaiConfig::timeout"), "{detail}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}
