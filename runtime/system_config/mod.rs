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
//! [[agents]]
//! name = "intake"
//! script = "intake.rhai"        # or: wasm = "intake.wasm" (or .wat), or: native = "order_intake",
//!                               # or: builtin = "llm" (llm, database, http)
//! config = { region = "eu" }    # handed to the plugin as its config
//! capabilities = ["log"]        # WASM only: host imports granted (log, config, state,
//!                               # call_plugin, call_plugin:ID, wasi, wasi:dir=HOST::GUEST:rw,
//!                               # wasi:env=KEY=VALUE, wasi:arg=A); none by default
//!
//! [[plugins]]                   # support plugins: agents call them with call_plugin(id, ...),
//! builtin = "database"          # routing never delivers to them; llm, database or http
//! id = "database"               # default: the builtin's name
//! config = { url = "sqlite::memory:", read_only = true }
//! init_sql_file = "seed.sql"    # database only: SQL run at load (schema, seed data)
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

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bilayer_actors::{
    AgentSystem, NatsCredentials, NatsStorage, NatsTransport, PluginOptions, SupervisionStrategy,
    Transport, DEFAULT_EXECUTE_TIMEOUT, DEFAULT_NATS_URL,
};
use bilayer_plugins::builtin::{
    DatabaseConfig, DatabasePlugin, HttpConfig, HttpPlugin, LLMPlugin, LlmConfig,
};
use bilayer_plugins::hot_reload::{DeleteAction, HotReloadConfig, HotReloadManager};
use bilayer_plugins::rhai_runtime::{RhaiConfig, RhaiPlugin, SCRIPT_THREAD_STACK};
use bilayer_plugins::wasm_runtime::{WasmCapabilities, WasmEngine, WasmLimits, WasmPlugin};
use bilayer_plugins::{user_file, AgentPlugin, LimitSettings, PluginError, PluginResult};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::orders::{builtin_native, BUILTIN_NATIVE};
use crate::routing::RhaiRoutingPolicy;
use crate::system_reload::{SystemReloadTarget, ROUTING_SCRIPT_ID};

mod positions;
mod shape;

use positions::{LineIndex, Positions};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemFile {
    name: Option<String>,
    entry: Option<String>,
    max_hops: Option<usize>,
    max_branches: Option<u32>,
    max_in_flight: Option<usize>,
    hop_timeout_ms: Option<u64>,
    strategy: Option<String>,
    max_restarts: Option<u32>,
    restart_window_ms: Option<u64>,
    routing: Option<PathBuf>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    hot_reload: HotReload,
    transport: Option<TransportEntry>,
    #[serde(default)]
    agents: Vec<AgentEntry>,
    #[serde(default)]
    plugins: Vec<PluginEntry>,
}

/// Limits of script agents (as in [`RhaiConfig`]) and WASM agents (as in [`WasmLimits`]), and
/// every agent's state size; unset fields keep their defaults. `timeout_ms` concerns both
/// scripts and WASM modules.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    max_operations: Option<u64>,
    max_call_stack_depth: Option<usize>,
    max_expr_depth: Option<usize>,
    max_string_size: Option<usize>,
    max_array_size: Option<usize>,
    max_map_size: Option<usize>,
    timeout_ms: Option<u64>,
    max_memory_bytes: Option<usize>,
    fuel: Option<u64>,
    max_output_bytes: Option<usize>,
    /// Not a script or WASM limit: the size of each agent's state, for every kind of plugin.
    max_state_bytes: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HotReload {
    #[serde(default)]
    dirs: Vec<PathBuf>,
}

/// The `[transport]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransportEntry {
    kind: Option<String>,
    url: Option<String>,
    stream: Option<String>,
    subject_prefix: Option<String>,
    token: Option<String>,
    token_env: Option<String>,
    user: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    credentials_file: Option<PathBuf>,
    ack_wait_ms: Option<u64>,
    max_deliver: Option<u32>,
    max_ack_pending: Option<u32>,
    batch: Option<usize>,
    storage: Option<String>,
    duplicate_window_ms: Option<u64>,
    results_max_age_ms: Option<u64>,
}

/// Where and how a process runs a system: the transport (overriding the definition's
/// `[transport]`) and which agents it serves (`None`: all of them; the others are served by
/// other processes, which needs the NATS transport).
#[derive(Debug, Clone, Default)]
pub struct Deployment {
    pub transport: Option<Transport>,
    pub serve: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentEntry {
    name: String,
    script: Option<PathBuf>,
    wasm: Option<PathBuf>,
    native: Option<String>,
    builtin: Option<String>,
    config: Option<toml::Value>,
    init_sql_file: Option<PathBuf>,
    limits: Option<Limits>,
    #[serde(default)]
    capabilities: Vec<String>,
}

/// A support plugin: callable by agents, never routed to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginEntry {
    builtin: String,
    id: Option<String>,
    config: Option<toml::Value>,
    init_sql_file: Option<PathBuf>,
}

/// The built-in plugins a system TOML can name.
pub const BUILTIN_PLUGINS: &[&str] = &["llm", "database", "http"];

/// What plugin backs an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSource {
    Script(PathBuf),
    Wasm(PathBuf),
    Native(String),
    /// A built-in (`llm`, `database`, `http`) with its JSON config (`init_sql_file` read in).
    Builtin(String, Value),
}

/// A parsed system definition (paths resolved against the file's directory).
#[derive(Debug, Clone)]
pub struct SystemDefinition {
    file: PathBuf,
    text: String,
    raw: SystemFile,
    dir: PathBuf,
    /// For `agents` and `plugins`: the index among the tables the text wrote of each one kept
    /// (a table [`SystemDefinition::read`] left out for its problem shifts the ones after it).
    kept_tables: std::collections::BTreeMap<String, Vec<usize>>,
    /// Where each item of `text` is: indexed on the first problem to place, then reused.
    positions: std::sync::OnceLock<Arc<Positions>>,
}

