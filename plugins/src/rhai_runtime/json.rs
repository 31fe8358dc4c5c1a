//! JSON at the script boundary: text and `serde_json::Value` to Rhai values and back, with the
//! size limits checked where Rhai does not check them.
//!
//! Conversions go straight between JSON text and `Dynamic` through serde (Rhai's `Dynamic`
//! implements `Serialize` and `Deserialize`), with no `serde_json::Value` in between on the text
//! path, because the order processor's whole call is a few microseconds and an extra tree copy
//! would be a visible part of it. Between `serde_json::Value` and `Dynamic` the conversion is
//! written out by hand instead of going through serde: Rhai's serializer turns every map key into a
//! shared string and back and downcasts its map per entry, and its deserializer compares type names
//! per node (docs/benchmarks.md, section "Rhai values built by hand", has what writing them out
//! gained W1 with Rhai agents). Values the hand-written path does not know (timestamps, function
//! pointers, custom types) still go through serde, so the results are the same, except that a
//! shared value (which only Rust code can hand over: scripts flatten theirs) is read through where
//! serde refused it.
//!
//! Rhai checks data sizes lazily (after `let`, op-assignments and function calls), so a value
//! built with index assignments (`m[k] = v` in a loop) can leave a script larger than its
//! limits, and nothing in Rhai bounds nesting depth. Every value leaving a script (its result,
//! a value stored into `state`, a `parse_json` result) is therefore measured here first, with
//! the recursion bounded by `max_json_depth`.

use rhai::Dynamic;
use serde_json::Value;

use super::RhaiConfig;
use crate::{LimitSettings, PluginError, PluginResult};

/// Parses JSON text straight into a Rhai value.
pub(crate) fn dynamic_from_json_text(text: &str) -> serde_json::Result<Dynamic> {
    serde_json::from_str(text)
}

/// Converts a JSON value into a Rhai value, as `rhai::serde::to_dynamic` would: integers that
/// fit an `INT` become integers, every other number a float. Values nested deeper than
/// `max_depth` (`RhaiConfig::max_json_depth`) are refused, as they are on the way out: a
/// `serde_json::Value` built in code has no depth bound, and converting one recursively could
/// overflow the thread's stack, which no error handling survives.
pub(crate) fn dynamic_from_value(value: &Value, max_depth: usize) -> Result<Dynamic, LimitBreach> {
    convert_value(value, 1, max_depth)
}

fn convert_value(value: &Value, depth: usize, max_depth: usize) -> Result<Dynamic, LimitBreach> {
    let is_container = matches!(value, Value::Array(_) | Value::Object(_));
    if is_container && depth > max_depth {
        return Err(too_deep(max_depth));
    }
    Ok(match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(int) => Dynamic::from_int(int),
            // A float, or an integer above `INT::MAX` (Rhai's serializer makes it a float too).
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => rhai::ImmutableString::from(s.as_str()).into(),
        Value::Array(items) => Dynamic::from_array(
            items
                .iter()
                .map(|item| convert_value(item, depth + 1, max_depth))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(fields) => {
            // Inserted one by one: `collect` into a `BTreeMap` buffers and sorts the entries
            // first, which costs more than the inserts for a message's few fields.
            let mut map = rhai::Map::new();
            for (key, item) in fields {
                map.insert(
                    key.as_str().into(),
                    convert_value(item, depth + 1, max_depth)?,
                );
            }
            Dynamic::from_map(map)
        }
    })
}

/// The fields of `message` named in `fields` (sorted), as a Rhai map: the argument of an entry
/// function that can see only those ([`super::fields_read`]). Refused like
/// [`dynamic_from_value`] if one of them nests deeper than `max_depth`.
pub(crate) fn dynamic_from_fields(
    message: &serde_json::Map<String, Value>,
    fields: &[String],
    max_depth: usize,
) -> Result<Dynamic, LimitBreach> {
    if max_depth < 1 {
        return Err(too_deep(max_depth));
    }
    let mut map = rhai::Map::new();
    for name in fields {
        if let Some(item) = message.get(name) {
            map.insert(name.as_str().into(), convert_value(item, 2, max_depth)?);
        }
    }
    Ok(Dynamic::from_map(map))
}

fn too_deep(max_depth: usize) -> LimitBreach {
    LimitBreach {
        limit: "max_json_depth",
        detail: format!("values nest deeper than {max_depth} levels"),
    }
}

