//! WASI preview 1 (`wasi_snapshot_preview1`) for plugins granted the `wasi` capability, on
//! `wasmtime-wasi`'s implementation for core modules (`wasmtime_wasi::p1`).
//!
//! Each store of such a plugin carries its own `WasiP1Ctx`, built from the plugin's
//! [`WasiGrant`] when the store is created (so a fresh instance per call starts with fresh file
//! descriptors, and a reused instance keeps its open files between calls):
//!
//! - the granted directories, preopened read-only (`FsPerms::ReadOnly`) unless granted
//!   writable; paths cannot leave them (`..`, absolute paths and symlinks out are refused by
//!   cap-std's sandboxed lookups, and the guest gets an errno);
//! - the granted environment variables and arguments, nothing inherited from the host;
//! - stdin empty (closed), stdout and stderr to the `tracing` log ([`wasi_output`](super::wasi_output));
//! - no sockets: TCP, UDP and name lookups are off and no address is allowed (preview 1 can
//!   only use sockets the host preopens, and none is);
//! - the host's clocks and random numbers (preview 1 programs cannot start without them).
//!
//! The functions are the synchronous ones (`add_to_linker_sync`): guest code runs on a blocking
//! thread already ([`run_detached`](crate::run_detached)), so file operations run in place
//! (`allow_blocking_current_thread`) instead of bouncing through tokio's blocking pool. The
//! epoch deadline, fuel and the memory limiter work as for any plugin; a host call itself is not
//! interrupted (a guest sleeping in `poll_oneoff` stops when the sleep returns), but its caller
//! does not wait for it: at its timeout (the plugin's own, or the host's call timeout: a hop
//! timeout) the caller abandons the blocking thread and fails the call.
//!
//! `proc_exit` ends the call with an error naming the exit status (a plugin returns from
//! `execute` rather than exiting), and the instance is discarded.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use wasmtime::Linker;
pub(crate) use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use super::host_state::HostState;
use super::wasi_output::{GuestOutput, GuestStream};
use super::WasiGrant;
use crate::{PluginError, PluginResult};

/// The import module of WASI preview 1, which the `wasi` capability grants.
pub(crate) const PREVIEW1_MODULE: &str = "wasi_snapshot_preview1";

/// The import module of WASI's older snapshot 0, which this host does not provide.
pub(crate) const SNAPSHOT0_MODULE: &str = "wasi_unstable";

/// Defines every WASI preview 1 function in `linker`, reading the store's `WasiP1Ctx`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, HostState::wasi_ctx)
}

/// The WASI context of one store of plugin `plugin_id`, opening exactly what `grant` lists.
pub(crate) fn context(
    grant: &WasiGrant,
    plugin_id: &Arc<str>,
    max_line_bytes: usize,
) -> PluginResult<WasiP1Ctx> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(GuestOutput::new(
            Arc::clone(plugin_id),
            GuestStream::Stdout,
            max_line_bytes,
        ))
        .stderr(GuestOutput::new(
            Arc::clone(plugin_id),
            GuestStream::Stderr,
            max_line_bytes,
        ))
        .allow_blocking_current_thread(true)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .envs(&grant.env)
        .args(&grant.args);
    for dir in &grant.preopened_dirs {
        let perms = if dir.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        builder
            .preopened_dir(&dir.host_path, &dir.guest_path, perms)
            .map_err(|e| {
                PluginError::Config(format!(
                    "WASM plugin `{plugin_id}` cannot open the directory {} granted to it as \
                     `{}` ({e:#}); create the directory or correct its `wasi:dir=` grant",
                    dir.host_path.display(),
                    dir.guest_path
                ))
            })?;
    }
    Ok(builder.build_p1())
}

/// A WASI context that opens nothing: what a store holds if WASI is called without one.
pub(crate) fn closed_context() -> WasiP1Ctx {
    WasiCtxBuilder::new().build_p1()
}

/// The status the guest passed to `proc_exit`, if that is what ended the call.
pub(crate) fn exit_status(err: &wasmtime::Error) -> Option<i32> {
    err.downcast_ref::<I32Exit>().map(|exit| exit.0)
}

/// Runs `call`, turning a panic into an error. `wasmtime-wasi`'s synchronous functions block on
/// tokio, which panics on a thread that is driving async tasks (a plugin called with
/// `execute_sync` from async code); the caller gets an error saying what to do instead.
pub(crate) fn contain_panics<R>(
    plugin_id: &str,
    call: impl FnOnce() -> PluginResult<R>,
) -> PluginResult<R> {
    catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|panic| {
        Err(PluginError::Runtime {
            location: format!("WASM plugin `{plugin_id}` in a WASI call"),
            message: format!(
                "the host panicked ({}); WASI calls block on tokio, so run a WASI plugin with \
                 execute() or WasmRuntime::execute, or from a blocking thread, never with \
                 execute_sync on an async worker",
                panic_message(&*panic)
            ),
        })
    })
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}