/// One problem found by [`SystemDefinition::check`], with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `file:line:column`, or just the file when no position is known.
    pub location: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
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
            positions: std::sync::OnceLock::new(),
        });
        Ok((definition, problems))
    }

    pub fn name(&self) -> &str {
        self.raw.name.as_deref().unwrap_or("agents")
    }

    /// The agents' names, in file order.
    pub fn agent_names(&self) -> Vec<&str> {
        self.raw.agents.iter().map(|a| a.name.as_str()).collect()
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

    /// Every problem: unknown keys, agents without exactly one plugin, missing files, scripts
    /// that do not compile, unknown native or built-in plugins, built-in configs with unknown
    /// keys or wrongly typed values, duplicate names or plugin ids, an unknown entry, a broken
    /// routing script, and literal `next_agent` targets in scripts that are not agents.
    pub fn check(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let names: HashSet<&str> = self.agent_names().into_iter().collect();
        if self.raw.agents.is_empty() {
            problems.push(self.problem_at(
                "[[agents]]",
                "the system has no agents; add an [[agents]] table",
            ));
        }
        // Each clash is told with the rest of its table's problems, in file order.
        let mut clashes = self.id_clashes().into_iter().peekable();
        let mut clash_at = |array: &str, index: usize| {
            clashes
                .next_if(|clash| clash.array == array && clash.index == index)
                .map(|clash| self.problem_in_table(clash.array, index, clash.key, &clash.message))
        };
        // Which kinds of agent use the limits of `[limits]` (the routing script is a script).
        let mut uses_script_limits = self.raw.routing.is_some();
        let mut uses_wasm_limits = false;
        for (index, agent) in self.raw.agents.iter().enumerate() {
            problems.extend(clash_at("agents", index));
            let source = self.source_of(agent);
            let grant = self.capabilities_of(agent, source.as_ref().ok());
            if let Err(message) = &grant {
                problems.push(self.problem_at_key(
                    &[
                        Step::Key("agents"),
                        Step::Table(index),
                        Step::Key("capabilities"),
                    ],
                    message,
                ));
            }
            if let Ok(source) = &source {
                uses_script_limits |= matches!(source, AgentSource::Script(_));
                uses_wasm_limits |= matches!(source, AgentSource::Wasm(_));
                for key in agent
                    .limits
                    .as_ref()
                    .map(limit_keys_set)
                    .unwrap_or_default()
                {
                    if let Some(limit_kind) = limit_key_unused_by(&key, source) {
                        problems.push(self.problem_at_key(
                            &[
                                Step::Key("agents"),
                                Step::Table(index),
                                Step::Key("limits"),
                                Step::Key(&key),
                            ],
                            &format!(
                                "agent `{}`: `limits.{key}` is a {limit_kind}, and this agent is \
                                 {}, which does not use it; remove the key",
                                agent.name,
                                describe_source(source)
                            ),
                        ));
                    }
                }
            }
            match source {
                Err(message) => problems.push(self.problem_in_agent(index, &message)),
                Ok(AgentSource::Script(path)) => {
                    match self.checked_limits_for(agent) {
                        Err(message) => {
                            problems.push(self.problem_in_table("agents", index, "name", &message))
                        }
                        Ok(limits) => match RhaiPlugin::from_file_with_config(&path, limits) {
                            Ok(_) => {}
                            Err(e @ PluginError::Io(_)) => {
                                problems.push(self.unreadable_agent_file(index, agent, "script", e))
                            }
                            Err(e) => problems.push(problem_from_error(&path, e)),
                        },
                    }
                    problems.extend(self.unknown_targets(&path, &names));
                }
                Ok(AgentSource::Wasm(path)) => {
                    // A grant that does not parse is reported above, at its key.
                    if grant.is_ok() {
                        match wasm_agent(
                            &path,
                            &agent.name,
                            &agent.capabilities,
                            &self.wasm_limits_for(agent),
                        )
                        .and_then(|plugin| plugin.check_link())
                        {
                            Ok(()) => {}
                            Err(e @ PluginError::Io(_)) => {
                                problems.push(self.unreadable_agent_file(index, agent, "wasm", e))
                            }
                            Err(e) => problems.push(problem_from_error(&path, e)),
                        }
                    }
                }
                Ok(AgentSource::Native(_)) => {}
                Ok(AgentSource::Builtin(builtin, config)) => {
                    if let Err(message) = builtin_plugin(&builtin, &config) {
                        problems.push(self.problem_in_agent(
                            index,
                            &format!("agent `{}`: {message}", agent.name),
                        ));
                    }
                }
            }
        }
        for key in limit_keys_set(&self.raw.limits) {
            let Some(limit_kind) = limit_key_kind(&key) else {
                continue;
            };
            let (script, wasm) = limit_key_users(&key);
            if (script && uses_script_limits) || (wasm && uses_wasm_limits) {
                continue;
            }
            let users = match (script, wasm) {
                (true, true) => "script agent, routing script or WASM agent",
                (true, false) => "script agent or routing script",
                _ => "WASM agent",
            };
            problems.push(self.problem_at_key(
                &[Step::Key("limits"), Step::Key(&key)],
                &format!(
                    "`[limits] {key}` is a {limit_kind}, and this system has no {users} to use \
                     it; remove the key"
                ),
            ));
        }
        for (index, plugin) in self.raw.plugins.iter().enumerate() {
            problems.extend(clash_at("plugins", index));
            let id = plugin_id(plugin);
            // Point at the key at fault: `builtin`, `init_sql_file`, or `config`.
            let checked =
                match self.builtin_config(&plugin.builtin, &plugin.config, &plugin.init_sql_file) {
                    Err(message) if message.contains("init_sql") => Err(("init_sql_file", message)),
                    Err(message) => Err(("builtin", message)),
                    Ok(config) => builtin_plugin(&plugin.builtin, &config)
                        .map(|_| ())
                        .map_err(|message| ("config", message)),
                };
            if let Err((key, message)) = checked {
                let key = if key == "config" && plugin.config.is_none() {
                    "builtin"
                } else {
                    key
                };
                problems.push(self.problem_in_table(
                    "plugins",
                    index,
                    key,
                    &format!("plugin `{id}`: {message}"),
                ));
            }
        }
        if let Some(entry) = &self.raw.entry {
            if !names.contains(entry.as_str()) {
                problems.push(self.problem_at(
                    &format!("entry = \"{entry}\""),
                    &format!("entry agent `{entry}` is not one of the agents"),
                ));
            }
        }
        if let Err(message) = self.base_limits().check_stack(SCRIPT_THREAD_STACK) {
            problems.push(self.problem_at("[limits]", &format!("[limits]: {message}")));
        }
        if let Some(routing) = &self.raw.routing {
            let path = self.dir.join(routing);
            match RhaiRoutingPolicy::from_file_with_config(&path, self.base_limits()) {
                Ok(_) => problems.extend(self.unknown_targets(&path, &names)),
                Err(e @ PluginError::Io(_)) => problems
                    .push(self.problem_at_key(&[Step::Key("routing")], &format!("`routing`: {e}"))),
                Err(e) => problems.push(problem_from_error(&path, e)),
            }
        }
        if let Some(strategy) = &self.raw.strategy {
            if let Err(message) = strategy.parse::<SupervisionStrategy>() {
                problems.push(self.problem_at("strategy", &message));
            }
        }
        if let Err(message) = self.transport() {
            problems.push(self.problem_at("[transport]", &message));
        }
        for dir in self.hot_reload_dirs() {
            if !dir.is_dir() {
                problems.push(self.problem_at(
                    "[hot_reload]",
                    &format!("hot reload directory {} does not exist", dir.display()),
                ));
            }
        }
        problems
    }

    /// The transport the definition asks for (`[transport]`; in-process when absent), with
    /// credentials read from the environment variables it names.
    pub fn transport(&self) -> Result<Transport, String> {
        let Some(entry) = &self.raw.transport else {
            return Ok(Transport::InProcess);
        };
        match entry.kind.as_deref().unwrap_or("in-process") {
            "in-process" | "in_process" => Ok(Transport::InProcess),
            "nats" => self.nats_transport().map(Transport::Nats),
            other => Err(format!(
                "unknown transport kind `{other}`; use \"in-process\" or \"nats\""
            )),
        }
    }

    /// The NATS settings of `[transport]` (defaults where absent, or with no table at all):
    /// what `bilayer worker` and `bilayer run --transport nats` use.
    pub fn nats_transport(&self) -> Result<NatsTransport, String> {
        let entry = self.raw.transport.clone().unwrap_or_default();
        let env = |name: &str| {
            std::env::var(name).map_err(|_| {
                format!("[transport] names environment variable {name}, which is not set")
            })
        };
        let url = match entry.url {
            Some(url) => url,
            None => {
                std::env::var("BILAYER_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_string())
            }
        };
        let mut nats = NatsTransport::new(url);
        let token = match (entry.token, entry.token_env) {
            (Some(_), Some(_)) => return Err("give token or token_env, not both".into()),
            (Some(token), None) => Some(token),
            (None, Some(var)) => Some(env(&var)?),
            (None, None) => None,
        };
        let password = match (entry.password, entry.password_env) {
            (Some(_), Some(_)) => return Err("give password or password_env, not both".into()),
            (Some(password), None) => Some(password),
            (None, Some(var)) => Some(env(&var)?),
            (None, None) => None,
        };
        let credentials = match (token, entry.user, password, entry.credentials_file) {
            (None, None, None, None) => NatsCredentials::None,
            (Some(token), None, None, None) => NatsCredentials::Token(token),
            (None, Some(user), Some(password), None) => {
                NatsCredentials::UserPassword { user, password }
            }
            (None, Some(_), None, None) | (None, None, Some(_), None) => {
                return Err("user and password go together; give both".into())
            }
            (None, None, None, Some(file)) => {
                let path = self.dir.join(file);
                if !path.is_file() {
                    return Err(format!(
                        "credentials_file {} does not exist",
                        path.display()
                    ));
                }
                NatsCredentials::CredentialsFile(path)
            }
            _ => {
                return Err(
                    "give one way to authenticate: token, user + password, or credentials_file"
                        .into(),
                )
            }
        };
        nats = nats.credentials(credentials);
        if let Some(stream) = entry.stream {
            nats = nats.stream(stream);
        }
        if let Some(prefix) = entry.subject_prefix {
            nats = nats.subject_prefix(prefix);
        }
        if let Some(ms) = entry.ack_wait_ms {
            nats = nats.ack_wait(Duration::from_millis(ms));
        }
        if let Some(attempts) = entry.max_deliver {
            nats = nats.max_deliver(attempts);
        }
        if let Some(pending) = entry.max_ack_pending {
            nats = nats.max_ack_pending(pending);
        }
        if let Some(batch) = entry.batch {
            nats = nats.batch(batch);
        }
        if let Some(ms) = entry.duplicate_window_ms {
            nats = nats.duplicate_window(Duration::from_millis(ms));
        }
        if let Some(ms) = entry.results_max_age_ms {
            nats = nats.results_max_age(Duration::from_millis(ms));
        }
        match entry.storage.as_deref() {
            None | Some("file") => {}
            Some("memory") => nats = nats.storage(NatsStorage::Memory),
            Some(other) => {
                return Err(format!(
                    "unknown storage `{other}`; use \"file\" or \"memory\""
                ))
            }
        }
        let hop_timeout = self
            .raw
            .hop_timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_EXECUTE_TIMEOUT);
        if nats.ack_wait_duration() <= hop_timeout {
            return Err(format!(
                "ack_wait_ms ({} ms) must exceed hop_timeout_ms ({} ms), or a slow hop is \
                 redelivered to another worker while it still runs",
                nats.ack_wait_duration().as_millis(),
                hop_timeout.as_millis()
            ));
        }
        Ok(nats)
    }

    /// Builds and starts the system, with every agent served here and the definition's
    /// transport.
    pub async fn build(&self) -> PluginResult<AgentSystem> {
        self.build_with(&Deployment::default()).await
    }

    /// Builds and starts the system as `deployment` says: its transport, and which agents this
    /// process serves (the others are declared remote).
    pub async fn build_with(&self, deployment: &Deployment) -> PluginResult<AgentSystem> {
        self.refuse_what_the_builder_would_word_for_rust()?;
        let transport = match &deployment.transport {
            Some(transport) => transport.clone(),
            None => self.transport().map_err(PluginError::Config)?,
        };
        if let Some(serve) = &deployment.serve {
            let names = self.agent_names();
            for name in serve {
                if !names.contains(&name.as_str()) {
                    return Err(PluginError::Config(format!(
                        "`{name}` is not an agent of this system; its agents are {}",
                        names.join(", ")
                    )));
                }
            }
            if transport == Transport::InProcess && serve.len() != names.len() {
                return Err(PluginError::Config(
                    "serving only some agents needs the NATS transport ([transport] kind = \"nats\")"
                        .into(),
                ));
            }
        }
        let mut builder = AgentSystem::builder()
            .name(self.name())
            .transport(transport);
        if let Some(entry) = &self.raw.entry {
            builder = builder.entry(entry);
        }
        if let Some(max_hops) = self.raw.max_hops {
            builder = builder.max_hops(max_hops);
        }
        if let Some(max_branches) = self.raw.max_branches {
            builder = builder.max_branches(max_branches);
        }
        if let Some(max_in_flight) = self.raw.max_in_flight {
            builder = builder.max_in_flight(max_in_flight);
        }
        if let Some(ms) = self.raw.hop_timeout_ms {
            builder = builder.hop_timeout(Some(Duration::from_millis(ms)));
        }
        if let Some(strategy) = &self.raw.strategy {
            builder = builder.strategy(strategy.parse().map_err(PluginError::Config)?);
        }
        if self.raw.max_restarts.is_some() || self.raw.restart_window_ms.is_some() {
            builder = builder.restart_intensity(
                self.raw.max_restarts.unwrap_or(3),
                Duration::from_millis(self.raw.restart_window_ms.unwrap_or(5_000)),
            );
        }
        self.base_limits()
            .check_stack(SCRIPT_THREAD_STACK)
            .map_err(|message| PluginError::Config(format!("[limits]: {message}")))?;
        if let Some(routing) = &self.raw.routing {
            let policy = RhaiRoutingPolicy::from_file_with_config(
                self.dir.join(routing),
                self.base_limits(),
            )?;
            builder = builder.routing_policy(Arc::new(policy));
        }
        for agent in &self.raw.agents {
            if let Some(serve) = &deployment.serve {
                if !serve.contains(&agent.name) {
                    builder = builder.remote_agent(&agent.name);
                    continue;
                }
            }
            let plugin: Box<dyn AgentPlugin> =
                match self.source_of(agent).map_err(PluginError::Config)? {
                    AgentSource::Script(path) => Box::new(RhaiPlugin::from_file_with_config(
                        &path,
                        self.checked_limits_for(agent)
                            .map_err(PluginError::Config)?,
                    )?),
                    AgentSource::Wasm(path) => Box::new(wasm_agent(
                        &path,
                        &agent.name,
                        &agent.capabilities,
                        &self.wasm_limits_for(agent),
                    )?),
                    AgentSource::Native(name) => builtin_native(&name).ok_or_else(|| {
                        PluginError::Config(format!("unknown native plugin `{name}`"))
                    })?,
                    AgentSource::Builtin(name, config) => {
                        let plugin = builtin_plugin(&name, &config).map_err(|message| {
                            PluginError::Config(format!("agent `{}`: {message}", agent.name))
                        })?;
                        let options = self.state_limit_for(agent).config(config);
                        builder = builder.agent_with(&agent.name, plugin, options);
                        continue;
                    }
                };
            let mut options = self.state_limit_for(agent);
            if let Some(config) = &agent.config {
                let config =
                    serde_json::to_value(config).map_err(|e| PluginError::Config(e.to_string()))?;
                options = options.config(config);
            }
            builder = builder.agent_with(&agent.name, plugin, options);
        }
        for entry in &self.raw.plugins {
            let id = plugin_id(entry);
            let config = self
                .builtin_config(&entry.builtin, &entry.config, &entry.init_sql_file)
                .map_err(|message| PluginError::Config(format!("plugin `{id}`: {message}")))?;
            let plugin = builtin_plugin(&entry.builtin, &config)
                .map_err(|message| PluginError::Config(format!("plugin `{id}`: {message}")))?;
            builder = builder.plugin_with(plugin, PluginOptions::new().id(id).config(config));
        }
        builder.build().await
    }

    /// The mistakes the agent system builder would report in Rust terms (no agent: "add one
    /// with .agent(name, plugin)"; a taken id: "unregister it first"), and grants it cannot
    /// use, refused here in the definition's terms, naming the key and its position.
    fn refuse_what_the_builder_would_word_for_rust(&self) -> PluginResult<()> {
        if self.raw.agents.is_empty() {
            let problem = self.problem_at(
                "[[agents]]",
                "the system has no agents; add an [[agents]] table",
            );
            return Err(PluginError::Config(problem.to_string()));
        }
        if let Some(clash) = self.id_clashes().into_iter().next() {
            let problem =
                self.problem_in_table(clash.array, clash.index, clash.key, &clash.message);
            return Err(PluginError::Config(problem.to_string()));
        }
        for (index, agent) in self.raw.agents.iter().enumerate() {
            let source = self.source_of(agent).ok();
            if let Err(message) = self.capabilities_of(agent, source.as_ref()) {
                let problem = self.problem_at_key(
                    &[
                        Step::Key("agents"),
                        Step::Table(index),
                        Step::Key("capabilities"),
                    ],
                    &message,
                );
                return Err(PluginError::Config(problem.to_string()));
            }
        }
        Ok(())
    }

    /// A hot reload manager for this system's script and module agents, watching the
    /// `[hot_reload] dirs` (or, when none are set, the directory of the definition): a changed
    /// file is compiled with its agent's own limits and grant, checked off to the side, and
    /// swapped into the running agent between two messages. New files are not added as agents
    /// and deleted files keep their agent serving (the definition, not the directory, says which
    /// agents exist). The routing script, when it lies in a watched directory, reloads the same
    /// way under the id [`ROUTING_SCRIPT_ID`] (a broken version is refused, the serving one keeps
    /// routing). Agents this process does not serve (`bilayer worker --agents`) are left alone.
    pub fn hot_reload(&self, system: &AgentSystem) -> HotReloadManager {
        let mut dirs = self.hot_reload_dirs();
        if dirs.is_empty() {
            dirs.push(self.dir.clone());
        }
        let mut scripts: HashMap<PathBuf, RhaiConfig> = HashMap::new();
        let mut modules: HashMap<PathBuf, (String, Vec<String>, WasmLimits)> = HashMap::new();
        let mut config = HotReloadConfig::default()
            .with_preserve_state(true)
            .with_auto_rollback(true)
            .with_add_new_files(false)
            .with_on_delete(DeleteAction::Keep)
            .with_rhai_config(self.base_limits());
        for agent in &self.raw.agents {
            match self.source_of(agent) {
                Ok(AgentSource::Script(path)) => {
                    scripts.insert(canonical(&path), self.limits_for(agent));
                    config = config.with_plugin_id(path, agent.name.clone());
                }
                Ok(AgentSource::Wasm(path)) => {
                    modules.insert(
                        canonical(&path),
                        (
                            agent.name.clone(),
                            agent.capabilities.clone(),
                            self.wasm_limits_for(agent),
                        ),
                    );
                    config = config.with_plugin_id(path, agent.name.clone());
                }
                _ => {}
            }
        }
        let base = self.base_limits();
        config = config.with_loader("rhai", move |path| {
            let limits = scripts
                .get(&canonical(path))
                .cloned()
                .unwrap_or_else(|| base.clone());
            Ok(Box::new(RhaiPlugin::from_file_with_config(path, limits)?) as Box<dyn AgentPlugin>)
        });
        let modules = Arc::new(modules);
        for extension in ["wasm", "wat"] {
            let modules = modules.clone();
            config = config.with_loader(extension, move |path| {
                let (name, grant, limits) =
                    modules.get(&canonical(path)).cloned().unwrap_or_default();
                let plugin = if name.is_empty() {
                    WasmPlugin::from_file(path)?
                } else {
                    wasm_agent(path, &name, &grant, &limits)?
                };
                Ok(Box::new(plugin) as Box<dyn AgentPlugin>)
            });
        }
        // The routing script reloads beside the agents, under its reserved id (system_reload.rs),
        // when it lies in a watched directory.
        let mut routing_version = None;
        if let Some(routing) = &self.raw.routing {
            let path = self.dir.join(routing);
            routing_version = RhaiPlugin::from_file_with_config(&path, self.base_limits())
                .ok()
                .map(|script| script.metadata().version.clone());
            config = config.with_plugin_id(path, ROUTING_SCRIPT_ID);
        }
        let mut manager = HotReloadManager::new(&dirs[0], config);
        for dir in &dirs[1..] {
            manager = manager.with_dir(dir);
        }
        manager.with_target(SystemReloadTarget::new(system, routing_version))
    }

    /// Agents defined twice, and support plugins whose id an agent or another plugin already
    /// has (agents and plugins share one id space): what `check` reports and `build` refuses.
    fn id_clashes(&self) -> Vec<Clash> {
        let mut clashes = Vec::new();
        let mut seen = HashSet::new();
        for (index, agent) in self.raw.agents.iter().enumerate() {
            if !seen.insert(agent.name.as_str()) {
                clashes.push(Clash {
                    array: "agents",
                    index,
                    key: "name",
                    message: format!(
                        "agent `{}` is defined twice; give each [[agents]] table its own `name`",
                        agent.name
                    ),
                });
            }
        }
        for (index, plugin) in self.raw.plugins.iter().enumerate() {
            let id = plugin_id(plugin);
            if !seen.insert(id) {
                clashes.push(Clash {
                    array: "plugins",
                    index,
                    key: "builtin",
                    message: format!(
                        "plugin id `{id}` is already taken by an agent or another plugin; \
                         give it another `id`"
                    ),
                });
            }
        }
        clashes
    }

    /// The WASM grant of an agent's `capabilities`: refused when a name is unknown, or when
    /// the agent (its `source`, when known) is no WASM module, which has nothing to grant.
    fn capabilities_of(
        &self,
        agent: &AgentEntry,
        source: Option<&AgentSource>,
    ) -> Result<WasmCapabilities, String> {
        if agent.capabilities.is_empty() {
            return Ok(WasmCapabilities::none());
        }
        if let Some(source) = source.filter(|s| !matches!(s, AgentSource::Wasm(_))) {
            return Err(format!(
                "agent `{}`: capabilities are granted to WASM agents only, and this agent is \
                 {}, which has none to grant; remove the `capabilities` key",
                agent.name,
                describe_source(source)
            ));
        }
        WasmCapabilities::from_names(&agent.capabilities).map_err(|e| {
            let why = match e {
                PluginError::Config(message) => message,
                other => other.to_string(),
            };
            format!("agent `{}`: `capabilities`: {why}", agent.name)
        })
    }

    /// A problem located at the key `path` leads to in the TOML text (or as deep along the path
    /// as the text goes: a key left to its default, a table written in another form).
    fn problem_at_key(&self, path: &[Step<'_>], message: &str) -> Problem {
        let location = match self.key_offset(path) {
            Some(offset) => {
                let (line, column) = self.positions().lines.line_column(&self.text, offset);
                format!("{}:{line}:{column}", self.file.display())
            }
            None => self.file.display().to_string(),
        };
        Problem {
            location,
            message: message.to_string(),
        }
    }

    /// The byte offset of the deepest step of `path` found in the text.
    fn key_offset(&self, path: &[Step<'_>]) -> Option<usize> {
        let positions = self.positions();
        let mut at = Vec::with_capacity(path.len());
        let mut offset = None;
        for step in path {
            match step {
                Step::Key(key) => at.push(key.to_string()),
                Step::Table(index) => {
                    let array = at.last().map_or("", String::as_str);
                    at.push(self.written_index(array, *index).to_string());
                }
            }
            match positions.get(&at) {
                Some(position) => offset = Some(position.key),
                None => break,
            }
        }
        offset
    }

    /// The index among the tables the text wrote of the `index`-th `[[array]]` table kept.
    fn written_index(&self, array: &str, index: usize) -> usize {
        self.kept_tables
            .get(array)
            .and_then(|kept| kept.get(index))
            .copied()
            .unwrap_or(index)
    }

    /// Where the items of the text are (indexed once).
    fn positions(&self) -> &Positions {
        self.positions
            .get_or_init(|| Arc::new(Positions::of(&self.text)))
    }

    fn source_of(&self, agent: &AgentEntry) -> Result<AgentSource, String> {
        let given = [
            agent.script.is_some(),
            agent.wasm.is_some(),
            agent.native.is_some(),
            agent.builtin.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(format!(
                "agent `{}` needs exactly one of script, wasm, native or builtin",
                agent.name
            ));
        }
        if agent.init_sql_file.is_some() && agent.builtin.as_deref() != Some("database") {
            return Err(format!(
                "agent `{}`: init_sql_file is for agents with builtin = \"database\"",
                agent.name
            ));
        }
        if let Some(builtin) = &agent.builtin {
            let config = self
                .builtin_config(builtin, &agent.config, &agent.init_sql_file)
                .map_err(|message| format!("agent `{}`: {message}", agent.name))?;
            return Ok(AgentSource::Builtin(builtin.clone(), config));
        }
        if let Some(script) = &agent.script {
            return Ok(AgentSource::Script(self.dir.join(script)));
        }
        if let Some(wasm) = &agent.wasm {
            return Ok(AgentSource::Wasm(self.dir.join(wasm)));
        }
        let native = agent.native.clone().unwrap_or_default();
        if builtin_native(&native).is_none() {
            return Err(format!(
                "agent `{}`: unknown native plugin `{native}`; built-in ones are {}",
                agent.name,
                BUILTIN_NATIVE.join(", ")
            ));
        }
        Ok(AgentSource::Native(native))
    }

    /// A built-in's JSON config: the TOML `config` table, with `init_sql_file` read into
    /// `init_sql`.
    fn builtin_config(
        &self,
        builtin: &str,
        config: &Option<toml::Value>,
        init_sql_file: &Option<PathBuf>,
    ) -> Result<Value, String> {
        if !BUILTIN_PLUGINS.contains(&builtin) {
            return Err(format!(
                "unknown builtin `{builtin}`; built-in plugins are {}",
                BUILTIN_PLUGINS.join(", ")
            ));
        }
        let mut json = match config {
            Some(config) => serde_json::to_value(config).map_err(|e| e.to_string())?,
            None => Value::Object(Default::default()),
        };
        if let Some(file) = init_sql_file {
            if builtin != "database" {
                return Err(format!(
                    "init_sql_file is for builtin = \"database\", not `{builtin}`"
                ));
            }
            let path = self.dir.join(file);
            let sql =
                user_file::read_text(&path, user_file::INIT_SQL_FILE).map_err(|e| e.to_string())?;
            match &mut json {
                Value::Object(fields) if fields.contains_key("init_sql") => {
                    return Err("give init_sql_file or config.init_sql, not both".to_string())
                }
                Value::Object(fields) => {
                    fields.insert("init_sql".to_string(), Value::String(sql));
                }
                _ => {}
            }
        }
        Ok(json)
    }

    /// The routing script's limits: `[limits]`, its errors naming those keys.
    fn base_limits(&self) -> RhaiConfig {
        apply_limits(RhaiConfig::default(), &self.raw.limits).limit_settings(limit_settings(
            None,
            RHAI_LIMIT_KEYS,
            "script agent",
        ))
    }

    /// Plugin options carrying the agent's `max_state_bytes` (its own `[agents.limits]`, else
    /// `[limits]`), when the definition sets one.
    fn state_limit_for(&self, agent: &AgentEntry) -> PluginOptions {
        let max_bytes = agent
            .limits
            .as_ref()
            .and_then(|limits| limits.max_state_bytes)
            .or(self.raw.limits.max_state_bytes);
        match max_bytes {
            Some(max_bytes) => PluginOptions::new().max_state_bytes(max_bytes),
            None => PluginOptions::new(),
        }
    }

    /// A script agent's limits: `[limits]` overridden by its own `limits`, its errors naming
    /// the keys to raise.
    fn limits_for(&self, agent: &AgentEntry) -> RhaiConfig {
        let base = apply_limits(RhaiConfig::default(), &self.raw.limits)
            .limit_settings(limit_settings(Some(agent), RHAI_LIMIT_KEYS, "script agent"));
        match &agent.limits {
            Some(limits) => apply_limits(base, limits),
            None => base,
        }
    }

    /// The agent's script limits, refused (naming the keys) when they could need more native
    /// stack than the threads running scripts have.
    fn checked_limits_for(&self, agent: &AgentEntry) -> Result<RhaiConfig, String> {
        let limits = self.limits_for(agent);
        limits.check_stack(SCRIPT_THREAD_STACK).map_err(|message| {
            let table = if agent.limits.is_some() {
                "[agents.limits] (or [limits])"
            } else {
                "[limits]"
            };
            format!("agent `{}`: {table}: {message}", agent.name)
        })?;
        Ok(limits)
    }

    /// A WASM agent's limits: [`WasmLimits`]' defaults, then `[limits]`, then its own; its
    /// errors naming the keys to raise.
    fn wasm_limits_for(&self, agent: &AgentEntry) -> WasmLimits {
        let base = apply_wasm_limits(WasmLimits::default(), &self.raw.limits)
            .limit_settings(limit_settings(Some(agent), WASM_LIMIT_KEYS, "WASM agent"));
        match &agent.limits {
            Some(limits) => apply_wasm_limits(base, limits),
            None => base,
        }
    }

    /// What is allowed but likely wrong: a script whose literal `next_agent` list names its own
    /// agent, so that every hop fans out again (the branches multiply until `max_branches`
    /// cuts them off). `bilayer check` prints these as warnings.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut warnings = Vec::new();
        for agent in &self.raw.agents {
            let Ok(AgentSource::Script(path)) = self.source_of(agent) else {
                continue;
            };
            let Ok(source) = user_file::read_text(&path, user_file::RHAI_SCRIPT) else {
                continue;
            };
            let lines = LineIndex::new(&source);
            for route in literal_routes(&source) {
                if route.is_list && route.names.iter().any(|(name, _)| name == &agent.name) {
                    let (line, column) = lines.line_column(&source, route.at);
                    warnings.push(Problem {
                        location: format!("{}:{line}:{column}", path.display()),
                        message: format!(
                            "agent `{}` fans out to itself: every hop multiplies its branches \
                             until max_branches ({}) dead-letters the input",
                            agent.name,
                            self.raw
                                .max_branches
                                .unwrap_or(bilayer_actors::DEFAULT_MAX_BRANCHES)
                        ),
                    });
                }
            }
        }
        warnings
    }

    /// Literal `next_agent: "x"` / `next_agent = "x"` in a script naming no agent.
    fn unknown_targets(&self, script: &Path, agents: &HashSet<&str>) -> Vec<Problem> {
        let Ok(source) = user_file::read_text(script, user_file::RHAI_SCRIPT) else {
            return Vec::new();
        };
        let lines = LineIndex::new(&source);
        let mut problems = Vec::new();
        for route in literal_routes(&source) {
            for (name, at) in route.names {
                if !agents.contains(name.as_str()) {
                    let (line, column) = lines.line_column(&source, at);
                    problems.push(Problem {
                        location: format!("{}:{line}:{column}", script.display()),
                        message: format!("next_agent `{name}` is not an agent of this system"),
                    });
                }
            }
        }
        problems
    }

    /// A problem located at the `name` value of the `index`-th `[[agents]]` table (or at the
    /// table's header when it has no name line).
    /// A script or module an agent names (its `key`) that cannot be read (missing, a device,
    /// past its size limit): located at that key, so the reader sees which line to change.
    fn unreadable_agent_file(
        &self,
        index: usize,
        agent: &AgentEntry,
        key: &str,
        error: PluginError,
    ) -> Problem {
        self.problem_at_key(
            &[Step::Key("agents"), Step::Table(index), Step::Key(key)],
            &format!("agent `{}`: `{key}`: {error}", agent.name),
        )
    }

    fn problem_in_agent(&self, index: usize, message: &str) -> Problem {
        self.problem_in_table("agents", index, "name", message)
    }

    /// A problem located at the `key` value of the `index`-th `[[array]]` table (or at the
    /// table itself when it has no such key).
    fn problem_in_table(&self, array: &str, index: usize, key: &str, message: &str) -> Problem {
        let table = [
            array.to_string(),
            self.written_index(array, index).to_string(),
        ];
        let positions = self.positions();
        // Point at the key's value (the agent's name, where the reader looks for the agent).
        let offset = positions
            .get(&[table[0].clone(), table[1].clone(), key.to_string()])
            .map(|position| position.value)
            .or_else(|| positions.get(&table).map(|position| position.key));
        let Some(offset) = offset else {
            return self.problem_at(&format!("[[{array}]]"), message);
        };
        let (line, column) = self.positions().lines.line_column(&self.text, offset);
        Problem {
            location: format!("{}:{line}:{column}", self.file.display()),
            message: message.to_string(),
        }
    }

    /// A problem located at the first occurrence of `needle` in the TOML file.
    fn problem_at(&self, needle: &str, message: &str) -> Problem {
        let location = match self.text.find(needle) {
            Some(offset) => {
                let (line, column) = self.positions().lines.line_column(&self.text, offset);
                format!("{}:{line}:{column}", self.file.display())
            }
            None => self.file.display().to_string(),
        };
        Problem {
            location,
            message: message.to_string(),
        }
    }
}

/// Two tables claiming one id: the `index`-th table of `[[array]]`, at its `key`.
struct Clash {
    array: &'static str,
    index: usize,
    key: &'static str,
    message: String,
}

/// One step of a path into the TOML text: a key, or the n-th table (as the definition keeps
/// them) of the array of tables the previous key names.
enum Step<'a> {
    Key(&'a str),
    Table(usize),
}

/// What an agent is, for messages: "a WASM module", "the built-in `llm` plugin", ...
fn describe_source(source: &AgentSource) -> String {
    match source {
        AgentSource::Script(_) => "a Rhai script".to_string(),
        AgentSource::Wasm(_) => "a WASM module".to_string(),
        AgentSource::Native(name) => format!("the native plugin `{name}`"),
        AgentSource::Builtin(name, _) => format!("the built-in `{name}` plugin"),
    }
}

/// The `limits` keys that set Rhai limits, with the [`RhaiConfig`] limit each one sets (the
/// name a limit error reports).
const RHAI_LIMIT_KEYS: &[(&str, &str)] = &[
    ("max_operations", "max_operations"),
    ("max_call_stack_depth", "max_call_stack_depth"),
    ("max_expr_depth", "max_expr_depth"),
    ("max_string_size", "max_string_size"),
    ("max_array_size", "max_array_size"),
    ("max_map_size", "max_map_size"),
    ("timeout_ms", "timeout"),
];

/// The keys a `limits` table sets.
fn limit_keys_set(limits: &Limits) -> Vec<String> {
    match serde_json::to_value(limits) {
        Ok(Value::Object(fields)) => fields
            .into_iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(key, _)| key)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a `limits` key sets a limit of scripts, of WASM modules (both, for `timeout_ms`).
/// Neither for `max_state_bytes`, which every kind of agent has.
fn limit_key_users(key: &str) -> (bool, bool) {
    let sets = |keys: &[(&str, &str)]| keys.iter().any(|(known, _)| *known == key);
    (sets(RHAI_LIMIT_KEYS), sets(WASM_LIMIT_KEYS))
}

/// What kind of limit a `limits` key sets, for the keys only some kinds of agent use.
fn limit_key_kind(key: &str) -> Option<&'static str> {
    match limit_key_users(key) {
        (true, true) => Some("limit of Rhai scripts and WASM modules"),
        (true, false) => Some("Rhai script limit"),
        (false, true) => Some("WASM module limit"),
        (false, false) => None,
    }
}

/// The kind of limit `key` sets, when an agent backed by `source` does not use it.
fn limit_key_unused_by(key: &str, source: &AgentSource) -> Option<&'static str> {
    let kind = limit_key_kind(key)?;
    let (script, wasm) = limit_key_users(key);
    let used = match source {
        AgentSource::Script(_) => script,
        AgentSource::Wasm(_) => wasm,
        AgentSource::Native(_) | AgentSource::Builtin(..) => false,
    };
    (!used).then_some(kind)
}