/// Converts a Rhai value that is no string, array or map into JSON, as
/// `rhai::serde::from_dynamic` would: a float that is not finite becomes `null`, a character a
/// one-character string, and what JSON has no literal for (blobs, timestamps, function
/// pointers, custom types) goes through serde itself.
fn leaf_from_dynamic(value: &Dynamic) -> PluginResult<Value> {
    if let Ok(float) = value.as_float() {
        return Ok(serde_json::Number::from_f64(float).map_or(Value::Null, Value::Number));
    }
    if let Ok(int) = value.as_int() {
        return Ok(Value::from(int));
    }
    if let Ok(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(c) = value.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    rhai::serde::from_dynamic(value).map_err(|e| PluginError::json(e.to_string(), e))
}

/// Converts a Rhai value leaving a script into JSON, measured against the limits of
/// [`check_boundary_value`] in the same walk (measuring first was a second walk:
/// docs/benchmarks.md, section "One walk for a Rhai hop's output"). A breach is reported as `what`
/// broke the limit. A shared value converts as the value it holds (only Rust code can hand one
/// over: scripts flatten theirs).
pub(crate) fn value_from_dynamic_within(
    value: &Dynamic,
    config: &RhaiConfig,
    what: impl FnOnce() -> String,
) -> PluginResult<Value> {
    json_within(value, config).map_err(|refused| match refused {
        Refused::Limit(breach) => breach.into_error(&what(), &config.limit_settings),
        Refused::Error(error) => error,
    })
}

/// [`value_from_dynamic_within`] for callers that word its two failures themselves.
pub(crate) fn json_within(value: &Dynamic, config: &RhaiConfig) -> Result<Value, Refused> {
    convert_measured(value, 1, config, &mut Totals::default())
}

/// Why a value could not leave a script as JSON.
pub(crate) enum Refused {
    /// It breaks a size or nesting limit.
    Limit(LimitBreach),
    /// JSON cannot hold it (a function pointer, a custom type).
    Error(PluginError),
}

impl From<LimitBreach> for Refused {
    fn from(breach: LimitBreach) -> Self {
        Refused::Limit(breach)
    }
}

/// What `measure` counts, counted while converting.
fn convert_measured(
    value: &Dynamic,
    depth: usize,
    config: &RhaiConfig,
    totals: &mut Totals,
) -> Result<Value, Refused> {
    // Each value's type is tested with the `is_*` matches first: a failed `as_*_ref` costs a
    // lock check and names the actual type, four times over for every number.
    if value.is_string() {
        if let Ok(text) = value.as_immutable_string_ref() {
            count_string(totals, text.len(), config)?;
            return Ok(Value::String(text.as_str().to_owned()));
        }
    }
    let (is_map, is_array, is_blob) = (value.is_map(), value.is_array(), value.is_blob());
    if !(is_map || is_array || is_blob) {
        return leaf_from_dynamic(value).map_err(Refused::Error);
    }
    if depth > config.max_json_depth {
        return Err(too_deep(config.max_json_depth).into());
    }
    if is_map {
        if let Ok(map) = value.as_map_ref() {
            count_map(totals, map.len(), config)?;
            let mut fields = serde_json::Map::new();
            for (key, item) in map.iter() {
                count_string(totals, key.len(), config)?;
                fields.insert(
                    key.as_str().to_owned(),
                    convert_measured(item, depth + 1, config, totals)?,
                );
            }
            return Ok(Value::Object(fields));
        }
    }
    if is_array {
        if let Ok(array) = value.as_array_ref() {
            count_array(totals, array.len(), config)?;
            return array
                .iter()
                .map(|item| convert_measured(item, depth + 1, config, totals))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array);
        }
    }
    if is_blob {
        if let Ok(blob) = value.as_blob_ref() {
            count_array(totals, blob.len(), config)?;
        }
    }
    // Blobs, which serde turns into arrays of numbers.
    leaf_from_dynamic(value).map_err(Refused::Error)
}

fn count_string(totals: &mut Totals, len: usize, config: &RhaiConfig) -> Result<(), LimitBreach> {
    add(
        &mut totals.string_bytes,
        len,
        "max_string_size",
        config.max_string_size,
        "bytes of string",
    )
}

fn count_array(totals: &mut Totals, len: usize, config: &RhaiConfig) -> Result<(), LimitBreach> {
    add(
        &mut totals.array_elements,
        len,
        "max_array_size",
        config.max_array_size,
        "array elements",
    )
}

