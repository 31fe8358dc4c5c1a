//! The lifecycle state of a plugin.
//!
//! The manager enforces the order `Unloaded → Loaded → Running ⇄ Loaded → Unloaded`; `Loading`
//! is transient, `Paused` is reserved for plugins that pause themselves, and `Error` is where a
//! plugin ends when its supervisor gives up on it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    Unloaded,
    Loading,
    Loaded,
    Running,
    Paused,
    Error,
}

impl PluginState {
    /// Compact encoding for lock-free state mirrors.
    pub fn as_u8(self) -> u8 {
        match self {
            PluginState::Unloaded => 0,
            PluginState::Loading => 1,
            PluginState::Loaded => 2,
            PluginState::Running => 3,
            PluginState::Paused => 4,
            PluginState::Error => 5,
        }
    }

    /// Inverse of [`PluginState::as_u8`]; unknown codes read as `Error`.
    pub fn from_u8(code: u8) -> Self {
        match code {
            0 => PluginState::Unloaded,
            1 => PluginState::Loading,
            2 => PluginState::Loaded,
            3 => PluginState::Running,
            4 => PluginState::Paused,
            _ => PluginState::Error,
        }
    }
}

impl std::fmt::Display for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
