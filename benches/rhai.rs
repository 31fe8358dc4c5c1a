//! What a Rhai call costs against the same logic in Rust: the seed's `calculate_discount`, its
//! order processor (JSON text in, JSON text out, and `serde_json::Value` in/out), and the
//! content-moderation rules (one message that every rule is tried on, one the first rule
//! stops); plus the order processor hosted in its actor, called through
//! `PluginManager::execute` from a task inside the runtime.
//!
//! Issue targets (medians): rule evaluation ≤ 5 µs, order processor JSON round trip ≤ 6 µs.
//!
//! `cargo bench --bench rhai`; figures in docs/benchmarks.md.

// A bench is not API: `criterion_group!` makes an undocumented `pub fn`.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bilayer::prelude::*;
use bilayer::rhai_runtime::{ProfanityFilter, RhaiPlugin, RuleDecision, RuleEngine, RulePriority};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Value};

/// The seed's order: 5 × 250.0 = 1250.0, over the 1000.0 threshold.
const ORDER: &str = r#"{"id":"ORD-123","quantity":5,"price":250.0}"#;

/// The seed's discount call in the functions-form input.
const DISCOUNT_CALL: &str = r#"{"function":"calculate_discount","args":[100.0,"gold"]}"#;

/// ~100 characters, no spam phrase, no profanity: every rule's condition runs and
/// `allow_default` fires (the worst case).
const CLEAN_MESSAGE: &str =
    "Hello team, the quarterly report is attached; please review the figures before Friday's meeting.";

/// ~100 characters with a spam phrase: the first rule (`spam_filter`) fires.
const SPAM_MESSAGE: &str =
    "Limited offer on premium wireless headphones, only today: BUY NOW and save forty percent on them!";

