//! The `bilayer` command line: run plugins and agent systems without writing Rust.
//!
//! Subcommands appear here only when the feature behind them works. Results go to stdout as
//! JSON, diagnostics to stderr, and a failure exits non-zero.

mod cli;
// The W1 workload's orders and expected answer (the no-argument run's check); the library keeps
// this file private (runtime/orders.rs says why). The binary uses only part of it.
#[allow(dead_code)]
mod orders;

use std::process::ExitCode;

/// mimalloc instead of the system allocator: agent messages are many small JSON maps, and
/// glibc's malloc spent about a quarter of W1's time (docs/benchmarks.md). The library leaves
/// the allocator to the application; this binary chooses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

/// The native stack of every thread that can run a script: what Rhai's nesting limits need
/// (`bilayer::rhai_runtime::SCRIPT_THREAD_STACK`). Without Rhai, std's and tokio's default.
#[cfg(feature = "rhai")]
const SCRIPT_THREAD_STACK: usize = bilayer::rhai_runtime::SCRIPT_THREAD_STACK;
#[cfg(not(feature = "rhai"))]
const SCRIPT_THREAD_STACK: usize = 2 << 20;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_tracing();
    // Every thread that can run a script gets the stack scripts need (`SCRIPT_THREAD_STACK`,
    // address space touched only as deep as a call goes): the runtime's workers and blocking
    // threads, and this one's stand-in, which drives the runtime and compiles scripts
    // (`check`). The main thread's own stack is whatever the platform gave it.
    let driver = std::thread::Builder::new()
        .name("bilayer-main".to_string())
        .stack_size(SCRIPT_THREAD_STACK)
        .spawn(move || drive(args));
    match driver.map(std::thread::JoinHandle::join) {
        Ok(Ok(code)) => code,
        Ok(Err(_)) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: could not start the main thread: {e}");
            ExitCode::FAILURE
        }
    }
}

fn drive(args: cli::Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(SCRIPT_THREAD_STACK)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    // Work still running now was abandoned by its caller: a WASI call blocked past its hop or
    // call timeout keeps its blocking thread until the call returns. Dropping the runtime would
    // wait for it; the process has answered and exits instead.
    runtime.shutdown_background();
    code
}
