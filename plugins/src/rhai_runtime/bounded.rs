//! Which calls of a script are *bounded*: their cost is limited by the script's size and the
//! sandbox's size limits alone, so the host may run them on the calling thread (an async
//! worker) instead of handing them to the blocking side of the runtime.
//!
//! Decided once per compiled version, from the `AST`, for the functions the host actually
//! calls (the roots): the entry function, the tool's `execute`, every rule's `condition` and
//! `action` closure, or (functions form) the one function an input names. Top-level
//! statements never run during a call, so they are not looked at: the seed's `fn evaluate` in a
//! rules script, with its `for` loop, does not make the rules unbounded, because the host
//! never calls it.
//!
//! A root is bounded when it, and every closure it creates, has:
//!
//! - no `while`, `loop`, `do` or `for` statement, and no `import`;
//! - no call to `call_plugin` (it blocks until another actor answers, which must never happen
//!   on an async worker), `eval` or `sleep`;
//! - no possible recursion: no call to a function the script defines (by name, with `!`, or as
//!   a method), no function used as a value (`process_order` without parentheses), no dynamic
//!   call (`call(..)`, `.call(..)`, `Fn(..)`, `curry`), no `this`, no module access
//!   (`name::item`), no custom syntax;
//! - no read of a top-level variable holding a function pointer (the `rules` array does), and
//!   no function pointer captured from the top level by a root closure;
//! - closures only as the direct argument of an array or map method that calls them a bounded
//!   number of times and keeps no reference to them (`map`, `filter`, `reduce`, `sort`, ...:
//!   [`CLOSURE_METHODS`]). Each such call is bounded by `max_array_size` / `max_map_size`;
//! - no such method called inside such a closure: nested ones multiply their bounds
//!   (`a.map(|x| b.map(|y| ...))` over two 10 000-element arrays is 10^8 calls).
//!
//! Why that is enough: with these rules no function pointer ever becomes data (inputs are JSON,
//! `state` holds JSON, the top-level values read hold no function pointer, and a closure is
//! only ever handed to a method that calls it), so the only script code a bounded call can
//! reach is its own body and the closures written inside it, each of which is loop-free, calls
//! no script function and creates no closure: nothing can run twice except a closure under one
//! array or map method over a size-limited collection. `max_operations` and `timeout` still
//! apply to every call.
//!
//! Anything the analysis does not understand makes the root unbounded: the conservative answer
//! costs a hand-off, the other one could stall a worker.

use std::collections::{HashMap, HashSet};

use rhai::{ASTNode, Dynamic, Expr, FnCallExpr, FnPtr, Position, Stmt, AST};

use super::form::ScriptForm;

/// Array and map methods that call their closure argument a bounded number of times (per
/// element, or per comparison for a sort) and do not return or keep it.
pub(crate) const CLOSURE_METHODS: &[&str] = &[
    "all",
    "dedup",
    "drain",
    "filter",
    "find",
    "find_map",
    "for_each",
    "index_of",
    "map",
    "order",
    "order_by",
    "reduce",
    "reduce_rev",
    "retain",
    "some",
    "sort",
    "sort_by",
];

/// Nesting depth up to which a top-level value is searched for function pointers; deeper
/// values count as holding one.
const MAX_VALUE_DEPTH: usize = 64;

/// Why a call is not bounded, or `Ok` when it is.
pub(crate) type Verdict = Result<(), String>;

/// The classification of one compiled script.
#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    /// The calls `execute` makes for the script's form (every function, for the functions
    /// form).
    pub(crate) form: Verdict,
    /// Each named function, when called by name by the host.
    pub(crate) functions: HashMap<String, Verdict>,
}

