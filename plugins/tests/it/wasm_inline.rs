//! The speculative inline path of `WasmPlugin::execute`: a call runs first on the calling
//! thread for a short slice and moves to a blocking thread when it needs longer or calls an
//! import with an effect. Proven here from the outside: a spinning or long guest never holds
//! the only async worker for more than the slice, a long guest still gets its result, an
//! effect (`call_plugin`, `log`) happens exactly once per call, and both paths give the same
//! answers, errors and warm-instance state.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bilayer_plugins::wasm_runtime::{
    Capability, InstanceMode, WasmCapabilities, WasmLimits, WasmPlugin,
};
use bilayer_plugins::{AgentPlugin, PluginCaller, PluginContext, PluginError};

use crate::cpu_bound;
use crate::test_hosts::CountingHost;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wasm")
        .join(name)
}

/// Spins one million loop iterations per input byte, then answers "done" (a compute-bound
/// guest whose length the test chooses).
const BUSY: &str = r#"(module
  (memory (export "memory") 1)
  (data (i32.const 8) "done")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
    (local $left i64)
    (local.set $left (i64.mul (i64.extend_i32_u (local.get $len)) (i64.const 1000000)))
    (block $out
      (loop $spin
        (br_if $out (i64.eqz (local.get $left)))
        (local.set $left (i64.sub (local.get $left) (i64.const 1)))
        (br $spin)))
    (i64.or (i64.shl (i64.const 8) (i64.const 32)) (i64.const 4))))"#;

async fn started(mut plugin: WasmPlugin, ctx: PluginContext) -> WasmPlugin {
    plugin.load(&ctx).await.unwrap();
    plugin.start().await.unwrap();
    plugin
}

