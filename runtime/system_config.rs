//! Agent systems defined in TOML: which agents exist, the plugin behind each (a Rhai script, a
//! WASM module, or a built-in native plugin by name), limits, supervision, routing.
//!
//! ```toml
//! name = "orders"
//! entry = "intake"              # default: the first agent
//! max_hops = 16                 # default 32
//! max_in_flight = 16384         # admission bound (backpressure)
//! hop_timeout_ms = 30000
//! strategy = "one_for_one"      # or one_for_all, rest_for_one
//! max_restarts = 3              # restart intensity: at most 3 restarts ...
//! restart_window_ms = 5000      # ... within 5 s
//! routing = "routing.rhai"      # optional routing script
//!
//! [limits]                      # Rhai limits for every script agent (per agent: [agents.limits])
//! max_operations = 1000000
//! timeout_ms = 1000
//!
//! [hot_reload]
//! dirs = ["."]                  # directories watched for script changes
//!
//! [[agents]]
//! name = "intake"
//! script = "intake.rhai"        # or: wasm = "intake.wasm" (or .wat), or: native = "order_intake"
//! config = { region = "eu" }    # handed to the plugin as its config
//! capabilities = ["log"]        # WASM only: host imports granted (log, config, state,
//!                               # call_plugin, call_plugin:ID); none by default
//! ```
//!
//! Paths are relative to the TOML file's directory. [`SystemDefinition::check`] reports every
//! problem it can find, each with a file position; [`SystemDefinition::build`] builds the
//! system.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bilayer_actors::{AgentSystem, PluginOptions, SupervisionStrategy};
use bilayer_plugins::rhai_runtime::{RhaiConfig, RhaiPlugin};
use bilayer_plugins::wasm_runtime::{WasmCapabilities, WasmPlugin};
use bilayer_plugins::{AgentPlugin, PluginError, PluginResult};
use serde::Deserialize;

use crate::orders::{builtin_native, BUILTIN_NATIVE};
use crate::routing::RhaiRoutingPolicy;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemFile {
    name: Option<String>,
    entry: Option<String>,
    max_hops: Option<usize>,
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
    #[serde(default)]
    agents: Vec<AgentEntry>,
}

/// Rhai limits, as in [`RhaiConfig`]; unset fields keep its defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    max_operations: Option<u64>,
    max_call_stack_depth: Option<usize>,
    max_expr_depth: Option<usize>,
    max_string_size: Option<usize>,
    max_array_size: Option<usize>,
    max_map_size: Option<usize>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HotReload {
    #[serde(default)]
    dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentEntry {
    name: String,
    script: Option<PathBuf>,
    wasm: Option<PathBuf>,
    native: Option<String>,
    config: Option<toml::Value>,
    limits: Option<Limits>,
    #[serde(default)]
    capabilities: Vec<String>,
}

/// What plugin backs an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSource {
    Script(PathBuf),
    Wasm(PathBuf),
    Native(String),
}

