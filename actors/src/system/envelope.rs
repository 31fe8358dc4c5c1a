//! What travels between agents: the message, the hops so far, and the ticket of the input it
//! belongs to.
//!
//! A [`Ticket`] is created when an input is admitted and completes exactly once, when its last
//! branch ends (a fan-out adds branches). Completing it hands the outcome to whoever is waiting
//! (a `send` caller or the outcome stream of `submit`) and releases the input's admission
//! permit. Every path through the system ends in `Ticket::finish_branch`; that is the
//! conservation law: one input, one outcome.

use crate::clock::{self, Instant};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::core::SystemCore;
use super::outcome::Outcome;
#[cfg(feature = "nats")]
use crate::nats::worker::RemoteHop;

/// Where the final outcome of an input goes.
pub(crate) enum OutcomeSink {
    Reply(oneshot::Sender<Outcome>),
    /// The system's outcome stream (`SystemCore::outcomes`, one sender for all inputs: no
    /// count on the channel bumped per input). The permit travels with the outcome and is
    /// released when the consumer receives it, so an unread outcome stream holds back
    /// admission instead of growing without limit.
    Stream,
}

/// One admitted input.
pub(crate) struct Ticket {
    pub input: u64,
    pub trace_id: u64,
    pub admitted: Instant,
    /// Branches still travelling (1, plus n-1 for every fan-out into n).
    remaining: AtomicUsize,
    /// Whether the input ever fanned out. Until it does, its one branch is the only one that
    /// can finish the ticket, and its outcome skips the `finished` collection.
    fanned_out: AtomicBool,
    finished: Mutex<Vec<Outcome>>,
    sink: Mutex<Option<(OutcomeSink, OwnedSemaphorePermit)>>,
    /// Set for a message taken from NATS: its hop ends in publications, not in this ticket.
    /// Boxed: it is most of a ticket's size (the JetStream message), and every in-process
    /// input allocates a ticket without one.
    #[cfg(feature = "nats")]
    pub remote: Option<Box<RemoteHop>>,
    /// In a durable system (one with a journal): the run's id; its hops, calls and outcome are
    /// journaled under it. `None` otherwise, and nothing is journaled.
    pub run: Option<Arc<str>>,
}

impl Ticket {
    pub(crate) fn new(
        input: u64,
        trace_id: u64,
        sink: OutcomeSink,
        permit: OwnedSemaphorePermit,
        run: Option<Arc<str>>,
    ) -> Arc<Ticket> {
        Arc::new(Self::build(
            input,
            trace_id,
            Some((sink, permit)),
            #[cfg(feature = "nats")]
            None,
            run,
        ))
    }

    /// The ticket of one message taken from NATS by a worker (no local caller waits on it).
    #[cfg(feature = "nats")]
    pub(crate) fn remote(
        input: u64,
        trace_id: u64,
        hop: RemoteHop,
        run: Option<Arc<str>>,
    ) -> Arc<Ticket> {
        Arc::new(Self::build(input, trace_id, None, Some(Box::new(hop)), run))
    }

    /// The ticket of the durable run `run` taken up from its journal: its `finished` branches
    /// ended before the crash, its `remaining` branches are on their way again.
    #[cfg(feature = "journal")]
    pub(crate) fn resumed(
        input: u64,
        trace_id: u64,
        permit: OwnedSemaphorePermit,
        run: Arc<str>,
        remaining: usize,
        fanned_out: bool,
        finished: Vec<Outcome>,
    ) -> Arc<Ticket> {
        let sink = Some((OutcomeSink::Stream, permit));
        Arc::new(Ticket {
            remaining: AtomicUsize::new(remaining),
            fanned_out: AtomicBool::new(fanned_out),
            finished: Mutex::new(finished),
            ..Self::build(
                input,
                trace_id,
                sink,
                #[cfg(feature = "nats")]
                None,
                Some(run),
            )
        })
    }

    fn build(
        input: u64,
        trace_id: u64,
        sink: Option<(OutcomeSink, OwnedSemaphorePermit)>,
        #[cfg(feature = "nats")] remote: Option<Box<RemoteHop>>,
        run: Option<Arc<str>>,
    ) -> Ticket {
        Ticket {
            input,
            trace_id,
            admitted: clock::now(),
            remaining: AtomicUsize::new(1),
            fanned_out: AtomicBool::new(false),
            finished: Mutex::new(Vec::new()),
            sink: Mutex::new(sink),
            #[cfg(feature = "nats")]
            remote,
            run,
        }
    }

    pub(crate) fn trace_id_hex(&self) -> String {
        trace_id_hex(self.trace_id)
    }