impl Bounds {
    /// Classifies the roots of `form` in `ast`; `globals` are the top-level variables functions
    /// can read.
    pub(crate) fn classify(
        ast: &AST,
        globals: &HashMap<String, Dynamic>,
        form: &ScriptForm,
    ) -> Self {
        let mut analyzer = Analyzer::new(ast, globals);
        let mut names: Vec<String> = analyzer.named_functions.iter().cloned().collect();
        names.sort();
        let functions: HashMap<String, Verdict> = names
            .iter()
            .map(|name| (name.clone(), analyzer.reachable_from([name.clone()])))
            .collect();
        let form = match form {
            ScriptForm::Entry { function, .. } => analyzer.root(function),
            ScriptForm::Tool { execute, .. } => analyzer.root(execute),
            ScriptForm::Rules(rules) => rules
                .closures()
                .try_for_each(|closure| analyzer.root(closure)),
            ScriptForm::Functions => names.iter().try_for_each(|name| functions[name].clone()),
        };
        Self { form, functions }
    }

    /// Whether a call of `name` by name is bounded (false for a function the script does not
    /// define).
    pub(crate) fn function(&self, name: &str) -> bool {
        matches!(self.functions.get(name), Some(Ok(())))
    }
}

struct Analyzer<'a> {
    ast: &'a AST,
    /// Names of the functions the script defines (closures excluded).
    named_functions: HashSet<String>,
    /// Top-level variables whose value holds a function pointer.
    fn_valued_globals: HashSet<String>,
    /// Per function name: the closures its body creates, or why it is not bounded.
    bodies: HashMap<String, Result<Vec<String>, String>>,
}

impl<'a> Analyzer<'a> {
    fn new(ast: &'a AST, globals: &HashMap<String, Dynamic>) -> Self {
        Self {
            ast,
            named_functions: ast
                .iter_functions()
                .filter(|f| !is_closure_name(f.name))
                .map(|f| f.name.to_string())
                .collect(),
            fn_valued_globals: globals
                .iter()
                .filter(|(_, value)| holds_fn_ptr(value, 0))
                .map(|(name, _)| name.clone())
                .collect(),
            bodies: HashMap::new(),
        }
    }

    /// A function pointer the host calls: its curried values (a closure's captures) must not
    /// hold functions, and its target must be bounded.
    fn root(&mut self, function: &FnPtr) -> Verdict {
        if function.curry().iter().any(|value| holds_fn_ptr(value, 0)) {
            return Err(format!(
                "{} captures a function pointer",
                describe(function.fn_name())
            ));
        }
        self.reachable_from([function.fn_name().to_string()])
    }

    /// Checks `roots` and the closures they create, which must create none themselves.
    fn reachable_from(&mut self, roots: impl IntoIterator<Item = String>) -> Verdict {
        let mut seen = HashSet::new();
        let mut pending: Vec<(String, bool)> = roots.into_iter().map(|r| (r, true)).collect();
        while let Some((name, is_root)) = pending.pop() {
            // Two closures with the same text share a name: one may be a root, the other not.
            if !seen.insert((name.clone(), is_root)) {
                continue;
            }
            let closures = self.body(&name)?;
            if !is_root && !closures.is_empty() {
                return Err(format!(
                    "{} passes a closure to an array or map method inside a closure (nested, \
                     their costs multiply)",
                    describe(&name)
                ));
            }
            pending.extend(closures.into_iter().map(|c| (c, false)));
        }
        Ok(())
    }

    /// The closures the body of `name` (every overload) creates, or why it is not bounded.
    fn body(&mut self, name: &str) -> Result<Vec<String>, String> {
        if let Some(known) = self.bodies.get(name) {
            return known.clone();
        }
        let verdict = self.check_body(name);
        self.bodies.insert(name.to_string(), verdict.clone());
        verdict
    }

    fn check_body(&self, name: &str) -> Result<Vec<String>, String> {
        let only = function_ast(self.ast, name, None);
        if only.iter_functions().next().is_none() {
            return Err(format!("the script defines no function `{name}`"));
        }
        let mut closures = Vec::new();
        let mut problem = None;
        only.walk(
            &mut |path: &[ASTNode]| match self.check_node(path, &mut closures) {
                Ok(()) => true,
                Err((what, position)) => {
                    problem = Some(match position.line() {
                        Some(line) => format!("{} has {what} (line {line})", describe(name)),
                        None => format!("{} has {what}", describe(name)),
                    });
                    false
                }
            },
        );
        match problem {
            Some(problem) => Err(problem),
            None => Ok(closures),
        }
    }

