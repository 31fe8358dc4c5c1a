//! NATS credentials against real servers that demand them: a token server and a user/password
//! server, each a `nats-server -js` started by the test on a free loopback port. The right
//! credentials (from the builder, and from a system TOML through `token_env` / `password_env`)
//! carry messages; wrong or missing ones are a clear error naming the server and the
//! credentials, never a hang. `.creds` files need an operator set up with `nsc`; they are not
//! exercised here.
//!
//! Needs the `nats-server` binary (the project's machines and `.ci/run` have it); skipped
//! without it unless `BILAYER_REQUIRE_NATS=1`.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bilayer::prelude::*;
use bilayer::system_config::SystemDefinition;
use bilayer::{NatsCredentials, NatsTransport, Transport};
use serde_json::{json, Value};

use crate::hot_reload_support::Scratch;

/// A `nats-server -js` with the given auth flags on a free port; killed on drop.
struct AuthServer {
    child: Child,
    port: u16,
    _store: Scratch,
}

impl AuthServer {
    fn start(test: &str, auth: &[&str]) -> Option<AuthServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = Scratch::new(&format!("nats-auth-{test}"));
        let spawned = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .args(auth)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                if std::env::var("BILAYER_REQUIRE_NATS").as_deref() == Ok("1") {
                    panic!("{test}: nats-server is required (BILAYER_REQUIRE_NATS=1): {e}");
                }
                eprintln!("{test}: skipped, cannot start nats-server ({e})");
                return None;
            }
        };
        let server = AuthServer {
            child,
            port,
            _store: store,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{test}: nats-server never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn echo(id: &str) -> FnPlugin<impl Fn(Value) -> PluginResult<Value> + Send + Sync + 'static> {
    let by = id.to_string();
    FnPlugin::new(id, PluginType::Custom("test".into()), move |v| {
        Ok(json!({ "v": v["v"], "by": by }))
    })
}

async fn system_over(transport: NatsTransport, name: &str) -> PluginResult<AgentSystem> {
    AgentSystem::builder()
        .name(name)
        .transport(Transport::Nats(transport))
        .agent("echo", echo("echo"))
        .build()
        .await
}

async fn carries_messages(system: &AgentSystem) {
    for v in 0..5 {
        let outcome = system.send(json!({ "v": v })).await;
        assert_eq!(
            outcome.output,
            Some(json!({ "v": v, "by": "echo" })),
            "{outcome:?}"
        );
    }
}

/// Building a system with `transport` fails, quickly, with an error naming the server and the
/// credentials.
async fn refused(transport: NatsTransport, url: &str) {
    let began = Instant::now();
    let error = match system_over(transport, "refused").await {
        Ok(_) => panic!("a connection with wrong credentials was accepted"),
        Err(error) => error.to_string(),
    };
    eprintln!("refused as expected: {error}");
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "refusal took {:?}",
        began.elapsed()
    );
    assert!(
        error.contains(&format!("cannot connect to NATS at {url}")),
        "{error}"
    );
    assert!(
        error.contains("the server refused the credentials"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_server_accepts_its_token_and_refuses_others() {
    let Some(server) = AuthServer::start("token", &["--auth", "s3cret-token"]) else {
        return;
    };
    let url = server.url();
    let system = system_over(
        NatsTransport::new(&url).credentials(NatsCredentials::Token("s3cret-token".into())),
        "token_ok",
    )
    .await
    .unwrap();
    carries_messages(&system).await;
    system.shutdown().await.unwrap();

    refused(
        NatsTransport::new(&url).credentials(NatsCredentials::Token("wrong".into())),
        &url,
    )
    .await;
    refused(NatsTransport::new(&url), &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_password_server_accepts_its_user_and_refuses_a_wrong_password() {
    let Some(server) = AuthServer::start("userpass", &["--user", "agent", "--pass", "pa55"]) else {
        return;
    };
    let url = server.url();
    let right = NatsCredentials::UserPassword {
        user: "agent".into(),
        password: "pa55".into(),
    };
    let system = system_over(NatsTransport::new(&url).credentials(right), "userpass_ok")
        .await
        .unwrap();
    carries_messages(&system).await;
    system.shutdown().await.unwrap();

    let wrong = NatsCredentials::UserPassword {
        user: "agent".into(),
        password: "nope".into(),
    };
    refused(NatsTransport::new(&url).credentials(wrong), &url).await;
}

/// The variables the system TOMLs of the next test name, and their values.
const CREDENTIALS_ENV: [(&str, &str); 2] = [
    ("BILAYER_NATS_AUTH_TEST_TOKEN", "from-env"),
    ("BILAYER_NATS_AUTH_TEST_PASSWORD", "env-pass"),
];

/// Environment variables are process-wide, and setting one while another thread reads the
/// environment (C code calling `getenv`) is undefined behaviour. The tests of this binary share
/// one process, so this test sets none: it runs again, alone, in a child process of this test
/// binary given the variables from the start, and passes when that run passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_toml_reads_its_credentials_from_the_environment() {
    if CREDENTIALS_ENV
        .iter()
        .any(|(name, value)| std::env::var(name).as_deref() != Ok(*value))
    {
        run_alone_with_credentials_env();
        return;
    }
    let Some(token_server) = AuthServer::start("toml-token", &["--auth", "from-env"]) else {
        return;
    };
    let Some(user_server) =
        AuthServer::start("toml-user", &["--user", "ops", "--pass", "env-pass"])
    else {
        return;
    };
    let scratch = Scratch::new("nats-auth-toml");
    let echo_script = "fn echo(msg) {\n    #{ v: msg.v, by: \"echo\" }\n}\n\necho\n";
    scratch.write("echo.rhai", echo_script);
    let cases = [
        (
            "token",
            format!(
                "url = \"{}\"\ntoken_env = \"BILAYER_NATS_AUTH_TEST_TOKEN\"",
                token_server.url()
            ),
        ),
        (
            "user",
            format!(
                "url = \"{}\"\nuser = \"ops\"\npassword_env = \"BILAYER_NATS_AUTH_TEST_PASSWORD\"",
                user_server.url()
            ),
        ),
    ];
    for (case, transport) in cases {
        let file = format!("{case}.toml");
        scratch.write(
            &file,
            &format!(
                "name = \"toml_{case}\"\nentry = \"echo\"\n\n[transport]\nkind = \"nats\"\n{transport}\n\n[[agents]]\nname = \"echo\"\nscript = \"echo.rhai\"\n"
            ),
        );
        let definition = SystemDefinition::load(scratch.file(&file)).unwrap();
        let system = definition.build().await.unwrap();
        carries_messages(&system).await;
        system.shutdown().await.unwrap();
    }
}

/// Runs `a_system_toml_reads_its_credentials_from_the_environment` alone in a child process of
/// this test binary with [`CREDENTIALS_ENV`] set, passing its output on; fails unless it ran
/// and passed.
fn run_alone_with_credentials_env() {
    let module = module_path!()
        .split_once("::")
        .map_or("", |(_, module)| module);
    let test = format!("{module}::a_system_toml_reads_its_credentials_from_the_environment");
    let binary = std::env::current_exe().expect("the path of this test binary");
    let output = Command::new(&binary)
        .args([
            test.as_str(),
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .envs(CREDENTIALS_ENV)
        .output()
        .expect("run this test binary again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} run alone in {} failed ({}):\n{stdout}{stderr}",
        binary.display(),
        output.status
    );
}
