//! The `bilayer` host imports really read and write guest memory: `log` into tracing with the
//! plugin id, `config_get` from the plugin's config, `state_get`/`state_set` on the host-owned
//! state store (surviving fresh instances and a new plugin given the same store),
//! `call_plugin` through the host's `PluginCaller`; and a bad pointer is an error, not a crash.
//!
//! The fixture `host_probe.wat` picks an operation from the first input byte (see its header).

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bilayer_plugins::wasm_runtime::{
    Capability, WasmCapabilities, WasmLimits, WasmPlugin, WasmRuntime,
};
use bilayer_plugins::{AgentPlugin, PluginCaller, PluginContext, PluginError, PluginStateStore};
use serde_json::{json, Value};

use crate::scoped_subscriber;
use crate::test_hosts::FakeHost;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wasm")
        .join(name)
}

fn probe() -> WasmPlugin {
    WasmPlugin::from_file(fixture("host_probe.wat"))
        .unwrap()
        .with_capabilities(WasmCapabilities::all())
}

async fn loaded(ctx: PluginContext) -> WasmPlugin {
    let mut plugin = probe();
    plugin.load(&ctx).await.unwrap();
    plugin.start().await.unwrap();
    plugin
}

/// Records the events of target `bilayer::wasm`: level, `plugin` field, message.
#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<Vec<(tracing::Level, String, String)>>>);

#[derive(Default)]
struct Fields {
    plugin: String,
    message: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "plugin" {
            self.plugin = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "plugin" => self.plugin = format!("{value:?}"),
            _ => {}
        }
    }
}

impl tracing::Subscriber for LogCapture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() != "bilayer::wasm" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields.plugin, fields.message));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn log_goes_to_tracing_with_the_plugin_id_and_level() {
    let plugin = probe();
    let capture = LogCapture::default();
    scoped_subscriber::with_default(capture.clone(), || {
        assert_eq!(plugin.execute_sync("Lhello from the guest").unwrap(), "");
        assert_eq!(plugin.execute_sync("Wcareful ✓").unwrap(), "");
    });
    let events = capture.0.lock().unwrap().clone();
    assert_eq!(
        events,
        vec![
            (
                tracing::Level::INFO,
                "host_probe".to_string(),
                "hello from the guest".to_string()
            ),
            (
                tracing::Level::WARN,
                "host_probe".to_string(),
                "careful ✓".to_string()
            ),
        ]
    );
}

