//! Checks tool arguments against the tool's JSON Schema before the script runs.
//!
//! An LLM calling a tool gets a precise error ("missing required argument `city`") it can
//! correct, instead of a Rhai error from deep inside the script. The subset checked is the one
//! tool schemas use: `type` (string, number, integer, boolean, object, array, null, or a list
//! of them), `required`, `properties`, `additionalProperties: false`, `enum`, and `items`,
//! recursively. Other keywords are accepted and not checked.

use serde_json::{Map, Value};

use crate::{PluginError, PluginResult};

/// Validates `args` against `schema`; the error names the tool, the argument and the fix.
pub(crate) fn validate_arguments(tool: &str, schema: &Value, args: &Value) -> PluginResult<()> {
    check(schema, args, "arguments").map_err(|problem| {
        PluginError::InvalidInput(format!(
            "tool `{tool}`: {problem}; the parameters schema is {schema}"
        ))
    })
}

fn check(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    let Value::Object(schema) = schema else {
        return Ok(());
    };
    if let Some(expected) = schema.get("type") {
        if !type_matches(expected, value) {
            return Err(format!(
                "`{path}` must be {}, got {}",
                describe_type(expected),
                json_type(value)
            ));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.contains(value) {
            return Err(format!(
                "`{path}` must be one of {}",
                Value::Array(allowed.clone())
            ));
        }
    }
    match value {
        Value::Object(fields) => check_object(schema, fields, path),
        Value::Array(items) => match schema.get("items") {
            Some(item_schema) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| check(item_schema, item, &format!("{path}[{i}]"))),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

fn check_object(
    schema: &Map<String, Value>,
    fields: &Map<String, Value>,
    path: &str,
) -> Result<(), String> {
    let properties = schema.get("properties").and_then(Value::as_object);
    if let Some(Value::Array(required)) = schema.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(name) {
                let hint = properties
                    .and_then(|p| p.get(name))
                    .and_then(|p| p.get("description"))
                    .and_then(Value::as_str)
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                return Err(format!(
                    "missing required argument `{}`{hint}",
                    join(path, name)
                ));
            }
        }
    }
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (name, field) in fields {
        match properties.and_then(|p| p.get(name)) {
            Some(field_schema) => check(field_schema, field, &join(path, name))?,
            None if closed => {
                let known: Vec<&str> = properties
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                return Err(format!(
                    "unknown argument `{}`; expected only: {}",
                    join(path, name),
                    known.join(", ")
                ));
            }
            None => {}
        }
    }
    Ok(())
}

fn join(path: &str, name: &str) -> String {
    if path == "arguments" {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn type_matches(expected: &Value, value: &Value) -> bool {
    match expected {
        Value::String(name) => is_type(name, value),
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .any(|n| is_type(n, value)),
        _ => true,
    }
}

fn is_type(name: &str, value: &Value) -> bool {
    match name {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        // An unknown type name is the schema author's problem, not the caller's.
        _ => true,
    }
}

fn describe_type(expected: &Value) -> String {
    match expected {
        Value::String(name) => format!("of type {name}"),
        Value::Array(names) => {
            let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
            format!("one of the types {}", names.join(", "))
        }
        other => format!("of type {other}"),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn weather_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "city": { "type": "string", "description": "City name" },
                "days": { "type": "integer" },
                "units": { "type": "string", "enum": ["C", "F"] }
            },
            "required": ["city"]
        })
    }

    #[test]
    fn accepts_valid_arguments() {
        let schema = weather_schema();
        assert!(validate_arguments(
            "w",
            &schema,
            &json!({"city": "Paris", "days": 3, "units": "C"})
        )
        .is_ok());
        assert!(validate_arguments("w", &schema, &json!({"city": "Paris", "extra": true})).is_ok());
    }

    #[test]
    fn names_the_missing_argument_and_its_description() {
        let err = validate_arguments("get_weather", &weather_schema(), &json!({})).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("missing required argument `city` (City name)"),
            "{text}"
        );
        assert!(text.contains("get_weather"), "{text}");
    }

    #[test]
    fn names_the_wrong_type() {
        let err = validate_arguments("w", &weather_schema(), &json!({"city": 42})).unwrap_err();
        assert!(
            err.to_string()
                .contains("`city` must be of type string, got integer"),
            "{err}"
        );
        let err = validate_arguments("w", &weather_schema(), &json!({"city": "x", "days": 1.5}))
            .unwrap_err();
        assert!(err.to_string().contains("`days`"), "{err}");
        let err = validate_arguments("w", &weather_schema(), &json!("Paris")).unwrap_err();
        assert!(
            err.to_string()
                .contains("`arguments` must be of type object"),
            "{err}"
        );
    }

    #[test]
    fn checks_enums_and_closed_objects() {
        let err = validate_arguments("w", &weather_schema(), &json!({"city": "x", "units": "K"}))
            .unwrap_err();
        assert!(err.to_string().contains("one of"), "{err}");
        let closed =
            json!({"type": "object", "properties": {"a": {}}, "additionalProperties": false});
        let err = validate_arguments("t", &closed, &json!({"b": 1})).unwrap_err();
        assert!(err.to_string().contains("unknown argument `b`"), "{err}");
    }
}
