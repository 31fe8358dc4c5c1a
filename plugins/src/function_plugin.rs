//! `FnPlugin`: a native plugin made from a closure over JSON values.
//!
//! Most native agents are a pure function of their input; writing the whole `AgentPlugin`
//! trait for each is noise. `FnPlugin` implements it around `Fn(Value) -> PluginResult<Value>`
//! and overrides `execute_json`, so inside an agent system the message is never printed and
//! re-parsed between hops.
//!
//! A function that only reads its input should say so with [`FnPlugin::reading`]
//! (`Fn(&Value)`): an agent system keeps each message for its dead-letter queue while the agent
//! runs, and a reading function works on that message in place instead of on a deep copy. A
//! function whose output is its input with a few fields changed says so with
//! [`FnPlugin::transforming`] (`Fn(&mut Value)`): it edits the message where it lies, and no
//! new message is built. Its failures dead-letter the message as the function left it, so
//! check the input before changing it.
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
//! let approve = FnPlugin::transforming("approve", PluginType::Tool, |message| {
//!     let fields = message.as_object_mut().ok_or_else(|| {
//!         bilayer_plugins::PluginError::InvalidInput("the message must be an object".into())
//!     })?;
//!     fields.insert("status".into(), json!("approved"));
//!     Ok(())
//! });
//! # let _ = (double, route, approve);
//! ```

use async_trait::async_trait;
use serde_json::Value;

use crate::{AgentPlugin, PluginMetadata, PluginResult, PluginType};

/// The function behind an [`FnPlugin`]: any `Fn(Value) -> PluginResult<Value>` closure, a
/// [`Reading`] one that borrows its input, or a [`Transforming`] one that edits it.
pub trait JsonFunction: Send + Sync + 'static {
    /// Runs the function on an owned input.
    fn call(&self, input: Value) -> PluginResult<Value>;
    /// Runs the function on a borrowed input (cloning it only if the function needs to own it).
    fn call_ref(&self, input: &Value) -> PluginResult<Value>;
    /// Replaces `message` by the output; on failure `message` is left as it came (except for
    /// a [`Transforming`] function, which may have changed it).
    fn call_in_place(&self, message: &mut Value) -> PluginResult<()> {
        *message = self.call_ref(message)?;
        Ok(())
    }
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

impl<G> std::fmt::Debug for Reading<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reading(..)")
    }
}

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

/// A function that edits its input into its output (see [`FnPlugin::transforming`]).
pub struct Transforming<G>(G);

impl<G> std::fmt::Debug for Transforming<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transforming(..)")
    }
}

impl<G> JsonFunction for Transforming<G>
where
    G: Fn(&mut Value) -> PluginResult<()> + Send + Sync + 'static,
{
    fn call(&self, mut input: Value) -> PluginResult<Value> {
        (self.0)(&mut input)?;
        Ok(input)
    }

    fn call_ref(&self, input: &Value) -> PluginResult<Value> {
        self.call(input.clone())
    }

    fn call_in_place(&self, message: &mut Value) -> PluginResult<()> {
        (self.0)(message)
    }
}

/// A native plugin backed by a function of its JSON input.
pub struct FnPlugin<F> {
    metadata: PluginMetadata,
    function: F,
}

/// The metadata; the function is a closure, shown as `..`.
impl<F> std::fmt::Debug for FnPlugin<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnPlugin")
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

impl<F> FnPlugin<F>
where
    F: Fn(Value) -> PluginResult<Value> + Send + Sync + 'static,
{
    /// A plugin with id and name `id`.
    pub fn new(id: impl Into<String>, plugin_type: PluginType, function: F) -> Self {
        Self::with_metadata(named(id, plugin_type), function)
    }

    /// A plugin with the given metadata (id, name, type, description, capabilities).
    pub fn with_metadata(metadata: PluginMetadata, function: F) -> Self {
        Self::from_parts(metadata, function)
    }
}

impl<F> FnPlugin<F> {
    /// The one place an `FnPlugin` is put together; the constructors only wrap the function.
    fn from_parts(metadata: PluginMetadata, function: F) -> Self {
        Self { metadata, function }
    }
}

/// Metadata with id and name `id`.
fn named(id: impl Into<String>, plugin_type: PluginType) -> PluginMetadata {
    let id = id.into();
    PluginMetadata::new(id.clone(), id, plugin_type)
}

