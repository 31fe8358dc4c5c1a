//! Serving several calls and hops of one plugin at once, so that a wait (a model, a database,
//! another plugin) costs the wait and not the agent.
//!
//! The actor stays the plugin's one home: its mailbox still orders lifecycle steps, swaps and
//! restarts, and the plugin instance it holds (the *primary*) still answers at once what it
//! can (`execute_json_in_place_now`: native functions, bounded scripts), one message after
//! another as before. Any other run goes to a *sibling*
//! ([`AgentPlugin::concurrent_instance`]: a handle sharing the compiled script or module, the
//! client or the pool) in a future that owns it, polled once right here with blocking work
//! handed to the blocking pool ([`HandOffBlocking`]). A run that answers on that poll is done,
//! in order, like a run of the primary; one that waits moves to a task of its own, and the
//! actor takes the next message meanwhile. When the task ends it sends the sibling back with
//! how the run ended ([`PluginMsg::Returned`]), and the actor settles it exactly as it
//! settles a run of the primary (statistics, metrics, routing, dead letters, probation,
//! supervision), so nothing downstream knows which instance served.
//!
//! At most `limit` siblings run at once (`PluginOptions::concurrency`, 32 by default). Past
//! it, hops wait in the agent's inbox (the turn stops and the next return resumes it) and
//! calls wait in a queue here: none fails for want of a slot. With `order_by`, messages whose
//! key field is equal run one at a time in arrival order (the later ones wait here until the
//! earlier returns), while other keys overlap. Siblings are kept for reuse, and dropped when
//! the primary changes (a swap, a restart, a lifecycle step): a sibling always serves the
//! version the primary served when it was taken. A version swapped out while siblings of it
//! still run is torn down only when the last of them returns, so they finish on it.
//!
//! A run whose return cannot reach the actor (it was stopped or killed meanwhile) ends where
//! it is: the hop is dead-lettered as one that found its agent stopped, the call answered.
//! The same happens to a return that is dropped unread from a closing mailbox: [`Returned`]'s
//! drop does it. Nothing a sibling took is lost.
//!
//! [`AgentPlugin::concurrent_instance`]: bilayer_plugins::AgentPlugin::concurrent_instance
//! [`PluginMsg::Returned`]: super::PluginMsg::Returned

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bilayer_plugins::{
    AgentPlugin, CallChain, CallError, HandOffBlocking, PluginError, PluginResult, PluginState,
};
use futures::FutureExt;
use rustc_hash::FxHashMap;
use serde_json::Value;
use tracing::Instrument;

use super::call::CallReply;
use super::hop::HopFrame;
use super::settle::RunEnd;
use super::{PluginActorState, PluginMsg};
use crate::clock;
use crate::system::{DeadLetterReason, Envelope, SystemCore};

/// Calls and hops a plugin serves at once unless its registration says otherwise
/// (`PluginOptions::concurrency`; `concurrency = N` on an agent of a system definition,
/// `max_concurrency = N` on a support plugin). Only plugins that can make siblings
/// ([`AgentPlugin::concurrent_instance`]) overlap, and only runs that wait; `1` serves one
/// message at a time, in order.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// Calls a support plugin of an agent system (`AgentSystemBuilder::plugin`, `[[plugins]]` in a
/// definition) serves at once unless its options say otherwise. Several agents call one such
/// plugin, each up to its own concurrency: a limit below their sum would queue their calls
/// inside `call_plugin`, where a script's wait counts towards its `timeout_ms`. 128 covers four
/// agents at [`DEFAULT_CONCURRENCY`]; a model's rate limit is the reason to set it lower.
pub const DEFAULT_SUPPORT_CONCURRENCY: usize = 128;

