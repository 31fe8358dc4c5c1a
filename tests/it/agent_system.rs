//! Agent systems end to end: routing by `next_agent`, the W1 order workload with native
//! agents, dead letters (unknown agent, loop, failure, panic), fan-out, the conservation law
//! under load with injected failures, draining shutdown and admission backpressure.

use std::collections::HashSet;
use std::time::Duration;

use bilayer::prelude::*;
use bilayer::DEFAULT_MAX_BRANCHES;
use serde_json::{json, Value};

use crate::orders;
use crate::test_plugins::{step, Napping};

async fn orders_system(max_in_flight: usize) -> AgentSystem {
    let mut builder = AgentSystem::builder().max_in_flight(max_in_flight);
    for (name, plugin) in orders::native_agents() {
        builder = builder.agent_with(name, plugin, PluginOptions::new());
    }
    builder.build().await.expect("system builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_value_order_visits_intake_manager_fulfillment() {
    let system = orders_system(1024).await;
    let outcome = system
        .send(json!({"order_id": "ORD-123", "quantity": 5, "price": 250.0}))
        .await;
    assert_eq!(outcome.status, OutcomeStatus::Ok, "{outcome:?}");
    assert_eq!(outcome.hops, ["intake", "manager", "fulfillment"]);
    assert_eq!(outcome.agent.as_deref(), Some("fulfillment"));
    assert_eq!(outcome.output.as_ref().unwrap()["total"], json!(1250.0));
    assert_eq!(outcome.trace_id.len(), 16);
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w1_with_native_agents_gives_the_reference_figures() {
    let n = 10_000;
    let system = orders_system(4096).await;
    let mut stream = system.outcome_stream().unwrap();
    let producer = {
        let system = system.clone();
        tokio::spawn(async move {
            for i in 0..n {
                system.submit(orders::order(i)).await;
            }
        })
    };
    let (mut shipped, mut rejected, mut total) = (0u64, 0u64, 0.0f64);
    let mut seen = HashSet::new();
    for _ in 0..n {
        let outcome = stream.recv().await.unwrap();
        assert!(
            seen.insert(outcome.input),
            "input {} answered twice",
            outcome.input
        );
        match outcome.agent.as_deref() {
            Some("fulfillment") => {
                shipped += 1;
                total += outcome.output.unwrap()["total"].as_f64().unwrap();
            }
            Some("audit") => rejected += 1,
            other => panic!("unexpected terminal agent {other:?}"),
        }
    }
    producer.await.unwrap();
    assert_eq!((shipped, rejected), (9581, 419));
    assert_eq!(format!("{total:.2}"), "9198005.40");
    let (es, er, et) = orders::expected(n);
    assert_eq!(
        (es, er, format!("{et:.2}")),
        (9581, 419, "9198005.40".to_string())
    );
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_agent_loop_error_and_panic_become_dead_letters_with_reasons() {
    let system = AgentSystem::builder()
        .max_hops(8)
        .agent(
            "intake",
            step("intake", |m| {
                Ok(match m["case"].as_str().unwrap_or("") {
                    "unknown" => json!({"next_agent": "nobody"}),
                    "loop" => json!({"next_agent": "looper"}),
                    "error" => json!({"next_agent": "failing"}),
                    "panic" => json!({"next_agent": "panicking"}),
                    "bad" => json!({"next_agent": 42}),
                    _ => json!({"done": true}),
                })
            }),
        )
        .agent(
            "looper",
            step("looper", |_| Ok(json!({"next_agent": "looper"}))),
        )
        .agent(
            "failing",
            step("failing", |_| Err(PluginError::execution("out of stock"))),
        )
        .agent("panicking", step("panicking", |_| panic!("poisoned order")))
        .build()
        .await
        .unwrap();

    let unknown = system.send(json!({"case": "unknown"})).await;
    assert_eq!(unknown.status, OutcomeStatus::DeadLetter);
    assert!(unknown
        .reason
        .as_deref()
        .unwrap()
        .contains("unknown next_agent `nobody`"));
    assert_eq!(unknown.hops, ["intake"]);

    let looped = system.send(json!({"case": "loop"})).await;
    assert_eq!(looped.status, OutcomeStatus::DeadLetter);
    assert!(looped.reason.as_deref().unwrap().contains("hop limit of 8"));
    assert_eq!(looped.hops.len(), 8);

    let failed = system.send(json!({"case": "error"})).await;
    assert_eq!(failed.status, OutcomeStatus::DeadLetter);
    assert!(
        failed.reason.as_deref().unwrap().contains("out of stock"),
        "{failed:?}"
    );
    assert_eq!(failed.agent.as_deref(), Some("failing"));

    let panicked = system.send(json!({"case": "panic"})).await;
    assert_eq!(panicked.status, OutcomeStatus::DeadLetter);
    assert!(panicked
        .reason
        .as_deref()
        .unwrap()
        .contains("poisoned order"));

    let bad = system.send(json!({"case": "bad"})).await;
    assert!(bad
        .reason
        .as_deref()
        .unwrap()
        .contains("next_agent must be"));

    // The system keeps serving after all of that.
    let fine = system.send(json!({"case": "fine"})).await;
    assert!(fine.is_ok());

    assert_eq!(system.dead_letter_count(), 5);
    let letters = system.dead_letters();
    assert_eq!(letters.len(), 5);
    assert!(letters
        .iter()
        .any(|l| l.payload == json!({"next_agent": "nobody"})));
    assert_eq!(system.totals().dead_letter, 5);
    assert_eq!(system.totals().ok, 1);
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_next_agents_fans_out_and_the_caller_gets_every_result() {
    let system = AgentSystem::builder()
        .agent(
            "intake",
            step("intake", |m| {
                Ok(json!({"x": m["x"], "next_agent": ["double", "square"]}))
            }),
        )
        .agent(
            "double",
            step("double", |m| {
                Ok(json!({"double": m["x"].as_i64().unwrap() * 2}))
            }),
        )
        .agent(
            "square",
            step("square", |m| {
                Ok(json!({"square": m["x"].as_i64().unwrap().pow(2)}))
            }),
        )
        .build()
        .await
        .unwrap();
    let outcome = system.send(json!({"x": 7})).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(outcome.branches.len(), 2);
    assert_eq!(outcome.hops, ["intake"]);
    assert_eq!(
        outcome.output,
        Some(json!([{"double": 14}, {"square": 49}]))
    );
    system.shutdown().await.unwrap();
}

/// An agent that fans out to two copies of itself doubles its branches every hop; the hop limit
/// bounds depth, `max_branches` bounds breadth: the input ends with at most that many
/// branches, the fan-out past it dead-lettered with a reason naming the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_fan_out_ends_at_max_branches_with_the_excess_dead_lettered() {
    for (max_branches, expected) in [(16u32, 16usize), (DEFAULT_MAX_BRANCHES, 1024)] {
        let system = AgentSystem::builder()
            .max_branches(max_branches)
            .agent(
                "twin",
                step("twin", |mut m| {
                    m["next_agent"] = json!(["twin", "twin"]);
                    Ok(m)
                }),
            )
            .build()
            .await
            .unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(60), system.send(json!({"n": 1})))
            .await
            .expect("the input ends");
        assert_eq!(
            outcome.status,
            OutcomeStatus::DeadLetter,
            "{:?}",
            outcome.reason
        );
        assert_eq!(
            outcome.branches.len(),
            expected,
            "one branch per fan-out leaf"
        );
        let reason = outcome.reason.as_deref().unwrap();
        assert_eq!(
            reason,
            format!(
                "fan-out to 2 agents would let this input end in more than {max_branches} \
                 branches (max_branches; raise it, or fan out less)"
            )
        );
        assert!(outcome
            .branches
            .iter()
            .all(|b| b.status == OutcomeStatus::DeadLetter));
        assert_eq!(system.totals().dead_letter, 1, "one input, one outcome");
        system.shutdown().await.unwrap();
    }
}

/// A fan-out within the limit is untouched: 4 × 4 = 16 branches with `max_branches = 16`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_outs_whose_widths_multiply_to_max_branches_are_all_made() {
    let system = AgentSystem::builder()
        .max_branches(16)
        .agent(
            "split",
            step("split", |m| {
                Ok(json!({"next_agent": ["leaf", "leaf", "leaf", "leaf"], "x": m["x"]}))
            }),
        )
        .agent(
            "leaf",
            step("leaf", |m| {
                Ok(if m["x"] == json!(0) {
                    json!({"x": 1, "next_agent": ["leaf", "leaf", "leaf", "leaf"]})
                } else {
                    json!({"done": true})
                })
            }),
        )
        .entry("split")
        .build()
        .await
        .unwrap();
    let outcome = system.send(json!({"x": 0})).await;
    assert_eq!(outcome.status, OutcomeStatus::Ok, "{:?}", outcome.reason);
    assert_eq!(outcome.branches.len(), 16);
    system.shutdown().await.unwrap();
}

/// Every input ends as exactly one outcome, whatever fails along the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conservation_every_input_ends_exactly_once_under_load_with_failures() {
    let n: u64 = 5_000;
    let system = AgentSystem::builder()
        .max_hops(6)
        .max_in_flight(256)
        .restart_intensity(1_000_000, Duration::from_secs(1))
        .agent(
            "intake",
            step("intake", |m| {
                let i = m["i"].as_u64().unwrap();
                let next = match i % 10 {
                    0 => json!("nobody"),
                    1 => json!("looper"),
                    2 => json!(["work", "work"]),
                    _ => json!("work"),
                };
                Ok(json!({"i": i, "next_agent": next}))
            }),
        )
        .agent(
            "looper",
            step("looper", |m| {
                Ok(json!({"i": m["i"], "next_agent": "looper"}))
            }),
        )
        .agent(
            "work",
            step("work", |m| {
                let i = m["i"].as_u64().unwrap();
                match i % 7 {
                    3 => Err(PluginError::execution("injected failure")),
                    5 => panic!("injected panic"),
                    _ => Ok(json!({"i": i, "done": true})),
                }
            }),
        )
        .build()
        .await
        .unwrap();
    let mut stream = system.outcome_stream().unwrap();
    let producer = {
        let system = system.clone();
        tokio::spawn(async move {
            for i in 0..n {
                system.submit_numbered(i + 1, json!({"i": i})).await;
            }
            // A malformed line is an input too.
            system
                .submit_refused(n + 1, "line is not JSON".into())
                .await;
        })
    };
    let mut seen = HashSet::new();
    let (mut ok, mut error, mut dead) = (0u64, 0u64, 0u64);
    for _ in 0..=n {
        let outcome = tokio::time::timeout(Duration::from_secs(30), stream.recv())
            .await
            .expect("no outcome may hang")
            .unwrap();
        assert!(
            seen.insert(outcome.input),
            "input {} ended twice",
            outcome.input
        );
        match outcome.status {
            OutcomeStatus::Ok => ok += 1,
            OutcomeStatus::Error => error += 1,
            OutcomeStatus::DeadLetter => {
                assert!(outcome.reason.is_some());
                dead += 1
            }
        }
    }
    producer.await.unwrap();
    assert_eq!(ok + error + dead, n + 1);
    assert_eq!(error, 1);
    assert!(dead > n / 5, "failures were injected: {dead}");
    assert!(ok > n / 3, "most inputs succeed: {ok}");
    let totals = system.totals();
    assert_eq!(
        (totals.ok, totals.error, totals.dead_letter),
        (ok, error, dead)
    );
    // Nothing more arrives: exactly one outcome per input.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), stream.recv())
            .await
            .is_err()
    );
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_everything_already_accepted() {
    let system = orders_system(512).await;
    let mut stream = system.outcome_stream().unwrap();
    let consumer = tokio::spawn(async move {
        let mut count = 0;
        while let Some(_outcome) = stream.recv().await {
            count += 1;
            if count == 3000 {
                break;
            }
        }
        count
    });
    for i in 0..3000 {
        system.submit(orders::order(i)).await;
    }
    system.shutdown().await.unwrap();
    assert_eq!(consumer.await.unwrap(), 3000);
    let late = system.send(orders::order(1)).await;
    assert_eq!(late.status, OutcomeStatus::Error);
    assert!(late.error.unwrap().contains("shutting down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_outcome_stream_holds_back_producers() {
    let system = orders_system(8).await;
    let mut stream = system.outcome_stream().unwrap();
    for i in 0..8 {
        system.submit(orders::order(i)).await;
    }
    // The ninth input waits for a slot: nobody has received an outcome yet.
    let ninth =
        tokio::time::timeout(Duration::from_millis(300), system.submit(orders::order(8))).await;
    assert!(ninth.is_err(), "admission must be bounded");
    // Receiving one outcome frees one slot.
    stream.recv().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), system.submit(orders::order(9)))
        .await
        .expect("a slot was freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_input_is_an_error_outcome() {
    let system = orders_system(16).await;
    let outcome = system.send_str("{not json").await;
    assert_eq!(outcome.status, OutcomeStatus::Error);
    assert!(outcome.error.unwrap().contains("not valid JSON"));
    assert!(system.send_str(&orders::order(3).to_string()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_agents_dead_letter_carries_its_input_unless_told_not_to() {
    for keep in [true, false] {
        let system = AgentSystem::builder()
            .dead_letter_payloads(keep)
            .agent(
                "failing",
                step("failing", |_| Err(PluginError::execution("no"))),
            )
            .build()
            .await
            .unwrap();
        let outcome = system.send(json!({"order": 7})).await;
        assert_eq!(outcome.status, OutcomeStatus::DeadLetter);
        let letter = system.dead_letters().pop().unwrap();
        let expected = if keep {
            json!({"order": 7})
        } else {
            Value::Null
        };
        assert_eq!(letter.payload, expected);
        system.shutdown().await.unwrap();
    }
}

/// Rhai agents of the tool and functions forms read the message they are lent (they no longer
/// copy it): they answer the same whether the system keeps failed messages or hands them over,
/// and a refused call's dead letter carries the message, or nothing when told not to keep it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rhai_tool_and_functions_agents_serve_with_or_without_kept_payloads() {
    use bilayer::rhai_runtime::RhaiPlugin;
    let tool = r#"
        let tool = #{ name: "add", description: "Adds",
            parameters: #{ type: "object",
                properties: #{ a: #{ type: "number" }, b: #{ type: "number" } },
                required: ["a", "b"] } };
        fn execute(args) { #{ sum: args.a + args.b } }
        #{ tool: tool, execute: execute }
    "#;
    let functions =
        "fn double(x) { #{ doubled: x * 2 } }\nfn pair(a, b) { #{ first: a, second: b } }";
    for keep in [true, false] {
        for (name, source, good, output, bad) in [
            (
                "add",
                tool,
                json!({"a": 1, "b": 2}),
                json!({"sum": 3}),
                json!({"a": "one", "b": 2}),
            ),
            (
                "math",
                functions,
                json!({"function": "pair", "args": {"b": "y", "a": "x"}}),
                json!({"first": "x", "second": "y"}),
                json!({"function": "double", "args": [1, 2]}),
            ),
        ] {
            let plugin = RhaiPlugin::from_source(name, source).unwrap();
            assert!(plugin.is_bounded(), "{name} runs on the agent's turn");
            let system = AgentSystem::builder()
                .dead_letter_payloads(keep)
                .agent(name, plugin)
                .build()
                .await
                .unwrap();
            let served = system.send(good.clone()).await;
            assert_eq!(served.status, OutcomeStatus::Ok, "{served:?}");
            assert_eq!(served.output, Some(output));
            let refused = system.send(bad.clone()).await;
            assert_eq!(refused.status, OutcomeStatus::DeadLetter, "{refused:?}");
            let letter = system.dead_letters().pop().unwrap();
            assert_eq!(letter.payload, if keep { bad } else { Value::Null });
            system.shutdown().await.unwrap();
        }
    }
}

/// The native W1 agents edit each message into their output; what comes out must be what the
/// Rhai agents of examples/orders build afresh, hop for hop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_and_rhai_order_agents_give_the_same_outcomes() {
    let native = orders_system(1024).await;
    let mut builder = AgentSystem::builder();
    for name in ["intake", "manager", "fulfillment", "audit"] {
        let path = format!("{}/examples/orders/{name}.rhai", env!("CARGO_MANIFEST_DIR"));
        builder = builder.agent(
            name,
            bilayer::rhai_runtime::RhaiPlugin::from_file(path).unwrap(),
        );
    }
    let rhai = builder.build().await.unwrap();
    let mut paths = HashSet::new();
    for i in 0..400 {
        let (a, b) = (
            native.send(orders::order(i)).await,
            rhai.send(orders::order(i)).await,
        );
        assert_eq!(a.status, OutcomeStatus::Ok, "{a:?}");
        assert_eq!((&a.hops, &a.output), (&b.hops, &b.output), "order {i}");
        paths.insert(a.hops.clone());
    }
    assert_eq!(paths.len(), 3, "all three routes were taken: {paths:?}");
    native.shutdown().await.unwrap();
    rhai.shutdown().await.unwrap();
}

/// A transforming agent checks before it edits: a bad message is dead-lettered as it came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_order_is_dead_lettered_as_it_came() {
    let system = orders_system(16).await;
    let bad = json!({"order_id": "ORD-9", "quantity": 2, "price": "cheap", "note": "keep me"});
    let outcome = system.send(bad.clone()).await;
    assert_eq!(outcome.status, OutcomeStatus::DeadLetter, "{outcome:?}");
    assert!(outcome.reason.unwrap().contains("`price` must be a number"));
    assert_eq!(system.dead_letters().pop().unwrap().payload, bad);
    let not_an_object = system.send(json!([1, 2])).await;
    assert_eq!(not_an_object.status, OutcomeStatus::DeadLetter);
    system.shutdown().await.unwrap();
}

