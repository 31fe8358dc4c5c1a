//! What plugin backs each agent and support plugin: the `script`, `wasm`, `native` or `builtin`
//! of its table resolved into an [`AgentSource`], a built-in's `config` read (with
//! `init_sql_file`) and checked the way the plugin's own load reads it (through
//! [`merge_config`], the same function), and a WASM agent's grant and engine. `check`, `build`
//! and hot reload all make their plugins here, so they agree on what a table means.

#[cfg(feature = "wasm")]
use std::path::Path;
use std::path::PathBuf;

#[cfg(any(
    feature = "llm",
    feature = "http",
    feature = "sqlite",
    feature = "postgres"
))]
use bilayer_plugins::builtin::{merge_config, ConfigOrigin};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use bilayer_plugins::builtin::{DatabaseConfig, DatabasePlugin};
#[cfg(feature = "http")]
use bilayer_plugins::builtin::{HttpConfig, HttpPlugin};
#[cfg(feature = "llm")]
use bilayer_plugins::builtin::{LLMPlugin, LlmConfig};
#[cfg(feature = "wasm")]
use bilayer_plugins::wasm_runtime::{WasmCapabilities, WasmEngine, WasmLimits, WasmPlugin};
#[cfg(any(
    feature = "wasm",
    feature = "llm",
    feature = "http",
    feature = "sqlite",
    feature = "postgres"
))]
use bilayer_plugins::PluginError;
#[cfg(feature = "wasm")]
use bilayer_plugins::PluginResult;
use bilayer_plugins::{user_file, AgentPlugin};
use serde_json::Value;

use super::schema::AgentEntry;
use super::SystemDefinition;
use crate::features::missing;
use crate::orders::{builtin_native, BUILTIN_NATIVE};

/// The built-in plugins a system TOML can name.
pub const BUILTIN_PLUGINS: &[&str] = &["llm", "database", "http"];

/// What plugin backs an agent. A script or a module needs the build's `rhai` or `wasm`
/// feature: without it, an agent naming one is refused when its source is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSource {
    /// A Rhai script (`script = "path"`).
    #[cfg(feature = "rhai")]
    Script(PathBuf),
    /// A WebAssembly module (`wasm = "path"`).
    #[cfg(feature = "wasm")]
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
            #[cfg(feature = "rhai")]
            return Ok(AgentSource::Script(self.dir.join(script)));
            #[cfg(not(feature = "rhai"))]
            return Err(missing(
                "rhai",
                &format!(
                    "agent `{}` is a Rhai script ({})",
                    agent.name,
                    script.display()
                ),
            ));
        }
        if let Some(wasm) = &agent.wasm {
            #[cfg(feature = "wasm")]
            return Ok(AgentSource::Wasm(self.dir.join(wasm)));
            #[cfg(not(feature = "wasm"))]
            return Err(missing(
                "wasm",
                &format!(
                    "agent `{}` is a WASM module ({})",
                    agent.name,
                    wasm.display()
                ),
            ));
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

    /// Checks the WASM grant of an agent's `capabilities`: refused when a name is unknown, or
    /// when the agent (its `source`, when known) is no WASM module, which has nothing to grant.
    pub(super) fn capabilities_of(
        &self,
        agent: &AgentEntry,
        source: Option<&AgentSource>,
    ) -> Result<(), String> {
        if agent.capabilities.is_empty() {
            return Ok(());
        }
        if let Some(source) = source.filter(|s| !is_wasm(s)) {
            return Err(format!(
                "agent `{}`: capabilities are granted to WASM agents only, and this agent is \
                 {}, which has none to grant; remove the `capabilities` key",
                agent.name,
                describe_source(source)
            ));
        }
        // Without WASM the agent is refused for its `wasm` key; its grant is not read.
        #[cfg(feature = "wasm")]
        WasmCapabilities::from_names(&agent.capabilities).map_err(|e| {
            let why = match e {
                PluginError::Config(message) => message,
                other => other.to_string(),
            };
            format!("agent `{}`: `capabilities`: {why}", agent.name)
        })?;
        Ok(())
    }
}

