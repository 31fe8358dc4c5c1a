//! What can go wrong talking to an LLM endpoint, one variant per thing the caller can act on.

use std::time::Duration;

use crate::PluginError;

/// The result type of [`LlmClient`](super::LlmClient) calls.
pub type LlmResult<T> = Result<T, LlmError>;

/// Why an LLM call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The endpoint refused the credentials (HTTP 401 or 403).
    #[error("LLM endpoint {url} refused the credentials (HTTP {status}): {message}; check the API key (config `api_key` or the {key_env} environment variable)")]
    Auth {
        /// The endpoint called.
        url: String,
        /// The HTTP status it answered.
        status: u16,
        /// What the endpoint said: its JSON `error.message`, or the start of the body.
        message: String,
        /// The environment variable the key is read from when the config sets none.
        key_env: String,
    },

    /// No API key is configured for a provider that requires one.
    #[error("no API key for provider `{provider}`; set the {key_env} environment variable or config `api_key`")]
    MissingApiKey {
        /// The configured provider.
        provider: String,
        /// The environment variable the key would be read from.
        key_env: String,
    },

    /// Still rate-limited or failing (429 / 5xx) after every retry.
    #[error("LLM endpoint {url} answered HTTP {status} after {attempts} attempts: {message}; retry later or raise `max_retries`")]
    Unavailable {
        /// The endpoint called.
        url: String,
        /// The status of the last attempt.
        status: u16,
        /// Attempts made (retries plus one).
        attempts: u32,
        /// What the endpoint said the last time (as for `Auth`).
        message: String,
    },

    /// Any other non-success status (400, 404, ...): the request itself is wrong.
    #[error("LLM endpoint {url} rejected the request (HTTP {status}): {message}")]
    Rejected {
        /// The endpoint called.
        url: String,
        /// The HTTP status it answered.
        status: u16,
        /// What the endpoint said (as for `Auth`).
        message: String,
    },

    /// No answer (or no next streamed chunk) within the configured timeout.
    #[error("LLM endpoint {url} did not answer within {after:?}; raise `timeout_ms` or check the server")]
    Timeout {
        /// The endpoint called.
        url: String,
        /// The timeout that passed.
        after: Duration,
    },

    /// The endpoint could not be reached at all.
    #[error("cannot reach LLM endpoint {url}: {message}; check `base_url` and that the server is running")]
    Connect {
        /// The endpoint called.
        url: String,
        /// The connection error.
        message: String,
    },

    /// The endpoint answered 2xx with a body that is not an OpenAI-style completion.
    #[error("malformed response from LLM endpoint {url}: {message}")]
    Malformed {
        /// The endpoint called.
        url: String,
        /// What is wrong with the body.
        message: String,
    },

    /// The request could not be built (bad input, bad configuration).
    #[error("invalid LLM request: {0}")]
    InvalidRequest(String),

    /// A tool the model asked for failed or does not exist.
    #[error("tool `{name}` failed: {message}")]
    Tool {
        /// The tool the model asked for.
        name: String,
        /// Why it failed.
        message: String,
    },
}

impl From<LlmError> for PluginError {
    fn from(e: LlmError) -> Self {
        match e {
            LlmError::InvalidRequest(message) => PluginError::InvalidInput(message),
            LlmError::MissingApiKey { .. } => PluginError::Config(e.to_string()),
            other => PluginError::Execution(other.to_string()),
        }
    }
}
