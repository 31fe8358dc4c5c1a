//! Overlaying a JSON config object on a built-in's settings: the one place where config keys
//! change a built-in's settings, so what a front end checks is what the plugin's load accepts.
//!
//! Every built-in keeps its settings in a serde struct. The keys of a config object replace the
//! matching fields, so a deployment can change a setting without touching code; a key the struct
//! does not have, or a value of the wrong type, is refused naming the known keys, so a typo does
//! not pass silently. Two readers go through [`merge_config`]: each built-in's `init_plugin`, with
//! the config its host put in the `PluginContext`, and bilayer's system definitions, which check
//! a built-in's `config` table before building (`bilayer check` reports what the plugin's load
//! would refuse). Only the wording differs ([`ConfigOrigin`]), each reader's own terms.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::{PluginError, PluginResult};

/// Where a config comes from, which decides how its errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOrigin<'a> {
    /// The JSON config a host hands the plugin named so (`"LLM"`) at load: "LLM plugin config
    /// has unknown key ...", "... must be a JSON object of settings".
    Host(&'a str),
    /// The `config` table of the built-in named so (`"llm"`) in a TOML definition: "llm config
    /// has unknown key ...", "... must be a table of settings".
    Table(&'a str),
}

impl ConfigOrigin<'_> {
    /// What errors call the config: "LLM plugin config", "llm config".
    fn subject(&self) -> String {
        match self {
            ConfigOrigin::Host(plugin) => format!("{plugin} plugin config"),
            ConfigOrigin::Table(builtin) => format!("{builtin} config"),
        }
    }

    /// What the config must be, in its reader's terms.
    fn object(&self) -> &'static str {
        match self {
            ConfigOrigin::Host(_) => "a JSON object",
            ConfigOrigin::Table(_) => "a table",
        }
    }
}

/// `base` with the fields present in `overrides` (a JSON object, or `null` for none) replaced.
/// Unknown keys and wrongly typed values are [`PluginError::Config`], worded for `origin`.
pub fn merge_config<T>(origin: ConfigOrigin<'_>, base: &T, overrides: &Value) -> PluginResult<T>
where
    T: Serialize + DeserializeOwned,
{
    let invalid =
        |e: serde_json::Error| PluginError::Config(format!("{} is invalid: {e}", origin.subject()));
    let overrides = match overrides {
        Value::Null => return serde_json::from_value(serde_json::to_value(base)?).map_err(invalid),
        Value::Object(map) => map,
        other => {
            return Err(PluginError::Config(format!(
                "{} must be {} of settings, got {other}",
                origin.subject(),
                origin.object()
            )))
        }
    };
    let mut merged = serde_json::to_value(base)?;
    if let Value::Object(fields) = &mut merged {
        for (key, value) in overrides {
            if !fields.contains_key(key) {
                let known: Vec<&str> = fields.keys().map(String::as_str).collect();
                return Err(PluginError::Config(format!(
                    "{} has unknown key `{key}`; known keys: {}",
                    origin.subject(),
                    known.join(", ")
                )));
            }
            fields.insert(key.clone(), value.clone());
        }
    }
    serde_json::from_value(merged).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Settings {
        max_rows: u32,
        url: String,
    }

    fn base() -> Settings {
        Settings {
            max_rows: 10,
            url: "sqlite::memory:".into(),
        }
    }

    fn message(error: PluginError) -> String {
        match error {
            PluginError::Config(message) => message,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn keys_replace_fields_and_null_keeps_them() {
        let merged = merge_config(ConfigOrigin::Host("X"), &base(), &json!({"max_rows": 3}));
        assert_eq!(merged.unwrap().max_rows, 3);
        let kept = merge_config(ConfigOrigin::Host("X"), &base(), &Value::Null);
        assert_eq!(kept.unwrap(), base());
    }

    #[test]
    fn errors_are_worded_for_their_origin() {
        let unknown = json!({"max_row": 3});
        assert_eq!(
            message(merge_config(ConfigOrigin::Host("DB"), &base(), &unknown).unwrap_err()),
            "DB plugin config has unknown key `max_row`; known keys: max_rows, url"
        );
        assert_eq!(
            message(merge_config(ConfigOrigin::Table("db"), &base(), &unknown).unwrap_err()),
            "db config has unknown key `max_row`; known keys: max_rows, url"
        );
        assert_eq!(
            message(merge_config(ConfigOrigin::Host("DB"), &base(), &json!(5)).unwrap_err()),
            "DB plugin config must be a JSON object of settings, got 5"
        );
        assert_eq!(
            message(merge_config(ConfigOrigin::Table("db"), &base(), &json!(5)).unwrap_err()),
            "db config must be a table of settings, got 5"
        );
        let wrong_type = json!({"max_rows": "many"});
        assert!(message(
            merge_config(ConfigOrigin::Table("db"), &base(), &wrong_type).unwrap_err()
        )
        .starts_with("db config is invalid: "));
    }
}