/// Whether `source` is a Rhai script.
pub(super) fn is_script(source: &AgentSource) -> bool {
    #[cfg(feature = "rhai")]
    if let AgentSource::Script(_) = source {
        return true;
    }
    let _ = source;
    false
}

/// Whether `source` is a WASM module.
pub(super) fn is_wasm(source: &AgentSource) -> bool {
    #[cfg(feature = "wasm")]
    if let AgentSource::Wasm(_) = source {
        return true;
    }
    let _ = source;
    false
}

/// What an agent is, for messages: "a WASM module", "the built-in `llm` plugin", ...
pub(super) fn describe_source(source: &AgentSource) -> String {
    match source {
        #[cfg(feature = "rhai")]
        AgentSource::Script(_) => "a Rhai script".to_string(),
        #[cfg(feature = "wasm")]
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
        "llm" => llm_plugin(config),
        "database" => database_plugin(config),
        "http" => http_plugin(config),
        other => Err(format!(
            "unknown builtin `{other}`; built-in plugins are {}",
            BUILTIN_PLUGINS.join(", ")
        )),
    }
}

/// The built-in `llm` plugin for `config`.
#[cfg(feature = "llm")]
fn llm_plugin(config: &Value) -> Result<Box<dyn AgentPlugin>, String> {
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
    if !(merged.base_url.starts_with("http://") || merged.base_url.starts_with("https://")) {
        return Err(format!(
            "llm config: base_url `{}` must start with http:// or https://",
            merged.base_url
        ));
    }
    Ok(Box::new(LLMPlugin::new(provider)))
}

/// The built-in `database` plugin for `config`; a URL of a backend this build lacks is
/// refused here, as the plugin's load would.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn database_plugin(config: &Value) -> Result<Box<dyn AgentPlugin>, String> {
    let merged = merge_config(
        ConfigOrigin::Table("database"),
        &DatabaseConfig::default(),
        config,
    )
    .map_err(config_message)?;
    if merged.url.trim().is_empty() {
        return Err("database config: `url` is empty".to_string());
    }
    let (backend, feature) = if merged.is_postgres() {
        ("PostgreSQL", "postgres")
    } else {
        ("SQLite", "sqlite")
    };
    let built_in = match feature {
        "postgres" => cfg!(feature = "postgres"),
        _ => cfg!(feature = "sqlite"),
    };
    if !built_in {
        return Err(missing(
            feature,
            &format!(
                "database config: `url` {} is a {backend} database",
                merged.redacted_url()
            ),
        ));
    }
    Ok(Box::new(DatabasePlugin::default()))
}

/// The built-in `http` plugin for `config`.
#[cfg(feature = "http")]
fn http_plugin(config: &Value) -> Result<Box<dyn AgentPlugin>, String> {
    merge_config(ConfigOrigin::Table("http"), &HttpConfig::default(), config)
        .map_err(config_message)?;
    Ok(Box::new(HttpPlugin::new()))
}

#[cfg(not(feature = "llm"))]
fn llm_plugin(_config: &Value) -> Result<Box<dyn AgentPlugin>, String> {
    Err(missing("llm", "the built-in `llm` plugin"))
}

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
fn database_plugin(_config: &Value) -> Result<Box<dyn AgentPlugin>, String> {
    Err(missing(
        "sqlite",
        "the built-in `database` plugin (`sqlite` for SQLite, `postgres` for PostgreSQL)",
    ))
}

#[cfg(not(feature = "http"))]
fn http_plugin(_config: &Value) -> Result<Box<dyn AgentPlugin>, String> {
    Err(missing("http", "the built-in `http` plugin"))
}

