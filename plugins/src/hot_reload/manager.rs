//! `HotReloadManager`: watches directories of plugin files and keeps the plugins a
//! [`ReloadTarget`] hosts in line with them.
//!
//! A watcher (notify, debounced or not) reports paths on a channel; one worker task takes
//! them in order and hands each to the [`Reloader`], which does the compiling, validating and
//! swapping. `reload_now` goes through the same reloader, so manual and watched reloads never
//! interleave.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::files::{normalize, scan};
use super::reloader::{dedup, Reloader, SharedTarget};
use super::watcher::{watch, FileWatcher, Signal, SignalSink};
use super::{
    HotReloadConfig, ReloadEvent, ReloadEventSink, ReloadEvents, ReloadOutcome, ReloadTarget,
};
use crate::{PluginError, PluginResult};

/// Watches directories and reloads the plugins whose files change (see the
/// [module docs](super)).
pub struct HotReloadManager {
    dirs: Vec<PathBuf>,
    config: HotReloadConfig,
    events: ReloadEventSink,
    target: SharedTarget,
    reloader: Arc<tokio::sync::Mutex<Reloader>>,
    running: Mutex<Option<Running>>,
}

struct Running {
    watcher: Option<FileWatcher>,
    signals: mpsc::UnboundedSender<Work>,
    worker: JoinHandle<()>,
}

/// What the worker takes from its channel.
enum Work {
    Signal(Signal),
    /// Finish what came before, then end.
    Stop,
}

impl std::fmt::Debug for HotReloadManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotReloadManager")
            .field("dirs", &self.dirs)
            .field("config", &self.config)
            .field("running", &self.is_running())
            .finish()
    }
}

impl HotReloadManager {
    /// A manager for the plugin files in `dir`. Nothing happens until [`start`](Self::start)
    /// (or [`reload_now`](Self::reload_now)); attach the host of the plugins with
    /// [`with_target`](Self::with_target).
    pub fn new(dir: impl AsRef<Path>, config: HotReloadConfig) -> Self {
        let events = ReloadEventSink::new();
        let target = SharedTarget::default();
        let reloader = Reloader::new(config.clone(), target.clone(), events.clone());
        Self {
            dirs: vec![dir.as_ref().to_path_buf()],
            config,
            events,
            target,
            reloader: Arc::new(tokio::sync::Mutex::new(reloader)),
            running: Mutex::new(None),
        }
    }

