//! The host imports (module `bilayer`), the capability each needs, and the per-plugin linker
//! (which adds WASI preview 1 for plugins granted `wasi`, see [`wasi`](super::wasi)).
//!
//! Each function really reads and writes guest memory: arguments are `(ptr, len)` pairs checked
//! against the guest's memory before use, and results are copied into memory the guest
//! allocates with its own `alloc` export, returned as one packed `i64` region (see
//! [`abi`](super::abi)). Two kinds of failure are kept apart:
//!
//! - a broken ABI contract (a pointer outside memory, a missing `alloc`, an `alloc` that
//!   returns 0 or a bad pointer) ends the call with an error naming the import, as a trap
//!   would: the guest cannot be trusted to continue;
//! - an ordinary failure (a key that is not UTF-8, a value that is not JSON, a `call_plugin`
//!   whose target failed or is not allowed) is returned to the guest as an error region, which
//!   it can handle.

use std::panic::AssertUnwindSafe;

use serde_json::Value;
use wasmtime::{Caller, Extern, Linker, Memory, Module};

use super::abi::{self, guest_range, unsigned, Region, MAX_REGION_LEN};
use super::host_state::HostState;
use super::inline;
use super::wasi::{self, PREVIEW1_MODULE, SNAPSHOT0_MODULE};
use super::{Capability, WasmCapabilities, WasmEngine};
use crate::{PluginError, PluginResult};

/// One host function: its name in module `bilayer`, the capability that grants it, its
/// signature as documented, and whether calling it ends a speculative inline attempt
/// ([`inline`]: it blocks or has an effect outside the instance).
pub(crate) struct HostImport {
    pub name: &'static str,
    pub capability: Capability,
    pub signature: &'static str,
    pub leaves_inline: bool,
}

pub(crate) const HOST_IMPORTS: &[HostImport] = &[
    HostImport {
        name: "log",
        capability: Capability::Log,
        signature: "(level: i32, ptr: i32, len: i32)",
        leaves_inline: true,
    },
    HostImport {
        name: "config_get",
        capability: Capability::Config,
        signature: "(key_ptr: i32, key_len: i32) -> i64",
        leaves_inline: false,
    },
    HostImport {
        name: "state_get",
        capability: Capability::State,
        signature: "(key_ptr: i32, key_len: i32) -> i64",
        leaves_inline: false,
    },
    HostImport {
        name: "state_set",
        capability: Capability::State,
        signature: "(key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32) -> i64",
        leaves_inline: true,
    },
    HostImport {
        name: "call_plugin",
        capability: Capability::CallPlugin,
        signature: "(id_ptr: i32, id_len: i32, input_ptr: i32, input_len: i32) -> i64",
        leaves_inline: true,
    },
];

/// A host function refused to go on because the guest broke the ABI contract.
#[derive(Debug)]
pub(crate) struct HostCallError {
    pub import: &'static str,
    pub message: String,
}

impl std::fmt::Display for HostCallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host import `bilayer.{}`: {}", self.import, self.message)
    }
}

impl std::error::Error for HostCallError {}

fn contract_error(import: &'static str, message: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::new(HostCallError {
        import,
        message: message.into(),
    })
}

/// Whether `module` imports a host function that would end an inline attempt when called.
pub(crate) fn may_leave_inline(module: &Module) -> bool {
    module.imports().any(|import| {
        import.module() == abi::HOST_MODULE
            && HOST_IMPORTS
                .iter()
                .any(|host| host.leaves_inline && host.name == import.name())
    })
}

