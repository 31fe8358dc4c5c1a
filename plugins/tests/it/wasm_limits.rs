//! Every limit is installed and tested with a hostile module: a memory cap (growth refused,
//! host unharmed), a CPU deadline by epoch (an infinite loop ends within the deadline plus a
//! small margin), fuel, the wasm stack, the output size and the instance pool; traps are
//! errors naming the trap; and the same plugin serves the next call normally after each.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bilayer_plugins::wasm_runtime::{
    InstanceMode, WasmConfig, WasmEngine, WasmLimits, WasmPlugin, WasmRuntime,
};
use bilayer_plugins::PluginError;

use crate::cpu_bound;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wasm")
        .join(name)
}

fn limit_of(err: &PluginError) -> (&str, &str) {
    match err {
        PluginError::LimitExceeded { limit, detail } => (limit, detail),
        other => panic!("expected a limit error, got {other:?}"),
    }
}

fn runtime_error(err: &PluginError) -> (&str, &str) {
    match err {
        PluginError::Runtime { location, message } => (location, message),
        other => panic!("expected a runtime error, got {other:?}"),
    }
}

fn traps(mode: InstanceMode, limits: WasmLimits) -> WasmPlugin {
    WasmPlugin::from_file(fixture("traps.wat"))
        .unwrap()
        .with_limits(limits)
        .with_instance_mode(mode)
}

#[test]
fn a_memory_bomb_is_stopped_at_the_cap_and_the_host_is_fine() {
    let _cpu = cpu_bound::one_at_a_time();
    let cap = 2 << 20;
    let plugin = WasmPlugin::from_file(fixture("memory_bomb.wat"))
        .unwrap()
        .with_limits(WasmLimits::default().max_memory_bytes(cap));
    for _ in 0..3 {
        let err = plugin.execute_sync("{}").unwrap_err();
        let (limit, detail) = limit_of(&err);
        assert_eq!(limit, "max_memory_bytes");
        assert!(detail.contains("memory_bomb"), "{detail}");
        assert!(detail.contains(&format!("cap of {cap} bytes")), "{detail}");
        assert!(
            detail.contains("unreachable"),
            "the symptom is kept: {detail}"
        );
        assert!(err.is_plugin_fault());
    }
    // The host and other plugins carry on.
    let other = WasmPlugin::from_file(fixture("uppercase.wat")).unwrap();
    assert_eq!(other.execute_sync("fine").unwrap(), "FINE");
}

#[test]
fn a_module_whose_initial_memory_is_over_the_cap_fails_to_instantiate() {
    let plugin = WasmPlugin::from_file(fixture("big_memory.wat"))
        .unwrap()
        .with_limits(WasmLimits::default().max_memory_bytes(1 << 20));
    let err = plugin.execute_sync("{}").unwrap_err();
    let (limit, detail) = limit_of(&err);
    assert_eq!(limit, "max_memory_bytes");
    assert!(detail.contains("4194304 bytes"), "{detail}");

    let roomy = plugin.with_limits(WasmLimits::default().max_memory_bytes(8 << 20));
    assert_eq!(roomy.execute_sync("{}").unwrap(), "");
}