/// Rhai agents fail like any other: a script error or a runaway loop is a dead letter carrying
/// the message as it came, with the script's reason, and the agent serves the next message.
/// A bounded script answers on the agent's own turn (no async call); one with a loop runs on a
/// blocking thread under its time limit; both must behave the same way here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rhai_agents_that_throw_or_run_away_become_dead_letters_and_serve_on() {
    use bilayer::rhai_runtime::{RhaiConfig, RhaiPlugin};
    let check = RhaiPlugin::from_source(
        "check",
        r#"
        fn check(msg) {
            if msg.n < 0 { throw "n must not be negative"; }
            let next = if msg.spin { "spinner" } else { "done" };
            #{ n: msg.n, next_agent: next }
        }
        check
        "#,
    )
    .unwrap();
    let done = RhaiPlugin::from_source("done", "fn done(msg) { #{ n: msg.n, done: true } }\ndone")
        .unwrap();
    let spinner = RhaiPlugin::from_source("spinner", "fn spin(msg) { loop {} }\nspin")
        .unwrap()
        .with_config(RhaiConfig::new().timeout(Duration::from_millis(200)))
        .unwrap();
    assert!(check.is_bounded() && done.is_bounded());
    assert!(!spinner.is_bounded());
    let system = AgentSystem::builder()
        .agent("check", check)
        .agent("done", done)
        .agent("spinner", spinner)
        .build()
        .await
        .unwrap();

    let ok = system.send(json!({"n": 1, "spin": false})).await;
    assert_eq!(ok.status, OutcomeStatus::Ok, "{ok:?}");
    assert_eq!(ok.hops, vec!["check", "done"]);
    assert_eq!(ok.output, Some(json!({"n": 1, "done": true})));

    let negative = json!({"n": -1, "spin": false});
    let thrown = system.send(negative.clone()).await;
    assert_eq!(thrown.status, OutcomeStatus::DeadLetter, "{thrown:?}");
    let reason = thrown.reason.unwrap();
    assert!(reason.contains("n must not be negative"), "{reason}");
    assert_eq!(system.dead_letters().pop().unwrap().payload, negative);

    let runaway = system.send(json!({"n": 2, "spin": true})).await;
    assert_eq!(runaway.status, OutcomeStatus::DeadLetter, "{runaway:?}");
    assert_eq!(runaway.hops, vec!["check", "spinner"]);
    let reason = runaway.reason.unwrap();
    // Whichever limit stops the loop first (operations or time), the reason names it.
    assert!(reason.contains("limit exceeded"), "{reason}");

    // Both agents serve on after their failures.
    let again = system.send(json!({"n": 3, "spin": false})).await;
    assert_eq!(again.status, OutcomeStatus::Ok, "{again:?}");
    assert_eq!(system.dead_letter_count(), 2);
    system.shutdown().await.unwrap();
}

