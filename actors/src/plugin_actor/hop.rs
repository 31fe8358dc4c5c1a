//! The agent hop inside the plugin actor: the inbox's turns ([`PluginMsg::Drain`]), one hop per
//! message (the plugin runs on it, then the system routes its output on), and the dead letters
//! an agent that stops leaves behind.
//!
//! A hop is the hot path of an agent system (millions a second with native agents), so it is
//! answered at once when the plugin can (`execute_json_in_place_now`: no future, no call frame,
//! no timer), and otherwise polled once before any timer is armed. Either way it ends in a
//! [`RunEnd`], settled as a call's is (settle.rs), then forwarded or dead-lettered.
//!
//! [`PluginMsg::Drain`]: super::PluginMsg::Drain

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bilayer_plugins::{AgentPlugin, CallChain, CallError, PluginState};
use futures::FutureExt;
use ractor::ActorRef;
use serde_json::Value;
use tracing::Instrument;

use std::task::Poll;

use super::overlap::{first_poll, hop_on_sibling, HopTask};
use super::replay::Held;
use super::settle::RunEnd;
use super::{AgentMetrics, PluginActorState, PluginMsg};
use crate::clock;
use crate::system::{DeadLetterReason, Envelope, Inbox, SystemCore, MAX_PER_TURN};