#[test]
fn an_infinite_loop_times_out_within_the_deadline_plus_a_margin() {
    let _cpu = cpu_bound::one_at_a_time();
    let timeout = Duration::from_millis(200);
    let plugin = WasmPlugin::from_file(fixture("infinite_loop.wat"))
        .unwrap()
        .with_limits(WasmLimits::default().timeout(timeout));
    let started = Instant::now();
    let err = plugin.execute_sync("{}").unwrap_err();
    let elapsed = started.elapsed();
    let (limit, detail) = limit_of(&err);
    assert_eq!(limit, "timeout");
    assert!(detail.contains("infinite_loop"), "{detail}");
    assert!(detail.contains("200ms"), "{detail}");
    assert!(elapsed >= timeout, "stopped early: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_does_not_stall_other_tasks() {
    let _cpu = cpu_bound::one_at_a_time_async().await;
    let runtime = WasmRuntime::new().unwrap();
    let plugin = WasmPlugin::from_file(fixture("infinite_loop.wat"))
        .unwrap()
        .with_limits(WasmLimits::default().timeout(Duration::from_millis(400)));
    runtime.register(plugin).await.unwrap();

    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = {
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let started = Instant::now();
    let err = runtime.execute("infinite_loop", "{}").await.unwrap_err();
    assert_eq!(limit_of(&err).0, "timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    ticker.abort();
    assert!(
        ticks.load(Ordering::Relaxed) >= 5,
        "other tasks were stalled"
    );
}

#[test]
fn fuel_stops_a_loop_deterministically_on_a_metering_engine() {
    let _cpu = cpu_bound::one_at_a_time();
    let engine =
        WasmEngine::new(WasmConfig::default().fuel_metering(true).pool_instances(8)).unwrap();
    let plugin = WasmPlugin::compile_file(&engine, fixture("infinite_loop.wat"))
        .unwrap()
        .with_limits(WasmLimits::default().fuel(100_000));
    let started = Instant::now();
    let err = plugin.execute_sync("{}").unwrap_err();
    let (limit, detail) = limit_of(&err);
    assert_eq!(limit, "fuel");
    assert!(detail.contains("100000 units"), "{detail}");
    assert!(started.elapsed() < Duration::from_secs(1));

    // Enough fuel for honest work.
    let honest = WasmPlugin::compile_file(&engine, fixture("uppercase.wat"))
        .unwrap()
        .with_limits(WasmLimits::default().fuel(100_000));
    assert_eq!(honest.execute_sync("abc").unwrap(), "ABC");
    // Too little fuel for the same work fails the same way every time.
    let starved = honest.with_limits(WasmLimits::default().fuel(50));
    for _ in 0..3 {
        assert_eq!(
            limit_of(&starved.execute_sync("abcdefghijklmnop").unwrap_err()).0,
            "fuel"
        );
    }
}

#[test]
fn fuel_on_an_engine_without_metering_is_refused_with_what_to_do() {
    let plugin = WasmPlugin::from_file(fixture("uppercase.wat"))
        .unwrap()
        .with_limits(WasmLimits::default().fuel(1_000));
    let err = plugin.check_link().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PluginError::Config(_)), "{err:?}");
    assert!(text.contains("fuel_metering(true)"), "{text}");
}

fn assert_traps_are_named_and_the_plugin_recovers(mode: InstanceMode) {
    let plugin = traps(
        mode,
        WasmLimits::default().timeout(Duration::from_millis(300)),
    );
    let ok = |plugin: &WasmPlugin| assert_eq!(plugin.execute_sync("E").unwrap(), "ok");
    ok(&plugin);

    let err = plugin.execute_sync("U").unwrap_err();
    let (location, message) = runtime_error(&err);
    assert!(
        location.contains("`traps`") && location.contains("`execute`"),
        "{location}"
    );
    assert!(message.contains("wasm trap"), "{message}");
    assert!(message.contains("unreachable"), "{message}");
    ok(&plugin);

    let err = plugin.execute_sync("O").unwrap_err();
    assert!(
        runtime_error(&err)
            .1
            .contains("out of bounds memory access"),
        "{err}"
    );
    ok(&plugin);

    let err = plugin.execute_sync("Z").unwrap_err();
    assert!(
        runtime_error(&err).1.contains("integer divide by zero"),
        "{err}"
    );
    ok(&plugin);

    let err = plugin.execute_sync("R").unwrap_err();
    assert_eq!(limit_of(&err).0, "max_wasm_stack");
    ok(&plugin);

    let err = plugin.execute_sync("X").unwrap_err();
    assert!(
        runtime_error(&err)
            .1
            .contains("region the guest does not own"),
        "{err}"
    );
    ok(&plugin);

    let err = plugin.execute_sync("M").unwrap_err();
    assert_eq!(limit_of(&err).0, "max_memory_bytes");
    ok(&plugin);

    let err = plugin.execute_sync("I").unwrap_err();
    assert_eq!(limit_of(&err).0, "timeout");
    ok(&plugin);

    for err in [
        plugin.execute_sync("U").unwrap_err(),
        plugin.execute_sync("I").unwrap_err(),
    ] {
        assert!(err.is_plugin_fault(), "{err:?}");
    }
    ok(&plugin);
}

#[test]
fn traps_are_errors_naming_the_trap_and_the_next_call_works_fresh_instances() {
    assert_traps_are_named_and_the_plugin_recovers(InstanceMode::FreshPerCall);
}

#[test]
fn traps_are_errors_naming_the_trap_and_the_next_call_works_reused_instance() {
    assert_traps_are_named_and_the_plugin_recovers(InstanceMode::Reuse);
}

#[test]
fn an_output_over_the_cap_is_refused() {
    let plugin = traps(
        InstanceMode::FreshPerCall,
        WasmLimits::default().max_output_bytes(1_000),
    );
    let err = plugin.execute_sync("H").unwrap_err();
    let (limit, detail) = limit_of(&err);
    assert_eq!(limit, "max_output_bytes");
    assert!(detail.contains("65536 bytes"), "{detail}");

    let roomy = plugin.with_limits(WasmLimits::default());
    assert_eq!(roomy.execute_bytes(b"H").unwrap().len(), 65536);
}

#[test]
fn a_full_instance_pool_is_a_limit_naming_pool_instances() {
    let engine = WasmEngine::new(WasmConfig::default().pool_instances(2)).unwrap();
    assert!(engine.uses_pooling());
    let reused: Vec<WasmPlugin> = (0..3)
        .map(|_| {
            WasmPlugin::compile_file(&engine, fixture("counter.wat"))
                .unwrap()
                .with_instance_mode(InstanceMode::Reuse)
        })
        .collect();
    assert_eq!(reused[0].execute_sync("").unwrap(), "1");
    assert_eq!(reused[1].execute_sync("").unwrap(), "1");
    let err = reused[2].execute_sync("").unwrap_err();
    let (limit, detail) = limit_of(&err);
    assert_eq!(limit, "pool_instances");
    assert!(detail.contains("WasmConfig::pool_instances"), "{detail}");

    // Freeing a slot (unloading a reused instance) lets the next call through.
    drop(reused.into_iter().next());
    let fresh = WasmPlugin::compile_file(&engine, fixture("counter.wat")).unwrap();
    assert_eq!(fresh.execute_sync("").unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_through_the_runtime_too() {
    let runtime = WasmRuntime::with_config(
        WasmConfig::default().pool_instances(16).default_limits(
            WasmLimits::default()
                .max_memory_bytes(1 << 20)
                .timeout(Duration::from_millis(200)),
        ),
    )
    .unwrap();
    runtime
        .register(runtime.load_file(fixture("traps.wat")).unwrap())
        .await
        .unwrap();
    let plugin = runtime.plugin("traps").unwrap();
    assert_eq!(plugin.limits().max_memory_bytes, 1 << 20);

    let err = runtime.execute("traps", "M").await.unwrap_err();
    assert_eq!(limit_of(&err).0, "max_memory_bytes");
    let started = Instant::now();
    let err = runtime.execute("traps", "I").await.unwrap_err();
    assert_eq!(limit_of(&err).0, "timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(runtime.execute("traps", "E").await.unwrap(), "ok");
}
