//! The decisions of hot reload for one path: look at the file, and if its content is new,
//! compile and validate it off to the side, then swap, add, remove or stop through the
//! [`ReloadTarget`], publishing events as it goes.
//!
//! One `Reloader` serves a manager, behind a lock: reloads happen one at a time, in the order
//! the changes were seen, so two saves of one file can never be swapped in out of order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::files::{content_hash, is_candidate, FileEntry, FileTable};
use super::prepare::{prepare, Prepared};
use super::{
    DeleteAction, HotReloadConfig, ReloadEvent, ReloadEventSink, ReloadTarget, Replacement,
};
use crate::{user_file, PluginError, PluginResult};

/// What looking at one path did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// Not a plugin file, an empty file (still being written), or a new file while adding new
    /// files is off.
    Ignored,
    /// The content is the one already acted on (a save that changed nothing).
    Unchanged,
    /// `version` now serves `plugin_id`.
    Reloaded {
        /// The plugin reloaded.
        plugin_id: String,
        /// The version now serving.
        version: String,
    },
    /// A new plugin was added from the file.
    Added {
        /// The new plugin's id.
        plugin_id: String,
        /// Its version.
        version: String,
    },
    /// The file was deleted and its plugin removed (or stopped, or kept, by `DeleteAction`).
    Deleted {
        /// The plugin the file was.
        plugin_id: String,
        /// What was done to it.
        action: DeleteAction,
    },
    /// No target is attached: the version compiled and passed validation.
    Validated {
        /// The plugin the file defines.
        plugin_id: String,
        /// The validated version.
        version: String,
    },
}

/// The host, settable while a reload runs (`HotReloadManager::with_target` never waits).
pub(crate) type SharedTarget = Arc<std::sync::RwLock<Option<Arc<dyn ReloadTarget>>>>;

pub(crate) struct Reloader {
    config: HotReloadConfig,
    extensions: Vec<String>,
    target: SharedTarget,
    files: FileTable,
    /// Consecutive failed reloads per plugin, reset by a success.
    failures: HashMap<String, u32>,
    events: ReloadEventSink,
}

/// What is on disk at a path.
enum OnDisk {
    Missing,
    Empty,
    Content(u64),
}

impl Reloader {
    pub(super) fn new(
        config: HotReloadConfig,
        target: SharedTarget,
        events: ReloadEventSink,
    ) -> Self {
        Self {
            extensions: config.extensions(),
            config,
            target,
            files: FileTable::default(),
            failures: HashMap::new(),
            events,
        }
    }

    pub(super) fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// Every file known to have been a plugin file.
    pub(super) fn known_paths(&self) -> Vec<PathBuf> {
        self.files.paths()
    }

