//! What travels between agents: the message, the hops so far, and the ticket of the input it
//! belongs to.
//!
//! A [`Ticket`] is created when an input is admitted and completes exactly once, when its last
//! branch ends (a fan-out adds branches). Completing it hands the outcome to whoever is waiting
//! (a `send` caller or the outcome stream of `submit`) and releases the input's admission
//! permit. Every path through the system ends in `Ticket::finish_branch`; that is the
//! conservation law: one input, one outcome.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use super::core::SystemCore;
use super::outcome::Outcome;
use crate::nats::worker::RemoteHop;

/// Where the final outcome of an input goes.
pub(crate) enum OutcomeSink {
    Reply(oneshot::Sender<Outcome>),
    /// The permit travels with the outcome and is released when the consumer receives it, so
    /// an unread outcome stream holds back admission instead of growing without limit.
    Stream(mpsc::UnboundedSender<(Outcome, OwnedSemaphorePermit)>),
}

/// One admitted input.
pub(crate) struct Ticket {
    pub input: u64,
    pub trace_id: u64,
    pub admitted: Instant,
    pub core: Arc<SystemCore>,
    /// Branches still travelling (1, plus n-1 for every fan-out into n).
    remaining: AtomicUsize,
    finished: Mutex<Vec<Outcome>>,
    sink: Mutex<Option<(OutcomeSink, OwnedSemaphorePermit)>>,
    /// Set for a message taken from NATS: its hop ends in publications, not in this ticket.
    pub remote: Option<RemoteHop>,
}

impl Ticket {
    pub fn new(
        input: u64,
        trace_id: u64,
        core: Arc<SystemCore>,
        sink: OutcomeSink,
        permit: OwnedSemaphorePermit,
    ) -> Arc<Ticket> {
        Self::build(input, trace_id, core, Some((sink, permit)), None)
    }

    /// The ticket of one message taken from NATS by a worker (no local caller waits on it).
    pub fn remote(input: u64, trace_id: u64, core: Arc<SystemCore>, hop: RemoteHop) -> Arc<Ticket> {
        Self::build(input, trace_id, core, None, Some(hop))
    }

    fn build(
        input: u64,
        trace_id: u64,
        core: Arc<SystemCore>,
        sink: Option<(OutcomeSink, OwnedSemaphorePermit)>,
        remote: Option<RemoteHop>,
    ) -> Arc<Ticket> {
        Arc::new(Ticket {
            input,
            trace_id,
            admitted: Instant::now(),
            core,
            remaining: AtomicUsize::new(1),
            // A remote hop's outcome is published, never collected here.
            finished: Mutex::new(if remote.is_some() {
                Vec::new()
            } else {
                Vec::with_capacity(1)
            }),
            sink: Mutex::new(sink),
            remote,
        })
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:016x}", self.trace_id)
    }

    /// Announces `extra` more branches (a fan-out into `extra + 1` targets).
    pub fn add_branches(&self, extra: usize) {
        self.remaining.fetch_add(extra, Ordering::AcqRel);
    }

    /// Records the end of one branch; the last branch completes the ticket.
    pub fn finish_branch(&self, mut outcome: Outcome) {
        outcome.latency = self.admitted.elapsed();
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
        let outcome = Outcome::join(self.input, self.trace_id_hex(), branches);
        self.core.record_outcome(&outcome);
        let taken = self.sink.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((sink, permit)) = taken {
            match sink {
                OutcomeSink::Reply(reply) => {
                    // A caller that stopped waiting has given the outcome up; it is still
                    // counted in the system's totals above.
                    let _ = reply.send(outcome);
                    drop(permit);
                }
                OutcomeSink::Stream(stream) => {
                    let _ = stream.send((outcome, permit));
                }
            }
        }
    }
}

/// A message on its way to an agent.
pub struct Envelope {
    pub(crate) payload: serde_json::Value,
    pub(crate) hops: Vec<Arc<str>>,
    pub(crate) ticket: Arc<Ticket>,
}
