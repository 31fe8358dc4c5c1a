//! Hostile scripts: each protection of the sandbox holds, the error names the limit, and the
//! same plugin serves the next call normally afterwards.

use std::time::{Duration, Instant};

use bilayer_plugins::rhai_runtime::{RhaiConfig, RhaiPlugin};
use bilayer_plugins::{AgentPlugin, PluginContext, PluginError};
use serde_json::json;

use crate::cpu_bound;

/// A plugin exposing `attack()` (the hostile code) and `ping()` (a normal call).
fn plugin_with(attack: &str, config: RhaiConfig) -> RhaiPlugin {
    let source = format!("fn attack() {{ {attack} }}\nfn ping() {{ \"pong\" }}");
    RhaiPlugin::from_source_with_config("hostile", source, config).unwrap()
}

fn attack(plugin: &RhaiPlugin) -> PluginError {
    plugin.call_function("attack", vec![]).unwrap_err()
}

fn assert_still_serves(plugin: &RhaiPlugin) {
    assert_eq!(plugin.call_function("ping", vec![]).unwrap(), json!("pong"));
}

fn assert_limit(err: &PluginError, expected: &str) {
    match err {
        PluginError::LimitExceeded { limit, detail } => {
            assert_eq!(limit, expected, "{detail}");
            assert!(
                detail.contains(&format!("RhaiConfig::{expected}")),
                "the fix is named: {detail}"
            );
        }
        other => panic!("expected LimitExceeded({expected}), got {other:?}"),
    }
}

#[test]
fn an_infinite_loop_hits_max_operations() {
    let _cpu = cpu_bound::one_at_a_time();
    let plugin = plugin_with("loop { }", RhaiConfig::default().max_operations(10_000));
    assert_limit(&attack(&plugin), "max_operations");
    assert_still_serves(&plugin);
}

#[test]
fn an_infinite_loop_hits_the_wall_clock_timeout() {
    let _cpu = cpu_bound::one_at_a_time();
    let config = RhaiConfig::default()
        .max_operations(u64::MAX)
        .timeout(Duration::from_millis(50));
    let plugin = plugin_with("let x = 0; loop { x += 1; }", config);
    let started = Instant::now();
    assert_limit(&attack(&plugin), "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopped near its deadline: {:?}",
        started.elapsed()
    );
    assert_still_serves(&plugin);
}

#[test]
fn the_default_config_stops_an_infinite_loop() {
    let _cpu = cpu_bound::one_at_a_time();
    let plugin = plugin_with("loop { }", RhaiConfig::default());
    let err = attack(&plugin);
    assert!(
        matches!(&err, PluginError::LimitExceeded { limit, .. } if limit == "max_operations" || limit == "timeout"),
        "{err:?}"
    );
    assert_still_serves(&plugin);
}

#[test]
fn runaway_recursion_hits_max_call_stack_depth() {
    let source = "fn down(n) { down(n + 1) }\nfn attack() { down(0) }\nfn ping() { \"pong\" }";
    let config = RhaiConfig::default().max_call_stack_depth(32);
    let plugin = RhaiPlugin::from_source_with_config("recursion", source, config).unwrap();
    let err = attack(&plugin);
    assert_limit(&err, "max_call_stack_depth");
    assert_still_serves(&plugin);
}

#[test]
fn recursion_past_the_native_stack_budget_is_stopped_not_a_crash() {
    // A call depth far beyond what the thread's stack can hold: without the native stack
    // guard this would overflow the stack and abort the whole test process.
    let source = "fn down(n) { let m = #{ n: n, list: [n, n] }; down(m.n + 1) }\nfn attack() { down(0) }\nfn ping() { \"pong\" }";
    let config = RhaiConfig::default()
        .max_call_stack_depth(1_000_000)
        .max_native_stack(256 * 1024);
    let plugin = RhaiPlugin::from_source_with_config("deep", source, config).unwrap();
    let outcome = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let err = attack(&plugin);
            assert_still_serves(&plugin);
            err
        })
        .unwrap()
        .join()
        .unwrap();
    assert_limit(&outcome, "max_native_stack");
}

