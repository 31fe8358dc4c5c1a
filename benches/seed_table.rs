//! The seed's performance table, measured: every operation of its table (JSON parsing, regex
//! match, rule evaluation, HTTP request, LLM call) on the same fixed input through a native
//! plugin, a WASM plugin, a Rhai plugin and pure Python, in one run; plus its "WASM startup
//! ~1-10 ms" and "~95% of native speed".
//!
//! Each layer is measured at up to three points, so the framework's own cost shows:
//!
//! - `native_raw`: the operation alone in Rust (`serde_json::from_str`, `Regex::is_match`, the
//!   rules as a Rust function, a reqwest GET or POST): the floor for every layer;
//! - `*_direct`: the layer's plugin called in place on the calling thread, JSON text in and
//!   out (`AgentPlugin::execute` awaited in a task, `RhaiPlugin::execute_sync`,
//!   `WasmPlugin::execute_sync` on a fresh instance, the default); plus `wasm_warm` (a reused
//!   instance: the guest code and the copies in and out) and `rhai_engine` (the rules through
//!   `RuleEngine::evaluate`, no JSON text);
//! - `*_actor`: what a user does, `PluginManager::execute(id, input)` from a task inside a
//!   2-worker tokio runtime (the plugin in its actor, mailbox and reply included); plus
//!   `wasm_blocking_actor`, the same WASM guest in an actor that hands every call to
//!   `run_blocking`, as `WasmPlugin::execute` did before its inline slice (see
//!   [`BlockingWasm`]), and `*_actor_ct`, the same calls on a current-thread runtime (no second worker to wake).
//!
//! Python (benches/python/seed_ops.py, stdlib only) times the same operations on the same files
//! with the same method (criterion's warm-up and linear sampling, median of the samples'
//! per-iteration times), against the same loopback server, started by this bench; each
//! operation right after the Rust benches of its row, so the columns meet the same machine
//! (the project's is shared and its load drifts within minutes). Then the
//! results go to `<target>/seed_table/results.json`, and benches/python/seed_report.py writes
//! `table.md` (the seed's table with our medians beside each claim, ratios, targets) and
//! `chart.svg`, and prints the table, saying where we are slower than the seed.
//!
//! Fixed inputs (benches/data/): a ~1 KB JSON request (`{"json": <order>, "path": ...}`; every
//! layer returns `json.customer.address.city`), a 199-byte text searched for an email address,
//! the seed's content-moderation rules (scripts/rules/content_moderation.rhai) on a clean
//! message (every rule tried), a GET answered with a small JSON body, and a chat completion
//! from an OpenAI-compatible loopback server (benches/support/loopback_server.rs, which says
//! why the built-in plugins' test server could not be reused; connections are kept open and
//! reused by every client).
//!
//! The WASM JSON, regex and rules guests are C, compiled here with clang for wasm32
//! (plugins/wasm-plugins/c/json_extract.c, benches/wasm/email_regex.c, benches/wasm/moderation.c);
//! without clang and wasm-ld those rows are skipped with a note. WASM and Rhai reach HTTP and
//! the LLM through the built-in plugins with `call_plugin` (benches/wasm/forward_to_*.wat,
//! benches/rhai/*.rhai).
//!
//! `bash benches/seed_table.sh` (runs this with short criterion times and copies the outputs to
//! benches/results/), or `cargo bench --bench seed_table`; docs/benchmarks.md has the figures.

// A bench is not API: the loopback server's `pub` items are for this bench only.
#![allow(unreachable_pub)]

#[path = "support/loopback_server.rs"]
mod loopback_server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bilayer::prelude::*;
use bilayer::rhai_runtime::{ProfanityFilter, RhaiPlugin, RuleEngine};
use bilayer::wasm_runtime::{InstanceMode, WasmCapabilities, WasmEngine, WasmPlugin};
use bilayer::PluginOptions;
use criterion::{BenchmarkGroup, Criterion};
use loopback_server::{LoopbackServer, Route};
use regex::Regex;
use serde_json::{json, Value};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

const PROMPT: &str = "Say hello";
/// The LLM row's plugin input: the prompt as a JSON string (what every layer's plugin takes).
const PROMPT_INPUT: &str = "\"Say hello\"";
const COMPLETION_TEXT: &str = "Hello! How can I help you today?";
const HTTP_PATH: &str = "/orders/7";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory: this executable is `<target>/<profile>/deps/seed_table-<hash>`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| root().join("target"))
}

fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("criterion"))
}

fn data(name: &str) -> String {
    let path = root().join("benches/data").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.trim_end_matches('\n').to_string()
}

/// The fixed inputs, as files on disk (Python reads the same files).
struct Inputs {
    /// `{"json": <~1 KB order>, "path": "customer.address.city"}`, compact JSON text.
    json_request: String,
    regex_text: String,
    regex_pattern: String,
    message: String,
}

impl Inputs {
    fn read() -> Self {
        Self {
            json_request: data("json_request.json"),
            regex_text: data("regex_input.txt"),
            regex_pattern: data("regex_pattern.txt"),
            message: data("moderation_message.txt"),
        }
    }

