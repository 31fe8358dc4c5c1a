//! Turns Rhai's errors into `PluginError`s that say where, and which limit.
//!
//! - A syntax error becomes `PluginError::Compile` with `file:line:column`.
//! - A limit becomes `PluginError::LimitExceeded` whose `limit` is the name of the
//!   [`RhaiConfig`](super::RhaiConfig) setting to raise (`max_operations`, `timeout`, ...); its
//!   advice names that setting as the script's [`LimitSettings`] say (the Rust builder, or a
//!   system definition's key).
//! - Any other failure becomes `PluginError::Runtime` with `file:line:column in fn NAME`, where
//!   NAME is the innermost script function (closures read `closure`) and the chain of calls
//!   that led there.
//! - A `PluginError` raised by a host function (a call cycle through `call_plugin`) travels
//!   through Rhai as a system error and comes out unchanged.

use rhai::{EvalAltResult, ParseError, Position};

use super::execution_guard::{HOST_TIMEOUT, MAX_OPERATIONS, NATIVE_STACK, TIMEOUT};
use crate::{LimitSettings, PluginError};

/// What the host was running when the error happened, for errors raised outside any
/// function (top-level statements) and for naming the outermost call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CallSite<'a> {
    /// The script's top-level statements, run once when it is compiled.
    TopLevel,
    /// A script function called by the host.
    Function(&'a str),
    /// The condition or action closure of a rule.
    Rule { rule: &'a str, part: &'static str },
}

/// Maps a syntax error in `script` (a file path or a plugin id).
pub(crate) fn compile_error(script: &str, err: &ParseError) -> PluginError {
    PluginError::Compile {
        location: location(script, err.position()),
        message: err.err_type().to_string(),
    }
}

/// Maps an evaluation error raised while running `site` of `script`; a limit's advice names
/// its setting as `settings` say.
pub(crate) fn eval_error(
    script: &str,
    site: CallSite<'_>,
    err: EvalAltResult,
    settings: &LimitSettings,
) -> PluginError {
    let mut calls: Vec<String> = match site {
        CallSite::TopLevel => Vec::new(),
        CallSite::Function(name) => vec![function_label(name)],
        CallSite::Rule { rule, part } => vec![format!("{part} of rule `{rule}`")],
    };
    let mut source = script.to_string();
    let mut err = err;
    loop {
        match err {
            EvalAltResult::ErrorInFunctionCall(name, fn_source, inner, _) => {
                let label = function_label(&name);
                if calls.last() != Some(&label) && !is_rule_closure(site, &name) {
                    calls.push(label);
                }
                if !fn_source.is_empty() {
                    source = fn_source;
                }
                err = *inner;
            }
            EvalAltResult::ErrorInModule(module, inner, _) => {
                calls.push(format!("module `{module}`"));
                source = module;
                err = *inner;
            }
            other => {
                err = other;
                break;
            }
        }
    }

    let position = err.position();
    let mut at = location(&source, position);
    if let Some(innermost) = calls.last() {
        at.push_str(" in ");
        at.push_str(innermost);
        if calls.len() > 1 {
            let callers: Vec<&str> = calls[..calls.len() - 1]
                .iter()
                .rev()
                .map(String::as_str)
                .collect();
            at.push_str(&format!(" (called from {})", callers.join(" <- ")));
        }
    }
    classify(err, at, settings)
}

fn classify(err: EvalAltResult, at: String, settings: &LimitSettings) -> PluginError {
    let limit = |limit: &str, what: String| PluginError::LimitExceeded {
        limit: limit.to_string(),
        detail: format!(
            "{what} at {at}; {}",
            settings.advice("RhaiConfig", limit, "make the script do less")
        ),
    };
    match err {
        EvalAltResult::ErrorTooManyOperations(_) => {
            limit("max_operations", "too many operations".into())
        }
        EvalAltResult::ErrorStackOverflow(_) => limit(
            "max_call_stack_depth",
            "function calls nested too deeply".into(),
        ),
        EvalAltResult::ErrorTooManyModules(_) => {
            limit("max_modules", "too many modules imported".into())
        }
        EvalAltResult::ErrorDataTooLarge(ref what, _) => {
            let name = if what.contains("string") {
                "max_string_size"
            } else if what.contains("array") {
                "max_array_size"
            } else if what.contains("map") {
                "max_map_size"
            } else {
                "max_data_size"
            };
            limit(name, format!("{what} too large"))
        }
        EvalAltResult::ErrorTerminated(ref token, _) => {
            let token = token.to_string();
            match token.as_str() {
                TIMEOUT => limit(TIMEOUT, "the script ran past its wall-clock timeout".into()),
                HOST_TIMEOUT => {
                    let own = settings
                        .setting("RhaiConfig", TIMEOUT)
                        .unwrap_or_else(|| "its own timeout".to_string());
                    PluginError::LimitExceeded {
                        limit: TIMEOUT.to_string(),
                        detail: format!(
                            "the script ran past its host's call timeout (an agent system's \
                             hop_timeout_ms, a manager's execute timeout), which is shorter \
                             than {own}, at {at}; raise the host's timeout or make the script \
                             do less"
                        ),
                    }
                }
                MAX_OPERATIONS => limit(MAX_OPERATIONS, "too many operations".into()),
                NATIVE_STACK => limit(
                    NATIVE_STACK,
                    "the script used up its native stack budget".into(),
                ),
                _ => limit(&token, "the script was terminated".into()),
            }
        }
        EvalAltResult::ErrorSystem(context, inner) => match inner.downcast::<PluginError>() {
            Ok(plugin_error) => *plugin_error,
            Err(other) => PluginError::Runtime {
                location: at,
                message: format!("{context}: {other}"),
            },
        },
        EvalAltResult::ErrorParsing(ref kind, _) => PluginError::Compile {
            location: at,
            message: kind.to_string(),
        },
        mut other => {
            other.clear_position();
            PluginError::Runtime {
                location: at,
                message: other.to_string(),
            }
        }
    }
}

/// `file:line:column`, or just `file` when Rhai has no position.
fn location(source: &str, position: Position) -> String {
    match (position.line(), position.position()) {
        (Some(line), Some(column)) => format!("{source}:{line}:{column}"),
        (Some(line), None) => format!("{source}:{line}"),
        _ => source.to_string(),
    }
}

fn function_label(name: &str) -> String {
    if name.starts_with("anon$") {
        "closure".to_string()
    } else {
        format!("fn {name}")
    }
}

/// The rule call site already names the closure being run.
fn is_rule_closure(site: CallSite<'_>, name: &str) -> bool {
    matches!(site, CallSite::Rule { .. }) && name.starts_with("anon$")
}

/// The result of a host function called by a script.
pub(crate) type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

/// Builds the Rhai error a host function returns to stop the script with `message`
/// (catchable with `try`/`catch`).
pub(crate) fn script_error(message: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        message.into().into(),
        Position::NONE,
    ))
}

/// Wraps a `PluginError` so it crosses Rhai unchanged and cannot be caught by the script.
pub(crate) fn passthrough_error(context: &str, err: PluginError) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorSystem(
        context.to_string(),
        Box::new(err),
    ))
}
