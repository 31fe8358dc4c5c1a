//! Per-rule hit counts in the `metrics` facade: `bilayer_rule_hits_total{plugin, rule}`.
//!
//! The recorder is scoped to the test's thread, which registers the counters when it loads the
//! plugin: other tests of the binary, running at the same time, load the same script under the
//! same name.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bilayer_plugins::rhai_runtime::{RhaiPlugin, RULE_HITS_METRIC};
use bilayer_plugins::{AgentPlugin, PluginContext};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Counters by `name{label=value,...}`.
#[derive(Clone, Default)]
struct CountingRecorder(Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>);

impl CountingRecorder {
    fn get(&self, plugin: &str, rule: &str) -> u64 {
        let key = format!("{RULE_HITS_METRIC}{{plugin={plugin},rule={rule}}}");
        self.0
            .lock()
            .unwrap()
            .get(&key)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl Recorder for CountingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let counter = Arc::clone(self.0.lock().unwrap().entry(name).or_default());
        Counter::from_arc(counter)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fired_rule_is_counted_under_its_plugin_and_name() {
    let recorder = CountingRecorder::default();
    // The test's body runs on this thread (`block_on`), the plugin's load with it.
    let _scope = metrics::set_default_local_recorder(&recorder);

    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/rules/content_moderation.rhai");
    let mut plugin = RhaiPlugin::from_file(path).unwrap();
    plugin
        .load(&PluginContext::new("content_moderation"))
        .await
        .unwrap();
    plugin.start().await.unwrap();

    for message in ["BUY NOW", "CLICK HERE", "damn", "hello", "hi", "hey"] {
        plugin
            .execute(serde_json::json!(message).to_string())
            .await
            .unwrap();
    }
    assert_eq!(recorder.get("content_moderation", "spam_filter"), 2);
    assert_eq!(recorder.get("content_moderation", "profanity_filter"), 1);
    assert_eq!(recorder.get("content_moderation", "allow_default"), 3);
}
