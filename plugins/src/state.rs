//! The lifecycle state of a plugin.
//!
//! The manager enforces the order `Unloaded → Loaded → Running ⇄ Loaded → Unloaded`; `Loading`
//! is transient, `Paused` is reserved for plugins that pause themselves, and `Error` is where a
//! plugin ends when its supervisor gives up on it. `Untracked` is only what a plugin that leaves
//! its lifecycle to the host reports of itself.

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
    /// What a plugin reports of itself when it leaves its lifecycle to the host (the default
    /// [`AgentPlugin::state`](crate::AgentPlugin::state)). The host never holds it: it tracks
    /// every plugin's state itself, so ask the manager (`PluginManager::state`).
    Untracked,
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
            PluginState::Untracked => 6,
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
            6 => PluginState::Untracked,
            _ => PluginState::Error,
        }
    }
}

impl std::fmt::Display for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::PluginState;

    /// Every state survives the host's compact encoding, the one a plugin reports of itself
    /// when it leaves its lifecycle to the host included.
    #[test]
    fn every_state_reads_back_from_its_code() {
        for state in [
            PluginState::Unloaded,
            PluginState::Loading,
            PluginState::Loaded,
            PluginState::Running,
            PluginState::Paused,
            PluginState::Error,
            PluginState::Untracked,
        ] {
            assert_eq!(PluginState::from_u8(state.as_u8()), state);
        }
    }
}
