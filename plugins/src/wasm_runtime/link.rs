//! `LinkedPlugin`: a compiled module bound to one plugin's grant, limits and context, ready to
//! instantiate; and the choice between a fresh instance per call and a reused one.
//!
//! Linking is where capabilities are enforced: the imports are checked against the grant
//! (an ungranted one fails here, naming the capability), a linker holding only the granted
//! host functions resolves them, and the result is an `InstancePre`, so a call instantiates
//! without resolving a single import by name. It happens when a plugin is loaded (or on its
//! first call when nobody loaded it), once per version, grant and context. A plugin granted
//! `wasi` has its directories opened once here too, so a missing one fails the load rather
//! than the first call; each store then opens them anew ([`wasi`](super::wasi)).

use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use wasmtime::{InstancePre, Linker};

use super::errors::{Phase, Site};
use super::host_imports::{self, HOST_IMPORTS};
use super::host_state::{HostState, StoreLimiter};
use super::inline::{self, InlinePolicy, INLINE_SLICE};
use super::instance::{deadline_ticks, GuestInstance};
use super::module::CompiledModule;
use super::{wasi, Capability, InstanceMode, WasmCapabilities, WasmLimits};
use crate::{PluginContext, PluginError, PluginResult};

/// A plugin's module linked against its grant (see the [module docs](self)).
pub(crate) struct LinkedPlugin {
    pub compiled: Arc<CompiledModule>,
    pub pre: InstancePre<HostState>,
    pub plugin_id: Arc<str>,
    pub ctx: Arc<PluginContext>,
    pub grants: Arc<WasmCapabilities>,
    pub limits: WasmLimits,
    pub mode: InstanceMode,
    pub deadline_ticks: u64,
    /// The host's call timeout ([`PluginContext::call_timeout`]) when it is shorter than
    /// `limits.timeout`: the epoch deadline is set from it, and a guest stopped there failed the
    /// call with a timeout rather than its own limit.
    pub host_timeout: Option<Duration>,
    /// Whether instances run the guest's `_initialize` (not for the metadata probe).
    pub run_initialize: bool,
    /// Whether `wasi` is granted (read on every call, so kept out of the grant's set).
    uses_wasi: bool,
    /// Whether calls may try the inline path at all: not with WASI (file writes are effects),
    /// and not for a reused instance whose module imports a host function that ends an
    /// attempt (each such attempt would cost the warm instance).
    inline_allowed: bool,
    /// The instance kept between calls in [`InstanceMode::Reuse`].
    warm: Mutex<Option<GuestInstance>>,
    /// How often calls try the inline path after attempts that had to leave ([`inline`]).
    inline: InlinePolicy,
}

impl LinkedPlugin {
    /// Checks the module's imports against `grants` and prepares instantiation.
    pub(super) fn link(
        compiled: Arc<CompiledModule>,
        plugin_id: &str,
        ctx: PluginContext,
        grants: WasmCapabilities,
        limits: WasmLimits,
        mode: InstanceMode,
    ) -> PluginResult<LinkedPlugin> {
        let engine = &compiled.engine;
        if limits.fuel.is_some() && !engine.meters_fuel() {
            return Err(PluginError::Config(format!(
                "WASM plugin `{plugin_id}` sets WasmLimits::fuel, but its engine was built without \
                 fuel metering; compile it on an engine whose WasmConfig has \
                 `.fuel_metering(true)` (WasmRuntime::with_config(..).load_file(..), or register \
                 it with such a runtime)"
            )));
        }
        host_imports::check_imports(plugin_id, &compiled.module, &grants)?;
        if let Some(grant) = grants.wasi() {
            wasi::context(grant, &Arc::from(plugin_id), limits.max_log_bytes)?;
        }
        let linker = host_imports::linker(engine, &grants).map_err(|e| {
            PluginError::Config(format!(
                "cannot build the host linker for `{plugin_id}`: {e:#}"
            ))
        })?;
        let pre = linker.instantiate_pre(&compiled.module).map_err(|e| {
            let signatures: Vec<String> = HOST_IMPORTS
                .iter()
                .map(|h| format!("bilayer.{}{}", h.name, h.signature))
                .collect();
            let wasi = if grants.allows(Capability::Wasi) {
                format!(
                    " and the WASI preview 1 functions of `{}`",
                    wasi::PREVIEW1_MODULE
                )
            } else {
                String::new()
            };
            PluginError::Config(format!(
                "cannot link WASM plugin `{plugin_id}`: {e:#}; the host imports are {}{wasi}",
                signatures.join(", ")
            ))
        })?;
        Ok(Self::new(
            compiled, pre, plugin_id, ctx, grants, limits, mode, true,
        ))
    }

