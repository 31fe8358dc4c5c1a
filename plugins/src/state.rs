//! The lifecycle state of a plugin.
//!
//! The manager enforces the order `Unloaded → Loaded → Running ⇄ Loaded → Unloaded`; `Loading`
//! is transient, `Paused` is reserved for plugins that pause themselves, and `Error` is where a
//! plugin ends when its supervisor gives up on it. `Untracked` is only what a plugin that leaves
//! its lifecycle to the host reports of itself.

use serde::{Deserialize, Serialize};

/// Where a plugin is in its lifecycle, as the host tracks it (`PluginManager::state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// Registered, or unloaded again: holds no resources.
    Unloaded,
    /// Its `load` is running.
    Loading,
    /// Loaded and not started, or stopped: calls are refused.
    Loaded,
    /// Started: calls are served.
    Running,
    /// Reserved for plugins that pause themselves; the host never sets it.
    Paused,
    /// Its supervisor gave up on it.
    Error,
    /// What a plugin reports of itself when it leaves its lifecycle to the host (the default
    /// [`AgentPlugin::state`](crate::AgentPlugin::state)). The host never holds it: it tracks
    /// every plugin's state itself, so ask the manager (`PluginManager::state`).
    Untracked,
}

impl std::fmt::Display for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
