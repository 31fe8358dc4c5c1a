//! Turns wasmtime's errors into `PluginError`s that name the cause and what to change.
//!
//! - An epoch deadline set from the host's call timeout (shorter than the plugin's own) becomes
//!   `PluginError::Timeout`, as if the host had stopped waiting.
//! - An epoch deadline, an empty fuel tank or a wasm stack overflow becomes
//!   `PluginError::LimitExceeded` whose `limit` is the setting to raise (`timeout`, `fuel`,
//!   `max_wasm_stack`).
//! - A failure after the limiter refused a memory or table growth becomes
//!   `LimitExceeded { limit: "max_memory_bytes" | "max_table_elements" }`: the refusal is the
//!   cause, the trap or failed allocation that followed only its symptom.
//! - Any other trap becomes `PluginError::Runtime` naming the trap (`wasm trap: out of bounds
//!   memory access`), with the guest function and offset when wasm backtraces are on.
//! - A host import refusing a broken ABI contract becomes `PluginError::Runtime` located at that
//!   import.
//! - A guest calling WASI `proc_exit` becomes `PluginError::Runtime` naming the exit status: a
//!   plugin returns from `execute`, it does not exit (and its instance is discarded).

use std::time::Duration;

use wasmtime::{Trap, WasmBacktrace};

use super::host_imports::HostCallError;
use super::host_state::Refusal;
use super::{wasi, WasmLimits};
use crate::PluginError;

/// What the host was doing when guest code failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Instantiate,
    Initialize,
    AllocInput,
    Execute,
    Dealloc,
    Metadata,
}

impl Phase {
    fn describe(self) -> &'static str {
        match self {
            Phase::Instantiate => "while instantiating the module",
            Phase::Initialize => "in `_initialize`",
            Phase::AllocInput => "in `alloc`, allocating the input",
            Phase::Execute => "in `execute`",
            Phase::Dealloc => "in `dealloc`, freeing the output or input",
            Phase::Metadata => "in `bilayer_metadata`",
        }
    }
}

/// The plugin a failure belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Site<'a> {
    pub plugin_id: &'a str,
    pub version: &'a str,
    pub phase: Phase,
    /// The host's call timeout, when it is what the epoch deadline was set from.
    pub host_timeout: Option<Duration>,
}

impl Site<'_> {
    fn location(&self, backtrace: Option<&WasmBacktrace>) -> String {
        let mut location = format!(
            "WASM plugin `{}` (version {}) {}",
            self.plugin_id,
            self.version,
            self.phase.describe()
        );
        if let Some(frame) = backtrace.and_then(|bt| bt.frames().first()) {
            match frame.func_name() {
                Some(name) => location.push_str(&format!(", function `{name}`")),
                None => location.push_str(&format!(", function #{}", frame.func_index())),
            }
            if let Some(offset) = frame.module_offset() {
                location.push_str(&format!(" at offset {offset:#x}"));
            }
        }
        location
    }
}

