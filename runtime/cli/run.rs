//! `bilayer run SYSTEM.toml --input FILE.jsonl` (or `-` for stdin): every line is one input;
//! one JSON line per outcome on stdout, a summary on stderr, a progress line while it runs
//! when stderr is a terminal. A malformed line (not JSON, not UTF-8, longer than
//! `--max-line-bytes`) is an `error` outcome naming its line, and the run goes on
//! (`bilayer::jsonl`).
//!
//! Stopped early, a run still accounts for what it has: on Ctrl-C or SIGTERM it writes every
//! outcome already finished, then the summary marked interrupted, and ends by that signal
//! (status 130 / 143; a shell loop running it stops too) without waiting for the inputs still
//! in flight; when whoever reads stdout closes it
//! (`bilayer run … | head -1`) it stops quietly, exit status 0, as `head` asked for no more;
//! any other failure to write stdout (a full disk) stops it with the summary and an error,
//! exit status 1, as outcomes were lost.
//!
//! With no subcommand at all, `bilayer` runs the bundled order pipeline (examples/orders) on
//! the W1 orders and prints the summary and the W1 check.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::orders;
use bilayer::jsonl::{JsonLine, JsonLines};
use bilayer::system_config::{Deployment, SystemDefinition};
use bilayer::{AgentSystem, Outcome, OutcomeStatus, Transport};

use super::latency::LatencyHistogram;
use super::{watch, StopSignal, TransportKind};

/// What a run adds up to.
#[derive(Default)]
struct Summary {
    inputs: u64,
    by_status: BTreeMap<&'static str, u64>,
    by_agent: BTreeMap<String, u64>,
    latencies: LatencyHistogram,
    /// Inputs read (set when the run's loop ends).
    submitted: u64,
}

impl Summary {
    fn add(&mut self, outcome: &Outcome) {
        self.inputs += 1;
        *self.by_status.entry(outcome.status.as_str()).or_default() += 1;
        if outcome.status == OutcomeStatus::Ok {
            if let Some(agent) = &outcome.agent {
                *self.by_agent.entry(agent.clone()).or_default() += 1;
            }
        }
        self.latencies
            .record(u64::try_from(outcome.latency.as_nanos()).unwrap_or(u64::MAX));
    }

