//! `WasmEngine`: one wasmtime `Engine` shared by every plugin compiled on it, with its epoch
//! ticker and its cache of compiled modules.
//!
//! Creating an `Engine` is costly (docs/benchmarks.md, section "Costs behind design choices in the
//! code") and each owns its compiled code, its pooling slots and a ticker thread, so engines are
//! shared, never made per plugin or per call: [`WasmEngine::shared`] is the process-wide default
//! (what `WasmRuntime::new()` and `WasmPlugin::from_file` use); [`WasmEngine::new`] builds one for
//! a [`WasmConfig`] whose engine settings differ. Cloning a `WasmEngine` clones a handle.
//!
//! Every engine has epoch interruption on (per-call timeouts), wasm backtraces off unless asked
//! (they make every trap slower), and the pooling allocator sized by
//! [`WasmConfig::pool_instances`]. A pool slot reserves about 4 GiB of address space so that
//! compiled code needs no bounds checks; if the reservation fails (a `ulimit -v`, a 32-bit
//! host), the engine falls back to on-demand allocation and logs a warning.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::module::CompiledModule;
use super::{epoch_ticker, WasmConfig};
use crate::{PluginError, PluginResult};

/// Address space reserved per linear memory: the full 32-bit range, so guest loads and stores
/// need no explicit bounds checks. Pool slots are sized to hold any memory up to this size,
/// which is why a plugin's `max_memory_bytes` never needs to match the pool.
const MEMORY_RESERVATION: u64 = 4 << 30;

/// A shared wasmtime engine with its epoch ticker and its cache of compiled modules.
///
/// Engines are expensive (creation time, their own code memory, pool slots and ticker thread), so
/// they are shared: [`WasmEngine::shared`] is the process-wide default, [`WasmEngine::new`]
/// builds one for a [`WasmConfig`] with other engine settings. Every engine has epoch
/// interruption on, wasm backtraces off unless asked, and the pooling allocator (falling back
/// to on-demand allocation, with a warning, when the address space cannot be reserved).
/// Cloning clones a handle.
#[derive(Clone)]
pub struct WasmEngine(Arc<EngineInner>);

struct EngineInner {
    engine: Engine,
    config: WasmConfig,
    pooling: bool,
    /// Compiled modules by content hash, so one version is compiled once however many plugins
    /// (or re-registrations) use it. Weak: a version nobody uses is freed.
    modules: Mutex<HashMap<u64, Vec<Weak<CompiledModule>>>>,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("pooling", &self.0.pooling)
            .field("fuel_metering", &self.0.config.meters_fuel())
            .field("epoch_tick", &self.0.config.epoch_tick)
            .finish()
    }
}

impl WasmEngine {
    /// The process-wide engine built from `WasmConfig::default()`, created on first use.
    pub fn shared() -> PluginResult<WasmEngine> {
        static SHARED: OnceLock<PluginResult<WasmEngine>> = OnceLock::new();
        SHARED
            .get_or_init(|| WasmEngine::new(WasmConfig::default()))
            .clone()
    }

    /// The process-wide engine built from `WasmConfig::default().fuel_metering(true)`, created
    /// on first use: what plugins whose limits set [`WasmLimits::fuel`](super::WasmLimits::fuel)
    /// are compiled on when their host picks the engine (system definitions, `bilayer exec
    /// --fuel`). Metered code is slower, so plugins without fuel stay on [`WasmEngine::shared`].
    pub fn shared_metering_fuel() -> PluginResult<WasmEngine> {
        static METERED: OnceLock<PluginResult<WasmEngine>> = OnceLock::new();
        METERED
            .get_or_init(|| WasmEngine::new(WasmConfig::default().fuel_metering(true)))
            .clone()
    }

    /// A new engine for `config` and its epoch ticker thread.
    pub fn new(config: WasmConfig) -> PluginResult<WasmEngine> {
        let (engine, pooling) = build_engine(&config)?;
        epoch_ticker::start(engine.weak(), config.epoch_tick).map_err(|e| {
            PluginError::Config(format!(
                "cannot start the WASM epoch ticker thread ({e}); without it timeouts cannot fire"
            ))
        })?;
        Ok(WasmEngine(Arc::new(EngineInner {
            engine,
            config,
            pooling,
            modules: Mutex::new(HashMap::new()),
        })))
    }

    /// The underlying wasmtime engine.
    pub fn wasmtime(&self) -> &Engine {
        &self.0.engine
    }

    /// The configuration the engine was built with (its `limits` are the default limits of
    /// plugins compiled on it).
    pub fn config(&self) -> &WasmConfig {
        &self.0.config
    }

    /// Whether instances come from the pooling allocator (false after a fallback).
    pub fn uses_pooling(&self) -> bool {
        self.0.pooling
    }

    /// Whether compiled code meters fuel, which [`WasmLimits::fuel`](super::WasmLimits::fuel) needs.
    pub fn meters_fuel(&self) -> bool {
        self.0.config.meters_fuel()
    }

    /// True when both handles share one engine.
    pub fn same(&self, other: &WasmEngine) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The live compiled module with exactly these bytes, if any.
    pub(crate) fn cached_module(&self, hash: u64, bytes: &[u8]) -> Option<Arc<CompiledModule>> {
        let modules = self.0.modules.lock().unwrap_or_else(|p| p.into_inner());
        modules
            .get(&hash)?
            .iter()
            .filter_map(Weak::upgrade)
            .find(|module| &*module.bytes == bytes)
    }

    pub(crate) fn remember_module(&self, hash: u64, module: &Arc<CompiledModule>) {
        let mut modules = self.0.modules.lock().unwrap_or_else(|p| p.into_inner());
        let versions = modules.entry(hash).or_default();
        versions.retain(|weak| weak.strong_count() > 0);
        versions.push(Arc::downgrade(module));
        modules.retain(|_, versions| !versions.is_empty());
    }
}

fn build_engine(config: &WasmConfig) -> PluginResult<(Engine, bool)> {
    let mut base = wasmtime::Config::new();
    base.epoch_interruption(true)
        .consume_fuel(config.meters_fuel())
        .wasm_backtrace_max_frames(if config.wasm_backtrace {
            NonZeroUsize::new(20)
        } else {
            None
        })
        .max_wasm_stack(config.max_wasm_stack);
    if usize::BITS >= 64 {
        base.memory_reservation(MEMORY_RESERVATION);
    }

    if config.pooling {
        let mut pooled = base.clone();
        let slots = config.pool_instances;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .max_memories_per_module(1)
            // Resetting a slot's first pages with memset is cheaper than returning them to
            // the kernel and faulting them in again on the next instance.
            .linear_memory_keep_resident(64 << 10)
            .table_keep_resident(16 << 10);
        // wasmtime's `async` feature (which wasmtime-wasi turns on) would reserve 1000
        // fiber stacks of 2 MiB here; every call is synchronous, so none is ever used.
        #[cfg(feature = "wasi")]
        pool.total_stacks(0);
        if usize::BITS >= 64 {
            pool.max_memory_size(MEMORY_RESERVATION as usize);
        }
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&pooled) {
            Ok(engine) => return Ok((engine, true)),
            Err(e) => tracing::warn!(
                target: "bilayer::wasm",
                error = %e,
                slots,
                "cannot reserve the WASM instance pool; falling back to on-demand allocation \
                 (lower WasmConfig::pool_instances or raise the address-space limit to keep pooling)"
            ),
        }
    }

    Engine::new(&base)
        .map(|engine| (engine, false))
        .map_err(|e| PluginError::Config(format!("cannot create the WASM engine: {e:#}")))
}
