//! The messages a new version failed while on probation, held for its verdict: if it is rolled
//! back they are run again on the version rolled back to, so a bad save costs no message; if
//! not, each is answered with its failure, as it would have been at once.
//!
//! Why hold them: a version is only known to be bad at its fault past `max_failures`, and by
//! then it has failed `max_failures` messages. Held, those messages can still get a good answer.
//! The hold is bounded twice: at most `max_failures` messages per probation (the one past it
//! rolls the version back and is run again at once), and each for at most the policy's
//! `replay_hold` (a timer, [`PluginMsg::ReviewProbation`], answers it when that runs out), never
//! past the failure window. In a runtime without timers nothing is held.
//!
//! Every failed message gets exactly one answer: a [`Held`] that is dropped (hold over, window
//! over, another version swapped in, a rollback that failed, the actor gone) answers with its
//! failure (a caller's error, or the dead letter the hop would have had); one taken out for a
//! re-run is answered by that run like any message. Outside probation nothing is held and the
//! hot path only tests whether a probation is running.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bilayer_plugins::{CallChain, CallError};
use serde_json::Value;

use super::{CallReply, PluginActorState, PluginMsg};
use crate::system::{DeadLetterReason, Envelope, SystemCore};

/// A message that failed on a version on probation, with what it takes to run it again.
enum Failed {
    /// An `execute` call: its input and call chain, its caller, and the error it got.
    Call {
        input: String,
        chain: CallChain,
        reply: CallReply,
        error: CallError,
    },
    /// An agent hop: the envelope as it would be dead-lettered, the message as it came in (a
    /// plugin may have changed it in place before failing), its system, and the dead-letter
    /// reason.
    Hop {
        envelope: Envelope,
        input: Value,
        core: Arc<SystemCore>,
        reason: DeadLetterReason,
    },
}

impl Failed {
    /// Answers the message with the failure it had.
    fn answer_with_failure(self) {
        match self {
            Failed::Call { reply, error, .. } => {
                let _ = reply.send(Err(error));
            }
            Failed::Hop {
                envelope,
                core,
                reason,
                ..
            } => core.dead_letter(envelope, reason),
        }
    }
}

/// A failed message waiting for its probation's verdict, until `until` at the latest. Dropped,
/// it answers with its failure: from the moment it failed, no path can lose it.
pub(super) struct Held {
    failed: Option<Failed>,
    until: Instant,
}

impl Held {
    /// An `execute` call that failed with `error`.
    pub(super) fn call(
        input: String,
        chain: CallChain,
        reply: CallReply,
        error: CallError,
    ) -> Self {
        Self::new(Failed::Call {
            input,
            chain,
            reply,
            error,
        })
    }

    /// An agent hop that failed: `envelope` as it would be dead-lettered with `reason`, and
    /// `input`, the message as it came in.
    pub(super) fn hop(
        envelope: Envelope,
        input: Value,
        core: Arc<SystemCore>,
        reason: DeadLetterReason,
    ) -> Self {
        Self::new(Failed::Hop {
            envelope,
            input,
            core,
            reason,
        })
    }

    fn new(failed: Failed) -> Self {
        Self {
            failed: Some(failed),
            until: Instant::now(),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(failed) = self.failed.take() {
            failed.answer_with_failure();
        }
    }
}

impl PluginActorState {
    /// Keeps `held` until the probation's verdict, for at most the policy's hold (and never
    /// past the window). Without a probation, with no hold, or without a timer to end the hold,
    /// it is answered at once.
    pub(super) fn hold(&mut self, mut held: Held) {
        let Some(probation) = self.probation.as_ref() else {
            return drop(held);
        };
        let hold = probation.policy.replay_hold.min(
            probation
                .policy
                .window
                .saturating_sub(probation.since.elapsed()),
        );
        // The first held message arms the timer; each review re-arms it for the next one.
        let first = probation.held.is_empty();
        if hold.is_zero() || (first && !self.review_after(hold)) {
            return drop(held);
        }
        held.until = Instant::now() + hold;
        if let Some(probation) = self.probation.as_mut() {
            probation.held.push_back(held);
        }
    }

    /// Ends a probation whose window has passed (its version is the known-good one now; what
    /// it still holds is answered with its failures), and answers the held messages whose hold
    /// ran out. Sent by timers: a review with nothing to do is harmless.
    pub(super) fn review_probation(&mut self) {
        let Some(probation) = self.probation.as_mut() else {
            return;
        };
        if probation.is_over() {
            self.probation = None;
            return;
        }
        let now = Instant::now();
        while probation.held.front().is_some_and(|held| held.until <= now) {
            probation.held.pop_front();
        }
        if let Some(next) = probation.held.front() {
            let wait = next.until.saturating_duration_since(now);
            // Armed for the first of them, so the runtime has timers.
            let _armed = self.review_after(wait);
        }
    }

    /// Asks for a [`review_probation`](Self::review_probation) after `wait`. False when the
    /// runtime has no timers (built without `enable_time`): then nothing may be held, and a
    /// probation ends when a fault or a swap finds its window over.
    pub(super) fn review_after(&self, wait: Duration) -> bool {
        // tokio panics building a timer in a runtime without a time driver.
        let Ok(timer) = std::panic::catch_unwind(|| tokio::time::sleep(wait)) else {
            return false;
        };
        let myself = self.myself.clone();
        // Detached: the task ends with its one message (which a stopped actor refuses).
        tokio::spawn(async move {
            timer.await;
            let _ = myself.send_message(PluginMsg::ReviewProbation);
        });
        true
    }

    /// Runs the held messages again, in the order they failed, on the version now serving (the
    /// one rolled back to, no longer on probation: a failure now is answered as any other).
    /// Boxed: a run that fails can itself reach a rollback, which replays.
    pub(super) fn replay(
        &mut self,
        held: VecDeque<Held>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            for mut held in held {
                match held.failed.take() {
                    // A caller that stopped waiting (its timeout) has had its answer.
                    Some(Failed::Call {
                        input,
                        chain,
                        reply,
                        ..
                    }) if !reply.is_closed() => self.execute(input, chain, reply).await,
                    Some(Failed::Hop {
                        mut envelope,
                        input,
                        core,
                        ..
                    }) => {
                        envelope.payload = input;
                        self.serve_hop(envelope, None, &core).await;
                    }
                    Some(Failed::Call { .. }) | None => {}
                }
            }
        })
    }
}