    /// The plugin input of the regex row: the text as a JSON string.
    fn regex_input(&self) -> String {
        Value::String(self.regex_text.clone()).to_string()
    }

    /// The plugin input of the rules row: the message as a JSON string.
    fn rules_input(&self) -> String {
        Value::String(self.message.clone()).to_string()
    }
}

// ---- native operations and plugins ---------------------------------------------------------

/// The JSON row's operation: parse the whole request, return the value at the path.
fn city(request: &Value) -> Value {
    request["json"]["customer"]["address"]["city"].clone()
}

/// The seed's three content-moderation rules in Rust, first match wins, with the output of the
/// Rhai rules plugin (`{"rule": NAME, ...action's map}`).
fn moderate(profanity: &ProfanityFilter, message: &str) -> Value {
    if message.contains("BUY NOW") || message.contains("CLICK HERE") {
        json!({ "rule": "spam_filter", "decision": "block", "reason": "spam" })
    } else if profanity.contains_profanity(message) {
        json!({ "rule": "profanity_filter", "decision": "flag", "reason": "profanity" })
    } else {
        json!({ "rule": "allow_default", "decision": "allow" })
    }
}

fn native_json_plugin() -> impl AgentPlugin {
    FnPlugin::new("native_json", PluginType::Tool, |request| {
        Ok(city(&request))
    })
}

fn native_regex_plugin(pattern: &str) -> impl AgentPlugin {
    let regex = Regex::new(pattern).expect("the regex of benches/data/regex_pattern.txt");
    FnPlugin::new("native_regex", PluginType::Tool, move |text| {
        let text = text
            .as_str()
            .ok_or_else(|| PluginError::InvalidInput("expected a JSON string".into()))?;
        Ok(Value::Bool(regex.is_match(text)))
    })
}

fn native_rules_plugin() -> impl AgentPlugin {
    let profanity = ProfanityFilter::default();
    FnPlugin::new("native_rules", PluginType::Tool, move |message| {
        let message = message
            .as_str()
            .ok_or_else(|| PluginError::InvalidInput("expected a JSON string".into()))?;
        Ok(moderate(&profanity, message))
    })
}

// ---- WASM guests -------------------------------------------------------------------------------

const CLANG_FLAGS: [&str; 9] = [
    "--target=wasm32-unknown-unknown",
    "-O2",
    "-ffreestanding",
    "-nostdlib",
    "-mbulk-memory",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,--no-entry",
];

