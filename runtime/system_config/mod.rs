//! Agent systems defined in TOML: which agents exist, the plugin behind each (a Rhai script, a
//! WASM module, or a built-in native plugin by name), limits, supervision, routing.
//!
//! ```toml
//! name = "orders"
//! entry = "intake"              # default: the first agent
//! max_hops = 16                 # default 32
//! max_branches = 1024           # default 1024: how many branches one input's fan-outs may
//!                               # end in (the product of the widths on a branch's way)
//! max_in_flight = 16384         # admission bound (backpressure)
//! hop_timeout_ms = 30000
//! strategy = "one_for_one"      # or one_for_all, rest_for_one
//! max_restarts = 3              # restart intensity: at most 3 restarts ...
//! restart_window_ms = 5000      # ... within 5 s
//! routing = "routing.rhai"      # optional routing script
//!
//! [limits]                      # for every agent they concern (per agent: [agents.limits])
//! timeout_ms = 1000             # wall clock per call, scripts and WASM modules (default 1000)
//! max_operations = 1000000      # scripts: RhaiConfig's limits (max_call_stack_depth,
//!                               # max_expr_depth, max_string_size, max_array_size, max_map_size)
//! max_memory_bytes = 67108864   # WASM modules: linear memory (default 64 MiB)
//! fuel = 100000000              # WASM modules: fuel per call (default: not metered)
//! max_output_bytes = 16777216   # WASM modules: bytes one call may return (default 16 MiB)
//! max_state_bytes = 67108864    # every agent's state (script, WASM, native), JSON bytes; 64 MiB
//!
//! [hot_reload]
//! dirs = ["."]                  # directories watched for script changes
//!
//! [transport]                   # default: kind = "in-process"
//! kind = "nats"                 # agents on JetStream subjects, across processes
//! url = "nats://127.0.0.1:4222" # default: $BILAYER_NATS_URL, else this
//! stream = "BILAYER_ORDERS"     # default BILAYER_<NAME>; also <stream>_RESULTS, <stream>_DEAD
//! subject_prefix = "bilayer.orders"
//! token_env = "NATS_TOKEN"      # or token, user + password / password_env, credentials_file
//! ack_wait_ms = 60000           # must exceed hop_timeout_ms
//! max_deliver = 5               # attempts before a message is dead-lettered
//! max_ack_pending = 4096
//! storage = "file"              # or "memory"
//!
//! [durability]                  # durable runs: every input a run journaled in a store
//! store = "sqlite:runs.db"      # or "postgres://user@host/db"; relative to this file;
//!                               # `bilayer run --store URL` overrides it
//! power_loss_safe = false       # true: SQLite fsyncs every commit (PostgreSQL always does)
//!
//! [[agents]]
//! name = "intake"
//! script = "intake.rhai"        # or: wasm = "intake.wasm" (or .wat), or: native = "order_intake",
//!                               # or: builtin = "llm" (llm, database, http)
//! config = { region = "eu" }    # handed to the plugin as its config
//! capabilities = ["log"]        # WASM only: host imports granted (log, config, state,
//!                               # call_plugin, call_plugin:ID, wasi, wasi:dir=HOST::GUEST:rw,
//!                               # wasi:env=KEY=VALUE, wasi:arg=A); none by default
//! concurrency = 32              # messages whose hops wait served at once (default 32; 1 =
//!                               # one at a time, in order)
//! order_by = "customer_id"      # equal values of this field one at a time, in arrival order
//!
//! [[plugins]]                   # support plugins: agents call them with call_plugin(id, ...),
//! builtin = "database"          # routing never delivers to them; llm, database or http
//! id = "database"               # default: the builtin's name
//! config = { url = "sqlite::memory:", read_only = true }
//! init_sql_file = "seed.sql"    # database only: SQL run at load (schema, seed data)
//! max_concurrency = 5           # calls served at once, past it they queue (default: llm and
//!                               # http 128, database its max_connections)
//! ```
//!
//! A built-in's `config` uses the keys of its config struct, unset keys keeping their
//! defaults: `llm` → [`LlmConfig`] (`provider` picks the defaults: `openai`, `ollama`,
//! `llamacpp`, else a local `http://127.0.0.1:8080/v1`; then `base_url`, `model`, `api_key`,
//! `api_key_env`, `timeout_ms`, `max_retries`, ...; a key is required before sending only at
//! OpenAI's own API, so `config = { base_url = "http://127.0.0.1:8080/v1" }` alone works), `database` → [`DatabaseConfig`] (`url`,
//! `read_only`, `max_rows`, `max_connections`, `acquire_timeout_ms`, `init_sql`), `http` →
//! [`HttpConfig`] (`allowed_hosts`, `timeout_ms`, `max_response_bytes`, `default_headers`,
//! `max_redirects`). An unknown key or a value of the wrong type is a problem `check` reports.
//! `init_sql_file` (on a `[[plugins]]` table or a database agent) reads the file into the
//! config's `init_sql`.
//!
//! Limits keep the defaults of [`RhaiConfig`] and [`WasmLimits`] where unset. Scripts run on
//! threads with [`SCRIPT_THREAD_STACK`] bytes of native stack, and Rhai nests values as deep as
//! `max_array_size + max_map_size + max_expr_depth` allow, so a definition whose script limits
//! need more stack than that ([`RhaiConfig::native_stack_needed`]) is refused, naming the keys
//! to lower. `hop_timeout_ms` bounds every hop whatever its plugin's own `timeout_ms`: a running
//! script or module is stopped at it, and a hop blocked in a host call (a WASI read, a sleep)
//! fails with a timeout at it while the blocked call is abandoned.
//!
//! A `limits` key (top-level or an agent's) set for an agent whose kind does not use it (a
//! script limit on a WASM agent, a WASM limit on a script, either on a native or built-in
//! plugin), or at the top level of a system with no agent that uses it, is a problem `check`
//! reports; `max_state_bytes` concerns every agent. Limit errors of a script or a WASM module
//! name the key that raises the limit (`[limits] max_string_size`, or the agent's own
//! `limits.max_string_size` when it sets one).
//! `capabilities` names must be known, and are for WASM agents only (`check` and `build`
//! refuse others, naming the key).
//!
//! Paths are relative to the TOML file's directory. [`SystemDefinition::read`] reports every
//! problem of the TOML itself (syntax, unknown keys, wrong types, missing keys; at most 50),
//! [`SystemDefinition::load`] refuses at the first; [`SystemDefinition::check`] reports every
//! problem of what a definition says, each with a file position; [`SystemDefinition::build`]
//! builds the system.
//!
//! The work is split by concern, one module each (all private; this module re-exports what
//! callers use):
//!
//! - `schema`: the TOML's tables as serde structs, exactly as written;
//! - `shape`: reading the TOML collecting every shape problem, in a bounded number of passes;
//! - `positions`: where each key, value and table of the text is, indexed in one walk;
//! - `problems`: [`Problem`], placed at the key, value or table it concerns;
//! - `sources`: what plugin backs each agent and support plugin (built-in configs checked with
//!   the plugins' own `merge_config`);
//! - `limits`: `[limits]` and each agent's `limits` turned into script, module and state limits;
//! - `check`: [`SystemDefinition::check`] and [`SystemDefinition::warnings`];
//! - `transport`: the `[transport]` table;
//! - `build`: [`SystemDefinition::build`] and [`Deployment`];
//! - `reload`: [`SystemDefinition::hot_reload`], for `--watch`.
//!
//! [`LlmConfig`]: bilayer_plugins::builtin::LlmConfig
//! [`DatabaseConfig`]: bilayer_plugins::builtin::DatabaseConfig
//! [`HttpConfig`]: bilayer_plugins::builtin::HttpConfig
//! [`RhaiConfig`]: bilayer_plugins::rhai_runtime::RhaiConfig
//! [`RhaiConfig::native_stack_needed`]: bilayer_plugins::rhai_runtime::RhaiConfig::native_stack_needed
//! [`SCRIPT_THREAD_STACK`]: bilayer_plugins::rhai_runtime::SCRIPT_THREAD_STACK
//! [`WasmLimits`]: bilayer_plugins::wasm_runtime::WasmLimits

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bilayer_plugins::{user_file, PluginError, PluginResult};

