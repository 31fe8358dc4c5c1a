//! `RhaiToolRegistry`: loading tool scripts, listing them for LLMs, executing with
//! schema-checked arguments.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bilayer_plugins::rhai_runtime::{RhaiConfig, RhaiPlugin, RhaiToolRegistry, ToolDefinition};
use bilayer_plugins::PluginError;
use serde_json::json;

fn weather() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/tools/weather.rhai")
}

fn tempdir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("bilayer-rhai-tools-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_tool(dir: &Path, file: &str, name: &str) {
    let source = format!(
        r#"let tool = #{{ name: "{name}", description: "Adds two numbers",
            parameters: #{{ type: "object",
                properties: #{{ a: #{{ type: "number" }}, b: #{{ type: "number" }} }},
                required: ["a", "b"] }} }};
        fn execute(args) {{ #{{ sum: args.a + args.b }} }}
        #{{ tool: tool, execute: execute }}"#
    );
    std::fs::write(dir.join(file), source).unwrap();
}

#[test]
fn the_registry_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RhaiToolRegistry>();
    assert_send_sync::<Arc<RhaiToolRegistry>>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_weather_tool_loads_and_runs() {
    let registry = RhaiToolRegistry::new();
    let definition = registry.load_from_file(weather()).await.unwrap();
    assert_eq!(definition.name, "get_weather");

    let tools = registry.get_all_tools();
    assert_eq!(tools.len(), 1);
    assert_eq!(
        tools[0].to_openai(),
        json!({
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get current weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": { "city": { "type": "string", "description": "City name" } },
                    "required": ["city"]
                }
            }
        })
    );
    assert_eq!(
        tools[0].to_mcp(),
        json!({
            "name": "get_weather",
            "description": "Get current weather for a city",
            "inputSchema": tools[0].parameters
        })
    );
    assert_eq!(registry.to_openai(), vec![tools[0].to_openai()]);

    let output = registry
        .execute("get_weather", r#"{"city": "Lisbon"}"#)
        .await
        .unwrap();
    let output: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(
        output,
        json!({"city": "Lisbon", "temperature": 72, "condition": "Sunny", "humidity": 45})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_are_checked_before_the_script_runs() {
    let registry = RhaiToolRegistry::new();
    registry.load_from_file(weather()).await.unwrap();

    let err = registry.execute("get_weather", "{}").await.unwrap_err();
    let PluginError::InvalidInput(message) = &err else {
        panic!("expected InvalidInput, got {err:?}")
    };
    assert!(
        message.contains("missing required argument `city` (City name)"),
        "{message}"
    );

    let err = registry
        .execute("get_weather", r#"{"city": 7}"#)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::InvalidInput(m) if m.contains("`city` must be of type string, got integer")),
        "{err:?}"
    );

    let err = registry
        .execute("get_weather", "not json")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::InvalidInput(m) if m.contains("not valid JSON")),
        "{err:?}"
    );

    let err = registry
        .execute_value("get_weather", json!(["Paris"]))
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::InvalidInput(m) if m.contains("must be of type object")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_directory_loads_sorted_by_name() {
    let dir = tempdir("dir");
    write_tool(&dir, "b_add.rhai", "add");
    std::fs::copy(weather(), dir.join("a_weather.rhai")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a script").unwrap();

    let registry = RhaiToolRegistry::new();
    let loaded: Vec<String> = registry
        .load_dir(&dir)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(loaded, ["get_weather", "add"]);
    assert_eq!(registry.names(), ["add", "get_weather"]);
    assert_eq!(
        registry
            .execute_value("add", json!({"a": 1, "b": 2.5}))
            .unwrap(),
        json!({"sum": 3.5})
    );
    assert!(registry.unregister("add"));
    assert!(!registry.unregister("add"));
    assert_eq!(registry.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_tool_names_are_an_error() {
    let registry = RhaiToolRegistry::new();
    registry.load_from_file(weather()).await.unwrap();
    let err = registry.load_from_file(weather()).await.unwrap_err();
    assert!(
        matches!(&err, PluginError::Config(m) if m.contains("duplicate tool name `get_weather`")),
        "{err:?}"
    );

    // Within one directory: nothing is loaded.
    let dir = tempdir("duplicates");
    write_tool(&dir, "one.rhai", "same");
    write_tool(&dir, "two.rhai", "same");
    let fresh = RhaiToolRegistry::new();
    assert!(fresh.load_dir(&dir).await.is_err());
    assert!(fresh.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_tool_script_or_unknown_tool_is_refused() {
    let dir = tempdir("not-a-tool");
    std::fs::write(dir.join("plain.rhai"), "fn f(x) { x }").unwrap();
    let registry = RhaiToolRegistry::new();
    let err = registry
        .load_from_file(dir.join("plain.rhai"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Config(m) if m.contains("not a tool script")),
        "{err:?}"
    );
    let err = registry.execute("nope", "{}").await.unwrap_err();
    assert_eq!(err, PluginError::NotFound("nope".into()));
}

/// A tool definition is measured like any value leaving a script: one nested deeper than
/// `max_json_depth` (top-level statements could build it in a loop) is refused at load, with
/// the limit named, rather than converted.
#[test]
fn a_tool_definition_past_the_depth_limit_is_refused() {
    let source = r#"
        let schema = #{ type: "object" };
        for i in 0..8 { schema = #{ type: "object", properties: #{ inner: schema } }; }
        let tool = #{ name: "deep", description: "too deep", parameters: schema };
        fn execute(args) { args }
        #{ tool: tool, execute: execute }
    "#;
    let config = RhaiConfig::default().max_json_depth(6);
    let err = RhaiPlugin::from_source_with_config("deep", source, config.clone()).unwrap_err();
    assert!(
        matches!(&err, PluginError::LimitExceeded { limit, detail }
            if limit == "max_json_depth" && detail.contains("`tool` map")),
        "{err:?}"
    );
    let roomy = config.max_json_depth(64);
    assert!(RhaiPlugin::from_source_with_config("deep", source, roomy).is_ok());
}

#[test]
fn tool_definitions_serialize() {
    let definition = ToolDefinition {
        name: "t".into(),
        description: "d".into(),
        parameters: json!({"type": "object"}),
    };
    let text = serde_json::to_string(&definition).unwrap();
    assert_eq!(
        serde_json::from_str::<ToolDefinition>(&text).unwrap(),
        definition
    );
}
