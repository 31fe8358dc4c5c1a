//! The one error type of the plugin layer.
//!
//! Every variant names its cause, and where the caller can do something about it, the message
//! says what. Errors cross actor boundaries and thread hand-offs, so the type is `Clone` and owns
//! its data (no borrowed sources, no boxed `dyn Error`).

use std::time::Duration;

use crate::PluginState;

/// The result type of every plugin operation.
pub type PluginResult<T> = Result<T, PluginError>;

/// Why a plugin operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// No plugin with this id is registered with the manager.
    #[error("plugin `{0}` is not registered; register it first or check the id")]
    NotFound(String),

    /// A plugin with this id is already registered.
    #[error("plugin `{0}` is already registered; unregister it first or pick another id")]
    AlreadyRegistered(String),

    /// An operation was asked of a plugin in a state that does not allow it
    /// (execute before start, start before load, ...).
    #[error("plugin `{id}` cannot {operation} while {state:?}; it must be {expected}")]
    InvalidState {
        /// The plugin.
        id: String,
        /// What was asked (`execute`, `start`, ...).
        operation: &'static str,
        /// The state it is in.
        state: PluginState,
        /// The state the operation needs.
        expected: &'static str,
    },

    /// A declared dependency is not registered.
    #[error("plugin `{plugin}` depends on `{dependency}`, which is not registered")]
    MissingDependency {
        /// The plugin declaring the dependency.
        plugin: String,
        /// The dependency that is not registered.
        dependency: String,
    },

    /// A plugin cannot start because a dependency of it is not running.
    #[error("plugin `{plugin}` cannot start: its dependency `{dependency}` is {state:?}, not Running; start it first")]
    DependencyNotReady {
        /// The plugin that cannot start.
        plugin: String,
        /// The dependency that is not running.
        dependency: String,
        /// The dependency's state.
        state: PluginState,
    },

    /// A single lifecycle step would break the dependency order: loading a plugin before its
    /// dependency is loaded, or stopping (unloading) a plugin that a running (loaded)
    /// dependent still needs. `detail` names the other plugin, its state and what to do.
    #[error("plugin `{plugin}` cannot {operation}: {detail}")]
    DependencyOrder {
        /// The plugin the step was asked of.
        plugin: String,
        /// The step (`load`, `stop`, `unload`).
        operation: &'static str,
        /// The other plugin, its state and what to do.
        detail: String,
    },

    /// A plugin cannot be unregistered while another plugin that depends on it is loaded.
    #[error("plugin `{id}` is a dependency of `{dependent}`, which is still loaded; unregister that first")]
    InUse {
        /// The plugin that cannot be unregistered.
        id: String,
        /// The loaded plugin that depends on it.
        dependent: String,
    },

    /// Declared dependencies form a cycle; the ids are listed in cycle order.
    #[error("plugin dependency cycle: {}", .0.join(" -> "))]
    DependencyCycle(Vec<String>),

    /// A plugin call would re-enter a plugin that is already waiting further up the same
    /// call chain, which would deadlock its actor; the chain is listed in call order.
    #[error("plugin call cycle: {}; a plugin cannot call back into a caller that waits for it", .0.join(" -> "))]
    CallCycle(Vec<String>),

    /// The plugin panicked while handling the call. It has been handed to its supervisor.
    #[error("plugin `{id}` panicked: {message}")]
    Panicked {
        /// The plugin.
        id: String,
        /// The panic message.
        message: String,
    },

    /// The call did not finish within its deadline.
    #[error("plugin `{id}` did not answer within {after:?}")]
    Timeout {
        /// The plugin.
        id: String,
        /// The deadline that passed.
        after: Duration,
    },

    /// The supervisor gave up on the plugin after too many restarts.
    #[error("plugin `{id}` has failed permanently after {restarts} restarts; re-register it")]
    Failed {
        /// The plugin.
        id: String,
        /// The restarts it had.
        restarts: u32,
    },

    /// The plugin's actor is gone (the manager was shut down or the plugin was unregistered).
    #[error("plugin `{0}` is no longer running (its actor has stopped)")]
    Stopped(String),

    /// The input could not be understood by the plugin.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The plugin's configuration or artifact is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A resource limit of the sandbox was hit.
    #[error("limit exceeded: {limit}: {detail}")]
    LimitExceeded {
        /// The limit hit (`max_operations`, `timeout`, ...).
        limit: String,
        /// What exceeded it, and which setting raises it.
        detail: String,
    },

    /// A script or module failed to compile; `location` is `file:line:column` when known.
    #[error("compile error at {location}: {message}")]
    Compile {
        /// `file:line:column` when known.
        location: String,
        /// The compiler's message.
        message: String,
    },

    /// A script or module failed while running; `location` names file, line, column and
    /// function when known.
    #[error("runtime error at {location}: {message}")]
    Runtime {
        /// File, line, column and function when known.
        location: String,
        /// What failed.
        message: String,
    },

    /// (De)serialisation of JSON failed.
    #[error("JSON error: {0}")]
    Json(String),

    /// An I/O operation failed.
    #[error("I/O error: {0}")]
    Io(String),

    /// A plugin-specific failure.
    #[error("{0}")]
    Execution(String),

    /// The transport between processes (NATS) refused or lost a connection, stream or
    /// consumer; the message says which server and what to check.
    #[error("transport error: {0}")]
    Transport(String),
}

impl PluginError {
    /// A plugin-specific failure with a message.
    pub fn execution(message: impl Into<String>) -> Self {
        PluginError::Execution(message.into())
    }

    /// True for failures that count against the plugin's health (a crash, a trap, a limit), as
    /// opposed to the caller's mistakes (bad input, unknown id, wrong state).
    pub fn is_plugin_fault(&self) -> bool {
        matches!(
            self,
            PluginError::Panicked { .. }
                | PluginError::Timeout { .. }
                | PluginError::LimitExceeded { .. }
                | PluginError::Runtime { .. }
        )
    }
}

impl From<serde_json::Error> for PluginError {
    fn from(e: serde_json::Error) -> Self {
        PluginError::Json(e.to_string())
    }
}

impl From<std::io::Error> for PluginError {
    fn from(e: std::io::Error) -> Self {
        PluginError::Io(e.to_string())
    }
}
