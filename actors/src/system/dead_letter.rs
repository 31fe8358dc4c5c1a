//! The dead-letter queue: every message that could not be delivered or processed, with the
//! reason, so nothing is ever dropped silently.
//!
//! The queue keeps the most recent letters (bounded, so a flood of failures cannot grow memory
//! without limit) and counts all of them; each letter is also the `dead_letter` outcome its
//! caller receives.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

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
