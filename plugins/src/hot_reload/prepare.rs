//! Compiling and validating a new version off to the side, before anything is swapped: the
//! loader (syntax, ABI, limits that apply at compile time, capabilities at link time), then the
//! optional self-test, and the detection of the optional state migration.
//!
//! Rhai scripts opt in by defining functions:
//!
//! - `fn self_test()`: called once on the new version before the swap (not yet attached to a
//!   host, so it cannot use `state` or `call_plugin`); throwing or returning `false` rejects
//!   the version, which then never serves.
//! - `fn migrate(old_state)`: called during the swap, between two messages, with the state the
//!   old version left (a map); its result (a map) becomes the state the new version starts
//!   from. Only when state is preserved.
//!
//! WASM modules are validated by compiling, checking their ABI exports and linking them against
//! their grant; they have no self-test or migration hook (their state carries over as is).

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::config::PluginLoader;
use super::StateMigration;
use crate::rhai_runtime::RhaiPlugin;
use crate::{AgentPlugin, PluginError, PluginResult};

/// A new version that passed validation.
pub(crate) struct Prepared {
    /// The id it is hosted under: its own, unless the config names another for its file.
    pub id: String,
    pub plugin: Box<dyn AgentPlugin>,
    pub migration: Option<StateMigration>,
}

/// Loads `path` with `loader` and validates the result. Synchronous and CPU-bound: run it off
/// the async workers.
pub(crate) fn prepare(
    path: &Path,
    loader: &PluginLoader,
    self_test: bool,
    id: Option<String>,
) -> PluginResult<Prepared> {
    let plugin = loader(path)?;
    let id = id.unwrap_or_else(|| plugin.metadata().id.clone());
    if self_test {
        run_self_test(plugin.as_ref())?;
    }
    let migration = migration_for(plugin.as_ref());
    Ok(Prepared {
        id,
        plugin,
        migration,
    })
}

/// The state migration a plugin defines, if any: for a Rhai script, its `fn migrate(old_state)`.
pub fn migration_for(plugin: &dyn AgentPlugin) -> Option<StateMigration> {
    let rhai = plugin.as_any().downcast_ref::<RhaiPlugin>()?;
    if !defines(rhai, "migrate", 1) {
        return None;
    }
    Some(Arc::new(
        |plugin: &dyn AgentPlugin, old: Map<String, Value>| {
            let rhai = plugin
                .as_any()
                .downcast_ref::<RhaiPlugin>()
                .ok_or_else(|| {
                    PluginError::execution("the Rhai migration was given another kind of plugin")
                })?;
            let id = &rhai.metadata().id;
            match rhai.call_function("migrate", vec![Value::Object(old)])? {
            Value::Object(state) => Ok(state),
            other => Err(PluginError::Config(format!(
                "fn migrate of plugin `{id}` returned {}, not a map; return the new state as a map (#{{...}})",
                kind_of(&other)
            ))),
        }
        },
    ))
}

/// Runs a Rhai script's `fn self_test()` if it defines one.
fn run_self_test(plugin: &dyn AgentPlugin) -> PluginResult<()> {
    let Some(rhai) = plugin.as_any().downcast_ref::<RhaiPlugin>() else {
        return Ok(());
    };
    if !defines(rhai, "self_test", 0) {
        return Ok(());
    }
    let id = &rhai.metadata().id;
    match rhai.call_function("self_test", Vec::new()) {
        Ok(Value::Bool(false)) => Err(PluginError::execution(format!(
            "fn self_test of plugin `{id}` returned false; the new version was not swapped in"
        ))),
        Ok(_) => Ok(()),
        Err(e) => Err(PluginError::execution(format!(
            "fn self_test of plugin `{id}` failed ({e}); the new version was not swapped in"
        ))),
    }
}

/// Whether the script defines `name` with `arity` parameters.
fn defines(rhai: &RhaiPlugin, name: &str, arity: usize) -> bool {
    rhai.functions().iter().any(|signature| {
        let Some((fn_name, rest)) = signature.split_once('(') else {
            return false;
        };
        let params = rest.trim_end_matches(')').trim();
        let count = if params.is_empty() {
            0
        } else {
            params.split(',').count()
        };
        fn_name.trim() == name && count == arity
    })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "()",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a map",
    }
}