/// The actor's bookkeeping of the runs on siblings.
pub(super) struct Overlap {
    /// Runs allowed on siblings at once; 1 turns overlapping off.
    limit: usize,
    /// The top-level field whose equal values are served one at a time.
    order_by: Option<Arc<str>>,
    /// Runs on siblings now, per generation of the primary they were taken from.
    running_by_generation: Vec<(u64, usize)>,
    /// Siblings of the current generation, idle, kept for the next runs.
    idle: Vec<Box<dyn AgentPlugin>>,
    /// Bumped whenever the primary changes; a returning sibling of an older one is dropped.
    generation: u64,
    /// Whether the primary makes siblings (asked once per generation).
    forkable: Option<bool>,
    /// Calls that found every slot taken, served in arrival order as slots free up.
    queued_calls: VecDeque<QueuedCall>,
    /// `order_by` keys with a hop running on a sibling, each with the messages waiting for it.
    keys: FxHashMap<String, VecDeque<Envelope>>,
    /// Generations rolled back while siblings of them ran (the last few; see `returned`).
    rolled_back: VecDeque<u64>,
    /// Primaries replaced while siblings taken from them still ran: torn down when the last of
    /// them returns, so that those runs finish on the version that took them.
    retiring: Vec<Retiring>,
}

/// A replaced primary, kept until the runs taken from it have returned.
struct Retiring {
    generation: u64,
    plugin: Box<dyn AgentPlugin>,
    /// The lifecycle state it was in, for tearing it down.
    state: PluginState,
}

/// A call waiting for a slot.
pub(super) struct QueuedCall {
    pub(super) input: String,
    pub(super) chain: CallChain,
    pub(super) reply: CallReply,
}

impl Overlap {
    pub(super) fn new(limit: usize, order_by: Option<Arc<str>>) -> Self {
        Self {
            limit: limit.max(1),
            order_by,
            running_by_generation: Vec::new(),
            idle: Vec::new(),
            generation: 0,
            forkable: None,
            queued_calls: VecDeque::new(),
            keys: FxHashMap::default(),
            rolled_back: VecDeque::new(),
            retiring: Vec::new(),
        }
    }

    /// Whether every slot is taken: the next waiting run must wait for a return.
    #[inline]
    pub(super) fn is_full(&self) -> bool {
        self.running() >= self.limit
    }

    /// Runs on siblings now (rarely more than one generation's: a short sum).
    fn running(&self) -> usize {
        self.running_by_generation.iter().map(|(_, n)| n).sum()
    }

    /// The key a message is ordered by, when the plugin overlaps and orders by a field: the
    /// field's JSON text (so `"1"` and `1` differ), `null` when it is missing.
    #[inline]
    pub(super) fn key_of(&self, payload: &Value) -> Option<String> {
        let field = self.order_by.as_deref()?;
        if self.limit == 1 {
            return None;
        }
        Some(match payload.get(field) {
            Some(Value::String(text)) => format!("\"{text}\""),
            Some(value) => value.to_string(),
            None => "null".to_string(),
        })
    }

    /// Holds `envelope` back when a hop of its key runs now; gives it back otherwise.
    pub(super) fn hold_if_busy(&mut self, key: &str, envelope: Envelope) -> Option<Envelope> {
        match self.keys.get_mut(key) {
            Some(waiting) => {
                waiting.push_back(envelope);
                None
            }
            None => Some(envelope),
        }
    }

    /// A sibling to run on, when overlapping is on, a slot is free and the primary makes
    /// siblings.
    pub(super) fn sibling(&mut self, primary: &dyn AgentPlugin) -> Option<Box<dyn AgentPlugin>> {
        if self.limit == 1 || self.is_full() || self.forkable == Some(false) {
            return None;
        }
        if let Some(sibling) = self.idle.pop() {
            return Some(sibling);
        }
        let sibling = primary.concurrent_instance();
        self.forkable = Some(sibling.is_some());
        sibling
    }

    /// Keeps an idle sibling for the next run (a run answered on its first poll gives its
    /// sibling back at once).
    pub(super) fn put_back(&mut self, sibling: Box<dyn AgentPlugin>) {
        if self.idle.len() < self.limit {
            self.idle.push(sibling);
        }
    }

