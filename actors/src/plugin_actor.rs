//! The actor that hosts one plugin: its mailbox serialises every call, so the plugin needs no
//! locks, and its failures stay inside it.
//!
//! The protocol ([`PluginMsg`]): execute an input, deliver an agent message, take a lifecycle
//! step, restart (sent by the supervisor when a sibling's failure requires it), or swap in a new
//! version (hot reload, swap.rs). A panic inside the plugin is caught here, the caller is
//! answered with [`PluginError::Panicked`], and the actor asks its supervisor what to do
//! *before* taking the next message from its mailbox: so the messages queued behind the poison
//! message are served by the restarted plugin, none are lost. After a swap, the faults of the
//! new version are also counted against its rollback policy, and past it the actor rolls back
//! to the last known-good version before taking the next message (swap.rs); the messages the
//! new version failed meanwhile are held and run again on that version (replay.rs).

use std::any::Any;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bilayer_plugins::hot_reload::{Replacement, SwapReport};
use bilayer_plugins::{
    AgentPlugin, CallChain, PluginContext, PluginError, PluginResult, PluginState,
};
use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::clock;
use crate::registry::PluginShared;
use crate::supervisor::{RestartDecision, SupervisorMsg};
use crate::system::{agent_not_running, Envelope, Inbox, SystemCore, MAX_PER_TURN};
use replay::Held;

mod replay;
mod swap;

/// Builds a fresh plugin instance; given at registration so a restart starts clean.
pub type PluginFactory = Arc<dyn Fn() -> Box<dyn AgentPlugin> + Send + Sync>;

/// How one agent hop ended: the plugin's answer, a panic, or the hop timeout that ran out.
type HopOutcome = Result<Result<PluginResult<()>, Box<dyn Any + Send>>, std::time::Duration>;

/// The messages a plugin actor understands.
pub(crate) enum PluginMsg {
    /// Run the plugin on one input. `chain` is the caller's call chain (without this plugin).
    Execute {
        input: String,
        chain: CallChain,
        reply: oneshot::Sender<PluginResult<String>>,
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
}

impl AgentMetrics {
    fn new(agent: &str) -> Self {
        let labels = [("agent", agent.to_string())];
        Self {
            messages_in: metrics::counter!("bilayer_agent_messages_in_total", &labels),
            messages_out: metrics::counter!("bilayer_agent_messages_out_total", &labels),
            failures: metrics::counter!("bilayer_agent_failures_total", &labels),
            latency: metrics::histogram!("bilayer_agent_hop_seconds", &labels),
        }
    }
}

struct PluginMetrics {
    calls: metrics::Counter,
    errors: metrics::Counter,
    latency: metrics::Histogram,
    restarts: metrics::Counter,
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
                let _ = reply.send(result);
            }
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
    async fn execute(
        &mut self,
        input: String,
        chain: CallChain,
        mut reply: oneshot::Sender<PluginResult<String>>,
    ) {
        if self.lifecycle != PluginState::Running {
            let _ = reply.send(Err(self.refusal("execute", "Running")));
            return;
        }
        let span = tracing::debug_span!(
            "plugin.execute",
            plugin = %self.shared.id,
            version = %self.version,
            outcome = tracing::field::Empty,
            micros = tracing::field::Empty,
        );
        // On probation the input is kept, to run it again should the version be rolled back.
        let retry = self
            .probation
            .is_some()
            .then(|| (input.clone(), chain.clone()));
        let started = clock::now();
        let run = AssertUnwindSafe(chain.scope(self.shared.id.clone(), self.plugin.execute(input)))
            .catch_unwind()
            .instrument(span.clone());
        // Most plugins finish on their first poll (scripts, modules, pure functions): they need
        // no watcher. A plugin still pending after it is raced against its caller: a caller that
        // stopped waiting (its timeout fired) cancels the call, so an async plugin stuck on I/O
        // does not hold the mailbox forever.
        let outcome = {
            let mut run = std::pin::pin!(run);
            match futures::poll!(run.as_mut()) {
                std::task::Poll::Ready(outcome) => Some(outcome),
                std::task::Poll::Pending => tokio::select! {
                    biased;
                    outcome = run => Some(outcome),
                    _ = reply.closed() => None,
                },
            }
        };
        let elapsed = clock::since(started);
        self.metrics.calls.increment(1);
        self.metrics.latency.record(elapsed.as_secs_f64());
        // Recording into a disabled span still walks tracing's dispatch (and its `log` bridge).
        let traced = !span.is_disabled();
        if traced {
            span.record("micros", elapsed.as_micros() as u64);
        }
        match outcome {
            Some(Ok(result)) => {
                let ok = result.is_ok();
                self.shared.stats.record_call(elapsed, ok);
                if !ok {
                    self.metrics.errors.increment(1);
                }
                if traced {
                    span.record("outcome", if ok { "ok" } else { "error" });
                }
                match result {
                    Err(error) if error.is_plugin_fault() => {
                        let failed = Self::failed_call(retry, reply, &error);
                        self.on_fault(failed, &error).await;
                    }
                    result => {
                        let _ = reply.send(result);
                    }
                }
            }
            Some(Err(panic)) => {
                self.shared.stats.record_call(elapsed, false);
                self.shared.stats.record_panic();
                self.metrics.errors.increment(1);
                span.record("outcome", "panic");
                let message = panic_message(panic.as_ref());
                let error = PluginError::Panicked {
                    id: self.shared.id.to_string(),
                    message: message.clone(),
                };
                let failed = Self::failed_call(retry, reply, &error);
                if !self.on_fault(failed, &error).await {
                    self.recover(format!("panicked: {message}")).await;
                }
            }
            None => {
                self.shared.stats.record_call(elapsed, false);
                self.metrics.errors.increment(1);
                span.record("outcome", "cancelled");
                // Debug: the caller already has the timeout (an agent's message becomes a dead
                // letter saying so); one warning per timed-out call would flood the log.
                tracing::debug!(plugin = %self.shared.id, ?elapsed, "call cancelled: its caller timed out");
                let error = PluginError::Timeout {
                    id: self.shared.id.to_string(),
                    after: elapsed,
                };
                self.on_fault(None, &error).await;
            }
        }
    }

