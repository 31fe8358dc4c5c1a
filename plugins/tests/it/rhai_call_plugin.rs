//! `call_plugin` from Rhai: reaching other plugins through the host's `PluginCaller`, call
//! cycles refused, and scripts never stalling the async runtime.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bilayer_plugins::rhai_runtime::{RhaiConfig, RhaiPlugin};
use bilayer_plugins::{AgentPlugin, PluginCaller, PluginContext, PluginError};
use serde_json::json;

use crate::cpu_bound;
use crate::test_hosts::{FakeDatabase, MiniHost};

fn script(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(relative)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_analyzer_totals_the_rows_of_a_native_database_plugin() {
    let database = Arc::new(FakeDatabase::default());
    let mut analyzer = RhaiPlugin::from_file(script("data_analyzer.rhai")).unwrap();
    let ctx = PluginContext::new("data_analyzer")
        .with_caller(Arc::clone(&database) as Arc<dyn PluginCaller>);
    analyzer.load(&ctx).await.unwrap();
    analyzer.start().await.unwrap();

    let output = analyzer
        .execute(json!({"function": "analyze_sales"}).to_string())
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&output).unwrap(),
        json!({"total_sales": 349.75})
    );
    assert_eq!(
        database.queries.lock().unwrap().as_slice(),
        ["SELECT * FROM sales WHERE date > '2024-01-01'"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_inputs_are_sent_as_json_and_failures_can_be_caught() {
    let source = r#"
    fn run(input) {
        let echoed = parse_json(call_plugin("echo", #{ query: input.q, limit: 10 }));
        let fallback = "not reached";
        try { call_plugin("missing", "x"); } catch (err) { fallback = "handled"; }
        #{ echoed: echoed, fallback: fallback }
    }
    run
    "#;
    let mut plugin = RhaiPlugin::from_source("caller", source).unwrap();
    let ctx = PluginContext::new("caller")
        .with_caller(Arc::new(FakeDatabase::default()) as Arc<dyn PluginCaller>);
    plugin.load(&ctx).await.unwrap();
    plugin.start().await.unwrap();
    let output = plugin.execute_json(json!({"q": "sales"})).await.unwrap();
    assert_eq!(
        output,
        json!({"echoed": {"query": "sales", "limit": 10}, "fallback": "handled"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_caller_call_plugin_is_a_clear_error() {
    let mut plugin = RhaiPlugin::from_file(script("data_analyzer.rhai")).unwrap();
    let call = json!({"function": "analyze_sales"}).to_string();

    let err = plugin.execute(call.clone()).await.unwrap_err();
    assert!(
        matches!(&err, PluginError::Runtime { message, .. } if message.contains("not loaded by a host")),
        "{err:?}"
    );

    plugin
        .load(&PluginContext::new("data_analyzer"))
        .await
        .unwrap();
    plugin.start().await.unwrap();
    let err = plugin.execute(call).await.unwrap_err();
    let PluginError::Runtime { location, message } = &err else {
        panic!("expected Runtime, got {err:?}")
    };
    assert!(message.contains("cannot call other plugins"), "{message}");
    assert!(location.contains("in fn analyze_sales"), "{location}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rhai_plugins_call_each_other_through_the_host() {
    let host = Arc::new(MiniHost::default());
    host.add(
        RhaiPlugin::from_source("pricing", "fn price(item) { item.qty * 2.5 }\nprice").unwrap(),
    )
    .await;
    host.add(
        RhaiPlugin::from_source(
            "checkout",
            "fn checkout(order) { let total = parse_json(call_plugin(\"pricing\", order)); #{ total: total } }\ncheckout",
        )
        .unwrap(),
    )
    .await;
    let output = host.execute("checkout", r#"{"qty": 4}"#).await.unwrap();
    assert_eq!(output, r#"{"total":10.0}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_calling_itself_gets_a_call_cycle_error_not_a_deadlock() {
    let host = Arc::new(MiniHost::default());
    host.add(
        RhaiPlugin::from_source(
            "narcissus",
            "fn run(x) { call_plugin(\"narcissus\", x) }\nrun",
        )
        .unwrap(),
    )
    .await;
    let outcome =
        tokio::time::timeout(Duration::from_secs(5), host.execute("narcissus", "1")).await;
    let err = outcome.expect("no deadlock").unwrap_err();
    assert_eq!(
        err,
        PluginError::CallCycle(vec!["narcissus".into(), "narcissus".into()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_longer_cycle_is_refused_too() {
    let host = Arc::new(MiniHost::default());
    host.add(RhaiPlugin::from_source("a", "fn run(x) { call_plugin(\"b\", x) }\nrun").unwrap())
        .await;
    host.add(RhaiPlugin::from_source("b", "fn run(x) { call_plugin(\"c\", x) }\nrun").unwrap())
        .await;
    // Even a script that tries to catch the error cannot swallow a cycle.
    host.add(
        RhaiPlugin::from_source(
            "c",
            "fn run(x) { try { call_plugin(\"a\", x) } catch { \"swallowed\" } }\nrun",
        )
        .unwrap(),
    )
    .await;
    let outcome = tokio::time::timeout(Duration::from_secs(5), host.execute("a", "1")).await;
    let err = outcome.expect("no deadlock").unwrap_err();
    assert_eq!(
        err,
        PluginError::CallCycle(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_script_does_not_stall_other_plugins() {
    let _cpu = cpu_bound::one_at_a_time_async().await;
    let spin_config = RhaiConfig::default()
        .max_operations(u64::MAX)
        .timeout(Duration::from_millis(800));
    let mut spinner =
        RhaiPlugin::from_source_with_config("spinner", "fn run(x) { loop { } }\nrun", spin_config)
            .unwrap();
    let mut quick = RhaiPlugin::from_file(script("order_processor.rhai")).unwrap();
    for plugin in [&mut spinner, &mut quick] {
        let ctx = PluginContext::new(plugin.metadata().id.clone());
        plugin.load(&ctx).await.unwrap();
        plugin.start().await.unwrap();
    }

    let started = Instant::now();
    let spinning = tokio::spawn(async move {
        let result = spinner.execute("null".to_string()).await;
        (result, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Both a plain async task and another script get answered while the spinner spins.
    let timer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        started.elapsed()
    });
    let answered = tokio::spawn(async move {
        let output = quick
            .execute(r#"{"id": "ORD-9", "quantity": 1, "price": 1.0}"#.to_string())
            .await;
        (output, started.elapsed())
    });
    let timer_done = timer.await.unwrap();
    let (output, quick_done) = answered.await.unwrap();
    let (spin_result, spin_done) = spinning.await.unwrap();

    assert!(output.unwrap().contains("approved"));
    assert!(
        matches!(spin_result, Err(PluginError::LimitExceeded { ref limit, .. }) if limit == "timeout")
    );
    assert!(timer_done < spin_done && quick_done < spin_done, "answered while spinning: timer {timer_done:?}, quick {quick_done:?}, spinner {spin_done:?}");
    assert!(quick_done < Duration::from_millis(600), "{quick_done:?}");
}
