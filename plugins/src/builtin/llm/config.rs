//! `LlmConfig`: where the endpoint is, which model, which key, how long to wait, how often to
//! retry. `LlmConfig::for_provider` fills in a provider's defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// OpenAI's hosted API, the one endpoint that needs a key by default.
const OPENAI_API: &str = "https://api.openai.com/v1";

/// Settings of an [`LlmClient`](super::LlmClient). Every field is also a key of the plugin's
/// JSON config (`timeout_ms`, `max_retries`, ...).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmConfig {
    /// A name for errors and defaults: `openai`, `ollama`, `llamacpp`, or anything else.
    pub provider: String,
    /// The API root, ending before `/chat/completions` (e.g. `https://api.openai.com/v1`).
    pub base_url: String,
    /// The model asked for when the request names none.
    pub model: String,
    /// The bearer token. When `None`, read from `api_key_env` at client build time.
    pub api_key: Option<String>,
    /// The environment variable holding the key (`OPENAI_API_KEY` for `openai`).
    pub api_key_env: String,
    /// Whether a request without a key is refused before it is sent. Unset (the default): only
    /// when `base_url` is the provider's hosted API (OpenAI's), so a local OpenAI-compatible
    /// server named by `base_url` needs no key unless it asks for one (its 401 then says so).
    #[serde(default)]
    pub require_api_key: Option<bool>,
    /// Per attempt: the whole answer (non-streaming) or each next chunk (streaming).
    pub timeout_ms: u64,
    /// Retries after a 429, a 5xx or a failed connection (so `max_retries + 1` attempts).
    pub max_retries: u32,
    /// First backoff; doubled each retry up to `max_backoff_ms`. `Retry-After` wins when sent.
    pub initial_backoff_ms: u64,
    /// The cap on the doubled backoff.
    pub max_backoff_ms: u64,
    /// Sent when the request does not set them.
    pub temperature: Option<f64>,
    /// Sent as `max_tokens` when the request does not set it.
    pub max_tokens: Option<u32>,
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self::for_provider("openai")
    }
}

impl LlmConfig {
    /// Defaults for a provider:
    ///
    /// | provider              | base URL                      | model         | key env          |
    /// |-----------------------|-------------------------------|---------------|------------------|
    /// | `openai`              | `https://api.openai.com/v1`   | `gpt-4o-mini` | `OPENAI_API_KEY` (required at that URL) |
    /// | `ollama`              | `http://127.0.0.1:11434/v1`   | `llama3.2`    | `OLLAMA_API_KEY` (optional) |
    /// | `llamacpp`, `llama.cpp` | `http://127.0.0.1:8080/v1`  | `default`     | `LLAMACPP_API_KEY` (optional) |
    /// | anything else         | `http://127.0.0.1:8080/v1`    | `default`     | `<NAME>_API_KEY` (optional) |
    pub fn for_provider(provider: &str) -> Self {
        let (base_url, model) = match provider {
            "openai" => (OPENAI_API, "gpt-4o-mini"),
            "ollama" => ("http://127.0.0.1:11434/v1", "llama3.2"),
            _ => ("http://127.0.0.1:8080/v1", "default"),
        };
        let env_name: String = provider
            .chars()
            .filter(|c| *c != '.')
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            provider: provider.to_string(),
            base_url: base_url.to_string(),
            model: model.to_string(),
            api_key: None,
            api_key_env: format!("{env_name}_API_KEY"),
            require_api_key: None,
            timeout_ms: 60_000,
            max_retries: 3,
            initial_backoff_ms: 500,
            max_backoff_ms: 8_000,
            temperature: None,
            max_tokens: None,
        }
    }

    /// [`timeout_ms`](Self::timeout_ms) as a `Duration`.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// `<base_url>/chat/completions`.
    pub fn chat_url(&self) -> String {
        format!("{}/chat/completions", self.base_url.trim_end_matches('/'))
    }

    /// Whether a request needs a key before it is sent: `require_api_key` when set, else
    /// whether `base_url` is the provider's hosted API (OpenAI's). Any other endpoint (a local
    /// server, a proxy) gets the key when there is one and decides for itself.
    pub fn requires_api_key(&self) -> bool {
        self.require_api_key.unwrap_or_else(|| {
            self.provider == "openai" && self.base_url.trim_end_matches('/') == OPENAI_API
        })
    }

    /// The configured key, else the one in `api_key_env` (empty values count as none).
    pub fn resolve_api_key(&self) -> Option<String> {
        self.api_key
            .clone()
            .or_else(|| std::env::var(&self.api_key_env).ok())
            .filter(|k| !k.trim().is_empty())
    }

    /// The wait before retry number `retry` (0-based): exponential, capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u64.checked_shl(retry.min(20)).unwrap_or(u64::MAX);
        Duration::from_millis(
            self.initial_backoff_ms
                .saturating_mul(factor)
                .min(self.max_backoff_ms),
        )
    }
}
