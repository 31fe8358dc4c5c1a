//! `PluginManager` as the [`ReloadTarget`] of hot reload: a new file is registered, loaded and
//! started; a new version is swapped in through the plugin's mailbox
//! ([`PluginManager::swap`]); a deleted file's plugin is unregistered or stopped.
//!
//! ```no_run
//! use bilayer_actors::PluginManager;
//! use bilayer_plugins::hot_reload::{HotReloadConfig, HotReloadManager};
//!
//! # async fn run() -> bilayer_plugins::PluginResult<()> {
//! let manager = PluginManager::new("app");
//! let hot_reload = HotReloadManager::new("./scripts", HotReloadConfig::default())
//!     .with_target(manager.clone());
//! hot_reload.start().await?;
//! # Ok(())
//! # }
//! ```

use bilayer_plugins::hot_reload::{ReloadTarget, Replacement, SwapReport};
use bilayer_plugins::{async_trait, AgentPlugin, PluginResult};

use crate::{PluginManager, PluginOptions};

#[async_trait]
impl ReloadTarget for PluginManager {
    fn hosted_version(&self, plugin_id: &str) -> Option<String> {
        self.version(plugin_id)
    }

    async fn add(&self, plugin_id: &str, plugin: Box<dyn AgentPlugin>) -> PluginResult<()> {
        let id = plugin_id.to_string();
        self.register_with(plugin, PluginOptions::new().id(plugin_id))
            .await?;
        let started = match self.load(&id).await {
            Ok(()) => self.start(&id).await,
            Err(error) => Err(error),
        };
        if let Err(error) = started {
            // Nothing half-added stays behind.
            let _ = self.unregister(&id).await;
            return Err(error);
        }
        Ok(())
    }

    async fn swap(&self, plugin_id: &str, replacement: Replacement) -> PluginResult<SwapReport> {
        PluginManager::swap(self, plugin_id, replacement).await
    }

    async fn remove(&self, plugin_id: &str) -> PluginResult<()> {
        self.unregister(plugin_id).await
    }

    async fn stop(&self, plugin_id: &str) -> PluginResult<()> {
        PluginManager::stop(self, plugin_id).await
    }
}
