//! The journal writer's group commit on SQLite (issue 24 item 8): W1-shaped runs (a run row,
//! four hops of ~200 bytes each with a commit callback, an outcome: six rows) appended as fast
//! as the writer takes them, then flushed, with `synchronous=NORMAL` (durable against a killed
//! process) and `FULL` (`power_loss_safe`, durable against a power loss).
//!
//! `cargo bench --bench journal` (throughput in runs/s; × 6 for rows/s). The writer's
//! throughput without criterion, plus a bulk load: the ignored test
//! `journal_writer_throughput` of bilayer-actors (actors/src/journal/store/tests.rs).

// A bench is not API: `criterion_group!` makes an undocumented `pub fn`.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bilayer::journal::{Entry, HopRow, JournalStore, OutcomeRow, RunRow, StoreOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Runs per measured iteration.
const RUNS: u64 = 2_000;

const OUTPUT: &str = r#"{"order_id":"ORD-000123","status":"shipped","total":1234.5,"items":3,"warehouse":"north","carrier":"dhl","eta_days":2,"priority":false,"note":"ok"}"#;

/// Appends `RUNS` runs numbered from `first`.
fn append_runs(writer: &bilayer::journal::JournalWriter, first: u64, released: &Arc<AtomicU64>) {
    let batch: Arc<str> = Arc::from("7f3a9c21e0b44d1a");
    let branch: Arc<str> = Arc::from("");
    let agents: [Arc<str>; 4] = ["intake", "manager", "fulfillment", "audit"].map(Arc::from);
    for n in first..first + RUNS {
        let run_id: Arc<str> = Arc::from(format!("{batch}-{n}"));
        writer.append(
            Entry::Run(RunRow {
                run_id: Arc::clone(&run_id),
                batch_id: Arc::clone(&batch),
                input_no: n,
                input: r#"{"order_id":"ORD-000123","quantity":3,"price":411.5}"#.to_string(),
                started_at: 1_765_000_000_000,
            }),
            None,
        );
        for (hop_no, agent) in (0_u32..).zip(&agents) {
            let released = Arc::clone(released);
            writer.append(
                Entry::Hop(HopRow {
                    run_id: Arc::clone(&run_id),
                    branch: Arc::clone(&branch),
                    hop_no,
                    agent: Arc::clone(agent),
                    version: "3".to_string(),
                    output: Some(OUTPUT.to_string()),
                    error: None,
                    decision: r#"{"next":"audit"}"#.to_string(),
                    started_at: 1_765_000_000_000,
                    elapsed_us: 120,
                }),
                Some(Box::new(move |result| {
                    if result.is_ok() {
                        released.fetch_add(1, Ordering::Relaxed);
                    }
                })),
            );
        }
        writer.append(
            Entry::Outcome(OutcomeRow {
                run_id,
                status: "ok".to_string(),
                outcome: OUTPUT.to_string(),
                finished_at: 1_765_000_000_100,
            }),
            None,
        );
    }
}

fn sqlite_writer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = std::env::temp_dir().join(format!("bilayer-bench-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let mut group = c.benchmark_group("journal/sqlite_writer");
    group.throughput(Throughput::Elements(RUNS));
    group.measurement_time(Duration::from_secs(10));
    for (name, power_loss_safe) in [("normal", false), ("power_loss_safe", true)] {
        let url = format!("sqlite:{}", dir.join(format!("{name}.db")).display());
        let options = StoreOptions {
            power_loss_safe,
            ..StoreOptions::default()
        };
        let store = rt
            .block_on(JournalStore::open(&url, options))
            .expect("open the store");
        let writer = rt.block_on(async { store.writer() });
        let released = Arc::new(AtomicU64::new(0));
        let mut next = 0;
        group.bench_function(format!("{RUNS}_runs_6_rows_each/{name}"), |b| {
            b.iter_custom(|iterations| {
                let started = Instant::now();
                for _ in 0..iterations {
                    append_runs(&writer, next, &released);
                    next += RUNS;
                    rt.block_on(writer.flush()).expect("committed");
                }
                started.elapsed()
            })
        });
        rt.block_on(async {
            writer.close().await.expect("close the writer");
            store.close().await;
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, sqlite_writer);
criterion_main!(benches);
