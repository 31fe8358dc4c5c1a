//! Continuing a run from its journal after the process that ran it died: what it had done
//! (its hops, each with its output and routing decision), what is left (the *frontier*: the
//! messages a recorded hop routed on whose next hop the journal does not hold), and what it
//! ended in, if it had.
//!
//! Hop rows are committed in the order they were appended, and a hop's output is delivered
//! only after its row is committed, so every hop in the journal has its parent there too: the
//! hop before it on its branch, or the fan-out that made its branch. A hop without one means
//! the journal was tampered with or truncated; that run fails, alone, with the reason.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::rows::{CallRow, HopRow, RunRecord};
use crate::system::{branch_of_fanout, Outcome, OutcomeStatus};

/// What a journaled run needs to go on.
#[derive(Debug)]
pub(crate) enum Resume {
    /// It had ended: its outcome, read back (`replayed`).
    Ended(Outcome),
    /// Its first hop had not been recorded: admitted again from its input, the calls that
    /// hop had made answered from the journal.
    Fresh(Value, Vec<CallRow>),
    /// It was on its way: its finished branches and the messages to deliver again.
    Continue(Plan),
}

/// A run on its way, as the journal left it.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The outcomes of its branches that had ended (terminal, or dead-lettered by routing).
    pub(crate) finished: Vec<Outcome>,
    /// The messages to deliver again.
    pub(crate) frontier: Vec<Resumed>,
    /// Whether the run ever fanned out (its outcome then joins its branches).
    pub(crate) fanned_out: bool,
    /// The calls of hops the journal does not hold (they were running at the crash): answered
    /// from the journal when those hops run again.
    pub(crate) interrupted_calls: Vec<CallRow>,
}

/// A message a recorded hop routed on, to deliver again.
#[derive(Debug)]
pub(crate) struct Resumed {
    pub(crate) target: String,
    pub(crate) payload: Value,
    pub(crate) hops: Vec<Arc<str>>,
    pub(crate) breadth: u32,
    pub(crate) branch: Option<Arc<str>>,
}

/// The routing decision a hop row holds.
enum Decision {
    Terminal,
    Next(String),
    Fanout(Vec<String>),
    DeadLetter(String),
}

