//! The hooks a Rhai script may define for hot reload (see `prepare.rs`): `fn self_test()`, run
//! on the new version before the swap, and `fn migrate(old_state)`, run during it. Built with
//! the `rhai` feature; without it no plugin has a hook.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::StateMigration;
use crate::rhai_runtime::RhaiPlugin;
use crate::{AgentPlugin, PluginError, PluginResult};

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
pub(super) fn run_self_test(plugin: &dyn AgentPlugin) -> PluginResult<()> {
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
