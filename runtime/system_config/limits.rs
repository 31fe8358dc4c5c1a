//! The limits a definition sets (`[limits]`, each agent's `limits`) turned into each plugin's
//! own: [`RhaiConfig`] for scripts and the routing script, [`WasmLimits`] for modules, the state
//! size for every agent. It also knows which kind of agent uses which key, so `check` can
//! refuse a key set where nothing uses it, and how a limit error names the key that raises it
//! (`[limits] max_string_size`, or the agent's own `limits.max_string_size`).
//!
//! The script limits exist with the `rhai` feature, the module limits with `wasm`; the keys are
//! known in every build, so a definition reads the same whatever the build.

#[cfg(any(feature = "rhai", feature = "wasm"))]
use std::time::Duration;

use bilayer_actors::PluginOptions;
#[cfg(feature = "rhai")]
use bilayer_plugins::rhai_runtime::{RhaiConfig, SCRIPT_THREAD_STACK};
#[cfg(feature = "wasm")]
use bilayer_plugins::wasm_runtime::WasmLimits;
#[cfg(any(feature = "rhai", feature = "wasm"))]
use bilayer_plugins::LimitSettings;
use serde_json::Value;

use super::schema::{AgentEntry, Limits};
use super::sources::AgentSource;
use super::SystemDefinition;

impl SystemDefinition {
    /// The routing script's limits: `[limits]`, its errors naming those keys.
    #[cfg(feature = "rhai")]
    pub(super) fn base_limits(&self) -> RhaiConfig {
        apply_limits(RhaiConfig::default(), &self.raw.limits).limit_settings(limit_settings(
            None,
            RHAI_LIMIT_KEYS,
            "script agent",
        ))
    }

    /// Plugin options carrying the agent's `max_state_bytes` (its own `[agents.limits]`, else
    /// `[limits]`), when the definition sets one.
    pub(super) fn state_limit_for(&self, agent: &AgentEntry) -> PluginOptions {
        let max_bytes = agent
            .limits
            .as_ref()
            .and_then(|limits| limits.max_state_bytes)
            .or(self.raw.limits.max_state_bytes);
        match max_bytes {
            Some(max_bytes) => PluginOptions::new().max_state_bytes(max_bytes),
            None => PluginOptions::new(),
        }
    }

    /// A script agent's limits: `[limits]` overridden by its own `limits`, its errors naming
    /// the keys to raise.
    #[cfg(feature = "rhai")]
    pub(super) fn limits_for(&self, agent: &AgentEntry) -> RhaiConfig {
        let base = apply_limits(RhaiConfig::default(), &self.raw.limits)
            .limit_settings(limit_settings(Some(agent), RHAI_LIMIT_KEYS, "script agent"));
        match &agent.limits {
            Some(limits) => apply_limits(base, limits),
            None => base,
        }
    }

    /// The agent's script limits, refused (naming the keys) when they could need more native
    /// stack than the threads running scripts have.
    #[cfg(feature = "rhai")]
    pub(super) fn checked_limits_for(&self, agent: &AgentEntry) -> Result<RhaiConfig, String> {
        let limits = self.limits_for(agent);
        limits.check_stack(SCRIPT_THREAD_STACK).map_err(|message| {
            let table = if agent.limits.is_some() {
                "[agents.limits] (or [limits])"
            } else {
                "[limits]"
            };
            format!("agent `{}`: {table}: {message}", agent.name)
        })?;
        Ok(limits)
    }

    /// A WASM agent's limits: [`WasmLimits`]' defaults, then `[limits]`, then its own; its
    /// errors naming the keys to raise.
    #[cfg(feature = "wasm")]
    pub(super) fn wasm_limits_for(&self, agent: &AgentEntry) -> WasmLimits {
        let base = apply_wasm_limits(WasmLimits::default(), &self.raw.limits)
            .limit_settings(limit_settings(Some(agent), WASM_LIMIT_KEYS, "WASM agent"));
        match &agent.limits {
            Some(limits) => apply_wasm_limits(base, limits),
            None => base,
        }
    }
}

/// The `limits` keys that set Rhai limits, with the [`RhaiConfig`] limit each one sets (the
/// name a limit error reports).
const RHAI_LIMIT_KEYS: &[(&str, &str)] = &[
    ("max_operations", "max_operations"),
    ("max_call_stack_depth", "max_call_stack_depth"),
    ("max_expr_depth", "max_expr_depth"),
    ("max_string_size", "max_string_size"),
    ("max_array_size", "max_array_size"),
    ("max_map_size", "max_map_size"),
    ("timeout_ms", "timeout"),
];

