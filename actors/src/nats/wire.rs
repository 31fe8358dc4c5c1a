//! What crosses NATS, and the names it crosses under.
//!
//! Three kinds of message, all JSON:
//! - [`WireMessage`] on `<prefix>.agent.<name>`: one message for one agent, with the run it
//!   belongs to, the input's number, its trace id, its branch path and the hops so far;
//! - [`WireResult`] on `<prefix>.result.<run>`: one ended branch (terminal output or dead
//!   letter) for the run that submitted the input;
//! - [`WireDeadLetter`] on `<prefix>.dead`: the dead-letter record, with the reason.
//!
//! Every publication carries a `Nats-Msg-Id` derived from (run, input, branch path, hop), so a
//! worker that processes a redelivered message re-publishes under the same ids and JetStream
//! drops the copies; the collector also drops a branch it has already seen.
//!
//! A branch path is the list of fan-outs taken: `(index, width)` per fan-out. An input is
//! complete when its ended branches cover the whole fan-out tree ([`covers_tree`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::system::OutcomeStatus;

/// One fan-out taken: this branch is `index` of `width`.
pub(crate) type Fork = (u32, u32);

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireMessage {
    pub run: String,
    /// The submitting process's own number for the input (unique in its run).
    pub seq: u64,
    /// The input's number as the user gave it (a line number, say).
    pub input: u64,
    pub trace: u64,
    #[serde(default)]
    pub path: Vec<Fork>,
    #[serde(default)]
    pub hops: Vec<String>,
    pub payload: Value,
    /// In a durable system, the id of the input's run: the workers journal its hops under
    /// it (its branch is `path`'s indices, as the journal names branches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireResult {
    pub seq: u64,
    pub input: u64,
    #[serde(default)]
    pub path: Vec<Fork>,
    pub status: OutcomeStatus,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub hops: Vec<String>,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireDeadLetter {
    /// `None` when the message was not even readable.
    pub run: Option<String>,
    pub input: Option<u64>,
    pub trace_id: Option<String>,
    pub agent: Option<String>,
    pub hops: Vec<String>,
    pub reason: String,
    pub payload: Value,
}

/// Subject and stream names of one system.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub prefix: String,
    pub work_stream: String,
    pub results_stream: String,
    pub dead_stream: String,
}

impl Names {
    pub(crate) fn new(system: &str, stream: Option<&str>, prefix: Option<&str>) -> Self {
        let token = subject_token(system);
        let work_stream = stream
            .map(str::to_string)
            .unwrap_or_else(|| format!("BILAYER_{}", token.to_uppercase().replace('-', "_")));
        Self {
            prefix: prefix
                .map(str::to_string)
                .unwrap_or_else(|| format!("bilayer.{token}")),
            results_stream: format!("{work_stream}_RESULTS"),
            dead_stream: format!("{work_stream}_DEAD"),
            work_stream,
        }
    }

    pub(crate) fn agent_subject(&self, agent: &str) -> String {
        format!("{}.agent.{}", self.prefix, subject_token(agent))
    }

    pub(crate) fn agent_subjects(&self) -> String {
        format!("{}.agent.*", self.prefix)
    }

    /// The durable consumer every worker of `agent` pulls from.
    pub(crate) fn consumer(&self, agent: &str) -> String {
        format!("agent-{}", subject_token(agent))
    }

    pub(crate) fn result_subject(&self, run: &str) -> String {
        format!("{}.result.{run}", self.prefix)
    }

    pub(crate) fn result_subjects(&self) -> String {
        format!("{}.result.*", self.prefix)
    }

    pub(crate) fn dead_subject(&self) -> String {
        format!("{}.dead", self.prefix)
    }
}

/// A name made safe for one subject token (and a consumer name): letters, digits, `-`, `_`;
/// anything else becomes `_`.
pub(crate) fn subject_token(name: &str) -> String {
    let token: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if token.is_empty() {
        "_".to_string()
    } else {
        token
    }
}

/// The `Nats-Msg-Id` of a publication: stable across redeliveries of the message that caused
/// it. `kind` is the hop number for agent messages, `r` for results, `d` for dead letters.
pub(crate) fn message_id(run: &str, seq: u64, path: &[Fork], kind: &str) -> String {
    let mut id = format!("{run}:{seq}:");
    for (index, width) in path {
        id.push_str(&format!("{index}/{width}."));
    }
    id.push(':');
    id.push_str(kind);
    id
}

/// Whether the ended branches `paths` (distinct) cover the whole fan-out tree: every fork's
/// every branch has ended.
pub(crate) fn covers_tree(paths: &[&[Fork]]) -> bool {
    if paths.iter().any(|p| p.is_empty()) {
        // A branch ended here: nothing forked below it.
        return paths.len() == 1;
    }
    let Some(first) = paths.first() else {
        return false;
    };
    let width = first[0].1;
    if paths.iter().any(|p| p[0].1 != width) {
        return false;
    }
    (0..width).all(|index| {
        let below: Vec<&[Fork]> = paths
            .iter()
            .filter(|p| p[0].0 == index)
            .map(|p| &p[1..])
            .collect();
        !below.is_empty() && covers_tree(&below)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_unforked_branch_covers_the_tree() {
        assert!(covers_tree(&[&[]]));
        assert!(!covers_tree(&[]));
    }

    #[test]
    fn a_fork_is_covered_only_when_every_branch_ended() {
        let a: &[Fork] = &[(0, 2)];
        let b: &[Fork] = &[(1, 2)];
        assert!(!covers_tree(&[a]));
        assert!(covers_tree(&[a, b]));
    }

    #[test]
    fn nested_forks() {
        let a: &[Fork] = &[(0, 2)];
        let b0: &[Fork] = &[(1, 2), (0, 3)];
        let b1: &[Fork] = &[(1, 2), (1, 3)];
        let b2: &[Fork] = &[(1, 2), (2, 3)];
        assert!(!covers_tree(&[a, b0, b1]));
        assert!(covers_tree(&[a, b0, b1, b2]));
    }

    #[test]
    fn message_ids_differ_by_branch_and_kind() {
        let a = message_id("run", 7, &[(0, 2)], "1");
        let b = message_id("run", 7, &[(1, 2)], "1");
        let r = message_id("run", 7, &[(0, 2)], "r");
        assert_ne!(a, b);
        assert_ne!(a, r);
        assert_eq!(message_id("run", 7, &[], "0"), "run:7::0");
    }

    #[test]
    fn names_are_subject_safe() {
        let names = Names::new("my orders.v2", None, None);
        assert_eq!(names.prefix, "bilayer.my_orders_v2");
        assert_eq!(names.work_stream, "BILAYER_MY_ORDERS_V2");
        assert_eq!(
            names.agent_subject("in.take"),
            "bilayer.my_orders_v2.agent.in_take"
        );
    }
}
