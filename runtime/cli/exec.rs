//! `bilayer exec FILE --input JSON`: one plugin (.rhai, .wasm or .wat), one input, through a real `PluginManager`
//! (so the plugin runs in its actor, with its limits, and `call_plugin` reports a clear error
//! rather than reaching nothing).
//!
//! `--timeout-ms` is the manager's execute timeout, so it bounds the call whatever the plugin
//! does: a running script or module is stopped at it (the plugin's own timeout is capped by
//! it), and a module blocked in a host call is abandoned at it, the process exiting without
//! waiting for the call to return (runtime/main.rs).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use bilayer::prelude::*;
#[cfg(feature = "rhai")]
use bilayer::rhai_runtime::RhaiPlugin;
#[cfg(feature = "wasm")]
use bilayer::wasm_runtime::{WasmCapabilities, WasmEngine, WasmLimits, WasmPlugin};
#[cfg(feature = "wasm")]
use bilayer::LimitSettings;

/// The limits `exec` gives the call (`--timeout-ms`, `--memory-mb`, `--fuel`).
pub(super) struct Limits {
    /// How long exec waits for the call; also a WASM module's own timeout.
    pub timeout: Duration,
    pub memory_mb: Option<usize>,
    pub fuel: Option<u64>,
}

#[cfg(feature = "wasm")]
impl Limits {
    /// The module's limits: the defaults with the flags given.
    fn wasm(&self) -> Result<WasmLimits, String> {
        // A limit error names the flag that raises it (`exec` has no definition to point at).
        let flags = LimitSettings::keys([
            ("timeout", "--timeout-ms"),
            ("max_memory_bytes", "--memory-mb"),
            ("fuel", "--fuel"),
        ]);
        let mut limits = WasmLimits::default()
            .timeout(self.timeout)
            .fuel(self.fuel)
            .limit_settings(flags);
        if let Some(mb) = self.memory_mb {
            let bytes = mb
                .checked_mul(1 << 20)
                .ok_or_else(|| format!("--memory-mb {mb} is too large"))?;
            limits = limits.max_memory_bytes(bytes);
        }
        Ok(limits)
    }
}

pub(super) async fn run(
    file: &Path,
    input: &str,
    limits: &Limits,
    grants: &[String],
    config: Option<&str>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let is_wasm = matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("wasm" | "wat")
    );
    if !is_wasm && (limits.memory_mb.is_some() || limits.fuel.is_some()) {
        return Err(
            "--memory-mb and --fuel are limits of WASM modules (.wasm, .wat); a script's \
                    limits are set in a system definition's [limits]"
                .into(),
        );
    }
    let timeout = limits.timeout;
    let plugin = plugin_for(file, limits, grants)?;
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

/// The plugin in `file`, by its extension, with the limits and grants of the flags.
#[cfg_attr(not(feature = "wasm"), allow(unused_variables))] // limits are WASM modules'
fn plugin_for(
    file: &Path,
    limits: &Limits,
    grants: &[String],
) -> Result<Box<dyn AgentPlugin>, Box<dyn std::error::Error>> {
    // Every grant is checked, whatever the file: a misspelt one is never silently ignored.
    #[cfg(feature = "wasm")]
    let grant = WasmCapabilities::from_names(grants).map_err(|e| match e {
        PluginError::Config(why) => format!("--grant: {why}"),
        other => format!("--grant: {other}"),
    })?;
    match file.extension().and_then(|e| e.to_str()) {
        Some("rhai") if !grants.is_empty() => Err(format!(
            "--grant is for WASM modules; {} is a Rhai script, which has no capabilities to \
             grant (drop --grant)",
            file.display()
        )
        .into()),
        #[cfg(feature = "rhai")]
        Some("rhai") => Ok(Box::new(RhaiPlugin::from_file(file)?)),
        #[cfg(not(feature = "rhai"))]
        Some("rhai") => Err(without_feature("rhai", "a Rhai script", file).into()),
        #[cfg(feature = "wasm")]
        Some("wasm" | "wat") => {
            // Fuel needs code compiled with metering, which makes every module slower: only
            // modules asked to burn fuel are compiled that way.
            let engine = if limits.fuel.is_some() {
                WasmEngine::shared_metering_fuel()?
            } else {
                WasmEngine::shared()?
            };
            Ok(Box::new(
                WasmPlugin::compile_file(&engine, file)?
                    .with_capabilities(grant)
                    .with_limits(limits.wasm()?),
            ))
        }
        #[cfg(not(feature = "wasm"))]
        Some("wasm" | "wat") => Err(without_feature("wasm", "a WASM module", file).into()),
        _ => Err(format!(
            "{}: unsupported plugin file; `exec` runs .rhai scripts and .wasm/.wat modules",
            file.display()
        )
        .into()),
    }
}

/// The error of `exec` on a kind of file this build cannot run.
#[cfg(any(not(feature = "rhai"), not(feature = "wasm")))]
fn without_feature(feature: &str, kind: &str, file: &Path) -> String {
    bilayer::features::missing(
        feature,
        &format!("`bilayer exec` of {} ({kind})", file.display()),
    )
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

#[cfg(all(test, any(not(feature = "rhai"), not(feature = "wasm"))))]
mod tests {
    use std::path::Path;

    #[test]
    fn a_file_this_build_cannot_run_names_the_feature_to_build_with() {
        let message = super::without_feature("wasm", "a WASM module", Path::new("echo.wat"));
        assert_eq!(
            message,
            "`bilayer exec` of echo.wat (a WASM module): this bilayer was built without the \
             `wasm` feature; rebuild with `cargo build --features wasm` (the default features \
             include it)"
        );
    }
}