    /// Checks the last node of `path`, recording the closures it creates.
    fn check_node(
        &self,
        path: &[ASTNode],
        closures: &mut Vec<String>,
    ) -> Result<(), (String, Position)> {
        let Some(node) = path.last() else {
            return Ok(());
        };
        let fail = |what: &str| Err((what.to_string(), node.position()));
        match node {
            ASTNode::Stmt(stmt) => match stmt {
                Stmt::While(..) | Stmt::Do(..) => fail("a `while`/`loop`/`do` loop"),
                Stmt::For(..) => fail("a `for` loop"),
                Stmt::Import(..) => fail("an `import`"),
                Stmt::FnCall(call, pos) => self.check_call(call, false).map_err(|w| (w, *pos)),
                Stmt::Noop(..)
                | Stmt::If(..)
                | Stmt::Switch(..)
                | Stmt::Var(..)
                | Stmt::Assignment(..)
                | Stmt::Block(..)
                | Stmt::TryCatch(..)
                | Stmt::Expr(..)
                | Stmt::BreakLoop(..)
                | Stmt::Return(..)
                | Stmt::Export(..)
                | Stmt::Share(..) => Ok(()),
                // A statement this analysis does not know (a newer Rhai).
                _ => fail("an unknown kind of statement"),
            },
            ASTNode::Expr(expr) => match expr {
                Expr::FnCall(call, pos) => self.check_call(call, false).map_err(|w| (w, *pos)),
                Expr::MethodCall(call, pos) => self.check_call(call, true).map_err(|w| (w, *pos)),
                Expr::Variable(var, short_index, pos) => {
                    let (index, name, namespace, _) = &**var;
                    if !namespace.is_empty() {
                        return Err((format!("a module variable `{namespace}::{name}`"), *pos));
                    }
                    // A local variable or parameter: the parser resolved it to a slot.
                    if index.is_some() || short_index.is_some() {
                        return Ok(());
                    }
                    if self.named_functions.contains(name.as_str()) {
                        return Err((format!("function `{name}` used as a value"), *pos));
                    }
                    if self.fn_valued_globals.contains(name.as_str()) {
                        return Err((
                            format!("a read of top-level `{name}`, which holds function pointers"),
                            *pos,
                        ));
                    }
                    Ok(())
                }
                Expr::ThisPtr(..) => fail("`this`"),
                Expr::Custom(..) => fail("custom syntax"),
                Expr::DynamicConstant(value, pos) => {
                    if !holds_fn_ptr(value, 0) {
                        return Ok(());
                    }
                    match closure_name(value) {
                        Some(closure) if passed_to_closure_method(path) => {
                            closures.push(closure);
                            Ok(())
                        }
                        _ => Err((
                            "a function pointer used other than as the closure argument of an \
                             array or map method (map, filter, reduce, ...)"
                                .to_string(),
                            *pos,
                        )),
                    }
                }
                Expr::BoolConstant(..)
                | Expr::IntegerConstant(..)
                | Expr::FloatConstant(..)
                | Expr::CharConstant(..)
                | Expr::StringConstant(..)
                | Expr::InterpolatedString(..)
                | Expr::Array(..)
                | Expr::Map(..)
                | Expr::Unit(..)
                | Expr::Property(..)
                | Expr::Stmt(..)
                | Expr::Dot(..)
                | Expr::Index(..)
                | Expr::And(..)
                | Expr::Or(..)
                | Expr::Coalesce(..) => Ok(()),
                _ => fail("an unknown kind of expression"),
            },
            _ => fail("an unknown kind of node"),
        }
    }

    fn check_call(&self, call: &FnCallExpr, method: bool) -> Result<(), String> {
        let name = call.name.as_str();
        if !call.namespace.is_empty() {
            return Err(format!(
                "a call to module function `{}::{name}`",
                call.namespace
            ));
        }
        if call.capture_parent_scope {
            return Err(format!("a `{name}!` call"));
        }
        match name {
            "call_plugin" => {
                Err("a `call_plugin` call (it waits for another plugin's actor)".to_string())
            }
            "eval" | "sleep" => Err(format!("a call to `{name}`")),
            "call" | "Fn" => Err(format!("a dynamic call (`{name}`)")),
            "curry" if !method && is_capture(call) => Ok(()),
            "curry" => Err("a dynamic call (`curry`)".to_string()),
            _ if self.named_functions.contains(name) => Err(format!(
                "a call to script function `{name}` (possible recursion)"
            )),
            _ => Ok(()),
        }
    }
}

