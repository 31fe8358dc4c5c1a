//! An `execute` call inside the plugin actor ([`PluginMsg::Execute`](super::PluginMsg)): the
//! plugin runs once on the caller's input, in the caller's call chain, and the caller gets the
//! output or how the call ended ([`CallError`]).
//!
//! The actor does not time calls: the caller does (the manager's execute timeout). A call still
//! pending after its first poll is raced against its caller, so a caller that stopped waiting
//! cancels it; the end is then [`RunEnd::TimedOut`], as for a hop.

use std::panic::AssertUnwindSafe;

use bilayer_plugins::{CallChain, CallError, PluginState};
use futures::FutureExt;
use tokio::sync::oneshot;
use tracing::Instrument;

use std::sync::Arc;
use std::task::Poll;

use super::overlap::{call_on_sibling, first_poll, QueuedCall};
use super::replay::Held;
use super::settle::RunEnd;
use super::PluginActorState;
use crate::clock;

/// Where a call's answer goes.
pub(crate) type CallReply = oneshot::Sender<Result<String, CallError>>;

impl PluginActorState {
    /// Runs the plugin on `input` for the caller waiting on `reply`.
    pub(super) async fn execute(&mut self, input: String, chain: CallChain, mut reply: CallReply) {
        if self.lifecycle != PluginState::Running {
            let _ = reply.send(Err(self.refused("execute", "Running")));
            return;
        }
        // A plugin that overlaps serves the call on a sibling, or queues it while every
        // sibling is busy (overlap.rs).
        if self.overlap.is_full() {
            return self.overlap.queue_call(QueuedCall {
                input,
                chain,
                reply,
            });
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
        // When the plugin overlaps, the call runs on a sibling: polled once here, and moved to
        // a task of its own if it waits (overlap.rs).
        let caught = if let Some(sibling) = self.overlap.sibling(self.plugin.as_ref()) {
            let id = Arc::clone(&self.shared.id);
            let mut run = call_on_sibling(sibling, input, chain, id, span.clone());
            match first_poll(&mut run).await {
                Poll::Ready((sibling, caught)) => {
                    self.overlap.put_back(sibling);
                    Some(caught)
                }
                Poll::Pending => return self.spawn_call(run, reply, retry, started),
            }
        } else {
            let run =
                AssertUnwindSafe(chain.scope(self.shared.id.clone(), self.plugin.execute(input)))
                    .catch_unwind()
                    .instrument(span.clone());
            // Most plugins finish on their first poll (scripts, modules, pure functions): they
            // need no watcher. A plugin still pending after it is raced against its caller: a
            // caller that stopped waiting (its timeout fired) cancels the call, so an async
            // plugin stuck on I/O does not hold the mailbox forever.
            let mut run = std::pin::pin!(run);
            match futures::poll!(run.as_mut()) {
                Poll::Ready(caught) => Some(caught),
                Poll::Pending => tokio::select! {
                    biased;
                    caught = run => Some(caught),
                    _ = reply.closed() => None,
                },
            }
        };
        let elapsed = clock::since(started);
        let end = match caught {
            Some(caught) => RunEnd::caught(caught),
            None => RunEnd::TimedOut(elapsed),
        };
        self.settle(&end, elapsed);
        // Recording into a disabled span still walks tracing's dispatch (and its `log` bridge).
        if !span.is_disabled() {
            span.record("micros", elapsed.as_micros() as u64);
            span.record("outcome", outcome_name(&end));
        }
        let cancelled = matches!(end, RunEnd::TimedOut(_));
        if cancelled {
            // Debug: the caller already has the timeout (an agent's message becomes a dead
            // letter saying so); one warning per timed-out call would flood the log.
            tracing::debug!(plugin = %self.shared.id, ?elapsed, "call cancelled: its caller timed out");
        }
        match end.into_result(&self.shared.id) {
            Err(error) if error.is_plugin_fault() => {
                // A cancelled call has nobody to answer nor to run it again for.
                let failed = if cancelled {
                    None
                } else {
                    Self::failed_call(retry, reply, &error)
                };
                self.after_fault(failed, &error).await;
            }
            answer => {
                let _ = reply.send(answer);
            }
        }
    }

    /// A call that failed with `error`: answered now, or, when it came in on probation
    /// (`retry` holds its input), returned to be held for a replay.
    pub(super) fn failed_call(
        retry: Option<(String, CallChain)>,
        reply: CallReply,
        error: &CallError,
    ) -> Option<Held> {
        match retry {
            Some((input, chain)) => Some(Held::call(input, chain, reply, error.clone())),
            None => {
                let _ = reply.send(Err(error.clone()));
                None
            }
        }
    }
}

/// The `outcome` field of the `plugin.execute` span.
fn outcome_name<T>(end: &RunEnd<T>) -> &'static str {
    match end {
        RunEnd::Done(_) => "ok",
        RunEnd::Failed(_) => "error",
        RunEnd::Panicked(_) => "panic",
        RunEnd::TimedOut(_) => "cancelled",
    }
}
