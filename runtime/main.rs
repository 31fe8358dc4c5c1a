//! The `bilayer` command line: run plugins and agent systems without writing Rust.
//!
//! Subcommands appear here only when the feature behind them works. Results go to stdout as
//! JSON, diagnostics to stderr, and a failure exits non-zero.

mod cli;

use std::process::ExitCode;

/// mimalloc instead of the system allocator: agent messages are many small JSON maps, and
/// glibc's malloc spent about a quarter of W1's time (docs/benchmarks.md). The library leaves
/// the allocator to the application; this binary chooses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
