//! WASI in a build without the `wasi` feature: the same functions as `wasi.rs`, so the rest of
//! the WASM runtime is written once, but a plugin granted `wasi` is refused when it is linked,
//! with an error that says how to get WASI (the plugins' modules without WASI run as before).
//!
//! Granting `wasi` always carries a [`WasiGrant`], and linking builds the WASI context from it
//! before anything else ([`context`]), so that refusal is the first thing such a plugin meets.

use std::sync::Arc;

use wasmtime::Linker;

use super::host_state::HostState;
use super::WasiGrant;
use crate::{PluginError, PluginResult};

/// The import module of WASI preview 1, which the `wasi` capability grants.
pub(crate) const PREVIEW1_MODULE: &str = "wasi_snapshot_preview1";

/// The import module of WASI's older snapshot 0, which this host does not provide.
pub(crate) const SNAPSHOT0_MODULE: &str = "wasi_unstable";

/// What a store would hold for WASI: nothing can be, in this configuration.
pub(crate) enum WasiP1Ctx {}

/// What to do to run a plugin granted `wasi`.
fn unavailable(plugin_id: &str) -> String {
    format!(
        "WASM plugin `{plugin_id}` is granted `wasi`, but this build of bilayer has no WASI \
         (built without the `wasi` feature); rebuild with `cargo build --features wasi`, or \
         remove the `wasi` grant if the module does not need it"
    )
}

/// Refuses: no WASI functions exist in this build.
pub(crate) fn add_to_linker(_linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    Err(wasmtime::Error::msg(unavailable("(unnamed)")))
}

/// Refuses the grant, naming the feature that provides WASI.
pub(crate) fn context(
    _grant: &WasiGrant,
    plugin_id: &Arc<str>,
    _max_line_bytes: usize,
) -> PluginResult<WasiP1Ctx> {
    Err(PluginError::Config(unavailable(plugin_id)))
}

/// No call can end in `proc_exit` without WASI.
pub(crate) fn exit_status(_err: &wasmtime::Error) -> Option<i32> {
    None
}

/// Runs `call`: without WASI no host call blocks on tokio, so there is no panic to contain.
pub(crate) fn contain_panics<R>(
    _plugin_id: &str,
    call: impl FnOnce() -> PluginResult<R>,
) -> PluginResult<R> {
    call()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wasi_grant_is_refused_with_the_feature_to_build_with() {
        let Err(PluginError::Config(message)) =
            context(&WasiGrant::new(), &Arc::from("reader"), 1024)
        else {
            panic!("a WASI context was built without the `wasi` feature");
        };
        assert!(message.contains("WASM plugin `reader`"), "{message}");
        assert!(message.contains("cargo build --features wasi"), "{message}");
    }
}
