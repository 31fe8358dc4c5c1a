//! `RhaiToolRegistry`: tools defined by Rhai scripts, listed for an LLM and executed by name.
//!
//! Each tool is a tool script (`#{ tool: tool, execute: execute }`, like the seed's
//! scripts/tools/weather.rhai), compiled once when it is loaded. `get_all_tools` lists their
//! definitions for the OpenAI function-calling or MCP tool formats; `execute` checks the
//! arguments against the tool's JSON Schema before the script runs, then runs it on the
//! calling thread when it is bounded, off the async workers otherwise. Tool names are unique:
//! loading a second tool with a name already taken is an error, and loading a directory adds
//! all of its tools or none.
//!
//! The registry is used through `&self` (an `RwLock` inside) and is `Send + Sync`, so it can
//! be shared in an `Arc` by an agent and the code answering the LLM. Each tool gets its own
//! `state` store; `call_plugin` works when the registry is given a caller
//! ([`RhaiToolRegistry::with_caller`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::plugin::run_inline;
use super::script::{CompiledScript, Placement};
use super::tool::ToolDefinition;
use super::{RhaiConfig, RhaiPlugin};
use crate::{run_blocking, PluginCaller, PluginContext, PluginError, PluginResult};

struct RegisteredTool {
    definition: ToolDefinition,
    script: Arc<CompiledScript>,
}

/// Tools written in Rhai, by name: loaded from tool scripts, listed for an LLM, executed with
/// schema-checked arguments (see [`crate::rhai_runtime`] for the script forms).
///
/// ```no_run
/// # async fn demo() -> bilayer_plugins::PluginResult<()> {
/// use bilayer_plugins::rhai_runtime::RhaiToolRegistry;
///
/// let registry = RhaiToolRegistry::new();
/// registry.load_from_file("scripts/tools/weather.rhai").await?;
/// // Now an LLM can call this tool
/// let tools = registry.get_all_tools();
/// let openai: Vec<_> = tools.iter().map(|t| t.to_openai()).collect();
/// let weather = registry.execute("get_weather", r#"{"city": "Paris"}"#).await?;
/// # Ok(()) }
/// ```
pub struct RhaiToolRegistry {
    config: RhaiConfig,
    caller: Option<Arc<dyn PluginCaller>>,
    tools: RwLock<BTreeMap<String, RegisteredTool>>,
}

impl Default for RhaiToolRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RhaiToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RhaiToolRegistry")
            .field("tools", &self.names())
            .field("can_call_plugins", &self.caller.is_some())
            .finish()
    }
}

impl RhaiToolRegistry {
    /// An empty registry whose tools run under the default [`RhaiConfig`].
    pub fn new() -> Self {
        Self::with_config(RhaiConfig::default())
    }

    /// An empty registry whose tools run under `config`.
    pub fn with_config(config: RhaiConfig) -> Self {
        Self {
            config,
            caller: None,
            tools: RwLock::new(BTreeMap::new()),
        }
    }

    /// Lets the tools use `call_plugin` through `caller`.
    pub fn with_caller(mut self, caller: Arc<dyn PluginCaller>) -> Self {
        self.caller = Some(caller);
        self
    }

    /// Loads the tool script at `path`; returns its definition.
    pub async fn load_from_file(&self, path: impl AsRef<Path>) -> PluginResult<ToolDefinition> {
        let path = path.as_ref().to_path_buf();
        let config = self.config.clone();
        let tool = run_blocking(move || compile_tool(&path, config)).await??;
        let definition = tool.definition.clone();
        self.insert_all(vec![tool])?;
        Ok(definition)
    }

    /// Loads every `*.rhai` file directly inside `dir` (sorted by name): all of them, or none
    /// if one fails to compile, is not a tool, or repeats a name.
    pub async fn load_dir(&self, dir: impl AsRef<Path>) -> PluginResult<Vec<ToolDefinition>> {
        let dir = dir.as_ref().to_path_buf();
        let config = self.config.clone();
        let tools = run_blocking(move || -> PluginResult<Vec<RegisteredTool>> {
            script_files(&dir)?
                .iter()
                .map(|path| compile_tool(path, config.clone()))
                .collect()
        })
        .await??;
        let definitions = tools.iter().map(|t| t.definition.clone()).collect();
        self.insert_all(tools)?;
        Ok(definitions)
    }

