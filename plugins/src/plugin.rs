//! The `AgentPlugin` trait: the one interface every plugin kind implements.
//!
//! Native Rust plugins implement it directly; `RhaiPlugin` and `WasmPlugin` implement it over a
//! script or a module. The boundary is the seed's `execute(String) -> String` (JSON text by
//! convention). The host (a plugin actor) owns the instance and calls these methods one at a
//! time, so `&mut self` needs no locking inside the plugin.
//!
//! Only [`AgentPlugin::metadata`] and [`AgentPlugin::execute`] are required, as ractor and kameo
//! require only what varies: the lifecycle methods default to doing nothing, the `as_any` family
//! to the plain conversions, and [`AgentPlugin::state`] to [`PluginState::Untracked`]. A plugin
//! that writes them all out (the seed's `MyCompileTimePlugin`) still compiles unchanged.

use std::any::Any;

use async_trait::async_trait;

use crate::{PluginContext, PluginError, PluginMetadata, PluginResult, PluginState};

/// The conversions behind the defaults of [`AgentPlugin::as_any`], [`AgentPlugin::as_any_mut`]
/// and [`AgentPlugin::into_any`], implemented for every sized `'static` type.
///
/// A default method of a trait cannot turn `self` into `dyn Any` itself (`Self` may be unsized
/// there); this supertrait does it where the type is known. Its methods have other names than
/// `AgentPlugin`'s so that `plugin.as_any()` is never ambiguous; call those, not these: on a
/// `Box<dyn AgentPlugin>`, `any_ref` would convert the box, not the plugin.
pub trait AnyPlugin: Any {
    /// `self` as `&dyn Any`.
    fn any_ref(&self) -> &dyn Any;
    /// `self` as `&mut dyn Any`.
    fn any_mut(&mut self) -> &mut dyn Any;
    /// `self` as `Box<dyn Any>`.
    fn any_box(self: Box<Self>) -> Box<dyn Any>;
}

impl<T: Any> AnyPlugin for T {
    fn any_ref(&self) -> &dyn Any {
        self
    }