#[test]
fn a_string_bomb_hits_max_string_size() {
    let _cpu = cpu_bound::one_at_a_time();
    let plugin = plugin_with(r#"let s = "boom"; loop { s += s; }"#, RhaiConfig::default());
    assert_limit(&attack(&plugin), "max_string_size");
    assert_still_serves(&plugin);

    let padded = plugin_with(r#""x".pad(10_000_000, 'y')"#, RhaiConfig::default());
    assert_limit(&attack(&padded), "max_string_size");
}

#[test]
fn an_array_bomb_hits_max_array_size() {
    let _cpu = cpu_bound::one_at_a_time();
    let plugin = plugin_with("let a = [1]; loop { a += a; }", RhaiConfig::default());
    assert_limit(&attack(&plugin), "max_array_size");
    assert_still_serves(&plugin);

    let pushed = plugin_with("let a = []; loop { a.push(1); }", RhaiConfig::default());
    assert_limit(&attack(&pushed), "max_array_size");
    let blob = plugin_with("blob(100_000_000)", RhaiConfig::default());
    assert_limit(&attack(&blob), "max_array_size");
}

#[test]
fn a_map_bomb_hits_max_map_size() {
    let _cpu = cpu_bound::one_at_a_time();
    let plugin = plugin_with(
        "let m = #{}; let i = 0; loop { let entry = #{}; entry[`k${i}`] = i; m += entry; i += 1; }",
        RhaiConfig::default().max_map_size(1_000),
    );
    assert_limit(&attack(&plugin), "max_map_size");
    assert_still_serves(&plugin);
}

#[test]
fn an_oversized_result_is_caught_at_the_boundary() {
    // Index assignments are not size-checked by Rhai while they run; the result is.
    let plugin = plugin_with(
        "let m = #{}; for i in 0..200 { m[`k${i}`] = i; } m",
        RhaiConfig::default().max_map_size(100),
    );
    assert_limit(&attack(&plugin), "max_map_size");
    assert_still_serves(&plugin);
}

#[test]
fn deeply_nested_values_are_bounded() {
    let config = RhaiConfig::default().max_array_size(300).max_map_size(300);
    let arrays = plugin_with("let a = []; loop { a = [a]; }", config.clone());
    assert_limit(&attack(&arrays), "max_array_size");
    let maps = plugin_with("let m = #{}; loop { m = #{ inner: m }; }", config.clone());
    assert_limit(&attack(&maps), "max_map_size");
    let returned = plugin_with("let a = []; for i in 0..200 { a = [a]; } a", config);
    assert_limit(&attack(&returned), "max_json_depth");
    assert_still_serves(&returned);
}

#[test]
fn there_are_no_file_network_or_process_functions() {
    for call in [
        r#"open_file("/etc/passwd")"#,
        r#"read_file("/etc/passwd")"#,
        r#"write_file("/tmp/x", "y")"#,
        r#"remove_file("/tmp/x")"#,
        r#"http_get("http://example.com")"#,
        r#"fetch("http://example.com")"#,
        r#"connect("127.0.0.1:80")"#,
        r#"system("ls")"#,
        r#"exec("ls")"#,
        r#"spawn("ls")"#,
        r#"command("ls")"#,
        r#"env("HOME")"#,
    ] {
        let source = format!("fn attack() {{ {call} }}\nfn ping() {{ \"pong\" }}");
        match RhaiPlugin::from_source("hostile", source) {
            // Some names (`spawn`) are reserved words in Rhai: the script does not even compile.
            Err(PluginError::Compile { message, .. }) => {
                assert!(message.contains("reserved"), "{call}: {message}")
            }
            Err(other) => panic!("{call}: unexpected {other:?}"),
            Ok(plugin) => {
                let err = attack(&plugin);
                let PluginError::Runtime { message, .. } = &err else {
                    panic!("{call}: expected Runtime, got {err:?}")
                };
                assert!(message.contains("Function not found"), "{call}: {message}");
                assert_still_serves(&plugin);
            }
        }
    }
}

/// `f.curry(f)` in a loop nests function pointers past every size limit, and dropping the
/// result recurses once per level: explicit `curry` is refused when the script compiles, while
/// closures still capture their variables (the parser's capture does not go through it).
#[test]
fn curry_is_disabled() {
    for source in [
        "fn attack() { let f = Fn(\"attack\"); f.curry(f) }",
        "fn attack() { curry(Fn(\"attack\"), 1) }",
    ] {
        let err = RhaiPlugin::from_source("curry", source).unwrap_err();
        assert!(err.to_string().contains("curry"), "{err}");
    }
    let closures = plugin_with(
        "let y = 5; let f = |x| x + y; f.call(1)",
        RhaiConfig::default(),
    );
    assert_eq!(closures.call_function("attack", vec![]).unwrap(), json!(6));
}

#[test]
fn eval_is_disabled() {
    for source in [
        r#"fn attack() { eval("1 + 1") }"#,
        "fn attack() { let e = eval; e }",
    ] {
        let err = RhaiPlugin::from_source("eval", source).unwrap_err();
        let PluginError::Compile { message, .. } = &err else {
            panic!("expected Compile, got {err:?}")
        };
        assert!(message.contains("eval"), "{message}");
    }
    let plugin = plugin_with(r#"call("eval", "1 + 1")"#, RhaiConfig::default());
    assert!(matches!(attack(&plugin), PluginError::Runtime { .. }));
}

#[test]
fn sleep_is_refused() {
    for call in ["sleep(10)", "sleep(0.5)"] {
        let plugin = plugin_with(call, RhaiConfig::default());
        let started = Instant::now();
        let err = attack(&plugin);
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "{call} did not sleep"
        );
        assert!(
            matches!(&err, PluginError::Runtime { message, .. } if message.contains("sleep is not available")),
            "{err:?}"
        );
    }
}

#[test]
fn import_is_refused_by_default() {
    let dir = tempdir("import-default");
    std::fs::write(dir.join("helper.rhai"), "fn help() { 42 }").unwrap();
    for source in [
        "import \"helper\" as h;\nfn run(x) { 1 }\nrun".to_string(),
        format!(
            "import \"{}\" as h;\nfn run(x) {{ 1 }}\nrun",
            dir.join("helper").display()
        ),
    ] {
        let err = RhaiPlugin::from_source("importer", source).unwrap_err();
        assert!(
            matches!(&err, PluginError::Runtime { message, .. } if message.contains("imports are disabled")),
            "{err:?}"
        );
    }
    let in_function = plugin_with("import \"helper\" as h; h::help()", RhaiConfig::default());
    assert!(matches!(attack(&in_function), PluginError::Runtime { .. }));
}

#[test]
fn import_works_only_inside_the_allowed_directory() {
    let root = tempdir("import-allowed");
    let allowed = root.join("modules");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::write(allowed.join("helper.rhai"), "fn help() { 42 }").unwrap();
    std::fs::write(root.join("secret.rhai"), "fn leak() { \"secret\" }").unwrap();
    let config = RhaiConfig::default().allow_imports_from(&allowed);

    let plugin = RhaiPlugin::from_source_with_config(
        "importer",
        "import \"helper\" as top;\nconst AT_TOP = top::help();\nfn run(x) { import \"helper\" as h; h::help() + AT_TOP }\nrun",
        config.clone(),
    )
    .unwrap();
    assert_eq!(plugin.execute_sync("null").unwrap(), "84");
    assert_eq!(
        plugin.execute_sync("null").unwrap(),
        "84",
        "the cached module serves the next call"
    );

    for escape in [
        "../secret",
        "./../secret",
        &root.join("secret").display().to_string(),
    ] {
        let source = format!("import \"{escape}\" as s;\nfn run(x) {{ s::leak() }}\nrun");
        let err =
            RhaiPlugin::from_source_with_config("escape", source, config.clone()).unwrap_err();
        assert!(
            matches!(&err, PluginError::Runtime { message, .. } if message.contains("refused")),
            "{escape}: {err:?}"
        );
    }
}

#[test]
fn print_and_debug_do_not_fail_scripts() {
    let plugin = plugin_with(
        r#"print("to tracing"); debug(#{ a: 1 }); 1"#,
        RhaiConfig::default(),
    );
    assert_eq!(plugin.call_function("attack", vec![]).unwrap(), json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_hit_through_execute_leaves_the_plugin_running() {
    let source = r#"fn handle(input) { if input.spin { loop { } } #{ ok: true } }
handle"#;
    let config = RhaiConfig::default().max_operations(50_000);
    let mut plugin = RhaiPlugin::from_source_with_config("spinner", source, config).unwrap();
    plugin.load(&PluginContext::new("spinner")).await.unwrap();
    plugin.start().await.unwrap();
    let err = plugin
        .execute(r#"{"spin": true}"#.to_string())
        .await
        .unwrap_err();
    assert!(err.is_plugin_fault());
    assert_eq!(
        plugin
            .execute(r#"{"spin": false}"#.to_string())
            .await
            .unwrap(),
        r#"{"ok":true}"#
    );
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bilayer-rhai-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