impl PluginActorState {
    /// One mailbox turn of agent work: serves up to [`MAX_PER_TURN`] messages from the inbox,
    /// then yields the mailbox to whatever else waits there (a swap, a lifecycle step) by
    /// sending itself the next `Drain`.
    pub(super) async fn drain(&mut self, myself: &ActorRef<PluginMsg>, inbox: Arc<Inbox>) {
        // One reference to the system per turn, rather than one per message: a count bumped
        // by the producer's core and dropped by the terminal agent's would cross cores on every
        // input. The system outlives every input it admitted (`SystemInner`'s drop), so the
        // core is only gone once nothing waits for an outcome.
        let Some(core) = inbox.core() else {
            return self.dead_letter_all(&inbox, "stopped");
        };
        let mut served = 0;
        loop {
            if self.batch.is_empty() {
                if served >= MAX_PER_TURN {
                    break;
                }
                inbox.take(MAX_PER_TURN - served, &mut self.batch);
                if self.batch.is_empty() {
                    // The inbox is idle again; the next message schedules the next turn.
                    return;
                }
                served += self.batch.len();
            }
            while let Some(envelope) = self.batch.pop_front() {
                if self.overlap.is_full() {
                    // Every sibling is busy: the turn stops here, its rest stays in the batch,
                    // and the next run to return resumes it (overlap.rs). The inbox stays
                    // scheduled meanwhile, so no push sends a `Drain` that would find nothing
                    // to do.
                    self.batch.push_front(envelope);
                    return;
                }
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
    pub(super) fn abandon_inbox(&mut self) {
        if let Some(inbox) = self.inbox.take() {
            if let Some(cut_short) = self.in_flight.take() {
                self.batch.push_front(cut_short);
            }
            let held = self.overlap.take_held_hops();
            self.batch.extend(held);
            for call in self.overlap.take_queued_calls() {
                let _ = call.reply.send(Err(self.refused("execute", "Running")));
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
            core.dead_letter(
                envelope,
                DeadLetterReason::not_running(&self.shared.id, state),
            );
        }
    }

    /// Runs the plugin as an agent on one message and routes its output onward.
    /// With `order_by`, a message whose key has a hop running waits behind it (overlap.rs).
    async fn deliver(&mut self, mut envelope: Envelope, core: &Arc<SystemCore>) {
        let key = self.overlap.key_of(&envelope.payload);
        if let Some(key) = &key {
            match self.overlap.hold_if_busy(key, envelope) {
                Some(free) => envelope = free,
                None => return,
            }
        }
        envelope.hops.push(self.shared.id.clone());
        self.serve_hop(envelope, key, core).await;
    }

    /// [`deliver`](Self::deliver) once the hop is counted in the envelope (a replay serves
    /// the same hop again). `key` is the message's `order_by` key, taken while the hop runs
    /// on a sibling.
    pub(super) async fn serve_hop(
        &mut self,
        mut envelope: Envelope,
        key: Option<String>,
        core: &Arc<SystemCore>,
    ) {
        if self.lifecycle != PluginState::Running {
            let reason = DeadLetterReason::not_running(
                &self.shared.id,
                format_args!("{:?}", self.lifecycle),
            );
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
        let keep_payload = core.keeps_failed_payloads();
        // In a durable run, the hop's journal rides in its call chain (calls recorded, and
        // answered from the journal when the hop runs again).
        let chain = hop_chain(&envelope, core);
        // On probation the message is kept as it came in, to run it again should the version
        // be rolled back.
        let retry = self.probation.is_some().then(|| envelope.payload.clone());
        let started = clock::now();
        let end = match self.run_now(&mut envelope.payload, &span, &chain) {
            Some(end) => end,
            None => {
                let frame = HopFrame {
                    chain,
                    span,
                    started,
                    hop_timeout: self.hop_timeout,
                    id: Arc::clone(&self.shared.id),
                };
                // When the plugin overlaps, the hop runs on a sibling: polled once here, and
                // moved to a task of its own if it waits (overlap.rs).
                if let Some(sibling) = self.overlap.sibling(self.plugin.as_ref()) {
                    let mut run = hop_on_sibling(sibling, envelope, keep_payload, frame);
                    let (sibling, answered, end) = match first_poll(&mut run).await {
                        Poll::Ready(answered) => answered,
                        Poll::Pending => {
                            let task = HopTask {
                                retry,
                                keep_payload,
                                key,
                                started,
                            };
                            return self.spawn_hop(run, task, core);
                        }
                    };
                    // Answered on that poll: it ends below, as a run of the primary does.
                    self.overlap.put_back(sibling);
                    envelope = answered;
                    end
                } else {
                    // Awaiting, the hop can be cut short by a kill (only a sync hop cannot).
                    self.in_flight = Some(Envelope {
                        payload: Value::Null,
                        hops: envelope.hops.clone(),
                        breadth: envelope.breadth,
                        ticket: Arc::clone(&envelope.ticket),
                        branch: envelope.branch.clone(),
                    });
                    let end = run_async(
                        self.plugin.as_mut(),
                        &mut envelope.payload,
                        keep_payload,
                        frame,
                    )
                    .await;
                    self.in_flight = None;
                    end
                }
            }
        };
        let elapsed = clock::since(started);
        if let Some((envelope, error)) =
            self.conclude_hop(envelope, end, elapsed, keep_payload, core)
        {
            self.hop_failed(envelope, error, retry, core, true).await;
        }
    }

    /// What follows a hop, wherever it ran, as far as a hop that answered needs: counted, and
    /// its output routed on. A failed hop is counted and handed back with its error for
    /// [`hop_failed`](Self::hop_failed). (Synchronous, so the hot path builds no future.)
    #[inline]
    pub(super) fn conclude_hop(
        &mut self,
        mut envelope: Envelope,
        end: RunEnd<()>,
        elapsed: std::time::Duration,
        keep_payload: bool,
        core: &Arc<SystemCore>,
    ) -> Option<(Envelope, CallError)> {
        let timed_out = matches!(end, RunEnd::TimedOut(_));
        self.settle(&end, elapsed);
        let result = end.into_result(&self.shared.id);
        if !keep_payload && result.is_err() {
            // Handed over: a failure's dead letter carries no message, whichever path ran.
            envelope.payload = Value::Null;
        }
        if timed_out {
            self.shared.stats.record_timeout();
        }
        let agent_metrics = self.agent_metrics();
        agent_metrics.messages_in.increment(1);
        agent_metrics.latency.record(elapsed.as_secs_f64());
        match result {
            Ok(()) => {
                agent_metrics.messages_out.increment(1);
                let output = std::mem::take(&mut envelope.payload);
                #[cfg(feature = "journal")]
                if let Some(journal) = core.journal() {
                    journal.hop_done(core, envelope, output, &self.version, elapsed);
                    return None;
                }
                core.forward(envelope, output);
                None
            }
            Err(error) => {
                agent_metrics.failures.increment(1);
                Some((envelope, error))
            }
        }
    }

    /// A hop that failed with `error`: dead-lettered, after a fault of the `current` version
    /// went to its probation (which may hold it for a replay) and its supervisor.
    pub(super) async fn hop_failed(
        &mut self,
        envelope: Envelope,
        error: CallError,
        retry: Option<Value>,
        core: &Arc<SystemCore>,
        current: bool,
    ) {
        let agent = Arc::clone(&self.shared.id);
        if current && error.is_plugin_fault() {
            let reason = DeadLetterReason::HopFailed {
                agent,
                error: error.clone(),
            };
            let failed = Self::failed_hop(retry, envelope, core, reason, &self.version);
            self.after_fault(failed, &error).await;
        } else {
            let reason = DeadLetterReason::HopFailed { agent, error };
            end_failed_hop(core, envelope, reason, &self.version);
        }
    }

    /// The agent's metrics, created on its first hop (plain plugins report none).
    pub(super) fn agent_metrics(&mut self) -> &AgentMetrics {
        let id = &self.shared.id;
        self.agent_metrics
            .get_or_insert_with(|| AgentMetrics::new(id))
    }

    /// A hop that failed: dead-lettered now, or, when it came in on probation (`retry` holds
    /// the message as it came in), returned to be held for a replay.
    fn failed_hop(
        retry: Option<Value>,
        envelope: Envelope,
        core: &Arc<SystemCore>,
        reason: DeadLetterReason,
        version: &str,
    ) -> Option<Held> {
        match retry {
            // Not journaled: the hop may still run again, on the version rolled back to.
            Some(input) => Some(Held::hop(envelope, input, Arc::clone(core), reason)),
            None => {
                end_failed_hop(core, envelope, reason, version);
                None
            }
        }
    }

    /// An agent hop answered at once, by a plugin that can (a native function): no boxed
    /// future, no task-local call frame, no poll. Such a plugin calls no other plugin, so it
    /// needs no call chain. `None` when the plugin needs the async path.
    fn run_now(
        &mut self,
        payload: &mut Value,
        span: &tracing::Span,
        chain: &CallChain,
    ) -> Option<RunEnd<()>> {
        let _entered = span.enter();
        let plugin = &mut self.plugin;
        let run = || {
            if chain.hop().is_some() {
                // A durable hop: a native function's steps see the hop's journal.
                chain
                    .clone()
                    .scope_blocking(|| plugin.execute_json_in_place_now(payload))
            } else {
                plugin.execute_json_in_place_now(payload)
            }
        };
        match std::panic::catch_unwind(AssertUnwindSafe(run)) {
            Ok(None) => None,
            Ok(Some(result)) => Some(RunEnd::caught(Ok(result))),
            Err(panic) => Some(RunEnd::caught(Err(panic))),
        }
    }
}

/// What a hop runs in, wherever it runs (the actor's own plugin or a sibling): its call chain
/// (in a durable run, with the hop's journal), its span, when it started, its timeout and its
/// agent.
pub(super) struct HopFrame {
    pub(super) chain: CallChain,
    pub(super) span: tracing::Span,
    pub(super) started: clock::Instant,
    pub(super) hop_timeout: Option<std::time::Duration>,
    pub(super) id: Arc<str>,
}

/// An agent hop through the plugin's async entry points, in the agent's call chain, bounded
/// by the hop timeout (counted from `started`, the start of the hop) once it has to wait.
/// A plugin whose work waits on another thread (a WASM call on a blocking thread) is
/// abandoned there when the timeout fires; plugins bound their own guest code by the same
/// timeout (`PluginContext::call_timeout`), so a running guest stops at it too. By default
/// the message stays in the envelope, lent to the plugin, which replaces it by its output,
/// so that a failure can put it in the dead-letter queue (as it was, or for a transforming
/// plugin as it was left); systems built with `dead_letter_payloads(false)` hand it over (a
/// plugin that only has `execute_json` then needs no copy). Either way, on success
/// `payload` is the output.
pub(super) async fn run_async(
    plugin: &mut dyn AgentPlugin,
    payload: &mut Value,
    keep_payload: bool,
    frame: HopFrame,
) -> RunEnd<()> {
    let HopFrame {
        chain,
        span,
        started,
        hop_timeout,
        id,
    } = frame;
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
    // Pinned where it is built: the wrappers below then hold a pointer to it, and moving
    // them copies a few bytes rather than the whole call's state.
    let scoped = std::pin::pin!(chain.scope(id, call));
    // A disabled span would still cost an enter and an exit per poll: leave it out.
    let run = if span.is_disabled() {
        futures::future::Either::Left(scoped)
    } else {
        futures::future::Either::Right(scoped.instrument(span))
    };
    let mut run = AssertUnwindSafe(run).catch_unwind();
    match futures::poll!(&mut run) {
        std::task::Poll::Ready(caught) => RunEnd::caught(caught),
        std::task::Poll::Pending => match hop_timeout {
            Some(limit) => {
                let left = limit.saturating_sub(clock::since(started));
                match tokio::time::timeout(left, run).await {
                    Ok(caught) => RunEnd::caught(caught),
                    Err(_) => RunEnd::TimedOut(limit),
                }
            }
            None => RunEnd::caught(run.await),
        },
    }
}

/// The call chain of the hop about to be made on `envelope`: empty, or in a durable run, with
/// the hop's journal.
#[inline]
fn hop_chain(envelope: &Envelope, core: &SystemCore) -> CallChain {
    #[cfg(feature = "journal")]
    if let Some(journal) = core.journal() {
        if let Some(recorder) = journal.hop_recorder(envelope) {
            return CallChain::for_hop(recorder);
        }
    }
    let _ = (envelope, core);
    CallChain::default()
}

/// Dead-letters a hop that failed for good; in a durable run once the journal holds it, so
/// that a resume reads its failure back instead of running it, and its calls, again.
#[inline]
fn end_failed_hop(
    core: &Arc<SystemCore>,
    envelope: Envelope,
    reason: DeadLetterReason,
    version: &str,
) {
    #[cfg(feature = "journal")]
    if let Some(journal) = core.journal() {
        return journal.hop_failed(core, envelope, reason, version);
    }
    let _ = version;
    core.dead_letter(envelope, reason);
}
