//! `import` for scripts: refused by default, or confined to one directory.
//!
//! `Engine::new()` installs a file module resolver that can read any `.rhai` file the process
//! can (`import "/etc/..."`, `import "../../x"`) and caches modules forever (a hot-reloaded
//! module would never be seen). The sandbox replaces it: with no import directory configured,
//! every `import` fails; with [`RhaiConfig::allow_imports_from`], a path must be relative,
//! without `..`, and resolve (symlinks followed) to a `.rhai` file inside that directory.
//! A module is loaded once per compiled version of the importing script (the resolver and its
//! cache belong to that version's engine, so reloading the script reloads its modules).
//!
//! Calls never re-run a script's top-level statements, so a module imported at the top level
//! is visible to the top-level statements only; a function imports what it uses:
//! `fn run(x) { import "helper" as h; h::help(x) }` (cheap after the first call: cached).
//!
//! [`RhaiConfig::allow_imports_from`]: super::RhaiConfig::allow_imports_from

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rhai::module_resolvers::FileModuleResolver;
use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position};

use super::errors::ScriptResult;
use crate::{LimitSettings, PluginError, PluginResult};

/// Installs the module resolver the configuration allows; a refused import names the setting
/// that allows imports as `settings` say (or none, when the front end has no such setting).
pub(crate) fn install(
    engine: &mut Engine,
    import_dir: Option<&Path>,
    settings: &LimitSettings,
) -> PluginResult<()> {
    match import_dir {
        None => {
            let message = match settings.setting("RhaiConfig", "allow_imports_from") {
                Some(setting) => format!("imports are disabled; allow a directory with {setting}"),
                None => "imports are disabled for this script".to_string(),
            };
            engine.set_module_resolver(ImportsDisabled { message });
        }
        Some(dir) => {
            engine.set_module_resolver(DirectoryModuleResolver::new(dir)?);
        }
    }
    Ok(())
}

/// Refuses every import, saying how to allow them.
struct ImportsDisabled {
    message: String,
}

impl ModuleResolver for ImportsDisabled {
    fn resolve(
        &self,
        _: &Engine,
        _: Option<&str>,
        path: &str,
        pos: Position,
    ) -> ScriptResult<Arc<Module>> {
        Err(refused(path, &self.message, pos))
    }
}

/// Resolves `import "name"` to `<root>/name.rhai`, and nothing outside `root`.
struct DirectoryModuleResolver {
    root: PathBuf,
    files: FileModuleResolver,
}

impl DirectoryModuleResolver {
    fn new(dir: &Path) -> PluginResult<Self> {
        let root = dir.canonicalize().map_err(|e| {
            PluginError::Config(format!(
                "import directory {} cannot be used: {e}; create it or fix RhaiConfig::allow_imports_from",
                dir.display()
            ))
        })?;
        let files = FileModuleResolver::new_with_path(&root);
        Ok(Self { root, files })
    }

    fn check(&self, path: &str, pos: Position) -> ScriptResult<()> {
        let requested = Path::new(path);
        let plain = requested
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !plain {
            return Err(refused(
                path,
                "only relative paths without `..` can be imported",
                pos,
            ));
        }
        let file = self.files.get_file_path(path, None);
        match file.canonicalize() {
            Ok(real) if real.starts_with(&self.root) => Ok(()),
            Ok(_) => Err(refused(
                path,
                "it resolves outside the import directory",
                pos,
            )),
            Err(_) => Err(Box::new(EvalAltResult::ErrorModuleNotFound(
                path.to_string(),
                pos,
            ))),
        }
    }
}

fn refused(path: &str, why: &str, pos: Position) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        format!("import \"{path}\" refused: {why}").into(),
        pos,
    ))
}

impl ModuleResolver for DirectoryModuleResolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> ScriptResult<Arc<Module>> {
        self.check(path, pos)?;
        self.files.resolve(engine, source, path, pos)
    }
}
