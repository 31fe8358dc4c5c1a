//! Which of the four script forms a script is, decided once from what its top-level statements
//! left behind.
//!
//! The top-level statements run once, at compile time. Then, in this order:
//!
//! 1. **Entry** — the last expression is a function pointer: a bare function name such as the
//!    seed's `process_order` (Rhai evaluates an unbound identifier that names a script function
//!    to a pointer to it), `Fn("name")`, or a closure. The function takes the input (one
//!    parameter) or nothing (zero parameters).
//! 2. **Tool** — the last expression is a map with a `tool` map and an `execute` function
//!    (`#{ tool: tool, execute: execute }`).
//! 3. **Rules** — the script has a top-level `rules` array ([`super::rules`]).
//! 4. **Functions** — none of the above, but the script defines functions (the seed's
//!    `calculate_discount`): a call names the function and its arguments.
//!
//! A script that is none of these is refused when compiled, with what to add.

use std::collections::HashMap;

use rhai::{Dynamic, FnPtr};
use serde::{Deserialize, Serialize};

use super::rules::RuleSet;
use super::tool::ToolDefinition;
use super::RhaiConfig;
use crate::{PluginError, PluginResult};

/// The shape of a Rhai plugin script, which decides what its input means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptKind {
    /// Ends with the name of its entry function; the input JSON is its argument.
    Entry,
    /// Returns `#{ tool, execute }`; the input is the tool's JSON arguments.
    Tool,
    /// Has a top-level `rules` array; the input is the message to decide on.
    Rules,
    /// Defines functions; the input is `{"function": NAME, "args": [...] or {...}}`.
    Functions,
}

/// A function the script defines, with its parameter names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScriptFunction {
    pub(crate) name: String,
    pub(crate) params: Vec<String>,
}

impl ScriptFunction {
    pub(crate) fn signature(&self) -> String {
        format!("{}({})", self.name, self.params.join(", "))
    }
}

/// What the host calls for each input, cached from the top-level run.
pub(crate) enum ScriptForm {
    Entry {
        function: FnPtr,
        takes_input: bool,
    },
    Tool {
        definition: ToolDefinition,
        execute: FnPtr,
    },
    Rules(RuleSet),
    Functions,
}

impl ScriptForm {
    pub(crate) fn kind(&self) -> ScriptKind {
        match self {
            ScriptForm::Entry { .. } => ScriptKind::Entry,
            ScriptForm::Tool { .. } => ScriptKind::Tool,
            ScriptForm::Rules(_) => ScriptKind::Rules,
            ScriptForm::Functions => ScriptKind::Functions,
        }
    }

    /// Decides the form of `script` from its top-level result and variables.
    pub(crate) fn detect(
        script: &str,
        result: Dynamic,
        globals: &HashMap<String, Dynamic>,
        functions: &[ScriptFunction],
        config: &RhaiConfig,
    ) -> PluginResult<Self> {
        if let Some(function) = result.clone().try_cast::<FnPtr>() {
            return Self::entry(script, function, functions);
        }
        if let Some(form) = Self::tool(script, &result, config)? {
            return Ok(form);
        }
        if let Some(rules) = globals.get("rules") {
            return Ok(ScriptForm::Rules(RuleSet::from_script_value(
                script, rules,
            )?));
        }
        if !functions.is_empty() {
            return Ok(ScriptForm::Functions);
        }
        Err(PluginError::Config(format!(
            "script {script} exposes nothing to call: end it with the name of its entry function \
             (e.g. `process_order`), return `#{{ tool: tool, execute: execute }}`, define a \
             top-level `let rules = [...]`, or define functions"
        )))
    }

    fn entry(script: &str, function: FnPtr, functions: &[ScriptFunction]) -> PluginResult<Self> {
        if function.is_anonymous() {
            return Ok(ScriptForm::Entry {
                function,
                takes_input: true,
            });
        }
        let name = function.fn_name();
        let candidates: Vec<&ScriptFunction> =
            functions.iter().filter(|f| f.name == name).collect();
        let takes_input = match candidates.as_slice() {
            [] => {
                return Err(PluginError::Config(format!(
                    "script {script} ends with `{name}`, which is not a function defined in the script; \
                     define `fn {name}(input)` or end the script with the name of one that is"
                )))
            }
            several => {
                if several.iter().any(|f| f.params.len() == 1) {
                    true
                } else if several.iter().any(|f| f.params.is_empty()) {
                    false
                } else {
                    return Err(PluginError::Config(format!(
                        "entry function {} of {script} must take one parameter (the input) or none",
                        several[0].signature()
                    )));
                }
            }
        };
        Ok(ScriptForm::Entry {
            function,
            takes_input,
        })
    }

    fn tool(script: &str, result: &Dynamic, config: &RhaiConfig) -> PluginResult<Option<Self>> {
        let Ok(map) = result.as_map_ref() else {
            return Ok(None);
        };
        let (Some(tool), Some(execute)) = (map.get("tool"), map.get("execute")) else {
            return Ok(None);
        };
        let execute = execute.clone().try_cast::<FnPtr>().ok_or_else(|| {
            PluginError::Config(format!(
                "tool script {script}: `execute` must be a function, e.g. `#{{ tool: tool, execute: execute }}` \
                 after `fn execute(args) {{ ... }}`"
            ))
        })?;
        let definition = ToolDefinition::from_script_value(script, tool, config)?;
        Ok(Some(ScriptForm::Tool {
            definition,
            execute,
        }))
    }
}
