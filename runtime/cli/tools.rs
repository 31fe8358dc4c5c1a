//! `bilayer tools PATH`: the tool definitions of a tool script, or of every tool script in a
//! directory, as a JSON array ready to hand to an LLM. Tool scripts are Rhai: a build without
//! the `rhai` feature answers with the feature to build with.

use std::path::Path;
use std::process::ExitCode;

#[cfg(feature = "rhai")]
use bilayer::rhai_runtime::RhaiToolRegistry;

use super::ToolFormat;

#[cfg(feature = "rhai")]
pub(super) async fn run(
    path: &Path,
    format: ToolFormat,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let registry = RhaiToolRegistry::new();
    if path.is_dir() {
        registry.load_dir(path).await?;
    } else {
        registry.load_from_file(path).await?;
    }
    let tools = match format {
        ToolFormat::Openai => registry.to_openai(),
        ToolFormat::Mcp => registry.to_mcp(),
    };
    println!("{}", serde_json::to_string_pretty(&tools)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "rhai"))]
pub(super) async fn run(
    _path: &Path,
    _format: ToolFormat,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    Err(without_rhai().into())
}

#[cfg(not(feature = "rhai"))]
fn without_rhai() -> String {
    bilayer::features::missing("rhai", "`bilayer tools` reads Rhai tool scripts")
}

#[cfg(all(test, not(feature = "rhai")))]
mod tests {
    #[test]
    fn tools_names_the_feature_to_build_with() {
        let message = super::without_rhai();
        assert!(message.starts_with("`bilayer tools` reads Rhai tool scripts: this bilayer was built without the `rhai` feature"), "{message}");
        assert!(message.contains("cargo build --features rhai"), "{message}");
    }
}