fn tool_works(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

/// The C guests (json_extract, email_regex, moderation) built into `<target>/seed_table/wasm`,
/// or `None` with the reason when clang or wasm-ld is missing.
fn build_c_guests() -> Result<PathBuf, String> {
    let missing: Vec<&str> = ["clang", "wasm-ld"]
        .into_iter()
        .filter(|tool| !tool_works(tool))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} not found; install them with `apt-get install -y clang lld`",
            missing.join(" and ")
        ));
    }
    let out = target_dir().join("seed_table/wasm");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let include = root().join("plugins/wasm-plugins/c");
    let sources = [
        include.join("json_extract.c"),
        root().join("benches/wasm/email_regex.c"),
        root().join("benches/wasm/moderation.c"),
    ];
    for source in sources {
        let stem = source.file_stem().unwrap().to_string_lossy().into_owned();
        let partial = out.join(format!("{stem}.{}.partial", std::process::id()));
        let output = Command::new("clang")
            .args(CLANG_FLAGS)
            .arg("-I")
            .arg(&include)
            .arg("-o")
            .arg(&partial)
            .arg(&source)
            .output()
            .map_err(|e| format!("running clang: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "clang failed on {}:\n{}",
                source.display(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        std::fs::rename(&partial, out.join(format!("{stem}.wasm"))).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// A module's bytes with a custom section appended: the same code, but new bytes, so the
/// engine's module cache misses and the compile is real.
fn with_custom_section(module: &[u8], serial: u64) -> Vec<u8> {
    let name = b"seed-table";
    let payload = serial.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    let mut bytes = module.to_vec();
    bytes.push(0); // custom section id
    bytes.push(u8::try_from(size).expect("a one-byte LEB128 size"));
    bytes.push(u8::try_from(name.len()).unwrap());
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(&payload);
    bytes
}

/// The native twin of plugins/tests/fixtures/wasm/fnv_rounds.wat (as in benches/wasm.rs).
fn fnv_rounds(rounds: u32, data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for _ in 0..rounds {
        for byte in data {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

fn fixture(name: &str) -> PathBuf {
    root().join("plugins/tests/fixtures/wasm").join(name)
}

/// A WASM plugin whose every call goes through `run_blocking` (`block_in_place` on a
/// multi-thread runtime), as `WasmPlugin::execute` did before it tried a short inline slice on
/// the calling thread first (plugins/src/wasm_runtime/inline.rs). Not a product type: it keeps
/// the "before" of that change measurable, as `wasm_blocking_actor` beside `wasm_actor`.
struct BlockingWasm(Arc<WasmPlugin>);

impl BlockingWasm {
    /// The plugin, for its lifecycle steps (no call holds a clone between calls).
    fn owned(&mut self) -> &mut WasmPlugin {
        Arc::get_mut(&mut self.0).expect("no call is running during a lifecycle step")
    }
}

#[async_trait]
impl AgentPlugin for BlockingWasm {
    fn metadata(&self) -> &PluginMetadata {
        self.0.metadata()
    }
    fn state(&self) -> PluginState {
        self.0.state()
    }
    async fn load(&mut self, ctx: &PluginContext) -> PluginResult<()> {
        self.owned().load(ctx).await
    }
    async fn init_plugin(&mut self) -> PluginResult<()> {
        self.owned().init_plugin().await
    }
    async fn start(&mut self) -> PluginResult<()> {
        self.owned().start().await
    }
    async fn stop(&mut self) -> PluginResult<()> {
        self.owned().stop().await
    }
    async fn unload(&mut self) -> PluginResult<()> {
        self.owned().unload().await
    }
    async fn execute(&mut self, input: String) -> PluginResult<String> {
        let plugin = Arc::clone(&self.0);
        bilayer_plugins::run_blocking(move || plugin.execute_sync(&input)).await?
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

// ---- the loopback servers ----------------------------------------------------------------------

fn completion() -> Value {
    json!({
        "id": "chatcmpl-seed-table",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": COMPLETION_TEXT },
            "finish_reason": "stop"
        }],
        "usage": { "prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18 }
    })
}

/// One loopback server for both rows (benches/support/loopback_server.rs), on its own
/// one-worker runtime: `GET /orders/7` answers a small JSON body, `POST /v1/chat/completions`
/// a chat completion. Connections stay open, and every client (reqwest, the built-in plugins,
/// Python's http.client) reuses its connection.
fn start_server(runtime: &tokio::runtime::Runtime) -> LoopbackServer {
    runtime.block_on(LoopbackServer::start(vec![
        Route::json(
            HTTP_PATH,
            &json!({ "id": 7, "status": "shipped", "items": [1, 2, 3] }),
        ),
        Route::json("/v1/chat/completions", &completion()),
    ]))
}

// ---- the fixture: runtimes, servers, plugins ---------------------------------------------------

struct Fixture {
    inputs: Inputs,
    rt: tokio::runtime::Runtime,
    /// Kept alive for the servers' tasks.
    _server_rt: tokio::runtime::Runtime,
    server: LoopbackServer,
    manager: PluginManager,
    /// A current-thread runtime and a manager on it hosting the JSON, regex and rules plugins
    /// again: the actor path without a second worker to wake (see `*_actor_ct`).
    local: tokio::runtime::Runtime,
    local_manager: PluginManager,
    /// The C guests' directory, or why they were not built.
    guests: Result<PathBuf, String>,
}

impl Fixture {
    fn new() -> Self {
        let inputs = Inputs::read();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let server_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("loopback-server")
            .enable_all()
            .build()
            .expect("server runtime");
        let server = start_server(&server_rt);
        let guests = build_c_guests();
        if let Err(reason) = &guests {
            println!(
                "SKIPPED (benches/seed_table.rs): the WASM JSON, regex and rules entries: {reason}"
            );
        }
        let local = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("current-thread runtime");
        let fixture = Self {
            inputs,
            rt,
            _server_rt: server_rt,
            server,
            manager: PluginManager::new("seed-table"),
            local,
            local_manager: PluginManager::new("seed-table-current-thread"),
            guests,
        };
        fixture.rt.block_on(fixture.register_all());
        fixture
            .local
            .block_on(fixture.register_compute(&fixture.local_manager));
        fixture.check_outputs();
        fixture
    }

    fn http_url(&self) -> String {
        self.server.url(HTTP_PATH)
    }

    fn llm_base(&self) -> String {
        self.server.url("/v1")
    }

    fn http_plugin(&self) -> HttpPlugin {
        HttpPlugin::new().allow_host(self.server.addr.to_string())
    }

    fn llm_plugin(&self) -> LLMPlugin {
        LLMPlugin::new("openai")
            .with_base_url(self.llm_base())
            .with_model("test-model")
            .with_api_key("sk-test")
    }

    fn guest(&self, name: &str) -> Option<PathBuf> {
        self.guests
            .as_ref()
            .ok()
            .map(|dir| dir.join(format!("{name}.wasm")))
    }

    /// The JSON, regex and rules plugins of every layer, loaded and started on `manager`.
    async fn register_compute(&self, manager: &PluginManager) {
        let pattern = &self.inputs.regex_pattern;
        register(manager, "native_json", native_json_plugin()).await;
        register(manager, "native_regex", native_regex_plugin(pattern)).await;
        register(manager, "native_rules", native_rules_plugin()).await;
        register(manager, "rhai_json", rhai("json_city")).await;
        register(manager, "rhai_regex", rhai("email_regex")).await;
        register(manager, "rhai_rules", rules_plugin()).await;
        for (id, guest) in [
            ("wasm_json", "json_extract"),
            ("wasm_regex", "email_regex"),
            ("wasm_rules", "moderation"),
        ] {
            if let Some(path) = self.guest(guest) {
                register(manager, id, WasmPlugin::from_file(&path).unwrap()).await;
                let blocking = BlockingWasm(Arc::new(WasmPlugin::from_file(&path).unwrap()));
                register(manager, &format!("{id}_blocking"), blocking).await;
            }
        }
        manager.load_all().await.unwrap();
        manager.start_all().await.unwrap();
    }

    /// Everything on the main manager: the compute plugins, the built-in HTTP and LLM plugins,
    /// and the Rhai scripts and WASM guests that call them.
    async fn register_all(&self) {
        let manager = &self.manager;
        register(manager, "http", self.http_plugin()).await;
        register(manager, "llm", self.llm_plugin()).await;
        register(manager, "rhai_http", rhai("fetch_http")).await;
        register(manager, "rhai_llm", rhai("ask_llm")).await;
        for (id, target) in [("wasm_http", "http"), ("wasm_llm", "llm")] {
            let path = root().join(format!("benches/wasm/forward_to_{target}.wat"));
            let plugin = WasmPlugin::from_file(path)
                .unwrap()
                .with_capabilities(WasmCapabilities::none().grant_call_plugin_to([target]));
            register(manager, id, plugin).await;
        }
        self.register_compute(manager).await;
    }

    fn execute(&self, id: &str, input: &str) -> Value {
        let out = self
            .rt
            .block_on(self.manager.execute(id, input.to_string()))
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{id} answered {out:?}: {e}"))
    }

    fn execute_local(&self, id: &str, input: &str) -> Value {
        let out = self
            .local
            .block_on(self.local_manager.execute(id, input.to_string()))
            .unwrap_or_else(|e| panic!("{id} (current thread): {e}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{id} answered {out:?}: {e}"))
    }

    /// Every plugin of a row answers the same thing before anything is timed.
    fn check_outputs(&self) {
        let inputs = &self.inputs;
        let rows: [(&str, String, Value); 3] = [
            ("json", inputs.json_request.clone(), json!("Lisbon")),
            ("regex", inputs.regex_input(), json!(true)),
            (
                "rules",
                inputs.rules_input(),
                json!({"rule": "allow_default", "decision": "allow"}),
            ),
        ];
        for (row, input, expected) in rows {
            for id in [
                format!("native_{row}"),
                format!("rhai_{row}"),
                format!("wasm_{row}"),
                format!("wasm_{row}_blocking"),
            ] {
                if id.starts_with("wasm") && self.guests.is_err() {
                    continue;
                }
                assert_eq!(self.execute(&id, &input), expected, "{id}");
                assert_eq!(self.execute_local(&id, &input), expected, "{id}");
            }
        }
        let url = Value::String(self.http_url()).to_string();
        for id in ["http", "rhai_http", "wasm_http"] {
            let out = self.execute(id, &url);
            assert_eq!(out["status"], 200, "{id}: {out}");
            assert_eq!(out["body"]["status"], "shipped", "{id}: {out}");
        }
        for id in ["llm", "rhai_llm", "wasm_llm"] {
            let out = self.execute(id, PROMPT_INPUT);
            assert_eq!(out["content"], COMPLETION_TEXT, "{id}: {out}");
        }
    }

    /// `PluginManager::execute(id, input)` in a loop inside a task of the plugin runtime.
    fn bench_actor(&self, group: &mut Group<'_>, name: &str, id: &'static str, input: &str) {
        let input = input.to_string();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let manager = self.manager.clone();
                let input = input.clone();
                self.rt
                    .block_on(self.rt.spawn(async move {
                        let started = Instant::now();
                        for _ in 0..iters {
                            let out = manager.execute(id, input.clone()).await.unwrap();
                            std::hint::black_box(out);
                        }
                        started.elapsed()
                    }))
                    .unwrap()
            })
        });
    }

    /// The row's native, WASM and Rhai plugins through their actors on the current-thread
    /// runtime: `native_actor_ct`, `wasm_actor_ct`, `rhai_actor_ct`.
    fn bench_current_thread(&self, group: &mut Group<'_>, row: &str, input: &str) {
        let ids: [(&str, &'static str); 3] = match row {
            "json" => [
                ("native_actor_ct", "native_json"),
                ("wasm_actor_ct", "wasm_json"),
                ("rhai_actor_ct", "rhai_json"),
            ],
            "regex" => [
                ("native_actor_ct", "native_regex"),
                ("wasm_actor_ct", "wasm_regex"),
                ("rhai_actor_ct", "rhai_regex"),
            ],
            _ => [
                ("native_actor_ct", "native_rules"),
                ("wasm_actor_ct", "wasm_rules"),
                ("rhai_actor_ct", "rhai_rules"),
            ],
        };
        for (name, id) in ids {
            if id.starts_with("wasm") && self.guests.is_err() {
                continue;
            }
            self.bench_actor_ct(group, name, id, input);
        }
    }

    /// `PluginManager::execute(id, input)` in a loop on the current-thread runtime.
    fn bench_actor_ct(&self, group: &mut Group<'_>, name: &str, id: &'static str, input: &str) {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                self.local.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let out = self
                            .local_manager
                            .execute(id, input.to_string())
                            .await
                            .unwrap();
                        std::hint::black_box(out);
                    }
                    started.elapsed()
                })
            })
        });
    }

    /// A plugin's `execute` awaited in place, in a task of the plugin runtime (no actor).
    fn bench_direct<P: AgentPlugin>(
        &self,
        group: &mut Group<'_>,
        name: &str,
        plugin: P,
        input: &str,
    ) {
        let plugin = Arc::new(tokio::sync::Mutex::new(plugin));
        let input = input.to_string();
        self.rt.block_on(async {
            let mut plugin = plugin.lock().await;
            let ctx = PluginContext::new(plugin.metadata().id.clone());
            plugin.load(&ctx).await.unwrap();
            plugin.start().await.unwrap();
        });
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let plugin = Arc::clone(&plugin);
                let input = input.clone();
                self.rt
                    .block_on(self.rt.spawn(async move {
                        let mut plugin = plugin.lock().await;
                        let started = Instant::now();
                        for _ in 0..iters {
                            let out = plugin.execute(input.clone()).await.unwrap();
                            std::hint::black_box(out);
                        }
                        started.elapsed()
                    }))
                    .unwrap()
            })
        });
    }

    /// An async operation in a loop inside a task of the plugin runtime.
    fn bench_task<F, Fut>(&self, group: &mut Group<'_>, name: &str, op: F)
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let op = op.clone();
                self.rt
                    .block_on(self.rt.spawn(async move {
                        let started = Instant::now();
                        for _ in 0..iters {
                            op().await;
                        }
                        started.elapsed()
                    }))
                    .unwrap()
            })
        });
    }

    /// The WASM direct figures of a row: warm (reused instance) and fresh (the default).
    fn bench_wasm_direct(&self, group: &mut Group<'_>, guest: &str, input: &str) {
        let Some(path) = self.guest(guest) else {
            return;
        };
        let fresh = WasmPlugin::from_file(&path).unwrap();
        let warm = WasmPlugin::from_file(&path)
            .unwrap()
            .with_instance_mode(InstanceMode::Reuse);
        assert_eq!(
            fresh.execute_sync(input).unwrap(),
            warm.execute_sync(input).unwrap()
        );
        group.bench_function("wasm_warm", |b| {
            b.iter(|| warm.execute_sync(std::hint::black_box(input)).unwrap())
        });
        group.bench_function("wasm_direct", |b| {
            b.iter(|| fresh.execute_sync(std::hint::black_box(input)).unwrap())
        });
    }
}

