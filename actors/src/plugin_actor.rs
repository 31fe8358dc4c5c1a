//! The actor that hosts one plugin: its mailbox serialises every call, so the plugin needs no
//! locks, and its failures stay inside it.
//!
//! The protocol ([`PluginMsg`]): execute an input (call.rs), serve the agent's inbox (hop.rs),
//! take a lifecycle step, restart (sent by the supervisor when a sibling's failure requires it),
//! or swap in a new version (hot reload, swap.rs). A call and a hop end alike (`RunEnd` in
//! settle.rs) and are settled by the same step. A panic inside the plugin is caught here, the caller is
//! answered with [`PluginError::Panicked`], and the actor asks its supervisor what to do
//! *before* taking the next message from its mailbox: so the messages queued behind the poison
//! message are served by the restarted plugin, none are lost. After a swap, the faults of the
//! new version are also counted against its rollback policy, and past it the actor rolls back
//! to the last known-good version before taking the next message (swap.rs); the messages the
//! new version failed meanwhile are held and run again on that version (replay.rs).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bilayer_plugins::hot_reload::{Replacement, SwapReport};
use bilayer_plugins::{
    AgentPlugin, CallChain, CallError, PluginContext, PluginError, PluginResult, PluginState,
};
use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;

use crate::registry::PluginShared;
use crate::supervisor::{RestartDecision, SupervisorMsg};
use crate::system::{Envelope, Inbox};
pub(crate) use call::CallReply;
pub(crate) use overlap::Returned;
pub use overlap::{DEFAULT_CONCURRENCY, DEFAULT_SUPPORT_CONCURRENCY};
pub(crate) use settle::panic_message;

mod call;
mod hop;
mod overlap;
mod replay;
mod settle;
mod swap;

/// Builds a fresh plugin instance; given at registration so a restart starts clean.
pub type PluginFactory = Arc<dyn Fn() -> Box<dyn AgentPlugin> + Send + Sync>;

/// The messages a plugin actor understands.
pub(crate) enum PluginMsg {
    /// Run the plugin on one input. `chain` is the caller's call chain (without this plugin).
    Execute {
        input: String,
        chain: CallChain,
        reply: CallReply,
    },
    /// Move the plugin one step along its lifecycle.
    Lifecycle {
        step: LifecycleStep,
        reply: oneshot::Sender<PluginResult<()>>,
    },
    /// Restart because `cause` failed (one_for_all / rest_for_one).
    Restart { cause: String },
    /// Serve the messages waiting in this agent's inbox (system/inbox.rs): run the plugin as
    /// an agent on each, then hand each output to the system's router (no reply: every
    /// envelope's ticket carries its outcome).
    Drain(Arc<Inbox>),
    /// Take `inbox` as this agent's own, before any message arrives in it, so that whatever
    /// is left in it when the actor stops becomes a dead letter (see `post_stop`).
    Introduce {
        inbox: Arc<Inbox>,
        reply: oneshot::Sender<()>,
    },
    /// Replace the plugin by a new version between this message's neighbours (hot reload).
    Swap {
        replacement: Replacement,
        reply: oneshot::Sender<PluginResult<SwapReport>>,
    },
    /// A timer of the probation (replay.rs): end it if its window has passed, and answer the
    /// failed messages whose hold ran out.
    ReviewProbation,
    /// A call or hop that ran on a sibling instance has ended: settle it, take the sibling
    /// back, and give its slot to what waits (overlap.rs).
    Returned(Returned),
}

/// The lifecycle steps, in the only order the manager allows:
/// `Load` (load + init_plugin), `Start`, `Stop`, `Unload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LifecycleStep {
    Load,
    Start,
    Stop,
    Unload,
}

impl LifecycleStep {
    fn name(self) -> &'static str {
        match self {
            LifecycleStep::Load => "load",
            LifecycleStep::Start => "start",
            LifecycleStep::Stop => "stop",
            LifecycleStep::Unload => "unload",
        }
    }

    /// The state the step starts from, and the state it leads to.
    fn transition(self) -> (PluginState, PluginState) {
        match self {
            LifecycleStep::Load => (PluginState::Unloaded, PluginState::Loaded),
            LifecycleStep::Start => (PluginState::Loaded, PluginState::Running),
            LifecycleStep::Stop => (PluginState::Running, PluginState::Loaded),
            LifecycleStep::Unload => (PluginState::Loaded, PluginState::Unloaded),
        }
    }
}