mod build;
mod check;
mod limits;
mod positions;
mod problems;
#[cfg(feature = "hot-reload")]
mod reload;
mod schema;
mod shape;
mod sources;
mod transport;

pub use build::Deployment;
pub use problems::Problem;
pub use sources::{AgentSource, BUILTIN_PLUGINS};

use positions::{LineIndex, Positions};
use schema::SystemFile;

/// A parsed system definition (paths resolved against the file's directory).
#[derive(Debug, Clone)]
pub struct SystemDefinition {
    file: PathBuf,
    text: String,
    raw: SystemFile,
    dir: PathBuf,
    /// For `agents` and `plugins`: the index among the tables the text wrote of each one kept
    /// (a table [`SystemDefinition::read`] left out for its problem shifts the ones after it).
    kept_tables: BTreeMap<String, Vec<usize>>,
    /// Where each item of `text` is: indexed on the first problem to place, then reused.
    positions: OnceLock<Arc<Positions>>,
}

impl SystemDefinition {
    /// Reads and parses a system definition. Its TOML's first problem (a syntax error, an
    /// unknown key, a value of the wrong type, a missing key) is the error, with its line and
    /// column and how many more there are ([`SystemDefinition::read`] lists them all).
    pub fn load(path: impl AsRef<Path>) -> PluginResult<Self> {
        let file = path.as_ref().display().to_string();
        let (definition, problems) = Self::read(path)?;
        let mut problems = problems.into_iter();
        match (definition, problems.next()) {
            (Some(definition), None) => Ok(definition),
            (_, first) => {
                let Problem { location, message } = first.unwrap_or_else(|| Problem {
                    location: file,
                    message: "the system definition cannot be read".to_string(),
                });
                let more = problems.len();
                let message = if more == 0 {
                    message
                } else {
                    format!(
                        "{message} (and {more} more problem{}: `bilayer check` lists them all)",
                        if more == 1 { "" } else { "s" }
                    )
                };
                Err(PluginError::Compile { location, message })
            }
        }
    }

