//! What plugin backs each agent and support plugin: the `script`, `wasm`, `native` or `builtin`
//! of its table resolved into an [`AgentSource`], a built-in's `config` read (with
//! `init_sql_file`) and checked the way the plugin's own load reads it (through
//! [`merge_config`], the same function), and a WASM agent's grant and engine. `check`, `build`
//! and hot reload all make their plugins here, so they agree on what a table means.

use std::path::{Path, PathBuf};

use bilayer_plugins::builtin::{
    merge_config, ConfigOrigin, DatabaseConfig, DatabasePlugin, HttpConfig, HttpPlugin, LLMPlugin,
    LlmConfig,
};
use bilayer_plugins::wasm_runtime::{WasmCapabilities, WasmEngine, WasmLimits, WasmPlugin};
use bilayer_plugins::{user_file, AgentPlugin, PluginError, PluginResult};
use serde_json::Value;

use super::schema::AgentEntry;
use super::SystemDefinition;
use crate::orders::{builtin_native, BUILTIN_NATIVE};

/// The built-in plugins a system TOML can name.
pub const BUILTIN_PLUGINS: &[&str] = &["llm", "database", "http"];

/// What plugin backs an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSource {
    /// A Rhai script (`script = "path"`).
    Script(PathBuf),
    /// A WebAssembly module (`wasm = "path"`).
    Wasm(PathBuf),
    /// A native plugin compiled into bilayer (`native = "order_intake"`, ...).
    Native(String),
    /// A built-in (`llm`, `database`, `http`) with its JSON config (`init_sql_file` read in).
    Builtin(String, Value),
}

impl SystemDefinition {
    /// What plugin backs `agent`: exactly one of `script`, `wasm`, `native`, `builtin`, with
    /// paths resolved and a built-in's config read (refused when it is none or several).
    pub(super) fn source_of(&self, agent: &AgentEntry) -> Result<AgentSource, String> {
        let given = [
            agent.script.is_some(),
            agent.wasm.is_some(),
            agent.native.is_some(),
            agent.builtin.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(format!(
                "agent `{}` needs exactly one of script, wasm, native or builtin",
                agent.name
            ));
        }
        if agent.init_sql_file.is_some() && agent.builtin.as_deref() != Some("database") {
            return Err(format!(
                "agent `{}`: init_sql_file is for agents with builtin = \"database\"",
                agent.name
            ));
        }
        if let Some(builtin) = &agent.builtin {
            let config = self
                .builtin_config(builtin, &agent.config, &agent.init_sql_file)
                .map_err(|message| format!("agent `{}`: {message}", agent.name))?;
            return Ok(AgentSource::Builtin(builtin.clone(), config));
        }
        if let Some(script) = &agent.script {
            return Ok(AgentSource::Script(self.dir.join(script)));
        }
        if let Some(wasm) = &agent.wasm {
            return Ok(AgentSource::Wasm(self.dir.join(wasm)));
        }
        let native = agent.native.clone().unwrap_or_default();
        if builtin_native(&native).is_none() {
            return Err(format!(
                "agent `{}`: unknown native plugin `{native}`; built-in ones are {}",
                agent.name,
                BUILTIN_NATIVE.join(", ")
            ));
        }
        Ok(AgentSource::Native(native))
    }

    /// A built-in's JSON config: the TOML `config` table, with `init_sql_file` read into
    /// `init_sql`.
    pub(super) fn builtin_config(
        &self,
        builtin: &str,
        config: &Option<toml::Value>,
        init_sql_file: &Option<PathBuf>,
    ) -> Result<Value, String> {
        if !BUILTIN_PLUGINS.contains(&builtin) {
            return Err(format!(
                "unknown builtin `{builtin}`; built-in plugins are {}",
                BUILTIN_PLUGINS.join(", ")
            ));
        }
        let mut json = match config {
            Some(config) => serde_json::to_value(config).map_err(|e| e.to_string())?,
            None => Value::Object(Default::default()),
        };
        if let Some(file) = init_sql_file {
            if builtin != "database" {
                return Err(format!(
                    "init_sql_file is for builtin = \"database\", not `{builtin}`"
                ));
            }
            let path = self.dir.join(file);
            let sql =
                user_file::read_text(&path, user_file::INIT_SQL_FILE).map_err(|e| e.to_string())?;
            match &mut json {
                Value::Object(fields) if fields.contains_key("init_sql") => {
                    return Err("give init_sql_file or config.init_sql, not both".to_string())
                }
                Value::Object(fields) => {
                    fields.insert("init_sql".to_string(), Value::String(sql));
                }
                _ => {}
            }
        }
        Ok(json)
    }