/// Reads `record` (the run of input `input_no`, whose line now holds `input`) back into what
/// it needs to go on, or the reason it cannot (a corrupt or truncated row, an input that is
/// not the one journaled): that reason is the run's error outcome.
pub(crate) fn plan(record: RunRecord, input: &Value, trace_id: &str) -> Result<Resume, String> {
    let run_id = Arc::clone(&record.run.run_id);
    if let Some(cause) = record.unreadable {
        return Err(format!(
            "the journal of run {run_id} cannot be read: {cause}"
        ));
    }
    let journaled: Value = serde_json::from_str(&record.run.input)
        .map_err(|e| corrupt(&run_id, "bilayer_runs", "input", &e))?;
    if &journaled != input {
        return Err(format!(
            "input {} is not the input journaled for run {run_id}: resume with the same input \
             file (or start a new batch without --resume)",
            record.run.input_no
        ));
    }
    if let Some(outcome) = record.outcome {
        let mut outcome: Outcome = read_json(&outcome.outcome)
            .map_err(|e| corrupt(&run_id, "bilayer_outcomes", "outcome", &e))?;
        outcome.replayed = true;
        outcome.run_id = Some(run_id.to_string());
        return Ok(Resume::Ended(outcome));
    }
    if record.hops.is_empty() {
        return Ok(Resume::Fresh(journaled, record.calls));
    }
    let input_no = record.run.input_no;
    let mut hops = record.hops;
    hops.sort_by_key(|hop| hop.hop_no);
    let held: HashMap<(&str, u32), usize> = hops
        .iter()
        .enumerate()
        .map(|(at, hop)| ((&*hop.branch, hop.hop_no), at))
        .collect();
    // For each hop, in hop order (parents first): the agents visited and the branch's breadth.
    let mut paths: Vec<(Vec<Arc<str>>, u32)> = Vec::with_capacity(hops.len());
    let mut decisions = Vec::with_capacity(hops.len());
    for hop in &hops {
        let where_ = format!("hop {} of branch \"{}\"", hop.hop_no, hop.branch);
        let decision = read_decision(&hop.decision).map_err(|e| {
            corrupt(
                &run_id,
                "bilayer_hops",
                &format!("decision of {where_}"),
                &e,
            )
        })?;
        let (mut path, breadth) = if hop.hop_no == 0 {
            if !hop.branch.is_empty() {
                return Err(orphan(&run_id, &where_));
            }
            (Vec::new(), 1)
        } else if let Some(&parent) = held.get(&(&*hop.branch, hop.hop_no - 1)) {
            paths[parent].clone()
        } else {
            let parent_branch = hop.branch.rsplit_once('.').map_or("", |(parent, _)| parent);
            let Some(&parent) = held.get(&(parent_branch, hop.hop_no - 1)) else {
                return Err(orphan(&run_id, &where_));
            };
            let width = match &decisions[parent] {
                Decision::Fanout(targets) => targets.len(),
                _ => return Err(orphan(&run_id, &where_)),
            };
            let (path, breadth) = paths[parent].clone();
            (
                path,
                breadth.saturating_mul(u32::try_from(width).unwrap_or(u32::MAX)),
            )
        };
        path.push(Arc::clone(&hop.agent));
        paths.push((path, breadth));
        decisions.push(decision);
    }
    let mut finished = Vec::new();
    let mut frontier = Vec::new();
    let mut fanned_out = false;
    for (at, hop) in hops.iter().enumerate() {
        let (path, breadth) = &paths[at];
        let next_held = |branch: &str| held.contains_key(&(branch, hop.hop_no + 1));
        let output = || read_output(&run_id, hop);
        let branch = (!hop.branch.is_empty()).then(|| Arc::clone(&hop.branch));
        match &decisions[at] {
            Decision::Terminal => finished.push(Outcome::branch_end(
                input_no,
                trace_id.to_string(),
                OutcomeStatus::Ok,
                Some(hop.agent.to_string()),
                path.iter().map(|a| a.to_string()).collect(),
                Some(output()?),
                None,
            )),
            Decision::DeadLetter(reason) => finished.push(Outcome::branch_end(
                input_no,
                trace_id.to_string(),
                OutcomeStatus::DeadLetter,
                Some(hop.agent.to_string()),
                path.iter().map(|a| a.to_string()).collect(),
                None,
                Some(reason.clone()),
            )),
            Decision::Next(target) => {
                if !next_held(&hop.branch) {
                    frontier.push(Resumed {
                        target: target.clone(),
                        payload: output()?,
                        hops: path.clone(),
                        breadth: *breadth,
                        branch,
                    });
                }
            }
            Decision::Fanout(targets) => {
                fanned_out = true;
                let width = u32::try_from(targets.len()).unwrap_or(u32::MAX);
                for (index, target) in targets.iter().enumerate() {
                    let child = branch_of_fanout(Some(&hop.branch), index);
                    if !next_held(&child) {
                        frontier.push(Resumed {
                            target: target.clone(),
                            payload: output()?,
                            hops: path.clone(),
                            breadth: breadth.saturating_mul(width),
                            branch: Some(child),
                        });
                    }
                }
            }
        }
    }
    let interrupted_calls = record
        .calls
        .into_iter()
        .filter(|call| !held.contains_key(&(&*call.branch, call.hop_no)))
        .collect();
    Ok(Resume::Continue(Plan {
        finished,
        frontier,
        fanned_out,
        interrupted_calls,
    }))
}

fn read_decision(text: &str) -> Result<Decision, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    match &value {
        Value::String(s) if s == "terminal" => return Ok(Decision::Terminal),
        Value::Object(map) if map.len() == 1 => {
            if let Some(Value::String(next)) = map.get("next") {
                return Ok(Decision::Next(next.clone()));
            }
            if let Some(Value::String(reason)) = map.get("dead_letter") {
                return Ok(Decision::DeadLetter(reason.clone()));
            }
            if let Some(Value::Array(targets)) = map.get("fanout") {
                let targets: Option<Vec<String>> = targets
                    .iter()
                    .map(|t| t.as_str().map(str::to_string))
                    .collect();
                if let Some(targets) = targets.filter(|t| !t.is_empty()) {
                    return Ok(Decision::Fanout(targets));
                }
            }
        }
        _ => {}
    }
    Err(format!("`{text}` is not a routing decision"))
}

