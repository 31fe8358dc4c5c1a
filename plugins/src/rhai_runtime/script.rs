//! `CompiledScript`: one version of one script, compiled once, its top-level statements run
//! once, and everything a call needs cached.
//!
//! Compiling builds the sandboxed engine, parses the source into an `AST`, runs the top-level
//! statements a single time (under the same limits as calls), captures the top-level
//! variables, and decides the script's form ([`super::form`]). Calls then go straight to the
//! cached function pointer, tool or rules with `eval_ast(false)` semantics: top-level
//! statements never run again, and nothing is re-parsed or cloned per call. A
//! `CompiledScript` is immutable and `Send + Sync`, so it is shared behind an `Arc` by the
//! plugin, the blocking closure that runs a call, a `RuleEngine`, or a tool registry.
//!
//! Compiling also classifies the calls the host makes as bounded or not ([`super::bounded`]),
//! which decides where `execute` runs them ([`Placement`]).
//!
//! The input conventions, by form:
//!
//! | form | input | output |
//! | --- | --- | --- |
//! | entry | any JSON, passed as the function's argument | the function's result as JSON |
//! | tool | the JSON arguments object, validated against the tool's schema | `execute`'s result |
//! | rules | the message: JSON (a string value is the usual case) or, if the input is not valid JSON, the raw text | `{"rule": NAME, ...action's map}` |
//! | functions | `{"function": NAME, "args": [..]}` or `"args": {PARAM: ..}` (by parameter name) | the function's result |

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, FnPtr, FuncArgs, Scope, AST};
use serde_json::Value;

use super::bounded::Bounds;
use super::errors::{compile_error, eval_error, CallSite};
use super::execution_guard::ExecutionGuard;
use super::fields_read::fields_read;
use super::form::{ScriptForm, ScriptFunction};
use super::host_link::HostLink;
use super::json::{
    check_boundary_value, dynamic_from_fields, dynamic_from_json_text, dynamic_from_value,
    dynamic_to_json_text, value_from_dynamic_within, LimitBreach,
};
use super::schema::validate_arguments;
use super::{sandbox, RhaiConfig};
use crate::{PluginContext, PluginError, PluginResult};

thread_local! {
    /// The scope script calls on this thread run in, kept between calls (see
    /// `call_function_unguarded`).
    static CALL_SCOPE: std::cell::Cell<Option<Scope<'static>>> = const { std::cell::Cell::new(None) };
}

/// The top-level constant a script may set to choose its plugin id.
pub(crate) const PLUGIN_ID_CONSTANT: &str = "PLUGIN_ID";

/// An input to a script call: JSON text (the `AgentPlugin` boundary) or a parsed value, which
/// every script form only reads.
pub(crate) enum ScriptInput<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl ScriptInput<'_> {
    fn to_dynamic(&self, script: &CompiledScript) -> PluginResult<Dynamic> {
        match self {
            ScriptInput::Text(text) => dynamic_from_json_text(text).map_err(|e| {
                PluginError::InvalidInput(format!(
                    "the input is not valid JSON ({e}); send a JSON document"
                ))
            }),
            ScriptInput::Json(value) => script.rhai_value(value),
        }
    }

    /// The entry function's argument: only the fields of the message it can see, when the
    /// script says which ([`super::fields_read`]), whether the message came as text or as a
    /// value.
    fn to_entry_argument(&self, script: &CompiledScript) -> PluginResult<Dynamic> {
        let Some(fields) = script.entry_fields.as_deref() else {
            return self.to_dynamic(script);
        };
        match &*self.as_value()? {
            Value::Object(message) => script.rhai_fields(message, fields),
            other => script.rhai_value(other),
        }
    }

    /// The input as JSON, parsed if it came as text and borrowed otherwise, so a lent message
    /// is never copied.
    fn as_value(&self) -> PluginResult<Cow<'_, Value>> {
        match self {
            ScriptInput::Text(text) => serde_json::from_str(text).map(Cow::Owned).map_err(|e| {
                PluginError::InvalidInput(format!(
                    "the input is not valid JSON ({e}); send a JSON document"
                ))
            }),
            ScriptInput::Json(value) => Ok(Cow::Borrowed(*value)),
        }
    }

    /// A rules message: JSON when it parses, the raw text otherwise.
    fn to_message(&self, script: &CompiledScript) -> PluginResult<Dynamic> {
        match self {
            ScriptInput::Text(text) => Ok(
                dynamic_from_json_text(text).unwrap_or_else(|_| Dynamic::from(text.to_string()))
            ),
            ScriptInput::Json(value) => script.rhai_value(value),
        }
    }
}

