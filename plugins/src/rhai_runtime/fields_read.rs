//! Which fields of its message an entry function can see, when the script says so plainly.
//!
//! An agent's message crosses into Rhai on every hop, converted field by field into Rhai
//! values, and most agents read a few fields of a message that carries many (the W1 manager
//! reads `total` and `order_id` of five). When every use of the entry function's parameter is
//! a property access with a literal name (`msg.total`, `msg.items[0]`, `msg.note.len()`,
//! `msg.total = 1`), a map holding only those names is indistinguishable, to that function,
//! from the whole message: a field it never names can only be observed through the map as a
//! whole (its length, its keys, iteration, printing, comparison, passing it on), and each of
//! those uses the parameter some other way. So only the named fields are converted
//! ([`CompiledScript::run`](super::script::CompiledScript)).
//!
//! Anything else, or anything this analysis does not recognise, means the whole message:
//!
//! - the parameter used other than as the left side of a property access: passed to a function
//!   or a closure (a capture passes it to `curry`), returned, assigned, indexed
//!   (`msg["total"]`), interpolated, or given a method call (`msg.len()`, `msg.keys()`);
//! - calls that reach the caller's variables by name: `eval`, a `name!(..)` call, custom
//!   syntax.
//!
//! Limits still apply to what is converted: a field deeper than `max_json_depth` that the
//! function never names is never converted, so it no longer refuses the message.

use std::collections::BTreeSet;

use rhai::{ASTNode, Expr, FnPtr, Stmt, AST};

use super::bounded::function_ast;

/// The names of the fields the entry function `entry` can see, sorted; `None` when it may see
/// the whole message (see the module docs).
pub(crate) fn fields_read(ast: &AST, entry: &FnPtr) -> Option<Vec<String>> {
    if entry.is_curried() {
        return None;
    }
    let only = function_ast(ast, entry.fn_name(), Some(1));
    let mut definitions = only.iter_functions();
    let definition = definitions.next()?;
    if definitions.next().is_some() || definition.this_type.is_some() {
        return None;
    }
    let parameter = definition.params[0].to_string();
    let mut fields = BTreeSet::new();
    let mut plain = true;
    only.walk(&mut |path: &[ASTNode]| {
        plain = plain_use(path, &parameter, &mut fields);
        plain
    });
    plain.then(|| fields.into_iter().collect())
}

/// Checks the last node of `path`: `false` when it may let the function see the whole
/// message. A property access on `parameter` records the property's name in `fields`.
fn plain_use(path: &[ASTNode], parameter: &str, fields: &mut BTreeSet<String>) -> bool {
    let Some(node) = path.last() else {
        return true;
    };
    match node {
        ASTNode::Expr(Expr::Variable(var, ..)) if var.1.as_str() == parameter => {
            match property_of(path, node) {
                Some(field) => {
                    fields.insert(field.to_string());
                    true
                }
                None => false,
            }
        }
        ASTNode::Expr(Expr::FnCall(call, _) | Expr::MethodCall(call, _))
        | ASTNode::Stmt(Stmt::FnCall(call, _)) => {
            !call.capture_parent_scope && call.name.as_str() != "eval"
        }
        ASTNode::Expr(Expr::Custom(..)) => false,
        _ => true,
    }
}

/// The name of the property `variable` (the last node of `path`) is accessed by, when its
/// parent is `variable.name...`.
fn property_of<'a>(path: &'a [ASTNode], variable: &ASTNode) -> Option<&'a str> {
    let ASTNode::Expr(variable) = variable else {
        return None;
    };
    let parent = path.len().checked_sub(2).map(|at| &path[at])?;
    let ASTNode::Expr(Expr::Dot(access, ..)) = parent else {
        return None;
    };
    if !std::ptr::eq(&access.lhs, *variable) {
        return None;
    }
    // `msg.a` is `Dot(msg, a)`; `msg.a.b`, `msg.a[0]` and `msg.a.len()` are `Dot(msg, Dot(a,
    // ..))` or `Dot(msg, Index(a, ..))`: the first step names the field.
    let first = match &access.rhs {
        Expr::Dot(chain, ..) | Expr::Index(chain, ..) => &chain.lhs,
        other => other,
    };
    match first {
        Expr::Property(property, _) => Some(property.2.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::Engine;

    fn read(source: &str) -> Option<Vec<String>> {
        let engine = Engine::new();
        let ast = engine.compile(source).unwrap();
        fields_read(&ast, &FnPtr::new("run").unwrap())
    }

    fn names(names: &[&str]) -> Option<Vec<String>> {
        Some(names.iter().map(|name| name.to_string()).collect())
    }

    #[test]
    fn property_reads_and_writes_name_the_fields() {
        assert_eq!(
            read("fn run(msg) { if msg.total > 1.0 { msg.b } else { msg.a } }"),
            names(&["a", "b", "total"])
        );
        assert_eq!(
            read("fn run(msg) { msg.items[0] + msg.note.len() + msg.x.y }"),
            names(&["items", "note", "x"])
        );
        assert_eq!(
            read("fn run(msg) { msg.z = 1; msg.z += msg.a; #{ z: msg.z } }"),
            names(&["a", "z"])
        );
        assert_eq!(read("fn run(msg) { 42 }"), names(&[]));
        // Another variable's whole use says nothing about the message.
        assert_eq!(
            read("fn run(msg) { let m = #{ a: msg.a }; m.len() }"),
            names(&["a"])
        );
    }

    #[test]
    fn any_other_use_of_the_message_means_all_of_it() {
        for source in [
            "fn run(msg) { msg }",
            "fn run(msg) { msg.len() }",
            "fn run(msg) { msg.keys().len() + msg.a }",
            "fn run(msg) { msg[\"a\"] }",
            "fn run(msg) { let m = msg; m.a }",
            "fn run(msg) { `${msg}` }",
            "fn run(msg) { helper(msg) } fn helper(m) { m.len() }",
            "fn run(msg) { msg.a = 1; msg }",
            "fn run(msg) { [1].map(|x| msg.len() + x) }",
            "fn run(msg) { eval(\"msg.len()\") }",
            "fn run(msg) { msg.a + helper!() } fn helper() { msg.len() }",
            "fn run(msg) { msg == #{} }",
            "fn run(msg) { for k in msg.keys() { } 1 }",
        ] {
            assert_eq!(read(source), None, "{source}");
        }
    }

    #[test]
    fn only_a_plain_one_parameter_function_is_analysed() {
        // Overloads, another arity, or no such function: the whole message.
        assert_eq!(read("fn run(a, b) { a.x }"), None);
        assert_eq!(read("fn other(msg) { msg.a }"), None);
        let engine = Engine::new();
        let ast = engine.compile("fn run(msg) { msg.a }").unwrap();
        let mut curried = FnPtr::new("run").unwrap();
        curried.add_curry(1.into());
        assert_eq!(fields_read(&ast, &curried), None);
    }
}