    /// Counts a run taken by a sibling (and its key as busy); the generation to return with.
    fn start(&mut self, key: Option<String>) -> u64 {
        match self
            .running_by_generation
            .iter_mut()
            .find(|(generation, _)| *generation == self.generation)
        {
            Some((_, count)) => *count += 1,
            None => self.running_by_generation.push((self.generation, 1)),
        }
        if let Some(key) = key {
            self.keys.entry(key).or_default();
        }
        self.generation
    }

    /// Counts a run returned; keeps its sibling if it is of the current generation (and the
    /// primary is serving). The primary retired from the run's generation, if this was its
    /// last run, is returned for tearing down.
    fn finish(
        &mut self,
        generation: u64,
        sibling: Option<Box<dyn AgentPlugin>>,
        serving: bool,
    ) -> Option<(Box<dyn AgentPlugin>, PluginState)> {
        if let Some(sibling) = sibling.filter(|_| generation == self.generation && serving) {
            self.put_back(sibling);
        }
        let position = self
            .running_by_generation
            .iter()
            .position(|(g, _)| *g == generation)?;
        let count = &mut self.running_by_generation[position].1;
        *count -= 1;
        if *count > 0 {
            return None;
        }
        self.running_by_generation.swap_remove(position);
        let retired = self
            .retiring
            .iter()
            .position(|retiring| retiring.generation == generation)?;
        let retired = self.retiring.swap_remove(retired);
        Some((retired.plugin, retired.state))
    }

    /// The messages that waited behind `key`'s hop, which has returned: to be served again
    /// from the front, in their order (the first takes the key; the others wait behind it).
    fn release(&mut self, key: &str) -> VecDeque<Envelope> {
        self.keys.remove(key).unwrap_or_default()
    }

    /// The primary changes (swapped, rolled back, restarted, or leaving `Running`): siblings
    /// taken from now on come from the new one.
    pub(super) fn renew(&mut self) {
        self.generation += 1;
        self.idle.clear();
        self.forkable = None;
    }

    /// Whether siblings of the current generation are running: the primary cannot be torn
    /// down under them.
    pub(super) fn current_generation_running(&self) -> bool {
        self.running_by_generation
            .iter()
            .any(|(generation, _)| *generation == self.generation)
    }

    /// Keeps `primary`, being replaced, until the runs taken from it have returned. Call
    /// before [`renew`](Self::renew).
    pub(super) fn retire(&mut self, primary: Box<dyn AgentPlugin>, state: PluginState) {
        self.retiring.push(Retiring {
            generation: self.generation,
            plugin: primary,
            state,
        });
    }

    /// The current generation is being rolled back: faults of its siblings still running are
    /// run again when they return. Call before the rollback renews the generation.
    pub(super) fn mark_rolled_back(&mut self) {
        if self.current_generation_running() {
            if self.rolled_back.len() == 8 {
                self.rolled_back.pop_front();
            }
            self.rolled_back.push_back(self.generation);
        }
    }

    fn was_rolled_back(&self, generation: u64) -> bool {
        self.rolled_back.contains(&generation)
    }

    /// Drops the pending releases without running them (a rollback brings back the version
    /// they would release).
    pub(super) fn forget_retiring(&mut self) {
        self.retiring.clear();
    }

    pub(super) fn queue_call(&mut self, call: QueuedCall) {
        self.queued_calls.push_back(call);
    }

    pub(super) fn next_queued_call(&mut self) -> Option<QueuedCall> {
        if self.is_full() {
            return None;
        }
        self.queued_calls.pop_front()
    }

    pub(super) fn take_queued_calls(&mut self) -> Vec<QueuedCall> {
        self.queued_calls.drain(..).collect()
    }

    /// The hops held behind `order_by` keys, for an actor that stops.
    pub(super) fn take_held_hops(&mut self) -> Vec<Envelope> {
        self.keys.drain().flat_map(|(_, waiting)| waiting).collect()
    }
}

/// A run on a sibling that has ended, sent back to the actor ([`PluginMsg::Returned`]). Its
/// drop ends what it carries if the actor never reads it.
///
/// [`PluginMsg::Returned`]: super::PluginMsg::Returned
pub(crate) struct Returned(Option<Run>);