/// Checks every import of `module` against `grants`; the error lists each import that is not
/// granted (or not provided at all) with the capability it needs.
pub(crate) fn check_imports(
    plugin_id: &str,
    module: &Module,
    grants: &WasmCapabilities,
) -> PluginResult<()> {
    let mut missing: Vec<String> = Vec::new();
    let mut needed: Vec<Capability> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut snapshot0: Vec<String> = Vec::new();
    // Ungranted WASI functions: a libc pulls in dozens, so the first is named, the rest counted.
    let mut wasi_first: Option<String> = None;
    let mut wasi_more = 0usize;
    for import in module.imports() {
        let (module_name, name) = (import.module(), import.name());
        if module_name == abi::HOST_MODULE {
            match HOST_IMPORTS.iter().find(|h| h.name == name) {
                Some(host) if grants.allows(host.capability) => {}
                Some(host) => {
                    missing.push(format!(
                        "`bilayer.{name}` (capability `{}`)",
                        host.capability
                    ));
                    if !needed.contains(&host.capability) {
                        needed.push(host.capability);
                    }
                }
                None => unknown.push(format!("`bilayer.{name}`")),
            }
        } else if module_name == PREVIEW1_MODULE {
            if !grants.allows(Capability::Wasi) {
                match wasi_first {
                    None => wasi_first = Some(format!("{module_name}.{name}")),
                    Some(_) => wasi_more += 1,
                }
            }
        } else if module_name == SNAPSHOT0_MODULE {
            snapshot0.push(format!("`{module_name}.{name}`"));
        } else {
            unknown.push(format!("`{module_name}.{name}`"));
        }
    }

    if let Some(first) = wasi_first {
        let more = match wasi_more {
            0 => String::new(),
            1 => " and 1 more WASI function".to_string(),
            n => format!(" and {n} more WASI functions"),
        };
        missing.push(format!("`{first}`{more} (capability `wasi`)"));
        needed.push(Capability::Wasi);
    }
    if !missing.is_empty() {
        let names: Vec<String> = needed.iter().map(|c| format!("`{c}`")).collect();
        let (noun, pronoun) = if names.len() == 1 {
            ("capability", "it")
        } else {
            ("capabilities", "them")
        };
        let wasi_hint = if needed.contains(&Capability::Wasi) {
            " (WASI: `.grant_wasi(WasiGrant::new().preopen_dir(..))`, or `wasi`, \
             `wasi:dir=HOST::GUEST[:rw]`, `wasi:env=KEY=VALUE` in configuration and `--grant`; \
             or build the plugin for wasm32-unknown-unknown and use the `bilayer` host imports, \
             docs/wasm-abi.md)"
        } else {
            ""
        };
        return Err(PluginError::Config(format!(
            "WASM plugin `{plugin_id}` imports {} but was not granted {noun} {}; grant {pronoun} \
             with WasmCapabilities (`.grant(Capability::...)`) if the plugin should have \
             {pronoun}{wasi_hint} (granted: {grants})",
            missing.join(", "),
            names.join(", "),
        )));
    }
    if !snapshot0.is_empty() {
        return Err(PluginError::Config(format!(
            "WASM plugin `{plugin_id}` imports {}, from WASI snapshot 0, which this host does not \
             provide even with capability `wasi`; rebuild it for WASI preview 1 \
             (`wasi_snapshot_preview1`, Rust/C target wasm32-wasip1)",
            snapshot0.join(", ")
        )));
    }
    if !unknown.is_empty() {
        let known: Vec<String> = HOST_IMPORTS
            .iter()
            .map(|h| format!("bilayer.{}", h.name))
            .collect();
        return Err(PluginError::Config(format!(
            "WASM plugin `{plugin_id}` imports {}, which no capability provides; a plugin may \
             import only {} and, with capability `wasi`, {PREVIEW1_MODULE}.* (docs/wasm-abi.md)",
            unknown.join(", "),
            known.join(", ")
        )));
    }
    Ok(())
}

/// A linker defining exactly the host functions `grants` allows.
pub(crate) fn linker(
    engine: &WasmEngine,
    grants: &WasmCapabilities,
) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine.wasmtime());
    let m = abi::HOST_MODULE;
    if grants.allows(Capability::Log) {
        linker.func_wrap(m, "log", log)?;
    }
    if grants.allows(Capability::Config) {
        linker.func_wrap(m, "config_get", config_get)?;
    }
    if grants.allows(Capability::State) {
        linker.func_wrap(m, "state_get", state_get)?;
        linker.func_wrap(m, "state_set", state_set)?;
    }
    if grants.allows(Capability::CallPlugin) {
        linker.func_wrap(m, "call_plugin", call_plugin)?;
    }
    if grants.allows(Capability::Wasi) {
        wasi::add_to_linker(&mut linker)?;
    }
    Ok(linker)
}