fn read_output(run_id: &str, hop: &HopRow) -> Result<Value, String> {
    let where_ = format!("output of hop {} of branch \"{}\"", hop.hop_no, hop.branch);
    let text = hop
        .output
        .as_deref()
        .ok_or_else(|| corrupt(run_id, "bilayer_hops", &where_, &"it is NULL"))?;
    read_json(text).map_err(|e| corrupt(run_id, "bilayer_hops", &where_, &e))
}

/// How deep a journaled value may nest and still be read back: far past what plugins make
/// (a script's JSON is bounded at 128 levels by default), shallow enough that reading it
/// needs well under a thread's default stack. A row past it is refused, not parsed.
const MAX_READ_DEPTH: usize = 1024;

/// Reads journaled JSON text back. serde_json's own bound (128 levels) would refuse values
/// the journal wrote itself (an outcome wraps a 128-deep output in two more levels), so it
/// is lifted, and [`MAX_READ_DEPTH`] checked first instead: a tampered row cannot exhaust
/// the stack.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let depth = nesting_depth(text);
    if depth > MAX_READ_DEPTH {
        return Err(format!(
            "it nests {depth} levels deep, past the {MAX_READ_DEPTH} the journal reads back"
        ));
    }
    let mut reader = serde_json::Deserializer::from_str(text);
    reader.disable_recursion_limit();
    let value = T::deserialize(&mut reader).map_err(|e| e.to_string())?;
    reader.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// The deepest nesting of arrays and objects in JSON text (strings skipped).
fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn corrupt(run_id: &str, table: &str, what: &str, cause: &dyn std::fmt::Display) -> String {
    format!(
        "the journal of run {run_id} is corrupt: {table}, {what}: {cause}; the run cannot \
         resume (`bilayer runs show {run_id}` shows what it holds)"
    )
}