    fn target(&self) -> Option<Arc<dyn ReloadTarget>> {
        self.target
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Takes stock of a file at start: a file whose plugin already serves the same version is
    /// only recorded (no events); any other goes through [`Reloader::reconcile`].
    pub(super) async fn adopt(&mut self, path: &Path) -> PluginResult<ReloadOutcome> {
        let (OnDisk::Content(hash), Some(target)) = (look(path).await?, self.target()) else {
            return self.reconcile(path, Instant::now()).await;
        };
        if let Ok(prepared) = self.prepare(path).await {
            let version = &prepared.plugin.metadata().version;
            if target.hosted_version(&prepared.id).as_ref() == Some(version) {
                let plugin_id = Some(prepared.id.clone());
                self.files
                    .set(path.to_path_buf(), FileEntry { hash, plugin_id });
                return Ok(ReloadOutcome::Unchanged);
            }
        }
        self.reconcile(path, Instant::now()).await
    }

    /// Brings the hosted plugins in line with what is at `path` now. `seen` is when the change
    /// was noticed (for the reload latency).
    pub(super) async fn reconcile(
        &mut self,
        path: &Path,
        seen: Instant,
    ) -> PluginResult<ReloadOutcome> {
        if !is_candidate(path, &self.extensions) {
            return Ok(ReloadOutcome::Ignored);
        }
        let hash = match look(path).await {
            Ok(OnDisk::Content(hash)) => hash,
            Ok(OnDisk::Empty) => return Ok(ReloadOutcome::Ignored),
            Ok(OnDisk::Missing) => return self.vanished(path, seen).await,
            Err(error) => {
                let id = self.id_of(path);
                return Err(self.fail(&id, error));
            }
        };
        let known = self.files.get(path).cloned();
        if known.as_ref().is_some_and(|entry| entry.hash == hash) {
            return Ok(ReloadOutcome::Unchanged);
        }
        self.emit(ReloadEvent::FileChanged {
            path: path.to_path_buf(),
        });
        let known_id = known.and_then(|entry| entry.plugin_id);
        let started_as = known_id.clone().unwrap_or_else(|| self.id_of(path));
        if known_id.is_some() {
            self.started(&started_as, path);
        }
        let prepared = match self.prepare(path).await {
            Ok(prepared) => prepared,
            Err(error) => {
                // Remembered, so saving the same broken text again does not retry it.
                let entry = FileEntry {
                    hash,
                    plugin_id: known_id.clone(),
                };
                self.files.set(path.to_path_buf(), entry);
                if known_id.is_none() {
                    self.started(&started_as, path);
                }
                return Err(self.fail(&started_as, error));
            }
        };
        let id = prepared.id.clone();
        if let Some(previous) = known_id.as_ref().filter(|previous| **previous != id) {
            // The file now declares another plugin id: the old plugin lost its file.
            let previous = previous.clone();
            self.retire(&previous, path).await?;
        }
        if known_id.as_deref() != Some(id.as_str()) {
            self.started(&id, path);
        }
        self.files.set(
            path.to_path_buf(),
            FileEntry {
                hash,
                plugin_id: Some(id.clone()),
            },
        );
        self.install(prepared, path, seen).await
    }

    /// Swaps, adds or only validates a prepared version.
    async fn install(
        &mut self,
        prepared: Prepared,
        path: &Path,
        seen: Instant,
    ) -> PluginResult<ReloadOutcome> {
        let id = prepared.id.clone();
        let version = prepared.plugin.metadata().version.clone();
        let Some(target) = self.target() else {
            self.failures.remove(&id);
            self.emit(ReloadEvent::Validated {
                plugin_id: id.clone(),
                version: version.clone(),
                path: path.to_path_buf(),
            });
            return Ok(ReloadOutcome::Validated {
                plugin_id: id,
                version,
            });
        };
        match target.hosted_version(&id) {
            Some(hosted) if hosted == version => {
                // The file went back to the text that serves (or a racing save got here
                // first): nothing to swap, and that version serves.
                self.completed(&id, &version, &hosted, seen);
                Ok(ReloadOutcome::Reloaded {
                    plugin_id: id,
                    version,
                })
            }
            Some(_) => {
                let replacement = self.replacement(prepared);
                match target.swap(&id, replacement).await {
                    Ok(report) => {
                        self.completed(&id, &report.version, &report.previous_version, seen);
                        Ok(ReloadOutcome::Reloaded {
                            plugin_id: id,
                            version: report.version,
                        })
                    }
                    Err(error) => Err(self.fail(&id, error)),
                }
            }
            None if self.config.add_new_files() => match target.add(&id, prepared.plugin).await {
                Ok(()) => {
                    self.failures.remove(&id);
                    self.emit(ReloadEvent::PluginAdded {
                        plugin_id: id.clone(),
                        version: version.clone(),
                        path: path.to_path_buf(),
                    });
                    Ok(ReloadOutcome::Added {
                        plugin_id: id,
                        version,
                    })
                }
                Err(error) => Err(self.fail(&id, error)),
            },
            None => Ok(ReloadOutcome::Ignored),
        }
    }

    fn replacement(&self, prepared: Prepared) -> Replacement {
        let preserve = self.config.preserve_state();
        Replacement::new(prepared.plugin)
            .preserve_state(preserve)
            .migration(prepared.migration.filter(|_| preserve))
            .rollback(self.config.rollback_policy())
            .events(self.events.clone())
    }

    /// A known file is gone: after the grace period (editors that delete and re-create), its
    /// plugin is retired.
    async fn vanished(&mut self, path: &Path, seen: Instant) -> PluginResult<ReloadOutcome> {
        let Some(entry) = self.files.get(path).cloned() else {
            return Ok(ReloadOutcome::Ignored);
        };
        tokio::time::sleep(self.config.removal_grace()).await;
        if !matches!(look(path).await?, OnDisk::Missing) {
            return Box::pin(self.reconcile(path, seen)).await;
        }
        self.files.remove(path);
        self.emit(ReloadEvent::FileChanged {
            path: path.to_path_buf(),
        });
        let Some(id) = entry.plugin_id else {
            return Ok(ReloadOutcome::Ignored);
        };
        if self.files.other_path_of(&id, path).is_some() {
            // Another file still provides this plugin.
            return Ok(ReloadOutcome::Unchanged);
        }
        let action = self.retire(&id, path).await?;
        Ok(ReloadOutcome::Deleted {
            plugin_id: id,
            action,
        })
    }

    /// Applies the delete action to a plugin whose file is gone.
    async fn retire(&mut self, id: &str, path: &Path) -> PluginResult<DeleteAction> {
        let action = self.config.on_delete();
        let Some(target) = self.target() else {
            return Ok(action);
        };
        if target.hosted_version(id).is_none() {
            return Ok(action);
        }
        let result = match action {
            DeleteAction::Remove => target.remove(id).await,
            DeleteAction::Stop => target.stop(id).await,
            DeleteAction::Keep => return Ok(action),
        };
        match result {
            Ok(()) => {
                self.failures.remove(id);
                self.emit(ReloadEvent::PluginRemoved {
                    plugin_id: id.to_string(),
                    path: path.to_path_buf(),
                });
                Ok(action)
            }
            Err(error) => Err(self.fail(id, error)),
        }
    }

    /// Compiles and validates `path` on the blocking pool.
    async fn prepare(&self, path: &Path) -> PluginResult<Prepared> {
        let loader = self.config.loader_for(path).ok_or_else(|| {
            PluginError::Config(format!(
                "no loader for {}; give one with HotReloadConfig::with_loader",
                path.display()
            ))
        })?;
        let self_test = self.config.self_test();
        let id = self.config.plugin_id_for(path);
        let owned = path.to_path_buf();
        tokio::task::spawn_blocking(move || prepare(&owned, &loader, self_test, id))
            .await
            .unwrap_or_else(|e| {
                Err(PluginError::Panicked {
                    id: path.display().to_string(),
                    message: format!("the loader panicked: {e}"),
                })
            })
    }

    fn started(&self, id: &str, path: &Path) {
        self.emit(ReloadEvent::ReloadStarted {
            plugin_id: id.to_string(),
            path: path.to_path_buf(),
        });
    }

    fn completed(&mut self, id: &str, version: &str, previous: &str, seen: Instant) {
        self.failures.remove(id);
        self.emit(ReloadEvent::ReloadCompleted {
            plugin_id: id.to_string(),
            version: version.to_string(),
            previous_version: previous.to_string(),
            duration: seen.elapsed(),
        });
    }

    /// Counts a failed reload, reports it, and hands the error back.
    fn fail(&mut self, id: &str, error: PluginError) -> PluginError {
        let attempt = self.failures.entry(id.to_string()).or_default();
        *attempt += 1;
        let attempt = *attempt;
        self.emit(ReloadEvent::ReloadFailed {
            plugin_id: id.to_string(),
            error: error.clone(),
            attempt,
        });
        error
    }

    fn emit(&self, event: ReloadEvent) {
        self.events.emit(event);
    }

    /// The plugin a path stands for before it compiles: the one it became (or is configured
    /// to host), else its stem.
    fn id_of(&self, path: &Path) -> String {
        self.files
            .get(path)
            .and_then(|entry| entry.plugin_id.clone())
            .or_else(|| self.config.plugin_id_for(path))
            .or_else(|| {
                path.file_stem()
                    .and_then(|stem| stem.to_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| path.display().to_string())
    }
}

/// Reads the file at `path` (bounded, regular files only: [`user_file`]) and hashes it.
async fn look(path: &Path) -> PluginResult<OnDisk> {
    let owned = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || {
        user_file::read(&owned, user_file::plugin_file_kind(&owned))
    })
    .await
    .map_err(|e| PluginError::io(format!("cannot read {}: {e}", path.display()), e))?;
    match read {
        Ok(bytes) if bytes.is_empty() => Ok(OnDisk::Empty),
        Ok(bytes) => Ok(OnDisk::Content(content_hash(&bytes))),
        Err(e) if e.is_not_found() => Ok(OnDisk::Missing),
        Err(e) => Err(e.into()),
    }
}

/// Paths, deduplicated, first occurrence first.
pub(crate) fn dedup(paths: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    paths
        .into_iter()
        .filter(|path| seen.insert(path.clone()))
        .collect()
}