/// How limit errors of a script or module name the key that raises each of the limits in
/// `keys` (`RHAI_LIMIT_KEYS`, `WASM_LIMIT_KEYS`): the agent's own `limits.KEY` when it sets
/// that key, else `[limits] KEY` (or the agent's, for it alone); for the routing script
/// (`agent` = `None`), `[limits] KEY`. `kind` names the agents `[limits]` applies to.
fn limit_settings(agent: Option<&AgentEntry>, keys: &[(&str, &str)], kind: &str) -> LimitSettings {
    let own: Vec<String> = agent
        .and_then(|agent| agent.limits.as_ref())
        .map(limit_keys_set)
        .unwrap_or_default();
    LimitSettings::keys(keys.iter().map(|(key, limit)| {
        let words = match agent {
            Some(agent) if own.iter().any(|k| k == key) => {
                format!("`limits.{key}` in the [[agents]] table of `{}`", agent.name)
            }
            Some(agent) => format!(
                "`[limits] {key}` (every {kind}; `limits.{key}` in the [[agents]] table \
                 of `{}` for it alone)",
                agent.name
            ),
            None => format!("`[limits] {key}`"),
        };
        (*limit, words)
    }))
}

/// The support plugin's id: its `id`, else the builtin's name.
fn plugin_id(entry: &PluginEntry) -> &str {
    entry.id.as_deref().unwrap_or(entry.builtin.as_str())
}

