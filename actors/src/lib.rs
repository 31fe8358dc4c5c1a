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
//! ## A tour of the crate
//!
//! One line per module (all private: what they export is re-exported here); each module's own
//! documentation says the rest.
//!
//! - `manager`: [`PluginManager`], the application's handle: registration, lifecycle, execute
//!   with a timeout, listing with statistics, supervision events, hot reload swaps.
//! - `registry`: what the manager knows of each plugin without asking its actor (address,
//!   metadata, atomic state mirror and call statistics: [`PluginInfo`]).
//! - `plugin_actor`: the actor hosting one plugin, and its protocol `PluginMsg`; inside it,
//!   `call` (an `execute` call), `hop` (an agent hop: the inbox's turns and the hop itself),
//!   `settle` (how a call or hop ended, counted once for both), `swap` (a new version between
//!   two messages, probation, rollback) and `replay` (messages a version on probation failed,
//!   run again after a rollback).
//! - `supervisor`, `supervision`: the supervisor that restarts plugins in place;
//!   [`SupervisionStrategy`], [`RestartIntensity`], [`SupervisorEvent`].
//! - `dependency`: load and start order from declared dependencies.
//! - `system`: agent systems ([`AgentSystem`]): admission, inboxes, routing by `next_agent`
//!   or a [`RoutingPolicy`] (a Rhai script: `RhaiRoutingPolicy`, Cargo feature `rhai`), dead
//!   letters, one [`Outcome`] per input; the carrier, the one seam where messages leave for
//!   another transport.
//! - `journal` (features `sqlite`, `postgres`): durable runs: the journal store and its
//!   group-commit writer, [`journal::RunJournal`] (hand it to
//!   [`AgentSystemBuilder::journal`]: every input becomes a run whose hops, calls and outcome
//!   are journaled, each effect released once committed), and resuming a run from it
//!   ([`AgentSystem::resume_run`]).
//! - `nats`: the NATS JetStream transport that spreads one system over processes
//!   (`Transport::Nats`); Cargo feature `nats` (default).
//! - `reload_target`: the manager as the target of hot reload (`bilayer_plugins::hot_reload`).
//! - `transport`: [`Transport`], in process or (feature `nats`) over NATS.
//! - `clock`: the time-stamp-counter clock the hot path reads.

mod clock;
mod dependency;
#[cfg(feature = "journal")]
pub mod journal;
mod manager;
#[cfg(feature = "nats")]
mod nats;
mod plugin_actor;
mod registry;
mod reload_target;
mod supervision;
mod supervisor;
mod system;
mod transport;

pub use manager::{PluginManager, PluginManagerBuilder, PluginOptions, DEFAULT_EXECUTE_TIMEOUT};
#[cfg(feature = "nats")]
pub use nats::{NatsCredentials, NatsStorage, NatsTransport, TransportError, DEFAULT_NATS_URL};
pub use plugin_actor::{PluginFactory, DEFAULT_CONCURRENCY, DEFAULT_SUPPORT_CONCURRENCY};
pub use registry::{PluginInfo, PluginStatsSnapshot};
pub use supervision::{RestartIntensity, SupervisionStrategy, SupervisorEvent};
#[cfg(feature = "rhai")]
pub use system::RhaiRoutingPolicy;
pub use system::{
    AgentSystem, AgentSystemBuilder, DeadLetter, Outcome, OutcomeStatus, OutcomeStream,
    RoutingPolicy, SystemTotals, DEFAULT_MAX_BRANCHES, DEFAULT_MAX_HOPS, DEFAULT_MAX_IN_FLIGHT,
};
pub use transport::Transport;
