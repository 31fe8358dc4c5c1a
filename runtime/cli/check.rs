//! `bilayer check SYSTEM.toml`: validates a system definition without running it, reporting
//! every problem with its file position.

use std::path::Path;
use std::process::ExitCode;

use bilayer::system_config::SystemDefinition;

pub fn run(system_file: &Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let definition = match SystemDefinition::load(system_file) {
        Ok(definition) => definition,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("1 problem");
            return Ok(ExitCode::FAILURE);
        }
    };
    for warning in definition.warnings() {
        eprintln!("warning: {warning}");
    }
    let problems = definition.check();
    if problems.is_empty() {
        println!(
            "{}: ok ({} agents: {})",
            system_file.display(),
            definition.agent_names().len(),
            definition.agent_names().join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        eprintln!("{problem}");
    }
    eprintln!(
        "{} problem{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::FAILURE)
}
