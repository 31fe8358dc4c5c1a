//! Small helpers of the tests of plugin managers and agent systems: waiting for asynchronous
//! outcomes without fixed sleeps, starting a set of test plugins, (in `capture`) reading
//! what the runtime reports to metrics and tracing, and (in `cpu_bound`) keeping timing tests
//! apart. The test plugins themselves are in `test_plugins`.

pub mod capture;
pub mod cpu_bound;
pub mod scoped;

use std::time::{Duration, Instant};

use bilayer::prelude::*;
use tokio::sync::broadcast;

use crate::test_plugins::Spec;

/// A generous bound for anything asynchronous to settle on a noisy 2-core machine.
pub const SETTLE: Duration = Duration::from_secs(5);

/// Polls `condition` until it holds, failing the test after [`SETTLE`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Receives supervision events until one satisfies `last`, returning all of them in order;
/// fails the test after [`SETTLE`].
pub async fn events_until(
    events: &mut broadcast::Receiver<SupervisorEvent>,
    mut last: impl FnMut(&SupervisorEvent) -> bool,
) -> Vec<SupervisorEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) => {
                let done = last(&event);
                seen.push(event);
                if done {
                    return seen;
                }
            }
            Ok(Err(e)) => panic!("supervision event channel failed: {e}; seen so far {seen:?}"),
            Err(_) => panic!("timed out waiting for a supervision event; seen so far {seen:?}"),
        }
    }
}

/// Registers, loads and starts one plugin per spec (instances, not factories).
pub async fn start_plugins(manager: &PluginManager, specs: &[&Spec]) {
    for spec in specs {
        manager.register(spec.build()).await.unwrap();
    }
    manager.load_all().await.unwrap();
    manager.start_all().await.unwrap();
}
