//! What hosting a plugin in an actor costs: a native plugin's `execute` called directly, against
//! the same call through `PluginManager::execute` (mailbox send, plugin, oneshot reply), from a
//! task inside the runtime and from a thread outside it.
//!
//! `cargo bench --bench plugin_call`; figures in docs/benchmarks.md.

// A bench is not API: `criterion_group!` makes an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use bilayer::prelude::*;
use criterion::{criterion_group, criterion_main, Criterion};

/// The seed's plugin body: `format!("Processed: {}", input)`.
struct Processed(PluginMetadata);

#[async_trait]
impl AgentPlugin for Processed {
    fn metadata(&self) -> &PluginMetadata {
        &self.0
    }
    async fn execute(&mut self, input: String) -> PluginResult<String> {
        Ok(format!("Processed: {}", input))
    }
}

fn plugin() -> Processed {
    Processed(PluginMetadata::new(
        "my_plugin",
        "My Plugin",
        PluginType::Custom("analytics".into()),
    ))
}

/// A bare ractor actor answering a call with the same `format!`: the floor our plugin actor
/// builds on.
struct BareActor;

impl ractor::Actor for BareActor {
    type Msg = (String, ractor::RpcReplyPort<String>);
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ractor::ActorRef<Self::Msg>,
        _args: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ractor::ActorRef<Self::Msg>,
        (input, reply): Self::Msg,
        _state: &mut (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        let _ = reply.send(format!("Processed: {}", input));
        Ok(())
    }
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn plugin_call(c: &mut Criterion) {
    let rt = runtime();
    let manager = rt.block_on(async {
        let manager = PluginManager::new("bench");
        manager.register(plugin()).await.unwrap();
        manager.load_all().await.unwrap();
        manager.start_all().await.unwrap();
        manager
    });

    let untimed = rt.block_on(async {
        let manager = PluginManager::builder("bench-untimed")
            .execute_timeout(None)
            .build();
        manager.register(plugin()).await.unwrap();
        manager.load_all().await.unwrap();
        manager.start_all().await.unwrap();
        manager
    });

    let mut group = c.benchmark_group("plugin_call");
    group.measurement_time(Duration::from_secs(4));

    group.bench_function("direct", |b| {
        b.iter_custom(|iters| {
            rt.block_on(rt.spawn(async move {
                let mut plugin = plugin();
                let started = Instant::now();
                for _ in 0..iters {
                    let out = plugin.execute("input data".to_string()).await.unwrap();
                    std::hint::black_box(out);
                }
                started.elapsed()
            }))
            .unwrap()
        })
    });

    group.bench_function("actor_from_task_in_runtime", |b| {
        b.iter_custom(|iters| {
            let manager = manager.clone();
            rt.block_on(rt.spawn(async move {
                let started = Instant::now();
                for _ in 0..iters {
                    let out = manager
                        .execute("my_plugin", "input data".to_string())
                        .await
                        .unwrap();
                    std::hint::black_box(out);
                }
                started.elapsed()
            }))
            .unwrap()
        })
    });

    group.bench_function("actor_from_task_in_runtime_no_timeout", |b| {
        b.iter_custom(|iters| {
            let manager = untimed.clone();
            rt.block_on(rt.spawn(async move {
                let started = Instant::now();
                for _ in 0..iters {
                    let out = manager
                        .execute("my_plugin", "input data".to_string())
                        .await
                        .unwrap();
                    std::hint::black_box(out);
                }
                started.elapsed()
            }))
            .unwrap()
        })
    });

    group.bench_function("actor_from_thread_outside_runtime", |b| {
        let handle = rt.handle().clone();
        b.iter(|| {
            handle
                .block_on(manager.execute("my_plugin", "input data".to_string()))
                .unwrap()
        })
    });
    group.bench_function("bare_ractor_call_from_task_in_runtime", |b| {
        let (actor, _) = rt
            .block_on(ractor::Actor::spawn(None, BareActor, ()))
            .unwrap();
        b.iter_custom(|iters| {
            let actor = actor.clone();
            rt.block_on(rt.spawn(async move {
                let started = Instant::now();
                for _ in 0..iters {
                    let out = actor
                        .call(|reply| ("input data".to_string(), reply), None)
                        .await
                        .unwrap();
                    std::hint::black_box(out);
                }
                started.elapsed()
            }))
            .unwrap()
        })
    });

    // The same three on a current-thread runtime: no second worker to wake, so the figures
    // show the actor path itself rather than the cross-worker notification.
    let local = current_thread_runtime();
    let local_manager = local.block_on(async {
        let manager = PluginManager::new("bench-local");
        manager.register(plugin()).await.unwrap();
        manager.load_all().await.unwrap();
        manager.start_all().await.unwrap();
        manager
    });
    group.bench_function("current_thread/direct", |b| {
        b.iter_custom(|iters| {
            local.block_on(async move {
                let mut plugin = plugin();
                let started = Instant::now();
                for _ in 0..iters {
                    let out = plugin.execute("input data".to_string()).await.unwrap();
                    std::hint::black_box(out);
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("current_thread/actor", |b| {
        b.iter_custom(|iters| {
            let manager = local_manager.clone();
            local.block_on(async move {
                let started = Instant::now();
                for _ in 0..iters {
                    let out = manager
                        .execute("my_plugin", "input data".to_string())
                        .await
                        .unwrap();
                    std::hint::black_box(out);
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("current_thread/bare_ractor_call", |b| {
        let (actor, _) = local
            .block_on(ractor::Actor::spawn(None, BareActor, ()))
            .unwrap();
        b.iter_custom(|iters| {
            let actor = actor.clone();
            local.block_on(async move {
                let started = Instant::now();
                for _ in 0..iters {
                    let out = actor
                        .call(|reply| ("input data".to_string(), reply), None)
                        .await
                        .unwrap();
                    std::hint::black_box(out);
                }
                started.elapsed()
            })
        })
    });
    group.finish();
    rt.block_on(manager.shutdown()).unwrap();
    local.block_on(local_manager.shutdown()).unwrap();
}

criterion_group!(benches, plugin_call);
criterion_main!(benches);
