//! `GuestInstance`: one instantiated module in its own store, and one call through the ABI.
//!
//! A call is: set the epoch deadline (and fuel), `alloc` room for the input and copy it in,
//! call `execute(ptr, len)`, check the returned region against the memory's current size and
//! the output cap, copy the bytes out. Nothing the guest returns is trusted: a region outside
//! its memory is an error naming the region.
//!
//! The deadline is always set before guest code runs. With epoch interruption on, a store
//! whose deadline was never set traps at the first check, and a deadline set once would expire
//! for every later call of a reused instance.

use std::time::{Duration, Instant};

use wasmtime::{Extern, Instance, Memory, Store, TypedFunc};

use super::abi::{guest_range, unsigned, Region, MAX_REGION_LEN};
use super::errors::{self, Phase};
use super::host_state::{new_store, HostState};
use super::inline;
use super::link::LinkedPlugin;
use crate::{PluginError, PluginResult};

/// An instance of a plugin's module with its typed ABI functions.
pub(crate) struct GuestInstance {
    store: Store<HostState>,
    instance: Instance,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    execute: TypedFunc<(i32, i32), i64>,
    dealloc: Option<TypedFunc<(i32, i32), ()>>,
}

impl GuestInstance {
    /// Instantiates `linked`'s module (running its start function and `_initialize`) under a
    /// fresh deadline and fuel tank.
    pub(super) fn new(linked: &LinkedPlugin, started: Instant) -> PluginResult<GuestInstance> {
        let site = |phase| linked.site(phase);
        let engine = &linked.compiled.engine;
        let mut store = new_store(engine, linked.host_state()?, &linked.limits)
            .map_err(|e| PluginError::Config(format!("cannot create a WASM store: {e:#}")))?;
        arm(&mut store, linked)?;

        let instance = linked.pre.instantiate(&mut store).map_err(|e| {
            let refused = store.data().limiter.refused;
            errors::instantiate_error(
                site(Phase::Instantiate),
                e,
                refused,
                &linked.limits,
                started.elapsed(),
            )
        })?;
        let exports = &linked.compiled.exports;
        let mut get =
            |export: &wasmtime::ModuleExport| instance.get_module_export(&mut store, export);
        let memory = get(&exports.memory).and_then(Extern::into_memory);
        let alloc = get(&exports.alloc).and_then(Extern::into_func);
        let execute = get(&exports.execute).and_then(Extern::into_func);
        let dealloc = exports
            .dealloc
            .as_ref()
            .and_then(&mut get)
            .and_then(Extern::into_func);
        let initialize = exports
            .initialize
            .as_ref()
            .and_then(&mut get)
            .and_then(Extern::into_func);
        let (Some(memory), Some(alloc), Some(execute)) = (memory, alloc, execute) else {
            return Err(errors::abi_violation(
                site(Phase::Instantiate),
                "the instance lacks an ABI export its module declared".to_string(),
                None,
            ));
        };
        let typed_error = |e: wasmtime::Error| {
            errors::abi_violation(site(Phase::Instantiate), format!("{e:#}"), None)
        };
        let alloc = alloc.typed::<i32, i32>(&store).map_err(typed_error)?;
        let execute = execute
            .typed::<(i32, i32), i64>(&store)
            .map_err(typed_error)?;
        let dealloc = dealloc
            .map(|f| f.typed::<(i32, i32), ()>(&store))
            .transpose()
            .map_err(typed_error)?;

        if let Some(initialize) = initialize.filter(|_| linked.run_initialize) {
            let initialize = initialize.typed::<(), ()>(&store).map_err(typed_error)?;
            initialize.call(&mut store, ()).map_err(|e| {
                let refused = store.data().limiter.refused;
                errors::guest_error(
                    site(Phase::Initialize),
                    e,
                    refused,
                    &linked.limits,
                    started.elapsed(),
                )
            })?;
        }

        Ok(GuestInstance {
            store,
            instance,
            memory,
            alloc,
            execute,
            dealloc,
        })
    }

