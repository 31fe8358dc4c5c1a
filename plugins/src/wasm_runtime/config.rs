//! `WasmConfig` and `WasmLimits`: what an engine is built with, and the sandbox limits every
//! call of a WASM plugin runs under.
//!
//! The two are separate because they live at different levels. Engine settings (the pooling
//! allocator, the epoch tick, fuel metering, wasm backtraces) are fixed when the shared
//! `Engine` is created and apply to every module compiled on it. Limits are per plugin and are
//! installed into each `Store` before every call (a limit that is configured but never
//! installed protects nothing), so two plugins on one engine can have different caps.
//!
//! The name of each `WasmLimits` field is the `limit` that
//! [`PluginError::LimitExceeded`](crate::PluginError::LimitExceeded) reports when a plugin hits
//! it, so an error says exactly which setting to raise; its advice names that setting as
//! `limit_settings` say (`WasmLimits::timeout` by default, a front end's own key otherwise).

use std::time::Duration;

use crate::LimitSettings;

/// Sandbox limits of one WASM plugin, installed into its store before every call.
///
/// | limit | default | what hitting it reports |
/// | --- | --- | --- |
/// | `max_memory_bytes` | 64 MiB | `LimitExceeded { limit: "max_memory_bytes" }` (the guest's `memory.grow` returns -1 first; the error is reported if the call then fails) |
/// | `max_table_elements` | 10 000 | `LimitExceeded { limit: "max_table_elements" }` |
/// | `timeout` | 1 s wall clock per call | `LimitExceeded { limit: "timeout" }` |
/// | `fuel` | off | `LimitExceeded { limit: "fuel" }` |
/// | `max_output_bytes` | 16 MiB | `LimitExceeded { limit: "max_output_bytes" }` |
/// | `max_log_bytes` | 16 KiB per message | longer messages are truncated |
///
/// The wasm stack is limited by the engine ([`WasmConfig::max_wasm_stack`]); overflowing it
/// reports `LimitExceeded { limit: "max_wasm_stack" }`.
///
/// ```
/// use std::time::Duration;
/// use bilayer_plugins::wasm_runtime::WasmLimits;
///
/// let limits = WasmLimits::default()
///     .max_memory_bytes(16 << 20)
///     .timeout(Duration::from_millis(200));
/// assert_eq!(limits.max_memory_bytes, 16 << 20);
/// assert_eq!(limits.fuel, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WasmLimits {
    /// Bytes of linear memory the instance may hold (its initial size included).
    pub max_memory_bytes: usize,
    /// Elements in the instance's tables (its initial size included).
    pub max_table_elements: usize,
    /// Wall-clock time one call may take, enforced by epoch deadlines. Instantiation counts
    /// when the instance is created for the call, and so does time spent waiting in
    /// `call_plugin`; precision is the engine's [`WasmConfig::epoch_tick`].
    pub timeout: Duration,
    /// Fuel one call may burn (roughly one unit per wasm instruction), for deterministic
    /// metering; `None` turns it off. Needs an engine built with fuel metering, which a
    /// [`WasmConfig`] whose default limits set fuel, or [`WasmConfig::fuel_metering`], gives.
    pub fuel: Option<u64>,
    /// Bytes one call may return.
    pub max_output_bytes: usize,
    /// Bytes of one `log` message; longer ones are truncated (marked with `…`).
    pub max_log_bytes: usize,
    /// How limit errors name the setting to raise: `WasmLimits::timeout` by default; a front
    /// end reading limits from a file maps them to its keys ([`LimitSettings::keys`]), and a
    /// limit it has no key for is reported without advice to raise it.
    pub limit_settings: LimitSettings,
}

impl Default for WasmLimits {
    fn default() -> Self {
        Self {
            max_memory_bytes: 64 << 20,
            max_table_elements: 10_000,
            timeout: Duration::from_secs(1),
            fuel: None,
            max_output_bytes: 16 << 20,
            max_log_bytes: 16 << 10,
            limit_settings: LimitSettings::rust(),
        }
    }
}

impl WasmLimits {
    /// Sets [`max_memory_bytes`](Self::max_memory_bytes).
    pub fn max_memory_bytes(mut self, bytes: usize) -> Self {
        self.max_memory_bytes = bytes;
        self
    }

    /// Sets [`max_table_elements`](Self::max_table_elements).
    pub fn max_table_elements(mut self, elements: usize) -> Self {
        self.max_table_elements = elements;
        self
    }

    /// Wall-clock time one call may take; a zero timeout is raised to one epoch tick.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Fuel per call; `None` turns metering off for this plugin.
    pub fn fuel(mut self, fuel: impl Into<Option<u64>>) -> Self {
        self.fuel = fuel.into();
        self
    }

    /// Sets [`max_output_bytes`](Self::max_output_bytes).
    pub fn max_output_bytes(mut self, bytes: usize) -> Self {
        self.max_output_bytes = bytes;
        self
    }

