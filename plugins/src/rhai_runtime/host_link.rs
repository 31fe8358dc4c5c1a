//! What a compiled script's engine callbacks need from the plugin hosting it.
//!
//! The `Engine` is built (and the script compiled and its top-level statements run) when a
//! `RhaiPlugin` is constructed, before any host exists; the host's `PluginContext` (state
//! store, plugin caller) arrives later, in `load`, and leaves in `unload`. The engine's
//! callbacks (`state`, `call_plugin`, `print`) therefore reach the host through this shared
//! link instead of capturing a context when they are registered.
//!
//! The link also holds the script's top-level variables, captured once after the top-level
//! statements ran, so that script functions can read them (Rhai alone does not let functions
//! see script-level `let` variables; the seed's rules script relies on it).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use rhai::Dynamic;

use crate::{PluginContext, PluginStateStore};

/// The shared slot between a script's engine callbacks and its host.
pub(crate) struct HostLink {
    plugin_id: RwLock<Arc<str>>,
    context: RwLock<Option<PluginContext>>,
    globals: OnceLock<HashMap<String, Dynamic>>,
}

impl HostLink {
    pub(crate) fn new(plugin_id: &str) -> Self {
        Self {
            plugin_id: RwLock::new(Arc::from(plugin_id)),
            context: RwLock::new(None),
            globals: OnceLock::new(),
        }
    }

    /// The id `print`/`debug` output is tagged with.
    pub(crate) fn plugin_id(&self) -> Arc<str> {
        self.plugin_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_plugin_id(&self, id: &str) {
        *self.plugin_id.write().unwrap_or_else(|p| p.into_inner()) = Arc::from(id);
    }

    /// Connects the script to its host (from `AgentPlugin::load`).
    pub(crate) fn attach(&self, context: PluginContext) {
        *self.context.write().unwrap_or_else(|p| p.into_inner()) = Some(context);
    }

    /// Disconnects the script from its host (from `AgentPlugin::unload`).
    pub(crate) fn detach(&self) {
        *self.context.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn context(&self) -> Option<PluginContext> {
        self.context
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn state_store(&self) -> Option<PluginStateStore> {
        self.context
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|ctx| ctx.state().clone())
    }

    /// Records the script's top-level variables (once, after its top-level statements ran).
    pub(crate) fn set_globals(&self, globals: HashMap<String, Dynamic>) {
        // A second call would mean the top-level statements ran twice; keep the first.
        let _ = self.globals.set(globals);
    }

    /// A top-level variable of the script, if it has one by that name.
    pub(crate) fn global(&self, name: &str) -> Option<&Dynamic> {
        self.globals.get()?.get(name)
    }
}
