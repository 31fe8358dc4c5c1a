//! `WasmPlugin`: a WASM module as an [`AgentPlugin`], so a `PluginManager` hosts it in its own
//! actor like any native plugin, or a [`WasmRuntime`](super::WasmRuntime) runs it directly.
//!
//! Constructing one reads and compiles the module (once per version and engine), checks its
//! ABI exports and reads its optional `bilayer_metadata`. The grant, the limits and the
//! instance mode are set with builders; `load` links the module against the grant (an
//! ungranted import fails here, naming the capability) and attaches the host context (config,
//! state store, plugin caller). `execute` tries a short inline slice on the calling thread
//! first and moves to a blocking thread ([`run_detached`]) when the guest needs longer or
//! blocks, so a guest spinning until its deadline never stalls the async workers for more than
//! the slice, and a caller that stops waiting is never held by a guest blocked in a host call.
//! Each call is bounded by the plugin's `WasmLimits::timeout` and by its host's call timeout
//! ([`PluginContext::call_timeout`], an agent's hop timeout), whichever is shorter.
//!
//! Identity: a plugin read from a file is named after the file stem (`plugins/echo.wasm` →
//! `echo`) unless its metadata declares an `id`; [`WasmPlugin::from_bytes`] uses the id it is
//! given, and [`WasmPlugin::with_id`] renames it. Errors name the plugin by the id it is
//! registered under once loaded (an agent system registers it under the agent's name), so a
//! failing agent is named as its system knows it, not after its file. The version in the
//! metadata is the content hash of the file, so two loads of the same bytes have the same
//! version.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use super::guest_metadata::{self, GuestMetadata};
use super::link::LinkedPlugin;
use super::module::CompiledModule;
use super::{InstanceMode, WasmCapabilities, WasmEngine, WasmLimits};
use crate::{
    run_detached, AgentPlugin, PluginContext, PluginError, PluginMetadata, PluginResult,
    PluginState, PluginType,
};

/// A sandboxed plugin compiled from a WASM module (see the [module docs](super)).
///
/// ```
/// use bilayer_plugins::wasm_runtime::WasmPlugin;
/// use bilayer_plugins::AgentPlugin;
///
/// // An echo plugin: `alloc` is a bump allocator, `execute` returns its input.
/// let echo = WasmPlugin::from_bytes("echo", r#"(module
///     (memory (export "memory") 1)
///     (global $next (mut i32) (i32.const 1024))
///     (func (export "alloc") (param $len i32) (result i32)
///       (local $ptr i32)
///       (local.set $ptr (global.get $next))
///       (global.set $next (i32.add (global.get $next) (local.get $len)))
///       (local.get $ptr))
///     (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
///       (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
///               (i64.extend_i32_u (local.get $len)))))"#)?;
/// assert_eq!(echo.metadata().id, "echo");
/// assert_eq!(echo.execute_sync(r#"{"hello":"wasm"}"#)?, r#"{"hello":"wasm"}"#);
/// # Ok::<(), bilayer_plugins::PluginError>(())
/// ```
pub struct WasmPlugin {
    metadata: PluginMetadata,
    state: PluginState,
    path: Option<PathBuf>,
    compiled: Arc<CompiledModule>,
    guest: Option<GuestMetadata>,
    capabilities: WasmCapabilities,
    limits: Option<WasmLimits>,
    mode: InstanceMode,
    ctx: Option<PluginContext>,
    /// The module linked against the grant and context; built on `load`, or on the first
    /// call of a plugin nobody loaded, and dropped whenever a setting changes.
    linked: OnceLock<Arc<LinkedPlugin>>,
}

impl std::fmt::Debug for WasmPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPlugin")
            .field("id", &self.metadata.id)
            .field("version", &self.metadata.version)
            .field("path", &self.path)
            .field("capabilities", &self.capabilities.to_string())
            .field("mode", &self.mode)
            .field("state", &self.state)
            .finish()
    }
}

