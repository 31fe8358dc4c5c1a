//! `bilayer runs list|show|prune --store URL`: the journal of durable runs (issue 24) from the
//! command line, to see what a run did (its hops with versions and timings, the calls each hop
//! made with their results, its outcome) and to keep the journal from growing without end.
//!
//! Tables for people by default, `--json` for programs (`list`: one object per line; `show`:
//! one document). The store is opened without creating anything: a mistyped path is an
//! error, not a new empty journal. A build without SQLite and PostgreSQL keeps the subcommand
//! and says which feature it needs.

use std::time::Duration;

use clap::{Subcommand, ValueEnum};

/// The `runs` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// List runs, newest first: run id, input number, status, hops, start and end times.
    List {
        /// The journal store: sqlite:PATH, sqlite://PATH or postgres://...
        #[arg(long, value_name = "URL")]
        store: String,
        /// Only runs in this state (running: no outcome yet; done: outcome ok; failed:
        /// outcome error or dead letter).
        #[arg(long, value_enum)]
        status: Option<StatusFilter>,
        /// The most runs to list.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one run: its input, every hop (agent, version, output or error, routing decision,
    /// timing) with the calls it made, and its outcome.
    Show {
        /// The run id (printed as "run_id" in each outcome line of `bilayer run --store`).
        run_id: String,
        /// The journal store: sqlite:PATH, sqlite://PATH or postgres://...
        #[arg(long, value_name = "URL")]
        store: String,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete finished runs older than an age (running runs are never touched), or with
    /// --compact keep their run and outcome and delete only their hops and calls.
    Prune {
        /// The journal store: sqlite:PATH, sqlite://PATH or postgres://...
        #[arg(long, value_name = "URL")]
        store: String,
        /// Runs whose outcome is older than this: a number and a unit, s, m, h or d (7d, 12h,
        /// 30m); 0s for every finished run.
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Duration,
        /// Keep each run's row and outcome; delete only its hops and calls.
        #[arg(long)]
        compact: bool,
    },
}

/// `--status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StatusFilter {
    /// No outcome yet.
    Running,
    /// Outcome ok.
    Done,
    /// Outcome error or dead letter.
    Failed,
}

/// `7d`, `12h`, `30m`, `45s`, `0s`.
fn parse_age(text: &str) -> Result<Duration, String> {
    let refuse = || {
        format!(
            "`{text}` is not an age: write a number and a unit, s (seconds), m (minutes), \
             h (hours) or d (days), e.g. 7d, 12h or 0s"
        )
    };
    let text = text.trim();
    // The unit is the last character, whatever its width (`7µ` is refused, not a panic).
    let unit_at = text
        .char_indices()
        .last()
        .map(|(at, _)| at)
        .ok_or_else(refuse)?;
    let (number, unit) = text.split_at(unit_at);
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(refuse()),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse());
    }
    let number: u64 = number.parse().map_err(|_| refuse())?;
    number
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(refuse)
}

impl RunsCommand {
    fn store(&self) -> &str {
        match self {
            RunsCommand::List { store, .. }
            | RunsCommand::Show { store, .. }
            | RunsCommand::Prune { store, .. } => store,
        }
    }
}

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
pub(super) async fn run(
    command: RunsCommand,
) -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
    Err(without_backend(command.store()).into())
}

