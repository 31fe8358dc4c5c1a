//! The HTTP plugin against a loopback server: allowed requests with headers and JSON bodies,
//! hosts refused before any connection (also on redirect), the response size cap, timeouts.

use std::time::{Duration, Instant};

use bilayer::builtin::{HttpPlugin, HttpRequest};
use bilayer::prelude::*;
use serde_json::{json, Value};

use crate::builtin_server::{Response, TestServer};

async fn loaded(plugin: HttpPlugin) -> HttpPlugin {
    let mut plugin = plugin;
    plugin.load(&PluginContext::new("http")).await.unwrap();
    plugin.start().await.unwrap();
    plugin
}

fn allowing(server: &TestServer) -> HttpPlugin {
    HttpPlugin::new().allow_host(server.addr.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_post_with_headers_and_json_bodies() {
    let server = TestServer::start(|request, _| {
        Response::json(
            200,
            json!({
                "method": request.method,
                "path": request.path,
                "token": request.header("x-token"),
                "agent": request.header("x-agent"),
                "content_type": request.header("content-type"),
                "echo": request.json(),
            }),
        )
        .header("X-Served-By", "loopback")
    })
    .await;
    let mut http = loaded(allowing(&server).default_header("x-agent", "bilayer")).await;

    let output = http
        .execute_json(json!({
            "method": "POST",
            "url": server.url("/orders?id=7"),
            "headers": { "x-token": "abc" },
            "body": { "item": "widget", "qty": 2 }
        }))
        .await
        .unwrap();
    assert_eq!(output["status"], 200);
    assert_eq!(output["headers"]["x-served-by"], "loopback");
    assert_eq!(
        output["body"],
        json!({
            "method": "POST", "path": "/orders?id=7", "token": "abc", "agent": "bilayer",
            "content_type": "application/json", "echo": { "item": "widget", "qty": 2 }
        })
    );

    // A bare URL is a GET, through the text interface.
    let output: Value =
        serde_json::from_str(&http.execute(server.url("/ping")).await.unwrap()).unwrap();
    assert_eq!(output["body"]["method"], "GET");
    assert_eq!(output["body"]["echo"], Value::Null);

    // Non-JSON bodies come back as text, error statuses as data (not as failures).
    let text = TestServer::start(|_, _| Response::text(404, "no such page")).await;
    let output = loaded(allowing(&text))
        .await
        .send(&HttpRequest::get(text.url("/missing")))
        .await
        .unwrap();
    assert_eq!(output["status"], 404);
    assert_eq!(output["body"], "no such page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_outside_the_allow_list_are_refused_before_connecting() {
    let server = TestServer::start(|_, _| Response::text(200, "should not be reached")).await;
    let port = server.addr.port();

    // Deny by default.
    let nothing_allowed = loaded(HttpPlugin::new()).await;
    let error = nothing_allowed
        .send(&HttpRequest::get(server.url("/")))
        .await
        .unwrap_err();
    assert!(matches!(error, PluginError::InvalidInput(_)), "{error}");
    assert!(error.to_string().contains("allow-list"), "{error}");

    // `localhost` reaches the same server, but only 127.0.0.1:<port> is allowed.
    let http = loaded(allowing(&server)).await;
    let error = http
        .send(&HttpRequest::get(format!("http://localhost:{port}/")))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("host `localhost`"), "{error}");
    // So is another port of an allowed host, and a scheme other than http(s).
    let error = http
        .send(&HttpRequest::get(format!(
            "http://127.0.0.1:{}/",
            port.wrapping_add(1)
        )))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("allow-list"), "{error}");
    let error = http
        .send(&HttpRequest::get("file:///etc/passwd"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("only http and https"), "{error}");
    assert_eq!(
        server.connections(),
        0,
        "no refused request opened a connection"
    );

    // A redirect from an allowed host to a refused one is not followed.
    let target = server.url("/secret").replace("127.0.0.1", "localhost");
    let redirecting =
        TestServer::start(move |_, _| Response::text(302, "moved").header("Location", &target))
            .await;
    let http = loaded(allowing(&redirecting)).await;
    let error = http
        .send(&HttpRequest::get(redirecting.url("/")))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("redirect refused"), "{error}");
    assert_eq!(server.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_responses_are_refused() {
    let server = TestServer::start(|request, _| {
        let body = vec![b'a'; 64 * 1024];
        if request.path == "/unannounced" {
            Response::new(200, "text/plain", body).without_length()
        } else {
            Response::new(200, "text/plain", body)
        }
    })
    .await;
    let http = loaded(allowing(&server).max_response_bytes(1024)).await;
    for path in ["/announced", "/unannounced"] {
        let error = http
            .send(&HttpRequest::get(server.url(path)))
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("max_response_bytes (1024 bytes"),
            "{path}: {text}"
        );
    }
    let roomy = loaded(allowing(&server).max_response_bytes(128 * 1024)).await;
    let output = roomy
        .send(&HttpRequest::get(server.url("/unannounced")))
        .await
        .unwrap();
    assert_eq!(output["body"].as_str().unwrap().len(), 64 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_servers_time_out() {
    let server =
        TestServer::start(|_, _| Response::text(200, "late").delayed(Duration::from_secs(3))).await;
    let http = loaded(allowing(&server).with_timeout(Duration::from_millis(200))).await;
    let started = Instant::now();
    let error = http
        .send(&HttpRequest::get(server.url("/")))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("timed out"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_config_sets_the_allow_list_and_rhai_can_call_it() {
    let server = TestServer::start(|_, _| Response::json(200, json!({ "temp": 21 }))).await;
    let manager = PluginManager::new("http-config");
    let options =
        PluginOptions::new().config(json!({ "allowed_hosts": [server.addr.to_string()] }));
    manager
        .register_with(Box::new(HttpPlugin::new()), options)
        .await
        .unwrap();
    let script = format!(
        r#"
        fn run(input) {{
            let answer = parse_json(call_plugin("http", #{{ method: "GET", url: "{}" }}));
            #{{ status: answer.status, temp: answer.body.temp }}
        }}
        run
        "#,
        server.url("/weather")
    );
    manager
        .register(bilayer::rhai_runtime::RhaiPlugin::from_source("fetcher", script).unwrap())
        .await
        .unwrap();
    manager.load_all().await.unwrap();
    manager.start_all().await.unwrap();
    let output = manager.execute("fetcher", "{}".into()).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&output).unwrap(),
        json!({ "status": 200, "temp": 21 })
    );
    manager.shutdown().await.unwrap();
}