    fn any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn any_box(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// A plugin: write [`AgentPlugin::metadata`] and [`AgentPlugin::execute`], and override the
/// rest only where the plugin needs it.
///
/// The host drives the lifecycle (`load` → `init_plugin` → `start` ⇄ `stop` → `unload`), tracks
/// the authoritative state itself (`PluginManager::state`) and enforces the order, so the
/// lifecycle methods default to doing nothing and a plugin overrides only those where it
/// acquires or releases something (a `load` that keeps its `ctx`, an `unload` that closes a
/// pool). The `as_any` family defaults to the plain conversions through the [`AnyPlugin`]
/// supertrait, for downcasting a `dyn AgentPlugin`; writing them out as before still compiles.
#[async_trait]
pub trait AgentPlugin: AnyPlugin + Send + 'static {
    /// The plugin's id, name, type, version, capabilities and dependencies.
    fn metadata(&self) -> &PluginMetadata;

    /// The state the plugin reports about itself. Nothing in the host reads it: the manager
    /// tracks the authoritative lifecycle state separately (`PluginManager::state`) and enforces
    /// transitions, so a plugin that does not track its own state is still driven correctly.
    /// The default reports [`PluginState::Untracked`], which is true of a plugin that does not
    /// override it; a plugin that keeps its own state (the seed's) overrides this.
    fn state(&self) -> PluginState {
        PluginState::Untracked
    }

    /// Acquire resources. `ctx` gives the plugin its config, its host-owned state store and a
    /// handle to call other plugins; clone it if `execute` needs it later. The default does
    /// nothing.
    async fn load(&mut self, _ctx: &PluginContext) -> PluginResult<()> {
        Ok(())
    }

    /// Prepare to run, after `load`. The default does nothing.
    async fn init_plugin(&mut self) -> PluginResult<()> {
        Ok(())
    }

    /// Begin taking calls. The default does nothing.
    async fn start(&mut self) -> PluginResult<()> {
        Ok(())
    }

    /// Stop taking calls; `start` may follow. The default does nothing.
    async fn stop(&mut self) -> PluginResult<()> {
        Ok(())
    }

    /// Release what `load` acquired. The default does nothing.
    async fn unload(&mut self) -> PluginResult<()> {
        Ok(())
    }

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

    /// A sibling of this plugin that can serve a message while this one serves another, or
    /// `None` (the default) when the plugin cannot be doubled: the host then serves its calls
    /// and hops one at a time, whatever its concurrency setting.
    ///
    /// The host asks a `Running` plugin for siblings when calls or hops wait on something (a
    /// model, a database, another plugin) and the plugin's concurrency allows more at once
    /// (`PluginOptions::concurrency`, 32 by default). A sibling shares what the plugin holds
    /// for every call (a compiled script or module, an HTTP client, a connection pool, the
    /// host's state store through the context it was loaded with) and serves as if it were
    /// the plugin: the host never runs a lifecycle step on it, and drops it when it is no
    /// longer needed (after a swap or a restart, the plugin's next siblings are asked of the
    /// new instance). A plugin whose `execute` keeps something of its own between calls
    /// (a counter in a field) should keep it in the state store instead, or return `None`.
    fn concurrent_instance(&self) -> Option<Box<dyn AgentPlugin>> {
        None
    }

    /// The plugin as `&dyn Any`, to downcast a `dyn AgentPlugin` to its concrete type.
    fn as_any(&self) -> &dyn Any {
        AnyPlugin::any_ref(self)
    }

    /// The plugin as `&mut dyn Any`.
    fn as_any_mut(&mut self) -> &mut dyn Any {
        AnyPlugin::any_mut(self)
    }

    /// The boxed plugin as `Box<dyn Any>`.
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        AnyPlugin::any_box(self)
    }
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
        PluginError::json(
            format!(
                "plugin `{plugin}` returned output that is not JSON ({e}): {}",
                truncate_for_error(output)
            ),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PluginType;
    use serde_json::{json, Value};

    /// A plugin that writes only what the trait requires.
    struct Minimal(PluginMetadata);

    #[async_trait]
    impl AgentPlugin for Minimal {
        fn metadata(&self) -> &PluginMetadata {
            &self.0
        }

        async fn execute(&mut self, input: String) -> PluginResult<String> {
            Ok(input)
        }
    }

    fn minimal() -> Minimal {
        Minimal(PluginMetadata::new("minimal", "Minimal", PluginType::Tool))
    }

    /// The lifecycle defaults succeed and leave the plugin working; its own report says it does
    /// not track its state rather than claiming one.
    #[tokio::test]
    async fn a_plugin_writing_only_metadata_and_execute_runs_its_whole_lifecycle() {
        let mut plugin = minimal();
        plugin.load(&PluginContext::new("minimal")).await.unwrap();
        plugin.init_plugin().await.unwrap();
        plugin.start().await.unwrap();
        assert_eq!(plugin.execute("hi".to_string()).await.unwrap(), "hi");
        plugin.stop().await.unwrap();
        plugin.unload().await.unwrap();
        assert_eq!(plugin.state(), PluginState::Untracked);
    }

    /// The default `as_any` family converts the plugin itself, whether called on the concrete
    /// type (not ambiguous with the supertrait's methods), through `dyn AgentPlugin`, or on a
    /// `Box<dyn AgentPlugin>` (the plugin in the box, not the box).
    #[test]
    fn the_default_any_conversions_reach_the_concrete_plugin() {
        let mut plugin = minimal();
        assert!(plugin.as_any().is::<Minimal>());
        assert!(plugin.as_any_mut().is::<Minimal>());

        let mut boxed: Box<dyn AgentPlugin> = Box::new(minimal());
        assert!(boxed.as_any().is::<Minimal>());
        assert_eq!(
            boxed.as_any_mut().downcast_mut::<Minimal>().unwrap().0.id,
            "minimal"
        );
        let dyn_ref: &dyn AgentPlugin = &plugin;
        assert!(dyn_ref.as_any().is::<Minimal>());
        let back = boxed.into_any().downcast::<Minimal>().unwrap();
        assert_eq!(back.0.id, "minimal");
    }

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