/// A parsed system definition (paths resolved against the file's directory).
#[derive(Debug, Clone)]
pub struct SystemDefinition {
    file: PathBuf,
    text: String,
    raw: SystemFile,
    dir: PathBuf,
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
    /// Reads and parses a system definition; a TOML error names its line and column.
    pub fn load(path: impl AsRef<Path>) -> PluginResult<Self> {
        let file = path.as_ref().to_path_buf();
        let text = std::fs::read_to_string(&file).map_err(|e| {
            PluginError::Io(format!(
                "cannot read system definition {}: {e}",
                file.display()
            ))
        })?;
        let raw: SystemFile = toml::from_str(&text).map_err(|e| {
            let location = match e.span() {
                Some(span) => {
                    let (line, column) = line_column(&text, span.start);
                    format!("{}:{line}:{column}", file.display())
                }
                None => file.display().to_string(),
            };
            PluginError::Compile {
                location,
                message: e.message().to_string(),
            }
        })?;
        let dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Self {
            file,
            text,
            raw,
            dir,
        })
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
    /// that do not compile, unknown native plugins, duplicate names, an unknown entry, a broken
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
        let mut seen = HashSet::new();
        for (index, agent) in self.raw.agents.iter().enumerate() {
            if !seen.insert(agent.name.as_str()) {
                problems.push(
                    self.problem_in_agent(
                        index,
                        &format!("agent `{}` is defined twice", agent.name),
                    ),
                );
            }
            let source = self.source_of(agent);
            if !agent.capabilities.is_empty() && !matches!(source, Ok(AgentSource::Wasm(_))) {
                problems.push(self.problem_in_agent(
                    index,
                    &format!(
                        "agent `{}`: capabilities are granted to WASM agents only; scripts and native plugins have none to grant",
                        agent.name
                    ),
                ));
            }
            match source {
                Err(message) => problems.push(self.problem_in_agent(index, &message)),
                Ok(AgentSource::Script(path)) => {
                    match RhaiPlugin::from_file_with_config(&path, self.limits_for(agent)) {
                        Ok(_) => {}
                        Err(e) => problems.push(problem_from_error(&path, e)),
                    }
                    problems.extend(self.unknown_targets(&path, &names));
                }
                Ok(AgentSource::Wasm(path)) => {
                    if let Err(e) = wasm_agent(&path, &agent.capabilities)
                        .and_then(|plugin| plugin.check_link())
                    {
                        problems.push(problem_from_error(&path, e));
                    }
                }
                Ok(AgentSource::Native(_)) => {}
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
        if let Some(routing) = &self.raw.routing {
            let path = self.dir.join(routing);
            match RhaiRoutingPolicy::from_file_with_config(&path, self.base_limits()) {
                Ok(_) => problems.extend(self.unknown_targets(&path, &names)),
                Err(e) => problems.push(problem_from_error(&path, e)),
            }
        }
        if let Some(strategy) = &self.raw.strategy {
            if let Err(message) = strategy.parse::<SupervisionStrategy>() {
                problems.push(self.problem_at("strategy", &message));
            }
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

    /// Builds and starts the system.
    pub async fn build(&self) -> PluginResult<AgentSystem> {
        let mut builder = AgentSystem::builder().name(self.name());
        if let Some(entry) = &self.raw.entry {
            builder = builder.entry(entry);
        }
        if let Some(max_hops) = self.raw.max_hops {
            builder = builder.max_hops(max_hops);
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
        if let Some(routing) = &self.raw.routing {
            let policy = RhaiRoutingPolicy::from_file_with_config(
                self.dir.join(routing),
                self.base_limits(),
            )?;
            builder = builder.routing_policy(Arc::new(policy));
        }
        for agent in &self.raw.agents {
            let plugin: Box<dyn AgentPlugin> =
                match self.source_of(agent).map_err(PluginError::Config)? {
                    AgentSource::Script(path) => Box::new(RhaiPlugin::from_file_with_config(
                        &path,
                        self.limits_for(agent),
                    )?),
                    AgentSource::Wasm(path) => Box::new(wasm_agent(&path, &agent.capabilities)?),
                    AgentSource::Native(name) => builtin_native(&name).ok_or_else(|| {
                        PluginError::Config(format!("unknown native plugin `{name}`"))
                    })?,
                };
            let mut options = PluginOptions::new();
            if let Some(config) = &agent.config {
                let config =
                    serde_json::to_value(config).map_err(|e| PluginError::Config(e.to_string()))?;
                options = options.config(config);
            }
            builder = builder.agent_with(&agent.name, plugin, options);
        }
        builder.build().await
    }

    fn source_of(&self, agent: &AgentEntry) -> Result<AgentSource, String> {
        let given = [
            agent.script.is_some(),
            agent.wasm.is_some(),
            agent.native.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(format!(
                "agent `{}` needs exactly one of script, wasm or native",
                agent.name
            ));
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

    fn base_limits(&self) -> RhaiConfig {
        apply_limits(RhaiConfig::default(), &self.raw.limits)
    }

    fn limits_for(&self, agent: &AgentEntry) -> RhaiConfig {
        let base = self.base_limits();
        match &agent.limits {
            Some(limits) => apply_limits(base, limits),
            None => base,
        }
    }

    /// Literal `next_agent: "x"` / `next_agent = "x"` in a script naming no agent.
    fn unknown_targets(&self, script: &Path, agents: &HashSet<&str>) -> Vec<Problem> {
        let Ok(source) = std::fs::read_to_string(script) else {
            return Vec::new();
        };
        let pattern = regex::Regex::new(r#"next_agent\s*[:=]\s*(\[[^\]]*\]|"[^"]*")"#)
            .expect("static pattern");
        let name = regex::Regex::new(r#""([^"]*)""#).expect("static pattern");
        let mut problems = Vec::new();
        for found in pattern.captures_iter(&source) {
            let value = found.get(1).expect("group 1");
            for target in name.captures_iter(value.as_str()) {
                let target_match = target.get(1).expect("group 1");
                if !agents.contains(target_match.as_str()) {
                    let (line, column) =
                        line_column(&source, value.start() + target_match.start() - 1);
                    problems.push(Problem {
                        location: format!("{}:{line}:{column}", script.display()),
                        message: format!(
                            "next_agent `{}` is not an agent of this system",
                            target_match.as_str()
                        ),
                    });
                }
            }
        }
        problems
    }

    /// A problem located at the `name` value of the `index`-th `[[agents]]` table (or at the
    /// table's header when it has no name line).
    fn problem_in_agent(&self, index: usize, message: &str) -> Problem {
        let header = regex::Regex::new(r"(?m)^\s*\[\[\s*agents\s*\]\]").expect("static pattern");
        let name_value = regex::Regex::new(r"(?m)^\s*name\s*=\s*").expect("static pattern");
        let Some(table) = header.find_iter(&self.text).nth(index) else {
            return self.problem_at("[[agents]]", message);
        };
        let rest = &self.text[table.end()..];
        let section_end = header.find(rest).map_or(rest.len(), |next| next.start());
        // Point at the agent's name value, where the reader looks for the agent.
        let offset = match name_value.find(&rest[..section_end]) {
            Some(name) => table.end() + name.end(),
            None => table.start(),
        };
        let (line, column) = line_column(&self.text, offset);
        Problem {
            location: format!("{}:{line}:{column}", self.file.display()),
            message: message.to_string(),
        }
    }

    /// A problem located at the first occurrence of `needle` in the TOML file.
    fn problem_at(&self, needle: &str, message: &str) -> Problem {
        let location = match self.text.find(needle) {
            Some(offset) => {
                let (line, column) = line_column(&self.text, offset);
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

/// A WASM agent with exactly the capabilities its table grants (none by default).
fn wasm_agent(path: &Path, capabilities: &[String]) -> PluginResult<WasmPlugin> {
    Ok(WasmPlugin::from_file(path)?.with_capabilities(WasmCapabilities::from_names(capabilities)?))
}

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

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
