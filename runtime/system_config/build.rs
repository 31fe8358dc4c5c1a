//! Building and starting the agent system a definition describes: its settings, routing
//! script, agents (each served here or, per [`Deployment`], declared remote) and support
//! plugins, handed to the [`AgentSystem`] builder. It refuses first what `check` would report
//! in the definition's terms, so a build never fails with advice meant for Rust callers.

#[cfg(any(feature = "rhai", feature = "sqlite", feature = "postgres"))]
use std::sync::Arc;
use std::time::Duration;

use bilayer_actors::{AgentSystem, PluginOptions, Transport};
#[cfg(feature = "rhai")]
use bilayer_plugins::rhai_runtime::{RhaiPlugin, SCRIPT_THREAD_STACK};
use bilayer_plugins::{AgentPlugin, PluginError, PluginResult};

use super::schema::plugin_id;
#[cfg(feature = "wasm")]
use super::sources::wasm_agent;
use super::sources::{builtin_plugin, AgentSource};
use super::SystemDefinition;
use crate::orders::builtin_native;
#[cfg(feature = "rhai")]
use crate::routing::RhaiRoutingPolicy;

/// Where and how a process runs a system: the transport (overriding the definition's
/// `[transport]`) and which agents it serves (`None`: all of them; the others are served by
/// other processes, which needs the NATS transport).
#[derive(Debug, Clone, Default)]
pub struct Deployment {
    /// The transport, instead of the definition's `[transport]` (`None`: the definition's).
    pub transport: Option<Transport>,
    /// The agents served by this process (`None`: all of them).
    pub serve: Option<Vec<String>>,
    /// The journal of durable runs (`None`: nothing is journaled).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub journal: Option<Arc<bilayer_actors::journal::RunJournal>>,
}

impl SystemDefinition {
    /// Builds and starts the system, with every agent served here and the definition's
    /// transport.
    pub async fn build(&self) -> PluginResult<AgentSystem> {
        self.build_with(&Deployment::default()).await
    }

