//! The seam between an agent system's routing and how its messages travel: where an admitted
//! input, a routed output and a dead letter go.
//!
//! The core decides *what* happens to a message after each hop (routing, hop and breadth
//! limits, dead-letter reasons); its [`Carrier`] decides *where* that happens:
//!
//! - [`Carrier::InProcess`]: the agents' inboxes in this process, outcomes on the input's
//!   ticket, dead letters in the system's queue;
//! - `Carrier::Nats` (cargo feature `nats`): JetStream subjects, so that the agents of one
//!   system can be spread over processes (see the `nats` module).
//!
//! Every place that used to ask "is this system on NATS?" asks its carrier instead, so a new
//! one is one variant and its arms. The journal of durable runs is not a carrier but a layer
//! over either (journal/run_journal.rs): a hop's output reaches the carrier once its entry is
//! committed.

use std::sync::Arc;

use serde_json::Value;

#[cfg(feature = "nats")]
use crate::nats::{worker, NatsLink};

use super::core::SystemCore;
use super::dead_letter::DeadLetterReason;
use super::envelope::{Envelope, Ticket};

/// Where a system's messages travel.
pub(crate) enum Carrier {
    /// Every agent is in this process.
    InProcess,
    /// Agents in several processes, over NATS JetStream; messages taken from NATS carry their
    /// JetStream message in their ticket (`Ticket::remote`) and end in publications.
    #[cfg(feature = "nats")]
    Nats(Arc<NatsLink>),
}

impl Carrier {
    /// Takes an admitted input to the entry agent.
    pub(super) async fn admit(
        &self,
        core: &Arc<SystemCore>,
        entry: &str,
        ticket: Arc<Ticket>,
        input: Value,
    ) {
        match self {
            Carrier::InProcess => {
                let envelope = Envelope {
                    payload: input,
                    hops: Vec::with_capacity(4),
                    breadth: 1,
                    ticket,
                    branch: None,
                };
                core.deliver(envelope, entry);
            }
            #[cfg(feature = "nats")]
            Carrier::Nats(link) => link.submit(entry, core, ticket, input).await,
        }
    }

    /// Takes an agent's `output` on, where routing decides.
    #[inline]
    pub(super) fn forward(&self, core: &SystemCore, envelope: Envelope, output: Value) {
        match self {
            #[cfg(feature = "nats")]
            Carrier::Nats(link) if envelope.ticket.remote.is_some() => {
                worker::forward(core, link, envelope, output)
            }
            _ => core.forward_here(envelope, output),
        }
    }

    /// Ends one branch as a dead letter.
    pub(super) fn dead_letter(
        &self,
        core: &SystemCore,
        envelope: Envelope,
        reason: DeadLetterReason,
    ) {
        match self {
            #[cfg(feature = "nats")]
            Carrier::Nats(link) if envelope.ticket.remote.is_some() => {
                worker::dead_letter(core, link, envelope, reason)
            }
            _ => core.dead_letter_here(envelope, reason),
        }
    }

    /// Starts bringing the messages of `agents` (this process's) to them from where they
    /// wait: nothing to do in process; over NATS, one pull consumer per agent.
    pub(super) fn serve(&self, core: &Arc<SystemCore>, agents: &[String]) {
        match self {
            Carrier::InProcess => {
                let _ = (core, agents);
            }
            #[cfg(feature = "nats")]
            Carrier::Nats(link) => {
                for name in agents {
                    let task = tokio::spawn(worker::consume(
                        Arc::clone(link),
                        Arc::downgrade(core),
                        Arc::from(name.as_str()),
                    ));
                    link.tasks
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(task);
                }
            }
        }
    }

    /// Stops taking messages in and lets those already taken finish (over NATS: be
    /// acknowledged).
    pub(super) async fn stop(&self) {
        match self {
            Carrier::InProcess => {}
            #[cfg(feature = "nats")]
            Carrier::Nats(link) => link.stop().await,
        }
    }
}
