//! [`ReloadTarget`]: what hot reload needs from whoever hosts the plugins, and the
//! [`Replacement`] it hands over for a swap.
//!
//! This crate knows nothing about actors. `bilayer-actors` implements the trait for its
//! `PluginManager`: a swap becomes a message in the plugin's mailbox, processed between two
//! other messages, and the plugin's actor keeps the last known-good version for a rollback.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::ReloadEventSink;
use crate::{AgentPlugin, PluginResult};

/// Turns the state the old version left into the state the new version starts from. Called
/// with the new (not yet loaded) instance, between two messages, only when state is preserved.
pub type StateMigration = Arc<
    dyn Fn(&dyn AgentPlugin, Map<String, Value>) -> PluginResult<Map<String, Value>> + Send + Sync,
>;

/// When a version that went live is rolled back: more than `max_failures` plugin faults
/// (panics, traps, limit and runtime errors: [`PluginError::is_plugin_fault`]) within `window`
/// after its swap. It goes back to the newest version that served without a fault (see the
/// [module docs](super#rollback)), and the messages it failed are run again there.
///
/// [`PluginError::is_plugin_fault`]: crate::PluginError::is_plugin_fault
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollbackPolicy {
    /// Faults tolerated within `window`; one more rolls the version back.
    pub max_failures: u32,
    /// How long after the swap faults count.
    pub window: Duration,
    /// How long a message the new version failed waits (at most `max_failures` of them) for
    /// the rollback that would run it again on the rolled-back version, before it is answered
    /// with its failure. Zero answers failures at once (only the message that triggers the
    /// rollback is run again).
    pub replay_hold: Duration,
}

/// A new version of a plugin, validated and ready to be swapped in.
pub struct Replacement {
    /// The new instance, not yet loaded.
    pub plugin: Box<dyn AgentPlugin>,
    /// `true`: the new version gets the same state store as the old one (after `migration`,
    /// if any). `false`: it starts from a fresh, empty store.
    pub preserve_state: bool,
    /// Applied to the old state when it is preserved.
    pub migration: Option<StateMigration>,
    /// `Some`: keep the last known-good version and roll back to it under this policy.
    pub rollback: Option<RollbackPolicy>,
    /// Where to report the new version's live failures and a rollback.
    pub events: Option<ReloadEventSink>,
}

impl std::fmt::Debug for Replacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replacement")
            .field("plugin", &self.plugin.metadata().id)
            .field("version", &self.plugin.metadata().version)
            .field("preserve_state", &self.preserve_state)
            .field("migration", &self.migration.is_some())
            .field("rollback", &self.rollback)
            .finish()
    }
}

impl Replacement {
    /// `plugin` with its state preserved, no migration and no rollback.
    pub fn new(plugin: Box<dyn AgentPlugin>) -> Self {
        Self {
            plugin,
            preserve_state: true,
            migration: None,
            rollback: None,
            events: None,
        }
    }

    /// Whether the new version keeps the old version's state store (see [`Replacement::preserve_state`]).
    pub fn preserve_state(mut self, preserve: bool) -> Self {
        self.preserve_state = preserve;
        self
    }

    /// The function applied to the old state when it is preserved.
    pub fn migration(mut self, migration: Option<StateMigration>) -> Self {
        self.migration = migration;
        self
    }

    /// Keep the last known-good version and roll back to it under this policy (`None`: never).
    pub fn rollback(mut self, policy: Option<RollbackPolicy>) -> Self {
        self.rollback = policy;
        self
    }

    /// Where to report the new version's live failures and a rollback.
    pub fn events(mut self, sink: ReloadEventSink) -> Self {
        self.events = Some(sink);
        self
    }
}

/// How the state store was handed over by a swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateHandover {
    /// The new version uses the old version's store as it was.
    Preserved,
    /// The new version uses the old version's store, rewritten by its migration function.
    Migrated,
    /// The new version starts from a fresh, empty store.
    Fresh,
}

/// What a successful swap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapReport {
    /// The plugin swapped.
    pub plugin_id: String,
    /// The version that served before.
    pub previous_version: String,
    /// The version serving now.
    pub version: String,
    /// How the state store was handed over.
    pub state: StateHandover,
}

/// The host of the plugins hot reload manages.
///
/// Implemented by `bilayer::PluginManager`; implement it to put hot reload in front of another
/// host.
#[async_trait]
pub trait ReloadTarget: Send + Sync + 'static {
    /// The version serving `plugin_id`, or `None` when no plugin has that id.
    fn hosted_version(&self, plugin_id: &str) -> Option<String>;

    /// Registers `plugin` under `plugin_id` (its own id unless the config named another for its
    /// file), loads and starts it. On failure nothing stays registered.
    async fn add(&self, plugin_id: &str, plugin: Box<dyn AgentPlugin>) -> PluginResult<()>;

    /// Replaces the running version of `plugin_id` by `replacement` between two of its
    /// messages. On failure the running version keeps serving, untouched.
    async fn swap(&self, plugin_id: &str, replacement: Replacement) -> PluginResult<SwapReport>;

    /// Stops, unloads and unregisters a plugin.
    async fn remove(&self, plugin_id: &str) -> PluginResult<()>;

    /// Stops a plugin and keeps it registered (its calls are refused until it is started).
    async fn stop(&self, plugin_id: &str) -> PluginResult<()>;
}

#[async_trait]
impl<T: ReloadTarget + ?Sized> ReloadTarget for Arc<T> {
    fn hosted_version(&self, plugin_id: &str) -> Option<String> {
        (**self).hosted_version(plugin_id)
    }

    async fn add(&self, plugin_id: &str, plugin: Box<dyn AgentPlugin>) -> PluginResult<()> {
        (**self).add(plugin_id, plugin).await
    }

    async fn swap(&self, plugin_id: &str, replacement: Replacement) -> PluginResult<SwapReport> {
        (**self).swap(plugin_id, replacement).await
    }

    async fn remove(&self, plugin_id: &str) -> PluginResult<()> {
        (**self).remove(plugin_id).await
    }

    async fn stop(&self, plugin_id: &str) -> PluginResult<()> {
        (**self).stop(plugin_id).await
    }
}