fn count_map(totals: &mut Totals, len: usize, config: &RhaiConfig) -> Result<(), LimitBreach> {
    add(
        &mut totals.map_entries,
        len,
        "max_map_size",
        config.max_map_size,
        "map entries",
    )
}

/// Serializes a Rhai value as JSON text (after [`check_boundary_value`]).
pub(crate) fn dynamic_to_json_text(value: &Dynamic) -> PluginResult<String> {
    serde_json::to_string(value).map_err(PluginError::from)
}

/// A limit a value broke: the limit's name and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LimitBreach {
    pub(crate) limit: &'static str,
    pub(crate) detail: String,
}

impl LimitBreach {
    /// The error for `what` breaking the limit, its advice naming the setting as `settings`
    /// say.
    pub(crate) fn into_error(self, what: &str, settings: &LimitSettings) -> PluginError {
        PluginError::LimitExceeded {
            limit: self.limit.to_string(),
            detail: format!(
                "{what}: {}; {}",
                self.detail,
                settings.advice("RhaiConfig", self.limit, "use less data")
            ),
        }
    }
}

#[derive(Default)]
struct Totals {
    string_bytes: usize,
    array_elements: usize,
    map_entries: usize,
}

/// Checks `value` against the size and nesting limits of `config`.
pub(crate) fn check_boundary_value(
    value: &Dynamic,
    config: &RhaiConfig,
) -> Result<(), LimitBreach> {
    let mut totals = Totals::default();
    measure(value, 1, config, &mut totals)
}

fn measure(
    value: &Dynamic,
    depth: usize,
    config: &RhaiConfig,
    totals: &mut Totals,
) -> Result<(), LimitBreach> {
    if let Ok(s) = value.as_immutable_string_ref() {
        return count_string(totals, s.len(), config);
    }
    let is_container = value.is_array() || value.is_map() || value.is_blob();
    if is_container && depth > config.max_json_depth {
        return Err(too_deep(config.max_json_depth));
    }
    if let Ok(array) = value.as_array_ref() {
        count_array(totals, array.len(), config)?;
        for item in array.iter() {
            measure(item, depth + 1, config, totals)?;
        }
    } else if let Ok(map) = value.as_map_ref() {
        count_map(totals, map.len(), config)?;
        for (key, item) in map.iter() {
            count_string(totals, key.len(), config)?;
            measure(item, depth + 1, config, totals)?;
        }
    } else if let Ok(blob) = value.as_blob_ref() {
        count_array(totals, blob.len(), config)?;
    }
    Ok(())
}