impl<G> FnPlugin<Reading<G>>
where
    G: Fn(&Value) -> PluginResult<Value> + Send + Sync + 'static,
{
    /// A plugin with id and name `id` whose function borrows its input: inside an agent
    /// system it runs on the message itself, never on a copy.
    pub fn reading(id: impl Into<String>, plugin_type: PluginType, function: G) -> Self {
        Self::reading_with_metadata(named(id, plugin_type), function)
    }

    /// Like [`reading`](Self::reading), with the given metadata.
    pub fn reading_with_metadata(metadata: PluginMetadata, function: G) -> Self {
        Self::from_parts(metadata, Reading(function))
    }
}

impl<G> FnPlugin<Transforming<G>>
where
    G: Fn(&mut Value) -> PluginResult<()> + Send + Sync + 'static,
{
    /// A plugin with id and name `id` whose function turns its input into its output by
    /// editing it: inside an agent system it changes the message where it lies, and no new
    /// message is allocated. A failure dead-letters the message as the function left it, so
    /// validate before editing.
    pub fn transforming(id: impl Into<String>, plugin_type: PluginType, function: G) -> Self {
        Self::transforming_with_metadata(named(id, plugin_type), function)
    }

    /// Like [`transforming`](Self::transforming), with the given metadata.
    pub fn transforming_with_metadata(metadata: PluginMetadata, function: G) -> Self {
        Self::from_parts(metadata, Transforming(function))
    }
}

#[async_trait]
impl<F: JsonFunction> AgentPlugin for FnPlugin<F> {
    fn metadata(&self) -> &PluginMetadata {
        &self.metadata
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

    async fn execute_json_in_place(&mut self, message: &mut Value) -> PluginResult<()> {
        self.function.call_in_place(message)
    }

    fn execute_json_in_place_now(&mut self, message: &mut Value) -> Option<PluginResult<()>> {
        Some(self.function.call_in_place(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn approve() -> FnPlugin<impl JsonFunction> {
        FnPlugin::transforming("approve", PluginType::Tool, |message: &mut Value| {
            let total = message["total"]
                .as_f64()
                .ok_or_else(|| crate::PluginError::InvalidInput("no total".into()))?;
            message["status"] = json!(if total > 10.0 { "big" } else { "small" });
            Ok(())
        })
    }

    #[tokio::test]
    async fn a_transforming_function_answers_every_entry_point_alike() {
        let mut plugin = approve();
        let mut message = json!({"total": 12.0});
        plugin.execute_json_in_place(&mut message).await.unwrap();
        assert_eq!(message, json!({"total": 12.0, "status": "big"}));
        let input = json!({"total": 3});
        let output = plugin.execute_json_ref(&input).await.unwrap();
        assert_eq!(output, json!({"total": 3, "status": "small"}));
        assert_eq!(
            input,
            json!({"total": 3}),
            "the borrowed input is untouched"
        );
        assert_eq!(
            plugin.execute_json(json!({"total": 11})).await.unwrap(),
            json!({"total": 11, "status": "big"})
        );
        let text = plugin.execute(r#"{"total": 1}"#.into()).await.unwrap();
        assert_eq!(text, r#"{"status":"small","total":1}"#);
        let mut bad = json!({"total": "n/a"});
        assert!(plugin.execute_json_in_place(&mut bad).await.is_err());
        assert_eq!(bad, json!({"total": "n/a"}), "checked before editing");
    }

    #[tokio::test]
    async fn the_default_in_place_call_replaces_the_message_only_on_success() {
        let mut double = FnPlugin::reading("double", PluginType::Tool, |input: &Value| {
            let value = input["value"]
                .as_f64()
                .ok_or_else(|| crate::PluginError::InvalidInput("no value".into()))?;
            Ok(json!({ "value": value * 2.0 }))
        });
        let mut message = json!({"value": 2});
        double.execute_json_in_place(&mut message).await.unwrap();
        assert_eq!(message, json!({"value": 4.0}));
        let mut bad = json!({"other": 1});
        assert!(double.execute_json_in_place(&mut bad).await.is_err());
        assert_eq!(bad, json!({"other": 1}));
    }
}
