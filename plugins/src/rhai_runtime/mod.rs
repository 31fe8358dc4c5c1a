//! # Runtime plugins written in Rhai
//!
//! Business rules, workflows, tools and routing that change without a rebuild. A script is
//! compiled once per version (the `AST` and everything a call needs are cached), its top-level
//! statements run exactly once, and every call runs inside a sandbox whose limits come from
//! [`RhaiConfig`].
//!
//! - [`RhaiPlugin`]: a script as an [`AgentPlugin`](crate::AgentPlugin), hosted by a
//!   `PluginManager` in its own actor like any native plugin.
//! - [`RhaiToolRegistry`]: tool scripts listed for an LLM (OpenAI or MCP format) and executed
//!   by name with schema-checked arguments.
//! - [`RuleEngine`]: a rules script used directly from Rust.
//!
//! ## Script forms
//!
//! What a script's input means depends on its shape, decided once when it is compiled
//! ([`ScriptKind`]):
//!
//! | form | how the script looks | input | output |
//! | --- | --- | --- | --- |
//! | entry | ends with the name of its entry function (`process_order`), a `Fn("name")` or a closure | any JSON: the function's one argument | the function's result |
//! | tool | ends with `#{ tool: tool, execute: execute }` | the arguments object, checked against `tool.parameters` | `execute`'s result |
//! | rules | has a top-level `let rules = [#{ name, priority, condition, action }, ...]` | the message (JSON; raw text if it is not JSON) | `{"rule": NAME, ...action's map}`, `{"rule": null}` if none fired |
//! | functions | only defines functions (`calculate_discount`) | `{"function": "calculate_discount", "args": [100.0, "gold"]}`; `args` may also be an object keyed by parameter name | the function's result |
//!
//! Input and output are JSON text at the [`AgentPlugin`](crate::AgentPlugin) boundary;
//! [`RhaiPlugin::execute_value`] skips the text for callers holding a `serde_json::Value`.
//! JSON objects become Rhai object maps, arrays become arrays, `null` becomes `()`. An entry
//! function that only ever uses its message through properties named in the script
//! (`msg.total`, `msg.items[0]`) receives, from a JSON object, only those fields: nothing else
//! of the message is converted, or measured against `max_json_depth` (`fields_read.rs`).
//! [`RhaiPlugin::call_function`] calls any defined function by name, whatever the form.
//!
//! ## What scripts get from the host
//!
//! - `state`: the plugin's host-owned state, a map-like object persisted as JSON in the
//!   [`PluginStateStore`](crate::PluginStateStore) of its `PluginContext`, so it survives
//!   restarts and reloads (a new instance loaded with the same store sees it):
//!   `state.count = (state.count ?? 0) + 1;`, `state["key"]`, `"key" in state`,
//!   `state.items.push(x)` (written back), `state.remove("key")`, `state.keys()`,
//!   `state.len()`, `state.is_empty()`, `state.clear()`. Missing keys read as `()`; values
//!   must be JSON data. It exists once a host has called `load` (top-level statements run at
//!   compile time and cannot use it); a local variable named `state` shadows it.
//! - Top-level variables are readable inside functions (a copy, read-only). Plain Rhai does
//!   not allow this; the host does, so the seed's `fn evaluate(message)` can read `rules`.
//! - `call_plugin(id, input)` → the other plugin's output string; `parse_json(text)`,
//!   `to_json(value)`; `regex_match(text, pattern)` (Rust regex, compiled patterns cached);
//!   `has_profanity(text)` (configurable word list); `print`/`debug` to `tracing`.
//!
//! ## Plugin id
//!
//! A plugin loaded from a file is named after the file stem (`order_processor.rhai` →
//! `order_processor`) unless the script declares `const PLUGIN_ID = "some_id";` at its top
//! level. [`RhaiPlugin::from_source`] uses the id it is given.
//!
//! ## Sandbox
//!
//! No file system, network or process access exists for scripts: no such function is
//! registered (calling `open_file`, `system` or `exec` is "function not found"). `eval` is
//! disabled, `sleep` is refused, and `import` fails unless [`RhaiConfig::allow_imports_from`]
//! names a directory (then only `.rhai` files inside it, each loaded once per compiled
//! version). Because calls never re-run top-level statements, a module imported at the top
//! level is visible only there: a function imports what it uses
//! (`fn run(x) { import "helper" as h; h::help(x) }`). An infinite loop, a runaway
//! recursion, an oversized string, array or map ends the call with
//! [`PluginError::LimitExceeded`](crate::PluginError::LimitExceeded) naming the limit
//! (`max_operations`, `timeout`, `max_call_stack_depth`, `max_native_stack`,
//! `max_string_size`, `max_array_size`, `max_map_size`, `max_json_depth`), and the same plugin
//! serves the next call normally. Syntax errors are `PluginError::Compile` with
//! `file:line:column`; runtime errors are `PluginError::Runtime` with the position and the
//! function.
//!
//! Rhai has no limit on how deeply values nest, and printing, comparing, copying or dropping
//! a value recurses once per level on the native stack, where no limit can stop it. Nesting is
//! bounded only by `max_array_size + max_map_size` (about 20 000 levels with the defaults), and
//! printing or comparing costs up to ~7 KB of stack a level in a debug build (less in release):
//! [`RhaiConfig::native_stack_needed`] is the stack a thread needs for the deepest value the
//! limits allow (~160 MiB with the defaults), and [`SCRIPT_THREAD_STACK`] (256 MiB of address
//! space, touched only as deep as a call goes) is what the `bilayer` binary gives every thread
//! that runs scripts. Build your runtime the same way when scripts are untrusted
//! (`tokio::runtime::Builder::thread_stack_size(SCRIPT_THREAD_STACK)`, and run the code that
//! compiles scripts on such a thread), or lower the size limits until `native_stack_needed`
//! fits your threads: a thread with less stack than that can be overflowed by a script, which
//! aborts the process. The progress hook's `max_native_stack` check covers only the script's
//! own recursion. Explicit `curry` is refused at compile time: currying a function pointer
//! with itself nests values without counting against any size limit (closures still capture
//! their variables).
//!
//! ## Where scripts run
//!
//! Handing a call to another thread costs several times more than most scripts (docs/benchmarks.md,
//! section "Costs behind design choices in the code"), so each compiled version classifies the
//! calls the host makes as *bounded* or not, from the `AST`, once:
//!
//! - a **bounded** call runs on the calling thread, an async worker included, under the
//!   caller's call chain and every sandbox limit (`max_operations` and `timeout` included);
//! - any other call runs through [`run_blocking`](crate::run_blocking): `block_in_place` on a
//!   multi-thread runtime, `spawn_blocking` on a current-thread one, so a script spinning until
//!   its timeout, or waiting in `call_plugin`, never stalls the tasks of the worker it came from.
//!
//! Only the functions the host calls are looked at (the roots), with the closures they create:
//! the entry function, the tool's `execute`, every rule's `condition` and `action`, or, in the
//! functions form, the function the input names (so a functions-form call of a function with a
//! loop goes through `run_blocking` while its loop-free siblings run inline). A rules script's
//! `fn evaluate` with its `for` loop does not matter: the host never calls it. A root is bounded
//! when it and its closures contain:
//!
//! - no `while`, `loop`, `do` or `for`, and no `import`;
//! - no `call_plugin` (it blocks until another actor answers), `eval` or `sleep`;
//! - no possible recursion: no call to a function the script defines, no function used as a
//!   value, no dynamic call (`call(..)`, `.call(..)`, `Fn(..)`, `curry`), no `this`, no
//!   `module::item`, no read of a top-level variable that holds functions (like `rules`);
//! - closures only as the argument of an array or map method that calls them per element and
//!   keeps no reference (`map`, `filter`, `reduce`, `some`, `all`, `find`, `sort`, `retain`,
//!   ...), whose cost `max_array_size` and `max_map_size` bound.
//!
//! Anything else is not bounded. All the shipped scripts are bounded except
//! scripts/data_analyzer.rhai (`call_plugin`, `for`). [`RhaiPlugin::is_bounded`],
//! [`RhaiPlugin::unbounded_reason`] and [`RhaiPlugin::runs_inline`] report the outcome;
//! [`RhaiConfig::inline_bounded`]`(false)` sends every call through `run_blocking` again, for
//! hosts that would rather not let a bounded but heavy call (up to `timeout`) hold a worker.
//! [`RhaiToolRegistry::execute`] follows the same rule.
//!
//! ## Where the seed's Rhai is not valid Rhai
//!
//! The seed's rules script calls `(rule.condition)(message)`. Rhai cannot call a
//! parenthesised expression; write `rule.condition.call(message)` or
//! `call(rule.condition, message)`. The shipped scripts/rules/content_moderation.rhai does, and
//! the host evaluates the `rules` array itself (priority order, first match wins), which the
//! seed's loop only implied.

mod bounded;
mod config;
mod errors;
mod execution_guard;
mod fields_read;
mod form;
mod host_functions;
mod host_link;
mod imports;
mod json;
mod plugin;
mod profanity;
mod regex_cache;
mod registry;
mod rule_engine;
mod rules;
mod sandbox;
mod schema;
mod script;
mod script_state;
mod tool;

pub use config::{RhaiConfig, SCRIPT_THREAD_STACK};
pub use form::ScriptKind;
pub use plugin::RhaiPlugin;
pub use profanity::ProfanityFilter;
pub use registry::RhaiToolRegistry;
pub use rule_engine::RuleEngine;
pub use rules::{RuleDecision, RuleInfo, RulePriority, RULE_HITS_METRIC};
pub use tool::ToolDefinition;
