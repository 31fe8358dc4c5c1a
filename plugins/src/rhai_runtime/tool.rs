//! `ToolDefinition`: what a tool script declares about itself, in the shapes LLM APIs expect.
//!
//! A tool script ends with `#{ tool: tool, execute: execute }`, where `tool` is a map with
//! `name`, `description` and `parameters` (a JSON Schema object, as in the seed's
//! scripts/tools/weather.rhai). The definition serializes to the OpenAI function-calling format
//! ([`ToolDefinition::to_openai`]) and to the MCP tool format ([`ToolDefinition::to_mcp`]).

use rhai::Dynamic;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::json::value_from_dynamic_within;
use super::RhaiConfig;
use crate::{PluginError, PluginResult};

/// A tool's name, description and JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    /// The name the tool is called by.
    pub name: String,
    /// What the tool does, for the model choosing it.
    pub description: String,
    /// JSON Schema of the arguments object (`{"type": "object", "properties": {...}, ...}`).
    pub parameters: Value,
}

impl ToolDefinition {
    /// `{"type": "function", "function": {"name", "description", "parameters"}}`.
    pub fn to_openai(&self) -> Value {
        json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            }
        })
    }

    /// `{"name", "description", "inputSchema"}`.
    pub fn to_mcp(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "inputSchema": self.parameters,
        })
    }

    /// Reads the `tool` map of a tool script (`script` names it in errors), measured against
    /// `config`'s size and depth limits first, like every value leaving a script.
    pub(crate) fn from_script_value(
        script: &str,
        tool: &Dynamic,
        config: &RhaiConfig,
    ) -> PluginResult<Self> {
        let invalid = |what: &str| {
            PluginError::Config(format!(
                "tool script {script}: {what}; `tool` must be a map like \
                 #{{ name: \"get_weather\", description: \"...\", parameters: #{{ type: \"object\", properties: #{{...}} }} }}"
            ))
        };
        let tool =
            value_from_dynamic_within(tool, config, || format!("the `tool` map of {script}"))?;
        let Value::Object(mut fields) = tool else {
            return Err(invalid("`tool` is not a map"));
        };
        let name = match fields.remove("name") {
            Some(Value::String(name)) if !name.trim().is_empty() => name,
            _ => return Err(invalid("`tool.name` is missing or not a non-empty string")),
        };
        let description = match fields.remove("description") {
            Some(Value::String(text)) => text,
            None | Some(Value::Null) => String::new(),
            Some(_) => return Err(invalid("`tool.description` is not a string")),
        };
        let parameters = match fields.remove("parameters") {
            Some(schema @ Value::Object(_)) => schema,
            None | Some(Value::Null) => json!({ "type": "object", "properties": {} }),
            Some(_) => return Err(invalid("`tool.parameters` is not a map (JSON Schema)")),
        };
        Ok(Self {
            name,
            description,
            parameters,
        })
    }
}
