//! Workload W1 "order routing", measured the way the Python peers in `../shared/peers` measure
//! it, and printing the same `RESULT` line, so the figures sit side by side.
//!
//! ```text
//! cargo run --release --example w1 -- --n 100000 --mode throughput --agents native
//! cargo run --release --example w1 -- --n 2000 --mode latency --agents rhai --runtime current
//! ```
//!
//! - throughput: all N orders are submitted at once (bounded by admission) and the wall time
//!   until the last outcome is measured;
//! - latency: one order at a time, each waiting for its outcome; p50/p99 by nearest rank.
//!
//! Before timing, `--warmup` orders (default 200) go through one at a time.

// Workload W1 (not library API: runtime/orders.rs says why); this crate uses part of it.
#[allow(dead_code)]
#[path = "../runtime/orders.rs"]
mod orders;

use std::time::Instant;

// The allocator the `bilayer` binary uses (see runtime/main.rs), so these figures are the CLI's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bilayer::prelude::*;

struct Args {
    n: u64,
    mode: String,
    agents: String,
    warmup: u64,
    runtime: String,
}

fn parse_args() -> Result<Args, String> {
    // --n N, --mode throughput|latency, --agents native|rhai, --runtime multi|current,
    // --warmup N
    let mut args = Args {
        n: 10_000,
        mode: "throughput".into(),
        agents: "native".into(),
        warmup: 200,
        runtime: "multi".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--n" => args.n = value.parse().map_err(|e| format!("--n: {e}"))?,
            "--mode" => args.mode = value,
            "--agents" => args.agents = value,
            "--warmup" => args.warmup = value.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--runtime" => args.runtime = value,
            other => {
                return Err(format!(
                    "unknown flag {other}; use --n, --mode, --agents, --warmup"
                ))
            }
        }
    }
    if !matches!(args.mode.as_str(), "throughput" | "latency") {
        return Err("--mode is throughput or latency".into());
    }
    Ok(args)
}

async fn build(agents: &str) -> PluginResult<AgentSystem> {
    let mut builder = AgentSystem::builder().name("w1");
    match agents {
        "native" => {
            for (name, plugin) in orders::native_agents() {
                builder = builder.agent_with(name, plugin, PluginOptions::new());
            }
        }
        "rhai" => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/orders");
            for name in ["intake", "manager", "fulfillment", "audit"] {
                let plugin = rhai_agent(&format!("{dir}/{name}.rhai"))?;
                builder = builder.agent_with(name, plugin, PluginOptions::new());
            }
        }
        other => {
            return Err(PluginError::Config(format!(
                "--agents is native or rhai, not {other}"
            )))
        }
    }
    builder.build().await
}

fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    let k = ((p / 100.0 * sorted_ns.len() as f64).ceil() as usize).max(1);
    sorted_ns[k - 1] as f64 / 1000.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let runtime = match args.runtime.as_str() {
        "multi" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
        "current" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        other => return Err(format!("--runtime is multi or current, not {other}").into()),
    };
    // The whole measurement runs as a task inside the runtime, as an application's code would.
    runtime
        .block_on(runtime.spawn(measure(args)))?
        .map_err(|e| e as Box<dyn std::error::Error>)
}

async fn measure(args: Args) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let system = build(&args.agents).await?;
    let orders: Vec<_> = (0..args.n.max(args.warmup)).map(orders::order).collect();

    for order in orders.iter().take(args.warmup as usize) {
        system.send(order.clone()).await;
    }

    let (mut shipped, mut rejected, mut total) = (0u64, 0u64, 0.0f64);
    let mut tally = |outcome: Outcome| match outcome.agent.as_deref() {
        Some("fulfillment") => {
            shipped += 1;
            total += outcome
                .output
                .as_ref()
                .and_then(|o| o["total"].as_f64())
                .unwrap_or(0.0);
        }
        Some("audit") => rejected += 1,
        _ => eprintln!("unexpected outcome: {outcome:?}"),
    };

    let mut latencies = Vec::new();
    // Built before the clock starts, as the peers build their order lists.
    let to_submit = if args.mode == "throughput" {
        orders[..args.n as usize].to_vec()
    } else {
        Vec::new()
    };
    let started = Instant::now();
    if args.mode == "throughput" {
        let mut stream = system.outcome_stream().expect("first stream");
        let producer = {
            let system = system.clone();
            let orders = to_submit;
            tokio::spawn(async move {
                for order in orders {
                    system.submit(order).await;
                }
            })
        };
        for _ in 0..args.n {
            tally(stream.recv().await.expect("an outcome per order"));
        }
        producer.await?;
    } else {
        for order in &orders[..args.n as usize] {
            let sent = Instant::now();
            let outcome = system.send(order.clone()).await;
            latencies.push(sent.elapsed().as_nanos() as u64);
            tally(outcome);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let (p50, p99) = if latencies.is_empty() {
        ("NA".to_string(), "NA".to_string())
    } else {
        (
            format!("{:.1}", percentile_us(&latencies, 50.0)),
            format!("{:.1}", percentile_us(&latencies, 99.0)),
        )
    };
    let expected = orders::expected(args.n);
    let ok = (shipped, rejected, format!("{total:.2}"))
        == (expected.0, expected.1, format!("{:.2}", expected.2));
    eprintln!(
        "# bilayer agents={} check={}",
        args.agents,
        if ok { "ok" } else { "MISMATCH" }
    );
    println!(
        "RESULT system=bilayer-{}-{} mode={} n={} seconds={seconds:.6} orders_per_s={:.1} \
         p50_us={p50} p99_us={p99} shipped={shipped} rejected={rejected} shipped_total={total:.2}",
        args.agents,
        args.runtime,
        args.mode,
        args.n,
        args.n as f64 / seconds
    );
    system.shutdown().await?;
    if !ok {
        return Err(format!("result mismatch: expected {expected:?}").into());
    }
    Ok(())
}

fn rhai_agent(path: &str) -> PluginResult<Box<dyn AgentPlugin>> {
    Ok(Box::new(bilayer::rhai_runtime::RhaiPlugin::from_file(
        path,
    )?))
}
