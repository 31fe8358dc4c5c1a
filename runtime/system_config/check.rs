//! `bilayer check`: every problem of what a definition says (missing files, scripts that do
//! not compile, unknown plugins or keys of built-in configs, limits no agent uses, clashing
//! names, a broken routing script, literal `next_agent` targets that name no agent), each
//! placed in its file, plus the warnings of what is allowed but likely wrong. It also refuses,
//! before a build, the mistakes the agent system builder would word for a Rust caller.

use std::collections::HashSet;
use std::path::Path;

use bilayer_actors::SupervisionStrategy;
#[cfg(feature = "rhai")]
use bilayer_plugins::rhai_runtime::{RhaiPlugin, SCRIPT_THREAD_STACK};
#[cfg(feature = "rhai")]
use bilayer_plugins::user_file;
use bilayer_plugins::{PluginError, PluginResult};

use super::limits::{limit_key_kind, limit_key_unused_by, limit_key_users, limit_keys_set};
#[cfg(feature = "rhai")]
use super::positions::LineIndex;
#[cfg(any(feature = "rhai", feature = "wasm"))]
use super::problems::problem_from_error;
use super::problems::{Problem, Step};
use super::schema::plugin_id;
#[cfg(feature = "wasm")]
use super::sources::wasm_agent;
use super::sources::{builtin_plugin, describe_source, is_script, is_wasm, AgentSource};
use super::SystemDefinition;
#[cfg(feature = "rhai")]
use crate::routing::RhaiRoutingPolicy;

impl SystemDefinition {
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
        problems.extend(self.concurrency_problems());
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
            // An agent refused for a feature this build lacks is still a script or a module:
            // the limits it would use are not reported unused on top of its refusal.
            if source.is_err() {
                uses_script_limits |= cfg!(not(feature = "rhai")) && agent.script.is_some();
                uses_wasm_limits |= cfg!(not(feature = "wasm")) && agent.wasm.is_some();
            }
            if let Ok(source) = &source {
                uses_script_limits |= is_script(source);
                uses_wasm_limits |= is_wasm(source);
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
                #[cfg(feature = "rhai")]
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
                #[cfg(feature = "wasm")]
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
        #[cfg(feature = "rhai")]
        if let Err(message) = self.base_limits().check_stack(SCRIPT_THREAD_STACK) {
            problems.push(self.problem_at("[limits]", &format!("[limits]: {message}")));
        }
        if let Some(routing) = &self.raw.routing {
            let path = self.dir.join(routing);
            #[cfg(feature = "rhai")]
            match RhaiRoutingPolicy::from_file_with_config(&path, self.base_limits()) {
                Ok(_) => problems.extend(self.unknown_targets(&path, &names)),
                Err(e @ PluginError::Io(_)) => problems
                    .push(self.problem_at_key(&[Step::Key("routing")], &format!("`routing`: {e}"))),
                Err(e) => problems.push(problem_from_error(&path, e)),
            }
            #[cfg(not(feature = "rhai"))]
            problems
                .push(self.problem_at_key(&[Step::Key("routing")], &routing_without_rhai(&path)));
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

    /// What is allowed but likely wrong: a script whose literal `next_agent` list names its own
    /// agent, so that every hop fans out again (the branches multiply until `max_branches`
    /// cuts them off). `bilayer check` prints these as warnings.
    pub fn warnings(&self) -> Vec<Problem> {
        #[cfg_attr(not(feature = "rhai"), allow(unused_mut))] // only scripts are read
        let mut warnings = Vec::new();
        #[cfg(feature = "rhai")]
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

    /// The mistakes the agent system builder would report in Rust terms (no agent: "add one
    /// with .agent(name, plugin)"; a taken id: "unregister it first"), and grants it cannot
    /// use, refused here in the definition's terms, naming the key and its position.
    pub(super) fn refuse_what_the_builder_would_word_for_rust(&self) -> PluginResult<()> {
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
        if let Some(problem) = self.concurrency_problems().into_iter().next() {
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

    /// Concurrency settings no plugin could serve by: `concurrency` or `max_concurrency` of 0,
    /// an `order_by` naming no field.
    fn concurrency_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (index, agent) in self.raw.agents.iter().enumerate() {
            if agent.concurrency == Some(0) {
                problems.push(self.problem_in_table(
                    "agents",
                    index,
                    "concurrency",
                    &format!(
                        "agent `{}`: `concurrency` must be at least 1 (1 serves one message at \
                         a time, in order; leave it out for the default, {})",
                        agent.name,
                        bilayer_actors::DEFAULT_CONCURRENCY
                    ),
                ));
            }
            if agent
                .order_by
                .as_deref()
                .is_some_and(|field| field.trim().is_empty())
            {
                problems.push(self.problem_in_table(
                    "agents",
                    index,
                    "order_by",
                    &format!(
                        "agent `{}`: `order_by` must name a field of the agent's messages \
                         (e.g. order_by = \"customer_id\")",
                        agent.name
                    ),
                ));
            }
        }
        for (index, entry) in self.raw.plugins.iter().enumerate() {
            if entry.max_concurrency == Some(0) {
                problems.push(self.problem_in_table(
                    "plugins",
                    index,
                    "max_concurrency",
                    &format!(
                        "plugin `{}`: `max_concurrency` must be at least 1 (calls past it wait \
                         their turn)",
                        plugin_id(entry)
                    ),
                ));
            }
        }
        problems
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

    /// Literal `next_agent: "x"` / `next_agent = "x"` in a script naming no agent.
    #[cfg(feature = "rhai")]
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
}

/// The problem of a `routing` script in a build without Rhai.
#[cfg(not(feature = "rhai"))]
pub(super) fn routing_without_rhai(path: &Path) -> String {
    crate::features::missing(
        "rhai",
        &format!("`routing`: {} is a Rhai script", path.display()),
    )
}

/// Two tables claiming one id: the `index`-th table of `[[array]]`, at its `key`.
struct Clash {
    array: &'static str,
    index: usize,
    key: &'static str,
    message: String,
}

/// A literal `next_agent` value written in a script: `next_agent: "x"`, `next_agent = ["x", "y"]`.
#[cfg(feature = "rhai")]
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
#[cfg(feature = "rhai")]
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