/// A message nested thousands of levels deep (a `Value` built in code has no depth bound)
/// reaching a Rhai agent is refused at `max_json_depth`, as the agent's outputs are, instead of
/// converting it recursively until the worker's stack overflows and takes the process down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_message_to_a_rhai_agent_is_a_dead_letter_not_a_crash() {
    use bilayer::rhai_runtime::RhaiPlugin;
    let agent =
        RhaiPlugin::from_source("reader", "fn read(msg) { #{ seen: true } }\nread").unwrap();
    let system = AgentSystem::builder()
        .agent("reader", agent)
        .build()
        .await
        .unwrap();
    // Arrays: dropping nested arrays takes little stack per level, so only the conversion
    // could overflow.
    let mut deep = json!(1);
    for _ in 0..3_000 {
        deep = Value::Array(vec![deep]);
    }
    let refused = system.send(deep).await;
    assert_eq!(refused.status, OutcomeStatus::DeadLetter, "{refused:?}");
    let reason = refused.reason.unwrap();
    assert!(
        reason.contains("max_json_depth") && reason.contains("128 levels"),
        "{reason}"
    );
    let served = system.send(json!({"n": 1})).await;
    assert_eq!(served.output, Some(json!({"seen": true})), "{served:?}");
    system.shutdown().await.unwrap();
}