    /// A call that failed with `error`: answered now, or, when it came in on probation
    /// (`retry` holds its input), returned to be held for a replay.
    fn failed_call(
        retry: Option<(String, CallChain)>,
        reply: oneshot::Sender<PluginResult<String>>,
        error: &PluginError,
    ) -> Option<Held> {
        match retry {
            Some((input, chain)) => Some(Held::call(input, chain, reply, error.clone())),
            None => {
                let _ = reply.send(Err(error.clone()));
                None
            }
        }
    }

    /// One mailbox turn of agent work: serves up to [`MAX_PER_TURN`] messages from the inbox,
    /// then yields the mailbox to whatever else waits there (a swap, a lifecycle step) by
    /// sending itself the next `Drain`.
    async fn drain(&mut self, myself: &ActorRef<PluginMsg>, inbox: Arc<Inbox>) {
        // One reference to the system per turn, rather than one per message: a count bumped
        // by the producer's core and dropped by the terminal agent's would cross cores on every
        // input. The system outlives every input it admitted (`SystemInner`'s drop), so the
        // core is only gone once nothing waits for an outcome.
        let Some(core) = inbox.core() else {
            return self.dead_letter_all(&inbox, "stopped");
        };
        let mut served = 0;
        while served < MAX_PER_TURN {
            inbox.take(MAX_PER_TURN - served, &mut self.batch);
            if self.batch.is_empty() {
                // The inbox is idle again; the next message schedules the next turn.
                return;
            }
            served += self.batch.len();
            while let Some(envelope) = self.batch.pop_front() {
                self.deliver(envelope, &core).await;
            }
        }
        if myself
            .send_message(PluginMsg::Drain(Arc::clone(&inbox)))
            .is_err()
        {
            self.dead_letter_all(&inbox, "stopped");
        }
    }

    /// Ends what waits for this agent as dead letters, once: it is stopping and its inbox
    /// will not be served again.
    fn abandon_inbox(&mut self) {
        if let Some(inbox) = self.inbox.take() {
            if let Some(cut_short) = self.in_flight.take() {
                self.batch.push_front(cut_short);
            }
            self.dead_letter_all(&inbox, "stopped");
        }
    }

    /// Ends every message waiting for the agent (what is left of the current turn, then
    /// `inbox`) as a dead letter: the agent is not running (it
    /// is `state`). If the system itself is gone, nothing waits for their outcomes any more
    /// (see `SystemInner`'s drop): they are dropped, and the drop logged.
    fn dead_letter_all(&mut self, inbox: &Inbox, state: &str) {
        // A turn's leftovers first: they came out of the inbox before what is still in it.
        let mut waiting: Vec<Envelope> = self.batch.drain(..).collect();
        waiting.extend(inbox.take_all());
        if waiting.is_empty() {
            return;
        }
        let Some(core) = inbox.core() else {
            return tracing::warn!(
                agent = %self.shared.id,
                messages = waiting.len(),
                "messages for an agent system that no longer exists were dropped"
            );
        };
        for envelope in waiting {
            core.dead_letter(envelope, agent_not_running(&self.shared.id, state));
        }
    }

