//! Compile once per version: top-level statements run once, calls run only the function, and
//! `print` goes to `tracing` tagged with the plugin id.

use std::sync::{Arc, Mutex};

use bilayer_plugins::rhai_runtime::RhaiPlugin;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use crate::scoped_subscriber;

/// Records `(plugin, message)` of every event, to see what scripts printed.
#[derive(Clone, Default)]
struct PrintRecorder(Arc<Mutex<Vec<(String, String)>>>);

#[derive(Default)]
struct Fields {
    plugin: String,
    message: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "plugin" => self.plugin = format!("{value:?}"),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}

impl Subscriber for PrintRecorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if event.metadata().target() == "bilayer::rhai" {
            let mut fields = Fields::default();
            event.record(&mut fields);
            self.0.lock().unwrap().push((fields.plugin, fields.message));
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl PrintRecorder {
    fn count(&self, message: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m == message)
            .count()
    }
}

const SCRIPT: &str = r#"
print("top-level ran");
let table = [1, 2, 3];
fn process(input) {
    print("entry ran");
    input.n * 2
}
process
"#;

#[test]
fn top_level_statements_run_once_and_calls_do_not_rerun_them() {
    let recorder = PrintRecorder::default();
    scoped_subscriber::with_default(recorder.clone(), || {
        let plugin = RhaiPlugin::from_source("cached", SCRIPT).unwrap();
        assert_eq!(
            recorder.count("top-level ran"),
            1,
            "compiling runs the top level once"
        );
        for n in 0..5 {
            assert_eq!(
                plugin.execute_sync(&format!(r#"{{"n": {n}}}"#)).unwrap(),
                (n * 2).to_string()
            );
        }
        assert_eq!(
            recorder.count("top-level ran"),
            1,
            "calls never re-run the top level"
        );
        assert_eq!(recorder.count("entry ran"), 5);
    });
    let events = recorder.0.lock().unwrap();
    assert!(
        events.iter().all(|(plugin, _)| plugin == "cached"),
        "print is tagged with the plugin id: {events:?}"
    );
}

#[test]
fn functions_read_top_level_variables_as_captured_once() {
    let source = r#"
    let limit = 10;
    const NAME = "orders";
    fn check(input) { #{ over: input > limit, name: NAME } }
    check
    "#;
    let plugin = RhaiPlugin::from_source("globals", source).unwrap();
    assert_eq!(
        plugin.execute_sync("11").unwrap(),
        r#"{"name":"orders","over":true}"#
    );
    assert_eq!(
        plugin.execute_sync("3").unwrap(),
        r#"{"name":"orders","over":false}"#
    );
}

#[test]
fn top_level_variables_are_read_only_inside_functions() {
    let source = "let table = [1];\nfn grow(x) { table.push(x); table.len() }\ngrow";
    let plugin = RhaiPlugin::from_source("readonly", source).unwrap();
    assert!(plugin.execute_sync("2").is_err());
}

#[test]
fn with_config_recompiles_under_the_new_limits() {
    use bilayer_plugins::rhai_runtime::RhaiConfig;
    use bilayer_plugins::{AgentPlugin, PluginError};

    let plugin = RhaiPlugin::from_source(
        "spin",
        "fn run(x) { let i = 0; while i < 5000 { i += 1; } i }\nrun",
    )
    .unwrap();
    let version = plugin.metadata().version.clone();
    assert_eq!(plugin.execute_sync("null").unwrap(), "5000");
    let limited = plugin
        .with_config(RhaiConfig::default().max_operations(1_000))
        .unwrap();
    assert_eq!(
        limited.metadata().version,
        version,
        "same source, same version"
    );
    assert!(matches!(
        limited.execute_sync("null"),
        Err(PluginError::LimitExceeded { .. })
    ));
}