/// A WASM agent named after the agent (not its file), with exactly the capabilities its table
/// grants (none by default) and its limits; compiled on the fuel-metering engine when its
/// limits set `fuel`.
#[cfg(feature = "wasm")]
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
#[cfg(any(
    feature = "llm",
    feature = "http",
    feature = "sqlite",
    feature = "postgres"
))]
fn config_message(error: PluginError) -> String {
    match error {
        PluginError::Config(message) => message,
        PluginError::Json(detail) => detail.to_string(),
        other => other.to_string(),
    }
}

/// A build without a feature refuses a definition that needs it, saying which feature: at
/// `check`, at its key, and at `build`.
#[cfg(all(
    test,
    any(
        not(feature = "rhai"),
        not(feature = "wasm"),
        not(feature = "llm"),
        not(feature = "sqlite"),
        not(feature = "nats")
    )
))]
mod tests {
    use super::*;

    /// The definition `toml`, written to a directory of its own.
    fn definition(name: &str, toml: &str) -> SystemDefinition {
        let dir =
            std::env::temp_dir().join(format!("bilayer-features-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("system.toml");
        std::fs::write(&file, toml).unwrap();
        SystemDefinition::load(&file).unwrap()
    }

    /// What `check` says about the definition, one problem a line.
    fn problems(definition: &SystemDefinition) -> String {
        definition
            .check()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn assert_names_feature(text: &str, feature: &str) {
        assert!(
            text.contains(&format!(
                "this bilayer was built without the `{feature}` feature"
            )) && text.contains(&format!("cargo build --features {feature}")),
            "{text}"
        );
    }

    #[cfg(not(feature = "rhai"))]
    #[test]
    fn a_script_agent_and_a_routing_script_name_rhai() {
        let definition = definition(
            "rhai",
            "routing = \"routing.rhai\"\n[[agents]]\nname = \"intake\"\nscript = \"intake.rhai\"\n",
        );
        let problems = problems(&definition);
        assert_names_feature(&problems, "rhai");
        assert!(
            problems.contains("agent `intake` is a Rhai script"),
            "{problems}"
        );
        assert!(problems.contains("`routing`:"), "{problems}");
    }

    #[cfg(not(feature = "wasm"))]
    #[test]
    fn a_wasm_agent_names_wasm() {
        let definition = definition(
            "wasm",
            "[[agents]]\nname = \"scorer\"\nwasm = \"scorer.wat\"\ncapabilities = [\"log\"]\n",
        );
        let problems = problems(&definition);
        assert_names_feature(&problems, "wasm");
        assert!(
            problems.contains("agent `scorer` is a WASM module"),
            "{problems}"
        );
    }

    #[cfg(not(feature = "llm"))]
    #[test]
    fn an_llm_builtin_names_llm() {
        let definition = definition(
            "llm",
            "[[agents]]\nname = \"a\"\nnative = \"order_intake\"\n\
             [[plugins]]\nbuiltin = \"llm\"\n",
        );
        let problems = problems(&definition);
        assert_names_feature(&problems, "llm");
        assert!(problems.contains("the built-in `llm` plugin"), "{problems}");
    }

    #[cfg(not(feature = "sqlite"))]
    #[test]
    fn a_sqlite_database_names_sqlite() {
        let definition = definition(
            "sqlite",
            "[[agents]]\nname = \"a\"\nnative = \"order_intake\"\n\
             [[plugins]]\nbuiltin = \"database\"\nconfig = { url = \"sqlite::memory:\" }\n",
        );
        assert_names_feature(&problems(&definition), "sqlite");
    }

    #[cfg(not(feature = "nats"))]
    #[test]
    fn a_nats_transport_names_nats() {
        let definition = definition(
            "nats",
            "[[agents]]\nname = \"a\"\nnative = \"order_intake\"\n[transport]\nkind = \"nats\"\n",
        );
        assert_names_feature(&definition.transport().unwrap_err(), "nats");
        assert_names_feature(&problems(&definition), "nats");
    }
}
