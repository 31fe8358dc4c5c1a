//! # Hot reload: new versions of plugins from disk, without a restart
//!
//! [`HotReloadManager`] watches directories of plugin files (`.rhai` scripts, `.wasm` / `.wat`
//! modules, or any extension given a loader) and keeps the plugins of a [`ReloadTarget`] (a
//! `PluginManager`) in line with them:
//!
//! ```text
//! file saved ─► notify (directory watch) ─► debounce ─► content hash unchanged? stop here
//!   ─► compile + validate off to the side (syntax, limits, link, `fn self_test()`)
//!        failed: ReloadFailed, the old version keeps serving, nothing else happens
//!   ─► swap in the plugin's mailbox, between two messages:
//!        new instance loaded, initialised and started on the same context
//!        state store: kept (after `fn migrate(old_state)`), or fresh if preserve_state is off
//!        failed: ReloadFailed, the old version keeps serving
//!   ─► ReloadCompleted: every later message is served by the new version
//!   ─► probation (failure window): more than max_attempts faults ─► RolledBack to the newest
//!        version that served without a fault, which runs again the messages the failing
//!        version failed (held meanwhile), then serves the messages after them
//! ```
//!
//! The plugin kernel knows nothing about actors: hot reload talks to the host through
//! [`ReloadTarget`], which `bilayer-actors` implements for its `PluginManager`. There a swap
//! is a message in the plugin's own mailbox, so it happens between two messages: no message is
//! lost, none is served by a half-loaded version, and each answer comes from exactly one
//! version (`PluginManager::version(id)`, and the `version` field of the `plugin.execute`
//! span).
//!
//! ## Files and editors
//!
//! Directories are watched, never single files. What happens is decided from what is on disk
//! when a path is looked at, not from the kind of event: writing in place, writing a
//! temporary file and renaming it over the original, deleting and re-creating, and bursts of
//! writes all end in one look at the final content. A save that leaves the content as it was
//! (same hash) does nothing; an empty file is ignored until it has content; editors' lock,
//! swap and backup files (`.#x.rhai`, `.x.rhai.swp`, `x.rhai~`) are not plugins. A new file
//! becomes a new plugin ([`HotReloadConfig::with_add_new_files`]); a deleted file removes,
//! stops or keeps its plugin ([`DeleteAction`]). A file hosts the plugin its loader names (a
//! Rhai script: its file stem or `PLUGIN_ID`) unless [`HotReloadConfig::with_plugin_id`] names
//! another, for plugins registered under another id.
//!
//! ## State
//!
//! With `preserve_state` (the default) the new version uses the plugin's host-owned state
//! store, so whatever the old version stored is there. A Rhai version that defines
//! `fn migrate(old_state)` gets the old state as a map and returns the state to start from;
//! the migration runs during the swap, between two messages, and if it throws the swap does not
//! happen. With `preserve_state` off the new version gets a fresh, empty store (the old one is
//! kept for a rollback). A rollback restores the state as the known-good version left it when a
//! migration or a fresh store came between; otherwise the store keeps what was written meanwhile.
//!
//! ## Rollback
//!
//! With `auto_rollback` (the default) the host keeps the last known-good version after a swap.
//! If the new version then fails (panic, trap, limit, runtime error) more than `max_attempts`
//! times within the failure window, it is replaced by the known-good one, `RolledBack` is
//! published, and the supervisor's restart count for the plugin starts afresh. Each such failure
//! is published as `ReloadFailed` with its number as `attempt`. Once the window has passed, the
//! new version is the known-good one. A version that fails to compile, validate, migrate or
//! start never replaces the one serving, so there is nothing to roll back.
//!
//! The rollback goes to the newest version that served: one whose window passed, or one that
//! the next save replaced during its window after it had answered messages without a single
//! fault (a version replaced after a fault, or before it answered anything, leaves the
//! known-good version before it in place). Good saves a second apart under load therefore each
//! become the rollback target in turn, and a bad save after them goes back to the last good
//! one. `RolledBack { to_version, .. }` names it.
//!
//! The messages the new version failed during its window are not answered at once: they are
//! held (at most `max_attempts`, each for at most [`HotReloadConfig::with_replay_hold`], 1 s by
//! default) and, if the version is rolled back, run again on the version rolled back to, with
//! the one that triggered the rollback (`RolledBack { replayed, .. }` counts them). So a bad
//! save under load costs no message: each is answered by its re-run, and one that fails there
//! too is answered with (or dead-lettered for) that error. A held message whose hold runs out,
//! or whose version is not rolled back, is answered with its failure as before.
//!
//! ## Example
//!
//! Without a target, changes are compiled and validated only; with one
//! (`.with_target(plugin_manager.clone())`) they are served. examples/hot_reload.rs runs the
//! whole loop with a `PluginManager`.
//!
//! ```
//! use bilayer_plugins::hot_reload::{HotReloadConfig, HotReloadManager, ReloadEvent, ReloadStrategy};
//!
//! # #[tokio::main]
//! # async fn main() -> bilayer_plugins::PluginResult<()> {
//! let dir = std::env::temp_dir().join(format!("bilayer-hot-reload-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! std::fs::write(dir.join("greet.rhai"), "fn greet(name) { `hello ${name}` }\ngreet")?;
//!
//! let config = HotReloadConfig::new().with_strategy(ReloadStrategy::Manual);
//! let manager = HotReloadManager::new(&dir, config);
//! manager.start().await?;
//! let mut events = manager.events();
//!
//! std::fs::write(dir.join("greet.rhai"), "fn greet(name) { `hi ${name}` }\ngreet")?;
//! manager.reload_now(dir.join("greet.rhai")).await?;
//! manager.stop().await;
//!
//! let mut validated = 0;
//! while let Some(event) = events.recv().await {
//!     if let ReloadEvent::Validated { plugin_id, .. } = event {
//!         assert_eq!(plugin_id, "greet");
//!         validated += 1;
//!     }
//! }
//! assert_eq!(validated, 1);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

// The swap protocol and its events (what a host implements and publishes: `bilayer-actors`)
// are part of the kernel; watching files and building new versions is the `hot-reload`
// feature.
#[cfg(feature = "hot-reload")]
mod config;
mod events;
#[cfg(feature = "hot-reload")]
mod files;
#[cfg(feature = "hot-reload")]
mod manager;
#[cfg(feature = "hot-reload")]
mod prepare;
#[cfg(feature = "hot-reload")]
mod reloader;
#[cfg(all(feature = "hot-reload", feature = "rhai"))]
mod rhai_hooks;
mod target;
#[cfg(feature = "hot-reload")]
mod watcher;

#[cfg(feature = "hot-reload")]
pub use config::{DeleteAction, HotReloadConfig, PluginLoader, ReloadStrategy};
pub use events::{ReloadEvent, ReloadEventSink, ReloadEvents};
#[cfg(feature = "hot-reload")]
pub use manager::HotReloadManager;
#[cfg(feature = "hot-reload")]
pub use prepare::migration_for;
#[cfg(feature = "hot-reload")]
pub use reloader::ReloadOutcome;
pub use target::{
    ReloadTarget, Replacement, RollbackPolicy, StateHandover, StateMigration, SwapReport,
};
