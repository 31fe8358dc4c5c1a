//! The shared heart of an agent system: the agents' addresses, the routing decision after each
//! hop, the dead-letter queue and the totals. Plugin actors call into it (through their inbox,
//! once per turn) right after their agent produced an output, so routing costs no extra
//! mailbox hop.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;
use serde_json::Value;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::dead_letter::{DeadLetter, DeadLetterQueue};
use super::envelope::Envelope;
use super::inbox::AgentAddress;
use super::outcome::{Outcome, OutcomeStatus};
use crate::nats::{worker, NatsLink};

/// Decides where a message goes after an agent, overriding the output's own `next_agent`.
/// Implemented by routing scripts; swappable at run time (hot reload).
pub trait RoutingPolicy: Send + Sync + 'static {
    /// `Ok(Some(next))` overrides the route with `next` (a name, a list of names, or `null`
    /// for terminal); `Ok(None)` keeps the output's `next_agent`; `Err` dead-letters the
    /// message with that reason.
    fn route(&self, agent: &str, output: &Value) -> Result<Option<Value>, String>;
}

/// Where a message goes next. The names usually borrow the output's `next_agent`, so routing
/// a message copies no name.
pub(crate) enum Next<'a> {
    Terminal,
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl Next<'_> {
    /// The same decision, no longer borrowing the output (for a decision that outlives it).
    pub(crate) fn into_owned(self) -> Next<'static> {
        match self {
            Next::Terminal => Next::Terminal,
            Next::One(name) => Next::One(Cow::Owned(name.into_owned())),
            Next::Many(names) => Next::Many(
                names
                    .into_iter()
                    .map(|name| Cow::Owned(name.into_owned()))
                    .collect(),
            ),
        }
    }
}

pub(crate) struct SystemCore {
    /// The agents served by this process. Looked up on every hop, so hashed with FxHash rather
    /// than SipHash: the table is fixed when the system is built, so no input can fill it with
    /// colliding keys.
    pub agents: FxHashMap<Arc<str>, AgentAddress>,
    /// Agents served by other processes (NATS transport only).
    pub remote_agents: HashSet<Arc<str>>,
    /// The NATS link, when the system's transport is NATS.
    pub nats: Option<Arc<NatsLink>>,
    pub routing: RoutingSlot,
    pub max_hops: usize,
    /// How many branches one input may end in (`AgentSystemBuilder::max_branches`).
    pub max_branches: u32,
    /// Whether an agent's input is copied before each hop so that, if the agent fails, the
    /// dead letter carries the message as it was (otherwise it carries `null`).
    pub keep_failed_payloads: bool,
    pub dead_letters: DeadLetterQueue,
    pub totals: Totals,
    /// Where the outcomes of `submit` go: the system's `OutcomeStream`.
    pub outcomes: mpsc::UnboundedSender<(Outcome, OwnedSemaphorePermit)>,
}

/// The routing policy in force, if any. Every hop asks; most systems have none, and a flag that
/// is only ever read keeps that answer off the lock (whose reader count every core would
/// otherwise write on every hop).
pub(crate) struct RoutingSlot {
    active: AtomicBool,
    policy: RwLock<Option<Arc<dyn RoutingPolicy>>>,
}

impl RoutingSlot {
    pub(crate) fn new(policy: Option<Arc<dyn RoutingPolicy>>) -> Self {
        Self {
            active: AtomicBool::new(policy.is_some()),
            policy: RwLock::new(policy),
        }
    }

    pub(crate) fn get(&self) -> Option<Arc<dyn RoutingPolicy>> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set(&self, policy: Option<Arc<dyn RoutingPolicy>>) {
        let mut slot = self.policy.write().unwrap_or_else(|p| p.into_inner());
        self.active.store(policy.is_some(), Ordering::Release);
        *slot = policy;
    }
}

#[derive(Default)]
pub(crate) struct Totals {
    pub ok: AtomicU64,
    pub error: AtomicU64,
    pub dead_letter: AtomicU64,
}

/// The dead-letter reason for a `next_agent` no process of the system serves.
pub(crate) fn unknown_agent(target: &str) -> String {
    format!("unknown next_agent `{target}`")
}

/// The dead-letter reason for a message that reached an agent not serving (`state` says why:
/// stopped, or the lifecycle state it is in).
pub(crate) fn agent_not_running(agent: &str, state: impl std::fmt::Display) -> String {
    format!("agent `{agent}` is not running (it is {state})")
}

impl SystemCore {
    /// The dead-letter reason for a message that has made `hops` hops already, when one more
    /// (to `target`) would pass the hop limit.
    pub(crate) fn past_hop_limit(&self, hops: usize, target: &str) -> Option<String> {
        (hops >= self.max_hops).then(|| {
            format!(
                "hop limit of {} exceeded on the way to `{target}` (a routing loop?)",
                self.max_hops
            )
        })
    }

    /// The breadth of the branches a fan-out into `width` targets makes from a branch of
    /// `breadth`, or the dead-letter reason when that would pass `max_branches`.
    pub(crate) fn widen(&self, breadth: u32, width: usize) -> Result<u32, String> {
        let wider = u32::try_from(width)
            .ok()
            .and_then(|width| breadth.checked_mul(width))
            .filter(|&wider| wider <= self.max_branches);
        wider.ok_or_else(|| {
            format!(
                "fan-out to {width} agents would let this input end in more than {} branches \
                 (max_branches; raise it, or fan out less)",
                self.max_branches
            )
        })
    }

