//! What hot reload tells the application: [`ReloadEvent`]s, delivered to every
//! [`ReloadEvents`] stream, and the [`ReloadEventSink`] both the watcher and the host (the
//! [`ReloadTarget`](super::ReloadTarget), for live failures and rollbacks) publish through.
//!
//! Every event is also logged with `tracing` and counted with `metrics`
//! (`bilayer_reloads_total`, `bilayer_reload_failures_total`, `bilayer_rollbacks_total`,
//! `bilayer_plugins_added_total`, `bilayer_plugins_removed_total`, and the histogram
//! `bilayer_reload_latency_seconds`: from the change being seen to the new version serving).

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::PluginError;

/// How many events a slow stream may fall behind before it skips the oldest.
const EVENT_CAPACITY: usize = 1024;

/// Something hot reload saw or did.
///
/// For one change of a file's content the order is: `FileChanged`, then `ReloadStarted`, then
/// exactly one of `ReloadCompleted`, `PluginAdded`, `Validated` or `ReloadFailed`. A deleted
/// file gives `FileChanged` then `PluginRemoved` (unless [`DeleteAction::Keep`]). After a swap,
/// a version that fails while live reports each failure as `ReloadFailed` (with the failure's
/// number as `attempt`), and `RolledBack` once the newest version that served without a fault
/// serves again.
///
/// [`DeleteAction::Keep`]: super::DeleteAction::Keep
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ReloadEvent {
    /// A watched file's content changed (a save that changes nothing is not reported), or the
    /// file was deleted.
    FileChanged {
        /// The file.
        path: PathBuf,
    },
    /// A new version of `plugin_id` is being compiled, validated and swapped in.
    ReloadStarted {
        /// The plugin being reloaded.
        plugin_id: String,
        /// The file the new version comes from.
        path: PathBuf,
    },
    /// `version` now serves `plugin_id`: every message after the swap goes to it. `duration`
    /// runs from the change being seen (after the debounce window) to the new version serving.
    ReloadCompleted {
        /// The plugin reloaded.
        plugin_id: String,
        /// The version now serving.
        version: String,
        /// The version it replaced.
        previous_version: String,
        /// From the change being seen to the new version serving.
        duration: Duration,
    },
    /// A reload of `plugin_id` failed and the version that was serving keeps serving.
    ///
    /// `attempt` counts: for a version that never went live (it did not compile, validate,
    /// migrate or start), the consecutive failed reloads of this plugin (reset by a success);
    /// for a version that went live and then failed (panic, trap, limit, runtime error), its
    /// failures since the swap, which past `max_attempts` roll it back.
    ReloadFailed {
        /// The plugin whose reload or new version failed.
        plugin_id: String,
        /// What went wrong.
        error: PluginError,
        /// The failure's number (see above).
        attempt: u32,
    },
    /// The version that failed too often after its swap, `from_version`, was replaced by
    /// `to_version`, which serves again: the newest version that served through its failure
    /// window, or that answered messages without a single fault before the next save replaced
    /// it (the version the plugin started with if none did). The `replayed` messages that
    /// `from_version` failed during its window are run again on `to_version`, each answered by
    /// that run (a message that fails there too is answered with, or dead-lettered for, its
    /// new error).
    RolledBack {
        /// The plugin rolled back.
        plugin_id: String,
        /// The version that failed too often.
        from_version: String,
        /// The version serving again.
        to_version: String,
        /// Why, in words: how often it failed within the window, and its last failure.
        reason: String,
        /// How many failed messages were run again on `to_version`.
        replayed: u32,
    },
    /// A new file became a new plugin, loaded and started.
    PluginAdded {
        /// The new plugin's id.
        plugin_id: String,
        /// Its version.
        version: String,
        /// The file it comes from.
        path: PathBuf,
    },
    /// The file of `plugin_id` was deleted and the plugin stopped (and, with
    /// [`DeleteAction::Remove`](super::DeleteAction::Remove), unregistered).
    PluginRemoved {
        /// The plugin stopped or removed.
        plugin_id: String,
        /// Its deleted file.
        path: PathBuf,
    },
    /// No target is attached: the new version compiled and passed validation, and nothing
    /// was swapped. Attach one with `HotReloadManager::with_target` to have it served.
    Validated {
        /// The plugin the file defines.
        plugin_id: String,
        /// The validated version.
        version: String,
        /// The file.
        path: PathBuf,
    },
    /// The file watcher reported an error (for instance the watched directory was removed).
    WatchError {
        /// The watcher's message.
        error: String,
    },
}

impl ReloadEvent {
    /// The plugin the event is about, when it is about one.
    pub fn plugin_id(&self) -> Option<&str> {
        match self {
            ReloadEvent::ReloadStarted { plugin_id, .. }
            | ReloadEvent::ReloadCompleted { plugin_id, .. }
            | ReloadEvent::ReloadFailed { plugin_id, .. }
            | ReloadEvent::RolledBack { plugin_id, .. }
            | ReloadEvent::PluginAdded { plugin_id, .. }
            | ReloadEvent::PluginRemoved { plugin_id, .. }
            | ReloadEvent::Validated { plugin_id, .. } => Some(plugin_id),
            ReloadEvent::FileChanged { .. } | ReloadEvent::WatchError { .. } => None,
        }
    }
}