fn log(mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) -> wasmtime::Result<()> {
    // A line logged by an attempt that later leaves would be logged twice.
    inline::leave_if_active()?;
    let max = caller.data().max_log_bytes;
    let bytes = read(&mut caller, "log", "message", ptr, len)?;
    let mut message = String::from_utf8_lossy(&bytes).into_owned();
    if message.len() > max {
        let mut cut = max;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    let plugin = &*caller.data().plugin_id;
    match level {
        i32::MIN..=0 => tracing::error!(target: "bilayer::wasm", plugin, "{message}"),
        1 => tracing::warn!(target: "bilayer::wasm", plugin, "{message}"),
        2 => tracing::info!(target: "bilayer::wasm", plugin, "{message}"),
        3 => tracing::debug!(target: "bilayer::wasm", plugin, "{message}"),
        _ => tracing::trace!(target: "bilayer::wasm", plugin, "{message}"),
    }
    Ok(())
}

fn config_get(
    mut caller: Caller<'_, HostState>,
    key_ptr: i32,
    key_len: i32,
) -> wasmtime::Result<i64> {
    let key = match read_text(&mut caller, "config_get", "key", key_ptr, key_len)? {
        Ok(key) => key,
        Err(message) => return write(&mut caller, "config_get", message.as_bytes(), true),
    };
    let config = caller.data().ctx.config();
    let value = if key.is_empty() {
        Some(config).filter(|v| !v.is_null())
    } else if key.starts_with('/') {
        config.pointer(&key)
    } else {
        config.get(&key)
    };
    let text = value.map(Value::to_string);
    match text {
        Some(text) => write(&mut caller, "config_get", text.as_bytes(), false),
        None => Ok(Region::EMPTY.pack()),
    }
}

fn state_get(
    mut caller: Caller<'_, HostState>,
    key_ptr: i32,
    key_len: i32,
) -> wasmtime::Result<i64> {
    let key = match read_text(&mut caller, "state_get", "key", key_ptr, key_len)? {
        Ok(key) => key,
        Err(message) => return write(&mut caller, "state_get", message.as_bytes(), true),
    };
    let store = caller.data().ctx.state();
    let text = if key.is_empty() {
        Some(Value::Object(store.snapshot()).to_string())
    } else {
        store.lock().get(&key).map(Value::to_string)
    };
    match text {
        Some(text) => write(&mut caller, "state_get", text.as_bytes(), false),
        None => Ok(Region::EMPTY.pack()),
    }
}

fn state_set(
    mut caller: Caller<'_, HostState>,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> wasmtime::Result<i64> {
    inline::leave_if_active()?;
    let key = read_text(&mut caller, "state_set", "key", key_ptr, key_len)?;
    let value = read(&mut caller, "state_set", "value", value_ptr, value_len)?;
    let outcome = key.and_then(|key| {
        let store = caller.data().ctx.state();
        if value.is_empty() {
            if key.is_empty() {
                store.clear();
            } else {
                store.remove(&key);
            }
            return Ok(());
        }
        let value: Value = serde_json::from_slice(&value)
            .map_err(|e| format!("state_set: the value for `{key}` is not JSON ({e})"))?;
        if key.is_empty() {
            match value {
                Value::Object(map) => store.replace(map).map_err(|e| format!("state_set: {e}"))?,
                _ => return Err(
                    "state_set with an empty key replaces the whole state and needs a JSON object"
                        .to_string(),
                ),
            }
        } else {
            store
                .set(key, value)
                .map_err(|e| format!("state_set: {e}"))?;
        }
        Ok(())
    });
    match outcome {
        Ok(()) => Ok(Region::EMPTY.pack()),
        Err(message) => write(&mut caller, "state_set", message.as_bytes(), true),
    }
}

fn call_plugin(
    mut caller: Caller<'_, HostState>,
    id_ptr: i32,
    id_len: i32,
    input_ptr: i32,
    input_len: i32,
) -> wasmtime::Result<i64> {
    // Blocks this thread on the runtime: never on an async worker.
    inline::leave_if_active()?;
    let target = read_text(&mut caller, "call_plugin", "plugin id", id_ptr, id_len)?;
    let input = read_text(&mut caller, "call_plugin", "input", input_ptr, input_len)?;
    let outcome = target.and_then(|target| {
        let input = input?;
        let state = caller.data();
        if !state.grants.may_call(&target) {
            let allowed: Vec<&str> = state
                .grants
                .call_targets()
                .map(|targets| targets.collect())
                .unwrap_or_default();
            return Err(format!(
                "plugin `{}` may not call `{target}`: its call_plugin grant is limited to {}",
                state.plugin_id,
                allowed.join(", ")
            ));
        }
        let ctx = state.ctx.clone();
        // `call_plugin_blocking` blocks this thread on the runtime; if the plugin was run on an
        // async worker (execute_sync from async code) tokio panics instead. Keep that panic out
        // of the host and tell the guest.
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            ctx.call_plugin_blocking(&target, input)
        }))
        .unwrap_or_else(|_| {
            Err(PluginError::execution(
                "call_plugin cannot block this thread; run the plugin with execute() (or from a \
                 blocking thread) when it calls other plugins",
            ))
        })
        .map_err(|e| e.to_string())
    });
    match outcome {
        Ok(output) => write(&mut caller, "call_plugin", output.as_bytes(), false),
        Err(message) => write(&mut caller, "call_plugin", message.as_bytes(), true),
    }
}

