//! A configurable test plugin shared by the integration tests, and small helpers to wait for
//! asynchronous outcomes without fixed sleeps.
//!
//! [`TestPlugin`] records every lifecycle call into a shared [`Log`] as `"<id>#<instance>:<step>"`
//! (the instance number tells a fresh instance built by a factory from the same instance being
//! re-run), and understands a few inputs:
//!
//! | input            | answer                                                        |
//! |------------------|---------------------------------------------------------------|
//! | `ping`           | `pong <id>#<instance>`                                        |
//! | the `panic_on`   | logs `<id>#<n>:entered <input>`, sleeps `panic_delay`, panics |
//! | `fail`           | `Err(PluginError::Execution)`                                 |
//! | `count`          | increments a per-instance counter and returns it              |
//! | `sleep:<ms>`     | sleeps asynchronously, then `slept <id>`                      |
//! | anything else    | forwarded to `call` through `PluginContext::call_plugin` when |
//! |                  | set (`<id>><reply>`), else echoed as `<id>: <input>`          |
// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

pub mod capture;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bilayer::prelude::*;
use tokio::sync::broadcast;

/// An ordered record of lifecycle calls, shared between plugins and the test.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }

    pub fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Entries of one plugin (any instance), in order.
    pub fn of(&self, id: &str) -> Vec<String> {
        let prefix = format!("{id}#");
        self.entries()
            .into_iter()
            .filter(|e| e.starts_with(&prefix))
            .collect()
    }

    /// How many times `step` was logged for plugin `id` (any instance).
    pub fn count(&self, id: &str, step: &str) -> usize {
        let suffix = format!(":{step}");
        self.of(id).iter().filter(|e| e.ends_with(&suffix)).count()
    }

    /// Plugin ids in the order they logged `step`.
    pub fn order_of(&self, step: &str) -> Vec<String> {
        let suffix = format!(":{step}");
        self.entries()
            .iter()
            .filter(|e| e.ends_with(&suffix))
            .map(|e| e.split('#').next().unwrap().to_string())
            .collect()
    }
}

/// How to build a [`TestPlugin`]; cloneable so a factory can build fresh instances from it.
#[derive(Clone)]
pub struct Spec {
    pub id: String,
    pub dependencies: Vec<String>,
    pub log: Log,
    pub panic_on: Option<String>,
    pub panic_delay: Duration,
    pub call: Option<String>,
    /// How many instances this spec has built (shared by its clones).
    pub instances: Arc<AtomicU64>,
}

impl Spec {
    pub fn new(id: &str, log: &Log) -> Self {
        Self {
            id: id.to_string(),
            dependencies: Vec::new(),
            log: log.clone(),
            panic_on: None,
            panic_delay: Duration::ZERO,
            call: None,
            instances: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn depends_on(mut self, id: &str) -> Self {
        self.dependencies.push(id.to_string());
        self
    }

    pub fn panics_on(mut self, input: &str) -> Self {
        self.panic_on = Some(input.to_string());
        self
    }

    pub fn panic_delay(mut self, delay: Duration) -> Self {
        self.panic_delay = delay;
        self
    }

    pub fn calls(mut self, target: &str) -> Self {
        self.call = Some(target.to_string());
        self
    }

    pub fn build(&self) -> TestPlugin {
        let instance = self.instances.fetch_add(1, Ordering::SeqCst) + 1;
        let mut metadata =
            PluginMetadata::new(&self.id, format!("Test {}", self.id), PluginType::Tool)
                .with_description("integration-test plugin");
        for dependency in &self.dependencies {
            metadata = metadata.with_dependency(dependency);
        }
        TestPlugin {
            metadata,
            spec: self.clone(),
            instance,
            counter: 0,
            ctx: None,
        }
    }

    pub fn instances_built(&self) -> u64 {
        self.instances.load(Ordering::SeqCst)
    }
}

pub struct TestPlugin {
    metadata: PluginMetadata,
    spec: Spec,
    instance: u64,
    counter: u64,
    ctx: Option<PluginContext>,
}

impl TestPlugin {
    fn record(&self, step: &str) {
        self.spec
            .log
            .push(format!("{}#{}:{step}", self.spec.id, self.instance));
    }
}

#[async_trait]
impl AgentPlugin for TestPlugin {
    fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }

    async fn load(&mut self, ctx: &PluginContext) -> PluginResult<()> {
        self.record("load");
        self.ctx = Some(ctx.clone());
        Ok(())
    }

    async fn init_plugin(&mut self) -> PluginResult<()> {
        self.record("init");
        Ok(())
    }

    async fn start(&mut self) -> PluginResult<()> {
        self.record("start");
        Ok(())
    }

    async fn stop(&mut self) -> PluginResult<()> {
        self.record("stop");
        Ok(())
    }

    async fn unload(&mut self) -> PluginResult<()> {
        self.record("unload");
        self.ctx = None;
        Ok(())
    }

    async fn execute(&mut self, input: String) -> PluginResult<String> {
        let id = self.spec.id.clone();
        if input == "ping" {
            return Ok(format!("pong {id}#{}", self.instance));
        }
        if self.spec.panic_on.as_deref() == Some(input.as_str()) {
            self.record(&format!("entered {input}"));
            if !self.spec.panic_delay.is_zero() {
                tokio::time::sleep(self.spec.panic_delay).await;
            }
            panic!("test plugin {id} exploded on {input}");
        }
        if input == "fail" {
            return Err(PluginError::execution(format!("{id} was asked to fail")));
        }
        if input == "count" {
            self.counter += 1;
            return Ok(self.counter.to_string());
        }
        if let Some(ms) = input.strip_prefix("sleep:") {
            let ms: u64 = ms
                .parse()
                .map_err(|_| PluginError::InvalidInput(input.clone()))?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return Ok(format!("slept {id}"));
        }
        if let Some(target) = &self.spec.call {
            let ctx = self
                .ctx
                .as_ref()
                .expect("execute runs only after load stored the context");
            let reply = ctx.call_plugin(target, input).await?;
            return Ok(format!("{id}>{reply}"));
        }
        Ok(format!("{id}: {input}"))
    }
}

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
