//! The database plugin on SQLite (always) and PostgreSQL (when `BILAYER_TEST_POSTGRES_URL` is
//! set): typed rows, bound parameters, read-only mode, the row limit, the pool, and the seed's
//! data_analyzer.rhai totalling sales through `call_plugin("database", ...)`.

use std::path::PathBuf;
use std::sync::Arc;

use bilayer::builtin::{DatabaseConfig, DatabasePlugin, DbRequest};
use bilayer::prelude::*;
use bilayer::rhai_runtime::RhaiPlugin;
use serde_json::{json, Value};

const POSTGRES_ENV: &str = "BILAYER_TEST_POSTGRES_URL";

pub(crate) async fn loaded(plugin: DatabasePlugin) -> DatabasePlugin {
    let mut plugin = plugin;
    plugin.load(&PluginContext::new("database")).await.unwrap();
    plugin.start().await.unwrap();
    plugin
}

pub(crate) async fn sql(plugin: &DatabasePlugin, sql: &str, params: Value) -> PluginResult<Value> {
    let params = params.as_array().cloned().unwrap_or_default();
    plugin.query(&DbRequest::new(sql).with_params(params)).await
}

fn temp_db(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("bilayer-{name}-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

#[tokio::test]
async fn sqlite_rows_come_back_as_typed_json_objects() {
    let mut db = loaded(DatabasePlugin::new("sqlite::memory:")).await;
    sql(
        &db,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, active BOOLEAN, \
         data BLOB, note TEXT, meta TEXT)",
        json!([]),
    )
    .await
    .unwrap();
    let inserted = sql(
        &db,
        "INSERT INTO items (name, price, active, data, note, meta) VALUES (?, ?, ?, x'00ff', ?, ?)",
        json!(["widget", 9.5, true, null, {"tags": ["a"]}]),
    )
    .await
    .unwrap();
    assert_eq!(inserted, json!({ "rows_affected": 1 }));

    // Through the AgentPlugin interface, with a bare SQL string as the seed sends it.
    let rows = db
        .execute(
            "SELECT id, name, price, active, data, note, meta, 2 * price AS double FROM items"
                .into(),
        )
        .await
        .unwrap();
    let rows: Value = serde_json::from_str(&rows).unwrap();
    assert_eq!(
        rows,
        json!([{
            "id": 1, "name": "widget", "price": 9.5, "active": true, "data": "00ff",
            "note": null, "meta": "{\"tags\":[\"a\"]}", "double": 19.0
        }])
    );
    let aggregate = db
        .execute_json(json!({ "sql": "SELECT COUNT(*) AS n, SUM(price) AS total FROM items" }))
        .await
        .unwrap();
    assert_eq!(aggregate, json!([{ "n": 1, "total": 9.5 }]));

    let returning = sql(
        &db,
        "INSERT INTO items (name) VALUES (?) RETURNING id",
        json!(["b"]),
    )
    .await
    .unwrap();
    assert_eq!(returning, json!([{ "id": 2 }]));
}

#[tokio::test]
async fn parameters_are_bound_never_interpolated() {
    let db = loaded(DatabasePlugin::default()).await;
    sql(
        &db,
        "CREATE TABLE users (name TEXT, secret TEXT)",
        json!([]),
    )
    .await
    .unwrap();
    sql(
        &db,
        "INSERT INTO users VALUES ('alice', 's1'), ('bob', 's2')",
        json!([]),
    )
    .await
    .unwrap();

    let attack = "' OR '1'='1";
    let rows = sql(
        &db,
        "SELECT secret FROM users WHERE name = ?",
        json!([attack]),
    )
    .await
    .unwrap();
    assert_eq!(rows, json!([]), "the injection attempt matched nothing");

    let hostile = "x'); DROP TABLE users; --";
    sql(&db, "INSERT INTO users VALUES (?, 'x')", json!([hostile]))
        .await
        .unwrap();
    let rows = sql(&db, "SELECT name FROM users WHERE secret = 'x'", json!([]))
        .await
        .unwrap();
    assert_eq!(
        rows,
        json!([{ "name": hostile }]),
        "stored verbatim; the table survived"
    );
}

#[tokio::test]
async fn read_only_mode_rejects_writes_even_hidden_ones() {
    let path = temp_db("read-only");
    let url = path.to_str().unwrap().to_string();
    let writer = loaded(DatabasePlugin::new(url.clone())).await;
    sql(&writer, "CREATE TABLE t (x INTEGER)", json!([]))
        .await
        .unwrap();
    sql(&writer, "INSERT INTO t VALUES (1), (2)", json!([]))
        .await
        .unwrap();

    let reader = loaded(DatabasePlugin::new(url).read_only(true)).await;
    assert_eq!(
        sql(&reader, "SELECT SUM(x) AS s FROM t", json!([]))
            .await
            .unwrap(),
        json!([{ "s": 3 }])
    );
    let refused = sql(&reader, "INSERT INTO t VALUES (3)", json!([]))
        .await
        .unwrap_err();
    assert!(matches!(refused, PluginError::InvalidInput(_)), "{refused}");
    assert!(refused.to_string().contains("read-only"), "{refused}");
    for hidden in [
        "WITH v AS (SELECT 4) INSERT INTO t SELECT * FROM v",
        "/* select */ DELETE FROM t",
    ] {
        let error = sql(&reader, hidden, json!([])).await.unwrap_err();
        assert!(error.to_string().contains("read"), "{hidden}: {error}");
    }
    assert_eq!(
        sql(&reader, "SELECT COUNT(*) AS n FROM t", json!([]))
            .await
            .unwrap(),
        json!([{ "n": 2 }])
    );
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn the_row_limit_fails_loudly_instead_of_truncating() {
    let db = loaded(DatabasePlugin::default().max_rows(3)).await;
    sql(
        &db,
        "CREATE TABLE n AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5) SELECT x FROM c",
        json!([]),
    )
    .await
    .unwrap();
    let error = sql(&db, "SELECT x FROM n", json!([])).await.unwrap_err();
    assert!(error.to_string().contains("max_rows (3)"), "{error}");
    let rows = sql(&db, "SELECT x FROM n ORDER BY x LIMIT ?", json!([3]))
        .await
        .unwrap();
    assert_eq!(rows, json!([{ "x": 1 }, { "x": 2 }, { "x": 3 }]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_serves_concurrent_queries() {
    let path = temp_db("pool");
    let db = Arc::new(loaded(DatabasePlugin::new(path.to_str().unwrap()).max_connections(4)).await);
    sql(&db, "CREATE TABLE k (v INTEGER)", json!([]))
        .await
        .unwrap();
    let queries = (0..20).map(|i| {
        let db = Arc::clone(&db);
        tokio::spawn(async move { sql(&db, "SELECT ? * 2 AS v", json!([i])).await })
    });
    for (i, handle) in queries.enumerate() {
        assert_eq!(handle.await.unwrap().unwrap(), json!([{ "v": i * 2 }]));
    }
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn bad_inputs_and_urls_say_what_to_fix() {
    let mut db = loaded(DatabasePlugin::default()).await;
    let error = db
        .execute_json(json!({ "query": "SELECT 1" }))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("\"sql\""), "{error}");
    let error = db.execute_json(json!("   ")).await.unwrap_err();
    assert!(error.to_string().contains("empty"), "{error}");

    let mut unreachable = DatabasePlugin::new("postgres://nobody:secret@127.0.0.1:1/none")
        .acquire_timeout(std::time::Duration::from_secs(2));
    let error = unreachable
        .load(&PluginContext::new("database"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("cannot open database") && !error.contains("secret"),
        "{error}"
    );
}

/// Nothing listens on the port: loading says the connection was refused at once, instead of
/// retrying until the pool's acquire timeout (10 s by default) and reporting a pool timeout.
#[tokio::test]
async fn an_unreachable_postgres_server_is_reported_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut plugin = DatabasePlugin::new(format!("postgres://postgres@127.0.0.1:{port}/test"));
    let started = std::time::Instant::now();
    let error = plugin
        .load(&PluginContext::new("database"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "took {:?} (the acquire timeout is 10 s): {error}",
        started.elapsed()
    );
    assert!(error.contains("refused the connection"), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(!error.contains("timed out"), "{error}");
}

/// Registers `database` and the seed's data_analyzer.rhai in one manager and runs
/// `{"function": "analyze_sales"}`.
async fn analyze_sales(database: DatabasePlugin) -> Value {
    let manager = PluginManager::new("analytics");
    manager.register(database.with_id_checked()).await.unwrap();
    manager
        .register(RhaiPlugin::from_file(script("data_analyzer.rhai")).unwrap())
        .await
        .unwrap();
    manager.load_all().await.unwrap();
    manager.start_all().await.unwrap();
    let output = manager
        .execute(
            "data_analyzer",
            json!({ "function": "analyze_sales" }).to_string(),
        )
        .await
        .unwrap();
    manager.shutdown().await.unwrap();
    serde_json::from_str(&output).unwrap()
}

trait CheckedId {
    fn with_id_checked(self) -> Self;
}

impl CheckedId for DatabasePlugin {
    fn with_id_checked(self) -> Self {
        assert_eq!(
            self.metadata().id,
            "database",
            "the seed calls the plugin `database`"
        );
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_analyzer_totals_sales_from_sqlite() {
    let path = temp_db("sales");
    let url = path.to_str().unwrap().to_string();
    let setup = loaded(DatabasePlugin::new(url.clone())).await;
    sql(
        &setup,
        "CREATE TABLE sales (id INTEGER, date TEXT, amount REAL)",
        json!([]),
    )
    .await
    .unwrap();
    for (id, date, amount) in [
        (1, "2023-12-31", 1000.0),
        (2, "2024-01-15", 120.5),
        (3, "2024-02-01", 79.25),
        (4, "2024-03-10", 150.0),
    ] {
        sql(
            &setup,
            "INSERT INTO sales VALUES (?, ?, ?)",
            json!([id, date, amount]),
        )
        .await
        .unwrap();
    }
    let output = analyze_sales(DatabasePlugin::new(url).read_only(true)).await;
    assert_eq!(output, json!({ "total_sales": 349.75 }));
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_when_configured() {
    let Ok(base_url) = std::env::var(POSTGRES_ENV) else {
        // Written to the stderr handle directly: the test harness captures `println!`, and a
        // skip should be visible in the plain `cargo test` output.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!(
                "builtin_database: PostgreSQL checks skipped: {POSTGRES_ENV} is not set \
                 (e.g. postgres://postgres@127.0.0.1:5432/test)\n"
            )
            .as_bytes(),
        );
        return;
    };
    // A schema of our own, so concurrent runs and other tests' tables do not collide.
    let schema = format!("bilayer_test_{}", std::process::id());
    let admin = loaded(DatabasePlugin::new(base_url.clone())).await;
    sql(
        &admin,
        &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        json!([]),
    )
    .await
    .unwrap();
    sql(&admin, &format!("CREATE SCHEMA {schema}"), json!([]))
        .await
        .unwrap();
    let separator = if base_url.contains('?') { '&' } else { '?' };
    let url = format!("{base_url}{separator}options=-c%20search_path%3D{schema}");

    let result = std::panic::AssertUnwindSafe(postgres_checks(url))
        .catch_unwind_result()
        .await;
    sql(&admin, &format!("DROP SCHEMA {schema} CASCADE"), json!([]))
        .await
        .unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

async fn postgres_checks(url: String) {
    let db = loaded(DatabasePlugin::new(url.clone())).await;
    sql(
        &db,
        "CREATE TABLE sales (id INT4 PRIMARY KEY, date DATE, amount NUMERIC(10,2), big NUMERIC, \
         ok BOOL, ratio FLOAT8, small INT2, label VARCHAR(40), doc JSONB, at TIMESTAMPTZ, raw BYTEA)",
        json!([]),
    )
    .await
    .unwrap();
    for (id, date, amount) in [
        (1, "2023-12-31", "1000.00"),
        (2, "2024-01-15", "120.50"),
        (3, "2024-02-01", "79.25"),
        (4, "2024-03-10", "150.00"),
    ] {
        sql(
            &db,
            "INSERT INTO sales (id, date, amount) VALUES ($1, $2::date, $3::numeric)",
            json!([id, date, amount]),
        )
        .await
        .unwrap();
    }
    let updated = sql(
        &db,
        "UPDATE sales SET big = 12345678901234567.89, ok = $1, ratio = $2, small = 7, label = $3, \
         doc = $4, at = '2024-03-01 01:02:03.5+00', raw = '\\x00ff' WHERE id = $5",
        json!([true, 0.25, "x'; DROP TABLE sales; --", {"k": [1, 2]}, 4]),
    )
    .await
    .unwrap();
    assert_eq!(updated, json!({ "rows_affected": 1 }));
    let row = sql(&db, "SELECT * FROM sales WHERE id = $1", json!([4]))
        .await
        .unwrap();
    assert_eq!(
        row,
        json!([{
            "id": 4, "date": "2024-03-10", "amount": 150.0, "big": "12345678901234567.89",
            "ok": true, "ratio": 0.25, "small": 7, "label": "x'; DROP TABLE sales; --",
            "doc": {"k": [1, 2]}, "at": "2024-03-01T01:02:03.500000Z", "raw": "00ff"
        }])
    );
    let nothing = sql(
        &db,
        "SELECT id FROM sales WHERE label = $1",
        json!(["' OR '1'='1"]),
    )
    .await
    .unwrap();
    assert_eq!(nothing, json!([]));

    // The server's message and where in the statement it points; never "at line N", which
    // PostgreSQL means as the line of its own C source that raised the error.
    let missing = sql(&db, "SELECT * FROM no_such_table", json!([]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("relation \"no_such_table\" does not exist"),
        "{missing}"
    );
    assert!(
        missing.contains("at character 15 of the statement"),
        "{missing}"
    );
    assert!(missing.contains("SQLSTATE 42P01"), "{missing}");
    assert!(!missing.contains("at line"), "{missing}");

    let reader = loaded(DatabasePlugin::new(url.clone()).read_only(true)).await;
    let refused = sql(&reader, "DELETE FROM sales", json!([]))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("read-only"), "{refused}");
    let hidden = sql(
        &reader,
        "WITH d AS (DELETE FROM sales RETURNING id) SELECT * FROM d",
        json!([]),
    )
    .await
    .unwrap_err();
    assert!(hidden.to_string().contains("read-only"), "{hidden}");

    let output = analyze_sales(DatabasePlugin::new(url).read_only(true)).await;
    assert_eq!(output, json!({ "total_sales": 349.75 }));
}

/// `catch_unwind` for a future, without pulling in more of `futures` than the tests use.
trait CatchUnwindResult: std::future::Future + Sized {
    async fn catch_unwind_result(self) -> std::thread::Result<Self::Output>;
}

impl<F: std::future::Future + std::panic::UnwindSafe> CatchUnwindResult for F {
    async fn catch_unwind_result(self) -> std::thread::Result<Self::Output> {
        futures::FutureExt::catch_unwind(self).await
    }
}

#[test]
fn default_config_is_in_memory_sqlite() {
    let config = DatabaseConfig::default();
    assert!(config.is_sqlite_memory() && !config.is_postgres() && !config.read_only);
}