/// A built-in plugin for `config` (a JSON object of its config keys), which is checked here
/// the way the plugin's `load` reads it, so `check` reports what `build` would refuse.
fn builtin_plugin(builtin: &str, config: &Value) -> Result<Box<dyn AgentPlugin>, String> {
    match builtin {
        "llm" => {
            let provider = match config.get("provider") {
                None => "openai",
                Some(Value::String(provider)) => provider.as_str(),
                Some(other) => {
                    return Err(format!(
                        "llm config: `provider` must be a string, got {other}"
                    ))
                }
            };
            let merged = overlay("llm", &LlmConfig::for_provider(provider), config)?;
            if !(merged.base_url.starts_with("http://") || merged.base_url.starts_with("https://"))
            {
                return Err(format!(
                    "llm config: base_url `{}` must start with http:// or https://",
                    merged.base_url
                ));
            }
            Ok(Box::new(LLMPlugin::new(provider)))
        }
        "database" => {
            let merged = overlay("database", &DatabaseConfig::default(), config)?;
            if merged.url.trim().is_empty() {
                return Err("database config: `url` is empty".to_string());
            }
            Ok(Box::new(DatabasePlugin::default()))
        }
        "http" => {
            overlay("http", &HttpConfig::default(), config)?;
            Ok(Box::new(HttpPlugin::new()))
        }
        other => Err(format!(
            "unknown builtin `{other}`; built-in plugins are {}",
            BUILTIN_PLUGINS.join(", ")
        )),
    }
}

