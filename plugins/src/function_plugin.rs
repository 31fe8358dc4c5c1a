//! `FnPlugin`: a native plugin made from a closure over JSON values.
//!
//! Most native agents are a pure function of their input; writing the whole `AgentPlugin`
//! trait for each is noise. `FnPlugin` implements it around `Fn(Value) -> PluginResult<Value>`
//! and overrides `execute_json`, so inside an agent system the message is never printed and
//! re-parsed between hops.
//!
//! ```
//! use bilayer_plugins::{FnPlugin, PluginType};
//! use serde_json::json;
//!
//! let double = FnPlugin::new("double", PluginType::Tool, |input| {
//!     Ok(json!({ "value": input["value"].as_f64().unwrap_or(0.0) * 2.0 }))
//! });
//! # let _ = double;
//! ```

use std::any::Any;

use async_trait::async_trait;
use serde_json::Value;

use crate::{AgentPlugin, PluginContext, PluginMetadata, PluginResult, PluginState, PluginType};

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

#[async_trait]
impl<F> AgentPlugin for FnPlugin<F>
where
    F: Fn(Value) -> PluginResult<Value> + Send + Sync + 'static,
{
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
        Ok((self.function)(input)?.to_string())
    }

    async fn execute_json(&mut self, input: Value) -> PluginResult<Value> {
        (self.function)(input)
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
