//! WASI preview 1 behind the `wasi` capability: a module importing WASI loads only when granted
//! it, and then reaches exactly what its `WasiGrant` opens: the preopened directories
//! (read-only unless granted writable, no way out of them), the granted environment variables
//! (not the host's), the granted arguments. `proc_exit` and failed WASI calls are errors the
//! plugin survives, in both instance modes, with the pooling allocator, the memory limiter and
//! the epoch deadline still in force. The guest is `fixtures/wasm/wasi_files.wat`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bilayer_plugins::wasm_runtime::{
    Capability, InstanceMode, WasiGrant, WasmCapabilities, WasmLimits, WasmPlugin, WasmRuntime,
};
use bilayer_plugins::PluginError;

use crate::scoped_subscriber;

const MODES: [InstanceMode; 2] = [InstanceMode::FreshPerCall, InstanceMode::Reuse];

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wasm/wasi_files.wat")
}

fn plugin(grant: WasiGrant, mode: InstanceMode) -> WasmPlugin {
    WasmPlugin::from_file(fixture())
        .unwrap()
        .with_capabilities(WasmCapabilities::none().grant_wasi(grant))
        .with_instance_mode(mode)
}

/// A directory of its own under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bilayer-wasi-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn subdir(&self, name: &str) -> PathBuf {
        let dir = self.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn guest_error(err: PluginError) -> String {
    match err {
        PluginError::Execution(message) => message,
        other => panic!("expected an error the guest reported, got {other:?}"),
    }
}

#[test]
fn reads_a_file_from_a_granted_read_only_directory() {
    let scratch = Scratch::new("read");
    let data = scratch.subdir("data");
    write(&data.join("greeting.txt"), "hello from the host");
    for mode in MODES {
        let plugin = plugin(WasiGrant::new().preopen_dir(&data, "/data"), mode);
        assert_eq!(
            plugin.execute_sync("r3greeting.txt").unwrap(),
            "hello from the host",
            "{mode:?}"
        );
        // Again on the same plugin: a fresh context per store, or the reused one.
        assert_eq!(
            plugin.execute_sync("r3greeting.txt").unwrap(),
            "hello from the host"
        );
    }
}

#[test]
fn writes_fail_in_a_read_only_directory_and_succeed_in_a_writable_one() {
    let scratch = Scratch::new("write");
    let read_only = scratch.subdir("ro");
    let writable = scratch.subdir("rw");
    for mode in MODES {
        let plugin = plugin(
            WasiGrant::new()
                .preopen_dir(&read_only, "/ro")
                .preopen_dir_writable(&writable, "/rw"),
            mode,
        );
        let message = guest_error(plugin.execute_sync("w3new.txt").unwrap_err());
        assert!(message.contains("errno "), "{mode:?}: {message}");
        assert!(!read_only.join("new.txt").exists(), "{mode:?}");
        // Truncating an existing file is a write too.
        write(&read_only.join("kept.txt"), "untouched");
        guest_error(plugin.execute_sync("w3kept.txt").unwrap_err());
        assert_eq!(
            std::fs::read_to_string(read_only.join("kept.txt")).unwrap(),
            "untouched"
        );

        assert_eq!(plugin.execute_sync("w4new.txt").unwrap(), "ok", "{mode:?}");
        assert_eq!(
            std::fs::read_to_string(writable.join("new.txt")).unwrap(),
            "written by wasm"
        );
        std::fs::remove_file(writable.join("new.txt")).unwrap();
    }
}

#[test]
fn the_guest_sees_exactly_the_granted_environment_and_arguments() {
    assert!(
        std::env::var_os("PATH").is_some(),
        "the host has a PATH to leak"
    );
    for mode in MODES {
        let granted = plugin(
            WasiGrant::new()
                .env("GREETING", "hello")
                .env("MODE", "a=b")
                .arg("plugin")
                .arg("--fast"),
            mode,
        );
        let env = granted.execute_sync("e0").unwrap();
        assert_eq!(env, "GREETING=hello\nMODE=a=b\n", "{mode:?}");
        assert!(!env.contains("PATH") && !env.contains("HOME"), "{env}");
        assert_eq!(granted.execute_sync("a0").unwrap(), "plugin\n--fast\n");

        let bare = plugin(WasiGrant::new(), mode);
        assert_eq!(bare.execute_sync("e0").unwrap(), "");
        assert_eq!(bare.execute_sync("a0").unwrap(), "");
    }
}

