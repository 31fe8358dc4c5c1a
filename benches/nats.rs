//! The NATS transport's cost per hop: one W1 order (intake → manager → fulfillment, native
//! agents) sent and awaited, in process and over NATS JetStream (agents served by the same
//! process, every hop through the server: publish, store, deliver, acknowledge).
//!
//! `cargo bench --bench nats` (skips when no NATS server answers at $BILAYER_NATS_URL or
//! nats://127.0.0.1:4222). Throughput with 1-3 worker processes is `bash benches/nats_scale.sh`;
//! both are recorded in docs/benchmarks.md.

// A bench is not API: `criterion_group!` makes an undocumented `pub fn`.
#![allow(missing_docs)]

// Workload W1 (not library API: runtime/orders.rs says why); this crate uses part of it.
#[allow(dead_code)]
#[path = "../runtime/orders.rs"]
mod orders;

use std::time::Duration;

use bilayer::prelude::*;
use bilayer::{NatsStorage, NatsTransport, Transport};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

async fn system(transport: Transport, name: &str) -> PluginResult<AgentSystem> {
    let mut builder = AgentSystem::builder().name(name).transport(transport);
    for (agent, plugin) in orders::native_agents() {
        builder = builder.agent_with(agent, plugin, PluginOptions::new());
    }
    builder.build().await
}

fn per_hop(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = std::env::var("BILAYER_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    // A high-value order: three agents, so four legs over NATS (submit, two hops, result).
    let order = json!({"order_id": "ORD-1", "quantity": 5, "price": 250.0});
    let mut group = c.benchmark_group("nats/one_order_3_agents");
    group.measurement_time(Duration::from_secs(5));
    let configurations = [
        ("in_process", Transport::InProcess),
        (
            "nats_file",
            Transport::Nats(NatsTransport::new(url.clone())),
        ),
        (
            "nats_memory",
            Transport::Nats(
                NatsTransport::new(url.clone())
                    .storage(NatsStorage::Memory)
                    .stream("BILAYER_BENCH_HOP_MEM")
                    .subject_prefix("bilayer.bench_hop_mem"),
            ),
        ),
    ];
    for (label, transport) in configurations {
        let system = match rt.block_on(system(transport, "bench_hop")) {
            Ok(system) => system,
            Err(e) => {
                eprintln!("nats bench `{label}` skipped: {e}");
                continue;
            }
        };
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let (system, order) = (system.clone(), order.clone());
                // Timed inside the runtime: the caller is a task, as in an application.
                rt.block_on(rt.spawn(async move {
                    let started = std::time::Instant::now();
                    for _ in 0..iters {
                        let outcome = system.send(order.clone()).await;
                        assert!(outcome.is_ok(), "{outcome:?}");
                    }
                    started.elapsed()
                }))
                .unwrap()
            })
        });
        rt.block_on(system.shutdown()).unwrap();
    }
    group.finish();
}

criterion_group!(benches, per_hop);
criterion_main!(benches);
