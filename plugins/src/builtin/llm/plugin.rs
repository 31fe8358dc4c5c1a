//! `LLMPlugin`: an [`LlmClient`] behind the [`AgentPlugin`] interface.
//!
//! Input: a chat request (`{"messages": [...], "tools": [...], ...}`), `{"prompt": "...",
//! "system": "..."}`, or a bare prompt (a JSON string or plain text). Output:
//! [`ChatCompletion::to_json`]: `{"content", "tool_calls", "finish_reason", "usage", "model",
//! "message"}`. With `LLMPlugin::with_tools` the registry's tools are offered to the model;
//! with `LLMPlugin::run_tools` the plugin also runs them and returns the final answer (both in
//! tools.rs, with the `rhai` feature, since the tools are Rhai scripts).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{ChatRequest, LlmClient, LlmConfig};
use crate::builtin::{merge_config, ConfigOrigin};
#[cfg(feature = "rhai")]
use crate::rhai_runtime::RhaiToolRegistry;
use crate::{AgentPlugin, PluginContext, PluginError, PluginMetadata, PluginResult, PluginType};

/// An OpenAI-compatible chat model as a plugin (id `llm` unless changed).
pub struct LLMPlugin {
    metadata: PluginMetadata,
    config: LlmConfig,
    client: Option<LlmClient>,
    /// The Rhai tools offered to the model, and how many rounds of them to run (tools.rs).
    #[cfg(feature = "rhai")]
    pub(super) tools: Option<std::sync::Arc<RhaiToolRegistry>>,
    #[cfg(feature = "rhai")]
    pub(super) tool_rounds: Option<usize>,
}

impl std::fmt::Debug for LLMPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LLMPlugin")
            .field("id", &self.metadata.id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LLMPlugin {
    /// A plugin with `provider`'s defaults (see [`LlmConfig::for_provider`]).
    pub fn new(provider: &str) -> Self {
        Self::with_config(LlmConfig::for_provider(provider))
    }

    /// A plugin with these settings, registered as `llm`.
    pub fn with_config(config: LlmConfig) -> Self {
        let metadata =
            PluginMetadata::new("llm", format!("LLM ({})", config.provider), PluginType::Llm)
                .with_description("Chat completions from an OpenAI-compatible endpoint")
                .with_capability("chat")
                .with_capability("tool_calls");
        Self {
            metadata,
            config,
            client: None,
            #[cfg(feature = "rhai")]
            tools: None,
            #[cfg(feature = "rhai")]
            tool_rounds: None,
        }
    }

    /// Registers the plugin under `id` instead of `llm`.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.metadata.id = id.into();
        self
    }

    /// The API root (see [`LlmConfig::base_url`]).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.config.base_url = base_url.into();
        self
    }

    /// The model used when a request names none.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.config.model = model.into();
        self
    }

    /// The bearer token, instead of reading `api_key_env`.
    pub fn with_api_key(mut self, api_key: impl Into<String>) -> Self {
        self.config.api_key = Some(api_key.into());
        self
    }

    /// Per-attempt timeout (see [`LlmConfig::timeout_ms`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout_ms = timeout.as_millis().try_into().unwrap_or(u64::MAX);
        self
    }

    /// Retries after a 429, a 5xx or a failed connection.
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.config.max_retries = max_retries;
        self
    }

    /// The first retry wait and its cap.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.initial_backoff_ms = initial.as_millis().try_into().unwrap_or(u64::MAX);
        self.config.max_backoff_ms = max.as_millis().try_into().unwrap_or(u64::MAX);
        self
    }

    /// The configuration in effect (after `load`, including the host's config).
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// The client, once loaded: use it for streaming ([`LlmClient::chat_stream`]).
    pub fn client(&self) -> Option<&LlmClient> {
        self.client.as_ref()
    }

    /// Answers one request.
    pub async fn complete(&self, input: Value) -> PluginResult<Value> {
        let client = self.client.as_ref().ok_or_else(|| {
            PluginError::execution(format!(
                "LLM plugin `{}` has no client; load it before executing",
                self.metadata.id
            ))
        })?;
        let request = ChatRequest::from_json(input).map_err(PluginError::InvalidInput)?;
        #[cfg(feature = "rhai")]
        if let Some(registry) = &self.tools {
            return self.complete_with_tools(client, request, registry).await;
        }
        Ok(client.chat(&request).await?.to_json())
    }
}

#[async_trait]
impl AgentPlugin for LLMPlugin {
    fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }

    async fn load(&mut self, ctx: &PluginContext) -> PluginResult<()> {
        self.config = merge_config(ConfigOrigin::Host("LLM"), &self.config, ctx.config())?;
        self.client = Some(LlmClient::new(self.config.clone())?);
        Ok(())
    }

    async fn unload(&mut self) -> PluginResult<()> {
        self.client = None;
        Ok(())
    }

    /// Another handle on the same HTTP client (its connection pool) and tools: calls overlap
    /// up to the plugin's concurrency (`max_concurrency` in a definition).
    fn concurrent_instance(&self) -> Option<Box<dyn AgentPlugin>> {
        Some(Box::new(LLMPlugin {
            metadata: self.metadata.clone(),
            config: self.config.clone(),
            client: self.client.clone(),
            #[cfg(feature = "rhai")]
            tools: self.tools.clone(),
            #[cfg(feature = "rhai")]
            tool_rounds: self.tool_rounds,
        }))
    }

    async fn execute(&mut self, input: String) -> PluginResult<String> {
        // Plain text that is not JSON is a prompt.
        let input = serde_json::from_str(&input).unwrap_or(Value::String(input));
        Ok(self.complete(input).await?.to_string())
    }

    async fn execute_json(&mut self, input: Value) -> PluginResult<Value> {
        self.complete(input).await
    }
}
