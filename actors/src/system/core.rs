//! The shared heart of an agent system: the agents' addresses, the routing decision after each
//! hop, the dead-letter queue and the totals. Plugin actors call into it (through their inbox,
//! once per turn) right after their agent produced an output, so routing costs no extra
//! mailbox hop.
//!
//! Where a routed message then travels is not the core's business but its [`Carrier`]'s
//! (carrier.rs): this process's inboxes, or NATS. The core's fields are private to the
//! `system` module; the NATS worker reaches it through the small routing API below
//! ([`SystemCore::deliver`], [`SystemCore::decide`], [`SystemCore::check_route`],
//! [`SystemCore::widen`], [`SystemCore::record_dead_letter`]).

#[cfg(feature = "nats")]
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::Value;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::carrier::Carrier;
use super::dead_letter::{DeadLetter, DeadLetterQueue, DeadLetterReason};
use super::envelope::Envelope;
use super::inbox::AgentAddress;
use super::outcome::{Outcome, OutcomeStatus};
use super::routing::{Next, RoutingSlot};

pub(crate) struct SystemCore {
    /// The agents served by this process. Looked up on every hop, so hashed with FxHash rather
    /// than SipHash: the table is fixed when the system is built, so no input can fill it with
    /// colliding keys.
    pub(super) agents: FxHashMap<Arc<str>, AgentAddress>,
    /// Agents served by other processes (NATS transport only).
    #[cfg(feature = "nats")]
    pub(super) remote_agents: HashSet<Arc<str>>,
    /// Where routed messages travel: this process, or NATS.
    pub(super) carrier: Carrier,
    pub(super) routing: RoutingSlot,
    pub(super) max_hops: usize,
    /// How many branches one input may end in (`AgentSystemBuilder::max_branches`).
    pub(super) max_branches: u32,
    /// Whether an agent's input is copied before each hop so that, if the agent fails, the
    /// dead letter carries the message as it was (otherwise it carries `null`).
    pub(super) keep_failed_payloads: bool,
    pub(super) dead_letters: DeadLetterQueue,
    pub(super) totals: Totals,
    /// Where the outcomes of `submit` go: the system's `OutcomeStream`.
    pub(crate) outcomes: mpsc::UnboundedSender<(Outcome, OwnedSemaphorePermit)>,
    /// The journal of a durable system: every input is a run recorded there.
    #[cfg(feature = "journal")]
    pub(super) journal: Option<Arc<crate::journal::RunJournal>>,
}

#[derive(Default)]
pub(crate) struct Totals {
    pub ok: AtomicU64,
    pub error: AtomicU64,
    pub dead_letter: AtomicU64,
}

impl SystemCore {
    /// The journal of a durable system (`None`: nothing is journaled).
    #[cfg(feature = "journal")]
    #[inline]
    pub(crate) fn journal(&self) -> Option<&Arc<crate::journal::RunJournal>> {
        self.journal.as_ref()
    }

    /// Whether a failed agent's dead letter carries the message it received
    /// (`AgentSystemBuilder::dead_letter_payloads`).
    pub(crate) fn keeps_failed_payloads(&self) -> bool {
        self.keep_failed_payloads
    }

    /// Why a message that has made `hops` hops may not go on to `target`: the hop limit, or
    /// no process of the system serves `target`. `Ok` when it may.
    #[cfg(feature = "nats")]
    pub(crate) fn check_route(&self, hops: usize, target: &str) -> Result<(), DeadLetterReason> {
        if let Some(reason) = self.past_hop_limit(hops, target) {
            return Err(reason);
        }
        if self.agents.contains_key(target) || self.remote_agents.contains(target) {
            Ok(())
        } else {
            Err(DeadLetterReason::UnknownAgent(target.to_string()))
        }
    }

    /// The reason for a message that has made `hops` hops already, when one more (to
    /// `target`) would pass the hop limit.
    fn past_hop_limit(&self, hops: usize, target: &str) -> Option<DeadLetterReason> {
        (hops >= self.max_hops).then(|| DeadLetterReason::HopLimit {
            max_hops: self.max_hops,
            target: target.to_string(),
        })
    }

    /// The breadth of the branches a fan-out into `width` targets makes from a branch of
    /// `breadth`, or the dead-letter reason when that would pass `max_branches`.
    pub(crate) fn widen(&self, breadth: u32, width: usize) -> Result<u32, DeadLetterReason> {
        let wider = u32::try_from(width)
            .ok()
            .and_then(|width| breadth.checked_mul(width))
            .filter(|&wider| wider <= self.max_branches);
        wider.ok_or(DeadLetterReason::TooManyBranches {
            width,
            max_branches: self.max_branches,
        })
    }

