//! The worker side: each agent served by this process pulls from its durable consumer, runs
//! the message through the agent's actor like any in-process message, and turns the routing
//! decision into publications (next agents, a terminal result, or a dead letter) that the
//! outbox stores before acknowledging the message.
//!
//! It reaches the system only through the core's routing API (`deliver`, `decide`,
//! `check_route`, `widen`, `record_dead_letter`): the decisions are the core's, the
//! publications are this module's.

use std::sync::{Arc, Mutex, Weak};

use async_nats::jetstream;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::link::NatsLink;
use super::outbox::{Done, Job, Publication};
use super::wire::{message_id, Fork, WireDeadLetter, WireMessage, WireResult};
use crate::system::core::{hop_names, SystemCore};
use crate::system::{DeadLetter, DeadLetterReason, Envelope, Next, OutcomeStatus, Ticket};

/// Where a message taken from NATS came from, carried by its ticket until the hop ends.
pub(crate) struct RemoteHop {
    pub run: String,
    pub seq: u64,
    pub path: Vec<Fork>,
    /// The JetStream message and this agent's slot in the worker's local bound, taken
    /// together when the hop's job is handed to the outbox (the slot is freed once the
    /// message is acknowledged).
    pub taken: Mutex<Option<(jetstream::Message, OwnedSemaphorePermit)>>,
}

