//! The functions the host adds to every script: interop (`call_plugin`, `parse_json`,
//! `to_json`), rule helpers (`regex_match`, `has_profanity`), and the ones it takes away.
//!
//! - `call_plugin(id, input)` executes another plugin through the host's `PluginCaller` (the
//!   plugin's actor) and returns its output string. `input` may be a string (sent as is) or
//!   any other value (sent as its JSON text), so the seed's
//!   `parse_json(call_plugin("database", "SELECT ..."))` works. The script blocks its thread
//!   while waiting, which is why a script calling it never runs inline on an async worker
//!   (it is not bounded, see [`super::bounded`]) but through `run_blocking`. A failed
//!   call is a catchable runtime error; a call cycle is not catchable and reaches the
//!   outermost caller as `PluginError::CallCycle`.
//! - `parse_json(text)` parses any JSON (Rhai's own accepts only objects), `to_json(value)`
//!   writes standard JSON (Rhai's own uses Rust debug escapes).
//! - `regex_match(text, pattern)` uses the shared compiled-pattern cache; `has_profanity(text)`
//!   uses the configured word list. String `contains` is Rhai's own.
//! - `sleep` is replaced by an error: it would block a worker thread without counting towards
//!   any limit.
//!
//! Functions registered on the engine take precedence over Rhai's packages of the same
//! signature, which is how the built-in `parse_json`, `to_json` and `sleep` are overridden.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, Map, FLOAT, INT};

use super::errors::{passthrough_error, script_error, ScriptResult};
use super::execution_guard::time_left;
use super::host_link::HostLink;
use super::json::{check_boundary_value, dynamic_from_json_text, dynamic_to_json_text};
use super::regex_cache;
use super::RhaiConfig;
use crate::PluginError;

pub(crate) fn register(engine: &mut Engine, config: &RhaiConfig, link: &Arc<HostLink>) {
    register_call_plugin(engine, link);
    register_json(engine, config);
    register_rule_helpers(engine, config);
    register_removed(engine);
}

fn register_call_plugin(engine: &mut Engine, link: &Arc<HostLink>) {
    let link = Arc::clone(link);
    engine.register_fn(
        "call_plugin",
        move |target: &str, input: Dynamic| -> ScriptResult<String> {
            let Some(context) = link.context() else {
                return Err(script_error(format!(
                    "call_plugin(\"{target}\"): this script is not loaded by a host; \
                     load the plugin through a PluginManager (or call AgentPlugin::load with \
                     a PluginContext that has a caller) first"
                )));
            };
            let input = if input.is_string() {
                input.into_string().unwrap_or_default()
            } else {
                dynamic_to_json_text(&input).map_err(|e| script_error(e.to_string()))?
            };
            // Waits no longer than the calling script may still run: its own timeout, or its
            // host's call timeout (a hop timeout) when that is shorter.
            context
                .call_plugin_blocking_within(target, input, time_left())
                .map_err(|err| match err {
                    PluginError::CallCycle(_) => passthrough_error("call_plugin", err),
                    other => script_error(format!("call_plugin(\"{target}\") failed: {other}")),
                })
        },
    );
}

fn register_json(engine: &mut Engine, config: &RhaiConfig) {
    let limits = config.clone();
    engine.register_fn("parse_json", move |text: &str| -> ScriptResult<Dynamic> {
        let value = dynamic_from_json_text(text)
            .map_err(|e| script_error(format!("parse_json: invalid JSON: {e}")))?;
        check_boundary_value(&value, &limits).map_err(|breach| {
            script_error(format!("parse_json: {} ({})", breach.detail, breach.limit))
        })?;
        Ok(value)
    });
    // Registered per container type as well as for any value, because Rhai's own
    // `to_json(map)` would otherwise win for maps by exact signature. Values are measured
    // first: serializing recurses once per nesting level.
    let limits = config.clone();
    engine.register_fn("to_json", move |map: &mut Map| -> ScriptResult<String> {
        let value = Dynamic::from_map(std::mem::take(map));
        let text = json_text(&value, &limits);
        *map = value.cast::<Map>();
        text
    });
    let limits = config.clone();
    engine.register_fn(
        "to_json",
        move |array: &mut Array| -> ScriptResult<String> {
            let value = Dynamic::from_array(std::mem::take(array));
            let text = json_text(&value, &limits);
            *array = value.cast::<Array>();
            text
        },
    );
    let limits = config.clone();
    engine.register_fn("to_json", move |value: Dynamic| json_text(&value, &limits));
}

fn json_text(value: &Dynamic, limits: &RhaiConfig) -> ScriptResult<String> {
    check_boundary_value(value, limits)
        .map_err(|breach| script_error(format!("to_json: {} ({})", breach.detail, breach.limit)))?;
    dynamic_to_json_text(value).map_err(|e| script_error(format!("to_json: {e}")))
}

fn register_rule_helpers(engine: &mut Engine, config: &RhaiConfig) {
    engine.register_fn(
        "regex_match",
        |text: &str, pattern: &str| -> ScriptResult<bool> {
            regex_cache::regex_match(text, pattern).map_err(script_error)
        },
    );
    let profanity = Arc::clone(&config.profanity);
    engine.register_fn("has_profanity", move |text: &str| {
        profanity.contains_profanity(text)
    });
}

fn register_removed(engine: &mut Engine) {
    const NO_SLEEP: &str = "sleep is not available to plugin scripts: it would block a worker \
                            thread; keep state in `state` and let the host schedule work";
    engine.register_fn("sleep", |_: INT| -> ScriptResult<()> {
        Err(script_error(NO_SLEEP))
    });
    engine.register_fn("sleep", |_: FLOAT| -> ScriptResult<()> {
        Err(script_error(NO_SLEEP))
    });
}