    /// Where `agent`'s `output` goes next: the routing policy's decision, else the output's
    /// `next_agent`.
    pub(crate) fn decide<'a>(
        &self,
        agent: &str,
        output: &'a Value,
    ) -> Result<Next<'a>, DeadLetterReason> {
        self.routing.decide(agent, output)
    }

    /// Delivers an envelope to `target`, an agent of this process, or dead-letters it.
    pub(crate) fn deliver(&self, envelope: Envelope, target: &str) {
        let route = self.resolve(envelope.hops.len(), target);
        self.send_or_dead_letter(envelope, route);
    }

    /// Where a message that has made `hops` hops goes next, if it may go to `target` at all.
    /// The name returned is the system's own, so `target` (often borrowed from the output
    /// about to travel) need not outlive the decision.
    fn resolve(
        &self,
        hops: usize,
        target: &str,
    ) -> Result<(&Arc<str>, &AgentAddress), DeadLetterReason> {
        if let Some(reason) = self.past_hop_limit(hops, target) {
            return Err(reason);
        }
        match self.agents.get_key_value(target) {
            Some((name, address)) => Ok((name, address)),
            None => Err(DeadLetterReason::UnknownAgent(target.to_string())),
        }
    }

    /// Sends `envelope` where [`resolve`](Self::resolve) decided, or dead-letters it with the
    /// reason it could not go.
    fn send_or_dead_letter(
        &self,
        envelope: Envelope,
        route: Result<(&Arc<str>, &AgentAddress), DeadLetterReason>,
    ) {
        let (name, address) = match route {
            Ok(route) => route,
            Err(reason) => return self.dead_letter(envelope, reason),
        };
        if let Err(undeliverable) = address.send(envelope) {
            for envelope in undeliverable {
                self.dead_letter(envelope, DeadLetterReason::not_running(name, "stopped"));
            }
        }
    }

    /// Called by an agent's actor with the output its plugin produced: its carrier takes it
    /// on.
    #[inline]
    pub(crate) fn forward(&self, envelope: Envelope, output: Value) {
        self.carrier.forward(self, envelope, output);
    }

    /// Ends one branch as a dead letter, where its carrier keeps them.
    #[inline]
    pub(crate) fn dead_letter(&self, envelope: Envelope, reason: DeadLetterReason) {
        self.carrier.dead_letter(self, envelope, reason);
    }

    /// [`forward`](Self::forward) in this process: routing decides, the output goes to the
    /// next agents' inboxes, or ends its branch (terminal, or a dead letter).
    pub(super) fn forward_here(&self, envelope: Envelope, output: Value) {
        let agent = envelope.hops.last().map_or("", |name| &**name);
        let next = match self.decide(agent, &output) {
            Ok(next) => next,
            Err(reason) => {
                let envelope = Envelope {
                    payload: output,
                    ..envelope
                };
                return self.dead_letter(envelope, reason);
            }
        };
        match next {
            Next::Terminal => {
                let Envelope { hops, ticket, .. } = envelope;
                let agent = hops.last().map(|name| String::from(&**name));
                let outcome = Outcome::branch_end(
                    ticket.input,
                    ticket.trace_id_hex(),
                    OutcomeStatus::Ok,
                    Some(agent.unwrap_or_default()),
                    hop_names(&hops),
                    Some(output),
                    None,
                );
                ticket.finish_branch(self, outcome);
            }
            Next::One(target) => {
                // Decided while the name still borrows the output, which then travels on.
                let route = self.resolve(envelope.hops.len(), &target);
                let envelope = Envelope {
                    payload: output,
                    ..envelope
                };
                self.send_or_dead_letter(envelope, route);
            }
            Next::Many(targets) => {
                let breadth = match self.widen(envelope.breadth, targets.len()) {
                    Ok(breadth) => breadth,
                    Err(reason) => {
                        let envelope = Envelope {
                            payload: output,
                            ..envelope
                        };
                        return self.dead_letter(envelope, reason);
                    }
                };
                envelope.ticket.add_branches(targets.len() - 1);
                let durable = envelope.ticket.run.is_some();
                for (index, target) in targets.iter().enumerate() {
                    let copy = Envelope {
                        payload: output.clone(),
                        hops: envelope.hops.clone(),
                        breadth,
                        ticket: envelope.ticket.clone(),
                        branch: durable
                            .then(|| branch_of_fanout(envelope.branch.as_deref(), index)),
                    };
                    self.deliver(copy, target);
                }
            }
        }
    }

    /// [`dead_letter`](Self::dead_letter) in this process: kept in the queue, and the
    /// branch's outcome.
    pub(super) fn dead_letter_here(&self, envelope: Envelope, reason: DeadLetterReason) {
        let reason = reason.to_string();
        let ticket = envelope.ticket;
        let hops = hop_names(&envelope.hops);
        let agent = hops.last().cloned();
        self.record_dead_letter(DeadLetter {
            input: ticket.input,
            trace_id: ticket.trace_id_hex(),
            agent: agent.clone(),
            hops: hops.clone(),
            reason: reason.clone(),
            payload: envelope.payload,
        });
        let outcome = Outcome::branch_end(
            ticket.input,
            ticket.trace_id_hex(),
            OutcomeStatus::DeadLetter,
            agent,
            hops,
            None,
            Some(reason),
        );
        ticket.finish_branch(self, outcome);
    }

    /// Keeps `letter` in the system's dead-letter queue (its outcome is the caller's to
    /// report).
    pub(crate) fn record_dead_letter(&self, letter: DeadLetter) {
        self.dead_letters.push(letter);
    }

    pub(crate) fn record_outcome(&self, outcome: &Outcome) {
        let counter = match outcome.status {
            OutcomeStatus::Ok => &self.totals.ok,
            OutcomeStatus::Error => &self.totals.error,
            OutcomeStatus::DeadLetter => &self.totals.dead_letter,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The branch `index` of a fan-out made on `branch` (`None`: the run's first branch), as the
/// journal of a durable run names branches: "0", "1"... then "0.2" inside branch 0.
pub(crate) fn branch_of_fanout(branch: Option<&str>, index: usize) -> Arc<str> {
    match branch {
        None | Some("") => Arc::from(index.to_string()),
        Some(parent) => Arc::from(format!("{parent}.{index}")),
    }
}

pub(crate) fn hop_names(hops: &[Arc<str>]) -> Vec<String> {
    // `String::from(&str)` copies; `Arc<str>::to_string` would go through `Display`.
    hops.iter().map(|h| String::from(&**h)).collect()
}
