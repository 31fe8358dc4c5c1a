//! Bounded scripts run on the calling thread; anything that may run long (loops, recursion,
//! dynamic calls, `call_plugin`, `import`) still goes through `run_blocking`.
//!
//! Where a call ran is observed on a current-thread runtime whose only blocking thread is kept
//! busy: an inline call answers at once, a call through `run_blocking` (`spawn_blocking` there)
//! waits for that thread.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bilayer_plugins::rhai_runtime::{RhaiConfig, RhaiPlugin, RhaiToolRegistry, ScriptKind};
use bilayer_plugins::{AgentPlugin, PluginContext, PluginError, PluginResult};
use serde_json::{json, Value};

use crate::cpu_bound;

fn repo(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn source(id: &str, text: &str) -> RhaiPlugin {
    RhaiPlugin::from_source(id, text).unwrap_or_else(|e| panic!("{id} should compile: {e}"))
}

fn assert_unbounded(id: &str, text: &str, why: &str) {
    let plugin = source(id, text);
    assert!(!plugin.is_bounded(), "{id} should not be bounded:\n{text}");
    assert!(!plugin.runs_inline(), "{id}");
    let reason = plugin.unbounded_reason().expect("a reason");
    assert!(
        reason.contains(why),
        "{id}: {reason:?} should mention {why:?}"
    );
}

fn assert_bounded(id: &str, text: &str) -> RhaiPlugin {
    let plugin = source(id, text);
    assert!(
        plugin.is_bounded(),
        "{id} should be bounded: {:?}",
        plugin.unbounded_reason()
    );
    assert!(plugin.runs_inline(), "{id}");
    plugin
}

async fn loaded(mut plugin: RhaiPlugin) -> RhaiPlugin {
    let ctx = PluginContext::new(plugin.metadata().id.clone());
    plugin.load(&ctx).await.unwrap();
    plugin.start().await.unwrap();
    plugin
}

#[test]
fn the_shipped_scripts_are_bounded() {
    let shipped = [
        ("scripts/order_processor.rhai", ScriptKind::Entry),
        ("scripts/discount.rhai", ScriptKind::Functions),
        ("examples/orders/intake.rhai", ScriptKind::Entry),
        ("examples/orders/manager.rhai", ScriptKind::Entry),
        ("examples/orders/fulfillment.rhai", ScriptKind::Entry),
        ("examples/orders/audit.rhai", ScriptKind::Entry),
        ("scripts/rules/content_moderation.rhai", ScriptKind::Rules),
        ("scripts/tools/weather.rhai", ScriptKind::Tool),
    ];
    for (path, kind) in shipped {
        let plugin = RhaiPlugin::from_file(repo(path)).unwrap();
        assert_eq!(plugin.kind(), kind, "{path}");
        assert!(
            plugin.is_bounded(),
            "{path} should be bounded: {:?}",
            plugin.unbounded_reason()
        );
        assert_eq!(plugin.unbounded_reason(), None, "{path}");
        assert!(plugin.runs_inline(), "{path}");
    }
    assert!(format!(
        "{:?}",
        RhaiPlugin::from_file(repo("scripts/order_processor.rhai")).unwrap()
    )
    .contains("runs_inline: true"));
}

#[test]
fn the_data_analyzer_is_not_bounded() {
    let plugin = RhaiPlugin::from_file(repo("scripts/data_analyzer.rhai")).unwrap();
    assert!(!plugin.is_bounded());
    assert!(!plugin.runs_inline());
    assert!(plugin.unbounded_reason().unwrap().contains("call_plugin"));
}

#[test]
fn rules_are_bounded_even_though_the_seeds_evaluate_loops() {
    let plugin = RhaiPlugin::from_file(repo("scripts/rules/content_moderation.rhai")).unwrap();
    assert_eq!(plugin.kind(), ScriptKind::Rules);
    assert!(plugin.is_bounded());
    // The host never calls `evaluate` for a rules input, but a call of it by name would loop.
    assert!(plugin.functions().iter().any(|f| f == "evaluate(message)"));
    assert!(!plugin.is_function_bounded("evaluate"));
    assert!(!plugin.is_function_bounded("no_such_function"));
}

#[test]
fn functions_form_is_classified_per_function() {
    let plugin = source(
        "mixed",
        r#"
        fn evaluate(message) {
            for rule in ["a", "b"] {
                if rule == message { return rule; }
            }
            "none"
        }
        fn quick(x) { x * 2 }
        "#,
    );
    assert_eq!(plugin.kind(), ScriptKind::Functions);
    assert!(!plugin.is_bounded());
    assert!(plugin
        .unbounded_reason()
        .unwrap()
        .contains("fn evaluate has a `for` loop"));
    assert!(!plugin.runs_inline());
    assert!(plugin.is_function_bounded("quick"));
    assert!(!plugin.is_function_bounded("evaluate"));
    assert!(plugin.runs_inline_for(&json!({"function": "quick", "args": [2]})));
    assert!(!plugin.runs_inline_for(&json!({"function": "evaluate", "args": ["b"]})));
    assert!(!plugin.runs_inline_for(&json!({"function": "missing"})));
    assert!(!plugin.runs_inline_for(&json!("not a call")));

    let discount = RhaiPlugin::from_file(repo("scripts/discount.rhai")).unwrap();
    assert!(discount.runs_inline_for(&json!({"function": "calculate_discount"})));
}

#[test]
fn loops_are_not_bounded() {
    assert_unbounded(
        "while",
        "fn run(x) { let i = 0; while i < x { i += 1; } i }\nrun",
        "loop",
    );
    assert_unbounded(
        "loop",
        "fn run(x) { loop { if x { break; } } }\nrun",
        "loop",
    );
    assert_unbounded(
        "do",
        "fn run(x) { let i = 0; do { i += 1; } while i < x; i }\nrun",
        "loop",
    );
    assert_unbounded(
        "until",
        "fn run(x) { let i = 0; do { i += 1; } until i >= x; i }\nrun",
        "loop",
    );
    assert_unbounded(
        "for",
        "fn run(x) { let t = 0; for v in x { t += v; } t }\nrun",
        "`for` loop",
    );
    assert_unbounded(
        "for_in_closure",
        "fn run(x) { x.map(|v| { let t = 0; for i in 0..v { t += i; } t }) }\nrun",
        "a closure has a `for` loop",
    );
    assert_unbounded("closure_entry", "|x| { loop { } }", "loop");
    assert_unbounded(
        "tool",
        r#"
        let tool = #{ name: "spin", description: "spins", parameters: #{ type: "object", properties: #{} } };
        fn execute(args) { while true { } }
        #{ tool: tool, execute: execute }
        "#,
        "loop",
    );
    assert_unbounded(
        "rules",
        r#"let rules = [#{ name: "r", priority: "low",
               condition: |m| { let n = 0; while n < 10 { n += 1; } true },
               action: |m| #{ decision: "allow" } }];"#,
        "a closure has a `while`",
    );
}

#[test]
fn recursion_is_not_bounded() {
    assert_unbounded(
        "direct",
        "fn run(x) { if x > 0 { run(x - 1) } else { 0 } }\nrun",
        "script function `run`",
    );
    assert_unbounded(
        "mutual",
        "fn run(x) { ping(x) }\nfn ping(x) { if x > 0 { pong(x - 1) } else { 0 } }\nfn pong(x) { ping(x) }\nrun",
        "script function `ping`",
    );
    // Even a call that cannot recurse is refused: the rule is "no script-to-script calls".
    assert_unbounded(
        "helper",
        "fn run(x) { double(x) }\nfn double(x) { x * 2 }\nrun",
        "script function `double`",
    );
    assert_unbounded(
        "method",
        "fn run(x) { x.double() }\nfn double() { this * 2 }\nrun",
        "script function `double`",
    );
    assert_unbounded(
        "bang",
        "fn run(x) { double!(x) }\nfn double(x) { x * 2 }\nrun",
        "double",
    );
    assert_unbounded(
        "in_closure",
        "fn run(x) { x.map(|v| run(v)) }\nrun",
        "a closure has a call to script function `run`",
    );
    assert_unbounded(
        "as_value",
        "fn run(x) { x.map(run) }\nrun",
        "function `run` used as a value",
    );
}

#[test]
fn call_plugin_import_and_sleep_are_not_bounded() {
    assert_unbounded(
        "call_plugin",
        "fn run(x) { call_plugin(\"db\", x) }\nrun",
        "call_plugin",
    );
    assert_unbounded(
        "call_plugin_method",
        "fn run(x) { \"db\".call_plugin(x) }\nrun",
        "call_plugin",
    );
    assert_unbounded(
        "call_plugin_in_rule",
        r#"let rules = [#{ name: "r", priority: "low",
               condition: |m| call_plugin("classifier", m) == "spam",
               action: |m| #{ decision: "block" } }];"#,
        "call_plugin",
    );
    assert_unbounded(
        "import",
        "fn run(x) { import \"helper\" as h; h::help(x) }\nrun",
        "import",
    );
    assert_unbounded("sleep", "fn run(x) { sleep(1); x }\nrun", "sleep");
    assert_unbounded(
        "module_var",
        "fn run(x) { global::LIMIT }\nrun",
        "module variable",
    );
    assert_unbounded("this", "fn run(x) { this }\nrun", "`this`");
}

#[test]
fn dynamic_calls_are_not_bounded() {
    assert_unbounded(
        "call_fn",
        "fn run(x) { call(Fn(\"to_json\"), x) }\nrun",
        "dynamic call",
    );
    assert_unbounded(
        "dot_call",
        "fn run(x) { let f = |y| y; f.call(x) }\nrun",
        "function pointer",
    );
    assert_unbounded(
        "fn_name",
        "fn run(x) { let f = Fn(x.name); x }\nrun",
        "dynamic call (`Fn`)",
    );
    // `Fn("literal")` is folded into a constant function pointer when compiled.
    assert_unbounded(
        "fn_ptr",
        "fn run(x) { let f = Fn(\"run\"); x }\nrun",
        "function pointer",
    );
    // Explicit `curry` does not compile at all (rhai_sandbox.rs, `curry_is_disabled`).
    // Closures are fine only as the direct argument of an array/map method.
    assert_unbounded(
        "closure_in_var",
        "fn run(x) { let f = |y| y; x.map(f) }\nrun",
        "function pointer",
    );
    assert_unbounded(
        "closure_in_map",
        "fn run(x) { let m = #{ f: |y| y }; m.f(x) }\nrun",
        "function pointer",
    );
    assert_unbounded(
        "self_application",
        "fn run(x) { [|f| [f].map(f)].map(|g| [g].map(g)) }\nrun",
        "function pointer",
    );
    assert_unbounded(
        "returned_closure",
        "fn run(x) { |y| y }\nrun",
        "function pointer",
    );
    assert_unbounded(
        "unknown_method",
        "fn run(x) { x.pad(3, |y| y) }\nrun",
        "function pointer",
    );
    // Top-level values holding functions are not followed.
    assert_unbounded(
        "fn_global",
        "let table = [|y| y];\nfn run(x) { table.len() + x }\nrun",
        "top-level `table`",
    );
    assert_unbounded(
        "captured_closure",
        r#"let helper = |m| m.len() > 3;
           let rules = [#{ name: "r", priority: "low",
               condition: |m| [m].filter(helper).len() > 0,
               action: |m| #{ decision: "allow" } }];"#,
        "captures a function pointer",
    );
}

#[test]
fn closures_given_to_array_and_map_methods_are_bounded() {
    let plugin = assert_bounded(
        "pipeline",
        r#"fn run(order) {
               let tax = order.tax;
               let prices = order.items.map(|i| i.price * (1.0 + tax)).filter(|p| p > 1.0);
               prices.sort(|a, b| if a < b { -1 } else if a > b { 1 } else { 0 });
               #{ prices: prices,
                  total: prices.reduce(|sum, p| sum + p, 0.0),
                  any_big: prices.some(|p| p > 100.0),
                  count: #{ a: 1, b: 2 }.filter(|k, v| v > 1).len() }
           }
           run"#,
    );
    let output = plugin
        .execute_value(
            json!({"tax": 0.5, "items": [{"price": 10.0}, {"price": 0.5}, {"price": 100.0}]}),
        )
        .unwrap();
    assert_eq!(
        output,
        json!({"prices": [15.0, 150.0], "total": 165.0, "any_big": true, "count": 1})
    );

    let closure = assert_bounded("closure_entry", "|x| x + 1");
    assert_eq!(closure.execute_sync("41").unwrap(), "42");

    let rules = assert_bounded(
        "captures",
        r#"let limit = 3;
           let rules = [#{ name: "long", priority: "high",
               condition: |m| m.len() > limit && m.split(" ").all(|w| w.len() > 0),
               action: |m| #{ decision: "flag" } }];"#,
    );
    assert_eq!(rules.kind(), ScriptKind::Rules);
    assert_bounded(
        "switch_and_state",
        r#"fn run(x) {
               state.count = (state.count ?? 0) + 1;
               switch x.kind { "a" => 1, "b" if x.n > 2 => 2, _ => () }
           }
           run"#,
    );
}

#[test]
fn inline_bounded_false_forces_the_blocking_path() {
    let plugin = RhaiPlugin::from_file_with_config(
        repo("scripts/order_processor.rhai"),
        RhaiConfig::default().inline_bounded(false),
    )
    .unwrap();
    assert!(plugin.is_bounded());
    assert!(!plugin.runs_inline());
    assert!(!plugin.config().inline_bounded);
    assert!(RhaiConfig::default().inline_bounded);
    // `with_config` reclassifies under the new config.
    let plugin = plugin.with_config(RhaiConfig::default()).unwrap();
    assert!(plugin.runs_inline());
}

#[test]
fn bounded_scripts_answer_on_a_current_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut orders =
            loaded(RhaiPlugin::from_file(repo("scripts/order_processor.rhai")).unwrap()).await;
        let out: Value = serde_json::from_str(
            &orders
                .execute(r#"{"id": "ORD-1", "quantity": 2, "price": 10.0}"#.to_string())
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"status": "approved", "order_id": "ORD-1", "total": 20.0})
        );
        let out = orders
            .execute_json(json!({"id": "ORD-2", "quantity": 5, "price": 250.0}))
            .await
            .unwrap();
        assert_eq!(out["next_agent"], "manager");

        let mut discount =
            loaded(RhaiPlugin::from_file(repo("scripts/discount.rhai")).unwrap()).await;
        let out = discount
            .execute(r#"{"function": "calculate_discount", "args": [100.0, "gold"]}"#.to_string())
            .await
            .unwrap();
        assert_eq!(out, "80.0");

        let mut rules =
            loaded(RhaiPlugin::from_file(repo("scripts/rules/content_moderation.rhai")).unwrap())
                .await;
        let out = rules.execute_json(json!("BUY NOW!!!")).await.unwrap();
        assert_eq!(
            out,
            json!({"rule": "spam_filter", "decision": "block", "reason": "spam"})
        );
        let out = rules.execute("hello there".to_string()).await.unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap()["rule"],
            "allow_default"
        );

        // Errors come back the same way.
        let err = orders.execute("not json".to_string()).await.unwrap_err();
        assert!(matches!(err, PluginError::InvalidInput(_)), "{err:?}");
        let err = discount.execute("not json".to_string()).await.unwrap_err();
        assert!(matches!(err, PluginError::InvalidInput(_)), "{err:?}");
    });
}