fn add(
    total: &mut usize,
    amount: usize,
    limit: &'static str,
    max: usize,
    unit: &str,
) -> Result<(), LimitBreach> {
    *total = total.saturating_add(amount);
    if *total > max {
        Err(LimitBreach {
            limit,
            detail: format!("more than {max} {unit}"),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value leaving a script, converted within the default limits.
    fn value_from_dynamic(value: &Dynamic) -> PluginResult<Value> {
        value_from_dynamic_within(value, &RhaiConfig::default(), String::new)
    }

    #[test]
    fn json_text_round_trips_through_dynamic() {
        let value = dynamic_from_json_text(
            r#"{"id":"ORD-1","quantity":5,"price":250.0,"tags":["a"],"x":null}"#,
        )
        .unwrap();
        let text = dynamic_to_json_text(&value).unwrap();
        assert_eq!(
            text,
            r#"{"id":"ORD-1","price":250.0,"quantity":5,"tags":["a"],"x":null}"#
        );
    }

    /// The hand-written conversions agree with Rhai's serde ones on every kind of JSON value.
    #[test]
    fn value_conversions_match_rhai_serde() {
        let value: Value = serde_json::from_str(
            r#"{"s":"text","long":"a string longer than twenty-three bytes","i":-5,"u":7,
                "big":18446744073709551615,"f":2.5,"whole":3.0,"t":true,"n":null,
                "a":[1,"x",[],{}],"m":{"nested":{"deep":[null,false]}},"":"empty key"}"#,
        )
        .unwrap();
        let ours = dynamic_from_value(&value, 128).unwrap();
        let rhai = rhai::serde::to_dynamic(&value).unwrap();
        assert_eq!(format!("{ours:?}"), format!("{rhai:?}"));
        assert_eq!(
            value_from_dynamic(&ours).unwrap(),
            rhai::serde::from_dynamic::<Value>(&rhai).unwrap()
        );
        assert_eq!(
            value_from_dynamic(&ours).unwrap()["big"],
            18446744073709551615.0
        );
    }

    /// Values a script can make that JSON has no literal for convert as Rhai's serde converts
    /// them.
    #[test]
    fn script_only_values_convert_as_rhai_serde_does() {
        let engine = rhai::Engine::new();
        for script in [
            "'c'",
            "1.0 / 0.0",
            "0.0 / 0.0",
            "()",
            "[1, 'z', #{x: 1.5}]",
            "blob(2, 7)",
        ] {
            let dynamic: Dynamic = engine.eval(script).unwrap();
            let ours = value_from_dynamic(&dynamic).map_err(|e| e.to_string());
            let rhai = rhai::serde::from_dynamic::<Value>(&dynamic)
                .map_err(|e| PluginError::json(e.to_string(), e).to_string());
            assert_eq!(ours, rhai, "{script}");
        }
        let pointer: Dynamic = engine.eval("Fn(\"f\")").unwrap();
        assert!(
            value_from_dynamic(&pointer).is_err(),
            "a function pointer is no JSON"
        );
    }

    /// A shared value converts as the value it holds (Rhai's serde refused it).
    #[test]
    fn shared_values_are_read_through() {
        let mut map = rhai::Map::new();
        map.insert("n".into(), Dynamic::from_int(1).into_shared());
        let shared = Dynamic::from_map(map).into_shared();
        assert!(rhai::serde::from_dynamic::<Value>(&shared).is_err());
        assert_eq!(
            value_from_dynamic(&shared).unwrap(),
            serde_json::json!({ "n": 1 })
        );
    }

    #[test]
    fn limits_count_nested_containers_together() {
        let config = RhaiConfig::default().max_array_size(3);
        let nested = dynamic_from_json_text("[[1],[2]]").unwrap();
        assert!(
            check_boundary_value(&nested, &config).is_err(),
            "2 + 1 + 1 elements exceed 3"
        );
        let small = dynamic_from_json_text("[[1,2]]").unwrap();
        assert!(check_boundary_value(&small, &config).is_ok());
    }

    #[test]
    fn values_going_in_are_bounded_like_values_coming_out() {
        let nested = serde_json::json!([[[1]]]);
        assert!(dynamic_from_value(&nested, 3).is_ok());
        let breach = dynamic_from_value(&nested, 2).unwrap_err();
        assert_eq!(breach.limit, "max_json_depth");
        assert_eq!(
            breach,
            check_boundary_value(
                &dynamic_from_value(&nested, 3).unwrap(),
                &RhaiConfig::default().max_json_depth(2)
            )
            .unwrap_err(),
            "the same limit, counted the same way, in both directions"
        );
    }

    /// The one-walk conversion of a hop's output gives what measuring, then converting, gives:
    /// the same value within the limits, and a breach of the same limit past each of them.
    #[test]
    fn measured_conversion_agrees_with_measure_then_convert() {
        let value = dynamic_from_json_text(
            r#"{"s":"text","i":-5,"f":2.5,"t":true,"n":null,"a":[1,"x",[],{}],
                "m":{"nested":{"deep":[null,false]}},"":"empty key"}"#,
        )
        .unwrap();
        let within = |config: &RhaiConfig| {
            value_from_dynamic_within(&value, config, || "the result".into())
                .map_err(|e| e.to_string())
        };
        let in_two_walks = |config: &RhaiConfig| {
            check_boundary_value(&value, config)
                .map_err(|breach| {
                    breach
                        .into_error("the result", &config.limit_settings)
                        .to_string()
                })
                .and_then(|()| value_from_dynamic(&value).map_err(|e| e.to_string()))
        };
        let configs = [
            RhaiConfig::default(),
            RhaiConfig::default().max_string_size(20),
            RhaiConfig::default().max_array_size(3),
            RhaiConfig::default().max_map_size(9),
            RhaiConfig::default().max_json_depth(3),
        ];
        for (i, config) in configs.iter().enumerate() {
            assert_eq!(within(config), in_two_walks(config), "config {i}");
            assert_eq!(
                within(config).is_ok(),
                i == 0,
                "config {i}: {:?}",
                within(config)
            );
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let config = RhaiConfig::default().max_json_depth(2);
        let deep = dynamic_from_json_text("[[[1]]]").unwrap();
        let breach = check_boundary_value(&deep, &config).unwrap_err();
        assert_eq!(breach.limit, "max_json_depth");
    }
}
