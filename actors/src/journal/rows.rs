//! What the journal records, one type per table (docs: /work/wt/JOURNAL_CONTRACT.md, then
//! docs/ARCHITECTURE.md, "Durable runs"): a batch (one `bilayer run` over an input file), a
//! run per input, a hop per agent a run's message visited, a call per `call_plugin` (or step)
//! a hop made, and the run's outcome.
//!
//! JSON values travel as JSON text: the hop path serialises an output once, on the actor that
//! produced it, and the store writes the text as is; reading back, the resume path parses it
//! (a row whose text does not parse fails its run alone).

use std::sync::Arc;

/// One `bilayer run` (or one service) writing into a store: the runs of one input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    /// Random, unique per store; the prefix of its runs' ids.
    pub batch_id: String,
    /// A digest of the system definition's agents (what a resume compares).
    pub system_digest: String,
    /// The agents and what serves each, as JSON text (to name a difference on resume).
    pub system_summary: String,
    /// Where the inputs came from (the input file's path, `-` for stdin).
    pub source: String,
    /// Unix milliseconds.
    pub started_at: i64,
}

/// One input, admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// `<batch_id>-<input_no>`.
    pub run_id: Arc<str>,
    /// The batch it belongs to.
    pub batch_id: Arc<str>,
    /// 1-based input number (its line).
    pub input_no: u64,
    /// The input, JSON text.
    pub input: String,
    /// Unix milliseconds.
    pub started_at: i64,
}

/// One hop of a run: an agent served the run's message on one branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopRow {
    /// The run.
    pub run_id: Arc<str>,
    /// "" for the run's first branch; "0", "1"... for a fan-out's branches; "0.2" nested.
    pub branch: Arc<str>,
    /// 0-based: the run's first agent is hop 0.
    pub hop_no: u32,
    /// The agent that served it.
    pub agent: Arc<str>,
    /// The version of the plugin (script, module) that served it.
    pub version: String,
    /// Its output, JSON text (`None` when it failed).
    pub output: Option<String>,
    /// Why it failed (`None` when it answered).
    pub error: Option<String>,
    /// The routing decision, JSON text: `"terminal"`, `{"next":A}`, `{"fanout":[A,B]}`,
    /// `{"dead_letter":REASON}`.
    pub decision: String,
    /// Unix milliseconds.
    pub started_at: i64,
    /// How long the hop ran.
    pub elapsed_us: i64,
}

/// One call a hop made (`call_plugin`, or a named step of a native plugin), with its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRow {
    /// The run.
    pub run_id: Arc<str>,
    /// The hop's branch.
    pub branch: Arc<str>,
    /// The hop's number.
    pub hop_no: u32,
    /// `call:N` (the hop's N-th call, 0-based) or `step:NAME#K`.
    pub call_key: String,
    /// The plugin called (for a step: its name).
    pub target: String,
    /// What it answered (text as the plugin returned it), `None` when it failed.
    pub result: Option<String>,
    /// Why it failed, `None` when it answered.
    pub error: Option<String>,
    /// How long it took.
    pub elapsed_us: i64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRow {
    /// The run.
    pub run_id: Arc<str>,
    /// `ok`, `error` or `dead_letter`.
    pub status: String,
    /// The outcome line, JSON text.
    pub outcome: String,
    /// Unix milliseconds.
    pub finished_at: i64,
}

/// One thing to append to the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A run admitted.
    Run(RunRow),
    /// A hop done.
    Hop(HopRow),
    /// A call made.
    Call(CallRow),
    /// A run ended.
    Outcome(OutcomeRow),
}

/// A run as the store holds it, for resume and `bilayer runs show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// The run's row.
    pub run: RunRow,
    /// Its hops, ordered by (branch, hop_no).
    pub hops: Vec<HopRow>,
    /// Its calls, ordered by (branch, hop_no, call_key).
    pub calls: Vec<CallRow>,
    /// Its outcome, once it has one.
    pub outcome: Option<OutcomeRow>,
    /// Set when a row of this run could not be read (a wrong type, a NULL where a value
    /// belongs): the table and the cause. The run is then failed on resume, alone.
    pub unreadable: Option<String>,
}

/// A run as `bilayer runs list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// The run.
    pub run_id: String,
    /// Its batch.
    pub batch_id: String,
    /// Its input number.
    pub input_no: u64,
    /// `running`, `done` or `failed`.
    pub status: RunStatus,
    /// How many hops it made so far.
    pub hops: u64,
    /// Unix milliseconds.
    pub started_at: i64,
    /// Unix milliseconds, once finished.
    pub finished_at: Option<i64>,
}

/// Where a run is, as `bilayer runs list --status` filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// No outcome yet.
    Running,
    /// Its outcome is `ok`.
    Done,
    /// Its outcome is `error` or `dead_letter`.
    Failed,
}

impl RunStatus {
    /// `running`, `done` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
        }
    }
}