async fn register(manager: &PluginManager, id: &str, plugin: impl AgentPlugin) {
    manager
        .register_with(Box::new(plugin), PluginOptions::new().id(id))
        .await
        .unwrap_or_else(|e| panic!("registering {id}: {e}"));
}

fn rhai(name: &str) -> RhaiPlugin {
    let path = root().join(format!("benches/rhai/{name}.rhai"));
    let source = std::fs::read_to_string(&path).unwrap();
    RhaiPlugin::from_source(name, source).unwrap()
}

fn rules_plugin() -> RhaiPlugin {
    RhaiPlugin::from_file(root().join("scripts/rules/content_moderation.rhai")).unwrap()
}

// ---- the rows ----------------------------------------------------------------------------------

fn json_row(c: &mut Criterion, fx: &Fixture) {
    let request = fx.inputs.json_request.as_str();
    let mut group = c.benchmark_group("seed_json");
    group.bench_function("native_raw", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_str(std::hint::black_box(request)).unwrap();
            city(&value)
        })
    });
    fx.bench_direct(&mut group, "native_direct", native_json_plugin(), request);
    fx.bench_actor(&mut group, "native_actor", "native_json", request);
    fx.bench_wasm_direct(&mut group, "json_extract", request);
    if fx.guests.is_ok() {
        fx.bench_actor(&mut group, "wasm_actor", "wasm_json", request);
        fx.bench_actor(
            &mut group,
            "wasm_blocking_actor",
            "wasm_json_blocking",
            request,
        );
    }
    let script = rhai("json_city");
    group.bench_function("rhai_direct", |b| {
        b.iter(|| script.execute_sync(std::hint::black_box(request)).unwrap())
    });
    fx.bench_actor(&mut group, "rhai_actor", "rhai_json", request);
    fx.bench_current_thread(&mut group, "json", request);
    group.finish();
}