/// What a returning run carries.
struct Run {
    /// The sibling, unless its run was dropped (a call whose caller stopped waiting).
    sibling: Option<Box<dyn AgentPlugin>>,
    generation: u64,
    elapsed: Duration,
    id: Arc<str>,
    kind: RunKind,
}

enum RunKind {
    /// An agent hop: its message (on success the output), how it ended, the message as it
    /// came in when the version was on probation, its `order_by` key, and its system.
    Hop {
        envelope: Envelope,
        end: RunEnd<()>,
        retry: Option<Value>,
        keep_payload: bool,
        key: Option<String>,
        core: Arc<SystemCore>,
    },
    /// An `execute` call: how it ended, and the caller when the actor must still answer it
    /// (a fault on probation, to be held for a replay).
    Call {
        end: RunEnd<()>,
        error: Option<CallError>,
        pending: Option<(CallReply, String, CallChain)>,
        cancelled: bool,
    },
}

impl Drop for Returned {
    fn drop(&mut self) {
        let Some(run) = self.0.take() else { return };
        match run.kind {
            RunKind::Hop { envelope, core, .. } => {
                core.dead_letter(envelope, DeadLetterReason::not_running(&run.id, "stopped"));
            }
            RunKind::Call { pending, error, .. } => {
                if let (Some((reply, ..)), Some(error)) = (pending, error) {
                    let _ = reply.send(Err(error));
                }
            }
        }
    }
}

/// A hop on a sibling that owns all it needs, so that it can move to a task of its own after
/// its first poll: it gives back the sibling, the message (on success the output) and the end.
pub(super) type HopRun =
    Pin<Box<dyn Future<Output = (Box<dyn AgentPlugin>, Envelope, RunEnd<()>)> + Send>>;

/// An `execute` call on a sibling, owning all it needs (see [`HopRun`]).
pub(super) type CallRun = Pin<
    Box<
        dyn Future<
                Output = (
                    Box<dyn AgentPlugin>,
                    std::thread::Result<PluginResult<String>>,
                ),
            > + Send,
    >,
>;

/// `envelope`'s hop on `sibling`, run as the actor runs one on its own instance
/// ([`run_async`](super::hop::run_async)).
pub(super) fn hop_on_sibling(
    mut sibling: Box<dyn AgentPlugin>,
    mut envelope: Envelope,
    keep_payload: bool,
    frame: HopFrame,
) -> HopRun {
    Box::pin(async move {
        let end =
            super::hop::run_async(sibling.as_mut(), &mut envelope.payload, keep_payload, frame)
                .await;
        (sibling, envelope, end)
    })
}

/// An `execute` call of `input` on `sibling`, in the caller's `chain`, panics caught.
pub(super) fn call_on_sibling(
    mut sibling: Box<dyn AgentPlugin>,
    input: String,
    chain: CallChain,
    id: Arc<str>,
    span: tracing::Span,
) -> CallRun {
    Box::pin(async move {
        let caught = AssertUnwindSafe(chain.scope(id, sibling.execute(input)))
            .catch_unwind()
            .instrument(span)
            .await;
        (sibling, caught)
    })
}

/// Polls a run on a sibling once, on this thread, with blocking work handed to the blocking
/// pool ([`HandOffBlocking`]): `Ready` when it answered at once (it then took no slot),
/// `Pending` when it waits and must move to a task.
pub(super) async fn first_poll<F: Future + Unpin>(run: &mut F) -> Poll<F::Output> {
    let _hand_off = HandOffBlocking::enter();
    futures::poll!(run)
}

/// What a hop task returns with besides its sibling and message.
pub(super) struct HopTask {
    pub(super) retry: Option<Value>,
    pub(super) keep_payload: bool,
    pub(super) key: Option<String>,
    pub(super) started: clock::Instant,
}

