//! Rule scripts: a `rules` array of `#{ name, priority, condition, action }` maps, evaluated
//! by the host in priority order, first match wins.
//!
//! The seed's content-moderation script loops over `rules` itself inside `fn evaluate`, with
//! `(rule.condition)(message)`. That is not valid Rhai (a parenthesised expression cannot be
//! called); the valid forms are `rule.condition.call(message)` or
//! `call(rule.condition, message)`. Rather than depend on the script's loop, the host reads
//! the `rules` array once, when the script is compiled, sorts it by priority (critical, high,
//! medium, low; script order within a priority), and runs the closures itself. That is what
//! lets the result name the rule that fired, count hits per rule in metrics
//! (`bilayer_rule_hits_total{plugin, rule}`), and keep an evaluation in the low microseconds
//! (no array copied per message). A script-defined `evaluate` still works when called by name,
//! because the host also lets functions read top-level variables.
//!
//! A closure whose whole body is a constant (`|msg| true`, `|msg| #{ decision: "allow" }`) is
//! read from the `AST` once, at compile time, and never called: a call costs engine set-up to
//! learn what the `AST` already says (docs/benchmarks.md, section "The seed's performance
//! table", "Fixed for this issue"), and the seed's default rule is exactly that
//! (half of the calls when every rule is tried). The result is the same value a call returns.
//!
//! The output of a rules plugin is the fired action's map with `"rule"` set to the rule's name,
//! e.g. `{"rule":"spam_filter","decision":"block","reason":"spam"}`; an action returning
//! something other than a map gives `{"rule": NAME, "result": VALUE}`; when no rule matches the
//! output is `{"rule": null}`.

use std::fmt;
use std::sync::RwLock;

use metrics::Counter;
use rhai::{ASTNode, Dynamic, FnPtr, Map, Stmt, AST};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bounded::function_ast;
use super::errors::CallSite;
use super::script::CompiledScript;
use crate::{PluginError, PluginResult};

/// The metric counting rule hits, labelled by `plugin` and `rule`.
pub const RULE_HITS_METRIC: &str = "bilayer_rule_hits_total";

/// How urgent a rule is; rules are tried from `Critical` down to `Low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RulePriority {
    /// Tried first.
    Critical,
    /// Tried after `Critical`.
    High,
    /// Tried after `High`.
    Medium,
    /// Tried last.
    Low,
}

impl RulePriority {
    fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "critical" => Some(Self::Critical),
            "high" => Some(Self::High),
            "medium" => Some(Self::Medium),
            "low" => Some(Self::Low),
            _ => None,
        }
    }

    /// The lowercase name, as scripts write it (`"critical"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

impl fmt::Display for RulePriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's name and priority, as listed by [`RuleEngine::rules`](super::RuleEngine::rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInfo {
    /// The rule's name.
    pub name: String,
    /// Its priority.
    pub priority: RulePriority,
}

/// What evaluating a message decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleDecision {
    /// The rule that fired, `None` when no condition matched.
    pub rule: Option<String>,
    /// The fired rule's priority, `None` when no condition matched.
    pub priority: Option<RulePriority>,
    /// The fired action's return value (`null` when no rule fired).
    pub result: Value,
}

impl RuleDecision {
    /// The output JSON of a rules plugin: the action's map with `"rule"` added.
    pub fn to_json(&self) -> Value {
        match (&self.rule, &self.result) {
            (None, _) => serde_json::json!({ "rule": null }),
            (Some(rule), Value::Object(fields)) => {
                let mut fields = fields.clone();
                fields.insert("rule".to_string(), Value::String(rule.clone()));
                Value::Object(fields)
            }
            (Some(rule), other) => serde_json::json!({ "rule": rule, "result": other }),
        }
    }
}

struct Rule {
    info: RuleInfo,
    condition: FnPtr,
    action: FnPtr,
    /// The condition's value when its body is a constant `true` or `false` (not called then).
    constant_condition: Option<bool>,
    /// The action's value when its body is a constant (cloned instead of calling it).
    constant_action: Option<Dynamic>,
}

/// The rules of one script, in evaluation order, with their hit counters.
pub(crate) struct RuleSet {
    rules: Vec<Rule>,
    hits: RwLock<Vec<Counter>>,
}

