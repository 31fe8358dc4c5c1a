//! An LLM client for any OpenAI-compatible chat-completions endpoint, and the plugin around it.
//!
//! - [`LlmConfig`]: provider defaults (`openai`, `ollama`, `llamacpp`), base URL, model, API key
//!   (config or environment; required before sending only at OpenAI's own API, so a `base_url`
//!   naming a local OpenAI-compatible server needs none), timeout, retries with exponential
//!   backoff;
//! - [`LlmClient`]: [`chat`](LlmClient::chat) (one completion),
//!   [`chat_stream`](LlmClient::chat_stream) (token deltas from a `stream: true` SSE response)
//!   and, with the `rhai` feature, `chat_with_tools` (runs the tools the model asks for from a
//!   `RhaiToolRegistry` until it answers);
//! - [`LLMPlugin`]: the client as an [`AgentPlugin`](crate::AgentPlugin); input is a chat request
//!   (`{"messages": [...]}`) or a bare prompt string, output the completion as JSON.

mod client;
mod config;
mod error;
mod plugin;
mod sse;
#[cfg(feature = "rhai")]
mod tools;
mod types;

pub use client::{ChatStream, LlmClient};
pub use config::LlmConfig;
pub use error::{LlmError, LlmResult};
pub use plugin::LLMPlugin;
#[cfg(feature = "rhai")]
pub use tools::ToolRun;
pub use types::{ChatCompletion, ChatDelta, ChatMessage, ChatRequest, ToolCall, Usage};
