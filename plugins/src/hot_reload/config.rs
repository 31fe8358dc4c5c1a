//! [`HotReloadConfig`]: when to reload ([`ReloadStrategy`]), what carries over (state), what
//! happens after a bad version goes live (rollback), and how files become plugins (loaders).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "rhai")]
use crate::rhai_runtime::{RhaiConfig, RhaiPlugin};
#[cfg(feature = "wasm")]
use crate::wasm_runtime::{WasmCapabilities, WasmPlugin};
use crate::{AgentPlugin, PluginResult};

/// Builds a plugin from a file; runs off the async workers.
pub type PluginLoader = Arc<dyn Fn(&Path) -> PluginResult<Box<dyn AgentPlugin>> + Send + Sync>;

/// When a change on disk becomes a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadStrategy {
    /// As soon as the file system reports the change. On Linux a write is acted on when the
    /// writer closes the file; elsewhere a reload may read a half-written file, fail to compile
    /// and be retried by the next event (the old version serves meanwhile).
    Immediate,
    /// Once no event came for the file for this long: a burst of writes gives one reload.
    Debounced(Duration),
    /// Never on its own: call `HotReloadManager::reload_now(path)` or `reload_all()`.
    Manual,
}

impl Default for ReloadStrategy {
    /// Debounced by 250 ms.
    fn default() -> Self {
        ReloadStrategy::Debounced(Duration::from_millis(250))
    }
}

/// What happens to a plugin when its file is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeleteAction {
    /// Stop, unload and unregister it (the default).
    #[default]
    Remove,
    /// Stop it and keep it registered; its calls are refused until it is started again.
    Stop,
    /// Leave it running.
    Keep,
}

/// Hot reload settings, built with `with_*` methods.
///
/// ```
/// use bilayer_plugins::hot_reload::{HotReloadConfig, ReloadStrategy};
/// use std::time::Duration;
///
/// let config = HotReloadConfig::new()
///     .with_strategy(ReloadStrategy::Debounced(Duration::from_secs(1)))
///     .with_preserve_state(true)  // keep plugin state
///     .with_auto_rollback(true)   // roll back a new version that keeps failing
///     .with_max_attempts(3);      // failures tolerated after a swap
/// assert_eq!(config.max_attempts(), 3);
/// ```
#[derive(Clone)]
pub struct HotReloadConfig {
    strategy: ReloadStrategy,
    preserve_state: bool,
    auto_rollback: bool,
    max_attempts: u32,
    failure_window: Duration,
    replay_hold: Duration,
    on_delete: DeleteAction,
    add_new_files: bool,
    recursive: bool,
    self_test: bool,
    removal_grace: Duration,
    #[cfg(feature = "rhai")]
    rhai_config: RhaiConfig,
    #[cfg(feature = "wasm")]
    wasm_capabilities: WasmCapabilities,
    loaders: BTreeMap<String, PluginLoader>,
    plugin_ids: Vec<(PathBuf, String)>,
}

impl std::fmt::Debug for HotReloadConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotReloadConfig")
            .field("strategy", &self.strategy)
            .field("preserve_state", &self.preserve_state)
            .field("auto_rollback", &self.auto_rollback)
            .field("max_attempts", &self.max_attempts)
            .field("failure_window", &self.failure_window)
            .field("replay_hold", &self.replay_hold)
            .field("on_delete", &self.on_delete)
            .field("add_new_files", &self.add_new_files)
            .field("recursive", &self.recursive)
            .field("self_test", &self.self_test)
            .field("extensions", &self.extensions())
            .finish()
    }
}

impl Default for HotReloadConfig {
    /// Debounced by 250 ms; state preserved; auto rollback after more than 3 failures within
    /// 30 s of a swap, the failed messages held up to 1 s for it; a deleted file removes its plugin; a new file adds one; `.rhai`, `.wasm`
    /// and `.wat` files in the directory itself (not below it).
    fn default() -> Self {
        Self {
            strategy: ReloadStrategy::default(),
            preserve_state: true,
            auto_rollback: true,
            max_attempts: 3,
            failure_window: Duration::from_secs(30),
            replay_hold: Duration::from_secs(1),
            on_delete: DeleteAction::default(),
            add_new_files: true,
            recursive: false,
            self_test: true,
            removal_grace: Duration::from_millis(100),
            #[cfg(feature = "rhai")]
            rhai_config: RhaiConfig::default(),
            #[cfg(feature = "wasm")]
            wasm_capabilities: WasmCapabilities::none(),
            loaders: BTreeMap::new(),
            plugin_ids: Vec::new(),
        }
    }
}

