//! `import` for scripts: refused by default, or confined to one directory.
//!
//! `Engine::new()` installs a file module resolver that can read any `.rhai` file the process
//! can (`import "/etc/..."`, `import "../../x"`) and caches modules forever (a hot-reloaded
//! module would never be seen). The sandbox replaces it: with no import directory configured,
//! every `import` fails; with [`RhaiConfig::allow_imports_from`], a path must be relative,
//! without `..`, and resolve (symlinks followed) to a `.rhai` file inside that directory.
//! A module is loaded once per compiled version of the importing script (the resolver and its
//! cache belong to that version's engine, so reloading the script reloads its modules). It is
//! read through [`crate::user_file`], like the script itself: a module that is a device or FIFO,
//! or past the 16 MiB limit, fails the import with an error naming the file.
//!
//! Calls never re-run a script's top-level statements, so a module imported at the top level
//! is visible to the top-level statements only; a function imports what it uses:
//! `fn run(x) { import "helper" as h; h::help(x) }` (cheap after the first call: cached).
//!
//! [`RhaiConfig::allow_imports_from`]: super::RhaiConfig::allow_imports_from

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use rhai::module_resolvers::FileModuleResolver;
use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope};

use super::errors::ScriptResult;
use crate::{user_file, LimitSettings, PluginError, PluginResult};

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
    /// Maps an import to its file (`FileModuleResolver`'s rules); it never reads one.
    files: FileModuleResolver,
    /// The modules loaded so far, by file.
    loaded: Mutex<HashMap<PathBuf, Arc<Module>>>,
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
        Ok(Self {
            root,
            files,
            loaded: Mutex::default(),
        })
    }

    /// The file `import "path"` names, when it is allowed.
    fn check(&self, path: &str, pos: Position) -> ScriptResult<PathBuf> {
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
            Ok(real) if real.starts_with(&self.root) => Ok(real),
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
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> ScriptResult<Arc<Module>> {
        let file = self.check(path, pos)?;
        let loaded = || self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(module) = loaded().get(&file) {
            return Ok(Arc::clone(module));
        }
        let text = user_file::read_text(&file, user_file::RHAI_MODULE).map_err(|e| {
            Box::new(if e.is_not_found() {
                EvalAltResult::ErrorModuleNotFound(path.to_string(), pos)
            } else {
                EvalAltResult::ErrorRuntime(e.to_string().into(), pos)
            })
        })?;
        let in_module = |e: Box<EvalAltResult>| {
            Box::new(EvalAltResult::ErrorInModule(path.to_string(), e, pos))
        };
        let mut ast = engine.compile(text).map_err(|e| in_module(e.into()))?;
        ast.set_source(path);
        let module =
            Arc::new(Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(in_module)?);
        loaded().insert(file, Arc::clone(&module));
        Ok(module)
    }
}

#[cfg(test)]
mod tests {
    use crate::rhai_runtime::{RhaiConfig, RhaiPlugin};
    use crate::user_file::MAX_TEXT_FILE_BYTES;

    /// An imported module is read like a script: one past the size limit, or a FIFO, fails the
    /// import naming the file, without being read.
    #[test]
    fn an_over_limit_or_device_module_fails_the_import() {
        let dir = std::env::temp_dir().join(format!("bilayer-imports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::File::create(dir.join("huge.rhai"))
            .and_then(|file| file.set_len(MAX_TEXT_FILE_BYTES + 1))
            .unwrap();
        std::fs::write(dir.join("small.rhai"), "fn help() { 42 }").unwrap();
        let config = RhaiConfig::default().allow_imports_from(&dir);
        let import = |module: &str| {
            let source = format!("fn run(x) {{ import \"{module}\" as m; m::help() }}\nrun");
            RhaiPlugin::from_source_with_config("importer", source, config.clone())
                .unwrap()
                .execute_sync("null")
        };
        assert_eq!(import("small").unwrap(), "42");
        let error = import("huge").unwrap_err().to_string();
        assert!(error.contains("huge.rhai"), "{error}");
        assert!(error.contains("larger than the 16 MiB limit"), "{error}");
        #[cfg(unix)]
        {
            // A FIFO no one writes to: opening it would block the import forever.
            let pipe = dir.join("pipe.rhai");
            let _ = std::fs::remove_file(&pipe);
            let made = std::process::Command::new("mkfifo").arg(&pipe).status();
            assert!(made.is_ok_and(|status| status.success()), "mkfifo");
            let error = import("pipe").unwrap_err().to_string();
            assert!(error.contains("a FIFO (named pipe)"), "{error}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
