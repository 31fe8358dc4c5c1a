//! Capabilities are deny by default and checked at link time: a module importing a host
//! function it was not granted fails to load with an error naming the capability; WASI and
//! unknown imports are refused the same way.

use std::path::PathBuf;

use bilayer_plugins::wasm_runtime::{Capability, WasmCapabilities, WasmPlugin, WasmRuntime};
use bilayer_plugins::{AgentPlugin, PluginContext, PluginError, PluginState};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wasm")
        .join(name)
}

fn config_message(err: PluginError) -> String {
    match err {
        PluginError::Config(message) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_grant_loading_fails_naming_every_capability_needed() {
    let mut plugin = WasmPlugin::from_file(fixture("host_probe.wat")).unwrap();
    assert!(plugin.capabilities().is_empty(), "deny by default");
    let message = config_message(
        plugin
            .load(&PluginContext::new("host_probe"))
            .await
            .unwrap_err(),
    );
    for capability in ["`log`", "`config`", "`state`", "`call_plugin`"] {
        assert!(
            message.contains(capability),
            "{capability} missing from: {message}"
        );
    }
    assert!(
        message.contains("`bilayer.state_set` (capability `state`)"),
        "{message}"
    );
    assert!(message.contains("host_probe"), "{message}");
    assert_eq!(plugin.state(), PluginState::Unloaded);

    // Calling it without loading is refused the same way.
    let message = config_message(plugin.execute_sync("Lx").unwrap_err());
    assert!(message.contains("not granted"), "{message}");
}

#[test]
fn a_partial_grant_names_only_what_is_missing() {
    let grant = WasmCapabilities::none()
        .grant(Capability::Log)
        .grant(Capability::Config)
        .grant(Capability::CallPlugin);
    let plugin = WasmPlugin::from_file(fixture("host_probe.wat"))
        .unwrap()
        .with_capabilities(grant);
    let message = config_message(plugin.check_link().unwrap_err());
    assert!(message.contains("capability `state`"), "{message}");
    assert!(!message.contains("capability `log`"), "{message}");
    assert!(
        message.contains("granted: log, config, call_plugin"),
        "{message}"
    );

    let plugin = plugin.with_capabilities(WasmCapabilities::all());
    plugin.check_link().unwrap();
    assert_eq!(plugin.execute_sync("Lok").unwrap(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_refuses_to_register_an_ungranted_module() {
    let runtime = WasmRuntime::new().unwrap();
    let err = runtime
        .register(WasmPlugin::from_file(fixture("host_probe.wat")).unwrap())
        .await
        .unwrap_err();
    assert!(config_message(err).contains("capability `log`"));
    assert!(!runtime.contains("host_probe"));
}

#[test]
fn a_module_needing_no_capability_runs_with_an_empty_grant() {
    let plugin = WasmPlugin::from_file(fixture("uppercase.wat")).unwrap();
    plugin.check_link().unwrap();
    assert_eq!(plugin.execute_sync("ok").unwrap(), "OK");
}

#[test]
fn wasi_imports_are_refused_naming_the_wasi_capability() {
    let plugin = WasmPlugin::from_file(fixture("wasi_hello.wat"))
        .unwrap()
        .with_capabilities(WasmCapabilities::all());
    let message = config_message(plugin.check_link().unwrap_err());
    assert!(message.contains("capability `wasi`"), "{message}");
    assert!(
        message.contains("wasi_snapshot_preview1.fd_write"),
        "{message}"
    );
    assert!(message.contains("wasm32-unknown-unknown"), "{message}");
}

#[test]
fn unknown_imports_are_refused_listing_what_exists() {
    let module = r#"(module
        (import "env" "abort" (func (param i32)))
        (import "bilayer" "open_file" (func (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) (i32.const 1024))
        (func (export "execute") (param i32 i32) (result i64) (i64.const 0)))"#;
    let plugin = WasmPlugin::from_bytes("sneaky", module)
        .unwrap()
        .with_capabilities(WasmCapabilities::all());
    let message = config_message(plugin.check_link().unwrap_err());
    assert!(message.contains("`env.abort`"), "{message}");
    assert!(message.contains("`bilayer.open_file`"), "{message}");
    assert!(message.contains("bilayer.call_plugin"), "{message}");
}

#[test]
fn a_host_import_with_the_wrong_signature_fails_to_link() {
    let module = r#"(module
        (import "bilayer" "log" (func (param i32)))
        (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) (i32.const 1024))
        (func (export "execute") (param i32 i32) (result i64) (i64.const 0)))"#;
    let plugin = WasmPlugin::from_bytes("mistyped", module)
        .unwrap()
        .with_capabilities(WasmCapabilities::none().grant(Capability::Log));
    let message = config_message(plugin.check_link().unwrap_err());
    assert!(message.contains("mistyped"), "{message}");
    assert!(
        message.contains("bilayer.log(level: i32, ptr: i32, len: i32)"),
        "{message}"
    );
}

#[test]
fn capabilities_parse_from_configuration_names() {
    let grant =
        WasmCapabilities::from_names(["log", "state", "call_plugin:db", "call_plugin:cache"])
            .unwrap();
    assert!(grant.allows(Capability::Log));
    assert!(grant.allows(Capability::State));
    assert!(!grant.allows(Capability::Config));
    assert!(grant.may_call("db") && grant.may_call("cache"));
    assert!(!grant.may_call("mailer"));
    assert_eq!(grant.to_string(), "log, state, call_plugin:cache|db");

    let any = WasmCapabilities::from_names(["call_plugin:db", "call_plugin"]).unwrap();
    assert!(any.may_call("anything"));

    let message = config_message(WasmCapabilities::from_names(["network"]).unwrap_err());
    assert!(
        message.contains("unknown WASM capability `network`"),
        "{message}"
    );
    assert!(message.contains("call_plugin"), "{message}");
    // `wasi` is a capability of its own (plugins/tests/it/wasm_wasi.rs), never part of `all()`.
    let wasi = WasmCapabilities::from_names(["wasi"]).unwrap();
    assert!(wasi.allows(Capability::Wasi));
    assert!(!WasmCapabilities::all().allows(Capability::Wasi));
}

#[test]
fn a_module_can_ask_for_capabilities_in_its_metadata_without_getting_them() {
    let module = r#"(module
        (import "bilayer" "log" (func $log (param i32 i32 i32)))
        (memory (export "memory") 1)
        (data (i32.const 8) "{\"id\":\"asker\",\"capabilities\":[\"log\"]}")
        (func (export "alloc") (param i32) (result i32) (i32.const 1024))
        (func (export "execute") (param i32 i32) (result i64)
          (call $log (i32.const 2) (i32.const 8) (i32.const 5))
          (i64.const 0))
        (func (export "bilayer_metadata") (result i64)
          (i64.or (i64.shl (i64.const 8) (i64.const 32)) (i64.const 37))))"#;
    let engine = bilayer_plugins::wasm_runtime::WasmEngine::shared().unwrap();
    let plugin = WasmPlugin::compile_bytes(&engine, "asker", module).unwrap();
    let requested = plugin
        .guest_metadata()
        .unwrap()
        .requested_capabilities()
        .unwrap();
    assert!(requested.allows(Capability::Log));
    // Asking grants nothing.
    assert!(plugin.check_link().is_err());
    // The host decides to grant what was asked.
    let plugin = plugin.with_capabilities(requested);
    assert_eq!(plugin.execute_sync("").unwrap(), "");
}
