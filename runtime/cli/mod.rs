//! Argument parsing and dispatch for the `bilayer` binary; one file per subcommand.

mod check;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod durable;
mod exec;
mod latency;
mod run;
mod runs;
mod tools;
mod watch;
#[cfg(feature = "nats")]
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// bilayer: an actor-based multi-agent runtime with native, WASM and Rhai plugins.
///
/// With no subcommand, runs the bundled order pipeline on the W1 orders and prints a summary.
#[derive(Debug, Parser)]
#[command(name = "bilayer", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Serve metrics in Prometheus text format on this address (e.g. 127.0.0.1:9000).
    #[arg(long, global = true)]
    metrics_addr: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one plugin file (.rhai script, .wasm or .wat module) on one input and print its
    /// output JSON.
    ///
    /// Entry scripts get the input as their argument, rules scripts print the fired rule and
    /// its action's result, tool scripts run their `execute` on the input arguments, and
    /// function scripts take {"function": NAME, "args": [...]}.
    Exec {
        /// The plugin file.
        file: PathBuf,
        /// The input: JSON text. Plain words that are not JSON are passed as a JSON string;
        /// text starting with {, [ or " must be valid JSON.
        #[arg(long, short)]
        input: String,
        /// Wall-clock limit for the call, in milliseconds: how long exec waits, and the WASM
        /// module's own timeout. A module blocked in a host call past it is abandoned.
        #[arg(long, default_value_t = 5_000)]
        timeout_ms: u64,
        /// Linear memory a WASM module may hold, in MiB (default 64).
        #[arg(long)]
        memory_mb: Option<usize>,
        /// Fuel a WASM module may burn in the call (about one unit per wasm instruction);
        /// meters fuel, which makes guest code slower. Default: not metered.
        #[arg(long)]
        fuel: Option<u64>,
        /// Grant a capability to a WASM module (log, config, state, call_plugin,
        /// call_plugin:ID, wasi, wasi:dir=HOST::GUEST[:ro|:rw], wasi:env=KEY[=VALUE],
        /// wasi:arg=VALUE); repeatable. Nothing is granted by default.
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// The plugin's config, as JSON.
        #[arg(long)]
        config: Option<String>,
    },
    /// Run an agent system on a file of inputs, one JSON object per line.
    ///
    /// Prints one JSON line per outcome on stdout (input, status, agent, hops, output,
    /// trace_id, error/reason) and a summary on stderr.
    Run {
        /// The system definition (TOML).
        system: PathBuf,
        /// The inputs: a JSON-lines file, or - for stdin.
        #[arg(long, short)]
        input: String,
        /// Print only the summary, not the outcome lines.
        #[arg(long)]
        quiet: bool,
        /// Hot-reload the agents' scripts and modules and the routing script while running
        /// (watches the definition's [hot_reload] dirs, or its own directory).
        #[arg(long)]
        watch: bool,
        /// How agents exchange messages: in this process, or over NATS (the agents are
        /// then served by `bilayer worker` processes; this one submits and collects).
        /// Default: the definition's [transport], else in-process.
        #[arg(long, value_enum)]
        transport: Option<TransportKind>,
        /// NATS server, overriding the definition's [transport] url and $BILAYER_NATS_URL.
        #[arg(long)]
        nats_url: Option<String>,
        /// The longest input line accepted, in bytes; a longer line is that line's error
        /// outcome, and is skipped without being held in memory.
        #[arg(long, default_value_t = bilayer::jsonl::DEFAULT_MAX_LINE_BYTES)]
        max_line_bytes: usize,
        /// Make every input a durable run journaled in this store (sqlite:PATH, created on
        /// first use, or postgres://...), overriding the definition's [durability] store.
        /// Each outcome line then carries its run_id.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// Take up the store's latest batch: inputs whose outcome is recorded are not run
        /// again (their lines are read back, "replayed": true), runs in flight continue from
        /// their last recorded hop, the rest run.
        #[arg(long)]
        resume: bool,
        /// With --resume: go on even though the definition's agents differ from those the
        /// batch ran.
        #[arg(long, requires = "resume")]
        accept_changed_system: bool,
    },
    /// Serve some agents of a system over NATS until interrupted (Ctrl-C or SIGTERM).
    ///
    /// Every worker serving an agent shares its messages; messages a dead worker took are
    /// redelivered to the others. Uses the definition's [transport] settings (kind is
    /// implied: nats).
    Worker {
        /// The system definition (TOML).
        system: PathBuf,
        /// The agents this worker serves, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        agents: Option<Vec<String>>,
        /// NATS server, overriding the definition's [transport] url and $BILAYER_NATS_URL.
        #[arg(long)]
        nats_url: Option<String>,
        /// Hot-reload the served agents' scripts and modules and the routing script while
        /// serving (watches the definition's [hot_reload] dirs, or its own directory).
        #[arg(long)]
        watch: bool,
        /// Journal the hops served in this store (the one `bilayer run --store` names;
        /// postgres://... for workers on several machines), overriding [durability] store.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
    /// Validate a system definition: every script compiles, every plugin exists, every
    /// literal next_agent names an agent. Reports all problems with file positions.
    Check {
        /// The system definition (TOML).
        system: PathBuf,
    },
    /// Inspect the journal of durable runs (a store written by `bilayer run --store`): list
    /// runs, show one, prune or compact finished ones.
    Runs {
        #[command(subcommand)]
        command: runs::RunsCommand,
    },
    /// Print the tool definitions of a tool script or a directory of them.
    Tools {
        /// A .rhai tool script or a directory of them.
        path: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ToolFormat::Openai)]
        format: ToolFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TransportKind {
    /// Actor mailboxes in this process.
    InProcess,
    /// NATS JetStream, agents served by `bilayer worker` processes.
    Nats,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ToolFormat {
    /// OpenAI function calling: {"type": "function", "function": {...}}.
    Openai,
    /// Model Context Protocol: {"name", "description", "inputSchema"}.
    Mcp,
}

/// The signal that asked this process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopSignal {
    /// Ctrl-C.
    Interrupt,
    /// `kill`, or a service manager stopping the process.
    Terminate,
}

