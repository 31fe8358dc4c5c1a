//! What hosting a plugin in an actor costs: a native plugin's `execute` called directly, against
//! the same call through `PluginManager::execute` (mailbox send, plugin, oneshot reply), from a
//! task inside the runtime and from a thread outside it.
//!
//! `cargo bench --bench plugin_call`; figures in docs/benchmarks.md.

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
    fn state(&self) -> PluginState {
        PluginState::Running
    }
    async fn load(&mut self, _ctx: &PluginContext) -> PluginResult<()> {
        Ok(())
    }
    async fn init_plugin(&mut self) -> PluginResult<()> {
        Ok(())
    }
    async fn start(&mut self) -> PluginResult<()> {
        Ok(())
    }
    async fn stop(&mut self) -> PluginResult<()> {
        Ok(())
    }
    async fn unload(&mut self) -> PluginResult<()> {
        Ok(())
    }
    async fn execute(&mut self, input: String) -> PluginResult<String> {
        Ok(format!("Processed: {}", input))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

fn plugin() -> Processed {
    Processed(PluginMetadata::new(
        "my_plugin",
        "My Plugin",
        PluginType::Custom("analytics".into()),
    ))
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
    group.finish();
    rt.block_on(manager.shutdown()).unwrap();
}

criterion_group!(benches, plugin_call);
criterion_main!(benches);
