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
    let plugin: Box<dyn AgentPlugin> = match file.extension().and_then(|e| e.to_str()) {
        Some("rhai") => Box::new(RhaiPlugin::from_file(file)?),
        Some("wasm" | "wat") => Box::new(
            WasmPlugin::from_file(file)?.with_capabilities(WasmCapabilities::from_names(grants)?),
        ),
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
    // Input that is not JSON is taken as a JSON string, so `--input "BUY NOW"` works for
    // rules scripts.
    let input = match serde_json::from_str::<serde_json::Value>(input) {
        Ok(_) => input.to_string(),
        Err(_) => serde_json::Value::String(input.to_string()).to_string(),
    };
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