/// A current-thread runtime whose single blocking thread `occupy` can keep busy.
fn runtime_with_one_blocking_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Keeps the runtime's only blocking thread busy until the returned sender is used or dropped.
async fn occupy_the_blocking_thread() -> mpsc::Sender<()> {
    let (release, wait) = mpsc::channel::<()>();
    let (started, is_started) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        started.send(()).unwrap();
        let _ = wait.recv();
    });
    is_started.await.unwrap();
    release
}

/// `Some(answer)` when the call answered without the blocking thread, `None` when it waited.
async fn without_blocking_pool<F>(call: F) -> Option<PluginResult<String>>
where
    F: std::future::Future<Output = PluginResult<String>>,
{
    tokio::time::timeout(Duration::from_millis(150), call)
        .await
        .ok()
}

#[test]
fn bounded_calls_run_inline_and_unbounded_ones_through_run_blocking() {
    let runtime = runtime_with_one_blocking_thread();
    runtime.block_on(async {
        let mut bounded =
            loaded(RhaiPlugin::from_file(repo("scripts/order_processor.rhai")).unwrap()).await;
        let mut forced = loaded(
            RhaiPlugin::from_file_with_config(
                repo("scripts/order_processor.rhai"),
                RhaiConfig::default().inline_bounded(false),
            )
            .unwrap(),
        )
        .await;
        let mut looping = loaded(source(
            "looping",
            "fn run(x) { let t = 0; for i in 0..3 { t += i; } t + x }\nrun",
        ))
        .await;
        let mut mixed = loaded(source(
            "mixed",
            "fn evaluate(x) { let t = 0; for i in 0..3 { t += i; } t + x }\nfn quick(x) { x * 2 }",
        ))
        .await;
        let mut rules =
            loaded(RhaiPlugin::from_file(repo("scripts/rules/content_moderation.rhai")).unwrap())
                .await;
        let tools = RhaiToolRegistry::new();
        tools
            .load_from_file(repo("scripts/tools/weather.rhai"))
            .await
            .unwrap();

        let release = occupy_the_blocking_thread().await;
        let order = r#"{"id": "ORD-1", "quantity": 1, "price": 5.0}"#;

        let answer = without_blocking_pool(bounded.execute(order.to_string())).await;
        assert!(answer
            .expect("answered inline")
            .unwrap()
            .contains("approved"));
        let answer = without_blocking_pool(rules.execute("BUY NOW".to_string())).await;
        assert!(answer
            .expect("answered inline")
            .unwrap()
            .contains("spam_filter"));
        let answer = without_blocking_pool(
            mixed.execute(r#"{"function": "quick", "args": [21]}"#.to_string()),
        )
        .await;
        assert_eq!(answer.expect("answered inline").unwrap(), "42");
        let answer =
            without_blocking_pool(tools.execute("get_weather", r#"{"city": "Paris"}"#)).await;
        assert!(answer.expect("answered inline").unwrap().contains("Paris"));
        let answer = without_blocking_pool(async {
            bounded
                .execute_json(json!({"id": "ORD-2", "quantity": 1, "price": 5.0}))
                .await
                .map(|v| v.to_string())
        })
        .await;
        assert!(answer
            .expect("answered inline")
            .unwrap()
            .contains("approved"));

        // These wait for the blocking thread.
        assert!(without_blocking_pool(looping.execute("1".to_string()))
            .await
            .is_none());
        assert!(without_blocking_pool(forced.execute(order.to_string()))
            .await
            .is_none());
        assert!(without_blocking_pool(
            mixed.execute(r#"{"function": "evaluate", "args": [1]}"#.to_string())
        )
        .await
        .is_none());
        assert!(without_blocking_pool(async {
            mixed
                .execute_json(json!({"function": "evaluate", "args": [1]}))
                .await
                .map(|v| v.to_string())
        })
        .await
        .is_none());

        // Once the thread is free they answer as before.
        release.send(()).unwrap();
        assert_eq!(looping.execute("1".to_string()).await.unwrap(), "4");
        assert!(forced
            .execute(order.to_string())
            .await
            .unwrap()
            .contains("approved"));
        assert_eq!(
            mixed
                .execute(r#"{"function": "evaluate", "args": [1]}"#.to_string())
                .await
                .unwrap(),
            "4"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_unbounded_script_does_not_stall_inline_ones() {
    let _cpu = cpu_bound::one_at_a_time_async().await;
    let spin_config = RhaiConfig::default()
        .max_operations(u64::MAX)
        .timeout(Duration::from_millis(800));
    let mut spinner = loaded(
        RhaiPlugin::from_source_with_config("spinner", "fn run(x) { loop { } }\nrun", spin_config)
            .unwrap(),
    )
    .await;
    assert!(!spinner.runs_inline());
    let mut quick =
        loaded(RhaiPlugin::from_file(repo("examples/orders/intake.rhai")).unwrap()).await;
    assert!(quick.runs_inline());

    let started = Instant::now();
    let spinning = tokio::spawn(async move {
        let result = spinner.execute("null".to_string()).await;
        (result, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;

    let answered = tokio::spawn(async move {
        let mut outputs = Vec::new();
        for n in 0..100 {
            let order = json!({"order_id": n, "quantity": 1, "price": 2.0});
            outputs.push(quick.execute_json(order).await.unwrap());
        }
        (outputs, started.elapsed())
    });
    let timer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        started.elapsed()
    });
    let (outputs, quick_done) = answered.await.unwrap();
    let timer_done = timer.await.unwrap();
    let (spin_result, spin_done) = spinning.await.unwrap();

    assert!(outputs.iter().all(|o| o["status"] == "approved"));
    assert!(
        matches!(spin_result, Err(PluginError::LimitExceeded { ref limit, .. }) if limit == "timeout"),
        "{spin_result:?}"
    );
    assert!(
        timer_done < spin_done && quick_done < spin_done,
        "answered while spinning: timer {timer_done:?}, quick {quick_done:?}, spinner {spin_done:?}"
    );
}

#[test]
fn nested_closure_methods_are_not_bounded() {
    // Each level is bounded by max_array_size, but nesting multiplies: n × n calls.
    assert_unbounded(
        "nested",
        "fn run(n) { let a = []; a.pad(n, 1); let b = a; a.reduce(|s, v| s + b.reduce(|t, w| t + w, 0), 0) }\nrun",
        "inside a closure",
    );
    assert_unbounded(
        "nested_rule",
        r#"let rules = [#{ name: "r", priority: "low",
               condition: |m| m.split(" ").some(|w| w.split("-").all(|p| p.len() > 0)),
               action: |m| #{ decision: "allow" } }];"#,
        "inside a closure",
    );
    // A root closure and a nested one with the same text share a name.
    assert_unbounded(
        "same_text",
        r#"let rules = [
               #{ name: "a", priority: "low", condition: |m| m.some(|x| x > 0), action: |m| #{} },
               #{ name: "b", priority: "low", condition: |n| n.some(|m| m.some(|x| x > 0)), action: |m| #{} }];"#,
        "inside a closure",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_limits_still_apply_inline() {
    // Bounded: one closure per element of a 10 000-element array, each scanning a long string.
    let text = r#"fn run(n) {
                      let a = []; a.pad(n, 1);
                      let text = ""; text.pad(200000, "a");
                      a.map(|v| text.index_of("b") + v).len()
                  }
                  run"#;

    let mut counted = loaded(
        RhaiPlugin::from_source_with_config(
            "counted",
            text,
            // A timeout no loaded machine reaches, so only the operation count can stop it.
            RhaiConfig::default()
                .max_operations(2_000)
                .timeout(Duration::from_secs(120)),
        )
        .unwrap(),
    )
    .await;
    assert!(counted.runs_inline(), "{:?}", counted.unbounded_reason());
    assert_eq!(counted.execute("10".to_string()).await.unwrap(), "10");
    // Rhai alone would count each closure call from zero again and let this through.
    let err = counted.execute("10000".to_string()).await.unwrap_err();
    assert!(
        matches!(err, PluginError::LimitExceeded { ref limit, .. } if limit == "max_operations"),
        "{err:?}"
    );

    let mut timed = loaded(
        RhaiPlugin::from_source_with_config(
            "timed",
            text,
            RhaiConfig::default().timeout(Duration::from_millis(20)),
        )
        .unwrap(),
    )
    .await;
    assert!(timed.runs_inline());
    let started = Instant::now();
    let err = timed.execute("10000".to_string()).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, PluginError::LimitExceeded { ref limit, .. } if limit == "timeout"),
        "{err:?} after {elapsed:?}"
    );
    // The same plugin serves the next call.
    assert_eq!(timed.execute("3".to_string()).await.unwrap(), "3");
}

/// The synchronous agent entry point answers exactly the calls that run inline, and leaves the
/// message as it came when the script fails; everything else is left to the async path.
#[test]
fn execute_json_in_place_now_answers_inline_calls_only() {
    let mut bounded = assert_bounded(
        "check",
        r#"fn check(msg) { if msg.n < 0 { throw "negative"; } #{ n: msg.n * 2 } }
        check"#,
    );
    let mut message = json!({"n": 21});
    assert!(matches!(
        bounded.execute_json_in_place_now(&mut message),
        Some(Ok(()))
    ));
    assert_eq!(message, json!({"n": 42}));
    let mut bad = json!({"n": -1});
    let failed = bounded.execute_json_in_place_now(&mut bad);
    assert!(matches!(failed, Some(Err(_))), "{failed:?}");
    assert_eq!(
        bad,
        json!({"n": -1}),
        "a failure leaves the message as it came"
    );

    let mut looping = source("spin", "fn spin(msg) { loop {} }\nspin");
    assert!(looping
        .execute_json_in_place_now(&mut json!({"n": 1}))
        .is_none());

    let mut not_inline = source("double", "fn double(msg) { #{ n: msg.n * 2 } }\ndouble")
        .with_config(RhaiConfig::new().inline_bounded(false))
        .unwrap();
    assert!(not_inline
        .execute_json_in_place_now(&mut json!({"n": 1}))
        .is_none());

    let mut functions = source(
        "mixed",
        "fn quick(x) { x + 1 }\nfn slow(x) { let i = 0; while i < x { i += 1; } i }",
    );
    let mut quick = json!({"function": "quick", "args": [1]});
    assert!(matches!(
        functions.execute_json_in_place_now(&mut quick),
        Some(Ok(()))
    ));
    assert_eq!(quick, json!(2));
    assert!(functions
        .execute_json_in_place_now(&mut json!({"function": "slow", "args": [3]}))
        .is_none());
}
