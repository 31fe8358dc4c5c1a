//! Errors by layer, as kameo and tokio separate them: what a plugin returns ([`PluginError`]),
//! and what a host's call of a plugin can end in ([`CallError`]: not found, stopped, refused,
//! timed out, panicked, a call cycle, or the plugin's own error). Transport failures are the
//! transport's (`bilayer_actors`'s `TransportError`).
//!
//! Every variant names its cause, and where the caller can do something about it, the message
//! says what. Errors cross actor boundaries and are fanned out to several waiters, so both types
//! are `Clone`: the few that wrap another error ([`PluginError::Io`], [`PluginError::Json`])
//! share it ([`ErrorDetail`]), and report it as their `source()`.
//!
//! **Why `PluginError` still has the host's variants.** The seed's API calls
//! `manager.execute(..)` and matches what it returns as a `PluginResult` (`Err(PluginError::
//! NotFound(id))`), and its plugins use `?` on host calls inside functions returning
//! `PluginResult`. So the seed-shaped entry points (`PluginManager::execute`,
//! `PluginContext::call_plugin`) keep returning `PluginResult`, with the host's outcomes as
//! `PluginError` variants of the same name and text (`From<CallError> for PluginError`), while the
//! host's own layer speaks [`CallError`] (`PluginCaller::call`, `PluginManager::call`).

use std::fmt;
use std::sync::Arc;
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
    Json(#[source] ErrorDetail),

    /// An I/O operation failed.
    #[error("I/O error: {0}")]
    Io(#[source] ErrorDetail),

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

    /// An I/O failure described by `message`, caused by `source` (kept as the error's source).
    pub fn io(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        PluginError::Io(ErrorDetail::caused_by(message, source))
    }

    /// A JSON failure described by `message`, caused by `source` (kept as the error's source).
    pub fn json(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        PluginError::Json(ErrorDetail::caused_by(message, source))
    }

    /// True for failures that count against the plugin's health (a crash, a trap, a limit), as
    /// opposed to the caller's mistakes (bad input, unknown id, wrong state). `Panicked` and
    /// `Timeout` are the host's outcomes ([`CallError`]); a plugin returning one passes on a
    /// call of its own that ended so, which counts against it too.
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
        PluginError::json(e.to_string(), e)
    }
}

impl From<std::io::Error> for PluginError {
    fn from(e: std::io::Error) -> Self {
        PluginError::io(e.to_string(), e)
    }
}