impl WasmPlugin {
    /// Compiles the module at `path` (`.wasm` binary or `.wat` text) on the shared engine.
    pub fn from_file(path: impl AsRef<Path>) -> PluginResult<Self> {
        Self::compile_file(&WasmEngine::shared()?, path)
    }

    /// Compiles `bytes` (binary or text) as the plugin `id` on the shared engine.
    pub fn from_bytes(id: impl Into<String>, bytes: impl AsRef<[u8]>) -> PluginResult<Self> {
        Self::compile_bytes(&WasmEngine::shared()?, id, bytes)
    }

    /// Compiles the module at `path` on `engine`.
    pub fn compile_file(engine: &WasmEngine, path: impl AsRef<Path>) -> PluginResult<Self> {
        let path = path.as_ref();
        let bytes = crate::user_file::read(path, crate::user_file::WASM_MODULE)?;
        let origin = path.display().to_string();
        let compiled = CompiledModule::compile(engine, &origin, Arc::from(bytes))?;
        let guest = guest_metadata::read(&compiled, &origin)?;
        let id = match guest.as_ref().and_then(|g| g.id.clone()) {
            Some(id) => id,
            None => file_stem(path)?,
        };
        Ok(Self::assemble(
            id,
            Some(path.to_path_buf()),
            compiled,
            guest,
        ))
    }

    /// Compiles `bytes` as the plugin `id` on `engine`; `id` wins over the module's metadata.
    pub fn compile_bytes(
        engine: &WasmEngine,
        id: impl Into<String>,
        bytes: impl AsRef<[u8]>,
    ) -> PluginResult<Self> {
        let id = id.into();
        let compiled = CompiledModule::compile(engine, &id, Arc::from(bytes.as_ref()))?;
        let guest = guest_metadata::read(&compiled, &id)?;
        Ok(Self::assemble(id, None, compiled, guest))
    }

    fn assemble(
        id: String,
        path: Option<PathBuf>,
        compiled: Arc<CompiledModule>,
        guest: Option<GuestMetadata>,
    ) -> Self {
        let name = guest
            .as_ref()
            .and_then(|g| g.name.clone())
            .unwrap_or_else(|| id.clone());
        let description = guest
            .as_ref()
            .and_then(|g| g.description.clone())
            .unwrap_or_else(|| match &path {
                Some(path) => format!("WASM module from {}", path.display()),
                None => "WASM module".to_string(),
            });
        let metadata = PluginMetadata::new(id, name, PluginType::Wasm)
            .with_version(compiled.version.clone())
            .with_description(description)
            .with_capability("wasm");
        Self {
            metadata,
            state: PluginState::Unloaded,
            path,
            compiled,
            guest,
            capabilities: WasmCapabilities::none(),
            limits: None,
            mode: InstanceMode::default(),
            ctx: None,
            linked: OnceLock::new(),
        }
    }

