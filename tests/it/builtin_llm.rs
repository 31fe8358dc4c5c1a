//! The LLM plugin against a loopback server speaking the chat-completions protocol: plain
//! completions, SSE streaming, a tool-call round trip through the Rhai weather tool, retries
//! on 429/5xx, and the errors for bad credentials, malformed answers and timeouts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bilayer::builtin::{ChatRequest, LLMPlugin, LlmClient, LlmConfig, LlmError};
use bilayer::prelude::*;
use bilayer::rhai_runtime::RhaiToolRegistry;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::builtin_server::{Request, Response, TestServer};

fn completion(content: Value, tool_calls: Option<Value>) -> Value {
    let mut message = json!({ "role": "assistant", "content": content });
    if let Some(calls) = tool_calls {
        message["tool_calls"] = calls;
    }
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10 }
    })
}

fn config(server: &TestServer) -> LlmConfig {
    LlmConfig {
        base_url: server.url("/v1"),
        model: "test-model".into(),
        api_key: Some("sk-test".into()),
        timeout_ms: 5_000,
        initial_backoff_ms: 10,
        max_backoff_ms: 50,
        ..LlmConfig::for_provider("openai")
    }
}

fn client(server: &TestServer) -> LlmClient {
    LlmClient::new(config(server)).unwrap()
}

async fn running(plugin: LLMPlugin) -> PluginManager {
    let manager = PluginManager::new("llm-test");
    manager.register(plugin).await.unwrap();
    manager.load_all().await.unwrap();
    manager.start_all().await.unwrap();
    manager
}

fn weather_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/tools/weather.rhai")
}

