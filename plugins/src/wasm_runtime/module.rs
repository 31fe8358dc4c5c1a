//! `CompiledModule`: one version of one WASM module, compiled once on an engine, its ABI
//! exports checked and located.
//!
//! Compiling costs about half a millisecond even for a tiny module, so a version is compiled
//! once: the engine keeps live modules by content hash (FNV-1a 64 of the file's bytes, which is
//! also the plugin's version), and a plugin loaded again with the same bytes reuses the
//! compiled code. The ABI exports are checked here, at load time, so a module that cannot be
//! called fails with a message naming the missing export and its expected signature instead of
//! failing on its first call; their indices are resolved once, so a call looks nothing up by
//! name.

use std::path::Path;
use std::sync::Arc;

use wasmtime::{CodeBuilder, ExternType, Module, ModuleExport};

use super::abi;
use super::WasmEngine;
use crate::{PluginError, PluginResult};

/// One compiled version of a module (see the [module docs](self)).
pub(crate) struct CompiledModule {
    pub engine: WasmEngine,
    pub module: Module,
    /// The bytes it was compiled from (WASM binary or WAT text), kept to recompile it for
    /// another engine.
    pub bytes: Arc<[u8]>,
    /// Content hash of `bytes` (FNV-1a 64, hex).
    pub version: String,
    pub exports: AbiExports,
}

/// Where the ABI exports are, resolved once per compiled module.
pub(crate) struct AbiExports {
    pub memory: ModuleExport,
    pub alloc: ModuleExport,
    pub execute: ModuleExport,
    pub dealloc: Option<ModuleExport>,
    pub initialize: Option<ModuleExport>,
    pub metadata: Option<ModuleExport>,
}

impl CompiledModule {
    /// Compiles `bytes` (binary or text) on `engine`, or returns the live compiled module with
    /// the same bytes. `origin` names the module in errors (a path, or the plugin id).
    pub(crate) fn compile(
        engine: &WasmEngine,
        origin: &str,
        bytes: Arc<[u8]>,
    ) -> PluginResult<Arc<CompiledModule>> {
        let hash = content_hash(&bytes);
        if let Some(module) = engine.cached_module(hash, &bytes) {
            return Ok(module);
        }
        let mut builder = CodeBuilder::new(engine.wasmtime());
        let module = builder
            .wasm_binary_or_text(&bytes, Some(Path::new(origin)))
            .and_then(|builder| builder.compile_module())
            .map_err(|e| compile_error(origin, &e))?;
        let exports = AbiExports::resolve(origin, &module)?;
        let compiled = Arc::new(CompiledModule {
            engine: engine.clone(),
            module,
            bytes,
            version: format!("{hash:016x}"),
            exports,
        });
        engine.remember_module(hash, &compiled);
        Ok(compiled)
    }
}

impl AbiExports {
    fn resolve(origin: &str, module: &Module) -> PluginResult<AbiExports> {
        match module.get_export(abi::MEMORY) {
            Some(ExternType::Memory(memory)) if !memory.is_64() && !memory.is_shared() => {}
            Some(ExternType::Memory(_)) => {
                return Err(abi_error(
                    origin,
                    "exports a 64-bit or shared `memory`; the ABI needs one plain 32-bit memory",
                ))
            }
            _ => {
                return Err(abi_error(
                    origin,
                    "does not export its linear memory as `memory`",
                ))
            }
        }
        let index = |name: &str| {
            module.get_export_index(name).ok_or_else(|| {
                abi_error(
                    origin,
                    &format!("has no export `{name}` (internal index missing)"),
                )
            })
        };
        let required = |name: &str, signature: &str| -> PluginResult<ModuleExport> {
            match function_signature(module, name) {
                Some(found) if found == signature => index(name),
                Some(found) => Err(abi_error(
                    origin,
                    &format!(
                        "exports `{name}` as `{found}`, but the ABI needs `{name}: {signature}`"
                    ),
                )),
                None => Err(abi_error(
                    origin,
                    &format!("does not export the function `{name}: {signature}`"),
                )),
            }
        };
        let optional = |name: &str, signature: &str| -> PluginResult<Option<ModuleExport>> {
            match module.get_export(name) {
                None => Ok(None),
                Some(_) => required(name, signature).map(Some),
            }
        };
        Ok(AbiExports {
            memory: index(abi::MEMORY)?,
            alloc: required(abi::ALLOC, "(i32) -> i32")?,
            execute: required(abi::EXECUTE, "(i32, i32) -> i64")?,
            dealloc: optional(abi::DEALLOC, "(i32, i32) -> ()")?,
            initialize: optional(abi::INITIALIZE, "() -> ()")?,
            metadata: optional(abi::METADATA, "() -> i64")?,
        })
    }
}

/// The signature of the exported function `name` as `(i32, i32) -> i64`, if it is one.
fn function_signature(module: &Module, name: &str) -> Option<String> {
    let ExternType::Func(ty) = module.get_export(name)? else {
        return Some("a non-function export".to_string());
    };
    let params: Vec<String> = ty.params().map(|p| p.to_string()).collect();
    let results: Vec<String> = ty.results().map(|r| r.to_string()).collect();
    let results = match results.len() {
        0 => "()".to_string(),
        1 => results[0].clone(),
        _ => format!("({})", results.join(", ")),
    };
    Some(format!("({}) -> {results}", params.join(", ")))
}

fn abi_error(origin: &str, problem: &str) -> PluginError {
    PluginError::Config(format!(
        "WASM module {origin} {problem}; see docs/wasm-abi.md for the exports a plugin needs"
    ))
}

/// A compile error with `file:line:column` when the text format says where (wat errors carry
/// a `--> file:line:col` line), or the binary offset wasmtime reports.
fn compile_error(origin: &str, err: &wasmtime::Error) -> PluginError {
    let full = format!("{err:#}");
    let location = full
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("--> "))
        .map(str::to_string)
        .unwrap_or_else(|| origin.to_string());
    let message = full
        .lines()
        .next()
        .unwrap_or("invalid module")
        .trim()
        .to_string();
    PluginError::Compile { location, message }
}

pub(crate) use crate::content_hash::content_hash;