    /// A link for reading the guest's metadata before any grant: every import traps, and
    /// `_initialize` does not run.
    pub(super) fn probe(
        compiled: Arc<CompiledModule>,
        plugin_id: &str,
        limits: WasmLimits,
    ) -> PluginResult<LinkedPlugin> {
        let mut linker: Linker<HostState> = Linker::new(compiled.engine.wasmtime());
        let pre = linker
            .define_unknown_imports_as_traps(&compiled.module)
            .and_then(|_| linker.instantiate_pre(&compiled.module))
            .map_err(|e| {
                PluginError::Config(format!(
                    "cannot prepare WASM plugin `{plugin_id}` to read its metadata: {e:#}"
                ))
            })?;
        let ctx = PluginContext::new(plugin_id);
        Ok(Self::new(
            compiled,
            pre,
            plugin_id,
            ctx,
            WasmCapabilities::none(),
            limits,
            InstanceMode::FreshPerCall,
            false,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        compiled: Arc<CompiledModule>,
        pre: InstancePre<HostState>,
        plugin_id: &str,
        ctx: PluginContext,
        grants: WasmCapabilities,
        limits: WasmLimits,
        mode: InstanceMode,
        run_initialize: bool,
    ) -> LinkedPlugin {
        let host_timeout = ctx.call_timeout().filter(|host| *host < limits.timeout);
        let deadline_ticks = deadline_ticks(
            host_timeout.unwrap_or(limits.timeout),
            compiled.engine.config().epoch_tick,
        );
        let uses_wasi = grants.allows(Capability::Wasi);
        let reuse_could_leave =
            mode == InstanceMode::Reuse && host_imports::may_leave_inline(&compiled.module);
        let inline_allowed = !uses_wasi && !reuse_could_leave;
        LinkedPlugin {
            compiled,
            pre,
            plugin_id: Arc::from(plugin_id),
            ctx: Arc::new(ctx),
            grants: Arc::new(grants),
            limits,
            mode,
            deadline_ticks,
            host_timeout,
            run_initialize,
            uses_wasi,
            inline_allowed,
            warm: Mutex::new(None),
            inline: InlinePolicy::default(),
        }
    }

    /// The data of a new store for this plugin, with a WASI context built from its grant when
    /// it has one.
    pub(super) fn host_state(&self) -> PluginResult<HostState> {
        let wasi = match self.grants.wasi() {
            Some(grant) => Some(Box::new(wasi::context(
                grant,
                &self.plugin_id,
                self.limits.max_log_bytes,
            )?)),
            None => None,
        };
        Ok(HostState {
            plugin_id: Arc::clone(&self.plugin_id),
            ctx: Arc::clone(&self.ctx),
            grants: Arc::clone(&self.grants),
            limiter: StoreLimiter::new(&self.limits),
            max_log_bytes: self.limits.max_log_bytes,
            wasi,
        })
    }

    pub(super) fn site(&self, phase: Phase) -> Site<'_> {
        Site {
            plugin_id: &self.plugin_id,
            version: &self.compiled.version,
            phase,
            host_timeout: self.host_timeout,
            settings: &self.limits.limit_settings,
        }
    }

    /// Runs one input on the current thread as a speculative inline attempt ([`inline`]):
    /// `None` when the call must run on a blocking thread instead (it did not change anything
    /// outside its instance). Plugins granted WASI never try (their file writes are effects),
    /// nor reused instances of modules importing `log`, `state_set` or `call_plugin`.
    pub(super) fn try_inline(&self, input: &[u8]) -> Option<PluginResult<Vec<u8>>> {
        if !self.inline_allowed || !self.inline.should_try() {
            return None;
        }
        // A warm instance busy with another call (a shared plugin, on a blocking thread) is
        // waited for there, never on the calling thread.
        let warm = match self.mode {
            InstanceMode::FreshPerCall => None,
            InstanceMode::Reuse => match self.warm.try_lock() {
                Ok(warm) => Some(warm),
                Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => return None,
            },
        };
        let slice = INLINE_SLICE.min(self.limits.timeout);
        let run = || match warm {
            Some(warm) => self.run_reused(warm, input),
            None => self.run(input),
        };
        match inline::attempt(slice, run) {
            Some(result) => {
                self.inline.finished();
                Some(result)
            }
            None => {
                self.inline.left();
                None
            }
        }
    }

    /// Runs one input through the plugin on the current thread.
    pub(super) fn execute(&self, input: &[u8]) -> PluginResult<Vec<u8>> {
        if self.uses_wasi {
            return wasi::contain_panics(&self.plugin_id, || self.run(input));
        }
        self.run(input)
    }

    fn run(&self, input: &[u8]) -> PluginResult<Vec<u8>> {
        match self.mode {
            InstanceMode::FreshPerCall => {
                let started = Instant::now();
                GuestInstance::new(self, started)?.call(self, input, false, started)
            }
            InstanceMode::Reuse => {
                let warm = self.warm.lock().unwrap_or_else(|p| p.into_inner());
                self.run_reused(warm, input)
            }
        }
    }

    /// One call on the warm instance, whose lock the caller holds.
    fn run_reused(
        &self,
        mut warm: MutexGuard<'_, Option<GuestInstance>>,
        input: &[u8],
    ) -> PluginResult<Vec<u8>> {
        let started = Instant::now();
        let mut instance = match warm.take() {
            Some(instance) => instance,
            None => GuestInstance::new(self, started)?,
        };
        let result = instance.call(self, input, true, started);
        // A guest that reported an error is still sound; after a trap or a limit its memory
        // may be half-updated, so the next call gets a new instance.
        if matches!(result, Ok(_) | Err(PluginError::Execution(_))) {
            *warm = Some(instance);
        }
        result
    }

    /// Drops the instance kept by [`InstanceMode::Reuse`], if any.
    pub(super) fn reset(&self) {
        self.warm.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}
