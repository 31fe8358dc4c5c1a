//! Hot reload of a built system (`bilayer run --watch`): a [`HotReloadManager`] that recompiles
//! a changed script or module with its agent's own limits and grant and swaps it into the
//! running agent, and reloads the routing script through [`SystemReloadTarget`]. The definition,
//! not the watched directory, says which agents exist. Built with the `hot-reload` feature;
//! scripts reload with `rhai`, modules with `wasm`.

#[cfg(any(feature = "rhai", feature = "wasm"))]
use std::collections::HashMap;
#[cfg(any(feature = "rhai", feature = "wasm"))]
use std::path::{Path, PathBuf};
#[cfg(feature = "wasm")]
use std::sync::Arc;

use bilayer_actors::AgentSystem;
use bilayer_plugins::hot_reload::{DeleteAction, HotReloadConfig, HotReloadManager};
#[cfg(feature = "rhai")]
use bilayer_plugins::rhai_runtime::{RhaiConfig, RhaiPlugin};
#[cfg(feature = "wasm")]
use bilayer_plugins::wasm_runtime::{WasmLimits, WasmPlugin};
#[cfg(any(feature = "rhai", feature = "wasm"))]
use bilayer_plugins::AgentPlugin;

#[cfg(feature = "wasm")]
use super::sources::wasm_agent;
#[cfg(any(feature = "rhai", feature = "wasm"))]
use super::sources::AgentSource;
use super::SystemDefinition;
use crate::system_reload::SystemReloadTarget;
#[cfg(feature = "rhai")]
use crate::system_reload::ROUTING_SCRIPT_ID;

impl SystemDefinition {
    /// A hot reload manager for this system's script and module agents, watching the
    /// `[hot_reload] dirs` (or, when none are set, the directory of the definition): a changed
    /// file is compiled with its agent's own limits and grant, checked off to the side, and
    /// swapped into the running agent between two messages. New files are not added as agents
    /// and deleted files keep their agent serving (the definition, not the directory, says which
    /// agents exist). The routing script, when it lies in a watched directory, reloads the same
    /// way under the id [`ROUTING_SCRIPT_ID`] (a broken version is refused, the serving one keeps
    /// routing). Agents this process does not serve (`bilayer worker --agents`) are left alone.
    pub fn hot_reload(&self, system: &AgentSystem) -> HotReloadManager {
        let mut dirs = self.hot_reload_dirs();
        if dirs.is_empty() {
            dirs.push(self.dir.clone());
        }
        #[cfg(feature = "rhai")]
        let mut scripts: HashMap<PathBuf, RhaiConfig> = HashMap::new();
        #[cfg(feature = "wasm")]
        let mut modules: HashMap<PathBuf, (String, Vec<String>, WasmLimits)> = HashMap::new();
        // A build with neither runtime watches only loaders added by hand: none here.
        #[cfg_attr(not(any(feature = "rhai", feature = "wasm")), allow(unused_mut))]
        let mut config = HotReloadConfig::default()
            .with_preserve_state(true)
            .with_auto_rollback(true)
            .with_add_new_files(false)
            .with_on_delete(DeleteAction::Keep);
        #[cfg(feature = "rhai")]
        {
            config = config.with_rhai_config(self.base_limits());
        }
        #[cfg(any(feature = "rhai", feature = "wasm"))]
        for agent in &self.raw.agents {
            match self.source_of(agent) {
                #[cfg(feature = "rhai")]
                Ok(AgentSource::Script(path)) => {
                    scripts.insert(canonical(&path), self.limits_for(agent));
                    config = config.with_plugin_id(path, agent.name.clone());
                }
                #[cfg(feature = "wasm")]
                Ok(AgentSource::Wasm(path)) => {
                    modules.insert(
                        canonical(&path),
                        (
                            agent.name.clone(),
                            agent.capabilities.clone(),
                            self.wasm_limits_for(agent),
                        ),
                    );
                    config = config.with_plugin_id(path, agent.name.clone());
                }
                _ => {}
            }
        }
        #[cfg(feature = "rhai")]
        {
            let base = self.base_limits();
            config = config.with_loader("rhai", move |path| {
                let limits = scripts
                    .get(&canonical(path))
                    .cloned()
                    .unwrap_or_else(|| base.clone());
                Ok(Box::new(RhaiPlugin::from_file_with_config(path, limits)?)
                    as Box<dyn AgentPlugin>)
            });
        }
        #[cfg(feature = "wasm")]
        let modules = Arc::new(modules);
        #[cfg(feature = "wasm")]
        for extension in ["wasm", "wat"] {
            let modules = modules.clone();
            config = config.with_loader(extension, move |path| {
                let (name, grant, limits) =
                    modules.get(&canonical(path)).cloned().unwrap_or_default();
                let plugin = if name.is_empty() {
                    WasmPlugin::from_file(path)?
                } else {
                    wasm_agent(path, &name, &grant, &limits)?
                };
                Ok(Box::new(plugin) as Box<dyn AgentPlugin>)
            });
        }
        // The routing script reloads beside the agents, under its reserved id (system_reload.rs),
        // when it lies in a watched directory.
        // Without Rhai a definition with a routing script does not build.
        #[cfg_attr(not(feature = "rhai"), allow(unused_mut))]
        let mut routing_version = None;
        #[cfg(feature = "rhai")]
        if let Some(routing) = &self.raw.routing {
            let path = self.dir.join(routing);
            routing_version = RhaiPlugin::from_file_with_config(&path, self.base_limits())
                .ok()
                .map(|script| script.metadata().version.clone());
            config = config.with_plugin_id(path, ROUTING_SCRIPT_ID);
        }
        let mut manager = HotReloadManager::new(&dirs[0], config);
        for dir in &dirs[1..] {
            manager = manager.with_dir(dir);
        }
        manager.with_target(SystemReloadTarget::new(system, routing_version))
    }
}

/// A path in the form file events report it, so lookups match whichever way it was written.
#[cfg(any(feature = "rhai", feature = "wasm"))]
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