/// Maps an error raised while the host ran guest code.
pub(crate) fn guest_error(
    site: Site<'_>,
    err: wasmtime::Error,
    refused: Option<Refusal>,
    limits: &WasmLimits,
    elapsed: Duration,
) -> PluginError {
    let id = site.plugin_id;
    if let Some(trap) = err.downcast_ref::<Trap>() {
        match trap {
            Trap::Interrupt if site.host_timeout.is_some() => {
                // The host's bound (a hop timeout, an execute timeout) was the tighter one: the
                // call timed out as the host sees it, whatever the plugin's own limit.
                return PluginError::Timeout {
                    id: id.to_string(),
                    after: site.host_timeout.unwrap_or(elapsed),
                };
            }
            Trap::Interrupt => {
                return PluginError::LimitExceeded {
                    limit: "timeout".to_string(),
                    detail: format!(
                    "WASM plugin `{id}` was stopped {} after {elapsed:.1?}, past its timeout of \
                         {:?}; raise WasmLimits::timeout if the work is legitimate",
                    site.phase.describe(),
                    limits.timeout
                ),
                }
            }
            Trap::OutOfFuel => {
                return PluginError::LimitExceeded {
                    limit: "fuel".to_string(),
                    detail: format!(
                        "WASM plugin `{id}` burned all {} units of fuel {}; raise WasmLimits::fuel \
                         if the work is legitimate",
                        limits.fuel.unwrap_or(0),
                        site.phase.describe()
                    ),
                }
            }
            Trap::StackOverflow => {
                return PluginError::LimitExceeded {
                    limit: "max_wasm_stack".to_string(),
                    detail: format!(
                        "WASM plugin `{id}` exhausted its wasm stack {} (runaway recursion?); \
                         raise WasmConfig::max_wasm_stack if the depth is legitimate",
                        site.phase.describe()
                    ),
                }
            }
            _ => {}
        }
    }

    let symptom = symptom(&err);
    if let Some(refusal) = refused {
        return refusal_error(id, refusal, &symptom);
    }

    let backtrace = err.downcast_ref::<WasmBacktrace>();
    if let Some(status) = wasi::exit_status(&err) {
        return PluginError::Runtime {
            location: site.location(backtrace),
            message: format!(
                "the guest called WASI `proc_exit({status})`; a plugin must return a result \
                 from `execute` (with the error bit for a failure) instead of exiting: build it \
                 as a reactor (C: -mexec-model=reactor; Rust: a cdylib) and do not call exit()"
            ),
        };
    }
    if let Some(host) = err.downcast_ref::<HostCallError>() {
        return PluginError::Runtime {
            location: format!(
                "host import `bilayer.{}` called by {}",
                host.import,
                site.location(backtrace)
            ),
            message: format!(
                "{}; the guest broke the ABI (docs/wasm-abi.md)",
                host.message
            ),
        };
    }
    PluginError::Runtime {
        location: site.location(backtrace),
        message: symptom,
    }
}

/// A failure the guest caused without a wasmtime error: a bad region, an `alloc` that
/// returned 0. A refused growth still takes precedence as the cause.
pub(crate) fn abi_violation(
    site: Site<'_>,
    problem: String,
    refused: Option<Refusal>,
) -> PluginError {
    if let Some(refusal) = refused {
        return refusal_error(site.plugin_id, refusal, &problem);
    }
    PluginError::Runtime {
        location: site.location(None),
        message: format!("{problem}; see docs/wasm-abi.md"),
    }
}

/// An instance could not be created for a reason outside the guest (the pool is full).
pub(crate) fn instantiate_error(
    site: Site<'_>,
    err: wasmtime::Error,
    refused: Option<Refusal>,
    limits: &WasmLimits,
    elapsed: Duration,
) -> PluginError {
    let text = format!("{err:#}");
    if refused.is_none() && err.downcast_ref::<Trap>().is_none() && text.contains("concurrent") {
        return PluginError::LimitExceeded {
            limit: "pool_instances".to_string(),
            detail: format!(
                "no free instance slot for WASM plugin `{}` ({text}); raise \
                 WasmConfig::pool_instances or run fewer plugins in InstanceMode::Reuse",
                site.plugin_id
            ),
        };
    }
    guest_error(site, err, refused, limits, elapsed)
}

fn symptom(err: &wasmtime::Error) -> String {
    match err.downcast_ref::<Trap>() {
        // A trap displays as "wasm trap: <what happened>"; the code names it for matching.
        Some(trap) => format!("{trap} ({trap:?})"),
        None => format!("{err:#}"),
    }
}

fn refusal_error(id: &str, refusal: Refusal, symptom: &str) -> PluginError {
    match refusal {
        Refusal::Memory { desired, cap } => PluginError::LimitExceeded {
            limit: "max_memory_bytes".to_string(),
            detail: format!(
                "WASM plugin `{id}` tried to grow its memory to {desired} bytes, over its cap of \
                 {cap} bytes, and then failed ({symptom}); raise WasmLimits::max_memory_bytes if \
                 the plugin legitimately needs more"
            ),
        },
        Refusal::Table { desired, cap } => PluginError::LimitExceeded {
            limit: "max_table_elements".to_string(),
            detail: format!(
                "WASM plugin `{id}` tried to grow a table to {desired} elements, over its cap of \
                 {cap}, and then failed ({symptom}); raise WasmLimits::max_table_elements if the \
                 plugin legitimately needs more"
            ),
        },
    }
}
