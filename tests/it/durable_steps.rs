//! Exactly-once steps of native plugins in durable runs, through the Rust API: a hop that
//! made its step and then never finished (its process as good as dead) runs again on resume,
//! in another system on the same store, and gets the step's journaled result instead of doing
//! the effect again. Real SQLite files.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bilayer::journal::{JournalStore, RunJournal, StoreOptions};
use bilayer::prelude::*;
use bilayer::{step, AgentSystem};
use serde_json::{json, Value};

use crate::hot_reload_support::Scratch;

/// Charges a card once per order (a step), then, when `hang` is set, waits forever: the
/// process that ran it is then as good as dead, its hop never recorded.
struct Payment {
    meta: PluginMetadata,
    charges: Arc<AtomicU32>,
    hang: bool,
}

#[async_trait]
impl AgentPlugin for Payment {
    fn metadata(&self) -> &PluginMetadata {
        &self.meta
    }

    async fn execute(&mut self, input: String) -> PluginResult<String> {
        let order: Value = serde_json::from_str(&input)?;
        let charges = Arc::clone(&self.charges);
        let receipt: String = step("charge-card", async move {
            let n = charges.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(format!("rcpt-{}-{n}", order["id"]))
        })
        .await?;
        if self.hang {
            std::future::pending::<()>().await;
        }
        Ok(json!({ "receipt": receipt }).to_string())
    }
}

fn payment(charges: &Arc<AtomicU32>, hang: bool) -> Payment {
    Payment {
        meta: PluginMetadata::new("pay", "Payment", PluginType::Tool),
        charges: Arc::clone(charges),
        hang,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_done_before_a_crash_is_answered_from_the_journal_on_resume() {
    let dir = Scratch::new("durable-steps");
    let url = format!("sqlite:{}", dir.file("runs.db").display());
    let store = JournalStore::open(&url, StoreOptions::default())
        .await
        .expect("store opens");
    let charges = Arc::new(AtomicU32::new(0));

    // The first process: the step runs, the hop never ends.
    let first_journal = Arc::new(RunJournal::new(&store, "batch1"));
    let first = AgentSystem::builder()
        .agent("pay", payment(&charges, true))
        .journal(Arc::clone(&first_journal))
        .build()
        .await
        .expect("system builds");
    let mut first_outcomes = first.outcome_stream().expect("stream");
    first.submit_numbered(1, json!({"id": 7})).await;
    let started = std::time::Instant::now();
    while charges.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the step never ran"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first_journal
        .writer()
        .flush()
        .await
        .expect("journal commits");
    assert!(
        first_outcomes.try_recv().is_none(),
        "the hanging hop cannot have ended"
    );

    // What the journal holds: the run and its step, no hop, no outcome.
    let runs = store.load_runs("batch1").await.expect("runs load");
    assert_eq!(runs.len(), 1);
    let record = runs.into_iter().next().unwrap();
    assert!(record.hops.is_empty() && record.outcome.is_none());
    assert_eq!(record.calls.len(), 1, "{:?}", record.calls);
    assert_eq!(record.calls[0].call_key, "step:charge-card#0");

    // The next process resumes the batch: the hop runs again, the card is not charged again.
    let second = AgentSystem::builder()
        .agent("pay", payment(&charges, false))
        .journal(RunJournal::new(&store, "batch1"))
        .build()
        .await
        .expect("system builds");
    let mut outcomes = second.outcome_stream().expect("stream");
    second.resume_run(record, json!({"id": 7})).await;
    let outcome = tokio::time::timeout(Duration::from_secs(30), outcomes.recv())
        .await
        .expect("the resumed run ends")
        .expect("an outcome");
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(outcome.output, Some(json!({"receipt": "rcpt-7-1"})));
    assert_eq!(outcome.run_id.as_deref(), Some("batch1-1"));
    assert!(!outcome.replayed, "it ran now, from its journaled step");
    assert_eq!(
        charges.load(Ordering::SeqCst),
        1,
        "the card was charged once"
    );

    // Resumed once more, the run is over: its outcome is read back, nothing runs.
    let runs = store.load_runs("batch1").await.expect("runs load");
    let record = runs.into_iter().next().unwrap();
    assert_eq!(record.hops.len(), 1);
    second.resume_run(record, json!({"id": 7})).await;
    let again = outcomes.recv().await.expect("an outcome");
    assert!(
        again.replayed && again.output == outcome.output,
        "{again:?}"
    );
    assert_eq!(charges.load(Ordering::SeqCst), 1);
    second.shutdown().await.expect("shuts down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_a_durable_run_a_step_just_runs() {
    let charges = Arc::new(AtomicU32::new(0));
    let system = AgentSystem::builder()
        .agent("pay", payment(&charges, false))
        .build()
        .await
        .expect("system builds");
    for _ in 0..2 {
        let outcome = system.send(json!({"id": 1})).await;
        assert!(outcome.is_ok() && outcome.run_id.is_none(), "{outcome:?}");
    }
    assert_eq!(charges.load(Ordering::SeqCst), 2);
    system.shutdown().await.expect("shuts down");
}