impl HotReloadConfig {
    /// The defaults (see [`HotReloadConfig::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// When a change on disk becomes a reload (default: debounced by 250 ms).
    pub fn with_strategy(mut self, strategy: ReloadStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// `true` (default): a new version keeps the plugin's state store, after the optional
    /// migration function of the new version (`fn migrate(old_state)` in Rhai). `false`: it
    /// starts from empty state.
    pub fn with_preserve_state(mut self, preserve: bool) -> Self {
        self.preserve_state = preserve;
        self
    }

    /// `true` (default): keep the last known-good version after a swap and roll back to it when
    /// the new version fails more than `max_attempts` times within the failure window.
    pub fn with_auto_rollback(mut self, rollback: bool) -> Self {
        self.auto_rollback = rollback;
        self
    }

    /// How many failures (panics, traps, limit and runtime errors) a new version may have
    /// within the failure window after its swap; one more rolls it back (default 3).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// How long after a swap failures count towards a rollback (default 30 s); past it the
    /// new version is the known-good one.
    pub fn with_failure_window(mut self, window: Duration) -> Self {
        self.failure_window = window;
        self
    }

    /// How long a message that a new version failed during its failure window waits for the
    /// rollback that would run it again on the rolled-back version (default 1 s). Under load a
    /// version that fails every message reaches `max_attempts` within milliseconds, so all the
    /// messages it failed are run again and the bad save costs none; a failure that no
    /// rollback follows is answered with its error once this has passed (or the window ends,
    /// or another version is swapped in). `Duration::ZERO` answers failures at once.
    pub fn with_replay_hold(mut self, hold: Duration) -> Self {
        self.replay_hold = hold;
        self
    }

    /// What happens to a plugin when its file is deleted (default [`DeleteAction::Remove`]).
    pub fn with_on_delete(mut self, action: DeleteAction) -> Self {
        self.on_delete = action;
        self
    }

    /// Whether a file that no hosted plugin comes from becomes a new plugin (default `true`).
    pub fn with_add_new_files(mut self, add: bool) -> Self {
        self.add_new_files = add;
        self
    }

    /// Whether subdirectories are watched too (default `false`: scripts' imported modules often
    /// live in subdirectories and are not plugins).
    pub fn with_recursive(mut self, recursive: bool) -> Self {
        self.recursive = recursive;
        self
    }

    /// Whether a new version's self-test (a Rhai `fn self_test()`) runs before the swap
    /// (default `true`).
    pub fn with_self_test(mut self, self_test: bool) -> Self {
        self.self_test = self_test;
        self
    }

    /// How long a vanished file may take to reappear before its plugin is removed (editors
    /// that save by delete-and-create); default 100 ms.
    pub fn with_removal_grace(mut self, grace: Duration) -> Self {
        self.removal_grace = grace;
        self
    }

    /// The sandbox and limits `.rhai` files are compiled under.
    #[cfg(feature = "rhai")]
    pub fn with_rhai_config(mut self, config: RhaiConfig) -> Self {
        self.rhai_config = config;
        self
    }

    /// The host imports `.wasm` / `.wat` modules are granted (none by default).
    #[cfg(feature = "wasm")]
    pub fn with_wasm_capabilities(mut self, capabilities: WasmCapabilities) -> Self {
        self.wasm_capabilities = capabilities;
        self
    }

    /// Loads files ending in `.{extension}` with `loader` (replacing the built-in loader for
    /// `rhai`, `wasm` or `wat`, or adding a kind of plugin).
    pub fn with_loader<F>(mut self, extension: impl Into<String>, loader: F) -> Self
    where
        F: Fn(&Path) -> PluginResult<Box<dyn AgentPlugin>> + Send + Sync + 'static,
    {
        let extension = extension.into().trim_start_matches('.').to_string();
        self.loaders.insert(extension, Arc::new(loader));
        self
    }

    /// The file at `path` hosts the plugin `plugin_id`, whatever the file declares: for
    /// plugins registered under another id (an agent system registers each agent's plugin under
    /// the agent's name). `path` is a file name (`triage.rhai`, any watched directory) or a path.
    pub fn with_plugin_id(
        mut self,
        path: impl Into<PathBuf>,
        plugin_id: impl Into<String>,
    ) -> Self {
        self.plugin_ids.push((path.into(), plugin_id.into()));
        self
    }

    /// The id given to the file at `path` with `with_plugin_id`, if any.
    pub(crate) fn plugin_id_for(&self, path: &Path) -> Option<String> {
        self.plugin_ids.iter().find_map(|(given, id)| {
            let bare_name = given
                .parent()
                .is_none_or(|parent| parent.as_os_str().is_empty());
            let matches = if bare_name {
                path.file_name() == given.file_name()
            } else {
                super::files::normalize(given) == path
            };
            matches.then(|| id.clone())
        })
    }

    /// When a change on disk becomes a reload.
    pub fn strategy(&self) -> ReloadStrategy {
        self.strategy
    }

    /// Whether a new version keeps the plugin's state store.
    pub fn preserve_state(&self) -> bool {
        self.preserve_state
    }

    /// Whether a new version that keeps failing is rolled back.
    pub fn auto_rollback(&self) -> bool {
        self.auto_rollback
    }

    /// Failures a new version may have within the failure window before it is rolled back.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// How long after a swap failures count towards a rollback.
    pub fn failure_window(&self) -> Duration {
        self.failure_window
    }

    /// How long a failed message waits for a rollback that would run it again.
    pub fn replay_hold(&self) -> Duration {
        self.replay_hold
    }

    /// What happens to a plugin when its file is deleted.
    pub fn on_delete(&self) -> DeleteAction {
        self.on_delete
    }

    /// Whether a new file becomes a new plugin.
    pub fn add_new_files(&self) -> bool {
        self.add_new_files
    }

    /// Whether subdirectories are watched too.
    pub fn recursive(&self) -> bool {
        self.recursive
    }

    /// Whether a new version's self-test runs before the swap.
    pub fn self_test(&self) -> bool {
        self.self_test
    }

    /// How long a vanished file may take to reappear before its plugin is removed.
    pub fn removal_grace(&self) -> Duration {
        self.removal_grace
    }

    /// The file extensions that are plugins.
    pub fn extensions(&self) -> Vec<String> {
        self.loaders().into_keys().collect()
    }

    /// The loader for `path`, by its extension.
    pub(crate) fn loader_for(&self, path: &Path) -> Option<PluginLoader> {
        let extension = path.extension()?.to_str()?;
        self.loaders().remove(extension)
    }

    /// The built-in loaders (of the runtimes this build has: features `rhai`, `wasm`),
    /// overridden or extended by `with_loader`.
    fn loaders(&self) -> BTreeMap<String, PluginLoader> {
        #[allow(unused_mut)] // a build with neither runtime has no built-in loader
        let mut loaders: BTreeMap<String, PluginLoader> = BTreeMap::new();
        #[cfg(feature = "rhai")]
        {
            let rhai = self.rhai_config.clone();
            loaders.insert(
                "rhai".into(),
                Arc::new(move |path: &Path| {
                    let plugin = RhaiPlugin::from_file_with_config(path, rhai.clone())?;
                    Ok(Box::new(plugin) as Box<dyn AgentPlugin>)
                }),
            );
        }
        #[cfg(feature = "wasm")]
        {
            let capabilities = self.wasm_capabilities.clone();
            let wasm: PluginLoader = Arc::new(move |path: &Path| {
                let plugin = WasmPlugin::from_file(path)?.with_capabilities(capabilities.clone());
                plugin.check_link()?;
                Ok(Box::new(plugin) as Box<dyn AgentPlugin>)
            });
            loaders.insert("wasm".into(), wasm.clone());
            loaders.insert("wat".into(), wasm);
        }
        loaders.extend(
            self.loaders
                .iter()
                .map(|(extension, loader)| (extension.clone(), loader.clone())),
        );
        loaders
    }

    /// The rollback policy a swap carries, from `auto_rollback`, `max_attempts` and the window.
    pub(crate) fn rollback_policy(&self) -> Option<super::RollbackPolicy> {
        self.auto_rollback.then_some(super::RollbackPolicy {
            max_failures: self.max_attempts,
            window: self.failure_window,
            replay_hold: self.replay_hold,
        })
    }
}