#[test]
fn paths_cannot_escape_a_preopened_directory() {
    let scratch = Scratch::new("escape");
    write(&scratch.0.join("secret.txt"), "host secret");
    let inner = scratch.subdir("inner");
    write(&inner.join("fine.txt"), "fine");
    #[cfg(unix)]
    std::os::unix::fs::symlink(scratch.0.join("secret.txt"), inner.join("link.txt")).unwrap();

    let secret = scratch.0.join("secret.txt");
    let escapes = [
        "r3../secret.txt".to_string(),
        "r3fine/../../secret.txt".to_string(),
        format!("r3{}", secret.display()),
        "r3link.txt".to_string(),
    ];
    for mode in MODES {
        let plugin = plugin(WasiGrant::new().preopen_dir(&inner, "/inner"), mode);
        for escape in &escapes {
            if escape == "r3link.txt" && cfg!(not(unix)) {
                continue;
            }
            let result = plugin.execute_sync(escape);
            let message = guest_error(result.unwrap_err());
            assert!(message.contains("errno "), "{escape}: {message}");
        }
        assert_eq!(plugin.execute_sync("r3fine.txt").unwrap(), "fine");
        // A descriptor that is not a preopen reaches nothing either.
        guest_error(plugin.execute_sync("r4secret.txt").unwrap_err());
    }
}

#[test]
fn loading_without_the_wasi_grant_fails_naming_wasi() {
    let ungranted = WasmPlugin::from_file(fixture())
        .unwrap()
        .with_capabilities(WasmCapabilities::all());
    let message = match ungranted.check_link().unwrap_err() {
        PluginError::Config(message) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    };
    assert!(message.contains("capability `wasi`"), "{message}");
    assert!(
        message.contains(
            "`wasi_snapshot_preview1.path_open` and 8 more WASI functions (capability `wasi`)"
        ),
        "{message}"
    );
    assert!(message.contains("wasi:dir=HOST::GUEST"), "{message}");
    assert!(ungranted.execute_sync("e0").is_err());

    let granted = ungranted.with_capabilities(WasmCapabilities::from_names(["wasi"]).unwrap());
    granted.check_link().unwrap();
    assert_eq!(granted.execute_sync("e0").unwrap(), "");
}

#[test]
fn the_plugin_serves_the_next_call_after_a_wasi_error_or_an_exit() {
    let scratch = Scratch::new("recover");
    let data = scratch.subdir("data");
    write(&data.join("present.txt"), "present");
    for mode in MODES {
        let plugin = plugin(WasiGrant::new().preopen_dir(&data, "/data"), mode);
        // ENOENT is errno 44 in WASI preview 1.
        let message = guest_error(plugin.execute_sync("r3absent.txt").unwrap_err());
        assert!(message.contains("errno 44"), "{mode:?}: {message}");
        assert_eq!(plugin.execute_sync("r3present.txt").unwrap(), "present");

        match plugin.execute_sync("x7").unwrap_err() {
            PluginError::Runtime { location, message } => {
                assert!(message.contains("proc_exit(7)"), "{message}");
                assert!(message.contains("execute"), "{message}");
                assert!(location.contains("wasi_files"), "{location}");
            }
            other => panic!("expected a runtime error for proc_exit, got {other:?}"),
        }
        assert_eq!(plugin.execute_sync("r3present.txt").unwrap(), "present");
        assert_eq!(
            plugin.execute_sync("p0printed to the log").unwrap(),
            "printed"
        );
    }
}

/// Records the `bilayer::wasm` events emitted on this thread: (level, stream, message).
#[derive(Clone, Default)]
struct LogRecorder(Arc<Mutex<Vec<(tracing::Level, String, String)>>>);