#[test]
fn long_log_messages_are_truncated() {
    let plugin = WasmPlugin::from_file(fixture("host_probe.wat"))
        .unwrap()
        .with_capabilities(WasmCapabilities::all())
        .with_limits(bilayer_plugins::wasm_runtime::WasmLimits::default().max_log_bytes(10));
    let capture = LogCapture::default();
    scoped_subscriber::with_default(capture.clone(), || {
        plugin
            .execute_sync(&format!("L{}", "x".repeat(100)))
            .unwrap();
    });
    let events = capture.0.lock().unwrap().clone();
    assert_eq!(events[0].2, format!("{}…", "x".repeat(10)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_get_reads_keys_pointers_and_the_whole_config() {
    let config = json!({"greeting": "hi", "limits": {"max": 3}, "nothing": null});
    let plugin = loaded(PluginContext::new("host_probe").with_config(config.clone())).await;

    assert_eq!(plugin.execute_sync("Cgreeting").unwrap(), "\"hi\"");
    assert_eq!(plugin.execute_sync("C/limits/max").unwrap(), "3");
    assert_eq!(plugin.execute_sync("Cnothing").unwrap(), "null");
    assert_eq!(
        plugin.execute_sync("Cmissing").unwrap(),
        "",
        "absent is empty"
    );
    let whole: Value = serde_json::from_str(&plugin.execute_sync("C").unwrap()).unwrap();
    assert_eq!(whole, config);

    // No config at all: the whole config is absent.
    let bare = loaded(PluginContext::new("host_probe")).await;
    assert_eq!(bare.execute_sync("C").unwrap(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_persists_across_calls_fresh_instances_and_a_new_plugin_on_the_same_store() {
    let store = PluginStateStore::new();
    let plugin = loaded(PluginContext::new("host_probe").with_state(store.clone())).await;

    assert_eq!(
        plugin.execute_sync("Gcount").unwrap(),
        "",
        "absent is empty"
    );
    assert_eq!(plugin.execute_sync("Scount=1").unwrap(), "");
    assert_eq!(plugin.execute_sync("Gcount").unwrap(), "1");
    assert_eq!(
        plugin
            .execute_sync(r#"Sprofile={"name":"Ada","tags":["x"]}"#)
            .unwrap(),
        ""
    );
    assert_eq!(store.get("count"), Some(json!(1)));
    assert_eq!(
        store.get("profile"),
        Some(json!({"name": "Ada", "tags": ["x"]}))
    );

    // The host can write too, and the guest sees it.
    store.set("count", json!(41)).unwrap();
    assert_eq!(plugin.execute_sync("Gcount").unwrap(), "41");

    // A new plugin instance (a restart, a reload) given the same store sees the same state.
    drop(plugin);
    let again = loaded(PluginContext::new("host_probe").with_state(store.clone())).await;
    assert_eq!(again.execute_sync("Gcount").unwrap(), "41");
    let whole: Value = serde_json::from_str(&again.execute_sync("G").unwrap()).unwrap();
    assert_eq!(
        whole,
        json!({"count": 41, "profile": {"name": "Ada", "tags": ["x"]}})
    );

    // An empty value deletes the key.
    assert_eq!(again.execute_sync("Scount=").unwrap(), "");
    assert_eq!(store.get("count"), None);

    // A value that is not JSON is refused with an error the guest receives (and returns).
    let err = again.execute_sync("Scount=not json").unwrap_err();
    match err {
        PluginError::Execution(message) => assert!(message.contains("not JSON"), "{message}"),
        other => panic!("expected the guest's error, got {other:?}"),
    }
    assert_eq!(store.get("count"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_set_past_the_stores_limit_is_refused_with_the_limit_named() {
    let store = PluginStateStore::with_max_bytes(40);
    let plugin = loaded(PluginContext::new("host_probe").with_state(store.clone())).await;
    assert_eq!(plugin.execute_sync(r#"Sa="0123456789""#).unwrap(), "");
    let err = plugin
        .execute_sync(r#"Sb="01234567890123456789012345678901234567890""#)
        .unwrap_err();
    match err {
        PluginError::Execution(message) => {
            assert!(message.contains("max_state_bytes = 40"), "{message}")
        }
        other => panic!("expected the guest's error, got {other:?}"),
    }
    assert_eq!(store.get("b"), None, "the state is unchanged");
    assert_eq!(store.get("a"), Some(json!("0123456789")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_plugin_goes_through_the_host_and_returns_output_or_error() {
    let host = Arc::new(FakeHost::default());
    let ctx =
        PluginContext::new("host_probe").with_caller(Arc::clone(&host) as Arc<dyn PluginCaller>);
    let mut plugin = loaded(ctx).await;

    let output = plugin.execute("Pecho|{\"q\":1}".to_string()).await.unwrap();
    assert_eq!(output, "echo:{\"q\":1}");

    let err = plugin.execute("Pbroken|x".to_string()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PluginError::Execution(_)), "{err:?}");
    assert!(text.contains("the database is down"), "{text}");

    let err = plugin.execute("Pmissing|x".to_string()).await.unwrap_err();
    assert!(
        err.to_string().contains("`missing` is not registered"),
        "{err}"
    );

    // The call chain the host saw is the caller's (empty here: a top-level call).
    assert!(host.chains.lock().unwrap().iter().all(Vec::is_empty));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_plugin_is_limited_to_the_granted_targets() {
    let host = Arc::new(FakeHost::default());
    let grant = WasmCapabilities::none()
        .grant(Capability::Log)
        .grant(Capability::Config)
        .grant(Capability::State)
        .grant_call_plugin_to(["echo"]);
    let mut plugin = WasmPlugin::from_file(fixture("host_probe.wat"))
        .unwrap()
        .with_capabilities(grant);
    let ctx =
        PluginContext::new("host_probe").with_caller(Arc::clone(&host) as Arc<dyn PluginCaller>);
    plugin.load(&ctx).await.unwrap();
    plugin.start().await.unwrap();

    assert_eq!(plugin.execute("Pecho|hi".into()).await.unwrap(), "echo:hi");
    let err = plugin.execute("Pbroken|hi".into()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("may not call `broken`"), "{text}");
    assert!(text.contains("limited to echo"), "{text}");
    assert_eq!(
        host.chains.lock().unwrap().len(),
        1,
        "the refused call never reached the host"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_plugin_through_the_runtime_with_a_context() {
    let runtime = WasmRuntime::new().unwrap();
    let host = Arc::new(FakeHost::default());
    let ctx = PluginContext::new("host_probe").with_caller(host as Arc<dyn PluginCaller>);
    runtime.register_with_context(probe(), ctx).await.unwrap();
    assert_eq!(
        runtime.execute("host_probe", "Pecho|ping").await.unwrap(),
        "echo:ping"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_plugin_without_a_host_is_an_error_for_the_guest() {
    let mut plugin = loaded(PluginContext::new("host_probe")).await;
    let err = plugin.execute("Pecho|x".into()).await.unwrap_err();
    assert!(
        err.to_string().contains("not hosted by a PluginManager"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_plugin_from_execute_sync_on_an_async_worker_does_not_panic_the_host() {
    let host = Arc::new(FakeHost::default());
    let ctx = PluginContext::new("host_probe").with_caller(host as Arc<dyn PluginCaller>);
    // Generous time: the refusal is a tokio panic caught in the host, and with RUST_BACKTRACE
    // set its hook captures a backtrace of this large test binary, which on a loaded machine
    // took longer than the default 1 s guest limit (seen twice with four builds running).
    let mut plugin = probe().with_limits(WasmLimits::default().timeout(Duration::from_secs(30)));
    plugin.load(&ctx).await.unwrap();
    plugin.start().await.unwrap();
    // Blocking on the runtime from one of its workers is refused by tokio; the guest gets an error.
    let err = plugin.execute_sync("Pecho|x").unwrap_err();
    assert!(
        err.to_string().contains("cannot block this thread"),
        "{err}"
    );
    assert!(plugin.execute_sync("Gk").is_ok());
}

#[test]
fn a_pointer_outside_guest_memory_is_an_error_naming_the_import_not_a_crash() {
    let plugin = probe();
    let err = plugin.execute_sync("B").unwrap_err();
    match &err {
        PluginError::Runtime { location, message } => {
            assert!(location.contains("bilayer.log"), "{location}");
            assert!(location.contains("host_probe"), "{location}");
            assert!(message.contains("outside the guest's memory"), "{message}");
            assert!(message.contains("0xffffff00"), "{message}");
        }
        other => panic!("expected a runtime error, got {other:?}"),
    }
    assert!(err.is_plugin_fault());

    let err = plugin.execute_sync("A").unwrap_err();
    assert!(err.to_string().contains("bilayer.state_get"), "{err}");
    assert!(err.to_string().contains("1000 bytes at 0xfde8"), "{err}");

    // The plugin is fine afterwards.
    assert_eq!(plugin.execute_sync("Scount=2").unwrap(), "");
    assert_eq!(plugin.execute_sync("Gcount").unwrap(), "2");
}