/// `base` with the keys of `config` (a JSON object) replaced: unknown keys and wrongly typed
/// values are errors, as in the plugins' own `load`.
fn overlay<T: Serialize + DeserializeOwned>(
    builtin: &str,
    base: &T,
    config: &Value,
) -> Result<T, String> {
    let Value::Object(overrides) = config else {
        return Err(format!(
            "{builtin} config must be a table of settings, got {config}"
        ));
    };
    let mut merged = serde_json::to_value(base).map_err(|e| e.to_string())?;
    if let Value::Object(fields) = &mut merged {
        for (key, value) in overrides {
            if !fields.contains_key(key) {
                let known: Vec<&str> = fields.keys().map(String::as_str).collect();
                return Err(format!(
                    "{builtin} config has unknown key `{key}`; known keys: {}",
                    known.join(", ")
                ));
            }
            fields.insert(key.clone(), value.clone());
        }
    }
    serde_json::from_value(merged).map_err(|e| format!("{builtin} config is invalid: {e}"))
}

/// A path in the form file events report it, so lookups match whichever way it was written.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A WASM agent named after the agent (not its file), with exactly the capabilities its table
/// grants (none by default) and its limits; compiled on the fuel-metering engine when its
/// limits set `fuel`.
fn wasm_agent(
    path: &Path,
    name: &str,
    capabilities: &[String],
    limits: &WasmLimits,
) -> PluginResult<WasmPlugin> {
    let grant = WasmCapabilities::from_names(capabilities).map_err(|e| match e {
        PluginError::Config(why) => {
            PluginError::Config(format!("agent `{name}`: `capabilities`: {why}"))
        }
        other => other,
    })?;
    // Fuel needs code compiled with metering, which makes every module slower: only modules
    // asked to burn fuel are compiled that way.
    let engine = if limits.fuel.is_some() {
        WasmEngine::shared_metering_fuel()?
    } else {
        WasmEngine::shared()?
    };
    Ok(WasmPlugin::compile_file(&engine, path)?
        .with_id(name)
        .with_capabilities(grant)
        .with_limits(limits.clone()))
}