#[tokio::test]
async fn openai_provider_defaults() {
    let config = LlmConfig::for_provider("openai");
    assert_eq!(config.base_url, "https://api.openai.com/v1");
    assert_eq!(config.api_key_env, "OPENAI_API_KEY");
    assert_eq!(
        config.chat_url(),
        "https://api.openai.com/v1/chat/completions"
    );
    assert_eq!(
        LlmConfig::for_provider("llama.cpp").api_key_env,
        "LLAMACPP_API_KEY"
    );
    assert!(!LlmConfig::for_provider("ollama").requires_api_key());
    // OpenAI's own API needs a key; the same provider pointed at another server (a local
    // OpenAI-compatible one) does not, unless the config says so.
    assert!(LlmConfig::for_provider("openai").requires_api_key());
    let local = LlmConfig {
        base_url: "http://127.0.0.1:8080/v1".into(),
        ..LlmConfig::for_provider("openai")
    };
    assert!(!local.requires_api_key());
    assert!(LlmConfig {
        require_api_key: Some(true),
        ..local
    }
    .requires_api_key());

    let plugin = LLMPlugin::new("openai");
    assert_eq!(plugin.metadata().id, "llm");

    // A hosted provider without a key is refused before anything is sent.
    let keyless = LlmConfig {
        api_key_env: "BILAYER_TEST_SURELY_UNSET_KEY".into(),
        ..LlmConfig::for_provider("openai")
    };
    let error = LlmClient::new(keyless)
        .unwrap()
        .chat(&ChatRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::MissingApiKey { .. }), "{error}");
    assert!(error.to_string().contains("BILAYER_TEST_SURELY_UNSET_KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_prompt_through_the_plugin_returns_content_and_usage() {
    let server =
        TestServer::start(|_, _| Response::json(200, completion(json!("Hello!"), None))).await;
    let plugin = LLMPlugin::new("openai")
        .with_base_url(server.url("/v1"))
        .with_model("test-model")
        .with_api_key("sk-test");
    let manager = running(plugin).await;

    let output = manager
        .execute("llm", "Say hello".to_string())
        .await
        .unwrap();
    let output: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(output["content"], "Hello!");
    assert_eq!(output["usage"]["total_tokens"], 10);
    assert_eq!(output["tool_calls"], json!([]));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(request.header("authorization"), Some("Bearer sk-test"));
    let body = request.json();
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], false);
    assert_eq!(
        body["messages"],
        json!([{ "role": "user", "content": "Say hello" }])
    );
    manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_config_overrides_builder_settings() {
    let server = TestServer::start(|_, _| Response::json(200, completion(json!("ok"), None))).await;
    let manager = PluginManager::new("llm-config");
    let plugin = LLMPlugin::new("ollama").with_base_url("http://127.0.0.1:1/v1");
    let options = PluginOptions::new().config(json!({
        "base_url": server.url("/v1"),
        "model": "llama3.2:1b",
    }));
    manager
        .register_with(Box::new(plugin), options)
        .await
        .unwrap();
    manager.load_all().await.unwrap();
    manager.start_all().await.unwrap();
    let request = json!({ "messages": [
        { "role": "system", "content": "Be brief." },
        { "role": "user", "content": "hi" }
    ]});
    manager.execute("llm", request.to_string()).await.unwrap();
    let body = server.requests()[0].json();
    assert_eq!(body["model"], "llama3.2:1b");
    assert_eq!(body["messages"][0]["role"], "system");
    assert!(
        server.requests()[0].header("authorization").is_none(),
        "no key for ollama"
    );

    // An unknown key is a configuration error that names the known ones.
    let bad = PluginManager::new("llm-bad-config");
    let options = PluginOptions::new().config(json!({ "modle": "x" }));
    bad.register_with(Box::new(LLMPlugin::new("ollama")), options)
        .await
        .unwrap();
    let error = bad.load_all().await.unwrap_err().to_string();
    assert!(
        error.contains("unknown key `modle`") && error.contains("model"),
        "{error}"
    );
    manager.shutdown().await.unwrap();
    bad.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_yields_token_deltas() {
    let server = TestServer::start(|request, _| {
        assert_eq!(request.json()["stream"], true);
        let chunk = |delta: Value, finish: Value| {
            json!({
                "id": "c", "object": "chat.completion.chunk",
                "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
            })
            .to_string()
        };
        let events = vec![
            chunk(json!({ "role": "assistant", "content": "" }), Value::Null),
            chunk(json!({ "content": "Hel" }), Value::Null),
            chunk(json!({ "content": "lo, " }), Value::Null),
            chunk(json!({ "content": "world" }), Value::Null),
            chunk(json!({}), json!("stop")),
            "[DONE]".to_string(),
        ];
        Response::sse(&events, Duration::from_millis(20))
    })
    .await;

    let mut stream = client(&server)
        .chat_stream(&ChatRequest::prompt("greet"))
        .await
        .unwrap();
    let mut pieces = Vec::new();
    let mut finish = None;
    while let Some(delta) = stream.next().await {
        let delta = delta.unwrap();
        if !delta.content.is_empty() {
            pieces.push(delta.content);
        }
        finish = delta.finish_reason.or(finish);
    }
    assert_eq!(pieces, ["Hel", "lo, ", "world"]);
    assert_eq!(finish.as_deref(), Some("stop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_times_out() {
    let server = TestServer::start(|_, _| {
        let first = json!({ "choices": [{ "index": 0, "delta": { "content": "a" } }] }).to_string();
        let mut response = Response::sse(&[first, "[DONE]".into()], Duration::ZERO);
        response.chunks[1].0 = Duration::from_secs(3);
        response
    })
    .await;
    let config = LlmConfig {
        timeout_ms: 300,
        ..config(&server)
    };
    let mut stream = LlmClient::new(config)
        .unwrap()
        .chat_stream(&ChatRequest::prompt("x"))
        .await
        .unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().content, "a");
    let error = stream.next().await.unwrap().unwrap_err();
    assert!(matches!(error, LlmError::Timeout { .. }), "{error}");
    assert!(stream.next().await.is_none());
}

/// The model asks for get_weather, the Rhai tool runs, its result goes back as a tool
/// message, and the model's final answer uses it.
fn weather_model(request: &Request, _: usize) -> Response {
    let body = request.json();
    let messages = body["messages"].as_array().unwrap();
    let last = messages.last().unwrap();
    if last["role"] == "tool" {
        assert_eq!(last["tool_call_id"], "call_1");
        let weather: Value = serde_json::from_str(last["content"].as_str().unwrap()).unwrap();
        let answer = format!(
            "It is {} and {}°F in {}.",
            weather["condition"].as_str().unwrap().to_lowercase(),
            weather["temperature"],
            weather["city"].as_str().unwrap()
        );
        return Response::json(200, completion(json!(answer), None));
    }
    let tools = body["tools"].as_array().expect("tools offered");
    assert!(tools
        .iter()
        .any(|t| t["type"] == "function" && t["function"]["name"] == "get_weather"));
    let mut response = completion(
        Value::Null,
        Some(json!([{
            "id": "call_1",
            "type": "function",
            "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" }
        }])),
    );
    response["choices"][0]["finish_reason"] = json!("tool_calls");
    Response::json(200, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_call_round_trip_with_the_rhai_weather_tool() {
    let server = TestServer::start(weather_model).await;
    let registry = RhaiToolRegistry::new();
    registry.load_from_file(weather_script()).await.unwrap();

    let run = client(&server)
        .chat_with_tools(&ChatRequest::prompt("Weather in Paris?"), &registry, 4)
        .await
        .unwrap();
    assert_eq!(run.completion.content(), "It is sunny and 72°F in Paris.");
    assert_eq!(run.tool_calls_run, 1);
    let roles: Vec<&str> = run.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "tool"]);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_returns_tool_calls_or_runs_them() {
    let server = TestServer::start(weather_model).await;
    let registry = Arc::new(RhaiToolRegistry::new());
    registry.load_from_file(weather_script()).await.unwrap();

    // Offering tools only: the caller gets the model's tool calls.
    let offering = LLMPlugin::with_config(config(&server)).with_tools(Arc::clone(&registry));
    let manager = running(offering).await;
    let output: Value = serde_json::from_str(
        &manager
            .execute("llm", "\"Weather in Paris?\"".into())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(output["content"], Value::Null);
    assert_eq!(output["tool_calls"][0]["name"], "get_weather");
    assert_eq!(
        output["tool_calls"][0]["arguments"],
        json!({ "city": "Paris" })
    );
    assert_eq!(output["message"]["tool_calls"][0]["id"], "call_1");
    manager.shutdown().await.unwrap();

    // Running tools: the plugin answers with the final text.
    let running_tools = LLMPlugin::with_config(config(&server))
        .with_tools(registry)
        .run_tools(4);
    let manager = running(running_tools).await;
    let output = manager
        .execute("llm", json!({ "prompt": "Weather in Paris?" }).to_string())
        .await
        .unwrap();
    let output: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(output["content"], "It is sunny and 72°F in Paris.");
    assert_eq!(output["tool_calls_run"], 1);
    manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_429_and_5xx_with_backoff_and_retry_after() {
    let server = TestServer::start(|_, n| match n {
        0 => Response::json(429, json!({ "error": { "message": "slow down" } }))
            .header("Retry-After", "0.2"),
        1 => Response::text(503, "overloaded"),
        _ => Response::json(200, completion(json!("finally"), None)),
    })
    .await;
    let started = Instant::now();
    let answer = client(&server)
        .chat(&ChatRequest::prompt("x"))
        .await
        .unwrap();
    assert_eq!(answer.content(), "finally");
    assert_eq!(server.requests().len(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "Retry-After respected"
    );

    let always_down = TestServer::start(|_, _| Response::text(500, "boom")).await;
    let config = LlmConfig {
        max_retries: 2,
        ..config(&always_down)
    };
    let error = LlmClient::new(config)
        .unwrap()
        .chat(&ChatRequest::prompt("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            LlmError::Unavailable {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(always_down.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_are_not_retried_and_say_what_to_check() {
    for status in [401u16, 403] {
        let server = TestServer::start(move |_, _| {
            Response::json(
                status,
                json!({ "error": { "message": "Incorrect API key provided" } }),
            )
        })
        .await;
        let error = client(&server)
            .chat(&ChatRequest::prompt("x"))
            .await
            .unwrap_err();
        assert!(matches!(error, LlmError::Auth { .. }), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("Incorrect API key provided") && text.contains("OPENAI_API_KEY"),
            "{text}"
        );
        assert_eq!(server.requests().len(), 1, "no retry on {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_answers_and_timeouts_are_reported() {
    let not_json = TestServer::start(|_, _| Response::text(200, "<html>proxy page</html>")).await;
    let error = client(&not_json)
        .chat(&ChatRequest::prompt("x"))
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::Malformed { .. }), "{error}");
    assert!(error.to_string().contains("proxy page"));

    let no_choices = TestServer::start(|_, _| Response::json(200, json!({ "id": "x" }))).await;
    let error = client(&no_choices)
        .chat(&ChatRequest::prompt("x"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("choices[0]"), "{error}");

    let slow = TestServer::start(|_, _| {
        Response::json(200, completion(json!("late"), None)).delayed(Duration::from_secs(3))
    })
    .await;
    let impatient = LlmConfig {
        timeout_ms: 200,
        ..config(&slow)
    };
    let started = Instant::now();
    let error = LlmClient::new(impatient)
        .unwrap()
        .chat(&ChatRequest::prompt("x"))
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::Timeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Through the plugin, the error text reaches the caller.
    let plugin = LLMPlugin::with_config(config(&not_json));
    let manager = running(plugin).await;
    let error = manager
        .execute("llm", "x".into())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("malformed response"), "{error}");
    manager.shutdown().await.unwrap();
}
