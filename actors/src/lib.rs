//! # bilayer-actors: where plugins live
//!
//! Every plugin runs inside its own ractor actor, with its own mailbox, under a supervisor that
//! applies Erlang/OTP restart strategies. The path of one call:
//!
//! ```text
//! PluginManager::execute(id, input)
//!   └─► plugin actor's mailbox (PluginMsg::Execute)      plugin_actor.rs
//!         └─► AgentPlugin::execute, panics caught
//!               └─► on a panic: supervisor decides        supervisor.rs
//!                   (restart in place / give up)
//! ```
//!
//! - [`PluginManager`] (manager.rs): the application's handle: registration, lifecycle,
//!   execute with timeout, listing with statistics, supervision events.
//! - plugin_actor.rs: the actor hosting one plugin and its protocol.
//! - supervisor.rs / supervision.rs: strategies, restart intensity, events.
//! - dependency.rs: load/start order from declared dependencies.
//! - system/: agent systems (routing by `next_agent`, dead letters, admission).
//! - nats/: the NATS JetStream transport that spreads one system over processes.
//! - reload_target.rs: the manager as the target of hot reload (`PluginManager::swap`, and
//!   plugin_actor/swap.rs for the swap, the probation and the rollback inside the actor).

mod clock;
mod dependency;
mod manager;
mod nats;
mod plugin_actor;
mod registry;
mod reload_target;
mod supervision;
mod supervisor;
mod system;

pub use manager::{PluginManager, PluginManagerBuilder, PluginOptions, DEFAULT_EXECUTE_TIMEOUT};
pub use nats::{NatsCredentials, NatsStorage, NatsTransport, Transport, DEFAULT_NATS_URL};
pub use plugin_actor::PluginFactory;
pub use registry::{PluginInfo, PluginStatsSnapshot};
pub use supervision::{RestartIntensity, SupervisionStrategy, SupervisorEvent};
pub use system::{
    AgentSystem, AgentSystemBuilder, DeadLetter, Outcome, OutcomeStatus, OutcomeStream,
    RoutingPolicy, SystemTotals, DEFAULT_MAX_BRANCHES, DEFAULT_MAX_HOPS, DEFAULT_MAX_IN_FLIGHT,
};