    /// Watches `dir` as well.
    pub fn with_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dirs.push(dir.as_ref().to_path_buf());
        self
    }

    /// The host of the plugins: new versions are swapped into it, new files added to it,
    /// deleted files removed from it. `bilayer::PluginManager` is one:
    /// `.with_target(manager.clone())`. Without a target, changes are only compiled and
    /// validated ([`ReloadEvent::Validated`]).
    pub fn with_target<T: ReloadTarget>(self, target: T) -> Self {
        let target: Arc<dyn ReloadTarget> = Arc::new(target);
        *self
            .target
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(target);
        self
    }

    /// The settings the manager was built with.
    pub fn config(&self) -> &HotReloadConfig {
        &self.config
    }

    /// The watched directories, as given.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// A stream of the events published from now on. Call it before or after `start`; several
    /// streams may be open at once, each gets every event. It ends (`recv` returns `None`)
    /// when the manager is stopped or dropped.
    pub fn events(&self) -> ReloadEvents {
        self.events.subscribe()
    }

    /// The sink events are published to (for hosts that report their own).
    pub fn event_sink(&self) -> &ReloadEventSink {
        &self.events
    }

    /// Whether the watcher is running (between `start` and `stop`).
    pub fn is_running(&self) -> bool {
        self.lock_running().is_some()
    }

    /// Starts watching (unless the strategy is `Manual`) and takes stock of the files already
    /// there: a file whose plugin serves the same version is recorded; one whose plugin serves
    /// another version is reloaded; one that no plugin comes from is added (if
    /// `add_new_files`). Returns once that is done; a file that fails is reported as
    /// `ReloadFailed` and does not fail `start`.
    pub async fn start(&self) -> PluginResult<()> {
        if self.is_running() {
            return Err(PluginError::execution(
                "the hot reload manager is already started; call stop() first",
            ));
        }
        let dirs = self.resolved_dirs()?;
        let (sender, receiver) = mpsc::unbounded_channel::<Work>();
        let forward = sender.clone();
        let signals: SignalSink = Arc::new(move |signal| {
            let _ = forward.send(Work::Signal(signal));
        });
        let watcher = watch(
            self.config.strategy(),
            &dirs,
            self.config.recursive(),
            signals,
        )?;
        {
            let mut reloader = self.reloader.lock().await;
            let extensions = reloader.extensions().to_vec();
            for dir in &dirs {
                for path in scan(dir, &extensions, self.config.recursive()) {
                    let _ = reloader.adopt(&path).await;
                }
            }
        }
        let worker = tokio::spawn(work(receiver, self.reloader.clone(), self.events.clone()));
        let mut running = self.lock_running();
        if running.is_some() {
            worker.abort();
            return Err(PluginError::execution(
                "the hot reload manager was started twice at once; call start() once",
            ));
        }
        *running = Some(Running {
            watcher,
            signals: sender,
            worker,
        });
        tracing::info!(dirs = ?dirs, strategy = ?self.config.strategy(), "hot reload started");
        Ok(())
    }

    /// Stops watching, lets a reload in progress finish, and ends the event streams opened so
    /// far (after the events already published). `start` may be called again.
    pub async fn stop(&self) {
        let running = self.lock_running().take();
        if let Some(running) = running {
            if let Some(watcher) = running.watcher {
                // Joining the debouncer's thread blocks for up to a tick.
                let _ = tokio::task::spawn_blocking(move || watcher.stop()).await;
            }
            let _ = running.signals.send(Work::Stop);
            let _ = running.worker.await;
        }
        self.events.close();
    }

    /// Looks at `path` now, whatever the strategy: reloads, adds or removes its plugin as
    /// needed, and returns what it did. Errors are also reported as `ReloadFailed` events.
    pub async fn reload_now(&self, path: impl AsRef<Path>) -> PluginResult<ReloadOutcome> {
        let path = normalize(path.as_ref());
        let mut reloader = self.reloader.lock().await;
        if !super::files::is_candidate(&path, reloader.extensions()) {
            return Err(PluginError::Config(format!(
                "{} is not a plugin file; hot reload loads files ending in {}",
                path.display(),
                reloader.extensions().join(", ")
            )));
        }
        reloader.reconcile(&path, Instant::now()).await
    }

    /// [`reload_now`](Self::reload_now) for every plugin file in the watched directories and
    /// every file known to have been there; one outcome per file, failures included.
    pub async fn reload_all(&self) -> PluginResult<Vec<(PathBuf, PluginResult<ReloadOutcome>)>> {
        let dirs = self.resolved_dirs()?;
        let mut reloader = self.reloader.lock().await;
        let extensions = reloader.extensions().to_vec();
        let mut paths: Vec<PathBuf> = dirs
            .iter()
            .flat_map(|dir| scan(dir, &extensions, self.config.recursive()))
            .collect();
        paths.extend(reloader.known_paths());
        let mut outcomes = Vec::new();
        for path in dedup(paths) {
            let outcome = reloader.reconcile(&path, Instant::now()).await;
            outcomes.push((path, outcome));
        }
        Ok(outcomes)
    }

    fn resolved_dirs(&self) -> PluginResult<Vec<PathBuf>> {
        self.dirs
            .iter()
            .map(|dir| {
                std::fs::canonicalize(dir).map_err(|e| {
                    PluginError::io(
                        format!(
                            "cannot watch {}: {e}; create the directory or pass an existing one",
                            dir.display()
                        ),
                        e,
                    )
                })
            })
            .collect()
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for HotReloadManager {
    fn drop(&mut self) {
        if let Some(running) = self.lock_running().take() {
            // Dropping the watcher stops it without waiting for its thread.
            drop(running.watcher);
            let _ = running.signals.send(Work::Stop);
        }
        self.events.close();
    }
}

/// The worker: takes every signal waiting, merges their paths (first seen wins for the
/// latency), and reconciles each path once, in order.
async fn work(
    mut receiver: mpsc::UnboundedReceiver<Work>,
    reloader: Arc<tokio::sync::Mutex<Reloader>>,
    events: ReloadEventSink,
) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = receiver.try_recv() {
            batch.push(more);
        }
        let mut stop = false;
        let mut order = Vec::new();
        let mut seen_at: HashMap<PathBuf, Instant> = HashMap::new();
        for work in batch {
            match work {
                Work::Stop => stop = true,
                Work::Signal(Signal::Changed { paths, seen }) => {
                    for path in paths {
                        seen_at.entry(path.clone()).or_insert(seen);
                        order.push(path);
                    }
                }
                Work::Signal(Signal::Errors(errors)) => {
                    for error in errors {
                        events.emit(ReloadEvent::WatchError { error });
                    }
                }
            }
        }
        if !order.is_empty() {
            let mut reloader = reloader.lock().await;
            for path in dedup(order) {
                let seen = seen_at.get(&path).copied().unwrap_or_else(Instant::now);
                // Failures are published as events; the worker goes on with the next path.
                let _ = reloader.reconcile(&path, seen).await;
            }
        }
        if stop {
            break;
        }
    }
}