impl RuleSet {
    /// Reads the script's `rules` array (`script` names it in errors).
    pub(crate) fn from_script_value(script: &str, rules: &Dynamic) -> PluginResult<Self> {
        let invalid = |what: String| {
            PluginError::Config(format!(
                "rules script {script}: {what}; each rule must be a map like #{{ name: \"spam_filter\", \
                 priority: \"critical\", condition: |msg| ..., action: |msg| #{{ ... }} }} with priority \
                 one of critical, high, medium, low"
            ))
        };
        let array = rules
            .as_array_ref()
            .map_err(|t| invalid(format!("`rules` is {t}, not an array")))?;
        let mut parsed = Vec::with_capacity(array.len());
        for (index, rule) in array.iter().enumerate() {
            let map = rule
                .as_map_ref()
                .map_err(|t| invalid(format!("rule #{index} is {t}, not a map")))?;
            let field = |key: &str| map.get(key).cloned();
            let name = field("name")
                .and_then(|n| n.into_string().ok())
                .ok_or_else(|| invalid(format!("rule #{index} has no string `name`")))?;
            let priority_text = field("priority")
                .and_then(|p| p.into_string().ok())
                .ok_or_else(|| invalid(format!("rule `{name}` has no string `priority`")))?;
            let priority = RulePriority::parse(&priority_text).ok_or_else(|| {
                invalid(format!(
                    "rule `{name}` has unknown priority {priority_text:?}"
                ))
            })?;
            let closure = |key: &str| {
                field(key)
                    .and_then(|f| f.try_cast::<FnPtr>())
                    .ok_or_else(|| invalid(format!("rule `{name}` has no closure `{key}`")))
            };
            let condition = closure("condition")?;
            let action = closure("action")?;
            parsed.push(Rule {
                info: RuleInfo { name, priority },
                condition,
                action,
                constant_condition: None,
                constant_action: None,
            });
        }
        // Stable: rules of equal priority keep the script's order.
        parsed.sort_by_key(|rule| rule.info.priority);
        Ok(Self {
            rules: parsed,
            hits: RwLock::new(Vec::new()),
        })
    }

    /// Reads the closures whose body is a constant from `ast` (see the module docs).
    pub(crate) fn fold_constants(&mut self, ast: &AST) {
        for rule in &mut self.rules {
            rule.constant_condition =
                constant_body(ast, &rule.condition).and_then(|value| value.as_bool().ok());
            rule.constant_action = constant_body(ast, &rule.action);
        }
    }

    /// Every rule's `condition` and `action`: the functions the host calls.
    pub(crate) fn closures(&self) -> impl Iterator<Item = &FnPtr> {
        self.rules
            .iter()
            .flat_map(|rule| [&rule.condition, &rule.action])
    }

    pub(crate) fn infos(&self) -> Vec<RuleInfo> {
        self.rules.iter().map(|r| r.info.clone()).collect()
    }

    /// (Re)creates the hit counters from the metrics recorder installed now, labelled with
    /// `plugin`. Called at compile time and again when a host loads the plugin, since a
    /// counter handle stays bound to the recorder it was created from.
    pub(crate) fn register_metrics(&self, plugin: &str) {
        metrics::describe_counter!(RULE_HITS_METRIC, "Messages decided by each Rhai rule");
        let counters = self
            .rules
            .iter()
            .map(|rule| {
                metrics::counter!(RULE_HITS_METRIC, "plugin" => plugin.to_string(), "rule" => rule.info.name.clone())
            })
            .collect();
        *self.hits.write().unwrap_or_else(|p| p.into_inner()) = counters;
    }

    /// Runs the conditions in order; returns the index of the rule that fired and its
    /// action's result.
    pub(crate) fn evaluate(
        &self,
        script: &CompiledScript,
        message: &Dynamic,
    ) -> PluginResult<Option<(usize, Dynamic)>> {
        for (index, rule) in self.rules.iter().enumerate() {
            let name = rule.info.name.as_str();
            let site = CallSite::Rule {
                rule: name,
                part: "condition",
            };
            let matched = match rule.constant_condition {
                Some(constant) => constant,
                None => script
                    .call_fn_ptr(&rule.condition, vec![message.clone()], site)?
                    .as_bool()
                    .map_err(|type_name| PluginError::Runtime {
                        location: format!("{} in condition of rule `{name}`", script.name),
                        message: format!(
                            "the condition returned {type_name}; a condition must return true or false"
                        ),
                    })?,
            };
            if matched {
                let site = CallSite::Rule {
                    rule: name,
                    part: "action",
                };
                let result = match &rule.constant_action {
                    Some(constant) => constant.clone(),
                    None => script.call_fn_ptr(&rule.action, vec![message.clone()], site)?,
                };
                if let Some(counter) = self
                    .hits
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(index)
                {
                    counter.increment(1);
                }
                return Ok(Some((index, result)));
            }
        }
        Ok(None)
    }

