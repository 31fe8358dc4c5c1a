//! `FnPlugin`: a native plugin made from a closure over JSON values.
//!
//! Most native agents are a pure function of their input; writing the whole `AgentPlugin`
//! trait for each is noise. `FnPlugin` implements it around `Fn(Value) -> PluginResult<Value>`
//! and overrides `execute_json`, so inside an agent system the message is never printed and
//! re-parsed between hops.
//!
//! A function that only reads its input should say so with [`FnPlugin::reading`]
//! (`Fn(&Value)`): an agent system keeps each message for its dead-letter queue while the agent
//! runs, and a reading function works on that message in place instead of on a deep copy.
//!
//! ```
//! use bilayer_plugins::{FnPlugin, PluginType};
//! use serde_json::json;
//!
//! let double = FnPlugin::new("double", PluginType::Tool, |input| {
//!     Ok(json!({ "value": input["value"].as_f64().unwrap_or(0.0) * 2.0 }))
//! });
//! let route = FnPlugin::reading("route", PluginType::Tool, |input| {
//!     let big = input["total"].as_f64().unwrap_or(0.0) > 1000.0;
//!     Ok(json!({ "next_agent": if big { "manager" } else { "fulfillment" } }))
//! });
//! # let _ = (double, route);
//! ```

use std::any::Any;

use async_trait::async_trait;
use serde_json::Value;

use crate::{AgentPlugin, PluginContext, PluginMetadata, PluginResult, PluginState, PluginType};

/// The function behind an [`FnPlugin`]: any `Fn(Value) -> PluginResult<Value>` closure, or a
/// [`Reading`] one that borrows its input.
pub trait JsonFunction: Send + Sync + 'static {
    fn call(&self, input: Value) -> PluginResult<Value>;
    fn call_ref(&self, input: &Value) -> PluginResult<Value>;
}

impl<F> JsonFunction for F
where
    F: Fn(Value) -> PluginResult<Value> + Send + Sync + 'static,
{
    fn call(&self, input: Value) -> PluginResult<Value> {
        self(input)
    }

    fn call_ref(&self, input: &Value) -> PluginResult<Value> {
        self(input.clone())
    }
}

/// A function that reads its input in place (see [`FnPlugin::reading`]).
pub struct Reading<G>(G);

impl<G> JsonFunction for Reading<G>
where
    G: Fn(&Value) -> PluginResult<Value> + Send + Sync + 'static,
{
    fn call(&self, input: Value) -> PluginResult<Value> {
        (self.0)(&input)
    }

    fn call_ref(&self, input: &Value) -> PluginResult<Value> {
        (self.0)(input)
    }
}

/// A native plugin backed by a function of its JSON input.
pub struct FnPlugin<F> {
    metadata: PluginMetadata,
    state: PluginState,
    function: F,
}

impl<F> FnPlugin<F>
where
    F: Fn(Value) -> PluginResult<Value> + Send + Sync + 'static,
{
    /// A plugin with id and name `id`.
    pub fn new(id: impl Into<String>, plugin_type: PluginType, function: F) -> Self {
        let id = id.into();
        Self::with_metadata(PluginMetadata::new(id.clone(), id, plugin_type), function)
    }

    pub fn with_metadata(metadata: PluginMetadata, function: F) -> Self {
        Self {
            metadata,
            state: PluginState::Unloaded,
            function,
        }
    }
}

impl<G> FnPlugin<Reading<G>>
where
    G: Fn(&Value) -> PluginResult<Value> + Send + Sync + 'static,
{
    /// A plugin with id and name `id` whose function borrows its input: inside an agent
    /// system it runs on the message itself, never on a copy.
    pub fn reading(id: impl Into<String>, plugin_type: PluginType, function: G) -> Self {
        let id = id.into();
        Self::reading_with_metadata(PluginMetadata::new(id.clone(), id, plugin_type), function)
    }

    pub fn reading_with_metadata(metadata: PluginMetadata, function: G) -> Self {
        Self {
            metadata,
            state: PluginState::Unloaded,
            function: Reading(function),
        }
    }
}

#[async_trait]
impl<F: JsonFunction> AgentPlugin for FnPlugin<F> {
    fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }

    fn state(&self) -> PluginState {
        self.state
    }

    async fn load(&mut self, _ctx: &PluginContext) -> PluginResult<()> {
        self.state = PluginState::Loaded;
        Ok(())
    }

    async fn init_plugin(&mut self) -> PluginResult<()> {
        Ok(())
    }

    async fn start(&mut self) -> PluginResult<()> {
        self.state = PluginState::Running;
        Ok(())
    }

    async fn stop(&mut self) -> PluginResult<()> {
        self.state = PluginState::Loaded;
        Ok(())
    }

    async fn unload(&mut self) -> PluginResult<()> {
        self.state = PluginState::Unloaded;
        Ok(())
    }

    async fn execute(&mut self, input: String) -> PluginResult<String> {
        let input: Value = serde_json::from_str(&input)?;
        Ok(self.function.call(input)?.to_string())
    }

    async fn execute_json(&mut self, input: Value) -> PluginResult<Value> {
        self.function.call(input)
    }

    async fn execute_json_ref(&mut self, input: &Value) -> PluginResult<Value> {
        self.function.call_ref(input)
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
