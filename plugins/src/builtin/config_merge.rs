//! Overlaying the host's JSON plugin config on a built-in's builder-made config.
//!
//! Every built-in keeps its settings in a serde struct. At load time the keys of the host's
//! config object (for example a `[plugins.database.config]` table of a system TOML) replace the
//! matching fields, so a deployment can change a setting without touching code.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::{PluginError, PluginResult};

/// `base` with the fields present in `overrides` (a JSON object, or `null` for none) replaced.
pub(crate) fn merge_config<T>(plugin: &str, base: &T, overrides: &Value) -> PluginResult<T>
where
    T: Serialize + DeserializeOwned,
{
    let overrides = match overrides {
        Value::Null => return round_trip(plugin, base),
        Value::Object(map) => map,
        other => {
            return Err(PluginError::Config(format!(
                "{plugin} plugin config must be a JSON object of settings, got {other}"
            )))
        }
    };
    let mut merged = serde_json::to_value(base)?;
    if let Value::Object(fields) = &mut merged {
        for (key, value) in overrides {
            if !fields.contains_key(key) {
                let known: Vec<&str> = fields.keys().map(String::as_str).collect();
                return Err(PluginError::Config(format!(
                    "{plugin} plugin config has unknown key `{key}`; known keys: {}",
                    known.join(", ")
                )));
            }
            fields.insert(key.clone(), value.clone());
        }
    }
    serde_json::from_value(merged)
        .map_err(|e| PluginError::Config(format!("{plugin} plugin config is invalid: {e}")))
}

fn round_trip<T: Serialize + DeserializeOwned>(plugin: &str, base: &T) -> PluginResult<T> {
    serde_json::from_value(serde_json::to_value(base)?)
        .map_err(|e| PluginError::Config(format!("{plugin} plugin config is invalid: {e}")))
}