    fn print(&mut self, out: &mut dyn Write, elapsed: Duration) -> std::io::Result<()> {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        writeln!(
            out,
            "{} inputs in {:.3} s ({:.0} inputs/s)",
            self.inputs,
            seconds,
            self.inputs as f64 / seconds
        )?;
        let statuses = ["ok", "error", "dead_letter"]
            .iter()
            .map(|s| format!("{s} {}", self.by_status.get(s).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(out, "outcomes: {statuses}")?;
        let agents = self
            .by_agent
            .iter()
            .map(|(agent, n)| format!("{agent} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            out,
            "terminal agents: {}",
            if agents.is_empty() {
                "-".into()
            } else {
                agents
            }
        )?;
        if !self.latencies.is_empty() {
            writeln!(
                out,
                "latency: p50 {:.1} µs, p99 {:.1} µs (admission to outcome, queueing included)",
                self.latencies.percentile_us(50.0),
                self.latencies.percentile_us(99.0)
            )?;
        }
        Ok(())
    }
}

/// How long a run may go without an outcome before it says so.
const STALL_WARNING: Duration = Duration::from_secs(10);

/// Where inputs come from.
pub(super) enum InputSource {
    File(PathBuf),
    Stdin,
    /// The first `n` W1 orders, generated.
    Orders(u64),
}

/// How `bilayer run` runs.
pub(super) struct RunOptions {
    pub print_outcomes: bool,
    pub watch: bool,
    pub transport: Option<TransportKind>,
    pub nats_url: Option<String>,
    pub max_line_bytes: usize,
    /// `--store`: the journal of durable runs.
    pub store: Option<String>,
    /// `--resume`: take up the store's latest batch.
    pub resume: bool,
    /// `--accept-changed-system`.
    pub accept_changed_system: bool,
}

/// The runs of a resumed batch, by input number: read back or continued as their lines come.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
type Resumed = std::collections::HashMap<u64, bilayer::journal::RunRecord>;
/// No journal in this build: nothing to resume.
#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
type Resumed = ();

/// How the loop over a run's outcomes ended.
enum Ended {
    /// Every input read has its outcome.
    Completed,
    /// Reading the input failed (not a bad line: the file or stdin itself); every input read
    /// before has its outcome.
    InputFailed(String),
    /// A signal stopped the run; the outcomes that had finished were written.
    Interrupted(StopSignal),
    /// Whoever reads stdout closed it.
    OutputClosed,
    /// Writing to stdout failed otherwise (a full disk, a device error): the outcomes cannot
    /// be delivered, and saying nothing would pass their loss off as success.
    OutputFailed(std::io::Error),
}

/// `bilayer run`.
pub(super) async fn run(
    system_file: &Path,
    input: InputSource,
    options: RunOptions,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let RunOptions {
        print_outcomes,
        watch,
        transport,
        nats_url,
        max_line_bytes,
        store,
        resume,
        accept_changed_system,
    } = options;
    watch::check(watch)?;
    let definition = SystemDefinition::load(system_file)?;
    // The store opens before any input is read: one that cannot costs nothing.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    let mut durable = {
        let source = match &input {
            InputSource::File(path) => path.display().to_string(),
            InputSource::Stdin => "-".to_string(),
            InputSource::Orders(n) => format!("{n} W1 orders"),
        };
        let options = super::durable::DurableOptions {
            store,
            resume,
            accept_changed_system,
        };
        super::durable::open(&definition, options, &source).await?
    };
    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    {
        let _ = accept_changed_system;
        if store.is_some() || resume || definition.store_url().is_some() {
            return Err(bilayer::features::missing(
                "sqlite",
                "durable runs (--store, --resume, [durability]) journal in SQLite or PostgreSQL",
            )
            .into());
        }
    }
    let over_nats = match transport {
        Some(kind) => kind == TransportKind::Nats,
        None => uses_nats(&definition)?,
    };
    let deployment = if over_nats {
        // This process submits and collects; `bilayer worker` processes serve the agents.
        submitting_over_nats(&definition, nats_url)?
    } else {
        if nats_url.is_some() {
            return Err(
                "--nats-url needs --transport nats (or [transport] kind = \"nats\")".into(),
            );
        }
        Deployment {
            transport: Some(Transport::InProcess),
            ..Deployment::default()
        }
    };
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    if over_nats && resume {
        return Err(
            "--resume over NATS is not supported yet: resume the batch in process \
                    (--transport in-process, same --store), or start a new batch without \
                    --resume; workers with --store already repeat no recorded call when one of \
                    them dies"
                .into(),
        );
    }
    if over_nats && watch {
        return Err("--watch reloads agents served by this process; with --transport nats the workers serve them: start them with `bilayer worker --watch`".into());
    }
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    let (deployment, resumed) = match &mut durable {
        Some(durable) => (
            Deployment {
                journal: Some(Arc::clone(&durable.journal)),
                ..deployment
            },
            std::mem::take(&mut durable.resumed),
        ),
        None => (deployment, Resumed::default()),
    };
    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    let resumed = ();
    let system = definition.build_with(&deployment).await?;
    let reloader = if watch {
        Some(watch::start(&definition, &system).await?)
    } else {
        None
    };
    let (mut summary, elapsed, ended) = drive(
        &system,
        input,
        resumed,
        print_outcomes,
        max_line_bytes,
        &mut |_| {},
    )
    .await?;
    // Every outcome written was committed first; what is left (rows of runs that ended in a
    // refusal) is committed now.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    if let Some(durable) = &durable {
        // Bounded: a store that stalls (a PostgreSQL server gone quiet) must not hold an
        // interrupted run's exit.
        match tokio::time::timeout(Duration::from_secs(10), durable.writer.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                eprintln!("bilayer run: the journal could not commit its last entries: {error}")
            }
            Err(_) => eprintln!(
                "bilayer run: the journal did not commit its last entries within 10 s; they \
                 are lost (their runs resume from their last recorded hop)"
            ),
        }
    }
    let stderr = std::io::stderr();
    match ended {
        Ended::Completed | Ended::InputFailed(_) => {
            if let Some(reloader) = reloader {
                reloader.stop().await;
            }
            system.shutdown().await?;
            summary.print(&mut stderr.lock(), elapsed)?;
            if let Ended::InputFailed(error) = ended {
                return Err(error.into());
            }
            Ok(ExitCode::SUCCESS)
        }
        Ended::Interrupted(signal) => {
            summary.print(&mut stderr.lock(), elapsed)?;
            let waiting = summary.submitted.saturating_sub(summary.inputs);
            eprintln!(
                "interrupted by {}: {waiting} inputs read had no outcome yet and were not waited for",
                signal.name()
            );
            // No graceful shutdown: the inputs in flight would be dead-lettered one warning
            // at a time, and a plugin blocked in a call would hold the exit. Everything this
            // run owes its reader is written.
            signal.end_process();
        }
        Ended::OutputClosed => std::process::exit(0),
        Ended::OutputFailed(error) => {
            summary.print(&mut stderr.lock(), elapsed)?;
            eprintln!(
                "error: cannot write the outcomes to stdout ({error}); the run stopped, and the \
                 outcomes counted above were not all written: free space on (or fix) what \
                 stdout goes to, or use --quiet for the summary alone"
            );
            // As on an interrupt: no graceful shutdown, nothing more can be written anyway.
            std::process::exit(1);
        }
    }
}