fn regex_row(c: &mut Criterion, fx: &Fixture) {
    let text = fx.inputs.regex_text.as_str();
    let input = fx.inputs.regex_input();
    let regex = Regex::new(&fx.inputs.regex_pattern).unwrap();
    assert!(regex.is_match(text));
    let mut group = c.benchmark_group("seed_regex");
    group.bench_function("native_raw", |b| {
        b.iter(|| regex.is_match(std::hint::black_box(text)))
    });
    fx.bench_direct(
        &mut group,
        "native_direct",
        native_regex_plugin(&fx.inputs.regex_pattern),
        &input,
    );
    fx.bench_actor(&mut group, "native_actor", "native_regex", &input);
    fx.bench_wasm_direct(&mut group, "email_regex", &input);
    if fx.guests.is_ok() {
        fx.bench_actor(&mut group, "wasm_actor", "wasm_regex", &input);
        fx.bench_actor(
            &mut group,
            "wasm_blocking_actor",
            "wasm_regex_blocking",
            &input,
        );
    }
    let script = rhai("email_regex");
    group.bench_function("rhai_direct", |b| {
        b.iter(|| script.execute_sync(std::hint::black_box(&input)).unwrap())
    });
    fx.bench_actor(&mut group, "rhai_actor", "rhai_regex", &input);
    fx.bench_current_thread(&mut group, "regex", &input);
    group.finish();
}

