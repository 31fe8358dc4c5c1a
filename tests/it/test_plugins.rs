//! The hand-written plugins of the integration tests, gathered in one place so that every area
//! reuses them instead of writing its own: the configurable [`TestPlugin`] (built from a
//! [`Spec`], recording into a [`Log`]), and small plugins each showing one behaviour.
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bilayer::prelude::*;
use serde_json::Value;

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

/// A JSON agent of type `Custom("test")` computing its output with `f`.
pub fn step(
    id: &str,
    f: impl Fn(Value) -> PluginResult<Value> + Send + Sync + 'static,
) -> FnPlugin<impl Fn(Value) -> PluginResult<Value> + Send + Sync + 'static> {
    FnPlugin::new(id, PluginType::Custom("test".into()), f)
}

/// An agent that awaits on every message (a timer), so a turn can outlast the grace its
/// dropped manager gives it, and the kill lands in the middle of a hop.
pub struct Napping(pub PluginMetadata, pub Duration);

#[async_trait]
impl AgentPlugin for Napping {
    fn metadata(&self) -> &PluginMetadata {
        &self.0
    }
    async fn execute(&mut self, input: String) -> PluginResult<String> {
        Ok(input)
    }
    async fn execute_json_in_place(&mut self, message: &mut Value) -> PluginResult<()> {
        tokio::time::sleep(self.1).await;
        message["next_agent"] = Value::Null;
        Ok(())
    }
}

/// The top of a diamond: calls `left`, then `right`, with the same input, and answers
/// `"<left's reply> | <right's reply>"`.
pub struct Top {
    pub metadata: PluginMetadata,
    pub ctx: Option<PluginContext>,
}

#[async_trait]
impl AgentPlugin for Top {
    fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }
    async fn load(&mut self, ctx: &PluginContext) -> PluginResult<()> {
        self.ctx = Some(ctx.clone());
        Ok(())
    }
    async fn execute(&mut self, input: String) -> PluginResult<String> {
        let ctx = self.ctx.as_ref().unwrap();
        let left = ctx.call_plugin("left", input.clone()).await?;
        let right = ctx.call_plugin("right", input).await?;
        Ok(format!("{left} | {right}"))
    }
}

/// A plugin whose `start` panics with "cannot start today"; it echoes its input.
pub struct PanicsOnStart(pub PluginMetadata);

#[async_trait]
impl AgentPlugin for PanicsOnStart {
    fn metadata(&self) -> &PluginMetadata {
        &self.0
    }
    async fn start(&mut self) -> PluginResult<()> {
        panic!("cannot start today")
    }
    async fn execute(&mut self, input: String) -> PluginResult<String> {
        Ok(input)
    }
}

/// A plugin that writes only `metadata` and `execute` (its input in upper case), relying on the
/// trait's defaults for the rest of the lifecycle.
pub struct Shout(pub PluginMetadata);

#[async_trait]
impl AgentPlugin for Shout {
    fn metadata(&self) -> &PluginMetadata {
        &self.0
    }
    async fn execute(&mut self, input: String) -> PluginResult<String> {
        Ok(input.to_uppercase())
    }
}
