//! The shape of a system definition's TOML: one serde struct per table, exactly as written
//! (every field optional where the file may leave it out, unknown keys refused), so reading a
//! file and deciding what it means stay apart. What the values mean (which plugin backs an
//! agent, which limits apply, which transport) is decided by the other modules of
//! `system_config`, from these structs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole file: the system's settings and its tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SystemFile {
    pub(super) name: Option<String>,
    pub(super) entry: Option<String>,
    pub(super) max_hops: Option<usize>,
    pub(super) max_branches: Option<u32>,
    pub(super) max_in_flight: Option<usize>,
    pub(super) hop_timeout_ms: Option<u64>,
    pub(super) strategy: Option<String>,
    pub(super) max_restarts: Option<u32>,
    pub(super) restart_window_ms: Option<u64>,
    pub(super) routing: Option<PathBuf>,
    #[serde(default)]
    pub(super) limits: Limits,
    #[serde(default)]
    pub(super) hot_reload: HotReload,
    pub(super) transport: Option<TransportEntry>,
    pub(super) durability: Option<Durability>,
    #[serde(default)]
    pub(super) agents: Vec<AgentEntry>,
    #[serde(default)]
    pub(super) plugins: Vec<PluginEntry>,
}

/// Limits of script agents (as in [`RhaiConfig`](bilayer_plugins::rhai_runtime::RhaiConfig))
/// and WASM agents (as in [`WasmLimits`](bilayer_plugins::wasm_runtime::WasmLimits)), and
/// every agent's state size; unset fields keep their defaults. `timeout_ms` concerns both
/// scripts and WASM modules.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Limits {
    pub(super) max_operations: Option<u64>,
    pub(super) max_call_stack_depth: Option<usize>,
    pub(super) max_expr_depth: Option<usize>,
    pub(super) max_string_size: Option<usize>,
    pub(super) max_array_size: Option<usize>,
    pub(super) max_map_size: Option<usize>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) max_memory_bytes: Option<usize>,
    pub(super) fuel: Option<u64>,
    pub(super) max_output_bytes: Option<usize>,
    /// Not a script or WASM limit: the size of each agent's state, for every kind of plugin.
    pub(super) max_state_bytes: Option<usize>,
}

/// The `[hot_reload]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HotReload {
    #[serde(default)]
    pub(super) dirs: Vec<PathBuf>,
}

/// The `[transport]` table. Read in every build, so its keys are known whatever the build;
/// only `kind` is used without the `nats` feature (which refuses `kind = "nats"`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(super) struct TransportEntry {
    pub(super) kind: Option<String>,
    pub(super) url: Option<String>,
    pub(super) stream: Option<String>,
    pub(super) subject_prefix: Option<String>,
    pub(super) token: Option<String>,
    pub(super) token_env: Option<String>,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) credentials_file: Option<PathBuf>,
    pub(super) ack_wait_ms: Option<u64>,
    pub(super) max_deliver: Option<u32>,
    pub(super) max_ack_pending: Option<u32>,
    pub(super) batch: Option<usize>,
    pub(super) storage: Option<String>,
    pub(super) duplicate_window_ms: Option<u64>,
    pub(super) results_max_age_ms: Option<u64>,
}

/// The `[durability]` table: where durable runs are journaled.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Durability {
    pub(super) store: Option<String>,
    pub(super) power_loss_safe: Option<bool>,
}

/// An `[[agents]]` table: an agent and the plugin behind it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentEntry {
    pub(super) name: String,
    pub(super) script: Option<PathBuf>,
    pub(super) wasm: Option<PathBuf>,
    pub(super) native: Option<String>,
    pub(super) builtin: Option<String>,
    pub(super) config: Option<toml::Value>,
    pub(super) init_sql_file: Option<PathBuf>,
    pub(super) limits: Option<Limits>,
    #[serde(default)]
    pub(super) capabilities: Vec<String>,
    /// Messages the agent serves at once (`PluginOptions::concurrency`).
    pub(super) concurrency: Option<usize>,
    /// The field whose equal values are served one at a time (`PluginOptions::order_by`).
    pub(super) order_by: Option<String>,
}

/// A support plugin: callable by agents, never routed to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PluginEntry {
    pub(super) builtin: String,
    pub(super) id: Option<String>,
    pub(super) config: Option<toml::Value>,
    pub(super) init_sql_file: Option<PathBuf>,
    /// Calls the plugin serves at once (`PluginOptions::concurrency`); beyond it calls queue.
    pub(super) max_concurrency: Option<usize>,
}

/// The support plugin's id: its `id`, else the builtin's name.
pub(super) fn plugin_id(entry: &PluginEntry) -> &str {
    entry.id.as_deref().unwrap_or(entry.builtin.as_str())
}