/// The text of an I/O or JSON failure, and the error that caused it when there is one (shared,
/// so the error stays `Clone`; it is the `source()` of this detail, and so of the chain).
/// Reads as its text: it dereferences to `str` (`detail.contains("..")`) and displays it;
/// two details are equal when their texts are.
#[derive(Clone)]
pub struct ErrorDetail {
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ErrorDetail {
    /// `message`, caused by `source`.
    pub fn caused_by(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// The text.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for ErrorDetail {
    fn from(message: String) -> Self {
        Self {
            message,
            source: None,
        }
    }
}

impl From<&str> for ErrorDetail {
    fn from(message: &str) -> Self {
        Self::from(message.to_string())
    }
}

impl std::ops::Deref for ErrorDetail {
    type Target = str;
    fn deref(&self) -> &str {
        &self.message
    }
}

impl PartialEq for ErrorDetail {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl fmt::Debug for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.message, f)
    }
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ErrorDetail {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// How a host's call of a plugin ended when it brought no answer: the plugin was not there or
/// not serving, the call could not be made (a cycle), the host stopped waiting, the plugin
/// panicked, or it answered with its own error ([`CallError::Plugin`]). What
/// [`PluginCaller::call`](crate::PluginCaller::call) and `PluginManager::call` return.
///
/// Each variant reads exactly as the [`PluginError`] variant of the same name, which it
/// becomes through `From` (so `?` turns a call's failure into a plugin's):
///
/// ```
/// use bilayer_plugins::{CallError, PluginError};
///
/// let failed = CallError::NotFound("ghost".into());
/// assert!(!failed.is_plugin_fault());
/// assert_eq!(PluginError::from(failed), PluginError::NotFound("ghost".into()));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No plugin with this id is registered with the manager.
    #[error("plugin `{0}` is not registered; register it first or check the id")]
    NotFound(String),

    /// The plugin's actor is gone (the manager was shut down or the plugin was unregistered).
    #[error("plugin `{0}` is no longer running (its actor has stopped)")]
    Stopped(String),

    /// The plugin is not in a state that serves calls (not started yet, or stopped).
    #[error("plugin `{id}` cannot {operation} while {state:?}; it must be {expected}")]
    InvalidState {
        /// The plugin.
        id: String,
        /// What was asked (`execute`, ...).
        operation: &'static str,
        /// The state it is in.
        state: PluginState,
        /// The state the operation needs.
        expected: &'static str,
    },

    /// The supervisor gave up on the plugin after too many restarts.
    #[error("plugin `{id}` has failed permanently after {restarts} restarts; re-register it")]
    Failed {
        /// The plugin.
        id: String,
        /// The restarts it had.
        restarts: u32,
    },

    /// The call would re-enter a plugin that waits further up the same call chain (its
    /// actor would deadlock); the chain is listed in call order.
    #[error("plugin call cycle: {}; a plugin cannot call back into a caller that waits for it", .0.join(" -> "))]
    CallCycle(Vec<String>),

    /// The host stopped waiting for the answer.
    #[error("plugin `{id}` did not answer within {after:?}")]
    Timeout {
        /// The plugin.
        id: String,
        /// How long the host waited.
        after: Duration,
    },

    /// The plugin panicked while handling the call. It has been handed to its supervisor.
    #[error("plugin `{id}` panicked: {message}")]
    Panicked {
        /// The plugin.
        id: String,
        /// The panic message.
        message: String,
    },

    /// The plugin answered with an error of its own.
    #[error(transparent)]
    Plugin(PluginError),
}

impl CallError {
    /// True when the call failed through the plugin's own fault: it panicked, did not answer
    /// in time, or returned an error that is a fault ([`PluginError::is_plugin_fault`]: a
    /// limit, a script's runtime error). The host's refusals are not.
    pub fn is_plugin_fault(&self) -> bool {
        match self {
            CallError::Panicked { .. } | CallError::Timeout { .. } => true,
            CallError::Plugin(error) => error.is_plugin_fault(),
            _ => false,
        }
    }
}

impl From<CallError> for PluginError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::NotFound(id) => PluginError::NotFound(id),
            CallError::Stopped(id) => PluginError::Stopped(id),
            CallError::InvalidState {
                id,
                operation,
                state,
                expected,
            } => PluginError::InvalidState {
                id,
                operation,
                state,
                expected,
            },
            CallError::Failed { id, restarts } => PluginError::Failed { id, restarts },
            CallError::CallCycle(chain) => PluginError::CallCycle(chain),
            CallError::Timeout { id, after } => PluginError::Timeout { id, after },
            CallError::Panicked { id, message } => PluginError::Panicked { id, message },
            CallError::Plugin(error) => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::{CallError, PluginError};

    #[test]
    fn io_and_json_errors_keep_their_source_and_their_text() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = PluginError::from(io);
        assert_eq!(error.to_string(), "I/O error: no such file");
        let detail = error.source().expect("the detail");
        let io = detail.source().expect("the I/O error");
        assert!(io.downcast_ref::<std::io::Error>().is_some());
        assert_eq!(error.clone(), error, "still Clone and comparable");

        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let error = PluginError::from(json);
        assert!(
            matches!(&error, PluginError::Json(m) if m.contains("EOF")),
            "{error}"
        );
        assert!(error.source().and_then(Error::source).is_some());
    }

    #[test]
    fn a_call_error_reads_as_the_plugin_error_it_becomes() {
        let cases = [
            CallError::NotFound("p".into()),
            CallError::Stopped("p".into()),
            CallError::CallCycle(vec!["a".into(), "a".into()]),
            CallError::Timeout {
                id: "p".into(),
                after: std::time::Duration::from_millis(5),
            },
            CallError::Panicked {
                id: "p".into(),
                message: "boom".into(),
            },
            CallError::Plugin(PluginError::execution("no stock")),
        ];
        for error in cases {
            let text = error.to_string();
            assert_eq!(PluginError::from(error).to_string(), text);
        }
        assert!(CallError::Plugin(PluginError::Runtime {
            location: "x".into(),
            message: "y".into()
        })
        .is_plugin_fault());
        assert!(!CallError::Plugin(PluginError::InvalidInput("x".into())).is_plugin_fault());
    }
}
