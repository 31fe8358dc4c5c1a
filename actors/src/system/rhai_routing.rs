//! [`RhaiRoutingPolicy`]: a routing script, the one [`RoutingPolicy`] the project ships (the
//! trait and the forms a script may take are in `routing.rs`, beside it). Behind the `rhai`
//! feature, since it is built on the plugin kernel's Rhai runtime.

use std::path::Path;

use bilayer_plugins::rhai_runtime::{RhaiConfig, RhaiPlugin};
use bilayer_plugins::{AgentPlugin, PluginResult};
use serde_json::{json, Value};

use super::routing::RoutingPolicy;
/// A [`RoutingPolicy`] backed by a Rhai script (see the module docs for the forms it takes).
pub struct RhaiRoutingPolicy {
    script: RhaiPlugin,
}

impl std::fmt::Debug for RhaiRoutingPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RhaiRoutingPolicy")
            .field("script", &self.script.metadata().id)
            .field("version", &self.version())
            .finish()
    }
}

impl RhaiRoutingPolicy {
    /// A policy running the script at `path`, with the default sandbox limits.
    pub fn from_file(path: impl AsRef<Path>) -> PluginResult<Self> {
        Self::from_file_with_config(path, RhaiConfig::default())
    }

    /// A policy running the script at `path` under `config`'s sandbox limits.
    pub fn from_file_with_config(path: impl AsRef<Path>, config: RhaiConfig) -> PluginResult<Self> {
        Ok(Self {
            script: RhaiPlugin::from_file_with_config(path, config)?,
        })
    }

    /// A policy running `script` (compiled; it needs no lifecycle steps).
    pub fn from_plugin(script: RhaiPlugin) -> Self {
        Self { script }
    }

    /// The version (content hash) of the script.
    pub fn version(&self) -> &str {
        &self.script.metadata().version
    }

    /// A policy running `source` (compiled here), with the default sandbox limits.
    pub fn from_source(source: &str) -> PluginResult<Self> {
        Ok(Self {
            script: RhaiPlugin::from_source("routing", source)?,
        })
    }
}

impl RoutingPolicy for RhaiRoutingPolicy {
    fn route(&self, agent: &str, output: &Value) -> Result<Option<Value>, String> {
        let decided = self
            .script
            .execute_value(json!({ "agent": agent, "message": output }))
            .map_err(|e| format!("routing script failed after `{agent}`: {e}"))?;
        match decided {
            Value::Null => Ok(None),
            Value::String(_) | Value::Array(_) => Ok(Some(decided)),
            Value::Object(mut fields) => Ok(fields.remove("next_agent")),
            other => Err(format!(
                "routing script returned {other} after `{agent}`; return an agent name, a list \
                 of names, a map with next_agent, or () to keep the output's next_agent"
            )),
        }
    }
}