fn orphan(run_id: &str, where_: &str) -> String {
    format!(
        "the journal of run {run_id} is truncated: bilayer_hops holds {where_} but not the hop \
         that sent its message; the run cannot resume"
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::{plan, Resume};
    use crate::journal::rows::{CallRow, HopRow, OutcomeRow, RunRecord, RunRow};

    fn record(hops: Vec<HopRow>) -> RunRecord {
        RunRecord {
            run: RunRow {
                run_id: Arc::from("b-1"),
                batch_id: Arc::from("b"),
                input_no: 1,
                input: r#"{"id":1}"#.into(),
                started_at: 0,
            },
            hops,
            calls: Vec::new(),
            outcome: None,
            unreadable: None,
        }
    }

    fn hop(branch: &str, hop_no: u32, agent: &str, output: &str, decision: &str) -> HopRow {
        HopRow {
            run_id: Arc::from("b-1"),
            branch: Arc::from(branch),
            hop_no,
            agent: Arc::from(agent),
            version: "1".into(),
            output: Some(output.into()),
            error: None,
            decision: decision.into(),
            started_at: 0,
            elapsed_us: 1,
        }
    }

    fn continued(resume: Resume) -> super::Plan {
        match resume {
            Resume::Continue(plan) => plan,
            other => panic!("expected a run to continue, got {other:?}"),
        }
    }

    #[test]
    fn a_run_continues_after_its_last_recorded_hop_with_the_path_so_far() {
        let hops = vec![
            hop(
                "",
                1,
                "manager",
                r#"{"step":2}"#,
                r#"{"next":"fulfillment"}"#,
            ),
            hop("", 0, "intake", r#"{"step":1}"#, r#"{"next":"manager"}"#),
        ];
        let plan = continued(plan(record(hops), &json!({"id": 1}), "t").unwrap());
        assert!(plan.finished.is_empty());
        assert_eq!(plan.frontier.len(), 1);
        let next = &plan.frontier[0];
        assert_eq!(next.target, "fulfillment");
        assert_eq!(next.payload, json!({"step": 2}));
        let path: Vec<&str> = next.hops.iter().map(|h| &**h).collect();
        assert_eq!(path, ["intake", "manager"]);
        assert!(next.branch.is_none());
        assert!(!plan.fanned_out);
    }

    #[test]
    fn a_fan_out_resumes_only_the_branches_the_journal_has_not_seen_go_on() {
        let hops = vec![
            hop("", 0, "split", "1", r#"{"fanout":["a","b","c"]}"#),
            hop("0", 1, "a", "2", r#""terminal""#),
            hop("2", 1, "c", "3", r#"{"next":"d"}"#),
        ];
        let plan = continued(plan(record(hops), &json!({"id": 1}), "t").unwrap());
        assert!(plan.fanned_out);
        assert_eq!(plan.finished.len(), 1, "branch 0 ended at a");
        assert_eq!(plan.finished[0].hops, ["split", "a"]);
        let mut targets: Vec<(&str, Option<&str>, u32)> = plan
            .frontier
            .iter()
            .map(|r| (r.target.as_str(), r.branch.as_deref(), r.breadth))
            .collect();
        targets.sort();
        assert_eq!(targets, [("b", Some("1"), 3), ("d", Some("2"), 3)]);
    }

    #[test]
    fn an_ended_run_reads_its_outcome_back_marked_replayed() {
        let mut record = record(vec![hop("", 0, "a", "1", r#""terminal""#)]);
        record.outcome = Some(OutcomeRow {
            run_id: Arc::from("b-1"),
            status: "ok".into(),
            outcome:
                r#"{"input":1,"status":"ok","agent":"a","hops":["a"],"output":1,"trace_id":"00"}"#
                    .into(),
            finished_at: 0,
        });
        match plan(record, &json!({"id": 1}), "t").unwrap() {
            Resume::Ended(outcome) => {
                assert!(outcome.replayed);
                assert_eq!(outcome.run_id.as_deref(), Some("b-1"));
                assert_eq!(outcome.output, Some(json!(1)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_calls_of_the_hop_that_was_running_are_kept_for_its_replay() {
        let mut record = record(vec![hop("", 0, "a", "1", r#"{"next":"b"}"#)]);
        let call = |hop_no| CallRow {
            run_id: Arc::from("b-1"),
            branch: Arc::from(""),
            hop_no,
            call_key: "call:0".into(),
            target: "llm".into(),
            result: Some("x".into()),
            error: None,
            elapsed_us: 1,
        };
        record.calls = vec![call(0), call(1)];
        let plan = continued(plan(record, &json!({"id": 1}), "t").unwrap());
        assert_eq!(plan.interrupted_calls.len(), 1);
        assert_eq!(plan.interrupted_calls[0].hop_no, 1);
    }

    #[test]
    fn a_corrupt_or_orphaned_row_fails_the_run_with_the_reason() {
        let corrupt = record(vec![hop("", 0, "a", r#"{"trunc"#, r#"{"next":"b"}"#)]);
        let error = plan(corrupt, &json!({"id": 1}), "t").unwrap_err();
        assert!(
            error.contains("corrupt") && error.contains("bilayer_hops"),
            "{error}"
        );
        let orphan = record(vec![hop("", 3, "a", "1", r#"{"next":"b"}"#)]);
        let error = plan(orphan, &json!({"id": 1}), "t").unwrap_err();
        assert!(error.contains("truncated"), "{error}");
        // Deeper than serde_json's own 128 levels reads back; a tampered row past the bound
        // is refused without being parsed.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let deep_run = record(vec![hop("", 0, "a", &deep, r#"{"next":"b"}"#)]);
        let plan_of_deep = continued(plan(deep_run, &json!({"id": 1}), "t").unwrap());
        assert_eq!(plan_of_deep.frontier.len(), 1);
        let bomb = "[".repeat(1_000_000);
        let too_deep = record(vec![hop("", 0, "a", &bomb, r#"{"next":"b"}"#)]);
        let error = plan(too_deep, &json!({"id": 1}), "t").unwrap_err();
        assert!(error.contains("nests 1000000 levels deep"), "{error}");
        let other_input = record(Vec::new());
        let error = plan(other_input, &json!({"id": 2}), "t").unwrap_err();
        assert!(error.contains("not the input journaled"), "{error}");
    }
}