    /// Names the plugin `id` (its metadata and its errors) instead of the file stem or the
    /// module's declared id: what a system definition does with an agent's module, so even a
    /// check before registration names the agent.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.metadata.id = id.into();
        self.linked = OnceLock::new();
        self
    }

    /// The host imports this plugin may link against (none by default).
    pub fn with_capabilities(mut self, capabilities: WasmCapabilities) -> Self {
        self.capabilities = capabilities;
        self.linked = OnceLock::new();
        self
    }

    /// Limits for this plugin instead of its engine's default limits.
    pub fn with_limits(mut self, limits: WasmLimits) -> Self {
        self.limits = Some(limits);
        self.linked = OnceLock::new();
        self
    }

    /// A fresh instance per call (the default) or one reused instance; see [`InstanceMode`].
    pub fn with_instance_mode(mut self, mode: InstanceMode) -> Self {
        self.mode = mode;
        self.linked = OnceLock::new();
        self
    }

    /// The same module compiled on `engine` (a no-op when it already is), keeping the grant,
    /// limits, mode and context. Compiling is once per version and engine.
    pub fn recompile_for(mut self, engine: &WasmEngine) -> PluginResult<Self> {
        if self.compiled.engine.same(engine) {
            return Ok(self);
        }
        let origin = self
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| self.metadata.id.clone());
        self.compiled = CompiledModule::compile(engine, &origin, Arc::clone(&self.compiled.bytes))?;
        self.linked = OnceLock::new();
        Ok(self)
    }

    /// The capabilities granted to the module.
    pub fn capabilities(&self) -> &WasmCapabilities {
        &self.capabilities
    }

    /// The limits calls run under: the plugin's own, or its engine's defaults.
    pub fn limits(&self) -> WasmLimits {
        self.limits
            .clone()
            .unwrap_or_else(|| self.compiled.engine.config().limits.clone())
    }

    /// How calls map to instances.
    pub fn instance_mode(&self) -> InstanceMode {
        self.mode
    }

    /// The engine the module is compiled on.
    pub fn engine(&self) -> &WasmEngine {
        &self.compiled.engine
    }

    /// The file the module was read from (`None` for `from_bytes`).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// What the module's `bilayer_metadata` export says about it, if it has one.
    pub fn guest_metadata(&self) -> Option<&GuestMetadata> {
        self.guest.as_ref()
    }

    /// The module's bytes as given (binary or text).
    pub fn module_bytes(&self) -> &[u8] {
        &self.compiled.bytes
    }

    /// Links the module against the grant now, so a missing capability or a mistyped import
    /// is reported here rather than on the first call.
    pub fn check_link(&self) -> PluginResult<()> {
        self.linked().map(drop)
    }

    /// Runs one input on the current thread; what [`AgentPlugin::execute`] does off the async
    /// workers. For callers already on a blocking thread, benches and tools. The output must be
    /// UTF-8 (use [`WasmPlugin::execute_bytes`] for binary data).
    pub fn execute_sync(&self, input: &str) -> PluginResult<String> {
        let output = self.execute_bytes(input.as_bytes())?;
        self.output_text(output)
    }

    /// Runs one input of any bytes on the current thread, returning the guest's bytes.
    pub fn execute_bytes(&self, input: &[u8]) -> PluginResult<Vec<u8>> {
        self.linked()?.execute(input)
    }

    /// Runs one input without holding an async worker longer than a short slice: first on the
    /// calling thread for at most ~2 ms, then, when the guest needs longer or calls an import
    /// that blocks or has an effect (`log`, `state_set`, `call_plugin`), again from the start
    /// on a blocking thread ([`run_detached`]) with its full timeout. `&self`, so a shared plugin
    /// can serve concurrent calls (each on its own instance unless [`InstanceMode::Reuse`]).
    ///
    /// The future returned can be dropped at any time: a caller that stops waiting (its hop or
    /// execute timeout fired) leaves the blocking thread to finish on its own, which a guest
    /// blocked in a host call (a WASI read, a sleep) does when the call returns, and a running
    /// guest at its epoch deadline.
    pub async fn call(&self, input: String) -> PluginResult<String> {
        let linked = self.linked()?;
        if let Some(output) = linked.try_inline(input.as_bytes()) {
            return self.output_text(output?);
        }
        let output = run_detached(move || linked.execute(input.as_bytes())).await??;
        self.output_text(output)
    }

    pub(crate) fn is_attached(&self) -> bool {
        self.ctx.is_some()
    }

    /// The id errors name: the one the plugin is registered under once loaded, else its own.
    fn name(&self) -> &str {
        self.ctx
            .as_ref()
            .map_or(self.metadata.id.as_str(), PluginContext::plugin_id)
    }

    fn output_text(&self, output: Vec<u8>) -> PluginResult<String> {
        String::from_utf8(output).map_err(|e| PluginError::Runtime {
            location: format!("WASM plugin `{}` in `execute`", self.name()),
            message: format!(
                "the output is not UTF-8 ({}); text callers need UTF-8 (JSON), binary callers \
                 can use execute_bytes",
                e.utf8_error()
            ),
        })
    }

    fn linked(&self) -> PluginResult<Arc<LinkedPlugin>> {
        if let Some(linked) = self.linked.get() {
            return Ok(Arc::clone(linked));
        }
        let linked = Arc::new(self.link()?);
        // Two first calls may race to link; either result is equivalent.
        Ok(Arc::clone(self.linked.get_or_init(|| linked)))
    }

    fn link(&self) -> PluginResult<LinkedPlugin> {
        let id = self.name();
        let ctx = self.ctx.clone().unwrap_or_else(|| PluginContext::new(id));
        LinkedPlugin::link(
            Arc::clone(&self.compiled),
            id,
            ctx,
            self.capabilities.clone(),
            self.limits(),
            self.mode,
        )
    }
}

