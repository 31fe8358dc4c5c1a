//! An agent's inbox: the routed messages waiting for one agent, served in batches.
//!
//! Sending every routed message through the actor's mailbox costs a boxed message, a channel
//! send, a task wake-up and a poll of ractor's processing loop (which moves the handler's
//! future) per message: about half of W1's time with native agents. Routed messages go to the
//! agent's inbox instead, and the actor's mailbox receives one [`PluginMsg::Drain`] when the
//! inbox goes from idle to busy. The actor then serves the waiting messages one after another,
//! at most [`MAX_PER_TURN`] per mailbox turn, so lifecycle steps, swaps and restarts queued in
//! the mailbox still come through between turns.
//!
//! The invariant: whenever messages wait, a `Drain` is in the mailbox or being handled. A push
//! that finds the `scheduled` flag false sets it and sends a `Drain`; the actor clears it only
//! when it finds the inbox empty, under the same lock, so a message pushed at any moment is
//! either seen by the running turn or schedules the next one. (An extra `Drain` finds nothing
//! and is harmless.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use bilayer_plugins::{PluginError, PluginResult};
use ractor::ActorRef;
use tokio::sync::oneshot;

use super::core::SystemCore;
use super::envelope::Envelope;
use crate::plugin_actor::PluginMsg;

/// Messages one `Drain` serves before the actor goes back to its mailbox.
pub(crate) const MAX_PER_TURN: usize = 128;

/// The address of an agent of this process: its actor and its inbox.
pub(crate) struct AgentAddress {
    pub actor: ActorRef<PluginMsg>,
    pub inbox: Arc<Inbox>,
}

pub(crate) struct Inbox {
    queue: Mutex<Queue>,
    /// The system the agent serves, which holds this inbox in its agent table (hence weak).
    /// The actor takes a strong reference for each turn.
    core: Weak<SystemCore>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Envelope>,
    scheduled: bool,
}

impl Inbox {
    pub(crate) fn new(core: Weak<SystemCore>) -> Self {
        Self {
            queue: Mutex::default(),
            core,
        }
    }

    /// The system this inbox belongs to, while it exists.
    pub(crate) fn core(&self) -> Option<Arc<SystemCore>> {
        self.core.upgrade()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a message; `true` when the caller must send the actor a `Drain`.
    fn push(&self, envelope: Envelope) -> bool {
        let mut queue = self.queue();
        queue.waiting.push_back(envelope);
        !std::mem::replace(&mut queue.scheduled, true)
    }

    /// Moves up to `max` waiting messages into `batch`. Finding none ends the turn: the inbox
    /// is idle again and the next push schedules a new `Drain`.
    pub(crate) fn take(&self, max: usize, batch: &mut VecDeque<Envelope>) {
        let mut queue = self.queue();
        let n = queue.waiting.len().min(max);
        if n == 0 {
            queue.scheduled = false;
        }
        batch.extend(queue.waiting.drain(..n));
    }

    /// Empties the inbox of an agent whose actor is gone.
    pub(crate) fn take_all(&self) -> Vec<Envelope> {
        let mut queue = self.queue();
        queue.scheduled = false;
        queue.waiting.drain(..).collect()
    }
}

impl AgentAddress {
    /// Tells the actor which inbox is its own, and waits until it knows, so that no message
    /// can arrive in an inbox whose actor would not empty it on stopping (see
    /// `PluginActor::post_stop`).
    pub(crate) async fn introduce(&self, agent: &str) -> PluginResult<()> {
        let (reply, introduced) = oneshot::channel();
        let gone = || PluginError::execution(format!("agent `{agent}` stopped while starting"));
        self.actor
            .send_message(PluginMsg::Introduce {
                inbox: Arc::clone(&self.inbox),
                reply,
            })
            .map_err(|_| gone())?;
        introduced.await.map_err(|_| gone())
    }

    /// Queues `envelope` for the agent. `Err` returns the messages that can no longer reach
    /// it (its actor has stopped), for the caller to dead-letter.
    pub(crate) fn send(&self, envelope: Envelope) -> Result<(), Vec<Envelope>> {
        if !self.inbox.push(envelope) {
            return Ok(());
        }
        match self
            .actor
            .send_message(PluginMsg::Drain(Arc::clone(&self.inbox)))
        {
            Ok(()) => Ok(()),
            Err(_) => Err(self.inbox.take_all()),
        }
    }
}
