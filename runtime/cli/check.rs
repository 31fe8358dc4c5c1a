//! `bilayer check SYSTEM.toml`: validates a system definition without running it, reporting
//! every problem with its file position.

use std::path::Path;
use std::process::ExitCode;

use bilayer::system_config::SystemDefinition;

pub(super) fn run(system_file: &Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // Every problem of the TOML itself (syntax, unknown keys, wrong types, missing keys), then
    // every problem of what it says, on the definition with the faulty items left out.
    let (definition, mut problems) = match SystemDefinition::read(system_file) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("1 problem");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(definition) = &definition {
        for warning in definition.warnings() {
            eprintln!("warning: {warning}");
        }
        problems.extend(definition.check());
    }
    if let (Some(definition), true) = (&definition, problems.is_empty()) {
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