impl StopSignal {
    pub(crate) fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    /// The exit status of a process that stopped because of this signal (128 + its number),
    /// as shells report one killed by it.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
        }
    }

    /// Ends the process by this signal, once it has written what it owes (the shell then
    /// reports 130 / 143). Not `exit(130)`: a shell that got the same Ctrl-C (bash, in a
    /// `for` loop or a script) goes on with its next command when its child *exits*, taking
    /// the interrupt as handled; only a child killed by SIGINT stops the loop.
    pub(crate) fn end_process(self) -> ! {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        #[cfg(unix)]
        {
            let signal = match self {
                StopSignal::Interrupt => signal_hook::consts::SIGINT,
                StopSignal::Terminate => signal_hook::consts::SIGTERM,
            };
            // The default action of SIGINT / SIGTERM (in place of tokio's handler) ends the
            // whole process; should it somehow not, the exit below still does.
            let _ = signal_hook::low_level::emulate_default_handler(signal);
        }
        // Not reached on Unix; elsewhere, the status a shell would show.
        std::process::exit(i32::from(self.exit_code()))
    }
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
pub(crate) async fn wait_for_stop_signal() -> std::io::Result<StopSignal> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted.map(|()| StopSignal::Interrupt),
            _ = terminate.recv() => Ok(StopSignal::Terminate),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .map(|()| StopSignal::Interrupt)
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings).
pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// `bilayer worker` in a build without NATS: the subcommand stays, so that its help and this
/// error say what it needs, rather than clap calling it unknown.
#[cfg(not(feature = "nats"))]
fn worker_without_nats() -> String {
    bilayer::features::missing("nats", "`bilayer worker` serves agents over NATS")
}

pub(crate) async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if let Some(addr) = cli.metrics_addr {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    }
    let Some(command) = cli.command else {
        return run::default_pipeline().await;
    };
    match command {
        Command::Run {
            system,
            input,
            quiet,
            watch,
            transport,
            nats_url,
            max_line_bytes,
            store,
            resume,
            accept_changed_system,
        } => {
            let source = if input == "-" {
                run::InputSource::Stdin
            } else {
                run::InputSource::File(input.into())
            };
            let options = run::RunOptions {
                print_outcomes: !quiet,
                watch,
                transport,
                nats_url,
                max_line_bytes,
                store,
                resume,
                accept_changed_system,
            };
            run::run(&system, source, options).await
        }
        #[cfg(feature = "nats")]
        Command::Worker {
            system,
            agents,
            nats_url,
            watch,
            store,
        } => worker::run(&system, agents, nats_url, watch, store).await,
        #[cfg(not(feature = "nats"))]
        Command::Worker { .. } => Err(worker_without_nats().into()),
        Command::Check { system } => check::run(&system),
        Command::Exec {
            file,
            input,
            timeout_ms,
            memory_mb,
            fuel,
            grants,
            config,
        } => {
            let limits = exec::Limits {
                timeout: std::time::Duration::from_millis(timeout_ms),
                memory_mb,
                fuel,
            };
            exec::run(&file, &input, &limits, &grants, config.as_deref()).await
        }
        Command::Tools { path, format } => tools::run(&path, format).await,
        Command::Runs { command } => runs::run(command).await,
    }
}

#[cfg(all(test, not(feature = "nats")))]
mod tests {
    #[test]
    fn worker_names_the_feature_to_build_with() {
        let message = super::worker_without_nats();
        assert!(
            message.starts_with(
                "`bilayer worker` serves agents over NATS: this bilayer was built without the \
                 `nats` feature"
            ),
            "{message}"
        );
        assert!(message.contains("cargo build --features nats"), "{message}");
    }
}
