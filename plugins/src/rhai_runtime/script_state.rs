//! The `state` object scripts see: a map-like view of the plugin's host-owned
//! [`PluginStateStore`].
//!
//! Every script function (and rule closure) can read and write `state` without declaring it:
//!
//! ```rhai
//! fn process(input) {
//!     state.count = (state.count ?? 0) + 1;   // missing keys read as ()
//!     state["last"] = input;                  // indexing works too
//!     if !("seen" in state) { state.seen = []; }
//!     state.seen.push(input.id);              // read-modify-write of a stored array
//!     state.remove("last");                   // also: keys(), len(), is_empty(), clear()
//!     state.count
//! }
//! ```
//!
//! An agent serving several messages at once (its `concurrency`, 32 by default, for scripts
//! whose hops wait on `call_plugin` or loop) runs its hops side by side, and a read followed by
//! a write (`state.count = state.count + 1`) can lose a write made in between. Each single
//! read or write is atomic; for read-modify-write, `compare_and_set` stores a value only if the
//! key still holds what was read, and the script retries when it answers `false`:
//!
//! ```rhai
//! loop {
//!     let seen = state.count;                 // () while missing
//!     if state.compare_and_set("count", seen, (seen ?? 0) + 1) { break; }
//! }
//! ```
//!
//! (or give the agent `concurrency = 1`, or `order_by` the field the state is kept per).
//!
//! Values are stored as JSON in the store the host hands over in `PluginContext`, so they
//! survive a restart or hot reload of the plugin (a new instance loaded with the same store
//! sees them). Each read returns a copy, each write replaces the stored value; Rhai writes a
//! modified copy back through the setter (`state.seen.push(x)` persists). Stored values must be
//! JSON data (`()`, booleans, numbers, strings, arrays, maps) within the size limits.
//!
//! The handle finds the store through the script's host link at each access, not when it is
//! created: rule closures built by the top-level statements capture `state` at compile time,
//! before any host exists, and must still reach the store the host attaches later. Using
//! `state` while no host is attached (in top-level statements, or before `load`) is an error
//! saying so. A script-local variable named `state` shadows the host's.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, FuncRegistration, INT};
use serde_json::{Map, Value};

use super::errors::{script_error, ScriptResult};
use super::host_link::HostLink;
use super::json::{dynamic_from_value, json_within, LimitBreach, Refused};
use super::RhaiConfig;
use crate::PluginStateStore;

/// The value behind the `state` variable: a handle to the script's host link.
#[derive(Clone)]
pub(crate) struct ScriptState(pub(crate) Arc<HostLink>);

impl ScriptState {
    /// The host's state store, or an error saying the plugin has no host yet.
    fn store(&self) -> ScriptResult<PluginStateStore> {
        self.0.state_store().ok_or_else(|| {
            script_error(
                "`state` is available once the plugin is loaded by a host (AgentPlugin::load); \
                 top-level statements run at compile time and cannot use it",
            )
        })
    }

    /// Runs `f` on the host's state map, read-only.
    fn with_store<R>(&self, f: impl FnOnce(&Map<String, Value>) -> R) -> ScriptResult<R> {
        let store = self.store()?;
        let map = store.lock();
        Ok(f(&map))
    }

    fn get(&self, key: &str, max_depth: usize) -> ScriptResult<Dynamic> {
        self.with_store(|map| map.get(key).map(|value| stored(key, value, max_depth)))?
            .unwrap_or(Ok(Dynamic::UNIT))
    }

    /// `state.compare_and_set(key, expected, new)`: stores `new` only if `key` holds
    /// `expected` (a missing key holds `()`); `true` when it stored.
    fn compare_and_set(
        &self,
        key: &str,
        expected: &Dynamic,
        new: &Dynamic,
        config: &RhaiConfig,
    ) -> ScriptResult<bool> {
        let to_json = |value: &Dynamic| {
            json_within(value, config).map_err(|refused| match refused {
                Refused::Limit(breach) => over_limit(key, breach),
                Refused::Error(e) => {
                    script_error(format!("state.{key} cannot hold this value: {e}"))
                }
            })
        };
        let expected = to_json(expected)?;
        let new = to_json(new)?;
        self.store()?
            .compare_and_set(key, &expected, new)
            .map_err(|e| script_error(e.to_string()))
    }

