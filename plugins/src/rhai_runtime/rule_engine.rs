//! `RuleEngine`: a rules script used directly from Rust, without hosting it as a plugin.
//!
//! A `RhaiPlugin` whose script is a rules script already answers each message with the
//! decision as JSON; `RuleEngine` is the typed view of the same thing, for code that wants
//! the decision as a value ([`RuleDecision`]) or the list of rules in evaluation order. It can
//! be built from a file or source, or taken from a plugin with
//! [`RhaiPlugin::rule_engine`](super::RhaiPlugin::rule_engine), in which case it shares the
//! plugin's compiled script and host connection. Cheap to clone; `Send + Sync`.

use std::path::Path;
use std::sync::Arc;

use rhai::Dynamic;
use serde_json::Value;

use super::execution_guard::ExecutionGuard;
use super::form::ScriptForm;
use super::rules::{RuleDecision, RuleInfo, RuleSet};
use super::script::CompiledScript;
use super::{RhaiConfig, RhaiPlugin};
use crate::{PluginError, PluginResult};

/// A compiled rules script, evaluated from Rust: rules in priority order, first match wins
/// (see [`crate::rhai_runtime`] for the rules format).
///
/// ```
/// use bilayer_plugins::rhai_runtime::RuleEngine;
///
/// let engine = RuleEngine::from_source("moderation", r#"
///     let rules = [
///         #{ name: "allow_default", priority: "low", condition: |msg| true, action: |msg| #{ decision: "allow" } },
///         #{ name: "spam_filter", priority: "critical",
///            condition: |msg| msg.contains("BUY NOW"), action: |msg| #{ decision: "block", reason: "spam" } },
///     ];
/// "#)?;
/// let decision = engine.evaluate_text("BUY NOW!!!")?;
/// assert_eq!(decision.rule.as_deref(), Some("spam_filter"));
/// assert_eq!(decision.to_json()["decision"], "block");
/// # Ok::<(), bilayer_plugins::PluginError>(())
/// ```
#[derive(Clone)]
pub struct RuleEngine {
    script: Arc<CompiledScript>,
}

impl std::fmt::Debug for RuleEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleEngine")
            .field("script", &self.script.name)
            .field("rules", &self.rules())
            .finish()
    }
}

impl RuleEngine {
    /// The rules of the Rhai script at `path`, with the default limits.
    pub fn from_file(path: impl AsRef<Path>) -> PluginResult<Self> {
        Self::from_file_with_config(path, RhaiConfig::default())
    }

    /// The rules of the Rhai script at `path`, with these limits.
    pub fn from_file_with_config(path: impl AsRef<Path>, config: RhaiConfig) -> PluginResult<Self> {
        let path = path.as_ref();
        RhaiPlugin::from_file_with_config(path, config)?
            .rule_engine()
            .ok_or_else(|| not_rules(&path.display().to_string()))
    }

    /// The rules of a Rhai script given as source text, with the default limits.
    pub fn from_source(name: impl Into<String>, source: impl Into<String>) -> PluginResult<Self> {
        Self::from_source_with_config(name, source, RhaiConfig::default())
    }

    /// The rules of a Rhai script given as source text, with these limits.
    pub fn from_source_with_config(
        name: impl Into<String>,
        source: impl Into<String>,
        config: RhaiConfig,
    ) -> PluginResult<Self> {
        let name = name.into();
        RhaiPlugin::from_source_with_config(name.clone(), source, config)?
            .rule_engine()
            .ok_or_else(|| not_rules(&name))
    }

    pub(crate) fn from_compiled(script: Arc<CompiledScript>) -> PluginResult<Self> {
        match script.form {
            ScriptForm::Rules(_) => Ok(Self { script }),
            _ => Err(not_rules(&script.name)),
        }
    }

    fn rule_set(&self) -> PluginResult<&RuleSet> {
        match &self.script.form {
            ScriptForm::Rules(rules) => Ok(rules),
            _ => Err(not_rules(&self.script.name)),
        }
    }

    /// The rules in evaluation order (priority, then script order).
    pub fn rules(&self) -> Vec<RuleInfo> {
        self.rule_set().map(RuleSet::infos).unwrap_or_default()
    }

    /// Decides on a message given as JSON (usually a string).
    pub fn evaluate(&self, message: &Value) -> PluginResult<RuleDecision> {
        self.decide(self.script.rhai_value(message)?)
    }

    /// Decides on a text message.
    pub fn evaluate_text(&self, message: &str) -> PluginResult<RuleDecision> {
        self.decide(Dynamic::from(message.to_string()))
    }

    fn decide(&self, message: Dynamic) -> PluginResult<RuleDecision> {
        let rules = self.rule_set()?;
        let fired = {
            let _limits = ExecutionGuard::enter(
                self.script.config.timeout,
                self.script.config.max_operations,
            );
            rules.evaluate(&self.script, &message)?
        };
        Ok(match fired {
            None => RuleDecision {
                rule: None,
                priority: None,
                result: Value::Null,
            },
            Some((index, result)) => {
                let info = rules.info(index);
                RuleDecision {
                    rule: Some(info.name.clone()),
                    priority: Some(info.priority),
                    result: self.script.json_output(&result)?,
                }
            }
        })
    }
}

fn not_rules(script: &str) -> PluginError {
    PluginError::Config(format!(
        "{script} is not a rules script: it needs a top-level `let rules = [#{{ name, priority, condition, action }}, ...];`"
    ))
}