/// A system dropped without `shutdown` stops its agents, but loses nothing it accepted: every
/// admitted input still has one outcome on the stream (served, or a dead letter because its
/// agent stopped), and then the stream ends rather than waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_dropped_without_shutdown_accounts_for_every_input_then_its_stream_ends() {
    // Rounds with turns of different lengths, so that the drop lands at different points of
    // the agents' turns: the supervisor used to kill an agent still in a turn, and the
    // messages left in its inbox then never ended (the stream hung one run in a few).
    for round in 0..12u64 {
        let micros = 50 + (round % 4) * 200;
        let slow = step("slow", move |mut msg| {
            std::thread::sleep(Duration::from_micros(micros));
            msg["next_agent"] = json!("end");
            Ok(msg)
        });
        let end = step("end", move |mut msg| {
            std::thread::sleep(Duration::from_micros(micros / 2));
            msg["next_agent"] = Value::Null;
            Ok(msg)
        });
        let system = AgentSystem::builder()
            .max_in_flight(64)
            .agent("slow", slow)
            .agent("end", end)
            .build()
            .await
            .unwrap();
        let mut stream = system.outcome_stream().unwrap();
        let reader = tokio::spawn(async move {
            let (mut served, mut stopped) = (0, 0);
            while let Some(outcome) = stream.recv().await {
                match outcome.status {
                    OutcomeStatus::Ok => served += 1,
                    OutcomeStatus::DeadLetter
                        if outcome
                            .reason
                            .as_deref()
                            .is_some_and(|r| r.contains("not running")) =>
                    {
                        stopped += 1
                    }
                    _ => panic!("unexpected outcome {outcome:?}"),
                }
            }
            (served, stopped)
        });
        for i in 0..200 {
            system.submit(json!({ "i": i })).await;
        }
        drop(system);
        let (served, stopped) = tokio::time::timeout(Duration::from_secs(20), reader)
            .await
            .unwrap_or_else(|_| {
                panic!("round {round}: the outcome stream ends once the dropped system has accounted for everything")
            })
            .unwrap();
        assert_eq!(
            served + stopped,
            200,
            "round {round}: served {served}, stopped {stopped}"
        );
    }
}

