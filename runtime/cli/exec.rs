//! `bilayer exec FILE --input JSON`: one plugin (.rhai, .wasm or .wat), one input, through a real `PluginManager`
//! (so the plugin runs in its actor, with its limits, and `call_plugin` reports a clear error
//! rather than reaching nothing).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use bilayer::prelude::*;
use bilayer::rhai_runtime::RhaiPlugin;
use bilayer::wasm_runtime::{WasmCapabilities, WasmPlugin};

pub async fn run(
    file: &Path,
    input: &str,
    timeout: Duration,
    grants: &[String],
    config: Option<&str>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // Every grant is checked, whatever the file: a misspelt one is never silently ignored.
    let grant = WasmCapabilities::from_names(grants).map_err(|e| match e {
        PluginError::Config(why) => format!("--grant: {why}"),
        other => format!("--grant: {other}"),
    })?;
    let plugin: Box<dyn AgentPlugin> = match file.extension().and_then(|e| e.to_str()) {
        Some("rhai") if !grants.is_empty() => {
            return Err(format!(
                "--grant is for WASM modules; {} is a Rhai script, which has no capabilities \
                 to grant (drop --grant)",
                file.display()
            )
            .into())
        }
        Some("rhai") => Box::new(RhaiPlugin::from_file(file)?),
        Some("wasm" | "wat") => Box::new(WasmPlugin::from_file(file)?.with_capabilities(grant)),
        _ => {
            return Err(format!(
                "{}: unsupported plugin file; `exec` runs .rhai scripts and .wasm/.wat modules",
                file.display()
            )
            .into())
        }
    };
    let mut options = PluginOptions::new();
    if let Some(config) = config {
        let config: serde_json::Value =
            serde_json::from_str(config).map_err(|e| format!("--config must be JSON: {e}"))?;
        options = options.config(config);
    }
    let input = input_json(input)?;
    let id = plugin.metadata().id.clone();
    let manager = PluginManager::builder("bilayer-exec")
        .execute_timeout(Some(timeout))
        .build();
    manager.register_with(plugin, options).await?;
    manager.load_all().await?;
    manager.start_all().await?;
    let result = manager.execute(&id, input).await;
    manager.shutdown().await?;
    let output = result?;
    // Pretty-print JSON output; pass anything else through unchanged.
    match serde_json::from_str::<serde_json::Value>(&output) {
        Ok(value) => println!("{}", serde_json::to_string_pretty(&value)?),
        Err(_) => println!("{output}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `--input` as JSON text. Plain words that are not JSON are taken as a JSON string, so
/// `--input "BUY NOW"` works for rules scripts; but text that starts like a JSON object, array
/// or string (`{`, `[`, `"`) is meant as JSON, and when it does not parse, the error says where
/// rather than the script silently receiving it as a string.
fn input_json(input: &str) -> Result<String, String> {
    match serde_json::from_str::<serde_json::Value>(input) {
        Ok(_) => Ok(input.to_string()),
        Err(e) if input.trim_start().starts_with(['{', '[', '"']) => Err(format!(
            "--input is not valid JSON: {e}; fix it, or pass plain words that do not start \
             with {{, [ or \" to send them as a string"
        )),
        Err(_) => Ok(serde_json::Value::String(input.to_string()).to_string()),
    }
}
