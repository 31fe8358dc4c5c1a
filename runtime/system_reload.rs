//! What `bilayer run --watch` and `bilayer worker --watch` hot-reload: the system's agents
//! (through its `PluginManager`) and its routing script.
//!
//! The routing script is not a plugin in the manager: it runs on each agent's actor right after
//! the agent ([`RoutingPolicy`](bilayer_actors::RoutingPolicy)). To give it the same reload path
//! as the agents (debounced watching, compiled and validated off the async workers, a broken
//! version refused while the serving one keeps serving, events), [`SystemReloadTarget`] hosts
//! it under the reserved id [`ROUTING_SCRIPT_ID`] beside the agents: a swap of that id compiles
//! into a new [`RhaiRoutingPolicy`] and installs it with
//! [`AgentSystem::set_routing_policy`](bilayer_actors::AgentSystem::set_routing_policy), so
//! every agent output routed after the swap sees the new rules. A routing script has no state
//! to carry over and is never rolled back (a routing error dead-letters that message, which is
//! the failure report); deleting its file keeps the last version routing.

#[cfg(feature = "rhai")]
use std::sync::Arc;
use std::sync::Mutex;

use bilayer_actors::{AgentSystem, PluginManager};
#[cfg(feature = "rhai")]
use bilayer_plugins::hot_reload::StateHandover;
use bilayer_plugins::hot_reload::{ReloadTarget, Replacement, SwapReport};
#[cfg(feature = "rhai")]
use bilayer_plugins::rhai_runtime::RhaiPlugin;
use bilayer_plugins::{async_trait, AgentPlugin, PluginError, PluginResult};

#[cfg(feature = "rhai")]
use crate::routing::RhaiRoutingPolicy;

/// The plugin id hot reload gives the routing script (`$` keeps it apart from agent names).
pub const ROUTING_SCRIPT_ID: &str = "$routing";

/// The agents of a system and its routing script, as one hot-reload target.
pub struct SystemReloadTarget {
    /// Where a new routing script is installed (only Rhai builds have routing scripts).
    #[cfg_attr(not(feature = "rhai"), allow(dead_code))]
    system: AgentSystem,
    manager: PluginManager,
    /// The version of the routing script in force (`None`: the system has none).
    routing_version: Mutex<Option<String>>,
}

impl std::fmt::Debug for SystemReloadTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemReloadTarget")
            .field("agents", &self.system.agents())
            .field("routing_version", &self.routing_version)
            .finish_non_exhaustive()
    }
}

impl SystemReloadTarget {
    /// `routing_version`: the version (content hash) of the routing script the system was
    /// built with, if it has one.
    pub fn new(system: &AgentSystem, routing_version: Option<String>) -> Self {
        Self {
            system: system.clone(),
            manager: system.manager().clone(),
            routing_version: Mutex::new(routing_version),
        }
    }

    #[cfg(feature = "rhai")]
    fn swap_routing(&self, plugin: Box<dyn AgentPlugin>) -> PluginResult<SwapReport> {
        let script = plugin.into_any().downcast::<RhaiPlugin>().map_err(|_| {
            PluginError::Config(format!(
                "the routing script must be a Rhai script (.rhai); `{ROUTING_SCRIPT_ID}` kept its \
                 version"
            ))
        })?;
        let version = script.metadata().version.clone();
        let policy = RhaiRoutingPolicy::from_plugin(*script);
        self.system.set_routing_policy(Some(Arc::new(policy)));
        let previous = self
            .routing_version
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .replace(version.clone())
            .unwrap_or_default();
        Ok(SwapReport {
            plugin_id: ROUTING_SCRIPT_ID.to_string(),
            previous_version: previous,
            version,
            state: StateHandover::Fresh,
        })
    }

    /// Without Rhai a definition has no routing script (it is refused at load), so no new
    /// version of one can arrive; should one, it is refused the same way.
    #[cfg(not(feature = "rhai"))]
    fn swap_routing(&self, _plugin: Box<dyn AgentPlugin>) -> PluginResult<SwapReport> {
        Err(PluginError::Config(crate::features::missing(
            "rhai",
            "a routing script",
        )))
    }
}

#[async_trait]
impl ReloadTarget for SystemReloadTarget {
    fn hosted_version(&self, plugin_id: &str) -> Option<String> {
        if plugin_id == ROUTING_SCRIPT_ID {
            return self
                .routing_version
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
        }
        self.manager.version(plugin_id)
    }

    async fn add(&self, plugin_id: &str, plugin: Box<dyn AgentPlugin>) -> PluginResult<()> {
        if plugin_id == ROUTING_SCRIPT_ID {
            // A system built without a routing script gets none by hot reload: routing is part
            // of the definition.
            return Err(PluginError::Config(
                "the system has no routing script; name one in the definition (routing = ...)"
                    .to_string(),
            ));
        }
        ReloadTarget::add(&self.manager, plugin_id, plugin).await
    }

    async fn swap(&self, plugin_id: &str, replacement: Replacement) -> PluginResult<SwapReport> {
        if plugin_id == ROUTING_SCRIPT_ID {
            return self.swap_routing(replacement.plugin);
        }
        ReloadTarget::swap(&self.manager, plugin_id, replacement).await
    }

    async fn remove(&self, plugin_id: &str) -> PluginResult<()> {
        if plugin_id == ROUTING_SCRIPT_ID {
            return Ok(());
        }
        ReloadTarget::remove(&self.manager, plugin_id).await
    }

    async fn stop(&self, plugin_id: &str) -> PluginResult<()> {
        if plugin_id == ROUTING_SCRIPT_ID {
            return Ok(());
        }
        ReloadTarget::stop(&self.manager, plugin_id).await
    }
}
