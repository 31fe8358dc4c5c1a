//! The vocabulary of supervision: strategies, restart intensity, and the events an application
//! can observe.
//!
//! ractor reports that a child died and leaves the policy to the user (by default a supervisor
//! simply stops when any child dies). These are the Erlang/OTP policies, applied by
//! [`crate::supervisor::PluginSupervisor`].

use std::time::Duration;

/// Which plugins are restarted when one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SupervisionStrategy {
    /// Only the failed plugin is restarted.
    #[default]
    OneForOne,
    /// Every plugin of the manager is restarted.
    OneForAll,
    /// The failed plugin and every plugin registered after it are restarted.
    RestForOne,
}

impl std::str::FromStr for SupervisionStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "one_for_one" => Ok(Self::OneForOne),
            "one_for_all" => Ok(Self::OneForAll),
            "rest_for_one" => Ok(Self::RestForOne),
            other => Err(format!(
                "unknown supervision strategy `{other}`; use one_for_one, one_for_all or rest_for_one"
            )),
        }
    }
}

/// How many restarts a plugin may have within a period before its supervisor gives up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartIntensity {
    /// Restarts allowed within `within`; one more and the supervisor gives up.
    pub max_restarts: u32,
    /// The period restarts are counted over.
    pub within: Duration,
}

impl Default for RestartIntensity {
    /// OTP's default: 3 restarts within 5 seconds.
    fn default() -> Self {
        Self {
            max_restarts: 3,
            within: Duration::from_secs(5),
        }
    }
}

/// What the supervisor observed or did. Delivered on the channel returned by
/// `PluginManager::supervision_events()` and logged with `tracing`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SupervisorEvent {
    /// A plugin's actor started under the supervisor.
    Started {
        /// The plugin.
        plugin_id: String,
    },
    /// A plugin failed (panicked, or its restart failed).
    Failed {
        /// The plugin.
        plugin_id: String,
        /// What went wrong (the panic message or the restart error).
        reason: String,
    },
    /// A plugin was restarted, `restarts` times in total; `cause` is the plugin whose failure
    /// triggered it (itself under one_for_one).
    Restarted {
        /// The plugin restarted.
        plugin_id: String,
        /// The plugin whose failure triggered the restart.
        cause: String,
        /// Its restarts so far within the intensity period.
        restarts: u32,
    },
    /// The restart intensity was exceeded: the plugin is now in the `Error` state and its
    /// calls fail with `PluginError::Failed`.
    GaveUp {
        /// The plugin.
        plugin_id: String,
        /// The restarts it had.
        restarts: u32,
    },
    /// The supervisor passed a failure it could not handle to its parent (or, at the top of
    /// the tree, to the application through this event).
    Escalated {
        /// The supervisor's name.
        supervisor: String,
        /// The failure passed on.
        reason: String,
    },
    /// A plugin's actor stopped.
    Stopped {
        /// The plugin.
        plugin_id: String,
    },
    /// A new version of a plugin was swapped in (hot reload); its restart count within the
    /// intensity period starts afresh.
    Swapped {
        /// The plugin.
        plugin_id: String,
        /// The version replaced.
        from_version: String,
        /// The version now serving.
        to_version: String,
    },
    /// A new version, `from_version`, failed too often after its swap and `to_version` serves
    /// again: the newest version that served through its failure window or answered messages
    /// without a fault before it was replaced (hot reload's `ReloadEvent::RolledBack` says the
    /// same, with the number of failed messages run again on it). Its restart count within the
    /// intensity period starts afresh.
    RolledBack {
        /// The plugin.
        plugin_id: String,
        /// The version that failed too often.
        from_version: String,
        /// The version serving again.
        to_version: String,
    },
}