/// Where `AgentPlugin::execute` runs a call of a script, decided when it is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// On the calling thread: every call `execute` makes is bounded.
    Inline,
    /// Functions form where only some functions are bounded: on the calling thread when the
    /// input names one of them, through `run_blocking` otherwise.
    PerFunction,
    /// Through `run_blocking`: a call may run long (or `inline_bounded` is off).
    Blocking,
}

/// One compiled version of a script (see the module docs).
pub(crate) struct CompiledScript {
    /// The script's file path or id, as used in error locations.
    pub(crate) name: String,
    pub(crate) engine: Engine,
    pub(crate) ast: AST,
    pub(crate) form: ScriptForm,
    pub(crate) link: Arc<HostLink>,
    pub(crate) config: RhaiConfig,
    /// Content hash of the source (FNV-1a 64, hex).
    pub(crate) version: String,
    /// The id the script chose with `const PLUGIN_ID = "..."`, if any.
    pub(crate) declared_id: Option<String>,
    pub(crate) functions: Vec<ScriptFunction>,
    /// Which of the host's calls are bounded.
    pub(crate) bounds: Bounds,
    pub(crate) placement: Placement,
    /// For the entry form: the only fields of a JSON object input the entry function can see,
    /// sorted, when every use of its parameter names one; `None` converts the whole input.
    pub(crate) entry_fields: Option<Box<[String]>>,
    /// The host's call timeout in nanoseconds ([`PluginContext::call_timeout`], set on attach;
    /// `u64::MAX` for none): calls stop at it when it is shorter than `config.timeout`.
    host_timeout_nanos: AtomicU64,
}