#[derive(Default)]
struct Fields {
    stream: String,
    message: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "stream" {
            self.stream = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for LogRecorder {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "bilayer::wasm"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        self.0
            .lock()
            .unwrap()
            .push((level, fields.stream, fields.message));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn guest_stdout_and_stderr_go_to_the_log_line_by_line() {
    for mode in MODES {
        let recorder = LogRecorder::default();
        let plugin = plugin(WasiGrant::new(), mode);
        scoped_subscriber::with_default(recorder.clone(), || {
            assert_eq!(plugin.execute_sync("p0one\ntwo\n").unwrap(), "printed");
        });
        let events = recorder.0.lock().unwrap().clone();
        let expected = [
            (tracing::Level::DEBUG, "stdout", "one"),
            (tracing::Level::DEBUG, "stdout", "two"),
            (tracing::Level::WARN, "stderr", "one"),
            (tracing::Level::WARN, "stderr", "two"),
        ];
        let events: Vec<(tracing::Level, &str, &str)> = events
            .iter()
            .map(|(level, stream, message)| (*level, stream.as_str(), message.as_str()))
            .collect();
        assert_eq!(events, expected, "{mode:?}");
    }
}

#[test]
fn a_missing_granted_directory_fails_the_load_naming_it() {
    let scratch = Scratch::new("missing");
    let missing = scratch.0.join("not-there");
    let plugin = plugin(
        WasiGrant::new().preopen_dir(&missing, "/data"),
        InstanceMode::FreshPerCall,
    );
    match plugin.check_link().unwrap_err() {
        PluginError::Config(message) => {
            assert!(message.contains("not-there"), "{message}");
            assert!(message.contains("wasi:dir="), "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn limits_still_hold_with_wasi_on_the_pooled_engine() {
    let scratch = Scratch::new("limits");
    let data = scratch.subdir("data");
    write(&data.join("present.txt"), "present");
    for mode in MODES {
        let plugin = plugin(WasiGrant::new().preopen_dir(&data, "/data"), mode).with_limits(
            WasmLimits::default()
                .timeout(Duration::from_millis(100))
                .max_memory_bytes(2 << 20),
        );
        assert!(plugin.engine().uses_pooling());

        match plugin.execute_sync("l0").unwrap_err() {
            PluginError::LimitExceeded { limit, .. } => assert_eq!(limit, "timeout"),
            other => panic!("expected the timeout, got {other:?}"),
        }
        assert_eq!(plugin.execute_sync("r3present.txt").unwrap(), "present");

        match plugin.execute_sync("g0").unwrap_err() {
            PluginError::LimitExceeded { limit, .. } => assert_eq!(limit, "max_memory_bytes"),
            other => panic!("expected the memory cap, got {other:?}"),
        }
        assert_eq!(plugin.execute_sync("r3present.txt").unwrap(), "present");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_plugin_runs_through_the_runtime_on_a_multi_thread_runtime() {
    let scratch = Scratch::new("async-mt");
    let data = scratch.subdir("data");
    write(&data.join("present.txt"), "present");
    let runtime = WasmRuntime::new().unwrap();
    let grant =
        WasmCapabilities::from_names([format!("wasi:dir={}::/data", data.display())]).unwrap();
    let plugin = WasmPlugin::from_file(fixture())
        .unwrap()
        .with_capabilities(grant);
    runtime.register(plugin).await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            runtime
                .execute("wasi_files", "r3present.txt")
                .await
                .unwrap(),
            "present"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_wasi_plugin_runs_through_the_runtime_on_a_current_thread_runtime() {
    let scratch = Scratch::new("async-ct");
    let data = scratch.subdir("data");
    write(&data.join("present.txt"), "present");
    let runtime = WasmRuntime::new().unwrap();
    let plugin = plugin(
        WasiGrant::new().preopen_dir(&data, "/data"),
        InstanceMode::Reuse,
    );
    runtime.register(plugin).await.unwrap();
    assert_eq!(
        runtime
            .execute("wasi_files", "r3present.txt")
            .await
            .unwrap(),
        "present"
    );
    assert_eq!(
        runtime.execute("wasi_files", "p0hi").await.unwrap(),
        "printed"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn execute_sync_on_an_async_worker_is_an_error_not_a_crash() {
    let plugin = plugin(WasiGrant::new(), InstanceMode::Reuse);
    match plugin.execute_sync("p0hi").unwrap_err() {
        PluginError::Runtime { message, .. } => {
            assert!(message.contains("execute()"), "{message}")
        }
        other => panic!("expected a runtime error, got {other:?}"),
    }
    // The same plugin, called the way the message says, works.
    assert_eq!(plugin.call("p0hi".to_string()).await.unwrap(), "printed");
}

#[test]
fn wasi_grants_parse_from_the_configuration_syntax() {
    let grant = WasmCapabilities::from_names([
        "log",
        "wasi:dir=/srv/in::/in",
        "wasi:dir=/srv/out::/out:rw",
        "wasi:env=TOKEN=s3cret",
        "wasi:arg=plugin",
    ])
    .unwrap();
    assert!(grant.allows(Capability::Log));
    assert!(grant.allows(Capability::Wasi));
    let wasi = grant.wasi().unwrap();
    assert_eq!(wasi.preopened_dirs.len(), 2);
    assert!(!wasi.preopened_dirs[0].writable);
    assert!(wasi.preopened_dirs[1].writable);
    assert_eq!(wasi.preopened_dirs[1].guest_path, "/out");
    assert_eq!(wasi.env, vec![("TOKEN".to_string(), "s3cret".to_string())]);
    assert_eq!(wasi.args, vec!["plugin"]);
    let shown = grant.to_string();
    assert!(shown.contains("wasi:dir=/srv/out::/out:rw"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");

    assert!(!WasmCapabilities::all().allows(Capability::Wasi));
    let message = WasmCapabilities::from_names(["wasi:socket=1"])
        .unwrap_err()
        .to_string();
    assert!(message.contains("wasi:dir=HOST::GUEST"), "{message}");
}