fn rules_row(c: &mut Criterion, fx: &Fixture) {
    let message = fx.inputs.message.as_str();
    let input = fx.inputs.rules_input();
    let profanity = ProfanityFilter::default();
    let mut group = c.benchmark_group("seed_rules");
    group.bench_function("native_raw", |b| {
        b.iter(|| moderate(&profanity, std::hint::black_box(message)))
    });
    fx.bench_direct(&mut group, "native_direct", native_rules_plugin(), &input);
    fx.bench_actor(&mut group, "native_actor", "native_rules", &input);
    fx.bench_wasm_direct(&mut group, "moderation", &input);
    if fx.guests.is_ok() {
        fx.bench_actor(&mut group, "wasm_actor", "wasm_rules", &input);
        fx.bench_actor(
            &mut group,
            "wasm_blocking_actor",
            "wasm_rules_blocking",
            &input,
        );
    }
    let engine =
        RuleEngine::from_file(root().join("scripts/rules/content_moderation.rhai")).unwrap();
    let message_value = Value::String(message.to_string());
    assert_eq!(
        engine.evaluate(&message_value).unwrap().to_json(),
        moderate(&profanity, message)
    );
    group.bench_function("rhai_engine", |b| {
        b.iter(|| {
            engine
                .evaluate(std::hint::black_box(&message_value))
                .unwrap()
        })
    });
    let script = rules_plugin();
    group.bench_function("rhai_direct", |b| {
        b.iter(|| script.execute_sync(std::hint::black_box(&input)).unwrap())
    });
    fx.bench_actor(&mut group, "rhai_actor", "rhai_rules", &input);
    fx.bench_current_thread(&mut group, "rules", &input);
    group.finish();
}

fn http_row(c: &mut Criterion, fx: &Fixture) {
    let url = fx.http_url();
    let input = Value::String(url.clone()).to_string();
    let mut group = c.benchmark_group("seed_http");
    let client = reqwest::Client::new();
    fx.bench_task(&mut group, "native_raw", move || {
        let request = client.get(url.clone());
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            std::hint::black_box(body);
        }
    });
    fx.bench_direct(&mut group, "native_direct", fx.http_plugin(), &input);
    fx.bench_actor(&mut group, "native_actor", "http", &input);
    fx.bench_actor(&mut group, "wasm_actor", "wasm_http", &input);
    fx.bench_actor(&mut group, "rhai_actor", "rhai_http", &input);
    group.finish();
}

fn llm_row(c: &mut Criterion, fx: &Fixture) {
    let url = format!("{}/chat/completions", fx.llm_base());
    let mut group = c.benchmark_group("seed_llm");
    let client = reqwest::Client::new();
    // What an OpenAI-compatible client does at the least: the request body serialized per
    // call, a POST, the answer parsed, the text taken out (Python does the same).
    let body = json!({
        "model": "test-model",
        "messages": [{ "role": "user", "content": PROMPT }],
        "stream": false
    });
    fx.bench_task(&mut group, "native_raw", move || {
        let request = client
            .post(url.clone())
            .bearer_auth("sk-test")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap());
        async move {
            let response = request.send().await.unwrap();
            let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            let content = answer["choices"][0]["message"]["content"].as_str().unwrap();
            assert_eq!(content, COMPLETION_TEXT);
        }
    });
    fx.bench_direct(&mut group, "native_direct", fx.llm_plugin(), PROMPT_INPUT);
    fx.bench_actor(&mut group, "native_actor", "llm", PROMPT_INPUT);
    fx.bench_actor(&mut group, "wasm_actor", "wasm_llm", PROMPT_INPUT);
    fx.bench_actor(&mut group, "rhai_actor", "rhai_llm", PROMPT_INPUT);
    group.finish();
}

