//! `bilayer tools PATH`: the tool definitions of a tool script, or of every tool script in a
//! directory, as a JSON array ready to hand to an LLM.

use std::path::Path;
use std::process::ExitCode;

use bilayer::rhai_runtime::RhaiToolRegistry;

use super::ToolFormat;

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
