//! `bilayer run --store URL [--resume]`: durable runs. Opens the store (before any input is
//! read, so a store that cannot be opened costs nothing), then begins a new batch of runs or,
//! with `--resume`, takes up the store's latest batch: the runs it holds, by input number,
//! for the driver to read back (ended) or continue (in flight).
//!
//! A batch records the system it ran (the entry agent and what serves each agent); resuming
//! it with different agents is refused, naming the difference, unless
//! `--accept-changed-system` says to go on anyway.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use bilayer::journal::{
    unix_ms, BatchRow, JournalStore, JournalWriter, RunJournal, RunRecord, StoreOptions,
};
use bilayer::system_config::SystemDefinition;
use serde_json::Value;

/// What `--store` and `--resume` ask for.
pub(super) struct DurableOptions {
    pub store: Option<String>,
    pub resume: bool,
    pub accept_changed_system: bool,
}

/// An open journal for this run.
pub(super) struct Durable {
    pub journal: Arc<RunJournal>,
    pub writer: JournalWriter,
    /// The runs of the resumed batch, by input number (empty for a new batch).
    pub resumed: HashMap<u64, RunRecord>,
}

/// Opens the store the flags or the definition name and begins (or resumes) a batch;
/// `None` when neither names a store.
pub(super) async fn open(
    definition: &SystemDefinition,
    options: DurableOptions,
    source: &str,
) -> Result<Option<Durable>, String> {
    let Some(url) = options.store.or_else(|| definition.store_url()) else {
        if options.resume {
            return Err(
                "--resume needs a store: give --store URL (or [durability] store in \
                        the definition) naming the store of the run to resume"
                    .into(),
            );
        }
        return Ok(None);
    };
    refuse_memory(&url)?;
    let store = JournalStore::open(
        &url,
        StoreOptions {
            power_loss_safe: definition.power_loss_safe(),
            ..StoreOptions::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let summary = definition.journal_summary();
    let digest = format!("{:016x}", bilayer::content_hash(summary.as_bytes()));
    let latest = if options.resume {
        store
            .latest_batch_from(source)
            .await
            .map_err(|e| e.to_string())?
    } else {
        None
    };
    let (batch_id, resumed) = match latest {
        Some(batch) => {
            if batch.system_digest != digest && !options.accept_changed_system {
                return Err(format!(
                    "the store's latest batch ({}) ran a different system: {}; resume it with \
                     --accept-changed-system to go on anyway, or start a new batch without \
                     --resume",
                    batch.batch_id,
                    difference(&batch.system_summary, &summary)
                ));
            }
            let runs = store
                .load_runs(&batch.batch_id)
                .await
                .map_err(|e| e.to_string())?;
            let resumed = runs
                .into_iter()
                .map(|record| (record.run.input_no, record))
                .collect();
            (batch.batch_id, resumed)
        }
        None => {
            if options.resume {
                eprintln!(
                    "bilayer run: the store holds no batch over {source} to resume; starting a \
                     new batch"
                );
            }
            let batch = BatchRow {
                batch_id: new_batch_id(),
                system_digest: digest,
                system_summary: summary,
                source: source.to_string(),
                started_at: unix_ms(std::time::SystemTime::now()),
            };
            store.begin_batch(&batch).await.map_err(|e| e.to_string())?;
            (batch.batch_id, HashMap::new())
        }
    };
    let journal = RunJournal::new(&store, batch_id);
    Ok(Some(Durable {
        writer: journal.writer().clone(),
        journal: Arc::new(journal),
        resumed,
    }))
}

/// The journal of `bilayer worker --store URL` (or the definition's store): the hops it
/// serves are journaled under the runs their messages carry; it admits no run of its own.
#[cfg(feature = "nats")]
pub(super) async fn open_for_worker(
    definition: &SystemDefinition,
    store: Option<String>,
) -> Result<Option<Arc<RunJournal>>, String> {
    let Some(url) = store.or_else(|| definition.store_url()) else {
        return Ok(None);
    };
    refuse_memory(&url)?;
    let options = StoreOptions {
        power_loss_safe: definition.power_loss_safe(),
        ..StoreOptions::default()
    };
    let store = JournalStore::open(&url, options)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(Arc::new(RunJournal::new(&store, ""))))
}

/// An in-memory SQLite store survives nothing, so a command that journals runs in it would
/// promise what it cannot keep.
fn refuse_memory(url: &str) -> Result<(), String> {
    if url.starts_with("sqlite:") && (url.contains(":memory:") || url.contains("mode=memory")) {
        return Err(format!(
            "the journal store {url} is in memory and survives nothing: give a file \
             (--store sqlite:runs.db) or a PostgreSQL URL"
        ));
    }
    Ok(())
}

/// A new batch id: 12 hex digits, random per process and time.
fn new_batch_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

/// How the system a batch ran (`before`) differs from this one (`now`), in words.
fn difference(before: &str, now: &str) -> String {
    let read = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let (before, now) = (read(before), read(now));
    let agents = |v: &Value| v["agents"].as_object().cloned().unwrap_or_default();
    let (was, is) = (agents(&before), agents(&now));
    let mut changes = Vec::new();
    let added: Vec<&str> = is
        .keys()
        .filter(|k| !was.contains_key(*k))
        .map(String::as_str)
        .collect();
    if !added.is_empty() {
        changes.push(format!("agents added: {}", added.join(", ")));
    }
    let removed: Vec<&str> = was
        .keys()
        .filter(|k| !is.contains_key(*k))
        .map(String::as_str)
        .collect();
    if !removed.is_empty() {
        changes.push(format!("agents removed: {}", removed.join(", ")));
    }
    for (name, source) in &is {
        if let Some(old) = was.get(name).filter(|old| *old != source) {
            changes.push(format!(
                "agent {name} was {} and is {}",
                old.as_str().unwrap_or("?"),
                source.as_str().unwrap_or("?")
            ));
        }
    }
    if before["entry"] != now["entry"] {
        changes.push(format!(
            "the entry agent was {} and is {}",
            before["entry"].as_str().unwrap_or("?"),
            now["entry"].as_str().unwrap_or("?")
        ));
    }
    if changes.is_empty() {
        "its definition differs".into()
    } else {
        changes.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::difference;

    #[test]
    fn the_difference_names_agents_added_removed_and_changed() {
        let before = r#"{"entry":"a","agents":{"a":"script:a.rhai","b":"native:x"}}"#;
        let now = r#"{"entry":"a","agents":{"a":"script:a2.rhai","c":"builtin:llm"}}"#;
        let text = difference(before, now);
        assert!(text.contains("agents added: c"), "{text}");
        assert!(text.contains("agents removed: b"), "{text}");
        assert!(
            text.contains("agent a was script:a.rhai and is script:a2.rhai"),
            "{text}"
        );
    }
}
