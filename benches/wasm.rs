//! What a WASM plugin costs: compiling a module, a call on a fresh instance (pooling allocator
//! against on-demand allocation), a call on a reused instance, the same call through
//! `WasmRuntime::execute` from a task, a trapping call, and guest compute against the same
//! algorithm in native Rust.
//!
//! Issue targets (medians): a fresh instance per call < 10 µs (the seed claims 1-10 ms of
//! startup), a warm call with a 100-byte JSON round trip < 2 µs.
//!
//! The modules are the WAT fixtures of `plugins/tests/fixtures/wasm/`: `uppercase.wat` (copies
//! its input uppercased: the JSON round trip), `counter.wat` (no metadata export, for compile
//! time), `traps.wat` and `fnv_rounds.wat` (FNV-1a 64 over the data, `rounds` times).
//!
//! `cargo bench --bench wasm`.

// A bench is not API: `criterion_group!` makes an undocumented `pub fn`.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bilayer_plugins::wasm_runtime::{
    InstanceMode, WasmConfig, WasmEngine, WasmPlugin, WasmRuntime,
};
use criterion::{criterion_group, criterion_main, Criterion};

/// A 100-byte JSON object.
const JSON_100: &str =
    r#"{"id":"ORD-123","customer":"acme","quantity":5,"price":250.0,"status":"new","note":"rush"}"#;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("plugins/tests/fixtures/wasm")
        .join(name)
}

fn group_times(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
}

/// The native twin of `fnv_rounds.wat`.
fn fnv_rounds(rounds: u32, data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for _ in 0..rounds {
        for byte in data {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

fn compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("wasm_compile");
    group_times(&mut group);
    let engine = WasmEngine::shared().unwrap();
    let text = std::fs::read_to_string(fixture("counter.wat")).unwrap();
    // A different comment each time defeats the engine's module cache: every iteration is a
    // real compile (WAT text to native code, plus the ABI checks).
    let serial = AtomicU64::new(0);
    group.bench_function("counter.wat text to native", |b| {
        b.iter(|| {
            let n = serial.fetch_add(1, Ordering::Relaxed);
            let source = format!("{text}\n;; {n}");
            WasmPlugin::compile_bytes(&engine, "counter", source).unwrap()
        })
    });
    let same = std::fs::read(fixture("counter.wat")).unwrap();
    let _keep = WasmPlugin::compile_bytes(&engine, "counter", &same).unwrap();
    group.bench_function("same bytes again (module cache hit)", |b| {
        b.iter(|| WasmPlugin::compile_bytes(&engine, "counter", &same).unwrap())
    });
    group.finish();
}

fn calls(c: &mut Criterion) {
    let mut group = c.benchmark_group("wasm_call_100B_json");
    group_times(&mut group);

    let pooled = WasmEngine::new(WasmConfig::default()).unwrap();
    assert!(pooled.uses_pooling());
    let on_demand = WasmEngine::new(WasmConfig::default().pooling(false)).unwrap();
    let expected = JSON_100.to_uppercase();

    for (name, engine, mode) in [
        (
            "fresh instance, pooling",
            &pooled,
            InstanceMode::FreshPerCall,
        ),
        (
            "fresh instance, on-demand",
            &on_demand,
            InstanceMode::FreshPerCall,
        ),
        ("reused instance (warm)", &pooled, InstanceMode::Reuse),
    ] {
        let plugin = WasmPlugin::compile_file(engine, fixture("uppercase.wat"))
            .unwrap()
            .with_instance_mode(mode);
        assert_eq!(plugin.execute_sync(JSON_100).unwrap(), expected);
        group.bench_function(name, |b| b.iter(|| plugin.execute_sync(JSON_100).unwrap()));
    }

    // Through the runtime, from a task: registry lookup and the hand-off off the async worker.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runtime = WasmRuntime::with_engine(pooled.clone());
    for (id, mode) in [
        ("fresh", InstanceMode::FreshPerCall),
        ("warm", InstanceMode::Reuse),
    ] {
        let bytes = std::fs::read(fixture("uppercase.wat")).unwrap();
        let plugin = runtime
            .load_bytes(id, bytes)
            .unwrap()
            .with_instance_mode(mode);
        tokio.block_on(runtime.register(plugin)).unwrap();
    }
    for id in ["fresh", "warm"] {
        group.bench_function(
            format!("WasmRuntime::execute, {id} instance, from a task"),
            |b| {
                b.iter_custom(|iters| {
                    tokio.block_on(async {
                        let started = std::time::Instant::now();
                        for _ in 0..iters {
                            runtime.execute(id, JSON_100).await.unwrap();
                        }
                        started.elapsed()
                    })
                })
            },
        );
    }

    let traps = WasmPlugin::compile_file(&pooled, fixture("traps.wat")).unwrap();
    group.bench_function("trap (unreachable), fresh instance, error built", |b| {
        b.iter(|| traps.execute_sync("U").unwrap_err())
    });
    group.finish();
}

fn compute(c: &mut Criterion) {
    let mut group = c.benchmark_group("wasm_compute_fnv_4KiB_x16");
    group_times(&mut group);
    let rounds: u32 = 16;
    let data: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut input = rounds.to_le_bytes().to_vec();
    input.extend_from_slice(&data);

    let plugin = WasmPlugin::from_file(fixture("fnv_rounds.wat"))
        .unwrap()
        .with_instance_mode(InstanceMode::Reuse);
    assert_eq!(
        plugin.execute_bytes(&input).unwrap(),
        fnv_rounds(rounds, &data).to_le_bytes()
    );
    group.bench_function("native Rust", |b| {
        b.iter(|| fnv_rounds(std::hint::black_box(rounds), std::hint::black_box(&data)))
    });
    group.bench_function("WASM guest (reused instance, input copied in)", |b| {
        b.iter(|| plugin.execute_bytes(&input).unwrap())
    });
    group.finish();
}

criterion_group!(benches, compile, calls, compute);
criterion_main!(benches);
