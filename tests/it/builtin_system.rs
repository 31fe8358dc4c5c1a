//! The built-in plugins by name in a system TOML: as support plugins (`[[plugins]]`) that a
//! Rhai agent reaches through `call_plugin` and a WASM agent reaches when granted the
//! `call_plugin` capability, as agents of their own (`builtin = "..."`), and what
//! `bilayer check` says about an unknown builtin or a bad config.

use std::path::{Path, PathBuf};

use bilayer::system_config::SystemDefinition;
use serde_json::json;

use crate::builtin_server::{Response, TestServer};

const SEED: &str = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL); \
                    INSERT INTO items VALUES (1, 'lamp', 19.5), (2, 'desk', 120.0), (3, 'chair', 45.25);";

/// A fresh directory holding `files` (name, contents); the system file is `system.toml`.
fn system_dir(test: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "bilayer-builtin-system-{test}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plugins/tests/fixtures/wasm")
        .join(name)
        .display()
        .to_string()
}

async fn checked_system(dir: &Path) -> bilayer::prelude::AgentSystem {
    let definition = SystemDefinition::load(dir.join("system.toml")).unwrap();
    assert_eq!(definition.check(), vec![], "the system should check clean");
    definition.build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rhai_agent_calls_the_database_plugin_by_name() {
    let toml = format!(
        r#"
name = "shop"

[[agents]]
name = "pricer"
script = "pricer.rhai"

[[plugins]]
builtin = "database"
config = {{ url = "sqlite::memory:", read_only = true, init_sql = "{SEED}" }}
"#
    );
    let script = r#"
fn pricer(order) {
    let rows = parse_json(call_plugin("database", #{
        sql: "SELECT name, price FROM items WHERE name = ?",
        params: [order.item]
    }));
    #{ item: order.item, total: rows[0].price * order.quantity }
}
pricer
"#;
    let dir = system_dir("rhai", &[("system.toml", &toml), ("pricer.rhai", script)]);
    let system = checked_system(&dir).await;
    let outcome = system.send(json!({"item": "desk", "quantity": 3})).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(
        outcome.output.unwrap(),
        json!({"item": "desk", "total": 360.0})
    );
    // The support plugin receives no routed messages: it is not an agent.
    assert_eq!(system.agents(), ["pricer"]);
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_agent_granted_call_plugin_reaches_the_database() {
    let toml = format!(
        r#"
[[agents]]
name = "forward"
wasm = "{wat}"
capabilities = ["call_plugin:database"]

[[plugins]]
builtin = "database"
config = {{ read_only = true, init_sql = "{SEED}" }}
"#,
        wat = fixture("forward_to_database.wat"),
    );
    let dir = system_dir("wasm", &[("system.toml", &toml)]);
    let system = checked_system(&dir).await;
    let outcome = system
        .send(json!({"sql": "SELECT id, name FROM items WHERE price > ? ORDER BY id", "params": [40]}))
        .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(
        outcome.output.unwrap(),
        json!([{"id": 2, "name": "desk"}, {"id": 3, "name": "chair"}])
    );
    // Read-only holds for a WASM caller too.
    let write = system.send(json!("DELETE FROM items")).await;
    assert!(!write.is_ok(), "{write:?}");
    system.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wasm_agent_without_the_capability_does_not_check() {
    let toml = format!(
        "[[agents]]\nname = \"forward\"\nwasm = \"{}\"\n\n[[plugins]]\nbuiltin = \"database\"\n",
        fixture("forward_to_database.wat")
    );
    let dir = system_dir("wasm-denied", &[("system.toml", &toml)]);
    let problems = SystemDefinition::load(dir.join("system.toml"))
        .unwrap()
        .check();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].message.contains("call_plugin"), "{problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtins_serve_as_agents() {
    let server = TestServer::start(|request, _| {
        let prompt = request.json()["messages"][1]["content"].as_str().unwrap_or("").to_string();
        Response::json(
            200,
            json!({
                "id": "c1", "object": "chat.completion", "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": format!("echo: {prompt}")}}]
            }),
        )
    })
    .await;
    let toml = format!(
        r#"
entry = "classifier"

[[agents]]
name = "classifier"
builtin = "llm"
config = {{ provider = "local", base_url = "{base}", model = "m", max_retries = 0 }}

[[agents]]
name = "sql"
builtin = "database"
init_sql_file = "seed.sql"
"#,
        base = server.url("/v1")
    );
    let dir = system_dir("agents", &[("system.toml", &toml), ("seed.sql", SEED)]);
    let system = checked_system(&dir).await;
    let outcome = system
        .send(json!({"system": "Be brief.", "prompt": "hello"}))
        .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(outcome.agent.as_deref(), Some("classifier"));
    assert_eq!(outcome.output.unwrap()["content"], "echo: hello");
    assert_eq!(server.requests()[0].json()["model"], "m");
    system.shutdown().await.unwrap();

    // The same file with the database agent first: it answers SQL.
    let toml = toml.replace("entry = \"classifier\"", "entry = \"sql\"");
    std::fs::write(dir.join("system.toml"), toml).unwrap();
    let system = checked_system(&dir).await;
    let outcome = system.send(json!("SELECT count(*) AS n FROM items")).await;
    assert_eq!(outcome.output.unwrap(), json!([{"n": 3}]));
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rhai_agent_calls_the_http_plugin_on_an_allowed_host() {
    let server = TestServer::start(|request, _| {
        Response::json(200, json!({"path": request.path, "status": "in stock"}))
    })
    .await;
    let toml = format!(
        r#"
[[agents]]
name = "stock"
script = "stock.rhai"

[[plugins]]
builtin = "http"
config = {{ allowed_hosts = ["{host}"], timeout_ms = 5000 }}
"#,
        host = server.addr
    );
    let script = format!(
        r#"
fn stock(item) {{
    let answer = parse_json(call_plugin("http", #{{ url: "{base}/stock/" + item }}));
    #{{ code: answer.status, body: answer.body }}
}}
stock
"#,
        base = server.url("")
    );
    let dir = system_dir("http", &[("system.toml", &toml), ("stock.rhai", &script)]);
    let system = checked_system(&dir).await;
    let outcome = system.send(json!("lamp")).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(
        outcome.output.unwrap(),
        json!({"code": 200, "body": {"path": "/stock/lamp", "status": "in stock"}})
    );
    system.shutdown().await.unwrap();
}

#[test]
fn check_reports_unknown_builtins_and_bad_configs_with_positions() {
    let toml = r#"name = "broken"

[[agents]]
name = "a"
builtin = "vector_store"

[[agents]]
name = "b"
builtin = "llm"
config = { base_url = "ftp://nowhere", model = "m" }

[[plugins]]
builtin = "database"
config = { url = "sqlite::memory:", max_rows = "many" }

[[plugins]]
builtin = "http"
config = { allowed_host = ["example.com"] }

[[plugins]]
builtin = "database"
id = "a"
init_sql_file = "missing.sql"

[[plugins]]
builtin = "llm"
init_sql_file = "seed.sql"
"#;
    let dir = system_dir("check", &[("system.toml", toml)]);
    let file = dir.join("system.toml").display().to_string();
    let problems = SystemDefinition::load(dir.join("system.toml"))
        .unwrap()
        .check();
    let found: Vec<(String, String)> = problems
        .iter()
        .map(|p| (p.location.replace(&file, "F"), p.message.clone()))
        .collect();
    let expect = [
        (
            "F:4:8",
            "unknown builtin `vector_store`; built-in plugins are llm, database, http",
        ),
        (
            "F:8:8",
            "base_url `ftp://nowhere` must start with http:// or https://",
        ),
        ("F:14:10", "database config is invalid"),
        ("F:18:10", "http config has unknown key `allowed_host`"),
        ("F:21:11", "plugin id `a` is already taken"),
        ("F:23:17", "cannot read init_sql_file"),
        (
            "F:27:17",
            "init_sql_file is for builtin = \"database\", not `llm`",
        ),
    ];
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for ((location, message), (want_location, want_message)) in found.iter().zip(expect) {
        assert_eq!(location, want_location, "{message}");
        assert!(
            message.contains(want_message),
            "{message} should say {want_message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_sql_seeds_a_read_only_sqlite_file_on_every_start() {
    let dir = system_dir("file", &[]);
    let seed = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT); \
                INSERT OR IGNORE INTO notes VALUES (1, 'first');";
    let toml = format!(
        "[[agents]]\nname = \"sql\"\nbuiltin = \"database\"\n\
         config = {{ url = \"{}\", read_only = true, init_sql = \"{seed}\" }}\n",
        dir.join("notes.db").display()
    );
    std::fs::write(dir.join("system.toml"), toml).unwrap();
    // Twice: the second start runs the (idempotent) init_sql against the existing file.
    for _ in 0..2 {
        let system = checked_system(&dir).await;
        let rows = system.send(json!("SELECT id, text FROM notes")).await;
        assert_eq!(rows.output.unwrap(), json!([{"id": 1, "text": "first"}]));
        let write = system
            .send(json!("INSERT INTO notes VALUES (2, 'x')"))
            .await;
        assert!(!write.is_ok(), "{write:?}");
        system.shutdown().await.unwrap();
    }
}

/// PostgreSQL when `BILAYER_TEST_POSTGRES_URL` names a server (.ci/run sets it): `init_sql`
/// runs on a writable connection before the read-only pool opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_sql_seeds_postgres_before_read_only_mode() {
    let Ok(url) = std::env::var("BILAYER_TEST_POSTGRES_URL") else {
        eprintln!(
            "builtin_system: PostgreSQL check skipped: BILAYER_TEST_POSTGRES_URL is not set \
             (e.g. postgres://postgres@127.0.0.1:5432/test)"
        );
        return;
    };
    let table = format!("bilayer_init_sql_{}", std::process::id());
    let seed = format!(
        "CREATE TABLE IF NOT EXISTS {table} (id INT PRIMARY KEY, text TEXT); \
         INSERT INTO {table} VALUES (1, 'first') ON CONFLICT DO NOTHING;"
    );
    let toml = format!(
        "[[agents]]\nname = \"ro\"\nbuiltin = \"database\"\n\
         config = {{ url = \"{url}\", read_only = true, init_sql = \"{seed}\" }}\n\n\
         [[agents]]\nname = \"rw\"\nbuiltin = \"database\"\nconfig = {{ url = \"{url}\" }}\n"
    );
    let dir = system_dir("postgres", &[("system.toml", &toml)]);
    let system = checked_system(&dir).await;
    let rows = system
        .send(json!(format!("SELECT id, text FROM {table}")))
        .await;
    let write = system
        .send(json!(format!("INSERT INTO {table} VALUES (2, 'x')")))
        .await;
    let drop = system
        .manager()
        .execute("rw", format!("DROP TABLE {table}"))
        .await;
    system.shutdown().await.unwrap();
    assert_eq!(rows.output.unwrap(), json!([{"id": 1, "text": "first"}]));
    assert!(!write.is_ok(), "{write:?}");
    drop.unwrap();
}