    /// One call. A `reused` instance gets a new deadline and fuel tank, and its output and
    /// input buffers back through `dealloc` (when it exports one) afterwards; a fresh instance
    /// keeps the deadline it was instantiated under, so instantiation counts against the call,
    /// and is dropped whole.
    pub(super) fn call(
        &mut self,
        linked: &LinkedPlugin,
        input: &[u8],
        reused: bool,
        started: Instant,
    ) -> PluginResult<Vec<u8>> {
        if reused {
            arm(&mut self.store, linked)?;
        }
        let fail = |store: &Store<HostState>, phase, e| {
            errors::guest_error(
                linked.site(phase),
                e,
                store.data().limiter.refused,
                &linked.limits,
                started.elapsed(),
            )
        };

        if input.len() > MAX_REGION_LEN {
            return Err(PluginError::InvalidInput(format!(
                "an input of {} bytes does not fit the WASM ABI (at most {MAX_REGION_LEN})",
                input.len()
            )));
        }
        let len = input.len() as u32;
        let ptr = if input.is_empty() {
            0
        } else {
            let ptr = self
                .alloc
                .call(&mut self.store, len as i32)
                .map_err(|e| fail(&self.store, Phase::AllocInput, e))?;
            let ptr = unsigned(ptr);
            let refused = self.store.data().limiter.refused;
            if ptr == 0 {
                return Err(errors::abi_violation(
                    linked.site(Phase::AllocInput),
                    format!("alloc({len}) returned 0 for the input (out of memory?)"),
                    refused,
                ));
            }
            let range =
                guest_range(self.memory.data_size(&self.store), ptr, len).map_err(|oob| {
                    errors::abi_violation(
                        linked.site(Phase::AllocInput),
                        format!("alloc({len}) returned a bad pointer: {oob}"),
                        refused,
                    )
                })?;
            self.memory.data_mut(&mut self.store)[range].copy_from_slice(input);
            ptr
        };

        let packed = self
            .execute
            .call(&mut self.store, (ptr as i32, len as i32))
            .map_err(|e| fail(&self.store, Phase::Execute, e))?;
        let region = Region::unpack(packed);
        if region.len as usize > linked.limits.max_output_bytes {
            return Err(PluginError::LimitExceeded {
                limit: "max_output_bytes".to_string(),
                detail: format!(
                    "WASM plugin `{}` returned {} bytes, over its cap of {}{}",
                    linked.plugin_id,
                    region.len,
                    linked.limits.max_output_bytes,
                    errors::raise_hint(
                        &linked.limits.limit_settings,
                        "WasmLimits",
                        "max_output_bytes",
                        "if that is legitimate"
                    )
                ),
            });
        }
        let output = region
            .slice(self.memory.data(&self.store))
            .map(<[u8]>::to_vec)
            .map_err(|oob| {
                errors::abi_violation(
                    linked.site(Phase::Execute),
                    format!("execute returned a region the guest does not own: {oob}"),
                    self.store.data().limiter.refused,
                )
            })?;

        if reused {
            self.release(region, ptr, len)
                .map_err(|e| fail(&self.store, Phase::Dealloc, e))?;
        }

        if region.is_error {
            return Err(PluginError::Execution(format!(
                "WASM plugin `{}` reported an error: {}",
                linked.plugin_id,
                String::from_utf8_lossy(&output)
            )));
        }
        Ok(output)
    }

    /// Hands the output, then the input, back to a reused instance's `dealloc` (once, when
    /// the guest returned its input buffer as output). Fresh instances are dropped whole.
    fn release(&mut self, output: Region, input_ptr: u32, input_len: u32) -> wasmtime::Result<()> {
        let Some(dealloc) = &self.dealloc else {
            return Ok(());
        };
        if output.len > 0 {
            dealloc.call(&mut self.store, (output.ptr as i32, output.len as i32))?;
        }
        if input_len > 0 && input_ptr != output.ptr {
            dealloc.call(&mut self.store, (input_ptr as i32, input_len as i32))?;
        }
        Ok(())
    }

    /// Calls `export` (`() -> i64`) and returns the bytes of the region it returns.
    pub(super) fn call_region_export(
        &mut self,
        linked: &LinkedPlugin,
        export: &wasmtime::ModuleExport,
        phase: Phase,
        started: Instant,
    ) -> PluginResult<Vec<u8>> {
        let func = self
            .memory_instance_func(export)
            .ok_or_else(|| {
                errors::abi_violation(linked.site(phase), "export not found".to_string(), None)
            })?
            .typed::<(), i64>(&self.store)
            .map_err(|e| errors::abi_violation(linked.site(phase), format!("{e:#}"), None))?;
        let packed = func.call(&mut self.store, ()).map_err(|e| {
            errors::guest_error(
                linked.site(phase),
                e,
                self.store.data().limiter.refused,
                &linked.limits,
                started.elapsed(),
            )
        })?;
        Region::unpack(packed)
            .slice(self.memory.data(&self.store))
            .map(<[u8]>::to_vec)
            .map_err(|oob| {
                errors::abi_violation(
                    linked.site(phase),
                    format!("it returned a region the guest does not own: {oob}"),
                    None,
                )
            })
    }

    fn memory_instance_func(&mut self, export: &wasmtime::ModuleExport) -> Option<wasmtime::Func> {
        self.instance
            .get_module_export(&mut self.store, export)
            .and_then(Extern::into_func)
    }
}

/// Sets the epoch deadline and refills the fuel tank of `store` for one call. A speculative
/// inline attempt gets the next tick, where the epoch callback decides whether its slice is
/// over (see [`inline`](super::inline)).
fn arm(store: &mut Store<HostState>, linked: &LinkedPlugin) -> PluginResult<()> {
    store.set_epoch_deadline(if inline::active() {
        1
    } else {
        linked.deadline_ticks
    });
    if let Some(fuel) = linked.limits.fuel {
        store
            .set_fuel(fuel)
            .map_err(|e| PluginError::Config(format!("cannot set WASM fuel: {e:#}")))?;
    }
    Ok(())
}

/// Epoch ticks for `timeout`: rounded up, plus one because the current tick is already
/// partly over, so a call always gets at least its timeout.
pub(crate) fn deadline_ticks(timeout: Duration, tick: Duration) -> u64 {
    let tick = tick.as_nanos().max(1);
    let ticks = timeout.as_nanos().div_ceil(tick).max(1);
    u64::try_from(ticks).unwrap_or(u64::MAX / 2) + 1
}
