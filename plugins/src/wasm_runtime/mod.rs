//! # Compile-time plugins sandboxed in WASM
//!
//! For untrusted code or isolation: a WASM module runs on wasmtime with no access to anything
//! the host does not grant, memory it cannot escape, and limits on memory, time and fuel that
//! are installed into every store (not only configured).
//!
//! - [`WasmRuntime`]: the seed's API (`WasmRuntime::new()?`, `runtime.register(plugin).await?`,
//!   `runtime.execute("plugin_id", input).await?`) on one shared engine.
//! - [`WasmPlugin`]: a module as an [`AgentPlugin`](crate::AgentPlugin), so a `PluginManager`
//!   hosts it in its own supervised actor like any other plugin.
//! - [`WasmCapabilities`] / [`Capability`]: the grant, deny by default, checked at link time;
//!   [`WasiGrant`]: what WASI may reach when `wasi` is granted.
//! - [`WasmLimits`] / [`WasmConfig`]: per-plugin limits and engine settings.
//!
//! ```
//! use bilayer_plugins::wasm_runtime::{Capability, InstanceMode, WasmCapabilities, WasmLimits, WasmPlugin};
//! use std::time::Duration;
//!
//! let plugin = WasmPlugin::from_bytes("noop", r#"(module
//!     (memory (export "memory") 1)
//!     (func (export "alloc") (param i32) (result i32) (i32.const 1024))
//!     (func (export "execute") (param i32 i32) (result i64) (i64.const 0)))"#)?
//!     .with_capabilities(WasmCapabilities::none().grant(Capability::Log))
//!     .with_limits(WasmLimits::default().timeout(Duration::from_millis(100)))
//!     .with_instance_mode(InstanceMode::FreshPerCall);
//! assert_eq!(plugin.execute_sync("{}")?, "");
//! # Ok::<(), bilayer_plugins::PluginError>(())
//! ```
//!
//! ## The ABI
//!
//! docs/wasm-abi.md is the full specification, written for plugin authors in any language.
//! In short: the guest exports `memory`, `alloc(len) -> ptr` and
//! `execute(ptr, len) -> i64`; the host allocates the input with `alloc`, copies it in, calls
//! `execute`, and reads the result region packed as `(ptr << 32) | len`, with bit 31 of the
//! low word set when the bytes are an error message. Optional exports: `dealloc(ptr, len)`,
//! `_initialize()`, and `bilayer_metadata() -> i64` (JSON: id, name, version, description,
//! requested capabilities). JSON in and out by convention; any bytes allowed through
//! [`WasmPlugin::execute_bytes`].
//!
//! Host imports, module `bilayer`, each behind a capability: `log(level, ptr, len)` (`log`),
//! `config_get(key_ptr, key_len) -> i64` (`config`), `state_get(key_ptr, key_len) -> i64` and
//! `state_set(key_ptr, key_len, value_ptr, value_len) -> i64` (`state`),
//! `call_plugin(id_ptr, id_len, input_ptr, input_len) -> i64` (`call_plugin`). A module that
//! imports one it was not granted fails to load with an error naming the capability.
//!
//! WASI preview 1 (`wasi_snapshot_preview1`) is the capability `wasi`, carrying a [`WasiGrant`]:
//! the preopened directories (read-only unless granted writable), environment variables and
//! arguments the guest may see; nothing is inherited from the host, there are no sockets, stdin
//! is empty and the guest's stdout/stderr go to the `tracing` log. The string form
//! (`wasi:dir=HOST::GUEST:rw`, `wasi:env=KEY=VALUE`, ...) is parsed by
//! [`WasmCapabilities::from_names`].
//!
//! ```
//! use bilayer_plugins::wasm_runtime::{WasiGrant, WasmCapabilities, WasmPlugin};
//!
//! let plugin = WasmPlugin::from_bytes("env_count", r#"(module
//!     (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
//!     (memory (export "memory") 1)
//!     (func (export "alloc") (param i32) (result i32) (i32.const 1024))
//!     ;; returns one byte: '0' + the number of environment variables
//!     (func (export "execute") (param i32 i32) (result i64)
//!       (drop (call $sizes (i32.const 0) (i32.const 4)))
//!       (i32.store8 (i32.const 8) (i32.add (i32.const 48) (i32.load (i32.const 0))))
//!       (i64.or (i64.shl (i64.const 8) (i64.const 32)) (i64.const 1))))"#)?;
//! assert!(plugin.check_link().is_err(), "WASI is denied by default");
//!
//! let plugin = plugin.with_capabilities(
//!     WasmCapabilities::none().grant_wasi(WasiGrant::new().env("A", "1").env("B", "2")),
//! );
//! assert_eq!(plugin.execute_sync("")?, "2");
//! # Ok::<(), bilayer_plugins::PluginError>(())
//! ```
//!
//! ## Instances and state
//!
//! By default every call gets a fresh instance from the module's `InstancePre`
//! ([`InstanceMode::FreshPerCall`]): nothing leaks between calls and a trap leaves nothing
//! behind; with the pooling allocator this costs microseconds. [`InstanceMode::Reuse`] keeps
//! one instance (guest globals and heap survive between calls; rebuilt after any trap). Either
//! way, durable state belongs in the host's per-plugin state store (`state_get`/`state_set`),
//! which survives restarts and reloads.
//!
//! ## Where a call runs
//!
//! [`WasmPlugin::execute`](crate::AgentPlugin::execute) runs a call on the calling thread for
//! at most a ~2 ms slice and moves it, from the start, to a blocking thread when the guest needs
//! longer or calls an import with an effect (`log`, `state_set`, `call_plugin`), before that
//! effect: short calls pay no thread hand-off, and a spinning guest never holds an async worker
//! for more than the slice. Plugins granted `wasi` always run on a blocking thread.
//!
//! ## Limits
//!
//! | limit | default | enforced by |
//! | --- | --- | --- |
//! | memory | 64 MiB | the store's `ResourceLimiter` (`memory.grow` returns -1 past the cap) |
//! | time per call | 1 s | epoch deadline; a ticker thread advances the epoch every 10 ms |
//! | fuel per call | off | wasmtime fuel, for deterministic metering |
//! | wasm stack | 512 KiB | wasmtime's stack limit |
//! | output | 16 MiB | checked before the output is copied |
//!
//! Hitting one is [`PluginError::LimitExceeded`](crate::PluginError::LimitExceeded) naming it;
//! any other trap is [`PluginError::Runtime`](crate::PluginError::Runtime) naming the trap
//! (`wasm trap: wasm `unreachable` instruction executed`). Either way the plugin serves the next
//! call normally. An error the guest reports itself (the error bit) is
//! [`PluginError::Execution`](crate::PluginError::Execution), which does not count against the
//! plugin's health.

mod abi;
mod capabilities;
mod config;
mod engine;
mod epoch_ticker;
mod errors;
mod guest_metadata;
mod host_imports;
mod host_state;
mod inline;
mod instance;
mod link;
mod module;
mod plugin;
mod runtime;
#[cfg(feature = "wasi")]
mod wasi;
#[cfg(not(feature = "wasi"))]
#[path = "wasi_unavailable.rs"]
mod wasi;
mod wasi_grant;
#[cfg(feature = "wasi")]
mod wasi_output;

pub use capabilities::{Capability, WasmCapabilities};
pub use config::{InstanceMode, WasmConfig, WasmLimits};
pub use engine::WasmEngine;
pub use guest_metadata::GuestMetadata;
pub use plugin::WasmPlugin;
pub use runtime::WasmRuntime;
pub use wasi_grant::{PreopenDir, WasiGrant};