    /// Builds and starts the system as `deployment` says: its transport, and which agents this
    /// process serves (the others are declared remote).
    pub async fn build_with(&self, deployment: &Deployment) -> PluginResult<AgentSystem> {
        self.refuse_what_the_builder_would_word_for_rust()?;
        let transport = match &deployment.transport {
            Some(transport) => transport.clone(),
            None => self.transport().map_err(PluginError::Config)?,
        };
        if let Some(serve) = &deployment.serve {
            let names = self.agent_names();
            for name in serve {
                if !names.contains(&name.as_str()) {
                    return Err(PluginError::Config(format!(
                        "`{name}` is not an agent of this system; its agents are {}",
                        names.join(", ")
                    )));
                }
            }
            if transport == Transport::InProcess && serve.len() != names.len() {
                return Err(PluginError::Config(
                    "serving only some agents needs the NATS transport ([transport] kind = \"nats\")"
                        .into(),
                ));
            }
        }
        let mut builder = AgentSystem::builder()
            .name(self.name())
            .transport(transport);
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        if let Some(journal) = &deployment.journal {
            builder = builder.journal(Arc::clone(journal));
        }
        if let Some(entry) = &self.raw.entry {
            builder = builder.entry(entry);
        }
        if let Some(max_hops) = self.raw.max_hops {
            builder = builder.max_hops(max_hops);
        }
        if let Some(max_branches) = self.raw.max_branches {
            builder = builder.max_branches(max_branches);
        }
        if let Some(max_in_flight) = self.raw.max_in_flight {
            builder = builder.max_in_flight(max_in_flight);
        }
        if let Some(ms) = self.raw.hop_timeout_ms {
            builder = builder.hop_timeout(Some(Duration::from_millis(ms)));
        }
        if let Some(strategy) = &self.raw.strategy {
            builder = builder.strategy(strategy.parse().map_err(PluginError::Config)?);
        }
        if self.raw.max_restarts.is_some() || self.raw.restart_window_ms.is_some() {
            builder = builder.restart_intensity(
                self.raw.max_restarts.unwrap_or(3),
                Duration::from_millis(self.raw.restart_window_ms.unwrap_or(5_000)),
            );
        }
        #[cfg(feature = "rhai")]
        self.base_limits()
            .check_stack(SCRIPT_THREAD_STACK)
            .map_err(|message| PluginError::Config(format!("[limits]: {message}")))?;
        if let Some(routing) = &self.raw.routing {
            #[cfg(feature = "rhai")]
            {
                let policy = RhaiRoutingPolicy::from_file_with_config(
                    self.dir.join(routing),
                    self.base_limits(),
                )?;
                builder = builder.routing_policy(Arc::new(policy));
            }
            #[cfg(not(feature = "rhai"))]
            return Err(PluginError::Config(super::check::routing_without_rhai(
                &self.dir.join(routing),
            )));
        }
        for agent in &self.raw.agents {
            if let Some(serve) = &deployment.serve {
                if !serve.contains(&agent.name) {
                    builder = builder.remote_agent(&agent.name);
                    continue;
                }
            }
            let plugin: Box<dyn AgentPlugin> =
                match self.source_of(agent).map_err(PluginError::Config)? {
                    #[cfg(feature = "rhai")]
                    AgentSource::Script(path) => Box::new(RhaiPlugin::from_file_with_config(
                        &path,
                        self.checked_limits_for(agent)
                            .map_err(PluginError::Config)?,
                    )?),
                    #[cfg(feature = "wasm")]
                    AgentSource::Wasm(path) => Box::new(wasm_agent(
                        &path,
                        &agent.name,
                        &agent.capabilities,
                        &self.wasm_limits_for(agent),
                    )?),
                    AgentSource::Native(name) => builtin_native(&name).ok_or_else(|| {
                        PluginError::Config(format!("unknown native plugin `{name}`"))
                    })?,
                    AgentSource::Builtin(name, config) => {
                        let plugin = builtin_plugin(&name, &config).map_err(|message| {
                            PluginError::Config(format!("agent `{}`: {message}", agent.name))
                        })?;
                        let options = concurrency_options(
                            self.state_limit_for(agent),
                            agent
                                .concurrency
                                .or_else(|| pool_bound_concurrency(&name, &config)),
                            agent.order_by.as_deref(),
                        )
                        .config(config);
                        builder = builder.agent_with(&agent.name, plugin, options);
                        continue;
                    }
                };
            let mut options = concurrency_options(
                self.state_limit_for(agent),
                agent.concurrency,
                agent.order_by.as_deref(),
            );
            if let Some(config) = &agent.config {
                let config =
                    serde_json::to_value(config).map_err(|e| PluginError::Config(e.to_string()))?;
                options = options.config(config);
            }
            builder = builder.agent_with(&agent.name, plugin, options);
        }
        for entry in &self.raw.plugins {
            let id = plugin_id(entry);
            let config = self
                .builtin_config(&entry.builtin, &entry.config, &entry.init_sql_file)
                .map_err(|message| PluginError::Config(format!("plugin `{id}`: {message}")))?;
            let plugin = builtin_plugin(&entry.builtin, &config)
                .map_err(|message| PluginError::Config(format!("plugin `{id}`: {message}")))?;
            let concurrency = entry
                .max_concurrency
                .or_else(|| pool_bound_concurrency(&entry.builtin, &config));
            let options = concurrency_options(PluginOptions::new(), concurrency, None);
            builder = builder.plugin_with(plugin, options.id(id).config(config));
        }
        builder.build().await
    }
}

/// `options` with an agent's `concurrency` and `order_by`, or a support plugin's
/// `max_concurrency`, where the definition sets them.
fn concurrency_options(
    mut options: PluginOptions,
    concurrency: Option<usize>,
    order_by: Option<&str>,
) -> PluginOptions {
    if let Some(concurrency) = concurrency {
        options = options.concurrency(concurrency);
    }
    if let Some(field) = order_by {
        options = options.order_by(field);
    }
    options
}

/// A database built-in serves at most as many statements at once as its pool has connections,
/// unless the definition says otherwise: calls past that wait in the host's queue, which never
/// gives up on them, rather than in the pool's acquire, which does after `acquire_timeout_ms`.
fn pool_bound_concurrency(builtin: &str, config: &serde_json::Value) -> Option<usize> {
    if builtin != "database" {
        return None;
    }
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    let default = bilayer_plugins::builtin::DatabaseConfig::new("").max_connections;
    // Without a database backend the built-in is refused before this is used.
    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    let default: u32 = 1;
    let connections = config
        .get("max_connections")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(u64::from(default));
    usize::try_from(connections).ok().filter(|&n| n > 0)
}