fn file_stem(path: &Path) -> PluginResult<String> {
    path.file_stem()
        .and_then(|stem| stem.to_str())
        .filter(|stem| !stem.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            PluginError::Config(format!(
                "cannot derive a plugin id from {}; name the file like `echo.wasm` or export \
                 `bilayer_metadata` with an `id`",
                path.display()
            ))
        })
}

#[async_trait]
impl AgentPlugin for WasmPlugin {
    fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }

    fn state(&self) -> PluginState {
        self.state
    }

    /// Links the module against its grant (an ungranted import fails here, naming the
    /// capability) and attaches `ctx`: `config_get` reads `ctx.config()`, `state_get`/`state_set`
    /// use `ctx.state()` (host-owned, so it survives restarts and reloads), `call_plugin` goes
    /// through `ctx`'s caller.
    async fn load(&mut self, ctx: &PluginContext) -> PluginResult<()> {
        self.state = PluginState::Loading;
        self.ctx = Some(ctx.clone());
        self.linked = OnceLock::new();
        match self.linked() {
            Ok(_) => {
                self.state = PluginState::Loaded;
                Ok(())
            }
            Err(e) => {
                self.ctx = None;
                self.state = PluginState::Unloaded;
                Err(e)
            }
        }
    }

    async fn start(&mut self) -> PluginResult<()> {
        self.state = PluginState::Running;
        Ok(())
    }

    async fn stop(&mut self) -> PluginResult<()> {
        self.state = PluginState::Loaded;
        Ok(())
    }

    /// Drops the linked module (and a reused instance) and detaches the context.
    async fn unload(&mut self) -> PluginResult<()> {
        if let Some(linked) = self.linked.get() {
            linked.reset();
        }
        self.linked = OnceLock::new();
        self.ctx = None;
        self.state = PluginState::Unloaded;
        Ok(())
    }

    /// Another handle on the same linked module: each call instantiates it afresh from the
    /// shared pre-instantiated module (or, with [`InstanceMode::Reuse`], takes the one reused
    /// instance in turn), so siblings share everything but the call in progress.
    fn concurrent_instance(&self) -> Option<Box<dyn AgentPlugin>> {
        let linked = OnceLock::new();
        if let Some(current) = self.linked.get() {
            let _ = linked.set(Arc::clone(current));
        }
        Some(Box::new(WasmPlugin {
            metadata: self.metadata.clone(),
            state: self.state,
            path: self.path.clone(),
            compiled: Arc::clone(&self.compiled),
            guest: self.guest.clone(),
            capabilities: self.capabilities.clone(),
            limits: self.limits.clone(),
            mode: self.mode,
            ctx: self.ctx.clone(),
            linked,
        }))
    }

    async fn execute(&mut self, input: String) -> PluginResult<String> {
        self.call(input).await
    }

    /// The module reads JSON text: printed straight from the borrowed message.
    async fn execute_json_ref(
        &mut self,
        input: &serde_json::Value,
    ) -> PluginResult<serde_json::Value> {
        let output = self.call(crate::plugin::json_text(input)?).await?;
        crate::plugin::parse_output(self.name(), &output)
    }
}
