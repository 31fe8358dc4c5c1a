//! Turns wasmtime's errors into `PluginError`s that name the cause and what to change.
//!
//! - An epoch deadline set from the host's call timeout (shorter than the plugin's own) becomes
//!   `PluginError::Timeout`, as if the host had stopped waiting.
//! - An epoch deadline, an empty fuel tank or a wasm stack overflow becomes
//!   `PluginError::LimitExceeded` whose `limit` is the setting to raise (`timeout`, `fuel`,
//!   `max_wasm_stack`); the advice names it as the plugin's [`LimitSettings`] say (the Rust
//!   setting, a front end's key, or nothing when the front end has no key for it).
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
use crate::{LimitSettings, PluginError};

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
    /// How the plugin's limit errors name the setting to raise.
    pub settings: &'a LimitSettings,
}

/// "; raise SETTING {why}", naming the setting of `limit` (a field of `rust_type` for Rust
/// users) as `settings` say; nothing when the configuration has no setting for it.
pub(crate) fn raise_hint(
    settings: &LimitSettings,
    rust_type: &str,
    limit: &str,
    why: &str,
) -> String {
    settings
        .setting(rust_type, limit)
        .map_or_else(String::new, |setting| format!("; raise {setting} {why}"))
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
                        "WASM plugin `{id}` was stopped {} after {elapsed:.1?}, past its timeout \
                         of {:?}{}",
                        site.phase.describe(),
                        limits.timeout,
                        raise_hint(
                            site.settings,
                            "WasmLimits",
                            "timeout",
                            "if the work is legitimate"
                        )
                    ),
                }
            }
            Trap::OutOfFuel => {
                return PluginError::LimitExceeded {
                    limit: "fuel".to_string(),
                    detail: format!(
                        "WASM plugin `{id}` burned all {} units of fuel {}{}",
                        limits.fuel.unwrap_or(0),
                        site.phase.describe(),
                        raise_hint(
                            site.settings,
                            "WasmLimits",
                            "fuel",
                            "if the work is legitimate"
                        )
                    ),
                }
            }
            Trap::StackOverflow => {
                return PluginError::LimitExceeded {
                    limit: "max_wasm_stack".to_string(),
                    detail: format!(
                        "WASM plugin `{id}` exhausted its wasm stack {} (runaway recursion?){}",
                        site.phase.describe(),
                        raise_hint(
                            site.settings,
                            "WasmConfig",
                            "max_wasm_stack",
                            "if the depth is legitimate"
                        )
                    ),
                }
            }
            _ => {}
        }
    }

    let symptom = symptom(&err);
    if let Some(refusal) = refused {
        return refusal_error(site, refusal, &symptom);
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
        return refusal_error(site, refusal, &problem);
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
                "no free instance slot for WASM plugin `{}` ({text}){}",
                site.plugin_id,
                raise_hint(
                    site.settings,
                    "WasmConfig",
                    "pool_instances",
                    "or run fewer plugins in InstanceMode::Reuse"
                )
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

fn refusal_error(site: Site<'_>, refusal: Refusal, symptom: &str) -> PluginError {
    let id = site.plugin_id;
    let hint = |limit| {
        raise_hint(
            site.settings,
            "WasmLimits",
            limit,
            "if the plugin legitimately needs more",
        )
    };
    match refusal {
        Refusal::Memory { desired, cap } => PluginError::LimitExceeded {
            limit: "max_memory_bytes".to_string(),
            detail: format!(
                "WASM plugin `{id}` tried to grow its memory to {desired} bytes, over its cap of \
                 {cap} bytes, and then failed ({symptom}){}",
                hint("max_memory_bytes")
            ),
        },
        Refusal::Table { desired, cap } => PluginError::LimitExceeded {
            limit: "max_table_elements".to_string(),
            detail: format!(
                "WASM plugin `{id}` tried to grow a table to {desired} elements, over its cap of \
                 {cap}, and then failed ({symptom}){}",
                hint("max_table_elements")
            ),
        },
    }
}