/// Whether the definition's `[transport]` is NATS.
#[cfg(feature = "nats")]
fn uses_nats(definition: &SystemDefinition) -> Result<bool, String> {
    Ok(matches!(definition.transport()?, Transport::Nats(_)))
}

/// Whether the definition's `[transport]` is NATS: never in a build without it, which refuses
/// `kind = "nats"` when reading the transport.
#[cfg(not(feature = "nats"))]
fn uses_nats(definition: &SystemDefinition) -> Result<bool, String> {
    definition.transport().map(|_| false)
}

/// The deployment of `run --transport nats`: this process submits and collects, `bilayer
/// worker` processes serve the agents.
#[cfg(feature = "nats")]
fn submitting_over_nats(
    definition: &SystemDefinition,
    nats_url: Option<String>,
) -> Result<Deployment, String> {
    let mut nats = definition.nats_transport()?;
    if let Some(url) = nats_url {
        nats = nats.with_url(url);
    }
    Ok(Deployment {
        transport: Some(Transport::Nats(nats)),
        serve: Some(Vec::new()),
        ..Deployment::default()
    })
}

#[cfg(not(feature = "nats"))]
fn submitting_over_nats(
    _definition: &SystemDefinition,
    _nats_url: Option<String>,
) -> Result<Deployment, String> {
    Err(bilayer::features::missing("nats", "--transport nats"))
}