impl CompiledScript {
    /// Compiles `source` and runs its top-level statements once. `name` is the file path or id
    /// shown in errors; `plugin_id` tags its `print` output until a host names it.
    pub(crate) fn compile(
        name: &str,
        plugin_id: &str,
        source: &str,
        config: RhaiConfig,
    ) -> PluginResult<Self> {
        let link = Arc::new(HostLink::new(plugin_id));
        let engine = sandbox::build_engine(&config, &link)?;
        let mut ast = engine
            .compile(source)
            .map_err(|e| compile_error(name, &e))?;
        ast.set_source(name);

        let mut scope = Scope::new();
        let result = {
            let _limits = ExecutionGuard::enter(config.timeout, config.max_operations);
            engine
                .eval_ast_with_scope::<Dynamic>(&mut scope, &ast)
                .map_err(|e| eval_error(name, CallSite::TopLevel, *e, &config.limit_settings))?
        };
        let globals: HashMap<String, Dynamic> = scope
            .iter()
            .filter(|(var, ..)| *var != "state")
            .map(|(var, _, value)| (var.to_string(), value))
            .collect();
        let declared_id = match globals.get(PLUGIN_ID_CONSTANT) {
            None => None,
            Some(id) => Some(
                id.clone()
                    .into_string()
                    .ok()
                    .filter(|id| !id.trim().is_empty())
                    .ok_or_else(|| {
                        PluginError::Config(format!(
                            "script {name}: {PLUGIN_ID_CONSTANT} must be a non-empty string"
                        ))
                    })?,
            ),
        };
        let functions: Vec<ScriptFunction> = ast
            .iter_functions()
            .filter(|f| !f.name.starts_with("anon$"))
            .map(|f| ScriptFunction {
                name: f.name.to_string(),
                params: f.params.iter().map(|p| p.to_string()).collect(),
            })
            .collect();
        let mut form = ScriptForm::detect(name, result, &globals, &functions, &config)?;
        if let ScriptForm::Rules(rules) = &mut form {
            rules.fold_constants(&ast);
        }
        let bounds = Bounds::classify(&ast, &globals, &form);
        let entry_fields = match &form {
            ScriptForm::Entry {
                function,
                takes_input: true,
            } => fields_read(&ast, function).map(Vec::into_boxed_slice),
            _ => None,
        };
        let placement = if !config.inline_bounded {
            Placement::Blocking
        } else if bounds.form.is_ok() {
            Placement::Inline
        } else if matches!(form, ScriptForm::Functions)
            && bounds.functions.values().any(Result::is_ok)
        {
            Placement::PerFunction
        } else {
            Placement::Blocking
        };
        link.set_globals(globals);
        let id = declared_id.as_deref().unwrap_or(plugin_id);
        link.set_plugin_id(id);
        if let ScriptForm::Rules(rules) = &form {
            rules.register_metrics(id);
        }
        Ok(Self {
            name: name.to_string(),
            engine,
            ast,
            form,
            link,
            config,
            version: content_hash(source),
            declared_id,
            functions,
            bounds,
            placement,
            entry_fields,
            host_timeout_nanos: AtomicU64::new(u64::MAX),
        })
    }

    /// Connects the script to its host (state store, plugin caller) under `plugin_id`.
    pub(crate) fn attach(&self, plugin_id: &str, context: PluginContext) {
        let host_timeout = context.call_timeout().map_or(u64::MAX, |t| {
            u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
        });
        self.host_timeout_nanos
            .store(host_timeout, Ordering::Relaxed);
        self.link.set_plugin_id(plugin_id);
        self.link.attach(context);
        if let ScriptForm::Rules(rules) = &self.form {
            rules.register_metrics(plugin_id);
        }
    }

    pub(crate) fn detach(&self) {
        self.host_timeout_nanos.store(u64::MAX, Ordering::Relaxed);
        self.link.detach();
    }

    /// The limits of one call: its own timeout, bounded by the host's call timeout.
    fn enter_call(&self) -> ExecutionGuard {
        let host = match self.host_timeout_nanos.load(Ordering::Relaxed) {
            u64::MAX => None,
            nanos => Some(Duration::from_nanos(nanos)),
        };
        ExecutionGuard::enter_bounded(self.config.timeout, host, self.config.max_operations)
    }

    /// Runs one input through the script's form (see the module docs); the output is checked
    /// against the limits.
    pub(crate) fn execute(&self, input: ScriptInput<'_>) -> PluginResult<Dynamic> {
        let output = self.run(input)?;
        self.check_output(&output)?;
        Ok(output)
    }

    /// [`CompiledScript::execute`] without the output check: the caller checks it.
    fn run(&self, input: ScriptInput<'_>) -> PluginResult<Dynamic> {
        let _limits = self.enter_call();
        let output = match &self.form {
            ScriptForm::Entry {
                function,
                takes_input,
            } => {
                // An array, not a `Vec`: one allocation less per call.
                let site = CallSite::Function(function.fn_name());
                if *takes_input {
                    self.call_fn_ptr(function, [input.to_entry_argument(self)?], site)?
                } else {
                    self.call_fn_ptr(function, [] as [Dynamic; 0], site)?
                }
            }
            ScriptForm::Tool {
                definition,
                execute,
            } => {
                let args = input.as_value()?;
                validate_arguments(&definition.name, &definition.parameters, &args)?;
                self.call_fn_ptr(
                    execute,
                    vec![self.rhai_value(&args)?],
                    CallSite::Function(execute.fn_name()),
                )?
            }
            ScriptForm::Rules(rules) => {
                let message = input.to_message(self)?;
                rules.output(rules.evaluate(self, &message)?)
            }
            ScriptForm::Functions => {
                let call = input.as_value()?;
                let (function, args) = self.function_call(&call)?;
                self.call_function_unguarded(function, args)?
            }
        };
        Ok(output)
    }

