//! The `AgentPlugin` trait: the one interface every plugin kind implements.
//!
//! Native Rust plugins implement it directly; `RhaiPlugin` and `WasmPlugin` implement it over a
//! script or a module. The boundary is the seed's `execute(String) -> String` (JSON text by
//! convention). The host (a plugin actor) owns the instance and calls these methods one at a
//! time, so `&mut self` needs no locking inside the plugin.

use std::any::Any;

use async_trait::async_trait;

use crate::{PluginContext, PluginError, PluginMetadata, PluginResult, PluginState};

#[async_trait]
pub trait AgentPlugin: Send + 'static {
    fn metadata(&self) -> &PluginMetadata;

    /// The state the plugin reports about itself. The manager tracks the authoritative
    /// lifecycle state separately and enforces transitions, so a plugin that forgets to update
    /// this is still driven correctly.
    fn state(&self) -> PluginState;

    /// Acquire resources. `ctx` gives the plugin its config, its host-owned state store and a
    /// handle to call other plugins; clone it if `execute` needs it later.
    async fn load(&mut self, ctx: &PluginContext) -> PluginResult<()>;

    async fn init_plugin(&mut self) -> PluginResult<()>;

    async fn start(&mut self) -> PluginResult<()>;

    async fn stop(&mut self) -> PluginResult<()>;

    async fn unload(&mut self) -> PluginResult<()>;

    /// Handle one input. Called only while the plugin is `Running`.
    async fn execute(&mut self, input: String) -> PluginResult<String>;

    /// Handle one input already parsed as JSON. Agent systems call this at every hop so a
    /// message is not printed and re-parsed between agents. The default goes through
    /// [`AgentPlugin::execute`]; plugins that work on structured data (Rhai scripts, native
    /// agents) override it to skip the text round trip.
    async fn execute_json(&mut self, input: serde_json::Value) -> PluginResult<serde_json::Value> {
        let output = self.execute(json_text(&input)?).await?;
        parse_output(&self.metadata().id, &output)
    }

    /// Handle one input the plugin may only read. Agent systems call this at every hop when
    /// they keep each message for the dead-letter queue (the default): a plugin that reads its
    /// input in place saves a deep copy of every message. The default copies the input into
    /// [`AgentPlugin::execute_json`]; `FnPlugin::reading`, Rhai scripts and WASM modules
    /// override it.
    async fn execute_json_ref(
        &mut self,
        input: &serde_json::Value,
    ) -> PluginResult<serde_json::Value> {
        self.execute_json(input.clone()).await
    }

    /// Handle one agent message the plugin may rewrite where it lies: on success, `message` is
    /// the output. Agent systems call this at every hop when they keep each message for the
    /// dead-letter queue (the default). The default runs [`AgentPlugin::execute_json_ref`] and
    /// puts the output in the message's place, so a failure leaves the message as it came;
    /// `FnPlugin::transforming` overrides it to edit the message itself, sparing the
    /// allocations of a new one (a failure then leaves the message as the function left it).
    async fn execute_json_in_place(&mut self, message: &mut serde_json::Value) -> PluginResult<()> {
        *message = self.execute_json_ref(message).await?;
        Ok(())
    }

    /// [`AgentPlugin::execute_json_in_place`] for a plugin that can answer at once, without
    /// awaiting anything: `Some(result)` when it did, `None` (the default) to be called through
    /// the async entry points. Agent systems try it first, sparing a native function the boxed
    /// future, the task-local call frame and the poll of an async call. It runs outside any
    /// call chain and cannot be timed out: implement it only for work that calls no other
    /// plugin and does not block (`FnPlugin` does; `RhaiPlugin` does for bounded scripts,
    /// which its engine's own operation and time limits stop).
    fn execute_json_in_place_now(
        &mut self,
        _message: &mut serde_json::Value,
    ) -> Option<PluginResult<()>> {
        None
    }

    fn as_any(&self) -> &dyn Any;

    fn as_any_mut(&mut self) -> &mut dyn Any;

    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

/// At most 200 characters of `text`, for error messages that quote a payload.
fn truncate_for_error(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The deepest a message may nest arrays and objects to be printed as JSON text for a plugin:
/// the deepest text serde_json parses under its default recursion limit, so deeper text could
/// not be read back by a serde_json-based plugin anyway.
pub(crate) const MAX_TEXT_DEPTH: usize = 127;

/// `input` printed as JSON text for a plugin that reads text (the default JSON entry points, WASM
/// modules). Printing is recursive and a `Value` built in code has no depth bound, so a message
/// nested deeper than [`MAX_TEXT_DEPTH`] is refused rather than overflowing the thread's stack
/// (the walk that finds out stops at the bound).
pub(crate) fn json_text(input: &serde_json::Value) -> PluginResult<String> {
    fn deeper_than(value: &serde_json::Value, levels: usize) -> bool {
        match value {
            serde_json::Value::Array(items) => {
                levels == 0 || items.iter().any(|v| deeper_than(v, levels - 1))
            }
            serde_json::Value::Object(fields) => {
                levels == 0 || fields.values().any(|v| deeper_than(v, levels - 1))
            }
            _ => false,
        }
    }
    if deeper_than(input, MAX_TEXT_DEPTH) {
        return Err(PluginError::InvalidInput(format!(
            "the message nests arrays and objects deeper than {MAX_TEXT_DEPTH} levels, more \
             than JSON text for a plugin may; send flatter data"
        )));
    }
    Ok(input.to_string())
}

/// Parses what a plugin's [`AgentPlugin::execute`] returned, for the JSON entry points.
pub(crate) fn parse_output(plugin: &str, output: &str) -> PluginResult<serde_json::Value> {
    serde_json::from_str(output).map_err(|e| {
        PluginError::Json(format!(
            "plugin `{plugin}` returned output that is not JSON ({e}): {}",
            truncate_for_error(output)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Text for a plugin nests at most as deep as serde_json reads back; deeper is an error,
    /// even thousands of levels deep, where printing would have overflowed the stack.
    #[test]
    fn json_text_refuses_what_serde_json_could_not_read_back() {
        let nest = |levels: usize| {
            let mut value = json!(1);
            for _ in 0..levels {
                value = Value::Array(vec![value]);
            }
            value
        };
        let text = json_text(&nest(MAX_TEXT_DEPTH)).unwrap();
        assert!(
            serde_json::from_str::<Value>(&text).is_ok(),
            "it reads back"
        );
        for levels in [MAX_TEXT_DEPTH + 1, 3_000] {
            let err = json_text(&nest(levels)).unwrap_err();
            assert!(
                matches!(&err, PluginError::InvalidInput(m) if m.contains("deeper than 127")),
                "{err:?}"
            );
        }
    }
}