/// `bilayer` with no arguments: the order pipeline on the W1 orders.
pub(super) async fn default_pipeline() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let n = 10_000;
    let system_file = bundled_orders_system();
    println!(
        "bilayer: order pipeline {} on {n} W1 orders (intake → manager → fulfillment | audit, Rhai agents)",
        system_file.display()
    );
    let definition = SystemDefinition::load(&system_file)?;
    let system = definition.build().await?;
    // The W1 check's one figure the summary has not: the shipped orders' totals, summed.
    let mut shipped_total = 0.0;
    let mut add_shipped = |outcome: &Outcome| {
        if outcome.agent.as_deref() == Some("fulfillment") {
            shipped_total += outcome
                .output
                .as_ref()
                .and_then(|o| o["total"].as_f64())
                .unwrap_or(0.0);
        }
    };
    let (mut summary, elapsed, ended) = drive(
        &system,
        InputSource::Orders(n),
        Resumed::default(),
        false,
        usize::MAX,
        &mut add_shipped,
    )
    .await?;
    match ended {
        Ended::Interrupted(signal) => signal.end_process(),
        Ended::OutputClosed => std::process::exit(0),
        Ended::OutputFailed(error) => return Err(format!("cannot write to stdout: {error}").into()),
        Ended::Completed | Ended::InputFailed(_) => {}
    }
    system.shutdown().await?;
    summary.print(&mut std::io::stdout().lock(), elapsed)?;
    let (shipped, rejected, total) = orders::expected(n);
    let got = (
        summary.by_agent.get("fulfillment").copied().unwrap_or(0),
        summary.by_agent.get("audit").copied().unwrap_or(0),
        format!("{shipped_total:.2}"),
    );
    let want = (shipped, rejected, format!("{total:.2}"));
    println!(
        "W1 check: shipped {} rejected {} shipped_total {} ({})",
        got.0,
        got.1,
        got.2,
        if got == want { "ok" } else { "MISMATCH" }
    );
    Ok(if got == want {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// examples/orders/system.toml of this checkout.
fn bundled_orders_system() -> PathBuf {
    let here = Path::new("examples/orders/system.toml");
    if here.exists() {
        here.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/orders/system.toml")
    }
}

async fn drive(
    system: &AgentSystem,
    input: InputSource,
    resumed: Resumed,
    print_outcomes: bool,
    max_line_bytes: usize,
    observe: &mut dyn FnMut(&Outcome),
) -> Result<(Summary, Duration, Ended), Box<dyn std::error::Error>> {
    let mut stream = system
        .outcome_stream()
        .ok_or("the system's outcome stream was already taken")?;
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| spawn_progress(done.clone(), started));

    // Interactive input gets each outcome as soon as it exists; files are buffered.
    let flush_each = matches!(input, InputSource::Stdin);
    let (total_tx, mut total_rx) = tokio::sync::oneshot::channel::<Result<u64, String>>();
    let submitted = Arc::new(AtomicU64::new(0));
    let producer = {
        let system = system.clone();
        let submitted = submitted.clone();
        tokio::spawn(async move {
            let total = submit_all(&system, input, resumed, &submitted, max_line_bytes).await;
            let _ = total_tx.send(total);
        })
    };
    let stop_signal = super::wait_for_stop_signal();
    tokio::pin!(stop_signal);
    // A run that stops making progress says so (over NATS: no worker serving an agent).
    let mut last_outcome = tokio::time::Instant::now();

    let mut summary = Summary::default();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut total: Option<u64> = None;
    let mut input_error = None;
    let ended = loop {
        if total == Some(summary.inputs) {
            break match input_error.take() {
                Some(error) => Ended::InputFailed(error),
                None => Ended::Completed,
            };
        }
        tokio::select! {
            outcome = stream.recv() => {
                let Some(outcome) = outcome else { break Ended::Completed };
                last_outcome = tokio::time::Instant::now();
                done.fetch_add(1, Ordering::Relaxed);
                observe(&outcome);
                if let Err(error) = write_outcome(&mut summary, &mut out, &outcome, print_outcomes, flush_each) {
                    break output_ended(error);
                }
            }
            read = &mut total_rx, if total.is_none() => {
                match read {
                    Ok(Ok(n)) => total = Some(n),
                    Ok(Err(e)) => {
                        // The inputs read so far still get their outcomes.
                        total = Some(submitted.load(Ordering::Relaxed));
                        input_error = Some(e);
                    }
                    Err(_) => return Err("the input reader stopped unexpectedly".into()),
                }
            }
            signal = &mut stop_signal => {
                let signal = signal.map_err(|e| format!("cannot listen for Ctrl-C: {e}"))?;
                // Whatever has finished is written before the process goes.
                let mut failed = None;
                while let Some(outcome) = stream.try_recv() {
                    observe(&outcome);
                    if let Err(error) = write_outcome(&mut summary, &mut out, &outcome, print_outcomes, false) {
                        failed = Some(output_ended(error));
                        break;
                    }
                }
                break failed.unwrap_or(Ended::Interrupted(signal));
            }
            _ = tokio::time::sleep_until(last_outcome + STALL_WARNING) => {
                last_outcome = tokio::time::Instant::now();
                let waiting = submitted.load(Ordering::Relaxed).saturating_sub(summary.inputs);
                if waiting > 0 {
                    eprintln!(
                        "bilayer run: no outcome in the last {} s, {waiting} inputs waiting ({})",
                        STALL_WARNING.as_secs(),
                        if system.agents().is_empty() {
                            "the agents are served by workers: is a `bilayer worker` serving every agent?"
                        } else {
                            "an agent is still working on them; each hop ends by hop_timeout_ms"
                        }
                    );
                }
            }
        }
    };
    let flushed = out.flush();
    drop(out);
    if let Some(progress) = progress {
        progress.abort();
        eprint!("\r\x1b[2K");
    }
    summary.submitted = submitted.load(Ordering::Relaxed);
    let ended = match (ended, flushed) {
        (ended @ (Ended::OutputClosed | Ended::OutputFailed(_)), _) => ended,
        (_, Err(error)) => output_ended(error),
        (ended, Ok(())) => ended,
    };
    if matches!(ended, Ended::OutputClosed | Ended::OutputFailed(_)) {
        producer.abort();
        return Ok((summary, started.elapsed(), ended));
    }
    if matches!(ended, Ended::Interrupted(_)) {
        producer.abort();
    } else {
        producer.await?;
    }
    Ok((summary, started.elapsed(), ended))
}

/// How a run whose stdout failed ends: quietly when its reader closed it (`| head -1`, as
/// `head` asked for no more), with an error otherwise.
fn output_ended(error: std::io::Error) -> Ended {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        Ended::OutputClosed
    } else {
        Ended::OutputFailed(error)
    }
}