impl PluginActorState {
    /// Moves a hop that waits (`run`, polled once) to a task of its own; the actor goes on
    /// with the next message, and settles this one when it returns.
    pub(super) fn spawn_hop(&mut self, run: HopRun, task: HopTask, core: &Arc<SystemCore>) {
        let generation = self.overlap.start(task.key.clone());
        self.metrics.in_flight.increment(1.0);
        self.agent_metrics().in_flight.increment(1.0);
        let id = Arc::clone(&self.shared.id);
        let myself = self.myself.clone();
        let core = Arc::clone(core);
        tokio::spawn(async move {
            let (sibling, envelope, end) = run.await;
            let run = Run {
                sibling: Some(sibling),
                generation,
                elapsed: clock::since(task.started),
                id,
                kind: RunKind::Hop {
                    envelope,
                    end,
                    retry: task.retry,
                    keep_payload: task.keep_payload,
                    key: task.key,
                    core,
                },
            };
            // A refused send hands the return back, whose drop ends the hop.
            let _ = myself.send_message(PluginMsg::Returned(Returned(Some(run))));
        });
    }

    /// Moves a call that waits (`run`, polled once) to a task of its own, raced against its
    /// caller as a call of the primary is. The caller is answered from the task, unless the
    /// version is on probation (`retry` holds the input and chain) and the call failed by its
    /// fault: the actor then holds it for a replay.
    pub(super) fn spawn_call(
        &mut self,
        mut run: CallRun,
        mut reply: CallReply,
        retry: Option<(String, CallChain)>,
        started: clock::Instant,
    ) {
        let generation = self.overlap.start(None);
        self.metrics.in_flight.increment(1.0);
        // Counted down here, before the caller is answered: an answered caller may start its
        // next call before the actor reads this one's return.
        let in_flight = self.metrics.in_flight.clone();
        let id = Arc::clone(&self.shared.id);
        let myself = self.myself.clone();
        tokio::spawn(async move {
            let caught = tokio::select! {
                biased;
                (sibling, caught) = &mut run => Some((sibling, caught)),
                _ = reply.closed() => None,
            };
            drop(run);
            let elapsed = clock::since(started);
            let cancelled = caught.is_none();
            let (sibling, end, output) = match caught {
                Some((sibling, caught)) => {
                    let (end, output) = RunEnd::caught(caught).take_output();
                    (Some(sibling), end, output)
                }
                None => (None, RunEnd::TimedOut(elapsed), None),
            };
            in_flight.decrement(1.0);
            let error = end.error(&id);
            let fault = error.as_ref().is_some_and(CallError::is_plugin_fault);
            let pending = match retry {
                Some((input, chain)) if fault && !cancelled => Some((reply, input, chain)),
                _ => {
                    if !cancelled {
                        let answer = match (output, &error) {
                            (Some(output), _) => Ok(output),
                            (None, Some(error)) => Err(error.clone()),
                            (None, None) => Err(CallError::Plugin(PluginError::execution(
                                "the call ended without an output or an error",
                            ))),
                        };
                        let _ = reply.send(answer);
                    }
                    None
                }
            };
            let run = Run {
                sibling,
                generation,
                elapsed,
                id,
                kind: RunKind::Call {
                    end,
                    error,
                    pending,
                    cancelled,
                },
            };
            let _ = myself.send_message(PluginMsg::Returned(Returned(Some(run))));
        });
    }