fn apply_wasm_limits(mut wasm: WasmLimits, limits: &Limits) -> WasmLimits {
    if let Some(ms) = limits.timeout_ms {
        wasm = wasm.timeout(Duration::from_millis(ms));
    }
    if let Some(bytes) = limits.max_memory_bytes {
        wasm = wasm.max_memory_bytes(bytes);
    }
    if let Some(fuel) = limits.fuel {
        wasm = wasm.fuel(fuel);
    }
    if let Some(bytes) = limits.max_output_bytes {
        wasm = wasm.max_output_bytes(bytes);
    }
    wasm
}

/// The `limits` keys that set WASM limits, with the [`WasmLimits`] limit each one sets (the
/// name a limit error reports). A WASM limit with no key here (`max_table_elements`) cannot be
/// set in a definition, and its errors give no advice to raise a setting.
const WASM_LIMIT_KEYS: &[(&str, &str)] = &[
    ("timeout_ms", "timeout"),
    ("max_memory_bytes", "max_memory_bytes"),
    ("fuel", "fuel"),
    ("max_output_bytes", "max_output_bytes"),
];

fn apply_limits(mut config: RhaiConfig, limits: &Limits) -> RhaiConfig {
    if let Some(v) = limits.max_operations {
        config = config.max_operations(v);
    }
    if let Some(v) = limits.max_call_stack_depth {
        config = config.max_call_stack_depth(v);
    }
    if let Some(v) = limits.max_expr_depth {
        config = config.max_expr_depth(v);
    }
    if let Some(v) = limits.max_string_size {
        config = config.max_string_size(v);
    }
    if let Some(v) = limits.max_array_size {
        config = config.max_array_size(v);
    }
    if let Some(v) = limits.max_map_size {
        config = config.max_map_size(v);
    }
    if let Some(ms) = limits.timeout_ms {
        config = config.timeout(Duration::from_millis(ms));
    }
    config
}

