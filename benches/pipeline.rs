//! Workload W1 end to end through an `AgentSystem`: 10 000 orders submitted at once (throughput)
//! and one order at a time (latency), with native agents and with Rhai agents, on a
//! multi-thread runtime (2 workers) and on a current-thread runtime.
//!
//! `cargo bench --bench pipeline`. The side-by-side comparison with the Python peers, with
//! p50/p99, is `bash benches/w1_compare.sh`; both are recorded in docs/benchmarks.md.

// A bench is not API: `criterion_group!` makes an undocumented `pub fn`.
#![allow(missing_docs)]

// Workload W1 (not library API: runtime/orders.rs says why); this crate uses part of it.
#[allow(dead_code)]
#[path = "../runtime/orders.rs"]
mod orders;

use std::time::{Duration, Instant};

// The allocator the `bilayer` binary uses (runtime/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bilayer::prelude::*;
use bilayer::system_config::SystemDefinition;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::Value;

const ORDERS: u64 = 10_000;

async fn system(agents: &str) -> AgentSystem {
    match agents {
        "native" => {
            let mut builder = AgentSystem::builder().name("w1-native");
            for (name, plugin) in orders::native_agents() {
                builder = builder.agent_with(name, plugin, PluginOptions::new());
            }
            builder.build().await.unwrap()
        }
        _ => {
            let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/orders/system.toml");
            SystemDefinition::load(file).unwrap().build().await.unwrap()
        }
    }
}

fn runtime(flavor: &str) -> tokio::runtime::Runtime {
    match flavor {
        "current_thread" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    }
}

fn pipeline(c: &mut Criterion) {
    let inputs: Vec<Value> = (0..ORDERS).map(orders::order).collect();
    for flavor in ["multi_thread", "current_thread"] {
        for agents in ["native", "rhai"] {
            let rt = runtime(flavor);
            let system = rt.block_on(system(agents));
            let mut stream = system.outcome_stream().unwrap();
            let mut group = c.benchmark_group(format!("pipeline/{agents}/{flavor}"));
            group.measurement_time(Duration::from_secs(5));
            group.sample_size(10);
            group.throughput(Throughput::Elements(ORDERS));
            group.bench_function("throughput_10k_orders", |b| {
                b.iter_custom(|iters| {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iters {
                        let system = system.clone();
                        let inputs = inputs.clone();
                        let started = Instant::now();
                        rt.block_on(async {
                            let producer = tokio::spawn(async move {
                                for input in inputs {
                                    system.submit(input).await;
                                }
                            });
                            for _ in 0..ORDERS {
                                stream.recv().await.unwrap();
                            }
                            producer.await.unwrap();
                        });
                        elapsed += started.elapsed();
                    }
                    elapsed
                })
            });
            group.throughput(Throughput::Elements(1));
            group.bench_function("latency_one_order", |b| {
                b.iter_custom(|iters| {
                    let system = system.clone();
                    let input = orders::order(2);
                    rt.block_on(rt.spawn(async move {
                        let started = Instant::now();
                        for _ in 0..iters {
                            let outcome = system.send(input.clone()).await;
                            assert!(outcome.is_ok());
                        }
                        started.elapsed()
                    }))
                    .unwrap()
                })
            });
            group.finish();
            rt.block_on(system.shutdown()).unwrap();
        }
    }
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