    /// Runs the plugin as an agent on one message and routes its output onward.
    async fn deliver(&mut self, mut envelope: Envelope, core: &Arc<SystemCore>) {
        envelope.hops.push(self.shared.id.clone());
        self.serve_hop(envelope, core).await;
    }

    /// [`deliver`](Self::deliver) once the hop is counted in the envelope (a replay serves
    /// the same hop again).
    async fn serve_hop(&mut self, mut envelope: Envelope, core: &Arc<SystemCore>) {
        if self.lifecycle != PluginState::Running {
            let reason = agent_not_running(&self.shared.id, format_args!("{:?}", self.lifecycle));
            return core.dead_letter(envelope, reason);
        }
        // Without a subscriber for it, no span at all: even a disabled one costs a drop that,
        // with tracing's `log` bridge (sqlx turns it on), checks the log level.
        let span = if tracing::span_enabled!(tracing::Level::DEBUG) {
            tracing::debug_span!(
                "agent.hop",
                agent = %self.shared.id,
                version = %self.version,
                trace_id = envelope.ticket.trace_id,
                input = envelope.ticket.input,
            )
        } else {
            tracing::Span::none()
        };
        let keep_payload = core.keep_failed_payloads;
        // On probation the message is kept as it came in, to run it again should the version
        // be rolled back.
        let retry = self.probation.is_some().then(|| envelope.payload.clone());
        let started = clock::now();
        let outcome = match self.deliver_now(&mut envelope.payload, &span) {
            Some(outcome) => outcome,
            None => {
                // Awaiting, the hop can be cut short by a kill (only a sync hop cannot).
                self.in_flight = Some(Envelope {
                    payload: Value::Null,
                    hops: envelope.hops.clone(),
                    breadth: envelope.breadth,
                    ticket: Arc::clone(&envelope.ticket),
                });
                let outcome = self
                    .deliver_async(&mut envelope.payload, keep_payload, span, started)
                    .await;
                self.in_flight = None;
                outcome
            }
        };
        if !keep_payload && !matches!(outcome, Ok(Ok(Ok(())))) {
            // Handed over: a failure's dead letter carries no message, whichever path ran.
            envelope.payload = Value::Null;
        }
        let elapsed = clock::since(started);
        self.metrics.calls.increment(1);
        self.metrics.latency.record(elapsed.as_secs_f64());
        let id = &self.shared.id;
        let agent_metrics = self
            .agent_metrics
            .get_or_insert_with(|| AgentMetrics::new(id));
        agent_metrics.messages_in.increment(1);
        agent_metrics.latency.record(elapsed.as_secs_f64());
        if matches!(outcome, Ok(Ok(Ok(_)))) {
            agent_metrics.messages_out.increment(1);
        } else {
            agent_metrics.failures.increment(1);
        }
        match outcome {
            Ok(Ok(Ok(()))) => {
                self.shared.stats.record_call(elapsed, true);
                let output = std::mem::take(&mut envelope.payload);
                core.forward(envelope, output);
            }
            Ok(Ok(Err(error))) => {
                self.shared.stats.record_call(elapsed, false);
                self.metrics.errors.increment(1);
                let reason = format!("agent `{}` failed: {error}", self.shared.id);
                if error.is_plugin_fault() {
                    let failed = Self::failed_hop(retry, envelope, core, reason);
                    self.on_fault(failed, &error).await;
                } else {
                    core.dead_letter(envelope, reason);
                }
            }
            Ok(Err(panic)) => {
                self.shared.stats.record_call(elapsed, false);
                self.shared.stats.record_panic();
                self.metrics.errors.increment(1);
                let message = panic_message(panic.as_ref());
                let reason = format!("agent `{}` panicked: {message}", self.shared.id);
                let failed = Self::failed_hop(retry, envelope, core, reason);
                let error = PluginError::Panicked {
                    id: self.shared.id.to_string(),
                    message: message.clone(),
                };
                if !self.on_fault(failed, &error).await {
                    self.recover(format!("panicked: {message}")).await;
                }
            }
            Err(limit) => {
                self.shared.stats.record_call(elapsed, false);
                self.shared.stats.record_timeout();
                self.metrics.errors.increment(1);
                let reason = format!("agent `{}` did not answer within {limit:?}", self.shared.id);
                let failed = Self::failed_hop(retry, envelope, core, reason);
                let error = PluginError::Timeout {
                    id: self.shared.id.to_string(),
                    after: limit,
                };
                self.on_fault(failed, &error).await;
            }
        }
    }