/// What a plugin actor is spawned with.
pub(crate) struct PluginActorArgs {
    pub plugin: Box<dyn AgentPlugin>,
    pub factory: Option<PluginFactory>,
    pub ctx: PluginContext,
    pub shared: Arc<PluginShared>,
    pub supervisor: ActorRef<SupervisorMsg>,
    /// Bound on one agent hop (a message from the inbox); execute calls are bounded by their caller.
    pub hop_timeout: Option<std::time::Duration>,
    /// Calls and hops served at once (overlap.rs); 1 for one at a time.
    pub concurrency: usize,
    /// The message field whose equal values are served one at a time (agents only).
    pub order_by: Option<Arc<str>>,
}

pub(crate) struct PluginActor;

pub(crate) struct PluginActorState {
    plugin: Box<dyn AgentPlugin>,
    factory: Option<PluginFactory>,
    ctx: PluginContext,
    shared: Arc<PluginShared>,
    supervisor: ActorRef<SupervisorMsg>,
    /// This actor, for the probation's timers.
    myself: ActorRef<PluginMsg>,
    /// The host's view of the lifecycle (authoritative; the plugin's own `state()` is advisory).
    lifecycle: PluginState,
    /// Where a restart brings the plugin back to: the last state a lifecycle step reached.
    target: PluginState,
    metrics: PluginMetrics,
    /// Created on the first routed message, so plain plugins do not report agent metrics.
    agent_metrics: Option<AgentMetrics>,
    hop_timeout: Option<std::time::Duration>,
    /// The version serving, for the spans of the calls it answers.
    version: Arc<str>,
    /// Set after a swap with a rollback policy, until the new version has proved itself. While
    /// it is set, every call and hop keeps a copy of its input, to run it again after a
    /// rollback; outside it, testing it is all the hot path pays.
    probation: Option<swap::Probation>,
    /// The inbox messages of the current turn, served from the front (kept between turns for
    /// its allocation). Messages stay here until served, so that a turn cut short by a kill
    /// leaves them for the drop to dead-letter.
    batch: VecDeque<Envelope>,
    /// The agent's inbox, from its system's introduction (emptied into dead letters if the
    /// actor stops).
    inbox: Option<Arc<Inbox>>,
    /// While a hop awaits its plugin: the message's hops and ticket (its payload is with the
    /// plugin), so that an actor killed mid-hop still dead-letters it.
    in_flight: Option<Envelope>,
    /// Calls and hops running on sibling instances, and what waits for a slot (overlap.rs).
    overlap: overlap::Overlap,
}

/// However the actor ends, nothing may be left waiting in its inbox. `post_stop` covers a
/// stop; a killed actor (a dying ractor supervisor kills the children still running) and one
/// that failed skip it, and their state is only dropped.
impl Drop for PluginActorState {
    fn drop(&mut self) {
        self.abandon_inbox();
    }
}

/// Per-agent metrics of an agent system (the plugin metrics count the same calls per plugin).
struct AgentMetrics {
    messages_in: metrics::Counter,
    messages_out: metrics::Counter,
    failures: metrics::Counter,
    latency: metrics::Histogram,
    /// Hops running on siblings now.
    in_flight: metrics::Gauge,
}

impl AgentMetrics {
    fn new(agent: &str) -> Self {
        let labels = [("agent", agent.to_string())];
        Self {
            messages_in: metrics::counter!("bilayer_agent_messages_in_total", &labels),
            messages_out: metrics::counter!("bilayer_agent_messages_out_total", &labels),
            failures: metrics::counter!("bilayer_agent_failures_total", &labels),
            latency: metrics::histogram!("bilayer_agent_hop_seconds", &labels),
            in_flight: metrics::gauge!("bilayer_agent_in_flight", &labels),
        }
    }
}

struct PluginMetrics {
    calls: metrics::Counter,
    errors: metrics::Counter,
    latency: metrics::Histogram,
    restarts: metrics::Counter,
    /// Calls and hops running on siblings now.
    in_flight: metrics::Gauge,
}