fn guest_memory(
    caller: &mut Caller<'_, HostState>,
    import: &'static str,
) -> wasmtime::Result<Memory> {
    match caller.get_export(abi::MEMORY) {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(contract_error(
            import,
            "the module does not export its `memory`",
        )),
    }
}

/// Copies `len` bytes at `ptr` out of guest memory.
fn read(
    caller: &mut Caller<'_, HostState>,
    import: &'static str,
    what: &str,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<Vec<u8>> {
    let memory = guest_memory(caller, import)?;
    let data = memory.data(&*caller);
    guest_range(data.len(), unsigned(ptr), unsigned(len))
        .map(|range| data[range].to_vec())
        .map_err(|oob| contract_error(import, format!("{what}: {oob}")))
}

/// Reads UTF-8 text; the inner error is a message for the guest.
fn read_text(
    caller: &mut Caller<'_, HostState>,
    import: &'static str,
    what: &str,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<Result<String, String>> {
    let bytes = read(caller, import, what, ptr, len)?;
    Ok(String::from_utf8(bytes).map_err(|e| format!("{import}: the {what} is not UTF-8 ({e})")))
}

/// Copies `bytes` into memory from the guest's `alloc` and returns the packed region.
fn write(
    caller: &mut Caller<'_, HostState>,
    import: &'static str,
    bytes: &[u8],
    is_error: bool,
) -> wasmtime::Result<i64> {
    if bytes.is_empty() {
        return Ok(Region {
            is_error,
            ..Region::EMPTY
        }
        .pack());
    }
    if bytes.len() > MAX_REGION_LEN {
        return Err(contract_error(
            import,
            format!("a result of {} bytes does not fit the ABI", bytes.len()),
        ));
    }
    let len = bytes.len() as u32;
    let alloc = match caller.get_export(abi::ALLOC) {
        Some(Extern::Func(func)) => func.typed::<i32, i32>(&*caller)?,
        _ => {
            return Err(contract_error(
                import,
                "the module does not export `alloc(len: i32) -> i32`",
            ))
        }
    };
    let ptr = unsigned(alloc.call(&mut *caller, len as i32)?);
    if ptr == 0 {
        return Err(contract_error(
            import,
            format!("the guest's alloc({len}) returned 0 (out of memory?)"),
        ));
    }
    let memory = guest_memory(caller, import)?;
    let range = guest_range(memory.data_size(&*caller), ptr, len).map_err(|oob| {
        contract_error(
            import,
            format!("the guest's alloc({len}) returned a bad pointer: {oob}"),
        )
    })?;
    memory.data_mut(&mut *caller)[range].copy_from_slice(bytes);
    Ok(Region { ptr, len, is_error }.pack())
}