    fn insert_all(&self, tools: Vec<RegisteredTool>) -> PluginResult<()> {
        let mut registered = self.tools.write().unwrap_or_else(|p| p.into_inner());
        let mut seen = std::collections::HashSet::new();
        for tool in &tools {
            let name = &tool.definition.name;
            if registered.contains_key(name) || !seen.insert(name.clone()) {
                return Err(PluginError::Config(format!(
                    "duplicate tool name `{name}` (from {}): tool names must be unique; rename the \
                     tool or unregister the other `{name}` first",
                    tool.script.name
                )));
            }
        }
        for tool in tools {
            let mut context = PluginContext::new(tool.definition.name.clone());
            if let Some(caller) = &self.caller {
                context = context.with_caller(Arc::clone(caller));
            }
            tool.script.attach(&tool.definition.name, context);
            registered.insert(tool.definition.name.clone(), tool);
        }
        Ok(())
    }

    /// Removes a tool; false when there was none by that name.
    pub fn unregister(&self, name: &str) -> bool {
        self.tools
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .is_some()
    }

    /// Every tool's definition, sorted by name.
    pub fn get_all_tools(&self) -> Vec<ToolDefinition> {
        self.read().values().map(|t| t.definition.clone()).collect()
    }

    /// The definition of tool `name`, if registered.
    pub fn get_tool(&self, name: &str) -> Option<ToolDefinition> {
        self.read().get(name).map(|t| t.definition.clone())
    }

    /// The registered tools' names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// How many tools are registered.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no tool is registered.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Every tool in the OpenAI function-calling format.
    pub fn to_openai(&self) -> Vec<Value> {
        self.read()
            .values()
            .map(|t| t.definition.to_openai())
            .collect()
    }

    /// Every tool in the MCP tool format.
    pub fn to_mcp(&self) -> Vec<Value> {
        self.read()
            .values()
            .map(|t| t.definition.to_mcp())
            .collect()
    }

    /// Runs tool `name` with JSON arguments (text); the arguments are checked against the
    /// tool's schema first. A bounded tool runs on the calling thread, any other off the async
    /// workers (as [`RhaiPlugin`]'s `execute` does).
    pub async fn execute(&self, name: &str, args_json: &str) -> PluginResult<String> {
        let script = self.script(name)?;
        if script.placement == Placement::Inline {
            return run_inline(|| script.execute_text(args_json));
        }
        let args = args_json.to_string();
        run_blocking(move || script.execute_text(&args)).await?
    }

    /// Runs tool `name` with JSON arguments on the current thread.
    pub fn execute_value(&self, name: &str, args: Value) -> PluginResult<Value> {
        self.script(name)?.execute_value(&args)
    }

    fn script(&self, name: &str) -> PluginResult<Arc<CompiledScript>> {
        self.read()
            .get(name)
            .map(|t| Arc::clone(&t.script))
            .ok_or_else(|| PluginError::NotFound(name.to_string()))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, RegisteredTool>> {
        self.tools.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn compile_tool(path: &Path, config: RhaiConfig) -> PluginResult<RegisteredTool> {
    let plugin = RhaiPlugin::from_file_with_config(path, config)?;
    let not_a_tool = || {
        PluginError::Config(format!(
            "{} is not a tool script: end it with `#{{ tool: tool, execute: execute }}`",
            path.display()
        ))
    };
    let definition = plugin.tool_definition().cloned().ok_or_else(not_a_tool)?;
    Ok(RegisteredTool {
        definition,
        script: plugin.into_compiled(),
    })
}

fn script_files(dir: &Path) -> PluginResult<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        PluginError::io(
            format!("cannot list tool directory {}: {e}", dir.display()),
            e,
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| {
                PluginError::io(
                    format!("cannot list tool directory {}: {e}", dir.display()),
                    e,
                )
            })?
            .path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "rhai") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