impl PluginMetrics {
    fn new(manager: &str, plugin: &str) -> Self {
        let labels = [
            ("manager", manager.to_string()),
            ("plugin", plugin.to_string()),
        ];
        Self {
            calls: metrics::counter!("bilayer_plugin_calls_total", &labels),
            errors: metrics::counter!("bilayer_plugin_errors_total", &labels),
            latency: metrics::histogram!("bilayer_plugin_execute_seconds", &labels),
            restarts: metrics::counter!("bilayer_plugin_restarts_total", &labels),
            in_flight: metrics::gauge!("bilayer_plugin_in_flight", &labels),
        }
    }
}

impl Actor for PluginActor {
    type Msg = PluginMsg;
    type State = PluginActorState;
    type Arguments = PluginActorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PluginMsg>,
        args: PluginActorArgs,
    ) -> Result<PluginActorState, ActorProcessingErr> {
        let metrics = PluginMetrics::new(args.ctx.manager_name(), &args.shared.id);
        let version = Arc::from(args.shared.version().as_str());
        Ok(PluginActorState {
            plugin: args.plugin,
            factory: args.factory,
            ctx: args.ctx,
            shared: args.shared,
            supervisor: args.supervisor,
            myself,
            lifecycle: PluginState::Unloaded,
            target: PluginState::Unloaded,
            metrics,
            agent_metrics: None,
            hop_timeout: args.hop_timeout,
            version,
            probation: None,
            batch: VecDeque::new(),
            inbox: None,
            in_flight: None,
            overlap: overlap::Overlap::new(args.concurrency, args.order_by),
        })
    }

    /// Messages still in the agent's inbox when the actor stops would wait forever (and their
    /// callers with them): they go to the dead-letter queue. (A killed actor skips this; the
    /// state's drop does the same for it.)
    async fn post_stop(
        &self,
        _myself: ActorRef<PluginMsg>,
        state: &mut PluginActorState,
    ) -> Result<(), ActorProcessingErr> {
        state.abandon_inbox();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<PluginMsg>,
        message: PluginMsg,
        state: &mut PluginActorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PluginMsg::Execute {
                input,
                chain,
                reply,
            } => state.execute(input, chain, reply).await,
            PluginMsg::Lifecycle { step, reply } => {
                let result = state.step(step).await;
                if result.is_ok() {
                    state.target = state.lifecycle;
                }
                state.refuse_queued_calls_unless_running();
                let _ = reply.send(result);
            }
            PluginMsg::Returned(returned) => state.returned(returned).await,
            PluginMsg::Drain(inbox) => state.drain(&myself, inbox).await,
            PluginMsg::Introduce { inbox, reply } => {
                state.inbox = Some(inbox);
                let _ = reply.send(());
            }
            PluginMsg::Swap { replacement, reply } => {
                let _ = reply.send(state.swap(replacement).await);
            }
            PluginMsg::ReviewProbation => state.review_probation(),
            PluginMsg::Restart { cause } => {
                if state.lifecycle != PluginState::Error {
                    if let Err(e) = state.restart().await {
                        state
                            .recover(format!("restart after `{cause}` failed: {e}"))
                            .await;
                    }
                }
            }
        }
        Ok(())
    }
}

impl PluginActorState {
    /// Reports a failure to the supervisor and carries out its decision, until the plugin is
    /// back in service or the supervisor gives up on it.
    async fn recover(&mut self, mut reason: String) {
        loop {
            let decision = self
                .supervisor
                .call(
                    |reply| SupervisorMsg::ChildFailed {
                        id: self.shared.id.to_string(),
                        reason: reason.clone(),
                        reply,
                    },
                    None,
                )
                .await;
            match decision {
                Ok(ractor::rpc::CallResult::Success(RestartDecision::Restart)) => {
                    self.metrics.restarts.increment(1);
                    match self.restart().await {
                        Ok(()) => return,
                        Err(e) => reason = format!("restart failed: {e}"),
                    }
                }
                _ => {
                    // A new version the supervisor gave up on goes back to the known-good one.
                    if self.on_probation()
                        && self
                            .roll_back(format!("its supervisor gave up on it: {reason}"))
                            .await
                    {
                        return;
                    }
                    self.set_lifecycle(PluginState::Error);
                    return;
                }
            }
        }
    }