    fn remove(&self, key: &str, max_depth: usize) -> ScriptResult<Dynamic> {
        self.store()?
            .remove(key)
            .map(|value| stored(key, &value, max_depth))
            .unwrap_or(Ok(Dynamic::UNIT))
    }

    fn set(&self, key: &str, value: Dynamic, config: &RhaiConfig) -> ScriptResult<()> {
        let json = json_within(&value, config).map_err(|refused| match refused {
            Refused::Limit(breach) => over_limit(key, breach),
            Refused::Error(e) => script_error(format!("state.{key} cannot hold this value: {e}")),
        })?;
        self.store()?
            .set(key, json)
            .map_err(|e| script_error(e.to_string()))
    }
}

/// A stored value as a Rhai value. Scripts only store values within their limits, but the host
/// may have put anything in the store.
fn stored(key: &str, value: &Value, max_depth: usize) -> ScriptResult<Dynamic> {
    dynamic_from_value(value, max_depth).map_err(|breach| over_limit(key, breach))
}

/// The script error for a `state.key` value that broke a limit, stored or read back.
fn over_limit(key: &str, breach: LimitBreach) -> Box<rhai::EvalAltResult> {
    script_error(format!("state.{key}: {} ({})", breach.detail, breach.limit))
}

/// Registers the `State` type with its indexers and methods.
///
/// `on_var` hands scripts a read-only value, so the mutating functions are registered as
/// "pure" (Rhai refuses non-pure calls on read-only values); they mutate the shared store,
/// not the handle.
pub(crate) fn register(engine: &mut Engine, config: &RhaiConfig) {
    engine.register_type_with_name::<ScriptState>("State");
    let max_depth = config.max_json_depth;
    engine
        .register_indexer_get(move |state: &mut ScriptState, key: &str| state.get(key, max_depth));

    let limits = config.clone();
    FuncRegistration::new_index_setter()
        .with_purity(true)
        .register_into_engine(
            engine,
            move |state: &mut ScriptState, key: &str, value: Dynamic| {
                state.set(key, value, &limits)
            },
        );
    let limits = config.clone();
    FuncRegistration::new("compare_and_set")
        .with_purity(true)
        .register_into_engine(
            engine,
            move |state: &mut ScriptState, key: &str, expected: Dynamic, new: Dynamic| {
                state.compare_and_set(key, &expected, &new, &limits)
            },
        );
    FuncRegistration::new("remove")
        .with_purity(true)
        .register_into_engine(engine, move |state: &mut ScriptState, key: &str| {
            state.remove(key, max_depth)
        });
    FuncRegistration::new("clear")
        .with_purity(true)
        .register_into_engine(engine, |state: &mut ScriptState| {
            state.store().map(|store| store.clear())
        });

    engine.register_fn("contains", |state: &mut ScriptState, key: &str| {
        state.with_store(|map| map.contains_key(key))
    });
    engine.register_fn("keys", |state: &mut ScriptState| {
        state.with_store(|map| {
            map.keys()
                .map(|k| Dynamic::from(k.clone()))
                .collect::<Array>()
        })
    });
    engine.register_fn("len", |state: &mut ScriptState| {
        state.with_store(|map| map.len() as INT)
    });
    engine.register_fn("is_empty", |state: &mut ScriptState| {
        state.with_store(|map| map.is_empty())
    });
    engine.register_fn("to_string", |state: &mut ScriptState| {
        state.with_store(|map| Value::Object(map.clone()).to_string())
    });
}