fn problem_from_error(path: &Path, error: PluginError) -> Problem {
    match error {
        PluginError::Compile { location, message } => Problem { location, message },
        other => Problem {
            location: path.display().to_string(),
            message: other.to_string(),
        },
    }
}

/// A literal `next_agent` value written in a script: `next_agent: "x"`, `next_agent = ["x", "y"]`.
struct LiteralRoute {
    /// Where the value starts (a byte offset in the script).
    at: usize,
    /// Whether the value is a list (a fan-out).
    is_list: bool,
    /// The names in it, each with the byte offset of its opening quote.
    names: Vec<(String, usize)>,
}

/// Every literal `next_agent` value in a script's source (what `check` can know without
/// running it).
fn literal_routes(source: &str) -> Vec<LiteralRoute> {
    static ROUTE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"next_agent\s*[:=]\s*(\[[^\]]*\]|"[^"]*")"#).expect("static pattern")
    });
    static NAME: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r#""([^"]*)""#).expect("static pattern"));
    ROUTE
        .captures_iter(source)
        .map(|found| {
            let value = found.get(1).expect("group 1");
            LiteralRoute {
                at: value.start(),
                is_list: value.as_str().starts_with('['),
                names: NAME
                    .captures_iter(value.as_str())
                    .map(|name| {
                        let name = name.get(1).expect("group 1");
                        (name.as_str().to_string(), value.start() + name.start() - 1)
                    })
                    .collect(),
            }
        })
        .collect()
}
