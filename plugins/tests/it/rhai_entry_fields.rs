//! An entry function that only ever names fields of its message gets only those fields
//! converted into Rhai values (plugins/src/rhai_runtime/fields_read.rs). It computes what it
//! computed with the whole message; a field it never names, however deep, no longer refuses the
//! message; and a script that uses the message as a whole still sees every field, under every
//! limit.

use bilayer_plugins::rhai_runtime::{RhaiConfig, RhaiPlugin};
use serde_json::{json, Value};

/// An object nested `levels` deep: past `max_json_depth` (128 by default) at 200, and shallow
/// enough for a debug build to drop (nested maps take much stack per level).
fn deep(levels: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..levels {
        value = json!({ "inner": value });
    }
    value
}

#[test]
fn a_function_that_names_fields_gets_them_and_ignores_the_rest() {
    let plugin = RhaiPlugin::from_source(
        "reader",
        "fn read(msg) {\n\
             msg.b = msg.a * 2;\n\
             #{ a: msg.a, b: msg.b, first: msg.items[0], has_missing: msg.missing == () }\n\
         }\nread",
    )
    .unwrap();
    let message = json!({ "a": 21, "items": ["x", "y"], "unread": deep(200) });
    assert_eq!(
        plugin.execute_value(message).unwrap(),
        json!({ "a": 21, "b": 42, "first": "x", "has_missing": true })
    );
    // A field it names is converted whole, limits included.
    let refused = plugin
        .execute_value(json!({ "a": 1, "items": [deep(200)] }))
        .unwrap_err();
    assert!(refused.to_string().contains("max_json_depth"), "{refused}");
    // A message that is not an object goes in whole, as before.
    let not_an_object = plugin.execute_value(json!([1, 2])).unwrap_err();
    assert!(!not_an_object.to_string().is_empty());
}

#[test]
fn a_function_that_uses_the_whole_message_sees_every_field() {
    let message = json!({ "a": 1, "b": 2, "c": "three" });
    for (source, expected) in [
        ("fn count(msg) { msg.len() }\ncount", json!(3)),
        (
            "fn count(msg) { msg.keys().len() + msg.a }\ncount",
            json!(4),
        ),
        ("fn count(msg) { let m = msg; m.len() }\ncount", json!(3)),
        ("fn count(msg) { msg[\"c\"] }\ncount", json!("three")),
        (
            "fn count(msg) { msg.a = 5; msg }\ncount",
            json!({ "a": 5, "b": 2, "c": "three" }),
        ),
        (
            "fn count(msg) { helper(msg) }\nfn helper(m) { m.len() }\ncount",
            json!(3),
        ),
        (
            "fn count(msg) { [0].map(|x| msg.len() + x)[0] }\ncount",
            json!(3),
        ),
        (
            "fn count(msg) { `${msg.a}/${msg}`.len() > 4 }\ncount",
            json!(true),
        ),
    ] {
        let plugin = RhaiPlugin::from_source("whole", source).unwrap();
        assert_eq!(
            plugin.execute_value(message.clone()).unwrap(),
            expected,
            "{source}"
        );
    }
    // And the limits still cover all of it.
    let plugin = RhaiPlugin::from_source("whole", "fn count(msg) { msg.len() }\ncount").unwrap();
    let refused = plugin
        .execute_value(json!({ "a": 1, "unread": deep(200) }))
        .unwrap_err();
    assert!(refused.to_string().contains("max_json_depth"), "{refused}");
}

#[test]
fn a_message_given_as_text_gets_the_same_treatment() {
    let config = RhaiConfig::new().max_json_depth(8);
    let source = "fn read(msg) { msg.a * 2 }\nread";
    let plugin = RhaiPlugin::from_source_with_config("reader", source, config).unwrap();
    let fine = json!({ "a": 21, "unread": deep(20) });
    assert_eq!(plugin.execute_value(fine.clone()).unwrap(), json!(42));
    assert_eq!(plugin.execute_sync(&fine.to_string()).unwrap(), "42");
    let named_too_deep = json!({ "a": deep(20) });
    let by_value = plugin.execute_value(named_too_deep.clone()).unwrap_err();
    let by_text = plugin
        .execute_sync(&named_too_deep.to_string())
        .unwrap_err();
    for refused in [by_value, by_text] {
        assert!(refused.to_string().contains("max_json_depth"), "{refused}");
    }
    let not_json = plugin.execute_sync("{not json").unwrap_err();
    assert!(
        not_json.to_string().contains("not valid JSON"),
        "{not_json}"
    );
}
