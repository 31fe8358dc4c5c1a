//! The dead-letter queue: every message that could not be delivered or processed, with the
//! reason, so nothing is ever dropped silently.
//!
//! The queue keeps the most recent letters (bounded, so a flood of failures cannot grow memory
//! without limit) and counts all of them; each letter is also the `dead_letter` outcome its
//! caller receives.
//!
//! Why a message stopped is a [`DeadLetterReason`] inside the crate, one variant per cause, and
//! becomes text once, where the letter and the outcome are made: users parse that text (the
//! `reason` of `bilayer run`'s JSON lines, of [`DeadLetter`] and of an `Outcome`), so each
//! variant prints exactly what the system has always printed for it.

use bilayer_plugins::CallError;
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a message was dead-lettered.
#[derive(Debug, Clone)]
pub(crate) enum DeadLetterReason {
    /// `next_agent` names an agent no process of the system serves.
    UnknownAgent(String),
    /// The agent's actor is not serving: `state` is `stopped`, or its lifecycle state.
    NotRunning { agent: Arc<str>, state: String },
    /// One more hop, to `target`, would pass `max_hops`.
    HopLimit { max_hops: usize, target: String },
    /// A fan-out into `width` agents would pass `max_branches`.
    TooManyBranches { width: usize, max_branches: u32 },
    /// The routing decision failed: the routing policy's error, or a malformed `next_agent`.
    Routing(String),
    /// The agent's hop failed: its plugin's error, a panic, or the hop timeout.
    HopFailed { agent: Arc<str>, error: CallError },
    /// The journal of a durable run could not record the hop (the store failed), so its
    /// output was not released.
    #[cfg(feature = "journal")]
    Journal(String),
    /// A NATS message delivered `attempts` times without ever being acknowledged.
    #[cfg(feature = "nats")]
    Undelivered { agent: Arc<str>, attempts: u32 },
}

impl DeadLetterReason {
    /// A message for `agent`, which is not serving (it is `state`).
    pub(crate) fn not_running(agent: &Arc<str>, state: impl fmt::Display) -> Self {
        DeadLetterReason::NotRunning {
            agent: Arc::clone(agent),
            state: state.to_string(),
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadLetterReason::UnknownAgent(target) => write!(f, "unknown next_agent `{target}`"),
            DeadLetterReason::NotRunning { agent, state } => {
                write!(f, "agent `{agent}` is not running (it is {state})")
            }
            DeadLetterReason::HopLimit { max_hops, target } => write!(
                f,
                "hop limit of {max_hops} exceeded on the way to `{target}` (a routing loop?)"
            ),
            DeadLetterReason::TooManyBranches {
                width,
                max_branches,
            } => write!(
                f,
                "fan-out to {width} agents would let this input end in more than {max_branches} \
                 branches (max_branches; raise it, or fan out less)"
            ),
            DeadLetterReason::Routing(reason) => f.write_str(reason),
            #[cfg(feature = "journal")]
            DeadLetterReason::Journal(cause) => write!(
                f,
                "the journal could not record this hop ({cause}); its output was not passed on"
            ),
            DeadLetterReason::HopFailed { agent, error } => match error {
                CallError::Plugin(error) => write!(f, "agent `{agent}` failed: {error}"),
                CallError::Panicked { message, .. } => {
                    write!(f, "agent `{agent}` panicked: {message}")
                }
                CallError::Timeout { after, .. } => {
                    write!(f, "agent `{agent}` did not answer within {after:?}")
                }
                other => write!(f, "agent `{agent}` failed: {other}"),
            },
            #[cfg(feature = "nats")]
            DeadLetterReason::Undelivered { agent, attempts } => write!(
                f,
                "agent `{agent}`: {attempts} deliveries ended without an acknowledgement (a \
                 worker crashed or stalled on this message); dead-lettered instead of delivered \
                 again"
            ),
        }
    }
}

/// One undeliverable message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The number of the input the message came from.
    pub input: u64,
    /// The input's trace id.
    pub trace_id: String,
    /// The agent where the message stopped (the failing agent, or the last one before an
    /// unknown target).
    pub agent: Option<String>,
    /// The agents visited, in order.
    pub hops: Vec<String>,
    /// Why the message could not go on (the agent's error, an unknown target, a limit).
    pub reason: String,
    /// The message as it was when it stopped.
    pub payload: Value,
}

pub(crate) struct DeadLetterQueue {
    recent: Mutex<VecDeque<DeadLetter>>,
    capacity: usize,
    total: AtomicU64,
}

impl DeadLetterQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            recent: Mutex::new(VecDeque::new()),
            capacity,
            total: AtomicU64::new(0),
        }
    }

    pub(crate) fn push(&self, letter: DeadLetter) {
        self.total.fetch_add(1, Ordering::Relaxed);
        // Debug, not warn: a dead letter is an outcome its caller already receives (the `run`
        // command prints it as a line), and a flood of failures must not flood the log too.
        // `RUST_LOG=bilayer_actors=debug` shows each one; the count is a metric.
        tracing::debug!(
            input = letter.input,
            trace_id = %letter.trace_id,
            agent = letter.agent.as_deref().unwrap_or("-"),
            reason = %letter.reason,
            "dead letter"
        );
        metrics::counter!(
            "bilayer_dead_letters_total",
            "agent" => letter.agent.clone().unwrap_or_default()
        )
        .increment(1);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == self.capacity {
            recent.pop_front();
        }
        recent.push_back(letter);
    }

    pub(crate) fn recent(&self) -> Vec<DeadLetter> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().cloned().collect()
    }

    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}
