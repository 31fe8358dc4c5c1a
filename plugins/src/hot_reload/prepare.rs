//! Compiling and validating a new version off to the side, before anything is swapped: the
//! loader (syntax, ABI, limits that apply at compile time, capabilities at link time), then the
//! optional self-test, and the detection of the optional state migration.
//!
//! Rhai scripts opt in by defining functions:
//!
//! - `fn self_test()`: called once on the new version before the swap (not yet attached to a
//!   host, so it cannot use `state` or `call_plugin`); throwing or returning `false` rejects
//!   the version, which then never serves.
//! - `fn migrate(old_state)`: called during the swap, between two messages, with the state the
//!   old version left (a map); its result (a map) becomes the state the new version starts
//!   from. Only when state is preserved.
//!
//! WASM modules are validated by compiling, checking their ABI exports and linking them against
//! their grant; they have no self-test or migration hook (their state carries over as is).

use std::path::Path;

use super::config::PluginLoader;
#[cfg(feature = "rhai")]
pub use super::rhai_hooks::migration_for;
#[cfg(feature = "rhai")]
use super::rhai_hooks::run_self_test;
use super::StateMigration;
use crate::{AgentPlugin, PluginResult};

/// A new version that passed validation.
pub(crate) struct Prepared {
    /// The id it is hosted under: its own, unless the config names another for its file.
    pub id: String,
    pub plugin: Box<dyn AgentPlugin>,
    pub migration: Option<StateMigration>,
}

/// Loads `path` with `loader` and validates the result. Synchronous and CPU-bound: run it off
/// the async workers.
pub(crate) fn prepare(
    path: &Path,
    loader: &PluginLoader,
    self_test: bool,
    id: Option<String>,
) -> PluginResult<Prepared> {
    let plugin = loader(path)?;
    let id = id.unwrap_or_else(|| plugin.metadata().id.clone());
    if self_test {
        run_self_test(plugin.as_ref())?;
    }
    let migration = migration_for(plugin.as_ref());
    Ok(Prepared {
        id,
        plugin,
        migration,
    })
}

/// The state migration a plugin defines: none in a build without Rhai (the `rhai` feature),
/// whose scripts are the only plugins with a migration hook.
#[cfg(not(feature = "rhai"))]
pub fn migration_for(_plugin: &dyn AgentPlugin) -> Option<StateMigration> {
    None
}

/// Without Rhai no plugin has a self-test hook.
#[cfg(not(feature = "rhai"))]
fn run_self_test(_plugin: &dyn AgentPlugin) -> PluginResult<()> {
    Ok(())
}
