//! A durable agent system's side of the journal: what the hop path appends, and the effects a
//! commit releases.
//!
//! - Admission appends the run's row (its input) and delivers at once: the first hop's entry
//!   commits after it (the writer keeps append order), so nothing the run does can be durable
//!   before the run itself is.
//! - A hop that answered appends its row (output, routing decision, version) and its output
//!   goes on only once that row is committed ([`RunJournal::hop_done`]): a crash never leaves
//!   a message delivered whose hop the journal does not hold.
//! - A call the hop makes is recorded through the hop's [`HopRecorder`], in its call chain;
//!   on a second run of the same hop (resume, redelivery) the recorder answers it from the
//!   journal instead.
//! - The outcome is appended when the run ends, and handed to whoever waits only once
//!   committed ([`RunJournal::record_outcome`]).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bilayer_plugins::{HopJournal, JournalKey};
use rustc_hash::FxHashMap;
use serde_json::Value;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::rows::{CallRow, Entry, HopRow, OutcomeRow, RunRow};
use super::store::JournalStore;
use super::writer::JournalWriter;
use crate::system::{Envelope, Next, Outcome, OutcomeSink, OutcomeStatus, SystemCore};

/// A hop as the journal keys it: run, branch, hop number.
type HopKey = (Arc<str>, Arc<str>, u32);

/// The journal of an agent system's runs: hand one to
/// [`AgentSystemBuilder::journal`](crate::AgentSystemBuilder::journal) and every input becomes a
/// durable run of the batch `batch_id`.
pub struct RunJournal {
    store: JournalStore,
    writer: JournalWriter,
    batch_id: Arc<str>,
    /// The calls recorded by hops that were running when an earlier process died, by run,
    /// branch and hop: answered from here when those hops run again.
    replay: Mutex<FxHashMap<HopKey, Vec<CallRow>>>,
    /// Whether `replay` holds anything (read on every hop; the lock only when it does).
    replaying: AtomicBool,
}