/// The seed's "WASM startup ~1-10 ms": a call on a fresh instance (the default) against a call
/// on a reused one, for a minimal module (uppercase.wat, 100-byte JSON) and the C JSON guest;
/// and a real compile of the C guest (a new version of a plugin).
fn wasm_startup(c: &mut Criterion, fx: &Fixture) {
    const JSON_100: &str = r#"{"id":"ORD-123","customer":"acme","quantity":5,"price":250.0,"status":"new","note":"rush"}"#;
    let mut group = c.benchmark_group("seed_wasm_startup");
    let fresh = WasmPlugin::from_file(fixture("uppercase.wat")).unwrap();
    let warm = WasmPlugin::from_file(fixture("uppercase.wat"))
        .unwrap()
        .with_instance_mode(InstanceMode::Reuse);
    assert_eq!(
        fresh.execute_sync(JSON_100).unwrap(),
        JSON_100.to_uppercase()
    );
    group.bench_function("minimal_fresh_instance", |b| {
        b.iter(|| fresh.execute_sync(JSON_100).unwrap())
    });
    group.bench_function("minimal_warm_instance", |b| {
        b.iter(|| warm.execute_sync(JSON_100).unwrap())
    });
    if let Some(path) = fx.guest("json_extract") {
        let engine = WasmEngine::shared().unwrap();
        let module = std::fs::read(path).unwrap();
        let serial = AtomicU64::new(0);
        group.bench_function("compile_c_json_guest", |b| {
            b.iter(|| {
                let bytes = with_custom_section(&module, serial.fetch_add(1, Ordering::Relaxed));
                WasmPlugin::compile_bytes(&engine, "json_extract", bytes).unwrap()
            })
        });
    }
    group.finish();
}

/// The seed's "~95% of native speed": the same algorithm (FNV-1a 64 over 4 KiB, 16 rounds) in
/// native Rust and in a WASM guest (reused instance, input copied in).
fn wasm_compute(c: &mut Criterion) {
    let rounds: u32 = 16;
    let data: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut input = rounds.to_le_bytes().to_vec();
    input.extend_from_slice(&data);
    let plugin = WasmPlugin::from_file(fixture("fnv_rounds.wat"))
        .unwrap()
        .with_instance_mode(InstanceMode::Reuse);
    assert_eq!(
        plugin.execute_bytes(&input).unwrap(),
        fnv_rounds(rounds, &data).to_le_bytes()
    );
    let mut group = c.benchmark_group("seed_wasm_compute");
    group.bench_function("native_fnv", |b| {
        b.iter(|| fnv_rounds(std::hint::black_box(rounds), std::hint::black_box(&data)))
    });
    group.bench_function("wasm_fnv", |b| {
        b.iter(|| plugin.execute_bytes(&input).unwrap())
    });
    group.finish();
}

// ---- Python, results and the report ------------------------------------------------------------

/// The value following `flag` among the arguments (criterion's `--warm-up-time 1` etc.).
fn arg_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The pure-Python column, timed one operation at a time right after the same row's Rust
/// benches (so both columns meet the same machine), by benches/python/seed_ops.py against the
/// same loopback server.
struct Python {
    enabled: bool,
    warm_up: String,
    measurement: String,
    /// seed_ops.py's last report (version, method) and every operation's median.
    report: Value,
    medians: serde_json::Map<String, Value>,
    error: Option<String>,
}

impl Python {
    fn new(enabled: bool, args: &[String]) -> Self {
        Self {
            enabled,
            warm_up: arg_value(args, "--warm-up-time").unwrap_or_else(|| "3".into()),
            measurement: arg_value(args, "--measurement-time").unwrap_or_else(|| "5".into()),
            report: Value::Null,
            medians: serde_json::Map::new(),
            error: None,
        }
    }

    fn time(&mut self, fx: &Fixture, operation: &str) {
        if !self.enabled || self.error.is_some() {
            return;
        }
        match self.run(fx, operation) {
            Ok(report) => {
                if let Some(median) = report["medians_ns"].get(operation) {
                    self.medians.insert(operation.to_string(), median.clone());
                }
                self.report = report;
            }
            Err(e) => {
                println!("SKIPPED (benches/seed_table.rs): the pure-Python column: {e}");
                self.error = Some(e);
            }
        }
    }

    fn run(&self, fx: &Fixture, operation: &str) -> Result<Value, String> {
        let script = root().join("benches/python/seed_ops.py");
        println!(
            "seed_table: timing python/{operation} ({})",
            script.display()
        );
        let output = Command::new("python3")
            .arg(&script)
            .args(["--data", &root().join("benches/data").to_string_lossy()])
            .args(["--http-url", &fx.http_url()])
            .args(["--llm-base", &fx.llm_base()])
            .args(["--warm-up-time", &self.warm_up])
            .args(["--measurement-time", &self.measurement])
            .args(["--only", operation])
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{} exited with {}",
                script.display(),
                output.status
            ));
        }
        serde_json::from_slice(&output.stdout).map_err(|e| format!("its output is not JSON: {e}"))
    }

    /// The `python` member of results.json.
    fn results(&self) -> Value {
        if self.error.is_some() || self.medians.is_empty() {
            return Value::Null;
        }
        json!({
            "version": self.report["version"],
            "implementation": self.report["implementation"],
            "warm_up_time_s": self.report["warm_up_time_s"],
            "measurement_time_s": self.report["measurement_time_s"],
            "medians_ns": self.medians,
        })
    }
}