/// Where reload events are published; cheap to clone.
///
/// The hot reload manager owns one and hands a clone to its target with every swap, so the
/// host can report what happens to a version after it went live.
#[derive(Clone)]
pub struct ReloadEventSink {
    events: broadcast::Sender<ReloadEvent>,
    /// Bumped by [`ReloadEventSink::close`]: streams opened before it end.
    generation: std::sync::Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for ReloadEventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadEventSink")
            .field("streams", &self.events.receiver_count())
            .finish()
    }
}

impl Default for ReloadEventSink {
    fn default() -> Self {
        Self::new()
    }
}

impl ReloadEventSink {
    /// A sink with no stream open yet.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (generation, _) = watch::channel(0);
        Self {
            events,
            generation: std::sync::Arc::new(generation),
        }
    }

    /// Publishes `event` to every open stream, logs it and counts it. Nobody listening is fine.
    pub fn emit(&self, event: ReloadEvent) {
        record(&event);
        let _ = self.events.send(event);
    }

    /// A new stream of the events published from now on.
    pub fn subscribe(&self) -> ReloadEvents {
        ReloadEvents {
            events: self.events.subscribe(),
            generation: self.generation.subscribe(),
            opened_in: *self.generation.borrow(),
        }
    }

    /// Ends every stream opened so far, once it has handed out the events already published.
    pub fn close(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

/// A stream of [`ReloadEvent`]s, from `HotReloadManager::events()`.
///
/// Several streams may be open at once; each receives every event published after it was
/// opened. A stream that falls more than 1024 events behind skips the oldest (with a warning
/// in the log). `recv` returns `None` once the manager was stopped (after the events published
/// before that) or dropped.
pub struct ReloadEvents {
    events: broadcast::Receiver<ReloadEvent>,
    generation: watch::Receiver<u64>,
    opened_in: u64,
}

impl std::fmt::Debug for ReloadEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadEvents")
            .field("pending", &self.events.len())
            .field("opened_in", &self.opened_in)
            .finish()
    }
}

impl ReloadEvents {
    /// The next event; `None` when the stream has ended.
    pub async fn recv(&mut self) -> Option<ReloadEvent> {
        loop {
            match self.events.try_recv() {
                Ok(event) => return Some(event),
                Err(broadcast::error::TryRecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "reload event stream fell behind; skipped events");
                    continue;
                }
                Err(broadcast::error::TryRecvError::Closed) => return None,
                Err(broadcast::error::TryRecvError::Empty) => {}
            }
            if self.is_closed() {
                return None;
            }
            tokio::select! {
                received = self.events.recv() => match received {
                    Ok(event) => return Some(event),
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        tracing::warn!(skipped, "reload event stream fell behind; skipped events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                changed = self.generation.changed() => {
                    if changed.is_err() {
                        // The manager is gone; hand out what is left, then end.
                        return self.events.try_recv().ok();
                    }
                }
            }
        }
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<ReloadEvent> {
        loop {
            match self.events.try_recv() {
                Ok(event) => return Some(event),
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    }

    fn is_closed(&self) -> bool {
        *self.generation.borrow() != self.opened_in
    }
}

fn record(event: &ReloadEvent) {
    match event {
        ReloadEvent::FileChanged { path } => {
            tracing::debug!(path = %path.display(), "hot reload: file changed")
        }
        ReloadEvent::ReloadStarted { plugin_id, path } => {
            tracing::debug!(plugin = %plugin_id, path = %path.display(), "hot reload: started")
        }
        ReloadEvent::ReloadCompleted {
            plugin_id,
            version,
            previous_version,
            duration,
        } => {
            tracing::info!(plugin = %plugin_id, %version, %previous_version, ?duration, "hot reload: new version serving");
            let labels = [("plugin", plugin_id.clone())];
            metrics::counter!("bilayer_reloads_total", &labels).increment(1);
            metrics::histogram!("bilayer_reload_latency_seconds", &labels)
                .record(duration.as_secs_f64());
        }
        ReloadEvent::ReloadFailed {
            plugin_id,
            error,
            attempt,
        } => {
            tracing::warn!(plugin = %plugin_id, %error, attempt, "hot reload: failed");
            let labels = [("plugin", plugin_id.clone())];
            metrics::counter!("bilayer_reload_failures_total", &labels).increment(1);
        }
        ReloadEvent::RolledBack {
            plugin_id,
            from_version,
            to_version,
            reason,
            replayed,
        } => {
            tracing::warn!(plugin = %plugin_id, %from_version, %to_version, %reason, replayed, "hot reload: rolled back");
            let labels = [("plugin", plugin_id.clone())];
            metrics::counter!("bilayer_rollbacks_total", &labels).increment(1);
        }
        ReloadEvent::PluginAdded {
            plugin_id, version, ..
        } => {
            tracing::info!(plugin = %plugin_id, %version, "hot reload: plugin added");
            let labels = [("plugin", plugin_id.clone())];
            metrics::counter!("bilayer_plugins_added_total", &labels).increment(1);
        }
        ReloadEvent::PluginRemoved { plugin_id, .. } => {
            tracing::info!(plugin = %plugin_id, "hot reload: plugin removed");
            let labels = [("plugin", plugin_id.clone())];
            metrics::counter!("bilayer_plugins_removed_total", &labels).increment(1);
        }
        ReloadEvent::Validated {
            plugin_id, version, ..
        } => {
            tracing::info!(plugin = %plugin_id, %version, "hot reload: validated (no target attached)")
        }
        ReloadEvent::WatchError { error } => tracing::warn!(%error, "hot reload: watcher error"),
    }
}
