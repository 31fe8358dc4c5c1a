//! The file system side: notify watching directories (never single files: an editor that
//! saves by renaming a temporary file over the original replaces the inode a file watch would
//! follow), and notify-debouncer-full for [`ReloadStrategy::Debounced`] (it pairs the two
//! halves of a rename and merges bursts).
//!
//! Both report paths as [`Signal`]s on a channel to the manager's worker. Events that cannot
//! change content are dropped here: opens and reads (hot reload's own reads would otherwise
//! trigger more reads), attribute changes, and, with inotify, writes still in progress (the
//! close of the written file follows and is the signal).

use std::path::PathBuf;
use std::time::Instant;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher, WatcherKind};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use std::sync::Arc;

use super::ReloadStrategy;
use crate::{PluginError, PluginResult};

/// What the watcher tells the worker.
pub(crate) enum Signal {
    /// These paths may have changed; `seen` is when the watcher reported them.
    Changed {
        paths: Vec<PathBuf>,
        seen: Instant,
    },
    Errors(Vec<String>),
}

/// A running watcher; dropping it stops watching.
pub(crate) enum FileWatcher {
    Immediate(#[allow(dead_code)] RecommendedWatcher),
    Debounced(Debouncer<RecommendedWatcher, RecommendedCache>),
}

impl FileWatcher {
    pub(super) fn stop(self) {
        match self {
            FileWatcher::Immediate(watcher) => drop(watcher),
            // Joins the debouncer's thread, so no signal arrives after this returns.
            FileWatcher::Debounced(debouncer) => debouncer.stop(),
        }
    }
}

/// Where the watcher's threads hand their signals.
pub(crate) type SignalSink = Arc<dyn Fn(Signal) + Send + Sync>;

/// Starts watching `dirs` with `strategy`; `None` for [`ReloadStrategy::Manual`].
pub(crate) fn watch(
    strategy: ReloadStrategy,
    dirs: &[PathBuf],
    recursive: bool,
    signals: SignalSink,
) -> PluginResult<Option<FileWatcher>> {
    let mode = if recursive {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    };
    let inotify = RecommendedWatcher::kind() == WatcherKind::Inotify;
    match strategy {
        ReloadStrategy::Manual => Ok(None),
        ReloadStrategy::Immediate => {
            let mut watcher =
                notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                    let signal = match event {
                        Ok(event) if matters(&event.kind, inotify) => Signal::Changed {
                            paths: event.paths,
                            seen: Instant::now(),
                        },
                        Ok(_) => return,
                        Err(error) => Signal::Errors(vec![error.to_string()]),
                    };
                    signals(signal);
                })
                .map_err(watch_error)?;
            for dir in dirs {
                watcher.watch(dir, mode).map_err(|e| dir_error(dir, e))?;
            }
            Ok(Some(FileWatcher::Immediate(watcher)))
        }
        ReloadStrategy::Debounced(window) => {
            let mut debouncer = new_debouncer(window, None, move |result: DebounceEventResult| {
                let signal = match result {
                    Ok(events) => {
                        let paths: Vec<PathBuf> = events
                            .into_iter()
                            .filter(|event| matters(&event.kind, false))
                            .flat_map(|event| event.event.paths)
                            .collect();
                        if paths.is_empty() {
                            return;
                        }
                        Signal::Changed {
                            paths,
                            seen: Instant::now(),
                        }
                    }
                    Err(errors) => Signal::Errors(errors.iter().map(|e| e.to_string()).collect()),
                };
                signals(signal);
            })
            .map_err(watch_error)?;
            for dir in dirs {
                debouncer.watch(dir, mode).map_err(|e| dir_error(dir, e))?;
            }
            Ok(Some(FileWatcher::Debounced(debouncer)))
        }
    }
}

/// Whether an event can mean new content (or a file appearing or disappearing).
fn matters(kind: &EventKind, wait_for_close: bool) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        // With inotify every write ends with a close that is reported: act on that, not on
        // the truncation or the first of several writes.
        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) | EventKind::Create(_)
            if wait_for_close =>
        {
            false
        }
        _ => true,
    }
}

fn watch_error(error: notify::Error) -> PluginError {
    PluginError::io(
        format!(
        "cannot start the file watcher: {error}; on Linux, raise fs.inotify.max_user_instances \
         or use ReloadStrategy::Manual"
    ),
        error,
    )
}

fn dir_error(dir: &std::path::Path, error: notify::Error) -> PluginError {
    PluginError::io(
        format!(
            "cannot watch {}: {error}; check that the directory exists and is readable",
            dir.display()
        ),
        error,
    )
}