    /// Announces `extra` more branches (a fan-out into `extra + 1` targets).
    pub(crate) fn add_branches(&self, extra: usize) {
        // Set by the only branch alive at that moment, before the new branches exist.
        self.fanned_out.store(true, Ordering::Release);
        self.remaining.fetch_add(extra, Ordering::AcqRel);
    }

    /// Records the end of one branch; the last branch completes the ticket.
    pub(crate) fn finish_branch(&self, core: &SystemCore, mut outcome: Outcome) {
        outcome.latency = clock::since(self.admitted);
        if !self.fanned_out.load(Ordering::Acquire) {
            self.remaining.store(0, Ordering::Release);
            return self.complete(core, outcome);
        }
        self.finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(outcome);
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let mut branches =
            std::mem::take(&mut *self.finished.lock().unwrap_or_else(|p| p.into_inner()));
        // Branch outcomes arrive in completion order; report them in a stable order.
        branches.sort_by(|a, b| a.hops.cmp(&b.hops));
        self.complete(
            core,
            Outcome::join(self.input, self.trace_id_hex(), branches),
        );
    }

    /// Completes a resumed run whose every branch had ended before the crash (its outcome
    /// had not been recorded).
    #[cfg(feature = "journal")]
    pub(crate) fn finish_resumed(&self, core: &SystemCore) {
        let mut branches =
            std::mem::take(&mut *self.finished.lock().unwrap_or_else(|p| p.into_inner()));
        if branches.is_empty() {
            // Not from a journal the hop path wrote (every run ends in a branch): say so.
            let error = "the journal of this run holds no branch that ended".to_string();
            let refused = Outcome::refused(self.input, self.trace_id_hex(), error);
            return self.complete(core, refused);
        }
        branches.sort_by(|a, b| a.hops.cmp(&b.hops));
        let outcome = Outcome::join(self.input, self.trace_id_hex(), branches);
        self.complete(
            core,
            Outcome {
                latency: clock::since(self.admitted),
                ..outcome
            },
        );
    }

    /// Hands the input's one outcome to whoever waits for it (in a durable run, once the
    /// journal holds it).
    fn complete(&self, core: &SystemCore, outcome: Outcome) {
        core.record_outcome(&outcome);
        let taken = self.sink.lock().unwrap_or_else(|p| p.into_inner()).take();
        #[cfg(feature = "journal")]
        if let (Some(run_id), Some(journal)) = (&self.run, core.journal()) {
            let outcome = Outcome {
                run_id: Some(String::from(&**run_id)),
                ..outcome
            };
            return journal.record_outcome(outcome, taken, core.outcomes.clone());
        }
        deliver_outcome(taken, outcome, &core.outcomes);
    }
}

/// Hands an input's one outcome to whoever waits for it: its `send` caller, or the outcome
/// stream (with the input's admission permit).
pub(crate) fn deliver_outcome(
    sink: Option<(OutcomeSink, OwnedSemaphorePermit)>,
    outcome: Outcome,
    stream: &tokio::sync::mpsc::UnboundedSender<(Outcome, OwnedSemaphorePermit)>,
) {
    if let Some((sink, permit)) = sink {
        match sink {
            OutcomeSink::Reply(reply) => {
                // A caller that stopped waiting has given the outcome up; it is still
                // counted in the system's totals.
                let _ = reply.send(outcome);
                drop(permit);
            }
            OutcomeSink::Stream => {
                let _ = stream.send((outcome, permit));
            }
        }
    }
}

/// A message on its way to an agent.
pub(crate) struct Envelope {
    pub(crate) payload: serde_json::Value,
    pub(crate) hops: Vec<Arc<str>>,
    /// The product of the fan-out widths on this branch's way (1 before any fan-out): how
    /// many branches the input could end in, were every fork as wide as this branch's. Bounded
    /// by `max_branches` (`SystemCore::widen`).
    pub(crate) breadth: u32,
    pub(crate) ticket: Arc<Ticket>,
    /// In a durable run, the branch this message travels on, as the journal names it: `None`
    /// for the run's first branch (""), "0", "1"... after a fan-out, "0.2" for a fan-out
    /// inside branch 0. Always `None` outside a durable run.
    pub(crate) branch: Option<Arc<str>>,
}

/// A trace id as 16 lowercase hex digits (what `format!("{:016x}")` prints, without the
/// formatting machinery: this runs once per outcome).
pub(crate) fn trace_id_hex(id: u64) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Written into a buffer of their exact length and checked once: pushing them one by one
    // re-checked the string's capacity per digit (docs/benchmarks.md, section "Whole-program
    // optimisation, a cheaper progress hook").
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = DIGITS[((id >> ((15 - i) * 4)) & 0xf) as usize];
    }
    String::from_utf8(digits.to_vec()).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    #[test]
    fn trace_id_hex_matches_the_format_macro() {
        for id in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(super::trace_id_hex(id), format!("{id:016x}"));
        }
    }
}