    pub(crate) fn execute_text(&self, input: &str) -> PluginResult<String> {
        dynamic_to_json_text(&self.execute(ScriptInput::Text(input))?)
    }

    pub(crate) fn execute_value(&self, input: &Value) -> PluginResult<Value> {
        self.json_output(&self.run(ScriptInput::Json(input))?)
    }

    /// A result of the script as JSON, measured against the limits in the same walk.
    pub(crate) fn json_output(&self, output: &Dynamic) -> PluginResult<Value> {
        value_from_dynamic_within(output, &self.config, || self.output_name())
    }

    /// Runs one parsed input, returning JSON text.
    pub(crate) fn execute_value_to_text(&self, input: &Value) -> PluginResult<String> {
        dynamic_to_json_text(&self.execute(ScriptInput::Json(input))?)
    }

    /// Whether a call with `input` may run on the calling thread; for [`Placement::PerFunction`]
    /// that depends on the function the input names.
    pub(crate) fn runs_inline_for(&self, input: &Value) -> bool {
        match self.placement {
            Placement::Inline => true,
            Placement::Blocking => false,
            Placement::PerFunction => input
                .get("function")
                .and_then(Value::as_str)
                .is_some_and(|function| self.bounds.function(function)),
        }
    }

    /// Calls a script function by name with JSON arguments, whatever the script's form.
    pub(crate) fn call_function(&self, function: &str, args: Vec<Value>) -> PluginResult<Value> {
        let _limits = self.enter_call();
        self.find_function(function, args.len())?;
        let args = args
            .iter()
            .map(|arg| self.rhai_value(arg))
            .collect::<PluginResult<Vec<_>>>()?;
        self.json_output(&self.call_function_unguarded(function, args)?)
    }

    fn call_function_unguarded(
        &self,
        function: &str,
        args: impl FuncArgs,
    ) -> PluginResult<Dynamic> {
        let options = CallFnOptions::new().eval_ast(false);
        // The engine pushes the arguments into the scope and rewinds it after the call, so a
        // scope kept per thread comes back empty with its buffers: a fresh one allocated two of
        // them per call. A nested call on the same thread finds none kept and makes its own.
        let mut scope = CALL_SCOPE.take().unwrap_or_default();
        let result = self
            .engine
            .call_fn_with_options::<Dynamic>(options, &mut scope, &self.ast, function, args)
            .map_err(|e| {
                eval_error(
                    &self.name,
                    CallSite::Function(function),
                    *e,
                    &self.config.limit_settings,
                )
            });
        scope.clear();
        CALL_SCOPE.set(Some(scope));
        result
    }

    /// Calls a function pointer (entry function, tool `execute`, rule closure). Named,
    /// uncurried pointers go through the by-name path, which the engine resolves fastest.
    pub(crate) fn call_fn_ptr(
        &self,
        function: &FnPtr,
        args: impl FuncArgs,
        site: CallSite<'_>,
    ) -> PluginResult<Dynamic> {
        if !function.is_anonymous() && !function.is_curried() {
            return self.call_function_unguarded(function.fn_name(), args);
        }
        function
            .call::<Dynamic>(&self.engine, &self.ast, args)
            .or_else(|err| match *err {
                EvalAltResult::Exit(value, _) => Ok(value),
                _ => Err(err),
            })
            .map_err(|e| eval_error(&self.name, site, *e, &self.config.limit_settings))
    }