/// The median (ns) of every criterion bench of this file written since `since`.
fn criterion_medians(since: SystemTime) -> serde_json::Map<String, Value> {
    let mut medians = serde_json::Map::new();
    let dir = criterion_dir();
    let Ok(groups) = std::fs::read_dir(&dir) else {
        return medians;
    };
    for group in groups.flatten() {
        let group_name = group.file_name().to_string_lossy().into_owned();
        let Some(row) = group_name.strip_prefix("seed_") else {
            continue;
        };
        let Ok(benches) = std::fs::read_dir(group.path()) else {
            continue;
        };
        for bench in benches.flatten() {
            let estimates = bench.path().join("new/estimates.json");
            let fresh = std::fs::metadata(&estimates)
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified >= since);
            if !fresh {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&estimates) else {
                continue;
            };
            let Ok(value) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if let Some(median) = value["median"]["point_estimate"].as_f64() {
                let key = format!("{row}/{}", bench.file_name().to_string_lossy());
                medians.insert(key, json!(median));
            }
        }
    }
    medians
}

fn report(fx: &Fixture, python: &Python, started: SystemTime, args: &[String]) {
    let mut notes = Vec::new();
    if let Err(reason) = &fx.guests {
        notes.push(format!(
            "WASM JSON, regex and rules guests not built: {reason}"
        ));
    }
    if let Some(e) = &python.error {
        notes.push(format!("pure Python not measured: {e}"));
    }
    let results = json!({
        "date": date_of(started),
        "command": format!("cargo bench --bench seed_table -- {}", args.iter().filter(|a| *a != "--bench").cloned().collect::<Vec<_>>().join(" ")),
        "criterion": {
            "warm_up_time_s": python.warm_up,
            "measurement_time_s": python.measurement,
            "medians_ns": criterion_medians(started),
        },
        "python": python.results(),
        "notes": notes,
    });
    let out = target_dir().join("seed_table");
    std::fs::create_dir_all(&out).unwrap();
    let results_path = out.join("results.json");
    std::fs::write(
        &results_path,
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .unwrap();
    println!("seed_table: wrote {}", results_path.display());
    let status = Command::new("python3")
        .arg(root().join("benches/python/seed_report.py"))
        .arg(&results_path)
        .arg("--out")
        .arg(&out)
        .status();
    match status {
        Ok(status) if status.success() => {}
        other => println!("seed_table: the report was not written ({other:?})"),
    }
}

/// `YYYY-MM-DD` (UTC) of a time, without a date crate.
fn date_of(time: SystemTime) -> String {
    let days = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
        / 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Criterion's options that take a value (the value is not a filter).
const VALUE_FLAGS: [&str; 16] = [
    "--warm-up-time",
    "--measurement-time",
    "--sample-size",
    "--save-baseline",
    "--baseline",
    "--baseline-lenient",
    "--load-baseline",
    "--color",
    "--output-format",
    "--profile-time",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--nresamples",
    "--plotting-backend",
    "--format",
];

/// A benchmark filter among the arguments (`cargo bench --bench seed_table -- seed_rules`).
fn filtered(args: &[String]) -> bool {
    let mut after_flag = false;
    for arg in args {
        if after_flag {
            after_flag = false;
        } else if VALUE_FLAGS.contains(&arg.as_str()) {
            after_flag = true;
        } else if !arg.starts_with('-') {
            return true;
        }
    }
    false
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` runs each bench once without it,
    // and `--list` only lists: neither times anything, so neither runs Python or the report.
    // A filtered run times only part of the table: it writes no report either.
    let timing = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");
    if timing && filtered(&args) {
        println!("seed_table: a filtered run; no pure-Python timing and no report");
    }
    let timing = timing && !filtered(&args);
    let started = SystemTime::now();
    let mut criterion = Criterion::default()
        .output_directory(&criterion_dir())
        .configure_from_args();
    let fx = Fixture::new();
    let mut python = Python::new(timing, &args);
    json_row(&mut criterion, &fx);
    python.time(&fx, "json");
    regex_row(&mut criterion, &fx);
    python.time(&fx, "regex");
    rules_row(&mut criterion, &fx);
    python.time(&fx, "rules");
    http_row(&mut criterion, &fx);
    python.time(&fx, "http");
    llm_row(&mut criterion, &fx);
    python.time(&fx, "llm");
    wasm_startup(&mut criterion, &fx);
    wasm_compute(&mut criterion);
    criterion.final_summary();
    if timing {
        report(&fx, &python, started, &args);
    }
    fx.rt.block_on(fx.manager.shutdown()).unwrap();
    fx.local.block_on(fx.local_manager.shutdown()).unwrap();
}