    /// Delivers an envelope to `target`, or dead-letters it.
    pub(crate) fn deliver(&self, envelope: Envelope, target: &str) {
        let route = self.resolve(envelope.hops.len(), target);
        self.send_or_dead_letter(envelope, route);
    }

    /// Where a message that has made `hops` hops goes next, if it may go to `target` at all.
    /// The name returned is the system's own, so `target` (often borrowed from the output
    /// about to travel) need not outlive the decision.
    fn resolve(&self, hops: usize, target: &str) -> Result<(&str, &AgentAddress), String> {
        if let Some(reason) = self.past_hop_limit(hops, target) {
            return Err(reason);
        }
        match self.agents.get_key_value(target) {
            Some((name, address)) => Ok((name, address)),
            None => Err(unknown_agent(target)),
        }
    }

    /// Sends `envelope` where [`resolve`](Self::resolve) decided, or dead-letters it with the
    /// reason it could not go.
    fn send_or_dead_letter(
        &self,
        envelope: Envelope,
        route: Result<(&str, &AgentAddress), String>,
    ) {
        let (name, address) = match route {
            Ok(route) => route,
            Err(reason) => return self.dead_letter(envelope, reason),
        };
        if let Err(undeliverable) = address.send(envelope) {
            for envelope in undeliverable {
                self.dead_letter(envelope, agent_not_running(name, "stopped"));
            }
        }
    }

    /// Whether `agent` is an agent of the system, here or in another process.
    pub(crate) fn knows(&self, agent: &str) -> bool {
        self.agents.contains_key(agent) || self.remote_agents.contains(agent)
    }

    /// Called by an agent's actor with the output its plugin produced.
    pub(crate) fn forward(&self, envelope: Envelope, output: Value) {
        let agent = envelope.hops.last().map_or("", |name| &**name);
        let next = match self.next(agent, &output) {
            Ok(next) => next,
            Err(reason) => {
                let envelope = Envelope {
                    payload: output,
                    ..envelope
                };
                return self.dead_letter(envelope, reason);
            }
        };
        if envelope.ticket.remote.is_some() {
            if let Some(link) = &self.nats {
                let (agent, next) = (agent.to_string(), next.into_owned());
                return worker::forward(self, link, envelope, agent, next, output);
            }
        }
        match next {
            Next::Terminal => {
                let Envelope { hops, ticket, .. } = envelope;
                ticket.finish_branch(
                    self,
                    Outcome {
                        input: ticket.input,
                        status: OutcomeStatus::Ok,
                        agent: Some(
                            hops.last()
                                .map_or_else(String::new, |name| String::from(&**name)),
                        ),
                        hops: hop_names(&hops),
                        output: Some(output),
                        trace_id: ticket.trace_id_hex(),
                        error: None,
                        reason: None,
                        branches: Vec::new(),
                        latency: Default::default(),
                    },
                );
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
                for target in &targets {
                    let copy = Envelope {
                        payload: output.clone(),
                        hops: envelope.hops.clone(),
                        breadth,
                        ticket: envelope.ticket.clone(),
                    };
                    self.deliver(copy, target);
                }
            }
        }
    }

    /// Ends one branch in the dead-letter queue.
    pub(crate) fn dead_letter(&self, envelope: Envelope, reason: String) {
        if envelope.ticket.remote.is_some() {
            if let Some(link) = &self.nats {
                return worker::dead_letter(self, link, envelope, reason);
            }
        }
        let ticket = envelope.ticket;
        let hops = hop_names(&envelope.hops);
        let agent = hops.last().cloned();
        self.dead_letters.push(DeadLetter {
            input: ticket.input,
            trace_id: ticket.trace_id_hex(),
            agent: agent.clone(),
            hops: hops.clone(),
            reason: reason.clone(),
            payload: envelope.payload,
        });
        ticket.finish_branch(
            self,
            Outcome {
                input: ticket.input,
                status: OutcomeStatus::DeadLetter,
                agent,
                hops,
                output: None,
                trace_id: ticket.trace_id_hex(),
                error: None,
                reason: Some(reason),
                branches: Vec::new(),
                latency: Default::default(),
            },
        );
    }

    pub(crate) fn record_outcome(&self, outcome: &Outcome) {
        let counter = match outcome.status {
            OutcomeStatus::Ok => &self.totals.ok,
            OutcomeStatus::Error => &self.totals.error,
            OutcomeStatus::DeadLetter => &self.totals.dead_letter,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn next<'a>(&self, agent: &str, output: &'a Value) -> Result<Next<'a>, String> {
        if let Some(policy) = self.routing.get() {
            if let Some(decided) = policy.route(agent, output)? {
                return parse_next(&decided).map(Next::into_owned);
            }
        }
        match output.get("next_agent") {
            Some(next) => parse_next(next),
            None => Ok(Next::Terminal),
        }
    }
}

fn parse_next(next: &Value) -> Result<Next<'_>, String> {
    match next {
        Value::Null => Ok(Next::Terminal),
        Value::String(name) => Ok(Next::One(Cow::Borrowed(name))),
        Value::Array(names) if !names.is_empty() => names
            .iter()
            .map(|n| {
                n.as_str().map(Cow::Borrowed).ok_or_else(|| {
                    format!("next_agent list must hold agent names (strings), found {n}")
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Next::Many),
        Value::Array(_) => Err("next_agent is an empty list".to_string()),
        other => Err(format!(
            "next_agent must be an agent name or a list of names, found {other}"
        )),
    }
}

pub(crate) fn hop_names(hops: &[Arc<str>]) -> Vec<String> {
    // `String::from(&str)` copies; `Arc<str>::to_string` would go through `Display`.
    hops.iter().map(|h| String::from(&**h)).collect()
}
