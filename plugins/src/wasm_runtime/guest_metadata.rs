//! What a module says about itself through its optional `bilayer_metadata` export.
//!
//! The export is a function `() -> i64` returning a packed region of JSON text:
//! `{"id": "...", "name": "...", "version": "...", "description": "...", "capabilities": [...]}`,
//! every field optional. The host calls it once, when the module is loaded, on a throwaway
//! instance whose imports all trap and whose `_initialize` does not run (the grant is not known
//! yet), so it must return constant data. The `id` names the plugin when the host was not given
//! one; `capabilities` is what the module asks for, which a host can show to whoever grants
//! them; it grants nothing by itself.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::errors::Phase;
use super::instance::GuestInstance;
use super::link::LinkedPlugin;
use super::module::CompiledModule;
use super::WasmCapabilities;
use crate::{PluginError, PluginResult};

/// The metadata a module exports about itself through `bilayer_metadata() -> i64`, a packed
/// region of JSON (every field optional). Read once at load time on a throwaway instance whose
/// imports all trap. The requested capabilities grant nothing by themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct GuestMetadata {
    /// The plugin id, used when the host was not given one.
    pub id: Option<String>,
    /// A human-readable name.
    pub name: Option<String>,
    /// The author's version label (the plugin's `PluginMetadata::version` stays the content
    /// hash, which is what reloads and rollbacks compare).
    pub version: Option<String>,
    /// What the module does.
    pub description: Option<String>,
    /// Capability names the module asks for (`log`, `state`, `call_plugin:database`, ...).
    pub capabilities: Vec<String>,
}

impl GuestMetadata {
    /// The requested capabilities as a grant, for hosts that accept a module's request as is
    /// (after someone reviewed it).
    pub fn requested_capabilities(&self) -> PluginResult<WasmCapabilities> {
        WasmCapabilities::from_names(&self.capabilities)
    }
}

/// Reads the metadata of `compiled`, if it exports `bilayer_metadata`.
pub(crate) fn read(
    compiled: &Arc<CompiledModule>,
    origin: &str,
) -> PluginResult<Option<GuestMetadata>> {
    let Some(export) = compiled.exports.metadata else {
        return Ok(None);
    };
    let limits = compiled.engine.config().limits.clone();
    let probe = LinkedPlugin::probe(Arc::clone(compiled), origin, limits)?;
    let started = Instant::now();
    let mut instance = GuestInstance::new(&probe, started)?;
    let bytes = instance.call_region_export(&probe, &export, Phase::Metadata, started)?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        PluginError::Config(format!(
            "WASM module {origin}: `bilayer_metadata` returned invalid JSON ({e}); it must return \
             an object like {{\"id\": \"my_plugin\", \"capabilities\": [\"log\"]}}"
        ))
    })
}