/// Counts an outcome and, when outcomes are printed, writes its line. An error means stdout
/// can take no more (see [`output_ended`]).
fn write_outcome(
    summary: &mut Summary,
    out: &mut impl Write,
    outcome: &Outcome,
    print_outcomes: bool,
    flush: bool,
) -> std::io::Result<()> {
    summary.add(outcome);
    if print_outcomes {
        serde_json::to_writer(&mut *out, outcome)?;
        out.write_all(b"\n")?;
        if flush {
            out.flush()?;
        }
    }
    Ok(())
}

/// Submits every input, returning how many there were (malformed lines included).
async fn submit_all(
    system: &AgentSystem,
    input: InputSource,
    resumed: Resumed,
    submitted: &AtomicU64,
    max_line_bytes: usize,
) -> Result<u64, String> {
    match input {
        InputSource::Orders(n) => {
            for i in 0..n {
                system.submit_numbered(i + 1, orders::order(i)).await;
                submitted.fetch_add(1, Ordering::Relaxed);
            }
            Ok(n)
        }
        InputSource::Stdin => {
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            submit_lines(
                system,
                JsonLines::new(stdin, max_line_bytes),
                resumed,
                submitted,
            )
            .await
        }
        InputSource::File(path) => {
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let file = tokio::io::BufReader::new(file);
            submit_lines(
                system,
                JsonLines::new(file, max_line_bytes),
                resumed,
                submitted,
            )
            .await
            .map_err(|e| format!("{}: {e}", path.display()))
        }
    }
}

async fn submit_lines<R: tokio::io::AsyncBufRead + Unpin>(
    system: &AgentSystem,
    mut lines: JsonLines<R>,
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "postgres")),
        allow(unused_mut, unused_variables)
    )]
    mut resumed: Resumed,
    submitted: &AtomicU64,
) -> Result<u64, String> {
    let mut inputs = 0;
    loop {
        let line = match lines.next().await {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(inputs),
            Err(e) => return Err(format!("reading input after {inputs} inputs: {e}")),
        };
        inputs += 1;
        submitted.fetch_add(1, Ordering::Relaxed);
        match line {
            JsonLine::Input { number, value } => {
                #[cfg(any(feature = "sqlite", feature = "postgres"))]
                if let Some(record) = resumed.remove(&number) {
                    system.resume_run(record, value).await;
                    continue;
                }
                system.submit_numbered(number, value).await
            }
            JsonLine::Refused { number, reason } => system.submit_refused(number, reason).await,
        }
    }
}

fn spawn_progress(done: Arc<AtomicU64>, started: Instant) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let n = done.load(Ordering::Relaxed);
            let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-9);
            eprint!("\r\x1b[2K{n} outcomes ({rate:.0}/s)");
        }
    })
}
