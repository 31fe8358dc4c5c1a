//! # bilayer
//!
//! An actor-based multi-agent runtime with a dual-layer plugin system:
//!
//! - **compile-time plugins**: native Rust types implementing [`AgentPlugin`], and sandboxed
//!   WASM modules;
//! - **runtime plugins**: Rhai scripts, compiled once, run in a sandbox with limits.
//!
//! Every plugin lives in its own supervised actor with its own mailbox; [`PluginManager`] is
//! the handle that registers, drives and calls them.
//!
//! ```
//! use bilayer::prelude::*;
//!
//! struct Upper(PluginMetadata);
//!
//! #[async_trait]
//! impl AgentPlugin for Upper {
//!     fn metadata(&self) -> &PluginMetadata { &self.0 }
//!     async fn execute(&mut self, input: String) -> PluginResult<String> {
//!         Ok(input.to_uppercase())
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> PluginResult<()> {
//! let manager = PluginManager::new("my-agent");
//! manager.register(Upper(PluginMetadata::new("upper", "Upper", PluginType::Tool))).await?;
//! manager.load_all().await?;
//! manager.start_all().await?;
//! assert_eq!(manager.execute("upper", "hi".to_string()).await?, "HI");
//! # Ok(())
//! # }
//! ```
//!
//! The path of a message: this crate (facade, CLI) → `bilayer_actors` (plugin actors,
//! supervisor) → `bilayer_plugins` (the plugin kernel and the Rhai runtime).
//!
//! ## A tour of the crate
//!
//! One line per module; each module's own documentation says the rest.
//!
//! - [`prelude`]: everything a plugin author or an application needs, in one `use`.
//! - [`system_config`]: agent systems defined in TOML, read, checked (`bilayer check`), built
//!   and reloaded; one private submodule per concern: `schema` (the TOML's tables), `shape`
//!   (reading it collecting every problem, in bounded passes), `positions` (where each key is,
//!   indexed in one walk), `problems` (each placed at its key), `sources` (the plugin behind
//!   each table), `limits`, `check`, `transport`, `build`, `reload`.
//! - [`routing`]: a Rhai routing script as a [`RoutingPolicy`].
//! - [`system_reload`]: what `--watch` reloads: a system's agents and its routing script.
//! - [`jsonl`]: JSON-lines input read as a stranger may send it (`bilayer run --input`): every
//!   bad or overlong line is that line's own refusal.
//! - `orders` (private): workload W1 "order routing", the one the Python peers run; the
//!   library uses its native agents (a system definition's `native = "order_intake"`), and the
//!   binary, benches, tests and the W1 example compile the same file for the workload's orders
//!   and expected answer (see docs/ARCHITECTURE.md).
//! - `journal` (with `sqlite` or `postgres`): durable runs, the journal of every run's hops,
//!   calls and outcome in a SQL store (`bilayer_actors::journal`, re-exported).
//! - [`features`]: the error a definition or a subcommand gives when it needs a Cargo
//!   feature this build lacks.
//! - [`builtin`], [`hot_reload`], [`rhai_runtime`], [`wasm_runtime`], [`user_file`]: the
//!   modules of `bilayer_plugins` of the same names, re-exported.
//!
//! ## Cargo features
//!
//! All on by default: `cargo build` gives the CLI and the library everything above. Turn them
//! off (`default-features = false`) for a lighter build; the plugin kernel (`AgentPlugin`,
//! `FnPlugin`, the context, metadata, state and errors), the actors, agent systems and TOML
//! definitions are always there. A definition or a subcommand that needs a feature the build
//! lacks fails with an error naming it (see [`features`]).
//!
//! | feature | what it adds | heavy dependency |
//! |---|---|---|
//! | `rhai` | Rhai scripts: script agents, routing scripts, `bilayer exec` of `.rhai`, `bilayer tools`, the bundled order pipeline, LLM tool calls | rhai |
//! | `wasm` | WASM modules: WASM agents, `bilayer exec` of `.wasm` / `.wat` | wasmtime |
//! | `wasi` | WASI preview 1 for modules granted `wasi` (implies `wasm`) | wasmtime-wasi |
//! | `hot-reload` | watching plugin files: `HotReloadManager`, `run --watch`, `worker --watch` | notify |
//! | `llm` | the `llm` built-in plugin (OpenAI-compatible) | reqwest |
//! | `http` | the `http` built-in plugin | reqwest |
//! | `sqlite` | the `database` built-in plugin on SQLite; journal stores (durable runs, `bilayer runs`) in SQLite | sqlx (sqlite, bundled) |
//! | `postgres` | the `database` built-in plugin on PostgreSQL; journal stores in PostgreSQL | sqlx (postgres) |
//! | `nats` | the NATS JetStream transport: `[transport] kind = "nats"`, `run --transport nats`, `bilayer worker` | async-nats |
//!
//! The `bilayer` binary (runtime/main.rs, runtime/cli/: one file per subcommand) is not part
//! of the library.

pub mod features;
pub mod jsonl;
// Shared with the binary, benches, tests and examples (`#[path]`); the library uses only the
// native agents.
#[allow(dead_code)]
mod orders;
#[cfg(feature = "rhai")]
pub mod routing;
pub mod system_config;
#[cfg(feature = "hot-reload")]
pub mod system_reload;

/// Built-in compile-time plugins: LLM (OpenAI-compatible), database (sqlx), HTTP; each one a
/// Cargo feature (`llm`, `http`, `sqlite` / `postgres`).
pub mod builtin {
    pub use bilayer_plugins::builtin::*;
}

/// Hot reload: plugin files watched on disk, new versions swapped into a `PluginManager`
/// between two messages, state carried over, rollback to the last known-good version.
pub mod hot_reload {
    pub use bilayer_plugins::hot_reload::*;
}

/// Runtime plugins written in Rhai: scripts, sandbox, tool registry, rule engine.
#[cfg(feature = "rhai")]
pub mod rhai_runtime {
    pub use bilayer_plugins::rhai_runtime::*;
}

/// Sandboxed compile-time plugins: WASM modules on wasmtime, with a byte ABI
/// (docs/wasm-abi.md), capabilities and limits.
#[cfg(feature = "wasm")]
pub mod wasm_runtime {
    pub use bilayer_plugins::wasm_runtime::*;
}

/// Reading a file a user named (definition, script, module, SQL): regular files only, each
/// kind with its size limit.
pub mod user_file {
    pub use bilayer_plugins::user_file::*;
}

/// Durable runs: the journal of every run's hops, calls and outcome in a SQL store (SQLite or
/// PostgreSQL), read back to resume a run and by `bilayer runs`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use bilayer_actors::journal;
pub use bilayer_actors::Transport;
pub use bilayer_actors::{
    AgentSystem, AgentSystemBuilder, DeadLetter, Outcome, OutcomeStatus, OutcomeStream,
    RoutingPolicy, SystemTotals, DEFAULT_MAX_BRANCHES, DEFAULT_MAX_HOPS, DEFAULT_MAX_IN_FLIGHT,
};
#[cfg(feature = "nats")]
pub use bilayer_actors::{
    NatsCredentials, NatsStorage, NatsTransport, TransportError, DEFAULT_NATS_URL,
};
pub use bilayer_actors::{
    PluginFactory, PluginInfo, PluginManager, PluginManagerBuilder, PluginOptions,
    PluginStatsSnapshot, RestartIntensity, SupervisionStrategy, SupervisorEvent,
    DEFAULT_CONCURRENCY, DEFAULT_EXECUTE_TIMEOUT, DEFAULT_SUPPORT_CONCURRENCY,
};
pub use bilayer_plugins::{
    async_trait, content_hash, step, AgentPlugin, CallChain, CallError, ErrorDetail, FnPlugin,
    HandOffBlocking, HopJournal, JournalKey, LimitSettings, PluginCaller, PluginContext,
    PluginError, PluginMetadata, PluginResult, PluginState, PluginStateStore, PluginType,
};

/// Everything a plugin author or an application needs: `use bilayer::prelude::*;`.
pub mod prelude {
    pub use std::any::Any;

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub use crate::builtin::DatabasePlugin;
    #[cfg(feature = "http")]
    pub use crate::builtin::HttpPlugin;
    #[cfg(feature = "llm")]
    pub use crate::builtin::LLMPlugin;
    pub use crate::hot_reload::ReloadEvent;
    #[cfg(feature = "hot-reload")]
    pub use crate::hot_reload::{HotReloadConfig, HotReloadManager, ReloadStrategy};
    pub use crate::{
        async_trait, AgentPlugin, AgentSystem, FnPlugin, Outcome, OutcomeStatus, PluginContext,
        PluginError, PluginManager, PluginMetadata, PluginOptions, PluginResult, PluginState,
        PluginStateStore, PluginType, SupervisionStrategy, SupervisorEvent,
    };
}
