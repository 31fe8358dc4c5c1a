//! `bilayer worker SYSTEM.toml --agents intake,manager`: serve some agents of a system over
//! NATS until interrupted (Ctrl-C or SIGTERM), then stop taking messages, finish and
//! acknowledge the ones taken, and print what each agent served.
//!
//! Several workers serving the same agent share its messages; a worker that dies leaves its
//! unacknowledged messages to be redelivered to the others. With `--watch` a worker hot-reloads
//! the scripts and modules of the agents it serves, and the routing script, as `bilayer run
//! --watch` does; each worker watches for itself, so a fleet picks up a change file by file as
//! each worker sees it (share the directory, or deploy it to every worker).
//!
//! With `--store URL` (or the definition's `[durability] store`) the hops it serves are
//! journaled there, and a message redelivered after a worker died is answered from the
//! journal: a hop it holds goes on without running again, a hop it does not runs with the
//! calls it had made answered from the journal.
//!
//! Built with the `nats` feature; without it the subcommand is still there and says so
//! (cli/mod.rs).

use std::path::Path;
use std::process::ExitCode;

use bilayer::system_config::{Deployment, SystemDefinition};
use bilayer::Transport;

pub(super) async fn run(
    system_file: &Path,
    agents: Option<Vec<String>>,
    nats_url: Option<String>,
    watch: bool,
    store: Option<String>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    super::watch::check(watch)?;
    let definition = SystemDefinition::load(system_file)?;
    // The journal the served hops are recorded in: the store `bilayer run --store` uses
    // (PostgreSQL, for processes on several machines), opened before serving anything.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    let journal = super::durable::open_for_worker(&definition, store).await?;
    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    if store.is_some() || definition.store_url().is_some() {
        return Err(bilayer::features::missing(
            "postgres",
            "durable runs (--store, [durability]) journal in SQLite or PostgreSQL",
        )
        .into());
    }
    let mut nats = definition.nats_transport()?;
    if let Some(url) = nats_url {
        nats = nats.with_url(url);
    }
    let url = nats.url().to_string();
    let serve = agents.unwrap_or_else(|| {
        definition
            .agent_names()
            .into_iter()
            .map(str::to_string)
            .collect()
    });
    if serve.is_empty() {
        return Err("--agents names no agent; give at least one".into());
    }
    let system = definition
        .build_with(&Deployment {
            transport: Some(Transport::Nats(nats)),
            serve: Some(serve.clone()),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            journal,
        })
        .await?;
    let reloader = if watch {
        Some(super::watch::start(&definition, &system).await?)
    } else {
        None
    };
    eprintln!(
        "bilayer worker: serving {} of `{}` over NATS at {url} (pid {}){}; Ctrl-C to stop",
        serve.join(", "),
        definition.name(),
        std::process::id(),
        if watch { ", watching for changes" } else { "" }
    );
    super::wait_for_stop_signal().await?;
    eprintln!("bilayer worker: stopping (finishing the messages taken)");
    if let Some(reloader) = reloader {
        reloader.stop().await;
    }
    let served: Vec<String> = serve
        .iter()
        .map(|agent| {
            let calls = system
                .manager()
                .info(agent)
                .map(|info| info.stats.calls)
                .unwrap_or(0);
            format!("{agent} {calls}")
        })
        .collect();
    system.shutdown().await?;
    eprintln!(
        "bilayer worker: stopped; messages served: {}",
        served.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