    /// A run on a sibling has returned: settled like a run of the primary, then the slot it
    /// freed goes to a queued call or to the inbox.
    pub(super) async fn returned(&mut self, mut returned: Returned) {
        let Some(run) = returned.0.take() else { return };
        let serving = self.lifecycle == PluginState::Running;
        let current = run.generation == self.overlap.generation;
        // A fault of a version rolled back since is run again on the version now serving, as
        // the rollback runs the faults it held (replay.rs).
        let replay = !current && self.overlap.was_rolled_back(run.generation);
        if let Some((mut retired, state)) =
            self.overlap.finish(run.generation, run.sibling, serving)
        {
            super::swap::tear_down(&run.id, retired.as_mut(), state).await;
        }
        match run.kind {
            RunKind::Hop {
                mut envelope,
                end,
                retry,
                keep_payload,
                key,
                core,
            } => {
                self.metrics.in_flight.decrement(1.0);
                self.agent_metrics().in_flight.decrement(1.0);
                if let Some(key) = key {
                    let waiting = self.overlap.release(&key);
                    for envelope in waiting.into_iter().rev() {
                        self.batch.push_front(envelope);
                    }
                }
                match retry {
                    Some(input) if replay && is_fault(&end) => {
                        self.settle(&end, run.elapsed);
                        envelope.payload = input;
                        self.serve_hop(envelope, None, &core).await;
                    }
                    // A run of a version since replaced otherwise is not that version's to
                    // answer for (no probation, no supervisor): it is counted and routed.
                    retry => {
                        let retry = if current { retry } else { None };
                        let elapsed = run.elapsed;
                        if let Some((envelope, error)) =
                            self.conclude_hop(envelope, end, elapsed, keep_payload, &core)
                        {
                            self.hop_failed(envelope, error, retry, &core, current)
                                .await;
                        }
                    }
                }
            }
            RunKind::Call {
                end,
                error,
                pending,
                cancelled,
            } => {
                self.settle(&end, run.elapsed);
                if cancelled {
                    tracing::debug!(plugin = %self.shared.id, elapsed = ?run.elapsed, "call cancelled: its caller timed out");
                }
                if let Some(error) = error.filter(CallError::is_plugin_fault) {
                    let failed = match pending {
                        Some((reply, input, chain)) if current => {
                            Self::failed_call(Some((input, chain)), reply, &error)
                        }
                        Some((reply, input, chain)) if replay => {
                            self.execute(input, chain, reply).await;
                            None
                        }
                        Some((reply, ..)) => {
                            let _ = reply.send(Err(error.clone()));
                            None
                        }
                        None => None,
                    };
                    if current {
                        self.after_fault(failed, &error).await;
                    }
                }
            }
        }
        self.resume().await;
    }

    /// After a slot was freed: queued calls first (they hold no place in any inbox), then the
    /// inbox, whose turn stopped when the slots ran out.
    async fn resume(&mut self) {
        while let Some(call) = self.overlap.next_queued_call() {
            self.execute(call.input, call.chain, call.reply).await;
        }
        if !self.batch.is_empty() && !self.overlap.is_full() {
            if let Some(inbox) = &self.inbox {
                let _ = self
                    .myself
                    .send_message(PluginMsg::Drain(Arc::clone(inbox)));
            }
        }
    }
}

/// Whether a run ended by the plugin's fault (what probation holds for a replay).
fn is_fault(end: &RunEnd<()>) -> bool {
    match end {
        RunEnd::Done(()) => false,
        RunEnd::Failed(error) => error.is_plugin_fault(),
        RunEnd::Panicked(_) | RunEnd::TimedOut(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Overlap;

    #[test]
    fn order_by_keys_tell_a_string_from_a_number_and_missing_from_nothing() {
        let overlap = Overlap::new(8, Some("customer".into()));
        assert_eq!(
            overlap.key_of(&json!({"customer": "1"})).as_deref(),
            Some("\"1\"")
        );
        assert_eq!(
            overlap.key_of(&json!({"customer": 1})).as_deref(),
            Some("1")
        );
        assert_eq!(
            overlap.key_of(&json!({"other": 1})).as_deref(),
            Some("null")
        );
        assert_eq!(overlap.key_of(&json!("not a map")).as_deref(), Some("null"));
    }

    #[test]
    fn without_order_by_or_at_a_concurrency_of_one_there_is_no_key() {
        assert_eq!(Overlap::new(8, None).key_of(&json!({"customer": 1})), None);
        let serial = Overlap::new(1, Some("customer".into()));
        assert_eq!(serial.key_of(&json!({"customer": 1})), None);
        assert!(!serial.is_full(), "one at a time never waits for a slot");
    }
}