/// Runs `work` as a task while another task wakes every millisecond, and returns the work's
/// result with the longest gap that task saw between two wake-ups. With one async worker both
/// tasks share it (the test's own future runs on the test thread, not on a worker).
async fn longest_stall<F>(work: F) -> (F::Output, Duration)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let longest = Arc::new(Mutex::new(Duration::ZERO));
    let watcher = {
        let longest = Arc::clone(&longest);
        tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let gap = last.elapsed();
                let mut longest = longest.lock().unwrap();
                *longest = (*longest).max(gap);
                last = Instant::now();
            }
        })
    };
    // Let the watcher start before the work can take the worker.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let output = tokio::spawn(work).await.unwrap();
    watcher.abort();
    let longest = *longest.lock().unwrap();
    (output, longest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_spinning_guest_holds_the_only_async_worker_for_at_most_its_slice() {
    let _cpu = cpu_bound::one_at_a_time_async().await;
    let mut plugin = started(
        WasmPlugin::from_file(fixture("infinite_loop.wat"))
            .unwrap()
            .with_limits(WasmLimits::default().timeout(Duration::from_millis(1500))),
        PluginContext::new("infinite_loop"),
    )
    .await;
    for _ in 0..2 {
        let began = Instant::now();
        let ((returned, result), stall) = longest_stall(async move {
            let result = plugin.execute("{}".to_string()).await;
            (plugin, result)
        })
        .await;
        plugin = returned;
        let err = result.unwrap_err();
        assert!(
            matches!(&err, PluginError::LimitExceeded { limit, .. } if limit == "timeout"),
            "{err:?}"
        );
        assert!(
            began.elapsed() >= Duration::from_millis(1500),
            "the full timeout ran"
        );
        // Inline for the whole timeout would stall the watcher 1.5 s; the slice is ~2-12 ms.
        assert!(
            stall < Duration::from_millis(400),
            "the async worker was held {stall:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_guest_longer_than_the_slice_gets_its_result_off_the_async_worker() {
    let _cpu = cpu_bound::one_at_a_time_async().await;
    let mut plugin = started(
        WasmPlugin::from_bytes("busy", BUSY)
            .unwrap()
            .with_limits(WasmLimits::default().timeout(Duration::from_secs(20))),
        PluginContext::new("busy"),
    )
    .await;
    // Find an input that spins for at least ~600 ms on this machine.
    let mut bytes = 16;
    loop {
        let began = Instant::now();
        assert_eq!(plugin.execute_sync(&"x".repeat(bytes)).unwrap(), "done");
        if began.elapsed() >= Duration::from_millis(600) || bytes >= 1 << 14 {
            break;
        }
        bytes *= 2;
    }
    let input = "x".repeat(bytes);
    let ((returned, result), stall) = longest_stall(async move {
        let result = plugin.execute(input).await;
        (plugin, result)
    })
    .await;
    plugin = returned;
    assert_eq!(result.unwrap(), "done");
    // Inline for the whole call would stall the watcher ≥ 600 ms; the slice is ~2-12 ms (the
    // rest is room for a loaded machine).
    assert!(
        stall < Duration::from_millis(300),
        "the async worker was held {stall:?} by a guest of ≥ 600 ms"
    );
    // Short calls after it still answer (inline again once the back-off has passed).
    for _ in 0..100 {
        assert_eq!(plugin.execute("x".to_string()).await.unwrap(), "done");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_plugin_from_a_guest_happens_exactly_once_per_call() {
    let host = Arc::new(CountingHost::default());
    let ctx =
        PluginContext::new("host_probe").with_caller(Arc::clone(&host) as Arc<dyn PluginCaller>);
    let plugin = WasmPlugin::from_file(fixture("host_probe.wat"))
        .unwrap()
        .with_capabilities(WasmCapabilities::all());
    let mut plugin = started(plugin, ctx).await;
    for i in 0..200 {
        let output = plugin.execute(format!("Pecho|{i}")).await.unwrap();
        assert_eq!(output, format!("echo:{i}"));
    }
    assert_eq!(host.calls.load(Ordering::SeqCst), 200);
}

/// Counts the `bilayer::wasm` events whose message is exactly `message`, process-wide (the
/// guest may log from a blocking thread, where a thread-local subscriber would miss it).
fn count_logged(message: &'static str) -> usize {
    static SEEN: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let layer = MessageLog(Arc::clone(&seen));
        tracing::subscriber::set_global_default(layer).expect("one global subscriber");
        seen
    });
    let seen = seen.lock().unwrap();
    seen.iter().filter(|m| *m == message).count()
}

struct MessageLog(Arc<Mutex<Vec<String>>>);

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for MessageLog {
    /// Only the guest's log: the subscriber is process-wide, and the other tests of the binary
    /// should not pay for events and spans it drops.
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "bilayer::wasm"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() == "bilayer::wasm" {
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0.lock().unwrap().push(message.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_log_line_is_logged_exactly_once_per_call() {
    assert_eq!(count_logged("inline-once"), 0);
    let plugin = WasmPlugin::from_file(fixture("host_probe.wat"))
        .unwrap()
        .with_capabilities(WasmCapabilities::all());
    let mut plugin = started(plugin, PluginContext::new("host_probe")).await;
    for _ in 0..150 {
        assert_eq!(
            plugin.execute("Linline-once".to_string()).await.unwrap(),
            ""
        );
    }
    assert_eq!(count_logged("inline-once"), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_give_the_same_answers_errors_and_warm_state() {
    let _cpu = cpu_bound::one_at_a_time_async().await;
    let mut uppercase = started(
        WasmPlugin::from_file(fixture("uppercase.wat")).unwrap(),
        PluginContext::new("uppercase"),
    )
    .await;
    let input = r#"{"order":"ord-1","note":"rush"}"#;
    let inline = uppercase.execute(input.to_string()).await.unwrap();
    let blocking = tokio::task::spawn_blocking({
        let plugin = WasmPlugin::from_file(fixture("uppercase.wat")).unwrap();
        move || plugin.execute_sync(input).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(inline, blocking);
    assert_eq!(inline, r#"{"ORDER":"ORD-1","NOTE":"RUSH"}"#);

    let mut traps = started(
        WasmPlugin::from_file(fixture("traps.wat")).unwrap(),
        PluginContext::new("traps"),
    )
    .await;
    for input in ["U", "O", "Z"] {
        let inline = traps.execute(input.to_string()).await.unwrap_err();
        let direct = WasmPlugin::from_file(fixture("traps.wat"))
            .unwrap()
            .execute_sync(input)
            .unwrap_err();
        assert_eq!(inline.to_string(), direct.to_string());
        assert_eq!(traps.execute("E".to_string()).await.unwrap(), "ok");
    }

    // A reused instance keeps counting across inline calls: an attempt that finishes never
    // costs the warm instance.
    let mut counter = started(
        WasmPlugin::from_file(fixture("counter.wat"))
            .unwrap()
            .with_instance_mode(InstanceMode::Reuse),
        PluginContext::new("counter"),
    )
    .await;
    for expected in 1..=500 {
        assert_eq!(
            counter.execute(String::new()).await.unwrap(),
            expected.to_string()
        );
    }
}

/// Counts its calls in a global and logs each one; answers with as many `x` as calls so far.
const LOGGING_COUNTER: &str = r#"(module
  (import "bilayer" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "call")
  (global $calls (mut i32) (i32.const 0))
  (func (export "alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "execute") (param i32 i32) (result i64)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (call $log (i32.const 4) (i32.const 0) (i32.const 4))
    (memory.fill (i32.const 16) (i32.const 120) (global.get $calls))
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.extend_i32_u (global.get $calls)))))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_instance_that_logs_keeps_its_warm_state_on_every_call() {
    // Its calls would leave an inline attempt at `log`, dropping the warm instance each time;
    // such a plugin never tries the inline path.
    let mut plugin = started(
        WasmPlugin::from_bytes("logging_counter", LOGGING_COUNTER)
            .unwrap()
            .with_capabilities(WasmCapabilities::none().grant(Capability::Log))
            .with_instance_mode(InstanceMode::Reuse),
        PluginContext::new("logging_counter"),
    )
    .await;
    for expected in 1..=300 {
        let output = plugin.execute(String::new()).await.unwrap();
        assert_eq!(
            output.len(),
            expected,
            "the warm instance was lost before call {expected}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_call_waiting_for_a_busy_warm_instance_waits_off_the_async_worker() {
    // One shared plugin with one warm instance: a long call holds it on a blocking thread; a
    // second call must wait for it there, not on the only async worker.
    let plugin = Arc::new({
        let mut plugin = WasmPlugin::from_bytes("busy", BUSY)
            .unwrap()
            .with_instance_mode(InstanceMode::Reuse)
            .with_limits(WasmLimits::default().timeout(Duration::from_secs(20)));
        plugin.load(&PluginContext::new("busy")).await.unwrap();
        plugin.start().await.unwrap();
        plugin
    });
    let mut bytes = 16;
    loop {
        let began = Instant::now();
        assert_eq!(plugin.execute_sync(&"x".repeat(bytes)).unwrap(), "done");
        if began.elapsed() >= Duration::from_millis(1200) || bytes >= 1 << 15 {
            break;
        }
        bytes *= 2;
    }
    let long = {
        let plugin = Arc::clone(&plugin);
        let input = "x".repeat(bytes);
        tokio::spawn(async move { plugin.call(input).await })
    };
    // Let the long call leave its inline slice and take the warm instance on a blocking thread.
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Many short calls at once: the first ones after the long call's attempt left go straight
    // to a blocking thread (the back-off), the later ones try the inline path and find the
    // warm instance busy.
    let (shorts, stall) = longest_stall({
        let plugin = Arc::clone(&plugin);
        async move {
            let calls: Vec<_> = (0..40)
                .map(|_| {
                    let plugin = Arc::clone(&plugin);
                    tokio::spawn(async move { plugin.call("x".to_string()).await })
                })
                .collect();
            let mut outputs = Vec::new();
            for call in calls {
                outputs.push(call.await.unwrap());
            }
            outputs
        }
    })
    .await;
    assert!(shorts.into_iter().all(|output| output.unwrap() == "done"));
    assert_eq!(long.await.unwrap().unwrap(), "done");
    // Waiting on the worker would stall it for the rest of the long call (≥ 1.1 s); handing
    // 40 calls to blocking threads costs tens of milliseconds.
    assert!(
        stall < Duration::from_millis(500),
        "the async worker was held {stall:?} waiting for the warm instance"
    );
}
