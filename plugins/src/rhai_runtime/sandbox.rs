//! Builds the sandboxed `Engine` of one script: limits installed, dangerous features off,
//! host functions and the `state` / top-level-variable hook in place.
//!
//! What a script can reach is exactly what is registered here plus Rhai's standard package,
//! which has no file, network or process functions. On top of that:
//!
//! - `eval` is disabled (it would compile code that escaped review and the compile-time
//!   limits), and so is explicit `curry` (it nests values past every size limit);
//! - `import` is refused, or confined to one directory ([`super::imports`]);
//! - `sleep` is replaced by an error ([`super::host_functions`]);
//! - every limit of [`RhaiConfig`] is installed, the wall-clock and native-stack ones through
//!   `on_progress` ([`super::execution_guard`]), which also counts `max_operations` over the
//!   whole call (Rhai's own count restarts in each closure an array method calls);
//! - `print` and `debug` go to `tracing` (target `bilayer::rhai`) tagged with the plugin id,
//!   never to stdout.
//!
//! `Engine::new()` is costly, mostly building the standard package (docs/benchmarks.md,
//! section "Costs behind design choices in the code"); the package is built once per process
//! here and shared by every engine, so a new plugin pays a small part of that.

use std::sync::{Arc, OnceLock};

use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine, EvalAltResult, EvalContext, Module};

use super::execution_guard::check_progress;
use super::host_link::HostLink;
use super::script_state::{self, ScriptState};
use super::{host_functions, imports, RhaiConfig};
use crate::PluginResult;

/// Strings Rhai interns (map keys, property names); the same default as `Engine::new()`.
const MAX_STRINGS_INTERNED: usize = 256;

fn standard_package() -> Arc<Module> {
    static PACKAGE: OnceLock<Arc<Module>> = OnceLock::new();
    PACKAGE
        .get_or_init(|| StandardPackage::new().as_shared_module())
        .clone()
}

/// An engine for one script, reaching its host through `link`.
pub(crate) fn build_engine(config: &RhaiConfig, link: &Arc<HostLink>) -> PluginResult<Engine> {
    let mut engine = Engine::new_raw();
    engine.register_global_module(standard_package());
    engine.set_max_strings_interned(MAX_STRINGS_INTERNED);

    install_limits(&mut engine, config);
    engine.disable_symbol("eval");
    // `f.curry(f)` in a loop nests function pointers without counting against any size limit,
    // and dropping or printing the result recurses once per level on the native stack (see
    // `RhaiConfig::native_stack_needed`). The parser's own capture of closure variables does
    // not go through the symbol, so closures keep working.
    engine.disable_symbol("curry");
    imports::install(
        &mut engine,
        config.import_dir.as_deref(),
        &config.limit_settings,
    )?;
    route_output_to_tracing(&mut engine, link);

    script_state::register(&mut engine, config);
    host_functions::register(&mut engine, config, link);
    install_variable_hook(&mut engine, link);
    Ok(engine)
}

fn install_limits(engine: &mut Engine, config: &RhaiConfig) {
    engine
        .set_max_operations(config.max_operations)
        .set_max_call_levels(config.max_call_stack_depth)
        .set_max_expr_depths(config.max_expr_depth, config.max_expr_depth)
        .set_max_string_size(config.max_string_size)
        .set_max_array_size(config.max_array_size)
        .set_max_map_size(config.max_map_size);
    let native_stack_budget = config.max_native_stack;
    engine.on_progress(move |_| check_progress(native_stack_budget));
}

fn route_output_to_tracing(engine: &mut Engine, link: &Arc<HostLink>) {
    let printer = Arc::clone(link);
    engine.on_print(move |text| {
        tracing::info!(target: "bilayer::rhai", plugin = %printer.plugin_id(), "{text}");
    });
    let debugger = Arc::clone(link);
    engine.on_debug(move |text, source, position| {
        tracing::debug!(
            target: "bilayer::rhai",
            plugin = %debugger.plugin_id(),
            source = source.unwrap_or(""),
            line = position.line().unwrap_or(0),
            column = position.position().unwrap_or(0),
            "{text}"
        );
    });
}

/// Resolves `state` (the host's store) and the script's top-level variables inside
/// functions, where Rhai alone would report them as not found.
///
/// The hook runs before every variable lookup, so it bails out first for variables the
/// parser already resolved to a local slot (`index > 0`), and never hides a local variable
/// of the same name.
fn install_variable_hook(engine: &mut Engine, link: &Arc<HostLink>) {
    let link = Arc::clone(link);
    #[allow(deprecated)] // `on_var` is marked volatile, not deprecated
    engine.on_var(move |name, index, context| resolve_variable(&link, name, index, &context));
}

fn resolve_variable(
    link: &Arc<HostLink>,
    name: &str,
    index: usize,
    context: &EvalContext,
) -> Result<Option<Dynamic>, Box<EvalAltResult>> {
    if index > 0 {
        return Ok(None);
    }
    if name == "state" {
        if context.scope().contains(name) {
            return Ok(None);
        }
        return Ok(Some(Dynamic::from(ScriptState(Arc::clone(link)))));
    }
    match link.global(name) {
        Some(value) if !context.scope().contains(name) => Ok(Some(value.clone())),
        _ => Ok(None),
    }
}
