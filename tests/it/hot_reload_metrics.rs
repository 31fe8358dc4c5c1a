//! Hot reload's metrics (issue 6 item 7): a successful reload, a failed one and a rollback are
//! counted per plugin, and the latency from the change to the new version serving is recorded,
//! as a Prometheus scrape shows them. The Prometheus recorder is scoped to the test's own runtime
//! (`common::scoped`): other tests of the binary reload plugins named `p` too.

use std::time::Duration;

use bilayer::hot_reload::{HotReloadConfig, ReloadEvent, ReloadStrategy};
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing::dispatcher::Dispatch;

use crate::common::scoped;
use crate::hot_reload_support::{counting_script, Rig};

/// The value of `name{plugin="p"}` (a counter, or a histogram's `_count`) in a scrape.
fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|line| line.starts_with(name) && line.contains("plugin=\"p\""))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[test]
fn reloads_failures_rollbacks_and_latency_are_measured() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    // The runtime's threads keep the recorder until they stop: one small leak per test.
    let recorder = Box::leak(Box::new(recorder));
    scoped::block_on(recorder, Dispatch::none(), async move {
        let config = HotReloadConfig::new()
            .with_strategy(ReloadStrategy::Debounced(Duration::from_millis(150)))
            .with_max_attempts(1);
        let mut rig = Rig::start("metrics", config, &[("p.rhai", &counting_script(1))]).await;
        rig.call("p", "{}").await;

        // A good new version, then a broken one that never goes live.
        rig.dir.write("p.rhai", &counting_script(2));
        rig.reload_of("p").await;
        rig.dir
            .write("p.rhai", "fn run(input) { let x = ; }\nrun\n");
        rig.reload_of("p").await;
        // A version that goes live and then fails past max_attempts is rolled back.
        rig.dir
            .write("p.rhai", "fn run(input) { throw \"broken\"; }\nrun\n");
        rig.reload_of("p").await;
        rig.plugins.execute("p", "{}".into()).await.unwrap_err();
        // The failure past max_attempts rolls back; the call is run again on the old version.
        rig.plugins.execute("p", "{}".into()).await.unwrap();
        rig.until("the rollback", |e| {
            matches!(e, ReloadEvent::RolledBack { .. })
        })
        .await;

        let text = scrape.render();
        assert_eq!(sample(&text, "bilayer_reloads_total"), Some(2.0), "{text}");
        assert!(
            sample(&text, "bilayer_reload_failures_total").unwrap_or(0.0) >= 1.0,
            "{text}"
        );
        assert_eq!(
            sample(&text, "bilayer_rollbacks_total"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "bilayer_reload_latency_seconds_count"),
            Some(2.0),
            "{text}"
        );
    });
}