/// An `AST` holding only the script's function `name` (every overload, or the one taking
/// `params` parameters), to walk one function's body.
pub(crate) fn function_ast(ast: &AST, name: &str, params: Option<usize>) -> AST {
    // Not `clone_functions_only_filtered`: in rhai 1.27 it ignores its filter when the target
    // module is empty, which it always is.
    let mut only = ast.clone_functions_only();
    only.retain_functions(|_, _, function, arity| {
        function == name && params.is_none_or(|params| params == arity)
    });
    only
}

/// Whether `name` is a closure's generated name (`anon$...`).
fn is_closure_name(name: &str) -> bool {
    name.starts_with("anon$")
}

fn describe(function: &str) -> String {
    if is_closure_name(function) {
        "a closure".to_string()
    } else {
        format!("fn {function}")
    }
}

/// The function name of a closure literal (an anonymous, uncurried function pointer).
fn closure_name(value: &Dynamic) -> Option<String> {
    let function = value.clone().try_cast::<FnPtr>()?;
    (function.is_anonymous() && !function.is_curried()).then(|| function.fn_name().to_string())
}

/// Whether `call` is the parser's capture of a closure's outer variables:
/// `curry(<closure literal>, captured, ...)`.
fn is_capture(call: &FnCallExpr) -> bool {
    call.namespace.is_empty()
        && call.name == "curry"
        && matches!(call.args.first(), Some(Expr::DynamicConstant(value, _)) if closure_name(value).is_some())
}

/// Whether the closure literal at the end of `path` is (possibly through its capture wrapper
/// and enclosing blocks) the direct argument of a call to one of [`CLOSURE_METHODS`].
fn passed_to_closure_method(path: &[ASTNode]) -> bool {
    let Some(mut at) = path.len().checked_sub(1) else {
        return false;
    };
    // `|x| x + y` capturing `y` is `{ share y; curry(<closure>, y) }`.
    if at >= 1 {
        if let (ASTNode::Expr(closure), Some(call)) = (&path[at], as_call(&path[at - 1])) {
            if is_capture(call) && std::ptr::eq(&call.args[0], *closure) {
                at -= 1;
            }
        }
    }
    // A block's value is its last statement's; an earlier one's is dropped.
    while at >= 1
        && matches!(
            path[at - 1],
            ASTNode::Stmt(Stmt::Expr(..)) | ASTNode::Expr(Expr::Stmt(..))
        )
    {
        at -= 1;
    }
    let Some(parent) = at.checked_sub(1).map(|p| &path[p]) else {
        return false;
    };
    let call = match parent {
        ASTNode::Expr(Expr::MethodCall(call, _)) => call,
        other => match as_call(other) {
            Some(call) => call,
            None => return false,
        },
    };
    call.namespace.is_empty() && CLOSURE_METHODS.contains(&call.name.as_str())
}

fn as_call<'n>(node: &'n ASTNode) -> Option<&'n FnCallExpr> {
    match node {
        ASTNode::Expr(Expr::FnCall(call, _)) | ASTNode::Stmt(Stmt::FnCall(call, _)) => Some(call),
        _ => None,
    }
}

/// Whether `value` is or contains a function pointer (arrays and maps are searched, shared
/// values read through).
fn holds_fn_ptr(value: &Dynamic, depth: usize) -> bool {
    if depth > MAX_VALUE_DEPTH || value.is_fnptr() {
        return true;
    }
    if let Ok(array) = value.as_array_ref() {
        return array.iter().any(|item| holds_fn_ptr(item, depth + 1));
    }
    if let Ok(map) = value.as_map_ref() {
        return map.values().any(|item| holds_fn_ptr(item, depth + 1));
    }
    false
}