/// The error of `bilayer runs` in a build with neither store backend: the feature the URL's
/// backend needs.
#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
fn without_backend(url: &str) -> String {
    let feature = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        "postgres"
    } else {
        "sqlite"
    };
    bilayer::features::missing(feature, "`bilayer runs` reads the journal of durable runs")
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(super) use with_store::run;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod with_store {
    use std::io::Write;
    use std::process::ExitCode;

    use bilayer::journal::{JournalStore, RunRecord, RunStatus, RunSummary, StoreOptions};
    use serde_json::{json, Value};

    use super::{RunsCommand, StatusFilter};

    pub(in crate::cli) async fn run(
        command: RunsCommand,
    ) -> Result<ExitCode, Box<dyn std::error::Error>> {
        let options = StoreOptions {
            create_if_missing: false,
            max_connections: 2,
            ..StoreOptions::default()
        };
        let store = JournalStore::open(command.store(), options).await?;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let written = match command {
            RunsCommand::List {
                status,
                limit,
                json,
                ..
            } => {
                let status = status.map(|status| match status {
                    StatusFilter::Running => RunStatus::Running,
                    StatusFilter::Done => RunStatus::Done,
                    StatusFilter::Failed => RunStatus::Failed,
                });
                let runs = store.list_runs(status, limit).await?;
                if json {
                    list_json(&mut out, &runs)
                } else {
                    list_table(&mut out, &runs, store.url())
                }
            }
            RunsCommand::Show { run_id, json, .. } => {
                let Some(record) = store.run(&run_id).await? else {
                    return Err(format!("no run {run_id} in {}", store.url()).into());
                };
                if json {
                    writeln!(out, "{}", show_json(&record))
                } else {
                    show_text(&mut out, &record)
                }
            }
            RunsCommand::Prune {
                older_than,
                compact,
                ..
            } => {
                let count = store.prune(older_than, compact).await?;
                // The contract's words, whatever the count (scripts match them).
                let done = if compact { "compacted" } else { "pruned" };
                writeln!(out, "{done} {count} runs")
            }
        };
        store.close().await;
        match written.and_then(|()| out.flush()) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            // Whoever reads stdout closed it (`| head`): what they wanted was printed.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
            Err(e) => Err(format!("cannot write to stdout: {e}").into()),
        }
    }

    fn list_json(out: &mut impl Write, runs: &[RunSummary]) -> std::io::Result<()> {
        for run in runs {
            let line = json!({
                "run_id": run.run_id,
                "batch_id": run.batch_id,
                "input": run.input_no,
                "status": run.status.as_str(),
                "hops": run.hops,
                "started_at": run.started_at,
                "finished_at": run.finished_at,
            });
            writeln!(out, "{line}")?;
        }
        Ok(())
    }

    fn list_table(out: &mut impl Write, runs: &[RunSummary], store: &str) -> std::io::Result<()> {
        if runs.is_empty() {
            return writeln!(out, "no runs in {store}");
        }
        let rows: Vec<[String; 6]> = runs
            .iter()
            .map(|run| {
                [
                    run.run_id.clone(),
                    run.input_no.to_string(),
                    run.status.as_str().to_string(),
                    run.hops.to_string(),
                    utc(run.started_at),
                    run.finished_at.map_or_else(|| "-".to_string(), utc),
                ]
            })
            .collect();
        let header = [
            "RUN_ID",
            "INPUT",
            "STATUS",
            "HOPS",
            "STARTED (UTC)",
            "FINISHED (UTC)",
        ];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        let line = |out: &mut dyn Write, cells: [&str; 6]| {
            // Numbers right-aligned, text left-aligned; no trailing spaces.
            writeln!(
                out,
                "{:<w0$}  {:>w1$}  {:<w2$}  {:>w3$}  {:<w4$}  {}",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                cells[4],
                cells[5],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4],
            )
        };
        line(out, header)?;
        for row in &rows {
            line(out, row.each_ref().map(String::as_str))?;
        }
        Ok(())
    }

    /// JSON text as its value; text that does not parse (damaged, or a plugin's plain-text
    /// answer) as a string.
    fn value(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
    }

    fn show_json(record: &RunRecord) -> Value {
        let run = &record.run;
        let mut hops: Vec<Value> = record
            .hops
            .iter()
            .map(|hop| {
                json!({
                    "branch": &*hop.branch,
                    "hop_no": hop.hop_no,
                    "agent": &*hop.agent,
                    "version": hop.version,
                    "output": hop.output.as_deref().map(value),
                    "error": hop.error,
                    "decision": value(&hop.decision),
                    "started_at": hop.started_at,
                    "elapsed_us": hop.elapsed_us,
                    "calls": calls_json(record, &hop.branch, hop.hop_no),
                })
            })
            .collect();
        // Calls of a hop still in progress (no hop row yet: the run stopped inside it).
        for (branch, hop_no) in hops_in_progress(record) {
            hops.push(json!({
                "branch": branch,
                "hop_no": hop_no,
                "in_progress": true,
                "calls": calls_json(record, branch, hop_no),
            }));
        }
        let mut document = json!({
            "run_id": &*run.run_id,
            "batch_id": &*run.batch_id,
            "input_no": run.input_no,
            "input": value(&run.input),
            "status": record.status().as_str(),
            "started_at": run.started_at,
            "finished_at": record.outcome.as_ref().map(|o| o.finished_at),
            "hops": hops,
            "outcome": record.outcome.as_ref().map(|o| value(&o.outcome)),
        });
        if let (Some(cause), Some(fields)) = (&record.unreadable, document.as_object_mut()) {
            fields.insert("unreadable".to_string(), Value::String(cause.clone()));
        }
        document
    }

    fn calls_json(record: &RunRecord, branch: &str, hop_no: u32) -> Vec<Value> {
        record
            .calls
            .iter()
            .filter(|call| &*call.branch == branch && call.hop_no == hop_no)
            .map(|call| {
                json!({
                    "key": call.call_key,
                    "target": call.target,
                    "result": call.result.as_deref().map(value),
                    "error": call.error,
                    "elapsed_us": call.elapsed_us,
                })
            })
            .collect()
    }

    /// (branch, hop) of calls without a hop row, in path order.
    fn hops_in_progress(record: &RunRecord) -> Vec<(&str, u32)> {
        let mut pending: Vec<(&str, u32)> = Vec::new();
        for call in &record.calls {
            let key = (&*call.branch, call.hop_no);
            let recorded = record
                .hops
                .iter()
                .any(|hop| (&*hop.branch, hop.hop_no) == key);
            if !recorded && !pending.contains(&key) {
                pending.push(key);
            }
        }
        pending
    }

    fn show_text(out: &mut impl Write, record: &RunRecord) -> std::io::Result<()> {
        let run = &record.run;
        writeln!(
            out,
            "run {}  (batch {}, input {})  {}",
            run.run_id,
            run.batch_id,
            run.input_no,
            record.status().as_str()
        )?;
        if let Some(cause) = &record.unreadable {
            writeln!(out, "warning: part of this run cannot be read: {cause}")?;
        }
        write!(out, "started   {} UTC", utc(run.started_at))?;
        match &record.outcome {
            Some(outcome) => writeln!(out, "    finished {} UTC", utc(outcome.finished_at))?,
            None => writeln!(out)?,
        }
        writeln!(out, "input     {}", run.input)?;
        for hop in &record.hops {
            let branch = if hop.branch.is_empty() {
                String::new()
            } else {
                format!("  branch {}", hop.branch)
            };
            writeln!(
                out,
                "\nhop {}{branch}  {} (version {})  at {} UTC, {}",
                hop.hop_no,
                hop.agent,
                hop.version,
                utc(hop.started_at),
                micros(hop.elapsed_us)
            )?;
            if let Some(output) = &hop.output {
                writeln!(out, "  output    {output}")?;
            }
            if let Some(error) = &hop.error {
                writeln!(out, "  error     {error}")?;
            }
            writeln!(out, "  decision  {}", hop.decision)?;
            calls_text(out, record, &hop.branch, hop.hop_no)?;
        }
        for (branch, hop_no) in hops_in_progress(record) {
            let shown = if branch.is_empty() {
                String::new()
            } else {
                format!("  branch {branch}")
            };
            writeln!(out, "\nhop {hop_no}{shown}  (in progress: not recorded)")?;
            calls_text(out, record, branch, hop_no)?;
        }
        match &record.outcome {
            Some(outcome) => writeln!(out, "\noutcome   {}", outcome.outcome),
            None => writeln!(
                out,
                "\noutcome   (none yet: the run is in progress or stopped)"
            ),
        }
    }

    fn calls_text(
        out: &mut impl Write,
        record: &RunRecord,
        branch: &str,
        hop_no: u32,
    ) -> std::io::Result<()> {
        for call in record
            .calls
            .iter()
            .filter(|call| &*call.branch == branch && call.hop_no == hop_no)
        {
            writeln!(
                out,
                "  call {} -> {}, {}",
                call.call_key,
                call.target,
                micros(call.elapsed_us)
            )?;
            if let Some(result) = &call.result {
                writeln!(out, "    result  {result}")?;
            }
            if let Some(error) = &call.error {
                writeln!(out, "    error   {error}")?;
            }
        }
        Ok(())
    }

    /// `850 µs`, `12.3 ms`, `4.56 s`.
    fn micros(us: i64) -> String {
        match us {
            ..1_000 => format!("{us} µs"),
            1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
            _ => format!("{:.2} s", us as f64 / 1e6),
        }
    }

    /// Unix milliseconds as `YYYY-MM-DD HH:MM:SS.mmm` in UTC (no date crate for one format:
    /// the civil-from-days conversion of Howard Hinnant's date algorithms).
    pub(super) fn utc(unix_ms: i64) -> String {
        let days = unix_ms.div_euclid(86_400_000);
        let ms_of_day = unix_ms.rem_euclid(86_400_000);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!(
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
            ms_of_day / 3_600_000,
            ms_of_day / 60_000 % 60,
            ms_of_day / 1_000 % 60,
            ms_of_day % 1_000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_take_a_number_and_a_unit() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
        for bad in [
            "7",
            "d",
            "7w",
            "-1d",
            "1.5h",
            "",
            "99999999999999999999d",
            "7µ",
            "µ",
        ] {
            let error = parse_age(bad).unwrap_err();
            assert!(
                error.contains("s (seconds), m (minutes), h (hours) or d (days)"),
                "{error}"
            );
        }
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[test]
    fn times_print_in_utc() {
        assert_eq!(with_store::utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(
            with_store::utc(1_765_148_786_123),
            "2025-12-07 23:06:26.123"
        );
        assert_eq!(with_store::utc(951_782_400_000), "2000-02-29 00:00:00.000");
    }

    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    #[test]
    fn runs_names_the_feature_to_build_with() {
        let message = without_backend("sqlite:runs.db");
        assert!(
            message.contains("cargo build --features sqlite"),
            "{message}"
        );
        let message = without_backend("postgres://db/runs");
        assert!(
            message.contains("cargo build --features postgres"),
            "{message}"
        );
    }
}
