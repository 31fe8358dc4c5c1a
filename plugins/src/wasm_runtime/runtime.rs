//! `WasmRuntime`: WASM plugins by id on one shared engine, without a `PluginManager`.
//!
//! The seed's API: `WasmRuntime::new()?`, `runtime.register(plugin).await?`,
//! `runtime.execute("plugin_id", input).await?`. The runtime owns one engine (the shared default
//! one, or one built from a [`WasmConfig`]); a plugin compiled on another engine is recompiled
//! on it when registered, and a plugin without its own limits gets the runtime's defaults.
//!
//! Plugins are held behind `Arc` and executed through `&self`, so calls to different plugins,
//! and concurrent calls to one plugin in [`InstanceMode::FreshPerCall`](super::InstanceMode),
//! run in parallel; the registry lock is held only to look a plugin up. Inside an agent system,
//! register WASM plugins with the `PluginManager` instead: it gives each its own supervised
//! actor, and `call_plugin` a caller.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::{WasmConfig, WasmEngine, WasmPlugin};
use crate::{AgentPlugin, PluginContext, PluginError, PluginResult};

/// WASM plugins by id on one engine: the seed's `WasmRuntime::new()?`,
/// `runtime.register(plugin).await?`, `runtime.execute("plugin_id", input).await?`.
///
/// A plugin compiled on another engine is recompiled on the runtime's when registered; one
/// without its own limits gets the runtime's default limits. Calls run off the async workers
/// and through `&self`, so different plugins (and concurrent calls to one plugin with fresh
/// instances) run in parallel. Inside an agent system, register WASM plugins with the
/// `PluginManager` instead, which gives each its own supervised actor and `call_plugin`.
///
/// ```
/// use bilayer_plugins::wasm_runtime::{WasmPlugin, WasmRuntime};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let runtime = WasmRuntime::new()?;
/// let plugin = WasmPlugin::from_bytes("empty", r#"(module
///     (memory (export "memory") 1)
///     (func (export "alloc") (param i32) (result i32) (i32.const 1024))
///     (func (export "execute") (param i32 i32) (result i64) (i64.const 0)))"#)?;
/// runtime.register(plugin).await?;
/// assert_eq!(runtime.execute("empty", "{}").await?, "");
/// # Ok::<(), bilayer_plugins::PluginError>(())
/// # }).unwrap();
/// ```
pub struct WasmRuntime {
    engine: WasmEngine,
    plugins: RwLock<HashMap<String, Arc<WasmPlugin>>>,
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime")
            .field("engine", &self.engine)
            .field("plugins", &self.plugin_ids())
            .finish()
    }
}

impl WasmRuntime {
    /// A runtime on the shared engine (`WasmConfig::default()`).
    pub fn new() -> PluginResult<Self> {
        Ok(Self::with_engine(WasmEngine::shared()?))
    }

    /// A runtime on a new engine built from `config`.
    pub fn with_config(config: WasmConfig) -> PluginResult<Self> {
        Ok(Self::with_engine(WasmEngine::new(config)?))
    }

    /// A runtime on an existing engine (shared with other runtimes or managers).
    pub fn with_engine(engine: WasmEngine) -> Self {
        Self {
            engine,
            plugins: RwLock::new(HashMap::new()),
        }
    }

    /// The engine plugins are compiled on.
    pub fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    /// The engine's settings.
    pub fn config(&self) -> &WasmConfig {
        self.engine.config()
    }

    /// Compiles the module at `path` on this runtime's engine (no recompilation at register).
    pub fn load_file(&self, path: impl AsRef<Path>) -> PluginResult<WasmPlugin> {
        WasmPlugin::compile_file(&self.engine, path)
    }

    /// Compiles `bytes` as plugin `id` on this runtime's engine.
    pub fn load_bytes(
        &self,
        id: impl Into<String>,
        bytes: impl AsRef<[u8]>,
    ) -> PluginResult<WasmPlugin> {
        WasmPlugin::compile_bytes(&self.engine, id, bytes)
    }

    /// Registers `plugin` under its id, loaded with a context of its own (empty config, a new
    /// state store, no plugin caller) unless it was loaded already, and started.
    pub async fn register(&self, plugin: WasmPlugin) -> PluginResult<()> {
        let ctx = PluginContext::new(plugin.metadata().id.clone());
        self.install(plugin, ctx, false).await
    }

    /// Registers `plugin` loaded with `ctx` (its config, state store and plugin caller).
    pub async fn register_with_context(
        &self,
        plugin: WasmPlugin,
        ctx: PluginContext,
    ) -> PluginResult<()> {
        self.install(plugin, ctx, true).await
    }

    async fn install(
        &self,
        plugin: WasmPlugin,
        ctx: PluginContext,
        replace_context: bool,
    ) -> PluginResult<()> {
        let id = plugin.metadata().id.clone();
        if self.contains(&id) {
            return Err(PluginError::AlreadyRegistered(id));
        }
        let mut plugin = plugin.recompile_for(&self.engine)?;
        if replace_context || !plugin.is_attached() {
            plugin.load(&ctx).await?;
        } else {
            // Recompiling dropped the link; relink against the context it already had.
            plugin.check_link()?;
        }
        plugin.start().await?;
        let mut plugins = self.plugins.write().unwrap_or_else(|p| p.into_inner());
        if plugins.contains_key(&id) {
            return Err(PluginError::AlreadyRegistered(id));
        }
        plugins.insert(id, Arc::new(plugin));
        Ok(())
    }

    /// Runs `input` through plugin `plugin_id`, off the async workers.
    pub async fn execute(&self, plugin_id: &str, input: impl Into<String>) -> PluginResult<String> {
        self.plugin(plugin_id)?.call(input.into()).await
    }

    /// Runs a JSON value through plugin `plugin_id` and parses its output as JSON.
    pub async fn execute_json(&self, plugin_id: &str, input: Value) -> PluginResult<Value> {
        let output = self
            .execute(plugin_id, crate::plugin::json_text(&input)?)
            .await?;
        serde_json::from_str(&output).map_err(|e| {
            PluginError::json(
                format!("WASM plugin `{plugin_id}` returned output that is not JSON ({e})"),
                e,
            )
        })
    }

    /// The registered plugin `plugin_id`.
    pub fn plugin(&self, plugin_id: &str) -> PluginResult<Arc<WasmPlugin>> {
        self.plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(plugin_id)
            .cloned()
            .ok_or_else(|| PluginError::NotFound(plugin_id.to_string()))
    }

    /// Whether a plugin with id `plugin_id` is registered.
    pub fn contains(&self, plugin_id: &str) -> bool {
        self.plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(plugin_id)
    }

    /// Removes plugin `plugin_id`; calls already running finish on their instances.
    pub fn unregister(&self, plugin_id: &str) -> PluginResult<Arc<WasmPlugin>> {
        self.plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(plugin_id)
            .ok_or_else(|| PluginError::NotFound(plugin_id.to_string()))
    }

    /// The ids of the registered plugins, sorted.
    pub fn plugin_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }
}
