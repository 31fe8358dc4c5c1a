//! What the NATS transport can fail with, apart from plugins and calls: settings that cannot
//! work, and a server that refuses or loses a connection, stream or consumer.
//!
//! Building a system turns it into the `PluginError` its builder returns (`Config` and
//! `Transport`, same text), so callers of `AgentSystemBuilder::build` see one result type.

use bilayer_plugins::PluginError;

/// A failure of the NATS transport; the message says which server and what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The transport's settings cannot work together (e.g. a duplicate window shorter than
    /// the ack wait).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The server refused or lost a connection, a stream or a consumer.
    #[error("transport error: {0}")]
    Server(String),
}

impl From<TransportError> for PluginError {
    fn from(error: TransportError) -> Self {
        match error {
            TransportError::Config(message) => PluginError::Config(message),
            TransportError::Server(message) => PluginError::Transport(message),
        }
    }
}
