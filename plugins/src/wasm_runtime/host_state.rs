//! What each wasmtime `Store` carries for the host: who the plugin is, what it was granted,
//! its context (config, state store, plugin caller), the resource limiter, and, for a plugin
//! granted `wasi`, its WASI context.
//!
//! The limiter is why memory caps hold: wasmtime consults it on every `memory.grow` and table
//! growth (and for the initial sizes at instantiation), but only once it is installed with
//! `store.limiter(...)`, which [`new_store`] always does. A refused growth makes the guest's
//! `memory.grow` return -1, as the wasm spec says, so a careful guest can report the failure
//! itself; the refusal is also recorded here, so that if the call then fails (a trap, an
//! allocation that returned 0), the error names the limit instead of the symptom.

use std::sync::Arc;

use wasmtime::{ResourceLimiter, Store};

#[cfg(feature = "wasi")]
use super::wasi;
use super::wasi::WasiP1Ctx;
use super::{inline, WasmCapabilities, WasmEngine, WasmLimits};
use crate::PluginContext;

/// The data of every store the host creates for a plugin.
pub(crate) struct HostState {
    pub plugin_id: Arc<str>,
    pub ctx: Arc<PluginContext>,
    pub grants: Arc<WasmCapabilities>,
    pub limiter: StoreLimiter,
    pub max_log_bytes: usize,
    /// The WASI context built from the plugin's grant; `None` when `wasi` is not granted (boxed
    /// so that stores of other plugins stay small).
    /// Without the `wasi` feature it is always `None` (a grant is refused at link).
    #[cfg_attr(not(feature = "wasi"), allow(dead_code))]
    pub wasi: Option<Box<WasiP1Ctx>>,
}

impl HostState {
    /// The store's WASI context. The linker defines WASI functions only for plugins granted
    /// `wasi`, whose stores always have one; should that ever fail, the guest gets a context
    /// that opens nothing rather than the host a panic.
    #[cfg(feature = "wasi")]
    pub(super) fn wasi_ctx(&mut self) -> &mut WasiP1Ctx {
        self.wasi
            .get_or_insert_with(|| Box::new(wasi::closed_context()))
    }
}

/// A growth the limiter refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Memory { desired: usize, cap: usize },
    Table { desired: usize, cap: usize },
}

/// Caps memory and table growth of one store and remembers the first refusal.
pub(crate) struct StoreLimiter {
    max_memory_bytes: usize,
    max_table_elements: usize,
    pub refused: Option<Refusal>,
}

impl StoreLimiter {
    pub(super) fn new(limits: &WasmLimits) -> Self {
        Self {
            max_memory_bytes: limits.max_memory_bytes,
            max_table_elements: limits.max_table_elements,
            refused: None,
        }
    }
}

impl ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.refused.get_or_insert(Refusal::Memory {
                desired,
                cap: self.max_memory_bytes,
            });
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            self.refused.get_or_insert(Refusal::Table {
                desired,
                cap: self.max_table_elements,
            });
            return Ok(false);
        }
        Ok(true)
    }

    /// One instance per store: the plugin's.
    fn instances(&self) -> usize {
        1
    }

    /// One linear memory: the ABI's `memory`. (Another one would escape the byte cap.)
    fn memories(&self) -> usize {
        1
    }
}

/// A store for one instance of a plugin, with the limiter installed and fuel set.
/// The epoch deadline is set by the caller right before it runs guest code.
pub(crate) fn new_store(
    engine: &WasmEngine,
    state: HostState,
    limits: &WasmLimits,
) -> wasmtime::Result<Store<HostState>> {
    let mut store = Store::new(engine.wasmtime(), state);
    store.limiter(|state| &mut state.limiter);
    // Traps at the deadline as a store without a callback does, except during a speculative
    // inline attempt, which it ends once its slice is over (see `inline`).
    store.epoch_deadline_callback(|_| inline::on_deadline());
    if engine.meters_fuel() {
        // An engine that meters fuel traps at once on an empty tank; a plugin without a fuel
        // limit gets as much as it can burn.
        store.set_fuel(limits.fuel.unwrap_or(u64::MAX))?;
    }
    Ok(store)
}
