//! Built-in compile-time plugins that do real work: an OpenAI-compatible LLM client
//! ([`LLMPlugin`]), SQL over sqlx ([`DatabasePlugin`]) and outbound HTTP ([`HttpPlugin`]).
//!
//! Each is an ordinary [`AgentPlugin`](crate::AgentPlugin): register it with a `PluginManager`,
//! call it with JSON text, and reach it from Rhai with `call_plugin("<id>", ...)`. Each also has
//! a Rust API for callers that want typed values (for example [`LlmClient::chat_stream`] for
//! token streaming). Configuration comes from builder methods and, at load time, from the JSON
//! config the host puts in [`PluginContext`](crate::PluginContext); config keys override
//! builder values.
//!
//! Each plugin is a Cargo feature of this crate (`llm`, `http`, `sqlite` and/or `postgres` for
//! the database plugin), all on by default.
//!
//! ```no_run
//! use bilayer_plugins::builtin::{DatabasePlugin, HttpPlugin, LLMPlugin};
//!
//! let llm = LLMPlugin::new("openai").with_model("gpt-4o-mini");
//! let db = DatabasePlugin::new("sqlite::memory:").read_only(true).max_rows(500);
//! let http = HttpPlugin::new().allow_host("api.example.com");
//! # let _ = (llm, db, http);
//! ```

mod config_merge;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod database;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "llm")]
pub mod llm;

pub use config_merge::{merge_config, ConfigOrigin};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use database::{DatabaseConfig, DatabasePlugin, DbRequest};
#[cfg(feature = "http")]
pub use http::{HttpConfig, HttpPlugin, HttpRequest};
#[cfg(all(feature = "llm", feature = "rhai"))]
pub use llm::ToolRun;
#[cfg(feature = "llm")]
pub use llm::{
    ChatCompletion, ChatDelta, ChatMessage, ChatRequest, ChatStream, LLMPlugin, LlmClient,
    LlmConfig, LlmError, LlmResult, ToolCall, Usage,
};