    /// Reads a system definition collecting every problem of its TOML (syntax errors, unknown
    /// keys, values of the wrong type, missing keys; at most 50) instead of stopping at the
    /// first, each with its `file:line:column`: the definition, with the faulty items left out,
    /// when one could be made, and the problems. Only a file that cannot be read is an error.
    pub fn read(path: impl AsRef<Path>) -> PluginResult<(Option<Self>, Vec<Problem>)> {
        let file = path.as_ref().to_path_buf();
        let text = user_file::read_text(&file, user_file::SYSTEM_DEFINITION)?;
        let shaped = shape::read::<SystemFile>(&text);
        let lines = LineIndex::new(&text);
        let problems = shaped
            .problems
            .into_iter()
            .map(|problem| Problem {
                location: match problem.span {
                    Some(span) => {
                        let (line, column) = lines.line_column(&text, span.start);
                        format!("{}:{line}:{column}", file.display())
                    }
                    None => file.display().to_string(),
                },
                message: problem.message,
            })
            .collect();
        // A bare file name's parent is the empty path, which names no directory to watch or
        // to resolve paths against: it is the current one.
        let dir = file
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let definition = shaped.value.map(|raw| Self {
            file,
            text,
            raw,
            dir,
            kept_tables: shaped.kept_tables,
            positions: OnceLock::new(),
        });
        Ok((definition, problems))
    }

    /// The system's `name`, or `agents` when the file sets none.
    pub fn name(&self) -> &str {
        self.raw.name.as_deref().unwrap_or("agents")
    }

    /// The agents' names, in file order.
    pub fn agent_names(&self) -> Vec<&str> {
        self.raw.agents.iter().map(|a| a.name.as_str()).collect()
    }

    /// The store of durable runs the definition names (`[durability] store`), a relative
    /// SQLite path resolved against the definition's directory; `None` when it names none.
    pub fn store_url(&self) -> Option<String> {
        let store = self.raw.durability.as_ref()?.store.as_deref()?;
        let path = store
            .strip_prefix("sqlite://")
            .or_else(|| store.strip_prefix("sqlite:"));
        Some(match path {
            Some(path) if !path.starts_with(':') && Path::new(path).is_relative() => {
                format!("sqlite:{}", self.dir.join(path).display())
            }
            _ => store.to_string(),
        })
    }

    /// Whether every commit of the journal must survive a power loss (`[durability]
    /// power_loss_safe`, default `false`: a killed process loses nothing, a power cut may
    /// lose the last commits of an SQLite store).
    pub fn power_loss_safe(&self) -> bool {
        self.raw
            .durability
            .as_ref()
            .and_then(|d| d.power_loss_safe)
            .unwrap_or(false)
    }

    /// What a journal records of the system, to refuse resuming a batch with different
    /// agents: the entry agent and each agent with what serves it, as JSON text.
    pub fn journal_summary(&self) -> String {
        let agents: serde_json::Map<String, serde_json::Value> = self
            .raw
            .agents
            .iter()
            .map(|agent| {
                let source = [
                    (
                        "script",
                        agent.script.as_ref().map(|p| p.display().to_string()),
                    ),
                    ("wasm", agent.wasm.as_ref().map(|p| p.display().to_string())),
                    ("native", agent.native.clone()),
                    ("builtin", agent.builtin.clone()),
                ]
                .into_iter()
                .find_map(|(kind, name)| name.map(|name| format!("{kind}:{name}")))
                .unwrap_or_default();
                (agent.name.clone(), serde_json::Value::from(source))
            })
            .collect();
        let entry = self
            .raw
            .entry
            .clone()
            .or_else(|| self.raw.agents.first().map(|a| a.name.clone()))
            .unwrap_or_default();
        serde_json::json!({ "entry": entry, "agents": agents }).to_string()
    }

    /// Directories to watch for hot reload (resolved).
    pub fn hot_reload_dirs(&self) -> Vec<PathBuf> {
        self.raw
            .hot_reload
            .dirs
            .iter()
            .map(|d| self.dir.join(d))
            .collect()
    }
}