/// A turn longer than the grace of a dropped system (one hop timeout): the agent is killed while
/// it awaits a hop. The message it was handling and those still waiting are dead letters; none
/// goes missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_hop_dead_letters_the_message_it_was_handling() {
    let napping = Napping(
        PluginMetadata::new("napping", "Napping", PluginType::Custom("test".into())),
        Duration::from_millis(100),
    );
    let system = AgentSystem::builder()
        .hop_timeout(Some(Duration::from_millis(300)))
        .agent("napping", napping)
        .build()
        .await
        .unwrap();
    let mut stream = system.outcome_stream().unwrap();
    for i in 0..10 {
        system.submit(json!({ "i": i })).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(system);
    let mut outcomes = Vec::new();
    while let Some(outcome) = tokio::time::timeout(Duration::from_secs(10), stream.recv())
        .await
        .expect("the stream ends")
    {
        outcomes.push(outcome);
    }
    let mut inputs: Vec<u64> = outcomes.iter().map(|o| o.input).collect();
    inputs.sort_unstable();
    assert_eq!(inputs, (1..=10).collect::<Vec<_>>(), "{outcomes:?}");
    let served = outcomes
        .iter()
        .filter(|o| o.status == OutcomeStatus::Ok)
        .count();
    assert!(
        served < 10,
        "the kill came before the turn ended: {outcomes:?}"
    );
    for outcome in outcomes.iter().filter(|o| o.status != OutcomeStatus::Ok) {
        assert_eq!(outcome.status, OutcomeStatus::DeadLetter, "{outcome:?}");
        assert!(
            outcome.reason.as_deref().unwrap().contains("not running"),
            "{outcome:?}"
        );
    }
}

/// A handle on the system's manager keeps its agents serving, but not the dropped system: once
/// every admitted input has its outcome, the outcome stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_manager_does_not_hold_a_dropped_systems_stream_open() {
    let system = orders_system(1024).await;
    let manager = system.manager().clone();
    let mut stream = system.outcome_stream().unwrap();
    for i in 0..200 {
        system.submit(orders::order(i)).await;
    }
    drop(system);
    let mut received = 0;
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(outcome) = stream.recv().await {
            assert_eq!(outcome.status, OutcomeStatus::Ok, "{outcome:?}");
            received += 1;
        }
    })
    .await
    .expect("the outcome stream ends once every admitted input has its outcome");
    assert_eq!(received, 200);
    drop(manager);
}
