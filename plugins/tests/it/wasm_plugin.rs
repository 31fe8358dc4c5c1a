//! WASM plugins end to end: JSON in and out through `WasmPlugin` directly, as an `AgentPlugin`,
//! and through `WasmRuntime`; identity and versions; the guest's error bit; compile and ABI
//! errors; fresh versus reused instances.

use std::path::PathBuf;
use std::sync::Arc;

use bilayer_plugins::wasm_runtime::{
    InstanceMode, WasmConfig, WasmEngine, WasmLimits, WasmPlugin, WasmRuntime,
};
use bilayer_plugins::{AgentPlugin, PluginContext, PluginError, PluginState, PluginType};
use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wasm")
        .join(name)
}

fn uppercase() -> WasmPlugin {
    WasmPlugin::from_file(fixture("uppercase.wat")).unwrap()
}

#[test]
fn uppercase_round_trips_json_through_the_plugin_directly() {
    let plugin = uppercase();
    let input = json!({"greeting": "hello wasm", "n": 42, "list": ["a", "b"]}).to_string();
    let output = plugin.execute_sync(&input).unwrap();
    let output: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(
        output,
        json!({"GREETING": "HELLO WASM", "N": 42, "LIST": ["A", "B"]})
    );
}

#[test]
fn any_bytes_pass_through_execute_bytes() {
    let plugin = uppercase();
    let output = plugin.execute_bytes(&[b'a', 0, 0xff, b'z']).unwrap();
    assert_eq!(output, vec![b'A', 0, 0xff, b'Z']);
    let err = plugin.execute_sync("\u{0}").map(drop);
    assert!(err.is_ok(), "NUL is valid UTF-8: {err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uppercase_through_the_wasm_runtime() {
    let runtime = WasmRuntime::new().unwrap();
    let plugin = WasmPlugin::from_file(fixture("uppercase.wat")).unwrap();
    runtime.register(plugin).await.unwrap();
    assert_eq!(runtime.plugin_ids(), vec!["uppercase".to_string()]);

    let input = json!({"id": "ord-123", "status": "new"}).to_string();
    let output = runtime.execute("uppercase", input).await.unwrap();
    assert_eq!(
        output,
        json!({"ID": "ORD-123", "STATUS": "NEW"}).to_string()
    );

    let value = runtime
        .execute_json("uppercase", json!({"k": "v"}))
        .await
        .unwrap();
    assert_eq!(value, json!({"K": "V"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_on_one_plugin_each_get_their_answer() {
    let runtime = Arc::new(WasmRuntime::new().unwrap());
    runtime.register(uppercase()).await.unwrap();
    let calls = (0..64).map(|i| {
        let runtime = Arc::clone(&runtime);
        tokio::spawn(async move {
            let out = runtime
                .execute("uppercase", format!("{{\"call\":\"n{i}\"}}"))
                .await
                .unwrap();
            assert_eq!(out, format!("{{\"CALL\":\"N{i}\"}}"));
        })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap();
    }
}

#[test]
fn identity_comes_from_metadata_and_the_version_is_the_content_hash() {
    let plugin = uppercase();
    let meta = plugin.metadata();
    assert_eq!(meta.id, "uppercase");
    assert_eq!(meta.name, "Uppercase");
    assert_eq!(meta.plugin_type, PluginType::Wasm);
    assert_eq!(
        meta.description,
        "Uppercases the ASCII letters of its input"
    );
    assert!(meta.has_capability("wasm"));
    assert_eq!(meta.version.len(), 16, "FNV-1a 64 hex: {}", meta.version);
    assert_eq!(uppercase().metadata().version, meta.version);

    let guest = plugin.guest_metadata().unwrap();
    assert_eq!(guest.version.as_deref(), Some("1.0.0"));
    assert!(guest.capabilities.is_empty());

    // No metadata export: the file stem names the plugin.
    let counter = WasmPlugin::from_file(fixture("counter.wat")).unwrap();
    assert_eq!(counter.metadata().id, "counter");
    assert!(counter.guest_metadata().is_none());
    assert_ne!(counter.metadata().version, meta.version);
}

#[test]
fn from_bytes_uses_the_given_id_over_the_metadata() {
    let bytes = std::fs::read(fixture("uppercase.wat")).unwrap();
    let plugin = WasmPlugin::from_bytes("shout", &bytes).unwrap();
    assert_eq!(plugin.metadata().id, "shout");
    assert_eq!(plugin.metadata().version, uppercase().metadata().version);
    assert_eq!(plugin.execute_sync("abc").unwrap(), "ABC");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_plugin_lifecycle_works_like_any_plugin() {
    let mut plugin = uppercase();
    assert_eq!(plugin.state(), PluginState::Unloaded);
    plugin.load(&PluginContext::new("uppercase")).await.unwrap();
    assert_eq!(plugin.state(), PluginState::Loaded);
    plugin.init_plugin().await.unwrap();
    plugin.start().await.unwrap();
    assert_eq!(plugin.state(), PluginState::Running);

    assert_eq!(
        plugin.execute("\"quiet\"".into()).await.unwrap(),
        "\"QUIET\""
    );
    let value = plugin.execute_json(json!({"a": [1, "b"]})).await.unwrap();
    assert_eq!(value, json!({"A": [1, "B"]}));

    plugin.stop().await.unwrap();
    plugin.unload().await.unwrap();
    assert_eq!(plugin.state(), PluginState::Unloaded);

    let boxed: Box<dyn AgentPlugin> = Box::new(plugin);
    assert!(boxed.as_any().downcast_ref::<WasmPlugin>().is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn execute_also_works_on_a_current_thread_runtime() {
    let mut plugin = uppercase();
    plugin.load(&PluginContext::new("uppercase")).await.unwrap();
    plugin.start().await.unwrap();
    assert_eq!(plugin.execute("\"x\"".into()).await.unwrap(), "\"X\"");
}

#[test]
fn an_error_the_guest_reports_is_an_execution_error_and_the_plugin_goes_on() {
    let plugin = uppercase();
    let err = plugin.execute_sync("").unwrap_err();
    match &err {
        PluginError::Execution(message) => {
            assert!(message.contains("uppercase"), "{message}");
            assert!(message.contains("empty input"), "{message}");
        }
        other => panic!("expected an execution error, got {other:?}"),
    }
    assert!(!err.is_plugin_fault());
    assert_eq!(plugin.execute_sync("ok").unwrap(), "OK");
}

#[test]
fn a_fresh_instance_per_call_forgets_guest_globals_and_a_reused_one_keeps_them() {
    let fresh = WasmPlugin::from_file(fixture("counter.wat")).unwrap();
    assert_eq!(fresh.instance_mode(), InstanceMode::FreshPerCall);
    for _ in 0..3 {
        assert_eq!(fresh.execute_sync("").unwrap(), "1");
    }

    let reused = WasmPlugin::from_file(fixture("counter.wat"))
        .unwrap()
        .with_instance_mode(InstanceMode::Reuse);
    let counts: Vec<String> = (0..12).map(|_| reused.execute_sync("").unwrap()).collect();
    assert_eq!(counts[..3], ["1", "2", "3"]);
    assert_eq!(counts[11], "12");
}

#[test]
fn reused_instances_give_buffers_back_through_dealloc() {
    // 5000 calls of ~100 bytes in and out would need ~1 MB without `dealloc`; the cap is 128 KiB.
    let plugin = uppercase()
        .with_instance_mode(InstanceMode::Reuse)
        .with_limits(WasmLimits::default().max_memory_bytes(128 << 10));
    let input = format!("{{\"padding\":\"{}\"}}", "x".repeat(90));
    for _ in 0..5000 {
        assert_eq!(plugin.execute_sync(&input).unwrap(), input.to_uppercase());
    }
}

#[test]
fn a_syntax_error_is_a_compile_error_with_line_and_column() {
    let err = WasmPlugin::from_bytes(
        "broken",
        "(module\n  (func (export \"execute\")\n    (i32.add))\n  (oops))",
    )
    .unwrap_err();
    match err {
        PluginError::Compile { location, message } => {
            assert!(location.starts_with("broken:"), "{location}");
            assert_eq!(
                location.matches(':').count(),
                2,
                "file:line:column: {location}"
            );
            assert!(!message.is_empty());
        }
        other => panic!("expected a compile error, got {other:?}"),
    }

    let err = WasmPlugin::from_bytes("garbage", [0u8, 0x61, 0x73, 0x6d, 9, 9, 9, 9]).unwrap_err();
    assert!(matches!(err, PluginError::Compile { .. }), "{err:?}");

    let err = WasmPlugin::from_file(fixture("does_not_exist.wasm")).unwrap_err();
    match err {
        PluginError::Io(message) => assert!(message.contains("does_not_exist.wasm"), "{message}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn a_module_missing_an_abi_export_is_refused_at_load_naming_it() {
    let no_alloc = r#"(module
        (memory (export "memory") 1)
        (func (export "execute") (param i32 i32) (result i64) (i64.const 0)))"#;
    let err = WasmPlugin::from_bytes("no_alloc", no_alloc).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PluginError::Config(_)), "{err:?}");
    assert!(text.contains("alloc: (i32) -> i32"), "{text}");
    assert!(text.contains("docs/wasm-abi.md"), "{text}");

    let wrong_execute = r#"(module
        (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) (i32.const 0))
        (func (export "execute") (param i32) (result i32) (i32.const 0)))"#;
    let text = WasmPlugin::from_bytes("wrong", wrong_execute)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("exports `execute` as `(i32) -> i32`"),
        "{text}"
    );

    let no_memory = r#"(module
        (func (export "alloc") (param i32) (result i32) (i32.const 0))
        (func (export "execute") (param i32 i32) (result i64) (i64.const 0)))"#;
    let text = WasmPlugin::from_bytes("no_memory", no_memory)
        .unwrap_err()
        .to_string();
    assert!(text.contains("`memory`"), "{text}");
}

#[test]
fn metadata_that_is_not_json_is_refused() {
    let module = r#"(module
        (memory (export "memory") 1)
        (data (i32.const 8) "not json")
        (func (export "alloc") (param i32) (result i32) (i32.const 1024))
        (func (export "execute") (param i32 i32) (result i64) (i64.const 0))
        (func (export "bilayer_metadata") (result i64)
          (i64.or (i64.shl (i64.const 8) (i64.const 32)) (i64.const 8))))"#;
    let text = WasmPlugin::from_bytes("bad_meta", module)
        .unwrap_err()
        .to_string();
    assert!(text.contains("bilayer_metadata"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_refuses_duplicates_and_unknown_ids() {
    let runtime = WasmRuntime::new().unwrap();
    runtime.register(uppercase()).await.unwrap();
    let err = runtime.register(uppercase()).await.unwrap_err();
    assert_eq!(err, PluginError::AlreadyRegistered("uppercase".into()));
    let err = runtime.execute("nope", "{}").await.unwrap_err();
    assert_eq!(err, PluginError::NotFound("nope".into()));

    runtime.unregister("uppercase").unwrap();
    assert!(!runtime.contains("uppercase"));
    runtime.register(uppercase()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_compiled_elsewhere_is_recompiled_on_the_runtime_engine() {
    let runtime = WasmRuntime::with_config(WasmConfig::default().pool_instances(8)).unwrap();
    let plugin = uppercase();
    assert!(plugin.engine().same(&WasmEngine::shared().unwrap()));
    runtime.register(plugin).await.unwrap();
    let registered = runtime.plugin("uppercase").unwrap();
    assert!(registered.engine().same(runtime.engine()));
    assert_eq!(
        runtime.execute("uppercase", "\"a\"").await.unwrap(),
        "\"A\""
    );

    // Loaded on the runtime's engine directly: nothing to recompile.
    let direct = runtime.load_file(fixture("counter.wat")).unwrap();
    assert!(direct.engine().same(runtime.engine()));
}

#[test]
fn the_engine_without_pooling_works_the_same() {
    let engine = WasmEngine::new(WasmConfig::default().pooling(false)).unwrap();
    assert!(!engine.uses_pooling());
    let plugin = WasmPlugin::compile_file(&engine, fixture("uppercase.wat")).unwrap();
    assert_eq!(plugin.execute_sync("x").unwrap(), "X");
}

/// The native twin of `fnv_rounds.wat`.
fn fnv_rounds(rounds: u32, data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for _ in 0..rounds {
        for byte in data {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

#[test]
fn guest_compute_matches_the_native_implementation_on_generated_inputs() {
    let plugin = WasmPlugin::from_file(fixture("fnv_rounds.wat")).unwrap();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for case in 0..300 {
        let rounds = (next() % 4) as u32;
        let len = if case < 5 {
            case
        } else {
            (next() % 3000) as usize
        };
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let mut input = rounds.to_le_bytes().to_vec();
        input.extend_from_slice(&data);
        let output = plugin.execute_bytes(&input).unwrap();
        assert_eq!(
            output,
            fnv_rounds(rounds, &data).to_le_bytes(),
            "case {case}: rounds {rounds}, {len} bytes"
        );
    }
}