/// The `limits` keys that set WASM limits, with the [`WasmLimits`] limit each one sets (the
/// name a limit error reports). A WASM limit with no key here (`max_table_elements`) cannot be
/// set in a definition, and its errors give no advice to raise a setting.
const WASM_LIMIT_KEYS: &[(&str, &str)] = &[
    ("timeout_ms", "timeout"),
    ("max_memory_bytes", "max_memory_bytes"),
    ("fuel", "fuel"),
    ("max_output_bytes", "max_output_bytes"),
];

/// The keys a `limits` table sets.
pub(super) fn limit_keys_set(limits: &Limits) -> Vec<String> {
    match serde_json::to_value(limits) {
        Ok(Value::Object(fields)) => fields
            .into_iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(key, _)| key)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a `limits` key sets a limit of scripts, of WASM modules (both, for `timeout_ms`).
/// Neither for `max_state_bytes`, which every kind of agent has.
pub(super) fn limit_key_users(key: &str) -> (bool, bool) {
    let sets = |keys: &[(&str, &str)]| keys.iter().any(|(known, _)| *known == key);
    (sets(RHAI_LIMIT_KEYS), sets(WASM_LIMIT_KEYS))
}

/// What kind of limit a `limits` key sets, for the keys only some kinds of agent use.
pub(super) fn limit_key_kind(key: &str) -> Option<&'static str> {
    match limit_key_users(key) {
        (true, true) => Some("limit of Rhai scripts and WASM modules"),
        (true, false) => Some("Rhai script limit"),
        (false, true) => Some("WASM module limit"),
        (false, false) => None,
    }
}

/// The kind of limit `key` sets, when an agent backed by `source` does not use it.
pub(super) fn limit_key_unused_by(key: &str, source: &AgentSource) -> Option<&'static str> {
    let kind = limit_key_kind(key)?;
    let (script, wasm) = limit_key_users(key);
    let used = match source {
        #[cfg(feature = "rhai")]
        AgentSource::Script(_) => script,
        #[cfg(feature = "wasm")]
        AgentSource::Wasm(_) => wasm,
        AgentSource::Native(_) | AgentSource::Builtin(..) => false,
    };
    let _ = (script, wasm); // a build with neither runtime uses neither
    (!used).then_some(kind)
}

/// How limit errors of a script or module name the key that raises each of the limits in
/// `keys` (`RHAI_LIMIT_KEYS`, `WASM_LIMIT_KEYS`): the agent's own `limits.KEY` when it sets
/// that key, else `[limits] KEY` (or the agent's, for it alone); for the routing script
/// (`agent` = `None`), `[limits] KEY`. `kind` names the agents `[limits]` applies to.
#[cfg(any(feature = "rhai", feature = "wasm"))]
fn limit_settings(agent: Option<&AgentEntry>, keys: &[(&str, &str)], kind: &str) -> LimitSettings {
    let own: Vec<String> = agent
        .and_then(|agent| agent.limits.as_ref())
        .map(limit_keys_set)
        .unwrap_or_default();
    LimitSettings::keys(keys.iter().map(|(key, limit)| {
        let words = match agent {
            Some(agent) if own.iter().any(|k| k == key) => {
                format!("`limits.{key}` in the [[agents]] table of `{}`", agent.name)
            }
            Some(agent) => format!(
                "`[limits] {key}` (every {kind}; `limits.{key}` in the [[agents]] table \
                 of `{}` for it alone)",
                agent.name
            ),
            None => format!("`[limits] {key}`"),
        };
        (*limit, words)
    }))
}

#[cfg(feature = "rhai")]
fn apply_limits(mut config: RhaiConfig, limits: &Limits) -> RhaiConfig {
    if let Some(v) = limits.max_operations {
        config = config.max_operations(v);
    }
    if let Some(v) = limits.max_call_stack_depth {
        config = config.max_call_stack_depth(v);
    }
    if let Some(v) = limits.max_expr_depth {
        config = config.max_expr_depth(v);
    }
    if let Some(v) = limits.max_string_size {
        config = config.max_string_size(v);
    }
    if let Some(v) = limits.max_array_size {
        config = config.max_array_size(v);
    }
    if let Some(v) = limits.max_map_size {
        config = config.max_map_size(v);
    }
    if let Some(ms) = limits.timeout_ms {
        config = config.timeout(Duration::from_millis(ms));
    }
    config
}

#[cfg(feature = "wasm")]
fn apply_wasm_limits(mut wasm: WasmLimits, limits: &Limits) -> WasmLimits {
    if let Some(ms) = limits.timeout_ms {
        wasm = wasm.timeout(Duration::from_millis(ms));
    }
    if let Some(bytes) = limits.max_memory_bytes {
        wasm = wasm.max_memory_bytes(bytes);
    }
    if let Some(fuel) = limits.fuel {
        wasm = wasm.fuel(fuel);
    }
    if let Some(bytes) = limits.max_output_bytes {
        wasm = wasm.max_output_bytes(bytes);
    }
    wasm
}
