//! How one input to an agent system ended: exactly one [`Outcome`] per input.
//!
//! The serialised form is the line `bilayer run` prints: `input`, `status`, `agent`, `hops`,
//! `output`, `trace_id`, and `error` or `reason` where they apply; in a durable run also
//! `run_id`, and `replayed` for an outcome read back from the journal on resume.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The three ways an input can end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// A terminal agent produced the output.
    Ok,
    /// The input was refused before any agent saw it (malformed, or the system is shutting
    /// down).
    Error,
    /// Routing or an agent failed; the message went to the dead-letter queue with `reason`.
    DeadLetter,
}

impl OutcomeStatus {
    /// The `status` field of the JSON line: `ok`, `error` or `dead_letter`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeStatus::Ok => "ok",
            OutcomeStatus::Error => "error",
            OutcomeStatus::DeadLetter => "dead_letter",
        }
    }
}

/// The end of one input's journey through the agents.
///
/// It reads back from its own line (`Deserialize`): the journal of a durable run keeps it as
/// that text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// 1-based number of the input (its line in `bilayer run`).
    pub input: u64,
    /// How it ended.
    pub status: OutcomeStatus,
    /// The terminal agent (for a dead letter: the agent where the message stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The agents visited, in order.
    #[serde(default)]
    pub hops: Vec<String>,
    /// The terminal agent's output (for a fan-out: every branch's output, in branch order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The trace id the input carried through every hop (in logs and spans).
    pub trace_id: String,
    /// For `error`: why the input was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `dead_letter`: why the message went to the dead-letter queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// In a durable run (a system with a journal): the run's id, `<batch>-<input>`, the key
    /// of its journal (`bilayer runs show RUN_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// For a fan-out (`next_agent` given as a list): the outcome of every branch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<Outcome>,
    /// Whether this outcome was read back from the journal (a resumed run's input that had
    /// finished before the crash) rather than produced now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    /// Time from admission to this outcome (zero for a replayed one).
    #[serde(skip)]
    pub latency: Duration,
}

impl Outcome {
    /// An input that ended as an error before any agent ran (refused at admission, or its
    /// submission failed).
    pub(crate) fn refused(input: u64, trace_id: String, error: String) -> Outcome {
        Outcome {
            input,
            status: OutcomeStatus::Error,
            agent: None,
            hops: Vec::new(),
            output: None,
            trace_id,
            error: Some(error),
            reason: None,
            run_id: None,
            branches: Vec::new(),
            replayed: false,
            latency: Duration::ZERO,
        }
    }

    /// How one branch of an input ended, as its ticket collects it: a terminal agent's
    /// `output` (`Ok`), or a dead letter's `reason`.
    pub(crate) fn branch_end(
        input: u64,
        trace_id: String,
        status: OutcomeStatus,
        agent: Option<String>,
        hops: Vec<String>,
        output: Option<Value>,
        reason: Option<String>,
    ) -> Outcome {
        Outcome {
            input,
            status,
            agent,
            hops,
            output,
            trace_id,
            error: None,
            reason,
            run_id: None,
            branches: Vec::new(),
            replayed: false,
            latency: Duration::ZERO,
        }
    }

    /// Whether a terminal agent produced the output.
    pub fn is_ok(&self) -> bool {
        self.status == OutcomeStatus::Ok
    }

    /// Joins the outcomes of a fanned-out input: `ok` only if every branch is, otherwise the
    /// first failing branch's status, error and reason.
    pub(crate) fn join(input: u64, trace_id: String, mut branches: Vec<Outcome>) -> Outcome {
        if branches.len() == 1 {
            return branches.pop().expect("one branch");
        }
        let failed = branches.iter().find(|b| !b.is_ok());
        let status = failed.map_or(OutcomeStatus::Ok, |b| b.status);
        let error = failed.and_then(|b| b.error.clone());
        let reason = failed.and_then(|b| b.reason.clone());
        let outputs = branches
            .iter()
            .map(|b| b.output.clone().unwrap_or(Value::Null))
            .collect();
        // The shared prefix of every branch's hops is the path before the split.
        let mut hops = branches[0].hops.clone();
        for branch in &branches[1..] {
            let common = hops
                .iter()
                .zip(&branch.hops)
                .take_while(|(a, b)| a == b)
                .count();
            hops.truncate(common);
        }
        let latency = branches.iter().map(|b| b.latency).max().unwrap_or_default();
        Outcome {
            input,
            status,
            agent: None,
            hops,
            output: Some(Value::Array(outputs)),
            trace_id,
            error,
            reason,
            run_id: None,
            branches,
            replayed: false,
            latency,
        }
    }
}
