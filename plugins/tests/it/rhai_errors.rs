//! Errors say where: file, line, column, and function; broken scripts never panic.

use std::path::PathBuf;

use bilayer_plugins::rhai_runtime::RhaiPlugin;
use bilayer_plugins::PluginError;
use serde_json::json;

#[test]
fn a_syntax_error_reports_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("bilayer-rhai-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.rhai");
    std::fs::write(
        &path,
        "fn process(order) {\n    let total = order.quantity *;\n}\nprocess",
    )
    .unwrap();

    let err = RhaiPlugin::from_file(&path).unwrap_err();
    let PluginError::Compile { location, message } = &err else {
        panic!("expected Compile, got {err:?}")
    };
    assert_eq!(location, &format!("{}:2:33", path.display()));
    assert!(!message.is_empty());
    assert!(err.to_string().contains("broken.rhai:2:33"), "{err}");
}

#[test]
fn a_runtime_error_reports_position_and_function() {
    let source = "fn helper(x) {\n    x.missing_method()\n}\nfn process(order) {\n    helper(order)\n}\nprocess";
    let plugin = RhaiPlugin::from_source("faulty", source).unwrap();
    let err = plugin.execute_sync(r#"{"a": 1}"#).unwrap_err();
    let PluginError::Runtime { location, message } = &err else {
        panic!("expected Runtime, got {err:?}")
    };
    assert!(
        location.starts_with("faulty:2:7 in fn helper"),
        "{location}"
    );
    assert!(location.contains("called from fn process"), "{location}");
    assert!(message.contains("missing_method"), "{message}");
}

#[test]
fn a_thrown_error_reports_where_it_was_thrown() {
    let plugin =
        RhaiPlugin::from_source("thrower", "fn run(x) {\n  throw \"bad order\";\n}\nrun").unwrap();
    let err = plugin.execute_sync("{}").unwrap_err();
    let PluginError::Runtime { location, message } = &err else {
        panic!("expected Runtime, got {err:?}")
    };
    assert_eq!(location, "thrower:2:3 in fn run");
    assert!(message.contains("bad order"), "{message}");
}

#[test]
fn an_error_in_a_rule_closure_names_the_rule() {
    let source = r#"let rules = [#{ name: "crashy", priority: "high",
        condition: |m| m.no_such_fn(),
        action: |m| 1 }];"#;
    let plugin = RhaiPlugin::from_source("rules", source).unwrap();
    let err = plugin.execute_sync("\"x\"").unwrap_err();
    let PluginError::Runtime { location, .. } = &err else {
        panic!("expected Runtime, got {err:?}")
    };
    assert!(location.contains("rules:2:26"), "{location}");
    assert!(
        location.contains("condition of rule `crashy`"),
        "{location}"
    );
}

#[test]
fn an_error_in_top_level_statements_is_reported_at_load() {
    let err =
        RhaiPlugin::from_source("top", "let x = 1;\nlet y = x.nope();\nfn f() { 1 }").unwrap_err();
    let PluginError::Runtime { location, .. } = &err else {
        panic!("expected Runtime, got {err:?}")
    };
    assert_eq!(location, "top:2:11");
}

#[test]
fn invalid_json_input_is_an_invalid_input_error() {
    let plugin = RhaiPlugin::from_source("entry", "fn run(x) { x }\nrun").unwrap();
    let err = plugin.execute_sync("{not json").unwrap_err();
    assert!(
        matches!(&err, PluginError::InvalidInput(m) if m.contains("not valid JSON")),
        "{err:?}"
    );
}

#[test]
fn scripts_that_expose_nothing_are_refused_with_a_hint() {
    let err = RhaiPlugin::from_source("empty", "let x = 1;").unwrap_err();
    assert!(
        matches!(&err, PluginError::Config(m) if m.contains("entry function")),
        "{err:?}"
    );
    let err = RhaiPlugin::from_source("bad_entry", "fn a(x, y) { x }\na").unwrap_err();
    assert!(
        matches!(&err, PluginError::Config(m) if m.contains("one parameter")),
        "{err:?}"
    );
    let err = RhaiPlugin::from_source("bad_tool", "#{ tool: 5, execute: |a| a }").unwrap_err();
    assert!(
        matches!(&err, PluginError::Config(m) if m.contains("tool")),
        "{err:?}"
    );
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let err = RhaiPlugin::from_file("/no/such/dir/script.rhai").unwrap_err();
    assert!(
        matches!(&err, PluginError::Io(m) if m.contains("/no/such/dir/script.rhai")),
        "{err:?}"
    );
}

#[test]
fn broken_scripts_never_panic() {
    let garbage = [
        "",
        "fn",
        "fn (",
        "}}}}",
        "#{",
        "let = ;",
        "\"unterminated",
        "`unterminated ${",
        "fn f() { f( }",
        "let x = [1, 2,, 3];",
        "fn f(x) { x } f",
        "|x| x",
        "fn run(x) { x / 0 }\nrun",
        "import",
        "\u{0}\u{1}\u{2}",
        "let rules = 5;",
        "let rules = [5];",
        "let rules = [#{ name: 1 }];",
        "#{ tool: #{ name: \"t\" }, execute: 5 }",
        "#{ tool: #{ name: \"\" }, execute: |a| a }",
        "const PLUGIN_ID = 5; fn f() {}",
        &"(".repeat(10_000),
        &"[".repeat(10_000),
        &format!("fn f() {{ {} }}", "{".repeat(5_000)),
    ];
    for source in garbage {
        let outcome = std::panic::catch_unwind(|| {
            if let Ok(plugin) = RhaiPlugin::from_source("garbage", source) {
                let _ = plugin.execute_sync("1");
                let _ = plugin.execute_sync(&json!({"function": "f", "args": []}).to_string());
            }
        });
        assert!(
            outcome.is_ok(),
            "panicked on {:?}",
            &source[..source.len().min(40)]
        );
    }
}

#[test]
fn shipped_scripts_all_compile() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    for path in [
        "order_processor.rhai",
        "discount.rhai",
        "data_analyzer.rhai",
        "tools/weather.rhai",
        "rules/content_moderation.rhai",
    ] {
        RhaiPlugin::from_file(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

/// Calls on one thread share a kept scope (script.rs): a call that throws midway, with its
/// argument and locals in that scope, must leave nothing behind for the next call.
#[test]
fn a_call_that_throws_leaves_nothing_for_the_next_call() {
    let plugin = RhaiPlugin::from_source(
        "alternating",
        "fn run(x) {\n  let doubled = x.n * 2;\n  if x.n > 5 { throw \"too big\"; }\n  #{ doubled: doubled, args: x }\n}\nrun",
    )
    .unwrap();
    for n in [1, 9, 2, 7, 3, 12, 0, 6, 5] {
        let result = plugin.execute_sync(&json!({ "n": n }).to_string());
        if n > 5 {
            assert!(
                result.unwrap_err().to_string().contains("too big"),
                "n = {n}"
            );
        } else {
            let output: serde_json::Value = serde_json::from_str(&result.unwrap()).unwrap();
            assert_eq!(
                output,
                json!({ "doubled": n * 2, "args": { "n": n } }),
                "n = {n}"
            );
        }
    }
}