    /// Reads `{"function": NAME, "args": [...] | {...}}`.
    fn function_call<'a>(&self, call: &'a Value) -> PluginResult<(&'a str, Vec<Dynamic>)> {
        let usage = || {
            let available: Vec<String> = self
                .functions
                .iter()
                .map(ScriptFunction::signature)
                .collect();
            format!(
                "send {{\"function\": NAME, \"args\": [ARG, ...]}} (or \"args\" as an object keyed by \
                 parameter name); functions of {}: {}",
                self.name,
                available.join(", ")
            )
        };
        let Value::Object(call) = call else {
            return Err(PluginError::InvalidInput(format!(
                "the input is not an object; {}",
                usage()
            )));
        };
        let Some(Value::String(name)) = call.get("function") else {
            return Err(PluginError::InvalidInput(format!(
                "the input has no string \"function\"; {}",
                usage()
            )));
        };
        let args: Vec<&Value> = match call.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(args)) => args.iter().collect(),
            Some(Value::Object(named)) => {
                let function = self
                    .functions
                    .iter()
                    .find(|f| f.name == *name && f.params.len() == named.len());
                let Some(function) = function else {
                    return Err(PluginError::InvalidInput(format!(
                        "no function `{name}` takes {} named arguments; {}",
                        named.len(),
                        usage()
                    )));
                };
                let mut ordered = Vec::with_capacity(function.params.len());
                for param in &function.params {
                    let value = named.get(param).ok_or_else(|| {
                        PluginError::InvalidInput(format!(
                            "missing argument `{param}` for {}; {}",
                            function.signature(),
                            usage()
                        ))
                    })?;
                    ordered.push(value);
                }
                ordered
            }
            Some(single) => vec![single],
        };
        self.find_function(name, args.len())?;
        let args = args
            .into_iter()
            .map(|arg| self.rhai_value(arg))
            .collect::<PluginResult<_>>()?;
        Ok((name, args))
    }

    fn find_function(&self, name: &str, arity: usize) -> PluginResult<&ScriptFunction> {
        self.functions
            .iter()
            .find(|f| f.name == name && f.params.len() == arity)
            .ok_or_else(|| {
                let available: Vec<String> = self
                    .functions
                    .iter()
                    .map(ScriptFunction::signature)
                    .collect();
                PluginError::InvalidInput(format!(
                    "{} has no function `{name}` taking {arity} argument(s); it defines: {}",
                    self.name,
                    available.join(", ")
                ))
            })
    }

    /// A JSON value going into the script as a Rhai value; refused if it nests deeper than
    /// `max_json_depth`, like every value coming out.
    pub(crate) fn rhai_value(&self, value: &Value) -> PluginResult<Dynamic> {
        dynamic_from_value(value, self.config.max_json_depth).map_err(|b| self.input_refused(b))
    }

    /// The `fields` of a JSON object input as a Rhai map, refused like
    /// [`rhai_value`](Self::rhai_value) (see [`super::fields_read`]).
    fn rhai_fields(
        &self,
        message: &serde_json::Map<String, Value>,
        fields: &[String],
    ) -> PluginResult<Dynamic> {
        dynamic_from_fields(message, fields, self.config.max_json_depth)
            .map_err(|b| self.input_refused(b))
    }

    fn input_refused(&self, breach: LimitBreach) -> PluginError {
        breach.into_error(
            &format!("the input of {}", self.name),
            &self.config.limit_settings,
        )
    }

    fn check_output(&self, output: &Dynamic) -> PluginResult<()> {
        check_boundary_value(output, &self.config)
            .map_err(|breach| breach.into_error(&self.output_name(), &self.config.limit_settings))
    }

    /// What a limit error about the script's output calls it.
    fn output_name(&self) -> String {
        format!("the result of {}", self.name)
    }
}

/// A script's version: its source's [`content_hash`](crate::content_hash), in hex, so a
/// version names the same source everywhere.
fn content_hash(source: &str) -> String {
    format!("{:016x}", crate::content_hash(source.as_bytes()))
}
