//! `RhaiPlugin`: a Rhai script as an [`AgentPlugin`], so a `PluginManager` hosts it in its own
//! actor like any native plugin.
//!
//! Constructing one compiles the script, runs its top-level statements once and classifies
//! the calls the host makes as bounded or not; `load` connects it to its host (the `state`
//! store and `call_plugin`); `execute` runs one input through the cached form. A bounded call
//! (no loops, no recursion, no `call_plugin`: [`RhaiPlugin::is_bounded`]) runs right on the
//! calling thread, since handing it to another thread would cost several times the script
//! itself; any other call runs on the blocking side of the runtime ([`run_blocking`]), so a
//! script spinning until its timeout never stalls the async workers other actors run on.
//!
//! Identity: the plugin id is the file stem (`scripts/order_processor.rhai` →
//! `order_processor`) unless the script declares `const PLUGIN_ID = "other_id";` at the top
//! level; [`RhaiPlugin::from_source`] uses the id it is given. The version in the metadata is
//! the content hash of the source, so two loads of the same text have the same version.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::form::{ScriptForm, ScriptKind};
use super::rule_engine::RuleEngine;
use super::script::{CompiledScript, Placement};
use super::tool::ToolDefinition;
use super::RhaiConfig;
use crate::{
    run_blocking, AgentPlugin, CallChain, PluginContext, PluginError, PluginMetadata, PluginResult,
    PluginState, PluginType,
};

/// Where a plugin's script came from, kept to recompile it under another config.
#[derive(Debug, Clone)]
struct ScriptOrigin {
    from: Origin,
    source: Arc<str>,
}