    pub(crate) fn info(&self, index: usize) -> &RuleInfo {
        &self.rules[index].info
    }

    /// The plugin output for an evaluation (see the module docs).
    pub(crate) fn output(&self, fired: Option<(usize, Dynamic)>) -> Dynamic {
        let mut output = Map::new();
        match fired {
            None => {
                output.insert("rule".into(), Dynamic::UNIT);
            }
            Some((index, result)) => {
                let rule = Dynamic::from(self.rules[index].info.name.clone());
                if result.is_map() {
                    output = result.cast::<Map>();
                } else {
                    output.insert("result".into(), result);
                }
                output.insert("rule".into(), rule);
            }
        }
        Dynamic::from_map(output)
    }
}

/// The value of a closure whose body is one constant expression (`|msg| true`,
/// `|msg| #{ decision: "allow" }`), without calling it; `None` for anything else, a closure
/// with captured variables included.
fn constant_body(ast: &AST, function: &FnPtr) -> Option<Dynamic> {
    if !function.is_anonymous() || function.is_curried() {
        return None;
    }
    let only = function_ast(ast, function.fn_name(), Some(1));
    let (mut statements, mut constant) = (0, None);
    only.walk(&mut |path: &[ASTNode]| {
        // The body's own statements are the nodes at depth one.
        if let [ASTNode::Stmt(statement)] = path {
            statements += 1;
            constant = match statement {
                Stmt::Expr(expr) => expr.get_literal_value(None),
                _ => None,
            };
        }
        true
    });
    constant.filter(|_| statements == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rhai_runtime::form::ScriptForm;
    use crate::rhai_runtime::{RhaiConfig, RuleEngine};

    const RULES: &str = r#"
        let rules = [
            #{ name: "block", priority: "critical", condition: |msg| msg.contains("x"),
               action: |msg| #{ decision: "block", reason: "x" } },
            #{ name: "never", priority: "high", condition: |msg| false, action: |msg| msg },
            #{ name: "default", priority: "low", condition: |msg| true,
               action: |msg| #{ decision: "allow" } }
        ];
    "#;

    #[test]
    fn constant_closures_are_read_once_and_give_what_a_call_gives() {
        let script =
            CompiledScript::compile("rules.rhai", "rules", RULES, RhaiConfig::default()).unwrap();
        let ScriptForm::Rules(rules) = &script.form else {
            panic!("not a rules script");
        };
        let folded: Vec<(Option<bool>, bool)> = rules
            .rules
            .iter()
            .map(|r| (r.constant_condition, r.constant_action.is_some()))
            .collect();
        assert_eq!(
            folded,
            [(None, true), (Some(false), false), (Some(true), true)]
        );

        let engine = RuleEngine::from_source("rules.rhai", RULES).unwrap();
        let block = engine.evaluate_text("x marks").unwrap();
        assert_eq!(block.rule.as_deref(), Some("block"));
        assert_eq!(
            block.result,
            serde_json::json!({ "decision": "block", "reason": "x" })
        );
        let allow = engine.evaluate_text("hello").unwrap();
        assert_eq!(allow.rule.as_deref(), Some("default"));
        assert_eq!(allow.result, serde_json::json!({ "decision": "allow" }));
    }

    #[test]
    fn a_constant_condition_that_is_not_a_bool_is_still_an_error() {
        let engine = RuleEngine::from_source(
            "rules.rhai",
            r#"let rules = [#{ name: "odd", priority: "low", condition: |msg| 42,
                               action: |msg| #{} }];"#,
        )
        .unwrap();
        let error = engine.evaluate_text("hello").unwrap_err().to_string();
        assert!(
            error.contains("a condition must return true or false"),
            "{error}"
        );
    }
}
