//! # bilayer-plugins: the plugin kernel
//!
//! Everything a plugin is, independent of how it is hosted.
//!
//! ## A tour of the crate
//!
//! One line per module; each module's own documentation says the rest.
//!
//! - `plugin`: [`AgentPlugin`], the trait every plugin implements (native Rust directly; Rhai
//!   scripts and WASM modules through their runtimes).
//! - `metadata`, `state`: [`PluginMetadata`] and [`PluginType`]; the lifecycle [`PluginState`].
//! - `error`: errors by layer: [`PluginError`] / [`PluginResult`] (what a plugin returns) and
//!   [`CallError`] (what a host's call of a plugin ends in), `Clone` enums whose variants name
//!   their cause.
//! - `context`: [`PluginContext`] (what the host gives a plugin at load), [`CallChain`],
//!   [`PluginCaller`], and [`run_blocking`] / [`run_detached`] for work that must leave the
//!   async workers.
//! - `content_hash`: [`content_hash`], the digest versions and watched contents are named by.
//! - `durable`: exactly-once effects in durable runs: [`step`], and the [`HopJournal`] a host
//!   puts in a hop's call chain to record (and on replay answer) the calls it makes.
//! - `state_store`: [`PluginStateStore`], a plugin's host-owned JSON state, bounded by
//!   `max_state_bytes`.
//! - `limit_settings`: [`LimitSettings`], which setting a limit error tells its reader to raise.
//! - `function_plugin`: [`FnPlugin`], a native plugin made from a closure over JSON values.
//! - `rhai_runtime` (feature `rhai`): runtime plugins written in Rhai, their sandbox, the tool
//!   registry and the rule engine.
//! - `wasm_runtime` (feature `wasm`): compile-time plugins sandboxed in WASM on wasmtime, with
//!   capabilities and limits.
//! - `builtin` (features `llm`, `http`, `sqlite`, `postgres`): the LLM (OpenAI-compatible),
//!   database (sqlx) and HTTP plugins.
//! - [`hot_reload`]: new versions of plugin files from disk, swapped into their host without a
//!   restart, with state carried over and rollback (the watcher: feature `hot-reload`).
//! - [`user_file`]: the one way a file a user named (definition, script, module, SQL) is read,
//!   refusing devices, FIFOs and files past a size limit.
//!
//! ## Cargo features
//!
//! The kernel (`plugin`, `metadata`, `state`, `error`, `context`, `state_store`,
//! `limit_settings`, `function_plugin`, `user_file`, and hot reload's swap protocol:
//! [`ReloadTarget`](hot_reload::ReloadTarget), [`Replacement`](hot_reload::Replacement),
//! [`SwapReport`](hot_reload::SwapReport), the reload events) is always built and needs no
//! heavy dependency. The rest is behind features, all on by default:
//!
//! | feature | what it adds | dependency |
//! |---|---|---|
//! | `rhai` | `rhai_runtime`; hot reload's `.rhai` loader, `fn self_test` and `fn migrate`; the LLM plugin's Rhai tools | rhai, regex |
//! | `wasm` | `wasm_runtime`; hot reload's `.wasm` / `.wat` loader | wasmtime |
//! | `wasi` | WASI preview 1 for modules granted `wasi` (implies `wasm`; without it such a grant is refused at link, naming the feature) | wasmtime-wasi |
//! | `hot-reload` | `HotReloadManager`, `HotReloadConfig`: watching plugin files and reloading them | notify, notify-debouncer-full |
//! | `llm` | `builtin::LLMPlugin`, `LlmClient` | reqwest |
//! | `http` | `builtin::HttpPlugin` | reqwest |
//! | `sqlite` | `builtin::DatabasePlugin` on SQLite (bundled) | sqlx (`sqlite`) |
//! | `postgres` | `builtin::DatabasePlugin` on PostgreSQL | sqlx (`postgres`) |
//!
//! With `default-features = false` and some of them, `builtin` holds the plugins asked for
//! (a database URL of a backend left out is refused at load, naming the feature); its config
//! overlay is always there.
//!
//! Hosting (one actor per plugin, supervision, the `PluginManager`) lives in `bilayer-actors`;
//! this crate reaches other plugins only through the [`PluginCaller`] trait object that the host
//! puts into [`PluginContext`].
//!
//! ```
//! use bilayer_plugins::{PluginMetadata, PluginType};
//!
//! let meta = PluginMetadata::new("my_plugin", "My Plugin", PluginType::Custom("analytics".into()))
//!     .with_description("High-performance analytics plugin")
//!     .with_capability("data_analysis");
//! assert!(meta.has_capability("data_analysis"));
//! ```

pub mod builtin;
mod content_hash;
mod context;
mod durable;
mod error;
mod function_plugin;
pub mod hot_reload;
mod limit_settings;
mod metadata;
mod plugin;
#[cfg(feature = "rhai")]
pub mod rhai_runtime;
mod state;
mod state_store;
pub mod user_file;
#[cfg(feature = "wasm")]
pub mod wasm_runtime;

pub use content_hash::content_hash;
pub use context::{
    run_blocking, run_detached, CallChain, HandOffBlocking, PluginCaller, PluginContext,
};
pub use durable::{step, HopJournal, JournalKey};
pub use error::{CallError, ErrorDetail, PluginError, PluginResult};
pub use function_plugin::{FnPlugin, JsonFunction, Reading, Transforming};
pub use limit_settings::LimitSettings;
pub use metadata::{PluginMetadata, PluginType};
pub use plugin::{AgentPlugin, AnyPlugin};
pub use state::PluginState;
pub use state_store::{PluginStateStore, StateGuard, DEFAULT_MAX_STATE_BYTES};

/// Re-exported so plugin authors need no direct dependency to implement [`AgentPlugin`].
pub use async_trait::async_trait;
