//! Shared by the hot reload tests: a scratch directory of real files, a `PluginManager` with a
//! `HotReloadManager` watching the directory through real notify, and waiting for events
//! (never a fixed sleep where an event can tell; timeouts are generous for a loaded machine).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bilayer::hot_reload::{HotReloadConfig, HotReloadManager, ReloadEvent, ReloadEvents};
use bilayer::prelude::*;
use serde_json::Value;

/// How long any one expected event may take.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A directory under the system's temp dir, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bilayer-hot-reload-test-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes in place (truncate and write), like most editors and `>`.
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.file(name), text).unwrap();
    }

    /// Writes a temporary file next to the target and renames it over the target, like
    /// editors that save atomically.
    pub fn write_and_rename(&self, name: &str, text: &str) {
        let temp = self.file(&format!("{name}.tmp"));
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, self.file(name)).unwrap();
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.file(name)).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A plugin manager, a hot reload manager watching a scratch directory, and an event stream
/// opened before it started.
pub struct Rig {
    pub dir: Scratch,
    pub plugins: PluginManager,
    pub hot: HotReloadManager,
    pub events: ReloadEvents,
    barriers: u32,
}

impl Rig {
    /// Writes `files`, then starts hot reload on the directory, which adds each file as a
    /// plugin; returns once every one of them was added.
    pub async fn start(name: &str, config: HotReloadConfig, files: &[(&str, &str)]) -> Rig {
        let dir = Scratch::new(name);
        for (file, text) in files {
            dir.write(file, text);
        }
        let plugins = PluginManager::new(name);
        let hot = HotReloadManager::new(dir.path(), config).with_target(plugins.clone());
        let events = hot.events();
        hot.start().await.unwrap();
        let mut rig = Rig {
            dir,
            plugins,
            hot,
            events,
            barriers: 0,
        };
        for (file, _) in files {
            let stem = file.split('.').next().unwrap().to_string();
            rig.until(
                &format!("{file} added"),
                |e| matches!(e, ReloadEvent::PluginAdded { plugin_id, .. } if *plugin_id == stem),
            )
            .await;
        }
        rig
    }

    /// Every event up to and including the first one matching `done`.
    pub async fn until(
        &mut self,
        what: &str,
        done: impl Fn(&ReloadEvent) -> bool,
    ) -> Vec<ReloadEvent> {
        until(&mut self.events, what, done).await
    }

    /// The events up to the end of the reload of `plugin_id` (completed or failed).
    pub async fn reload_of(&mut self, plugin_id: &str) -> Vec<ReloadEvent> {
        self.until(&format!("the reload of {plugin_id} to end"), |e| {
            ended_reload(e, plugin_id)
        })
        .await
    }

    /// Adds a new plugin file and waits until it was added: every change made before it has
    /// been acted on by then (changes are handled in the order they are seen). Returns the
    /// events seen before, without the barrier's own.
    pub async fn barrier(&mut self) -> Vec<ReloadEvent> {
        self.barriers += 1;
        let id = format!("barrier_{}", self.barriers);
        self.dir
            .write(&format!("{id}.rhai"), "fn run(x) { x }\nrun");
        let events = self
            .until(
                &format!("{id} added"),
                |e| matches!(e, ReloadEvent::PluginAdded { plugin_id, .. } if *plugin_id == id),
            )
            .await;
        events.into_iter().filter(|e| !mentions(e, &id)).collect()
    }

    /// Executes `id` on `input` and parses the answer.
    pub async fn call(&self, id: &str, input: &str) -> Value {
        let output = self.plugins.execute(id, input.to_string()).await.unwrap();
        serde_json::from_str(&output).unwrap()
    }
}

/// Every event of `events` up to and including the first one matching `done`.
pub async fn until(
    events: &mut ReloadEvents,
    what: &str,
    done: impl Fn(&ReloadEvent) -> bool,
) -> Vec<ReloadEvent> {
    let mut seen = Vec::new();
    let waited = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = events.recv().await {
            let last = done(&event);
            seen.push(event);
            if last {
                return true;
            }
        }
        false
    })
    .await;
    match waited {
        Ok(true) => seen,
        Ok(false) => panic!("the event stream ended while waiting for {what}; saw {seen:#?}"),
        Err(_) => panic!("no event within {PATIENCE:?} for {what}; saw {seen:#?}"),
    }
}

/// Whether `event` ends a reload of `plugin_id`.
pub fn ended_reload(event: &ReloadEvent, plugin_id: &str) -> bool {
    matches!(event,
        ReloadEvent::ReloadCompleted { plugin_id: id, .. }
        | ReloadEvent::ReloadFailed { plugin_id: id, .. } if id == plugin_id)
}

/// Whether `event` is about `name` (a plugin id, or a file stem).
pub fn mentions(event: &ReloadEvent, name: &str) -> bool {
    match event {
        ReloadEvent::FileChanged { path } => {
            path.file_stem().and_then(|s| s.to_str()) == Some(name)
        }
        other => other.plugin_id() == Some(name),
    }
}

/// The version a Rhai source compiles to (the content hash the plugin reports).
pub fn rhai_version(source: &str) -> String {
    bilayer::rhai_runtime::RhaiPlugin::from_source("v", source)
        .unwrap()
        .metadata()
        .version
        .clone()
}

/// A Rhai entry script that counts its calls in its state and answers with its version
/// number `v` and the count.
pub fn counting_script(v: u32) -> String {
    format!(
        "fn run(input) {{\n    state.calls = (state.calls ?? 0) + 1;\n    #{{ v: {v}, calls: state.calls }}\n}}\nrun\n"
    )
}

/// A WASM module in text form that answers every call with `{"v":N}`.
pub fn wat_answering(v: u32) -> String {
    let answer = format!("{{\\\"v\\\":{v}}}");
    let len = format!("{{\"v\":{v}}}").len();
    format!(
        r#"(module
  (memory (export "memory") 1)
  (data (i32.const 16) "{answer}")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {len}))))
"#
    )
}

/// A routing script (runtime/routing.rs form) sending everything `intake` emits to `target`.
pub fn routing_to(target: &str) -> String {
    format!(
        "fn route(hop) {{\n    if hop.agent == \"intake\" {{ \"{target}\" }} else {{ () }}\n}}\n\nroute\n"
    )
}

/// A terminal agent script `name` answering `#{ served_by: label, n: msg.n }`.
pub fn terminal_agent(name: &str, label: &str) -> String {
    format!("fn {name}(msg) {{\n    #{{ served_by: \"{label}\", n: msg.n }}\n}}\n\n{name}\n")
}
