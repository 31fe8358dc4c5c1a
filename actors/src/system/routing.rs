//! The routing decision after each hop: a [`RoutingPolicy`] when one is installed, else the
//! output's own `next_agent`. The policy's one implementation, a Rhai routing script
//! (`RhaiRoutingPolicy`), sits beside it in `rhai_routing.rs`, behind the `rhai` feature.
//!
//! The trait and its implementation live side by side: the trait is what the system core asks
//! after every agent (so it belongs to this crate, which the facade depends on, not the other
//! way round), and the Rhai script is the only policy the project ships, built on the plugin
//! kernel's `RhaiPlugin`. The facade re-exports it as `bilayer::routing::RhaiRoutingPolicy`.
//!
//! A routing script sees `#{ agent: "intake", message: #{ ...the output... } }` and may be any Rhai
//! plugin form:
//!
//! - an entry function returning the next agent (`"manager"`), a list of agents
//!   (`["audit", "archive"]`) or `()` to keep the output's own `next_agent`; a map with a
//!   `next_agent` field works too;
//! - a rules script (rules in priority order, first match wins, like the rule engine) whose
//!   actions return `#{ next_agent: ... }`; when no rule fires, the output's `next_agent`
//!   stands.
//!
//! The policy runs on the agent's actor right after the agent, inside the script's sandbox
//! limits. Replace it at run time with `AgentSystem::set_routing_policy`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::dead_letter::DeadLetterReason;

/// Decides where a message goes after an agent, overriding the output's own `next_agent`.
/// Implemented by routing scripts (`RhaiRoutingPolicy`, feature `rhai`); swappable at run time (hot reload).
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

/// The routing policy in force, if any. Every hop asks; most systems have none, and a flag that
/// is only ever read keeps that answer off the lock (whose reader count every core would
/// otherwise write on every hop).
pub(crate) struct RoutingSlot {
    active: AtomicBool,
    policy: RwLock<Option<Arc<dyn RoutingPolicy>>>,
}

impl RoutingSlot {
    pub(super) fn new(policy: Option<Arc<dyn RoutingPolicy>>) -> Self {
        Self {
            active: AtomicBool::new(policy.is_some()),
            policy: RwLock::new(policy),
        }
    }

    pub(super) fn get(&self) -> Option<Arc<dyn RoutingPolicy>> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn set(&self, policy: Option<Arc<dyn RoutingPolicy>>) {
        let mut slot = self.policy.write().unwrap_or_else(|p| p.into_inner());
        self.active.store(policy.is_some(), Ordering::Release);
        *slot = policy;
    }

    /// Where `agent`'s `output` goes: the policy's decision, else the output's `next_agent`
    /// (absent: terminal).
    pub(super) fn decide<'a>(
        &self,
        agent: &str,
        output: &'a Value,
    ) -> Result<Next<'a>, DeadLetterReason> {
        if let Some(policy) = self.get() {
            let decided = policy
                .route(agent, output)
                .map_err(DeadLetterReason::Routing)?;
            if let Some(decided) = decided {
                return parse_next(&decided).map(Next::into_owned);
            }
        }
        match output.get("next_agent") {
            Some(next) => parse_next(next),
            None => Ok(Next::Terminal),
        }
    }
}

fn parse_next(next: &Value) -> Result<Next<'_>, DeadLetterReason> {
    match next {
        Value::Null => Ok(Next::Terminal),
        Value::String(name) => Ok(Next::One(Cow::Borrowed(name))),
        Value::Array(names) if !names.is_empty() => names
            .iter()
            .map(|n| {
                n.as_str().map(Cow::Borrowed).ok_or_else(|| {
                    DeadLetterReason::Routing(format!(
                        "next_agent list must hold agent names (strings), found {n}"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Next::Many),
        Value::Array(_) => Err(DeadLetterReason::Routing(
            "next_agent is an empty list".to_string(),
        )),
        other => Err(DeadLetterReason::Routing(format!(
            "next_agent must be an agent name or a list of names, found {other}"
        ))),
    }
}