impl ScriptOrigin {
    fn path(&self) -> Option<&Path> {
        match &self.from {
            Origin::File(path) => Some(path),
            Origin::Inline { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Origin {
    File(PathBuf),
    /// Given to `from_source` with an id, which wins over `PLUGIN_ID`.
    Inline {
        id: String,
    },
}

/// A runtime plugin written in Rhai (see the [module docs](super) for the script forms).
///
/// ```
/// use bilayer_plugins::rhai_runtime::RhaiPlugin;
/// use bilayer_plugins::AgentPlugin;
///
/// let plugin = RhaiPlugin::from_source(
///     "discount",
///     r#"fn calculate_discount(price, customer_tier) {
///            if customer_tier == "gold" { price * 0.8 } else { price }
///        }"#,
/// )?;
/// assert_eq!(plugin.metadata().id, "discount");
/// let output = plugin.execute_sync(r#"{"function": "calculate_discount", "args": [100.0, "gold"]}"#)?;
/// assert_eq!(output, "80.0");
/// # Ok::<(), bilayer_plugins::PluginError>(())
/// ```
pub struct RhaiPlugin {
    metadata: PluginMetadata,
    state: PluginState,
    origin: ScriptOrigin,
    script: Arc<CompiledScript>,
}

impl std::fmt::Debug for RhaiPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RhaiPlugin")
            .field("id", &self.metadata.id)
            .field("version", &self.metadata.version)
            .field("kind", &self.kind())
            .field("runs_inline", &self.runs_inline())
            .field("path", &self.origin.path())
            .field("state", &self.state)
            .finish()
    }
}

impl RhaiPlugin {
    /// Compiles the script at `path` under the default [`RhaiConfig`].
    pub fn from_file(path: impl AsRef<Path>) -> PluginResult<Self> {
        Self::from_file_with_config(path, RhaiConfig::default())
    }

    /// Compiles the script at `path` under `config`.
    pub fn from_file_with_config(path: impl AsRef<Path>, config: RhaiConfig) -> PluginResult<Self> {
        let path = path.as_ref();
        let source = crate::user_file::read_text(path, crate::user_file::RHAI_SCRIPT)?;
        let origin = ScriptOrigin {
            from: Origin::File(path.to_path_buf()),
            source: source.into(),
        };
        Self::build(origin, config)
    }

    /// Compiles `source` as the plugin `id` under the default [`RhaiConfig`].
    pub fn from_source(id: impl Into<String>, source: impl Into<String>) -> PluginResult<Self> {
        Self::from_source_with_config(id, source, RhaiConfig::default())
    }

    /// Compiles `source` as the plugin `id` under `config`.
    pub fn from_source_with_config(
        id: impl Into<String>,
        source: impl Into<String>,
        config: RhaiConfig,
    ) -> PluginResult<Self> {
        let origin = ScriptOrigin {
            from: Origin::Inline { id: id.into() },
            source: source.into().into(),
        };
        Self::build(origin, config)
    }

    /// Recompiles the same source under `config` (the limits are part of the compiled engine,
    /// and parse-time limits such as `max_expr_depth` apply to the source). Prefer the
    /// `*_with_config` constructors, which compile once.
    pub fn with_config(self, config: RhaiConfig) -> PluginResult<Self> {
        let rebuilt = Self::build(self.origin, config)?;
        Ok(Self {
            state: self.state,
            ..rebuilt
        })
    }

    fn build(origin: ScriptOrigin, config: RhaiConfig) -> PluginResult<Self> {
        let (name, default_id) = match &origin.from {
            Origin::Inline { id } => (id.clone(), id.clone()),
            Origin::File(path) => (path.display().to_string(), file_stem(path)?),
        };
        let script = CompiledScript::compile(&name, &default_id, &origin.source, config)?;
        let id = match (&origin.from, &script.declared_id) {
            (Origin::Inline { id }, _) => id.clone(),
            (Origin::File(_), Some(declared)) => declared.clone(),
            (Origin::File(_), None) => default_id,
        };
        let metadata = metadata_for(&id, &script, origin.path());
        script.link.set_plugin_id(&id);
        Ok(Self {
            metadata,
            state: PluginState::Unloaded,
            origin,
            script: Arc::new(script),
        })
    }

    /// The script's form, which decides what its input means.
    pub fn kind(&self) -> ScriptKind {
        self.script.form.kind()
    }

    /// The file the script was loaded from (`None` for `from_source`).
    pub fn path(&self) -> Option<&Path> {
        self.origin.path()
    }

    /// The script's source text.
    pub fn source(&self) -> &str {
        &self.origin.source
    }

    /// The sandbox limits and options the script was compiled with.
    pub fn config(&self) -> &RhaiConfig {
        &self.script.config
    }

    /// The entry function's name, for entry scripts (`"process_order"`).
    pub fn entry_function(&self) -> Option<&str> {
        match &self.script.form {
            ScriptForm::Entry { function, .. } => Some(function.fn_name()),
            _ => None,
        }
    }

    /// The tool definition, for tool scripts.
    pub fn tool_definition(&self) -> Option<&ToolDefinition> {
        match &self.script.form {
            ScriptForm::Tool { definition, .. } => Some(definition),
            _ => None,
        }
    }

    /// The functions the script defines, as `name(param, ...)` signatures.
    pub fn functions(&self) -> Vec<String> {
        self.script
            .functions
            .iter()
            .map(|f| f.signature())
            .collect()
    }

    /// Whether every call [`AgentPlugin::execute`] makes for this script is bounded: the
    /// entry function, the tool's `execute`, every rule's `condition` and `action`, or (functions
    /// form) every function has no loop, no recursion, no dynamic call and no `call_plugin`
    /// (the rules are in the [module docs](super)). Decided once, when the script is compiled.
    pub fn is_bounded(&self) -> bool {
        self.script.bounds.form.is_ok()
    }

    /// Why [`RhaiPlugin::is_bounded`] is false, e.g. ``"fn run has a `for` loop (line 3)"``.
    pub fn unbounded_reason(&self) -> Option<&str> {
        self.script.bounds.form.as_ref().err().map(String::as_str)
    }

    /// Whether a call of the script function `name` by name (a functions-form input) is bounded;
    /// false for a function the script does not define.
    pub fn is_function_bounded(&self, name: &str) -> bool {
        self.script.bounds.function(name)
    }

    /// Whether [`AgentPlugin::execute`] runs every call on the calling thread: the script
    /// [is bounded](RhaiPlugin::is_bounded) and [`RhaiConfig::inline_bounded`] is on (the
    /// default). A functions-form script with only some bounded functions answers false here,
    /// and still runs the calls of those functions inline ([`RhaiPlugin::runs_inline_for`]).
    pub fn runs_inline(&self) -> bool {
        self.script.placement == Placement::Inline
    }

    /// Whether `execute_json(input)` runs on the calling thread.
    pub fn runs_inline_for(&self, input: &Value) -> bool {
        self.script.runs_inline_for(input)
    }

    /// The rule engine of a rules script, sharing this plugin's compiled script (and its
    /// host connection once loaded).
    pub fn rule_engine(&self) -> Option<RuleEngine> {
        RuleEngine::from_compiled(Arc::clone(&self.script)).ok()
    }

    pub(crate) fn into_compiled(self) -> Arc<CompiledScript> {
        self.script
    }

    /// Runs one JSON input on the current thread; what [`AgentPlugin::execute`] does off the
    /// async workers. For callers already on a blocking thread, benches and tools.
    pub fn execute_sync(&self, input: &str) -> PluginResult<String> {
        self.script.execute_text(input)
    }

    /// Runs one input given as a JSON value on the current thread, returning a JSON value
    /// (no JSON text in between).
    pub fn execute_value(&self, input: Value) -> PluginResult<Value> {
        self.script.execute_value(&input)
    }

    /// Calls a function the script defines, by name, with JSON arguments, whatever its form.
    pub fn call_function(&self, function: &str, args: Vec<Value>) -> PluginResult<Value> {
        self.script.call_function(function, args)
    }
}

/// Runs a bounded call on the calling thread, under the caller's call chain as
/// [`run_blocking`] would; the sandbox limits apply as on any thread.
pub(crate) fn run_inline<R>(call: impl FnOnce() -> R) -> R {
    CallChain::current().scope_blocking(call)
}

fn file_stem(path: &Path) -> PluginResult<String> {
    path.file_stem()
        .and_then(|stem| stem.to_str())
        .filter(|stem| !stem.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            PluginError::Config(format!(
                "cannot derive a plugin id from {}; name the file like `order_processor.rhai` or set `const PLUGIN_ID = \"...\";`",
                path.display()
            ))
        })
}

fn metadata_for(id: &str, script: &CompiledScript, path: Option<&Path>) -> PluginMetadata {
    let tag = match script.form.kind() {
        ScriptKind::Entry => "entry",
        ScriptKind::Tool => "tool",
        ScriptKind::Rules => "rules",
        ScriptKind::Functions => "functions",
    };
    let (plugin_type, description) = match &script.form {
        ScriptForm::Tool { definition, .. } => (PluginType::Tool, definition.description.clone()),
        _ => {
            let from = path
                .map(|p| format!(" from {}", p.display()))
                .unwrap_or_default();
            (PluginType::Script, format!("Rhai {tag} script{from}"))
        }
    };
    PluginMetadata::new(id, id, plugin_type)
        .with_version(script.version.clone())
        .with_description(description)
        .with_capability("rhai")
        .with_capability(format!("rhai:{tag}"))
}

#[async_trait]
impl AgentPlugin for RhaiPlugin {
    fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }

    fn state(&self) -> PluginState {
        self.state
    }

    /// Connects the script to `ctx`: its `state` becomes `ctx.state()` (the host-owned store,
    /// so it survives restarts and reloads), `call_plugin` goes through `ctx`'s caller.
    async fn load(&mut self, ctx: &PluginContext) -> PluginResult<()> {
        self.state = PluginState::Loading;
        self.script.attach(&self.metadata.id, ctx.clone());
        self.state = PluginState::Loaded;
        Ok(())
    }

    async fn start(&mut self) -> PluginResult<()> {
        self.state = PluginState::Running;
        Ok(())
    }

    async fn stop(&mut self) -> PluginResult<()> {
        self.state = PluginState::Loaded;
        Ok(())
    }

    async fn unload(&mut self) -> PluginResult<()> {
        self.script.detach();
        self.state = PluginState::Unloaded;
        Ok(())
    }

    /// Another handle on the same compiled script: calls only read it (each runs in a scope
    /// of its own), so siblings share the AST, the engine and the host link it was loaded
    /// with, and cost a few reference counts.
    fn concurrent_instance(&self) -> Option<Box<dyn AgentPlugin>> {
        Some(Box::new(RhaiPlugin {
            metadata: self.metadata.clone(),
            state: self.state,
            origin: self.origin.clone(),
            script: Arc::clone(&self.script),
        }))
    }

    /// Runs a bounded call on this thread, any other through [`run_blocking`] (see
    /// [`RhaiPlugin::runs_inline`]).
    async fn execute(&mut self, input: String) -> PluginResult<String> {
        let script = &self.script;
        match script.placement {
            Placement::Inline => run_inline(|| script.execute_text(&input)),
            Placement::Blocking => {
                let script = Arc::clone(script);
                run_blocking(move || script.execute_text(&input)).await?
            }
            Placement::PerFunction => {
                let Ok(call) = serde_json::from_str::<Value>(&input) else {
                    // Refused as invalid JSON before any script code runs.
                    return run_inline(|| script.execute_text(&input));
                };
                if script.runs_inline_for(&call) {
                    run_inline(|| script.execute_value_to_text(&call))
                } else {
                    let script = Arc::clone(script);
                    run_blocking(move || script.execute_value_to_text(&call)).await?
                }
            }
        }
    }

    /// Converts the value straight into Rhai values and back (no JSON text in between); runs
    /// where [`execute`](AgentPlugin::execute) would.
    async fn execute_json(&mut self, input: Value) -> PluginResult<Value> {
        if self.script.runs_inline_for(&input) {
            return run_inline(|| self.script.execute_value(&input));
        }
        let script = Arc::clone(&self.script);
        run_blocking(move || script.execute_value(&input)).await?
    }

    /// [`execute_json`](AgentPlugin::execute_json) on a borrowed message: converted into Rhai
    /// values in place (copied only for a call that goes to a blocking thread).
    async fn execute_json_ref(&mut self, input: &Value) -> PluginResult<Value> {
        if self.script.runs_inline_for(input) {
            return run_inline(|| self.script.execute_value(input));
        }
        let script = Arc::clone(&self.script);
        let input = input.clone();
        run_blocking(move || script.execute_value(&input)).await?
    }

    /// A call that [runs inline](RhaiPlugin::runs_inline) (bounded, with
    /// [`RhaiConfig::inline_bounded`] on; for a functions-form script, a call of a bounded
    /// function) answers at once on the calling thread: it cannot call another plugin, and the
    /// engine's own limits (operations, time, stack) stop it, so it needs neither a call chain
    /// nor the hop timeout. Anything else goes through the async path, as before. On failure
    /// the message is left as it came.
    fn execute_json_in_place_now(&mut self, message: &mut Value) -> Option<PluginResult<()>> {
        if !self.script.runs_inline_for(message) {
            return None;
        }
        Some(
            self.script
                .execute_value(message)
                .map(|output| *message = output),
        )
    }
}