impl RemoteHop {
    fn take(&self) -> Option<(jetstream::Message, OwnedSemaphorePermit)> {
        self.taken.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Pulls `agent`'s messages until the link stops.
pub(crate) async fn consume(link: Arc<NatsLink>, core: Weak<SystemCore>, agent: Arc<str>) {
    let mut stop = link.stop.subscribe();
    let consumer = match link.agent_consumer(&agent).await {
        Ok(consumer) => consumer,
        Err(e) => {
            tracing::error!(agent = %agent, error = %e, "agent serves no NATS messages");
            return;
        }
    };
    let mut messages = match consumer
        .stream()
        .max_messages_per_batch(link.config.batch)
        .messages()
        .await
    {
        Ok(messages) => messages,
        Err(e) => {
            tracing::error!(agent = %agent, error = %e, "cannot pull NATS messages");
            return;
        }
    };
    // At most `batch` of this agent's messages are between delivery and acknowledgement in this
    // process (mailbox, agent, outbox): the ack_wait clock runs from delivery, so a deep local
    // queue on a loaded machine would have JetStream redeliver messages that are merely
    // waiting here (and then more, a storm).
    let slots = Arc::new(Semaphore::new(link.config.batch));
    loop {
        let slot = tokio::select! {
            _ = stop.changed() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let next = tokio::select! {
            _ = stop.changed() => break,
            next = messages.next() => next,
        };
        match next {
            None => break,
            // Missed heartbeats and the like: the stream re-subscribes by itself.
            Some(Err(e)) => tracing::warn!(agent = %agent, error = %e, "pulling NATS messages"),
            Some(Ok(message)) => {
                let Some(core) = core.upgrade() else { break };
                accept(&link, &core, &agent, message, slot);
            }
        }
    }
    // Stopping: give back what was pulled but not started, so the other workers get it now
    // rather than after ack_wait.
    while let Some(Some(Ok(message))) = messages.next().now_or_never() {
        let _ = message.ack_with(jetstream::AckKind::Nak(None)).await;
    }
}

/// Hands one message to the agent's actor (or dead-letters it if it cannot be served).
fn accept(
    link: &NatsLink,
    core: &Arc<SystemCore>,
    agent: &Arc<str>,
    message: jetstream::Message,
    slot: OwnedSemaphorePermit,
) {
    link.took();
    let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
    if delivered > 1 {
        metrics::counter!("bilayer_nats_redelivered_total", "agent" => agent.to_string())
            .increment(1);
    }
    let wire: WireMessage = match serde_json::from_slice(&message.payload) {
        Ok(wire) => wire,
        Err(e) => {
            let record = WireDeadLetter {
                run: None,
                input: None,
                trace_id: None,
                agent: Some(agent.to_string()),
                hops: Vec::new(),
                reason: format!("unreadable message for agent `{agent}`: {e}"),
                payload: Value::String(String::from_utf8_lossy(&message.payload).into_owned()),
            };
            let publications = vec![Publication {
                subject: link.names.dead_subject(),
                id: format!("unreadable:{}:{}", agent, stream_sequence(&message)),
                body: to_bytes(&record),
            }];
            return link.send(Job {
                publications,
                done: Done::Ack(Box::new(message)),
                slot: Some(slot),
            });
        }
    };
    // The branch's breadth is what its forks multiply to; no wire field needed.
    let breadth = wire
        .path
        .iter()
        .fold(1u32, |breadth, &(_, width)| breadth.saturating_mul(width));
    // In a durable system the run's hops are journaled under its id, on its branch.
    #[cfg(feature = "journal")]
    let (run_id, branch) = match (core.journal(), wire.run_id) {
        (Some(_), Some(run_id)) => (Some(Arc::<str>::from(run_id)), branch_of(&wire.path)),
        _ => (None, None),
    };
    #[cfg(not(feature = "journal"))]
    let (run_id, branch): (Option<Arc<str>>, Option<Arc<str>>) = (None, None);
    let ticket = Ticket::remote(
        wire.input,
        wire.trace,
        RemoteHop {
            run: wire.run,
            seq: wire.seq,
            path: wire.path,
            taken: Mutex::new(Some((message, slot))),
        },
        run_id,
    );
    let envelope = Envelope {
        payload: wire.payload,
        hops: wire.hops.into_iter().map(Arc::from).collect(),
        breadth,
        ticket,
        branch,
    };
    let attempts = link.config.max_deliver;
    if delivered > i64::from(attempts) {
        let reason = DeadLetterReason::Undelivered {
            agent: Arc::clone(agent),
            attempts,
        };
        return dead_letter(core, link, envelope, reason);
    }
    #[cfg(feature = "journal")]
    if delivered > 1 && envelope.ticket.run.is_some() {
        // A worker died with this hop: the journal says whether it ran (then its recorded
        // output goes on) and which calls it made (answered from the journal when it runs).
        let (core, agent) = (Arc::clone(core), Arc::clone(agent));
        tokio::spawn(async move { redelivered(core, agent, envelope).await });
        return;
    }
    core.deliver(envelope, agent);
}

/// The journal's branch name of a fan-out `path` ("0.2": branch 2 of a fan-out in branch 0;
/// `None` for the run's first branch).
#[cfg(feature = "journal")]
fn branch_of(path: &[Fork]) -> Option<Arc<str>> {
    if path.is_empty() {
        return None;
    }
    let names: Vec<String> = path.iter().map(|(index, _)| index.to_string()).collect();
    Some(Arc::from(names.join(".")))
}

/// A durable hop delivered again (its worker died before acknowledging it): if the journal
/// holds the hop, what it recorded goes on without running it again; otherwise it runs, the
/// calls it had made answered from the journal.
#[cfg(feature = "journal")]
async fn redelivered(core: Arc<SystemCore>, agent: Arc<str>, mut envelope: Envelope) {
    let Some(journal) = core.journal().cloned() else {
        return core.deliver(envelope, &agent);
    };
    let Some(run_id) = envelope.ticket.run.clone() else {
        return core.deliver(envelope, &agent);
    };
    let branch = envelope.branch.as_deref().unwrap_or("").to_string();
    let hop_no = u32::try_from(envelope.hops.len()).unwrap_or(u32::MAX);
    let store = journal.store();
    match store.hop(&run_id, &branch, hop_no).await {
        Ok(Some(recorded)) => {
            envelope.hops.push(Arc::clone(&agent));
            let output = recorded
                .output
                .as_deref()
                .map(crate::journal::resume::read_json::<Value>);
            match (output, recorded.error) {
                (Some(Ok(output)), _) => core.forward(envelope, output),
                (_, Some(reason)) => core.dead_letter(envelope, DeadLetterReason::Routing(reason)),
                (Some(Err(e)), None) => core.dead_letter(
                    envelope,
                    DeadLetterReason::Routing(format!(
                        "the journal of run {run_id} is corrupt: bilayer_hops, output of hop {hop_no}: {e}"
                    )),
                ),
                (None, None) => core.dead_letter(
                    envelope,
                    DeadLetterReason::Routing(format!(
                        "the journal of run {run_id} holds hop {hop_no} with neither an output nor an error"
                    )),
                ),
            }
        }
        Ok(None) => {
            match store.recorded_calls(&run_id, &branch, hop_no).await {
                Ok(calls) => journal.expect_replay(calls),
                Err(e) => tracing::warn!(run_id = %run_id, error = %e,
                    "cannot read a redelivered hop's calls from the journal; it makes them again"),
            }
            core.deliver(envelope, &agent);
        }
        Err(e) => {
            tracing::warn!(run_id = %run_id, error = %e,
                "cannot read a redelivered hop from the journal; it runs again");
            core.deliver(envelope, &agent);
        }
    }
}

fn stream_sequence(message: &jetstream::Message) -> u64 {
    message.info().map(|i| i.stream_sequence).unwrap_or(0)
}

/// After the agent produced `output`: routing decides, then publish onward, or the terminal
/// result, then acknowledge.
pub(crate) fn forward(core: &SystemCore, link: &NatsLink, envelope: Envelope, output: Value) {
    let agent = envelope.hops.last().map_or("", |name| &**name);
    let next = match core.decide(agent, &output) {
        Ok(next) => next.into_owned(),
        Err(reason) => {
            let envelope = Envelope {
                payload: output,
                ..envelope
            };
            return dead_letter(core, link, envelope, reason);
        }
    };
    let agent = agent.to_string();
    let Some(hop) = envelope.ticket.remote.as_ref() else {
        return;
    };
    let mut publications = Vec::new();
    let hops = hop_names(&envelope.hops);
    let input = envelope.ticket.input;
    match next {
        Next::Terminal => publications.push(result(
            link,
            hop,
            &hop.path,
            WireResult {
                seq: hop.seq,
                input,
                path: hop.path.clone(),
                status: OutcomeStatus::Ok,
                agent: Some(agent),
                hops,
                output: Some(output),
                reason: None,
            },
        )),
        Next::One(target) => route(
            core,
            link,
            &envelope,
            hops,
            &target,
            hop.path.clone(),
            output,
            &mut publications,
        ),
        Next::Many(targets) => match core.widen(envelope.breadth, targets.len()) {
            Err(reason) => dead_branch(
                core,
                link,
                &envelope,
                hop.path.clone(),
                hops,
                reason,
                output,
                &mut publications,
            ),
            Ok(_) => {
                let width = targets.len() as u32;
                for (index, target) in targets.iter().enumerate() {
                    let mut path = hop.path.clone();
                    path.push((index as u32, width));
                    route(
                        core,
                        link,
                        &envelope,
                        hops.clone(),
                        target,
                        path,
                        output.clone(),
                        &mut publications,
                    );
                }
            }
        },
    }
    finish(link, hop, publications);
}

/// Ends the message's branch as a dead letter: the record to `<prefix>.dead`, the ended
/// branch to the submitter's results; then acknowledge.
pub(crate) fn dead_letter(
    core: &SystemCore,
    link: &NatsLink,
    envelope: Envelope,
    reason: DeadLetterReason,
) {
    let Some(hop) = envelope.ticket.remote.as_ref() else {
        return;
    };
    let mut publications = Vec::new();
    let hops = hop_names(&envelope.hops);
    dead_branch(
        core,
        link,
        &envelope,
        hop.path.clone(),
        hops,
        reason,
        envelope.payload.clone(),
        &mut publications,
    );
    finish(link, hop, publications);
}

fn finish(link: &NatsLink, hop: &RemoteHop, publications: Vec<Publication>) {
    match hop.take() {
        Some((message, slot)) => link.send(Job {
            publications,
            done: Done::Ack(Box::new(message)),
            slot: Some(slot),
        }),
        None => tracing::error!("a NATS hop ended twice; its second ending is dropped"),
    }
}

/// One branch towards `target`: an agent message, or a dead letter if it cannot go there.
/// `hops` are the envelope's hops as names (computed once by the caller).
#[allow(clippy::too_many_arguments)]
fn route(
    core: &SystemCore,
    link: &NatsLink,
    envelope: &Envelope,
    hops: Vec<String>,
    target: &str,
    path: Vec<Fork>,
    payload: Value,
    publications: &mut Vec<Publication>,
) {
    if let Err(reason) = core.check_route(hops.len(), target) {
        return dead_branch(
            core,
            link,
            envelope,
            path,
            hops,
            reason,
            payload,
            publications,
        );
    }
    let Some(hop) = envelope.ticket.remote.as_ref() else {
        return;
    };
    let kind = hops.len().to_string();
    let wire = WireMessage {
        run: hop.run.clone(),
        seq: hop.seq,
        input: envelope.ticket.input,
        trace: envelope.ticket.trace_id,
        path,
        hops,
        payload,
        run_id: envelope.ticket.run.as_deref().map(str::to_string),
    };
    publications.push(Publication {
        subject: link.names.agent_subject(target),
        id: message_id(&hop.run, hop.seq, &wire.path, &kind),
        body: to_bytes(&wire),
    });
}

#[allow(clippy::too_many_arguments)]
fn dead_branch(
    core: &SystemCore,
    link: &NatsLink,
    envelope: &Envelope,
    path: Vec<Fork>,
    hops: Vec<String>,
    reason: DeadLetterReason,
    payload: Value,
    publications: &mut Vec<Publication>,
) {
    let Some(hop) = envelope.ticket.remote.as_ref() else {
        return;
    };
    let reason = reason.to_string();
    let ticket = &envelope.ticket;
    let agent = hops.last().cloned();
    let letter = DeadLetter {
        input: ticket.input,
        trace_id: ticket.trace_id_hex(),
        agent: agent.clone(),
        hops: hops.clone(),
        reason: reason.clone(),
        payload,
    };
    let record = WireDeadLetter {
        run: Some(hop.run.clone()),
        input: Some(ticket.input),
        trace_id: Some(letter.trace_id.clone()),
        agent: agent.clone(),
        hops: hops.clone(),
        reason: reason.clone(),
        payload: letter.payload.clone(),
    };
    core.record_dead_letter(letter);
    publications.push(Publication {
        subject: link.names.dead_subject(),
        id: message_id(&hop.run, hop.seq, &path, "d"),
        body: to_bytes(&record),
    });
    let ended = WireResult {
        seq: hop.seq,
        input: ticket.input,
        path: path.clone(),
        status: OutcomeStatus::DeadLetter,
        agent,
        hops,
        output: None,
        reason: Some(reason),
    };
    publications.push(result(link, hop, &path, ended));
}

fn result(link: &NatsLink, hop: &RemoteHop, path: &[Fork], ended: WireResult) -> Publication {
    Publication {
        subject: link.names.result_subject(&hop.run),
        id: message_id(&hop.run, hop.seq, path, "r"),
        body: to_bytes(&ended),
    }
}

pub(crate) fn to_bytes<T: serde::Serialize>(value: &T) -> Bytes {
    // Our wire types hold only strings, numbers and JSON values: serialising cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}