    /// Sets [`max_log_bytes`](Self::max_log_bytes).
    pub fn max_log_bytes(mut self, bytes: usize) -> Self {
        self.max_log_bytes = bytes;
        self
    }

    /// How limit errors name the setting to raise (see [`LimitSettings`]).
    pub fn limit_settings(mut self, settings: LimitSettings) -> Self {
        self.limit_settings = settings;
        self
    }
}

/// How a plugin's calls map to wasm instances.
///
/// - [`InstanceMode::FreshPerCall`] (the default): every call gets a new instance from the
///   module's `InstancePre`, so nothing a call leaves in guest memory or globals can reach the
///   next call, and a trap can never leave a half-updated instance behind. With the pooling
///   allocator and copy-on-write memory images this costs a few microseconds.
/// - [`InstanceMode::Reuse`]: one instance serves call after call, so guest globals and heap
///   survive between calls (a cache, a parsed table) and a call costs only the call itself.
///   The instance is dropped and rebuilt after any trap or limit, and on reload.
///
/// Either way, state that must survive a restart or a reload belongs in the host state store
/// (`bilayer.state_get`/`state_set`), not in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstanceMode {
    /// A new instance for every call (the default).
    #[default]
    FreshPerCall,
    /// One instance kept from call to call, rebuilt after a trap, a limit or a reload.
    Reuse,
}

/// Engine settings and the default limits of the plugins compiled on it.
///
/// ```
/// use std::time::Duration;
/// use bilayer_plugins::wasm_runtime::{WasmConfig, WasmLimits};
///
/// let config = WasmConfig::default()
///     .default_limits(WasmLimits::default().timeout(Duration::from_millis(250)))
///     .pool_instances(64);
/// assert!(config.pooling);
/// assert_eq!(config.limits.timeout, Duration::from_millis(250));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WasmConfig {
    /// Limits of plugins that do not set their own ([`WasmPlugin::with_limits`](super::WasmPlugin::with_limits)).
    pub limits: WasmLimits,
    /// Use wasmtime's pooling instance allocator: instances come from slots reserved when the
    /// engine is created, which makes a fresh instance per call cheap. Each slot reserves
    /// about 4 GiB of virtual address space (not memory); if the reservation fails, the engine
    /// falls back to on-demand allocation and says so in the log.
    pub pooling: bool,
    /// Instances that can be alive at once in the pool (concurrent calls plus the instances
    /// kept by [`InstanceMode::Reuse`] plugins).
    pub pool_instances: u32,
    /// Interval of the ticker thread that advances the engine's epoch; the precision of
    /// [`WasmLimits::timeout`].
    pub epoch_tick: Duration,
    /// Compile with fuel metering (needed by [`WasmLimits::fuel`]; makes guest code slower).
    pub fuel_metering: bool,
    /// Record wasm backtraces in trap errors (function names and offsets). Off by default:
    /// capturing them makes every trap slower.
    pub wasm_backtrace: bool,
    /// Bytes of native stack wasm code may use before `LimitExceeded { limit: "max_wasm_stack" }`.
    pub max_wasm_stack: usize,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            limits: WasmLimits::default(),
            pooling: true,
            pool_instances: 256,
            epoch_tick: Duration::from_millis(10),
            fuel_metering: false,
            wasm_backtrace: false,
            max_wasm_stack: 512 << 10,
        }
    }
}

impl WasmConfig {
    /// The defaults (see [`WasmConfig::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits of plugins that set none; limits with fuel turn fuel metering on.
    pub fn default_limits(mut self, limits: WasmLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets [`pooling`](Self::pooling).
    pub fn pooling(mut self, enabled: bool) -> Self {
        self.pooling = enabled;
        self
    }

    /// Sets [`pool_instances`](Self::pool_instances) (at least 1).
    pub fn pool_instances(mut self, instances: u32) -> Self {
        self.pool_instances = instances.max(1);
        self
    }

    /// Sets [`epoch_tick`](Self::epoch_tick) (at least 100 µs).
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.epoch_tick = tick.max(Duration::from_micros(100));
        self
    }

    /// Sets [`fuel_metering`](Self::fuel_metering).
    pub fn fuel_metering(mut self, enabled: bool) -> Self {
        self.fuel_metering = enabled;
        self
    }

    /// Sets [`wasm_backtrace`](Self::wasm_backtrace).
    pub fn wasm_backtrace(mut self, enabled: bool) -> Self {
        self.wasm_backtrace = enabled;
        self
    }

    /// Sets [`max_wasm_stack`](Self::max_wasm_stack).
    pub fn max_wasm_stack(mut self, bytes: usize) -> Self {
        self.max_wasm_stack = bytes;
        self
    }

    /// Whether the engine meters fuel: asked for explicitly or needed by the default limits.
    pub(crate) fn meters_fuel(&self) -> bool {
        self.fuel_metering || self.limits.fuel.is_some()
    }
}