impl std::fmt::Debug for RunJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunJournal")
            .field("batch_id", &self.batch_id)
            .field("replaying", &self.replaying.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RunJournal {
    /// The journal of batch `batch_id` (begun in `store`, or resumed; a NATS worker, which
    /// admits no run, names none: ""). Starts the store's writer.
    pub fn new(store: &JournalStore, batch_id: impl Into<Arc<str>>) -> RunJournal {
        RunJournal {
            store: store.clone(),
            writer: store.writer(),
            batch_id: batch_id.into(),
            replay: Mutex::new(FxHashMap::default()),
            replaying: AtomicBool::new(false),
        }
    }

    /// The batch every run of this system belongs to.
    pub fn batch_id(&self) -> &str {
        &self.batch_id
    }

    /// The store.
    pub fn store(&self) -> &JournalStore {
        &self.store
    }

    /// What appends to the store.
    pub fn writer(&self) -> &JournalWriter {
        &self.writer
    }

    /// The id of input `input`'s run: `<batch>-<input>`, the same when the batch is resumed.
    pub fn run_id(&self, input: u64) -> Arc<str> {
        Arc::from(format!("{}-{input}", self.batch_id))
    }

    /// Keeps the calls an interrupted hop made, to answer them when it runs again.
    pub(crate) fn expect_replay(&self, calls: Vec<CallRow>) {
        if calls.is_empty() {
            return;
        }
        let mut replay = self.replay.lock().unwrap_or_else(|p| p.into_inner());
        for call in calls {
            replay
                .entry((
                    Arc::clone(&call.run_id),
                    Arc::clone(&call.branch),
                    call.hop_no,
                ))
                .or_default()
                .push(call);
        }
        self.replaying.store(true, Ordering::Release);
    }

    /// Appends the row of an admitted run (delivered at once: see the module docs).
    pub(crate) fn record_run(&self, run_id: &Arc<str>, input_no: u64, input: &Value) {
        self.writer.append(
            Entry::Run(RunRow {
                run_id: Arc::clone(run_id),
                batch_id: Arc::clone(&self.batch_id),
                input_no,
                input: input.to_string(),
                started_at: unix_ms(SystemTime::now()),
            }),
            None,
        );
    }

    /// The journal of the hop `envelope` is about to make (its agent already counted in its
    /// hops), for the hop's call chain.
    pub(crate) fn hop_recorder(&self, envelope: &Envelope) -> Option<Arc<HopRecorder>> {
        let run_id = envelope.ticket.run.as_ref()?;
        let branch = envelope.branch.clone().unwrap_or_else(root_branch);
        let hop_no = hop_no(envelope);
        let recorded = if self.replaying.load(Ordering::Acquire) {
            let mut replay = self.replay.lock().unwrap_or_else(|p| p.into_inner());
            let calls = replay
                .remove(&(Arc::clone(run_id), Arc::clone(&branch), hop_no))
                .unwrap_or_default();
            if replay.is_empty() {
                self.replaying.store(false, Ordering::Release);
            }
            calls
        } else {
            Vec::new()
        };
        Some(Arc::new(HopRecorder {
            run_id: Arc::clone(run_id),
            branch,
            hop_no,
            writer: self.writer.clone(),
            calls: AtomicU32::new(0),
            steps: Mutex::new(FxHashMap::default()),
            recorded: Mutex::new(recorded),
        }))
    }

    /// A hop answered with `output`: its row is appended, and the output goes on (routing
    /// decides again, as it would have) once the row is committed.
    pub(crate) fn hop_done(
        &self,
        core: &Arc<SystemCore>,
        envelope: Envelope,
        output: Value,
        version: &str,
        elapsed: Duration,
    ) {
        let Some(run_id) = envelope.ticket.run.clone() else {
            return core.forward(envelope, output);
        };
        let agent = envelope
            .hops
            .last()
            .cloned()
            .unwrap_or_else(|| Arc::from(""));
        // Written out rather than built as a `Value` and printed: this runs on every hop.
        let decision = match core.decide(&agent, &output) {
            Ok(Next::Terminal) => String::from(r#""terminal""#),
            Ok(Next::One(target)) => format!(r#"{{"next":{}}}"#, json_text(&target)),
            // A fan-out past `max_branches` is dead-lettered by the carrier: journaled as such,
            // so that a resume does not make it.
            Ok(Next::Many(targets)) => match core.widen(envelope.breadth, targets.len()) {
                Ok(_) => {
                    let targets: Vec<String> = targets.iter().map(|t| json_text(t)).collect();
                    format!(r#"{{"fanout":[{}]}}"#, targets.join(","))
                }
                Err(reason) => {
                    format!(r#"{{"dead_letter":{}}}"#, json_text(&reason.to_string()))
                }
            },
            Err(reason) => format!(r#"{{"dead_letter":{}}}"#, json_text(&reason.to_string())),
        };
        let now = SystemTime::now();
        let row = HopRow {
            run_id,
            branch: envelope.branch.clone().unwrap_or_else(root_branch),
            hop_no: hop_no(&envelope),
            agent,
            version: version.to_string(),
            output: Some(output.to_string()),
            error: None,
            decision,
            started_at: unix_ms(now.checked_sub(elapsed).unwrap_or(now)),
            elapsed_us: i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
        };
        let core = Arc::clone(core);
        self.writer.append(
            Entry::Hop(row),
            Some(Box::new(move |committed| match committed {
                Ok(()) => core.forward(envelope, output),
                Err(error) => {
                    let reason = crate::system::DeadLetterReason::Journal(error.to_string());
                    core.dead_letter(envelope, reason)
                }
            })),
        );
    }

    /// A hop failed for good: its row is appended with the error and the decision
    /// `{"dead_letter": reason}`, and its branch is dead-lettered once the row is committed (as
    /// an answered hop's output goes on only then: over NATS the dead letter is a publication
    /// and an acknowledgement, which must not come before the journal holds the hop and its
    /// calls).
    pub(crate) fn hop_failed(
        &self,
        core: &Arc<SystemCore>,
        envelope: Envelope,
        reason: crate::system::DeadLetterReason,
        version: &str,
    ) {
        let Some(run_id) = envelope.ticket.run.clone() else {
            return core.dead_letter(envelope, reason);
        };
        let text = reason.to_string();
        let decision = format!(r#"{{"dead_letter":{}}}"#, json_text(&text));
        let row = HopRow {
            run_id,
            branch: envelope.branch.clone().unwrap_or_else(root_branch),
            hop_no: hop_no(&envelope),
            agent: envelope
                .hops
                .last()
                .cloned()
                .unwrap_or_else(|| Arc::from("")),
            version: version.to_string(),
            output: None,
            error: Some(storable(text)),
            decision,
            started_at: unix_ms(SystemTime::now()),
            elapsed_us: 0,
        };
        let core = Arc::clone(core);
        self.writer.append(
            Entry::Hop(row),
            Some(Box::new(move |committed| {
                let reason = match committed {
                    Ok(()) => reason,
                    Err(error) => crate::system::DeadLetterReason::Journal(error.to_string()),
                };
                core.dead_letter(envelope, reason)
            })),
        );
    }

    /// A run ended: its outcome is appended and handed to `sink` once committed (or, if the
    /// journal cannot take it, an error outcome saying so).
    pub(crate) fn record_outcome(
        &self,
        outcome: Outcome,
        sink: Option<(OutcomeSink, OwnedSemaphorePermit)>,
        stream: mpsc::UnboundedSender<(Outcome, OwnedSemaphorePermit)>,
    ) {
        let Some(run_id) = outcome.run_id.as_deref() else {
            return crate::system::deliver_outcome(sink, outcome, &stream);
        };
        let text = match serde_json::to_string(&outcome) {
            Ok(text) => text,
            Err(e) => {
                // Only a non-finite float in an output could do this; say so, do not lose it.
                let failed = journal_failed(outcome, &format!("the outcome is not JSON: {e}"));
                return crate::system::deliver_outcome(sink, failed, &stream);
            }
        };
        let row = OutcomeRow {
            run_id: Arc::from(run_id),
            status: outcome.status.as_str().to_string(),
            outcome: text,
            finished_at: unix_ms(SystemTime::now()),
        };
        self.writer.append(
            Entry::Outcome(row),
            Some(Box::new(move |committed| {
                let outcome = match committed {
                    Ok(()) => outcome,
                    Err(error) => journal_failed(outcome, &error.to_string()),
                };
                crate::system::deliver_outcome(sink, outcome, &stream)
            })),
        );
    }
}

/// An outcome the journal could not record: reported as an error, since a resume would run
/// its input again.
fn journal_failed(outcome: Outcome, cause: &str) -> Outcome {
    Outcome {
        status: OutcomeStatus::Error,
        error: Some(format!(
            "the journal could not record this run's outcome ({cause}); a resume finishes \
             the run again from its recorded hops"
        )),
        ..outcome
    }
}

/// `text` as a column can hold it: PostgreSQL's text refuses NUL (and would fail the whole
/// batch), so a plugin's answer or error carrying one is journaled with U+FFFD in its place.
/// JSON texts never carry one (serde_json writes `\u0000`).
fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// `text` as a JSON string literal.
fn json_text(text: &str) -> String {
    Value::from(text).to_string()
}

/// The branch of a run's first message: "".
fn root_branch() -> Arc<str> {
    static ROOT: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    Arc::clone(ROOT.get_or_init(|| Arc::from("")))
}

/// The number of the hop being made on `envelope` (its agent already counted): 0-based.
fn hop_no(envelope: &Envelope) -> u32 {
    u32::try_from(envelope.hops.len().saturating_sub(1)).unwrap_or(u32::MAX)
}

/// `at` in Unix milliseconds, as the journal's rows hold times (0 before 1970).
pub fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The journal of one hop of a durable run, in its call chain: counts its calls and steps,
/// answers those an earlier run of the hop recorded, and records the new ones.
#[derive(Debug)]
pub(crate) struct HopRecorder {
    run_id: Arc<str>,
    branch: Arc<str>,
    hop_no: u32,
    writer: JournalWriter,
    calls: AtomicU32,
    steps: Mutex<FxHashMap<String, u32>>,
    /// What an earlier run of this hop recorded (taken as they are answered).
    recorded: Mutex<Vec<CallRow>>,
}

impl HopJournal for HopRecorder {
    fn next_key(&self, kind: JournalKey<'_>) -> String {
        match kind {
            JournalKey::Call => format!("call:{}", self.calls.fetch_add(1, Ordering::Relaxed)),
            JournalKey::Step(name) => {
                let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
                let count = steps.entry(name.to_string()).or_default();
                let key = format!("step:{name}#{count}");
                *count += 1;
                key
            }
        }
    }

    fn recorded(&self, key: &str, target: &str) -> Option<Result<String, String>> {
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        let at = recorded.iter().position(|call| call.call_key == key)?;
        let call = recorded.swap_remove(at);
        if call.target != target {
            tracing::warn!(
                run_id = %self.run_id,
                key,
                recorded = %call.target,
                now = target,
                "a replayed hop made a different call than the journal holds under the same key; \
                 making it (does the script branch on time or randomness before its calls?)"
            );
            return None;
        }
        Some(match (call.result, call.error) {
            (Some(result), _) => Ok(result),
            (None, Some(error)) => Err(error),
            (None, None) => Err(format!(
                "the journal's row of {key} of run {} has neither a result nor an error",
                self.run_id
            )),
        })
    }

    fn record(&self, key: String, target: &str, result: Result<&str, &str>, elapsed: Duration) {
        let (result, error) = match result {
            Ok(text) => (Some(storable(text.to_string())), None),
            Err(error) => (None, Some(storable(error.to_string()))),
        };
        self.writer.append(
            Entry::Call(CallRow {
                run_id: Arc::clone(&self.run_id),
                branch: Arc::clone(&self.branch),
                hop_no: self.hop_no,
                call_key: storable(key),
                target: storable(target.to_string()),
                result,
                error,
                elapsed_us: i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
            }),
            None,
        );
    }
}