fn script(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(relative)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn group_times(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
}

// ---- native counterparts -------------------------------------------------------------------

fn calculate_discount(price: f64, customer_tier: &str) -> f64 {
    match customer_tier {
        "gold" => price * 0.8,
        "silver" => price * 0.9,
        _ => price,
    }
}

fn process_order(order: &Value) -> Value {
    let quantity = order["quantity"].as_f64().unwrap_or(0.0);
    let price = order["price"].as_f64().unwrap_or(0.0);
    let total = quantity * price;
    if total > 1000.0 {
        return json!({
            "status": "pending_approval",
            "reason": "High value order",
            "next_agent": "manager"
        });
    }
    json!({ "status": "approved", "order_id": order["id"], "total": total })
}

fn process_order_text(input: &str) -> String {
    let order: Value = serde_json::from_str(input).unwrap();
    serde_json::to_string(&process_order(&order)).unwrap()
}

/// The three content-moderation rules in priority order, with the same output type as
/// `RuleEngine::evaluate`. The profanity check is the same word list the host function uses.
fn moderate(profanity: &ProfanityFilter, message: &str) -> RuleDecision {
    let (rule, priority, result) = if message.contains("BUY NOW") || message.contains("CLICK HERE")
    {
        (
            "spam_filter",
            RulePriority::Critical,
            json!({ "decision": "block", "reason": "spam" }),
        )
    } else if profanity.contains_profanity(message) {
        (
            "profanity_filter",
            RulePriority::High,
            json!({ "decision": "flag", "reason": "profanity" }),
        )
    } else {
        (
            "allow_default",
            RulePriority::Low,
            json!({ "decision": "allow" }),
        )
    };
    RuleDecision {
        rule: Some(rule.to_string()),
        priority: Some(priority),
        result,
    }
}

// ---- benches -------------------------------------------------------------------------------

fn discount(c: &mut Criterion) {
    let plugin = RhaiPlugin::from_file(script("discount.rhai")).unwrap();
    assert_eq!(plugin.execute_sync(DISCOUNT_CALL).unwrap(), "80.0");
    let call: Value = serde_json::from_str(DISCOUNT_CALL).unwrap();
    assert_eq!(plugin.execute_value(call.clone()).unwrap(), json!(80.0));

    let mut group = c.benchmark_group("rhai/discount");
    group_times(&mut group);
    group.bench_function("execute_sync_json_text", |b| {
        b.iter(|| {
            plugin
                .execute_sync(std::hint::black_box(DISCOUNT_CALL))
                .unwrap()
        })
    });
    group.bench_function("execute_value", |b| {
        b.iter_batched(
            || call.clone(),
            |call| plugin.execute_value(call).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("call_function", |b| {
        b.iter_batched(
            || vec![json!(100.0), json!("gold")],
            |args| plugin.call_function("calculate_discount", args).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("native/discount");
    group_times(&mut group);
    group.bench_function("rust_fn", |b| {
        b.iter(|| calculate_discount(std::hint::black_box(100.0), std::hint::black_box("gold")))
    });
    group.finish();
}

fn order_processor(c: &mut Criterion) {
    let plugin = RhaiPlugin::from_file(script("order_processor.rhai")).unwrap();
    let expected = json!({"status": "pending_approval", "reason": "High value order", "next_agent": "manager"});
    let out: Value = serde_json::from_str(&plugin.execute_sync(ORDER).unwrap()).unwrap();
    assert_eq!(out, expected);
    let order: Value = serde_json::from_str(ORDER).unwrap();
    assert_eq!(plugin.execute_value(order.clone()).unwrap(), expected);
    assert_eq!(
        serde_json::from_str::<Value>(&process_order_text(ORDER)).unwrap(),
        expected
    );

    let mut group = c.benchmark_group("rhai/order_processor");
    group_times(&mut group);
    group.bench_function("execute_sync_json_text", |b| {
        b.iter(|| plugin.execute_sync(std::hint::black_box(ORDER)).unwrap())
    });
    group.bench_function("execute_value", |b| {
        b.iter_batched(
            || order.clone(),
            |order| plugin.execute_value(order).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("native/order_processor");
    group_times(&mut group);
    group.bench_function("serde_json_text", |b| {
        b.iter(|| process_order_text(std::hint::black_box(ORDER)))
    });
    group.bench_function("value", |b| {
        b.iter(|| process_order(std::hint::black_box(&order)))
    });
    group.finish();
}

fn rules(c: &mut Criterion) {
    let engine = RuleEngine::from_file(script("rules/content_moderation.rhai")).unwrap();
    let plugin = RhaiPlugin::from_file(script("rules/content_moderation.rhai")).unwrap();
    let profanity = ProfanityFilter::default();
    let clean = Value::String(CLEAN_MESSAGE.to_string());
    let spam = Value::String(SPAM_MESSAGE.to_string());
    let clean_text = clean.to_string();
    for (message, rule) in [(&clean, "allow_default"), (&spam, "spam_filter")] {
        let decision = engine.evaluate(message).unwrap();
        assert_eq!(decision.rule.as_deref(), Some(rule));
        assert_eq!(decision, moderate(&profanity, message.as_str().unwrap()));
    }
    let out: Value = serde_json::from_str(&plugin.execute_sync(&clean_text).unwrap()).unwrap();
    assert_eq!(out, json!({"rule": "allow_default", "decision": "allow"}));

    let mut group = c.benchmark_group("rhai/rules");
    group_times(&mut group);
    group.bench_function("allow_default", |b| {
        b.iter(|| engine.evaluate(std::hint::black_box(&clean)).unwrap())
    });
    group.bench_function("spam_filter", |b| {
        b.iter(|| engine.evaluate(std::hint::black_box(&spam)).unwrap())
    });
    group.bench_function("plugin_json_text_allow_default", |b| {
        b.iter(|| {
            plugin
                .execute_sync(std::hint::black_box(&clean_text))
                .unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("native/rules");
    group_times(&mut group);
    group.bench_function("allow_default", |b| {
        b.iter(|| moderate(&profanity, std::hint::black_box(CLEAN_MESSAGE)))
    });
    group.bench_function("spam_filter", |b| {
        b.iter(|| moderate(&profanity, std::hint::black_box(SPAM_MESSAGE)))
    });
    group.finish();
}

fn actor(c: &mut Criterion) {
    let rt = runtime();
    let manager = rt.block_on(async {
        let manager = PluginManager::new("bench-rhai");
        manager
            .register(RhaiPlugin::from_file(script("order_processor.rhai")).unwrap())
            .await
            .unwrap();
        manager.load_all().await.unwrap();
        manager.start_all().await.unwrap();
        let out = manager
            .execute("order_processor", ORDER.to_string())
            .await
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap()["next_agent"],
            "manager"
        );
        manager
    });

    let mut group = c.benchmark_group("actor/order_processor");
    group_times(&mut group);
    group.bench_function("manager_execute_from_task_in_runtime", |b| {
        b.iter_custom(|iters| {
            let manager = manager.clone();
            rt.block_on(rt.spawn(async move {
                let started = Instant::now();
                for _ in 0..iters {
                    let out = manager
                        .execute("order_processor", ORDER.to_string())
                        .await
                        .unwrap();
                    std::hint::black_box(out);
                }
                started.elapsed()
            }))
            .unwrap()
        })
    });
    group.finish();
    rt.block_on(manager.shutdown()).unwrap();
}

criterion_group!(benches, discount, order_processor, rules, actor);
criterion_main!(benches);
