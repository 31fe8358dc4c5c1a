//! The seed's scripts, shipped in scripts/, run through `RhaiPlugin` with the seed's inputs.

use std::path::PathBuf;

use bilayer_plugins::rhai_runtime::{RhaiPlugin, RuleEngine, RulePriority, ScriptKind};
use bilayer_plugins::{AgentPlugin, PluginContext, PluginError, PluginState, PluginType};
use serde_json::{json, Value};

fn script(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(relative)
}

async fn running(mut plugin: RhaiPlugin) -> RhaiPlugin {
    let ctx = PluginContext::new(plugin.metadata().id.clone());
    plugin.load(&ctx).await.unwrap();
    plugin.init_plugin().await.unwrap();
    plugin.start().await.unwrap();
    assert_eq!(plugin.state(), PluginState::Running);
    plugin
}

async fn execute_json(plugin: &mut RhaiPlugin, input: Value) -> Value {
    let output = plugin.execute(input.to_string()).await.unwrap();
    serde_json::from_str(&output).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_processor_sends_large_orders_to_the_manager() {
    let plugin = RhaiPlugin::from_file(script("order_processor.rhai")).unwrap();
    assert_eq!(plugin.metadata().id, "order_processor");
    assert_eq!(plugin.kind(), ScriptKind::Entry);
    assert_eq!(plugin.entry_function(), Some("process_order"));
    let mut plugin = running(plugin).await;

    // 5 × 250.0 = 1250.0 > 1000.0
    let output = execute_json(
        &mut plugin,
        json!({"id": "ORD-123", "quantity": 5, "price": 250.0}),
    )
    .await;
    assert_eq!(
        output,
        json!({"status": "pending_approval", "reason": "High value order", "next_agent": "manager"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_processor_approves_small_orders_with_their_total() {
    let mut plugin = running(RhaiPlugin::from_file(script("order_processor.rhai")).unwrap()).await;
    let output = execute_json(
        &mut plugin,
        json!({"id": "ORD-124", "quantity": 2, "price": 10.5}),
    )
    .await;
    assert_eq!(
        output,
        json!({"status": "approved", "order_id": "ORD-124", "total": 21.0})
    );
}

#[tokio::test]
async fn order_processor_runs_on_a_current_thread_runtime_too() {
    let mut plugin = running(RhaiPlugin::from_file(script("order_processor.rhai")).unwrap()).await;
    let output = execute_json(
        &mut plugin,
        json!({"id": "ORD-1", "quantity": 1, "price": 5.0}),
    )
    .await;
    assert_eq!(output["status"], "approved");
}

#[test]
fn metadata_carries_a_content_hash_version() {
    let a = RhaiPlugin::from_file(script("order_processor.rhai")).unwrap();
    let b = RhaiPlugin::from_source("order_processor", a.source().to_string()).unwrap();
    assert_eq!(a.metadata().version, b.metadata().version);
    assert_eq!(a.metadata().version.len(), 16);
    assert_eq!(a.metadata().plugin_type, PluginType::Script);
    assert!(a.metadata().has_capability("rhai:entry"));
    let changed =
        RhaiPlugin::from_source("order_processor", format!("{}\n// edited", a.source())).unwrap();
    assert_ne!(a.metadata().version, changed.metadata().version);
}

#[test]
fn a_script_can_choose_its_plugin_id() {
    let dir = tempdir("plugin_id");
    let path = dir.join("file_name.rhai");
    std::fs::write(&path, "const PLUGIN_ID = \"chosen\";\nfn run(x) { x }\nrun").unwrap();
    let plugin = RhaiPlugin::from_file(&path).unwrap();
    assert_eq!(plugin.metadata().id, "chosen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discount_is_callable_by_name_with_json_arguments() {
    let plugin = RhaiPlugin::from_file(script("discount.rhai")).unwrap();
    assert_eq!(plugin.kind(), ScriptKind::Functions);
    assert_eq!(
        plugin.functions(),
        vec!["calculate_discount(price, customer_tier)"]
    );
    let mut plugin = running(plugin).await;

    let gold = execute_json(
        &mut plugin,
        json!({"function": "calculate_discount", "args": [100.0, "gold"]}),
    )
    .await;
    assert_eq!(gold, json!(80.0));
    let silver = execute_json(
        &mut plugin,
        json!({"function": "calculate_discount", "args": {"price": 100.0, "customer_tier": "silver"}}),
    )
    .await;
    assert_eq!(silver, json!(90.0));
    let none = plugin
        .call_function("calculate_discount", vec![json!(100.0), json!("bronze")])
        .unwrap();
    assert_eq!(none, json!(100.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discount_explains_a_wrong_call() {
    let mut plugin = running(RhaiPlugin::from_file(script("discount.rhai")).unwrap()).await;
    let err = plugin
        .execute(json!({"function": "calculate_discount", "args": [100.0]}).to_string())
        .await
        .unwrap_err();
    let PluginError::InvalidInput(message) = err else {
        panic!("expected InvalidInput, got {err:?}")
    };
    assert!(
        message.contains("calculate_discount(price, customer_tier)"),
        "{message}"
    );

    let err = plugin
        .execute("[100.0, \"gold\"]".to_string())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PluginError::InvalidInput(ref m) if m.contains("\"function\"")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weather_tool_runs_as_a_plugin() {
    let plugin = RhaiPlugin::from_file(script("tools/weather.rhai")).unwrap();
    assert_eq!(plugin.kind(), ScriptKind::Tool);
    assert_eq!(plugin.metadata().id, "weather");
    assert_eq!(plugin.metadata().plugin_type, PluginType::Tool);
    let definition = plugin.tool_definition().unwrap().clone();
    assert_eq!(definition.name, "get_weather");
    assert_eq!(definition.parameters["required"], json!(["city"]));

    let mut plugin = running(plugin).await;
    let output = execute_json(&mut plugin, json!({"city": "Paris"})).await;
    assert_eq!(
        output,
        json!({"city": "Paris", "temperature": 72, "condition": "Sunny", "humidity": 45})
    );

    let err = plugin.execute("{}".to_string()).await.unwrap_err();
    assert!(
        matches!(err, PluginError::InvalidInput(ref m) if m.contains("`city`")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_moderation_rules_fire_by_priority() {
    let plugin = RhaiPlugin::from_file(script("rules/content_moderation.rhai")).unwrap();
    assert_eq!(plugin.kind(), ScriptKind::Rules);
    let mut plugin = running(plugin).await;

    let spam = execute_json(&mut plugin, json!("BUY NOW, limited offer")).await;
    assert_eq!(
        spam,
        json!({"rule": "spam_filter", "decision": "block", "reason": "spam"})
    );

    // Spam and profanity at once: the critical rule wins.
    let both = execute_json(&mut plugin, json!("damn, CLICK HERE")).await;
    assert_eq!(both["rule"], "spam_filter");

    let profanity = execute_json(&mut plugin, json!("well damn")).await;
    assert_eq!(
        profanity,
        json!({"rule": "profanity_filter", "decision": "flag", "reason": "profanity"})
    );

    let normal = execute_json(&mut plugin, json!("hello there")).await;
    assert_eq!(
        normal,
        json!({"rule": "allow_default", "decision": "allow"})
    );

    // Input that is not JSON is the message itself.
    let raw = plugin.execute("BUY NOW".to_string()).await.unwrap();
    assert!(raw.contains("spam_filter"), "{raw}");
}

#[test]
fn rule_engine_lists_rules_in_evaluation_order_and_decides() {
    let engine = RuleEngine::from_file(script("rules/content_moderation.rhai")).unwrap();
    let order: Vec<(String, RulePriority)> = engine
        .rules()
        .into_iter()
        .map(|r| (r.name, r.priority))
        .collect();
    assert_eq!(
        order,
        vec![
            ("spam_filter".to_string(), RulePriority::Critical),
            ("profanity_filter".to_string(), RulePriority::High),
            ("allow_default".to_string(), RulePriority::Low),
        ]
    );
    let decision = engine.evaluate(&json!("CLICK HERE")).unwrap();
    assert_eq!(decision.rule.as_deref(), Some("spam_filter"));
    assert_eq!(decision.priority, Some(RulePriority::Critical));
    assert_eq!(
        decision.result,
        json!({"decision": "block", "reason": "spam"})
    );
    assert_eq!(
        decision.to_json(),
        json!({"rule": "spam_filter", "decision": "block", "reason": "spam"})
    );
}

#[test]
fn rules_sort_by_priority_not_by_script_order() {
    let engine = RuleEngine::from_source(
        "ordering",
        r#"
        let rules = [
            #{ name: "low", priority: "low", condition: |m| true, action: |m| "low" },
            #{ name: "medium_a", priority: "medium", condition: |m| m == "x", action: |m| "a" },
            #{ name: "medium_b", priority: "medium", condition: |m| true, action: |m| "b" },
            #{ name: "high", priority: "HIGH", condition: |m| m == "h", action: |m| #{ decision: "h" } },
        ];
        "#,
    )
    .unwrap();
    assert_eq!(
        engine.evaluate_text("x").unwrap().rule.as_deref(),
        Some("medium_a")
    );
    assert_eq!(
        engine.evaluate_text("y").unwrap().rule.as_deref(),
        Some("medium_b")
    );
    let high = engine.evaluate_text("h").unwrap();
    assert_eq!(high.to_json(), json!({"rule": "high", "decision": "h"}));
    let non_map = engine.evaluate_text("y").unwrap();
    assert_eq!(
        non_map.to_json(),
        json!({"rule": "medium_b", "result": "b"})
    );
}

#[test]
fn no_matching_rule_answers_rule_null() {
    let plugin = RhaiPlugin::from_source(
        "none",
        r#"let rules = [#{ name: "never", priority: "low", condition: |m| false, action: |m| 1 }];"#,
    )
    .unwrap();
    assert_eq!(plugin.execute_sync("\"hi\"").unwrap(), r#"{"rule":null}"#);
}

#[test]
fn rules_are_checked_when_the_script_is_compiled() {
    let err = RhaiPlugin::from_source(
        "bad",
        r#"let rules = [#{ name: "r", priority: "urgent", condition: |m| true, action: |m| 1 }];"#,
    )
    .unwrap_err();
    assert!(
        matches!(err, PluginError::Config(ref m) if m.contains("urgent")),
        "{err:?}"
    );

    let err = RuleEngine::from_source("plain", "fn f() { 1 }").unwrap_err();
    assert!(
        matches!(err, PluginError::Config(ref m) if m.contains("not a rules script")),
        "{err:?}"
    );
}

#[test]
fn a_condition_must_return_a_boolean() {
    let engine = RuleEngine::from_source(
        "cond",
        r#"let rules = [#{ name: "odd", priority: "low", condition: |m| "yes", action: |m| 1 }];"#,
    )
    .unwrap();
    let err = engine.evaluate_text("x").unwrap_err();
    let PluginError::Runtime { location, message } = err else {
        panic!("expected Runtime, got {err:?}")
    };
    assert!(location.contains("condition of rule `odd`"), "{location}");
    assert!(message.contains("true or false"), "{message}");
}

#[test]
fn the_seeds_evaluate_function_works_when_called_by_name() {
    let plugin = RhaiPlugin::from_file(script("rules/content_moderation.rhai")).unwrap();
    let decision = plugin
        .call_function("evaluate", vec![json!("BUY NOW")])
        .unwrap();
    assert_eq!(decision, json!({"decision": "block", "reason": "spam"}));
    let decision = plugin
        .call_function("evaluate", vec![json!("fine")])
        .unwrap();
    assert_eq!(decision, json!({"decision": "allow"}));
}

#[test]
fn regex_match_and_json_helpers_are_available_to_rules() {
    let engine = RuleEngine::from_source(
        "helpers",
        r#"
        let rules = [
            #{ name: "order_id", priority: "high",
               condition: |m| regex_match(m, "ORD-[0-9]+"),
               action: |m| parse_json(`{"decision":"route","to":["orders"]}`) },
            #{ name: "echo", priority: "low", condition: |m| true,
               action: |m| #{ decision: "allow", json: to_json(#{ text: m, list: [1, ()] }) } },
        ];
        "#,
    )
    .unwrap();
    let routed = engine.evaluate_text("about ORD-42").unwrap();
    assert_eq!(
        routed.result,
        json!({"decision": "route", "to": ["orders"]})
    );
    let echoed = engine.evaluate_text("say \"hi\"").unwrap();
    assert_eq!(
        echoed.result["json"],
        json!(r#"{"list":[1,null],"text":"say \"hi\""}"#)
    );
}

#[test]
fn profanity_words_are_configurable() {
    use bilayer_plugins::rhai_runtime::RhaiConfig;
    let config = RhaiConfig::default().profanity_words(["heck"]);
    let engine =
        RuleEngine::from_file_with_config(script("rules/content_moderation.rhai"), config).unwrap();
    assert_eq!(
        engine.evaluate_text("oh heck").unwrap().rule.as_deref(),
        Some("profanity_filter")
    );
    assert_eq!(
        engine.evaluate_text("damn").unwrap().rule.as_deref(),
        Some("allow_default")
    );
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bilayer-rhai-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