    /// The WASM grant of an agent's `capabilities`: refused when a name is unknown, or when
    /// the agent (its `source`, when known) is no WASM module, which has nothing to grant.
    pub(super) fn capabilities_of(
        &self,
        agent: &AgentEntry,
        source: Option<&AgentSource>,
    ) -> Result<WasmCapabilities, String> {
        if agent.capabilities.is_empty() {
            return Ok(WasmCapabilities::none());
        }
        if let Some(source) = source.filter(|s| !matches!(s, AgentSource::Wasm(_))) {
            return Err(format!(
                "agent `{}`: capabilities are granted to WASM agents only, and this agent is \
                 {}, which has none to grant; remove the `capabilities` key",
                agent.name,
                describe_source(source)
            ));
        }
        WasmCapabilities::from_names(&agent.capabilities).map_err(|e| {
            let why = match e {
                PluginError::Config(message) => message,
                other => other.to_string(),
            };
            format!("agent `{}`: `capabilities`: {why}", agent.name)
        })
    }
}

/// What an agent is, for messages: "a WASM module", "the built-in `llm` plugin", ...
pub(super) fn describe_source(source: &AgentSource) -> String {
    match source {
        AgentSource::Script(_) => "a Rhai script".to_string(),
        AgentSource::Wasm(_) => "a WASM module".to_string(),
        AgentSource::Native(name) => format!("the native plugin `{name}`"),
        AgentSource::Builtin(name, _) => format!("the built-in `{name}` plugin"),
    }
}

/// A built-in plugin for `config` (a JSON object of its config keys), which is checked here
/// the way the plugin's `load` reads it, so `check` reports what `build` would refuse.
pub(super) fn builtin_plugin(
    builtin: &str,
    config: &Value,
) -> Result<Box<dyn AgentPlugin>, String> {
    match builtin {
        "llm" => {
            let provider = match config.get("provider") {
                None => "openai",
                Some(Value::String(provider)) => provider.as_str(),
                Some(other) => {
                    return Err(format!(
                        "llm config: `provider` must be a string, got {other}"
                    ))
                }
            };
            let merged = merge_config(
                ConfigOrigin::Table("llm"),
                &LlmConfig::for_provider(provider),
                config,
            )
            .map_err(config_message)?;
            if !(merged.base_url.starts_with("http://") || merged.base_url.starts_with("https://"))
            {
                return Err(format!(
                    "llm config: base_url `{}` must start with http:// or https://",
                    merged.base_url
                ));
            }
            Ok(Box::new(LLMPlugin::new(provider)))
        }
        "database" => {
            let merged = merge_config(
                ConfigOrigin::Table("database"),
                &DatabaseConfig::default(),
                config,
            )
            .map_err(config_message)?;
            if merged.url.trim().is_empty() {
                return Err("database config: `url` is empty".to_string());
            }
            Ok(Box::new(DatabasePlugin::default()))
        }
        "http" => {
            merge_config(ConfigOrigin::Table("http"), &HttpConfig::default(), config)
                .map_err(config_message)?;
            Ok(Box::new(HttpPlugin::new()))
        }
        other => Err(format!(
            "unknown builtin `{other}`; built-in plugins are {}",
            BUILTIN_PLUGINS.join(", ")
        )),
    }
}

/// A WASM agent named after the agent (not its file), with exactly the capabilities its table
/// grants (none by default) and its limits; compiled on the fuel-metering engine when its
/// limits set `fuel`.
pub(super) fn wasm_agent(
    path: &Path,
    name: &str,
    capabilities: &[String],
    limits: &WasmLimits,
) -> PluginResult<WasmPlugin> {
    let grant = WasmCapabilities::from_names(capabilities).map_err(|e| match e {
        PluginError::Config(why) => {
            PluginError::Config(format!("agent `{name}`: `capabilities`: {why}"))
        }
        other => other,
    })?;
    // Fuel needs code compiled with metering, which makes every module slower: only modules
    // asked to burn fuel are compiled that way.
    let engine = if limits.fuel.is_some() {
        WasmEngine::shared_metering_fuel()?
    } else {
        WasmEngine::shared()?
    };
    Ok(WasmPlugin::compile_file(&engine, path)?
        .with_id(name)
        .with_capabilities(grant)
        .with_limits(limits.clone()))
}

/// The message of a config error (what `check` reports after the table's name), without the
/// error's own prefix.
fn config_message(error: PluginError) -> String {
    match error {
        PluginError::Config(message) => message,
        PluginError::Json(detail) => detail.to_string(),
        other => other.to_string(),
    }
}