    /// A hop that failed: dead-lettered now, or, when it came in on probation (`retry` holds
    /// the message as it came in), returned to be held for a replay.
    fn failed_hop(
        retry: Option<Value>,
        envelope: Envelope,
        core: &Arc<SystemCore>,
        reason: String,
    ) -> Option<Held> {
        match retry {
            Some(input) => Some(Held::hop(envelope, input, Arc::clone(core), reason)),
            None => {
                core.dead_letter(envelope, reason);
                None
            }
        }
    }

    /// An agent hop answered at once, by a plugin that can (a native function): no boxed
    /// future, no task-local call frame, no poll. Such a plugin calls no other plugin, so it
    /// needs no call chain. `None` when the plugin needs the async path.
    fn deliver_now(&mut self, payload: &mut Value, span: &tracing::Span) -> Option<HopOutcome> {
        let _entered = span.enter();
        let plugin = &mut self.plugin;
        match std::panic::catch_unwind(AssertUnwindSafe(|| {
            plugin.execute_json_in_place_now(payload)
        })) {
            Ok(None) => None,
            Ok(Some(result)) => Some(Ok(Ok(result))),
            Err(panic) => Some(Ok(Err(panic))),
        }
    }

    /// An agent hop through the plugin's async entry points, in the agent's call chain, bounded
    /// by the hop timeout (counted from `started`, the start of the hop) once it has to wait.
    /// A plugin whose work waits on another thread (a WASM call on a blocking thread) is
    /// abandoned there when the timeout fires; plugins bound their own guest code by the same
    /// timeout (`PluginContext::call_timeout`), so a running guest stops at it too. By default the message stays in the envelope,
    /// lent to the plugin, which replaces it by its output, so that a failure can put it in the
    /// dead-letter queue (as it was, or for a transforming plugin as it was left); systems
    /// built with `dead_letter_payloads(false)` hand it over (a plugin that only has
    /// `execute_json` then needs no copy). Either way, on success `payload` is the output.
    async fn deliver_async(
        &mut self,
        payload: &mut Value,
        keep_payload: bool,
        span: tracing::Span,
        started: clock::Instant,
    ) -> HopOutcome {
        let plugin = &mut self.plugin;
        let call = async move {
            if keep_payload {
                plugin.execute_json_in_place(payload).await
            } else {
                *payload = plugin.execute_json(std::mem::take(payload)).await?;
                Ok(())
            }
        };
        // A hop that finishes on its first poll needs no timer (arming one costs more than most
        // hops); the timeout bounds hops that wait, counted from the start of the hop (the
        // first poll may have run a speculative inline slice of a WASM call).
        let hop_timeout = self.hop_timeout;
        let id = self.shared.id.clone();
        // Pinned where it is built: the wrappers below then hold a pointer to it, and moving
        // them copies a few bytes rather than the whole call's state.
        let scoped = std::pin::pin!(CallChain::default().scope(id, call));
        // A disabled span would still cost an enter and an exit per poll: leave it out.
        let run = if span.is_disabled() {
            futures::future::Either::Left(scoped)
        } else {
            futures::future::Either::Right(scoped.instrument(span))
        };
        let mut run = AssertUnwindSafe(run).catch_unwind();
        match futures::poll!(&mut run) {
            std::task::Poll::Ready(outcome) => Ok(outcome),
            std::task::Poll::Pending => match hop_timeout {
                Some(limit) => {
                    let left = limit.saturating_sub(clock::since(started));
                    tokio::time::timeout(left, run).await.map_err(|_| limit)
                }
                None => Ok(run.await),
            },
        }
    }

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
        self.lifecycle = state;
        self.shared.set_state(state);
    }

    fn refusal(&self, operation: &'static str, expected: &'static str) -> PluginError {
        if self.lifecycle == PluginState::Error {
            PluginError::Failed {
                id: self.shared.id.to_string(),
                restarts: self.shared.stats.restarts(),
            }
        } else {
            PluginError::InvalidState {
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

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}
