//! `--watch` (of `run` and `worker`): hot reload of what this process serves and of the routing
//! script, each event printed on stderr as it happens. A build without the `hot-reload`
//! feature refuses `--watch` with an error naming the feature, before anything runs.

#[cfg(feature = "hot-reload")]
use bilayer::hot_reload::HotReloadManager;
use bilayer::system_config::SystemDefinition;
use bilayer::AgentSystem;

/// The watch `--watch` started; stop it before shutting the system down.
#[cfg(feature = "hot-reload")]
pub(crate) struct Watch(HotReloadManager);

/// A build without hot reload never starts a watch: [`check`] refuses `--watch` first.
#[cfg(not(feature = "hot-reload"))]
pub(crate) enum Watch {}

/// Refuses `--watch` in a build that cannot watch, before the system is built.
pub(crate) fn check(watch: bool) -> Result<(), String> {
    if watch && cfg!(not(feature = "hot-reload")) {
        return Err(bilayer::features::missing("hot-reload", "--watch"));
    }
    Ok(())
}

#[cfg(feature = "hot-reload")]
pub(crate) async fn start(
    definition: &SystemDefinition,
    system: &AgentSystem,
) -> Result<Watch, Box<dyn std::error::Error>> {
    let reloader = definition.hot_reload(system);
    let mut events = reloader.events();
    reloader.start().await?;
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            eprintln!("hot reload: {event:?}");
        }
    });
    Ok(Watch(reloader))
}

#[cfg(not(feature = "hot-reload"))]
pub(crate) async fn start(
    _definition: &SystemDefinition,
    _system: &AgentSystem,
) -> Result<Watch, Box<dyn std::error::Error>> {
    Err(bilayer::features::missing("hot-reload", "--watch").into())
}

impl Watch {
    pub(crate) async fn stop(self) {
        #[cfg(feature = "hot-reload")]
        self.0.stop().await;
        #[cfg(not(feature = "hot-reload"))]
        match self {}
    }
}

#[cfg(all(test, not(feature = "hot-reload")))]
mod tests {
    #[test]
    fn watch_is_refused_with_the_feature_to_build_with() {
        let message = super::check(true).unwrap_err();
        assert!(
            message.starts_with("--watch: this bilayer was built without the `hot-reload` feature"),
            "{message}"
        );
        assert!(
            message.contains("cargo build --features hot-reload"),
            "{message}"
        );
        assert_eq!(super::check(false), Ok(()));
    }
}