    /// Tears the instance down (best effort), rebuilds it from the factory when there is one,
    /// and brings it back to the state it was in.
    async fn restart(&mut self) -> PluginResult<()> {
        if self.lifecycle == PluginState::Running {
            let _ = guarded(&self.shared.id, self.plugin.stop()).await;
        }
        if matches!(self.lifecycle, PluginState::Running | PluginState::Loaded) {
            let _ = guarded(&self.shared.id, self.plugin.unload()).await;
        }
        if let Some(factory) = &self.factory {
            self.plugin = factory();
        }
        self.set_lifecycle(PluginState::Unloaded);
        for step in [LifecycleStep::Load, LifecycleStep::Start] {
            if self.lifecycle == self.target {
                break;
            }
            self.step(step).await?;
        }
        Ok(())
    }

    async fn step(&mut self, step: LifecycleStep) -> PluginResult<()> {
        let (from, to) = step.transition();
        if self.lifecycle != from {
            return Err(self.refusal(step.name(), state_name(from)));
        }
        let id = self.shared.id.clone();
        let result = match step {
            LifecycleStep::Load => {
                self.set_lifecycle(PluginState::Loading);
                let loaded = guarded(&id, self.plugin.load(&self.ctx)).await;
                match loaded {
                    Ok(()) => guarded(&id, self.plugin.init_plugin()).await,
                    Err(e) => Err(e),
                }
            }
            LifecycleStep::Start => guarded(&id, self.plugin.start()).await,
            LifecycleStep::Stop => guarded(&id, self.plugin.stop()).await,
            LifecycleStep::Unload => guarded(&id, self.plugin.unload()).await,
        };
        match result {
            Ok(()) => {
                self.set_lifecycle(to);
                tracing::debug!(plugin = %id, step = step.name(), "lifecycle step done");
                Ok(())
            }
            Err(e) => {
                self.set_lifecycle(from);
                tracing::warn!(plugin = %id, step = step.name(), error = %e, "lifecycle step failed");
                Err(e)
            }
        }
    }

    fn set_lifecycle(&mut self, state: PluginState) {
        if state != self.lifecycle {
            // Siblings serve as the primary does: a primary leaving or entering service (a
            // step, a restart) makes the ones kept stale.
            self.overlap.renew();
        }
        self.lifecycle = state;
        self.shared.set_state(state);
    }

    /// Calls queued for a slot are refused once the plugin is no longer serving (stopped,
    /// failed): nothing would ever serve them.
    fn refuse_queued_calls_unless_running(&mut self) {
        if self.lifecycle == PluginState::Running {
            return;
        }
        let calls = self.overlap.take_queued_calls();
        for call in calls {
            let _ = call.reply.send(Err(self.refused("execute", "Running")));
        }
    }

    fn refusal(&self, operation: &'static str, expected: &'static str) -> PluginError {
        self.refused(operation, expected).into()
    }

    /// Why `operation` is refused in the plugin's lifecycle state (it must be `expected`):
    /// the supervisor gave up on it, or it is not there yet.
    fn refused(&self, operation: &'static str, expected: &'static str) -> CallError {
        if self.lifecycle == PluginState::Error {
            CallError::Failed {
                id: self.shared.id.to_string(),
                restarts: self.shared.stats.restarts(),
            }
        } else {
            CallError::InvalidState {
                id: self.shared.id.to_string(),
                operation,
                state: self.lifecycle,
                expected,
            }
        }
    }
}

fn state_name(state: PluginState) -> &'static str {
    match state {
        PluginState::Unloaded => "Unloaded",
        PluginState::Loading => "Loading",
        PluginState::Loaded => "Loaded",
        PluginState::Running => "Running",
        PluginState::Paused => "Paused",
        PluginState::Error => "Error",
        PluginState::Untracked => "Untracked",
    }
}

/// Runs a lifecycle call of the plugin, turning a panic into [`PluginError::Panicked`].
async fn guarded<F>(id: &str, call: F) -> PluginResult<()>
where
    F: std::future::Future<Output = PluginResult<()>>,
{
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(PluginError::Panicked {
            id: id.to_string(),
            message: panic_message(panic.as_ref()),
        }),
    }
}
