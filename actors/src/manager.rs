//! `PluginManager`: the handle through which an application registers, drives and calls its
//! plugins, each hosted by its own actor under one supervisor.
//!
//! The handle is cheap to clone (one `Arc`). Calls do not take any manager-wide lock: `execute`
//! looks the plugin's actor up in a sharded map and sends to its mailbox, so calls to different
//! plugins run in parallel and calls to one plugin are served in order.
//!
//! ```
//! use bilayer_actors::PluginManager;
//! # use bilayer_plugins::*;
//! # struct Echo(PluginMetadata);
//! # #[async_trait]
//! # impl AgentPlugin for Echo {
//! #     fn metadata(&self) -> &PluginMetadata { &self.0 }
//! #     async fn execute(&mut self, input: String) -> PluginResult<String> { Ok(input) }
//! # }
//! # #[tokio::main]
//! # async fn main() -> PluginResult<()> {
//! let manager = PluginManager::new("my-agent");
//! manager.register(Echo(PluginMetadata::new("echo", "Echo", PluginType::Tool))).await?;
//! manager.load_all().await?;
//! manager.start_all().await?;
//! assert_eq!(manager.execute("echo", "hi".to_string()).await?, "hi");
//! manager.shutdown().await?;
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bilayer_plugins::hot_reload::{Replacement, SwapReport};
use bilayer_plugins::{
    AgentPlugin, CallChain, CallError, JournalKey, PluginCaller, PluginContext, PluginError,
    PluginResult, PluginState, PluginStateStore,
};
use dashmap::DashMap;
use futures::future::BoxFuture;
use ractor::{Actor, ActorRef};
use serde_json::Value;
use tokio::sync::{broadcast, oneshot, OnceCell};

use crate::dependency::{dependency_order, Node};
use crate::plugin_actor::{
    LifecycleStep, PluginActorArgs, PluginFactory, PluginMsg, DEFAULT_CONCURRENCY,
};
use crate::registry::{PluginInfo, PluginShared, PluginSlot};
use crate::supervision::{RestartIntensity, SupervisionStrategy, SupervisorEvent};
use crate::supervisor::{PluginSupervisor, SupervisorConfig, SupervisorMsg};

/// How long `execute` (and a lifecycle step) waits for a plugin by default.
pub const DEFAULT_EXECUTE_TIMEOUT: Duration = Duration::from_secs(30);

/// A cloneable handle to a set of supervised plugin actors.
#[derive(Clone)]
pub struct PluginManager {
    inner: Arc<ManagerInner>,
}

/// The name, the plugins by id and the supervision settings; the actors are not shown.
impl std::fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &self.inner;
        let mut plugins: Vec<String> = inner
            .plugins
            .iter()
            .map(|slot| slot.key().clone())
            .collect();
        plugins.sort();
        f.debug_struct("PluginManager")
            .field("name", &inner.name)
            .field("plugins", &plugins)
            .field("strategy", &inner.strategy)
            .field("intensity", &inner.intensity)
            .field("execute_timeout", &inner.execute_timeout)
            .finish_non_exhaustive()
    }
}

struct ManagerInner {
    name: String,
    plugins: DashMap<String, PluginSlot>,
    supervisor: OnceCell<ActorRef<SupervisorMsg>>,
    events: broadcast::Sender<SupervisorEvent>,
    strategy: SupervisionStrategy,
    intensity: RestartIntensity,
    execute_timeout: Option<Duration>,
    next_order: AtomicU64,
    timer_heartbeat: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
}

/// Period of the timer heartbeat; must stay below any sensible execute timeout.
const TIMER_HEARTBEAT: Duration = Duration::from_millis(500);

impl Drop for ManagerInner {
    fn drop(&mut self) {
        if let Some(heartbeat) = self.timer_heartbeat.get() {
            heartbeat.abort();
        }
        // Actors do not stop when their references are dropped; the last handle stops them.
        for slot in self.plugins.iter() {
            slot.actor.stop(None);
        }
        let Some(supervisor) = self.supervisor.get().cloned() else {
            return;
        };
        // A ractor supervisor that stops kills its children still running, and a killed actor
        // skips `post_stop`. So the supervisor stops once its children (also those `shutdown`
        // or `unregister` already took out of `plugins`) have finished their turns and stopped,
        // or after one call's time: then the kill cuts the turn short, and the actor state's
        // drop dead-letters the message being handled and those still waiting.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return supervisor.stop(None);
        };
        let grace = self.execute_timeout;
        runtime.spawn(async move {
            let children = supervisor.get_children();
            let all_stopped = futures::future::join_all(children.iter().map(|c| c.wait(None)));
            match grace {
                // No timer without a timeout: the runtime may have no time driver.
                None => drop(all_stopped.await),
                Some(grace) => drop(tokio::time::timeout(grace, all_stopped).await),
            }
            supervisor.stop(None);
        });
    }
}

/// Configures a [`PluginManager`]; `PluginManager::new(name)` is `builder(name).build()`.
#[derive(Debug, Clone)]
pub struct PluginManagerBuilder {
    name: String,
    strategy: SupervisionStrategy,
    intensity: RestartIntensity,
    execute_timeout: Option<Duration>,
}

impl PluginManagerBuilder {
    /// Which plugins restart when one fails (default one_for_one).
    pub fn strategy(mut self, strategy: SupervisionStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// At most `max_restarts` restarts of a plugin within `within` (default 3 in 5 s); one more
    /// failure and the plugin is given up on.
    pub fn restart_intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.intensity = RestartIntensity {
            max_restarts,
            within,
        };
        self
    }

    /// How long a call waits for its plugin (default [`DEFAULT_EXECUTE_TIMEOUT`]); `None`
    /// waits forever.
    pub fn execute_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.execute_timeout = timeout;
        self
    }

    /// The manager; nothing is spawned until the first registration.
    pub fn build(self) -> PluginManager {
        // Every call is timed; the clock's one-off calibration belongs here, not in a call.
        crate::clock::calibrate();
        let (events, _) = broadcast::channel(1024);
        PluginManager {
            inner: Arc::new(ManagerInner {
                name: self.name,
                plugins: DashMap::new(),
                supervisor: OnceCell::new(),
                events,
                strategy: self.strategy,
                intensity: self.intensity,
                execute_timeout: self.execute_timeout,
                next_order: AtomicU64::new(0),
                timer_heartbeat: std::sync::OnceLock::new(),
            }),
        }
    }
}

/// Per-plugin registration options.
#[derive(Clone, Default)]
pub struct PluginOptions {
    id: Option<String>,
    config: Option<Value>,
    state: Option<PluginStateStore>,
    max_state_bytes: Option<usize>,
    factory: Option<PluginFactory>,
    concurrency: Option<usize>,
    order_by: Option<String>,
}

/// The options set; the state store and the factory show as whether they are set.
impl std::fmt::Debug for PluginOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginOptions")
            .field("id", &self.id)
            .field("config", &self.config)
            .field("state", &self.state.is_some())
            .field("max_state_bytes", &self.max_state_bytes)
            .field("factory", &self.factory.is_some())
            .field("concurrency", &self.concurrency)
            .field("order_by", &self.order_by)
            .finish()
    }
}

impl PluginOptions {
    /// No options: the metadata id, no config, a new empty state store, no factory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register under this id instead of the plugin's metadata id (an agent system registers
    /// each agent's plugin under the agent's name).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Configuration the plugin reads from `PluginContext::config()`.
    pub fn config(mut self, config: Value) -> Self {
        self.config = Some(config);
        self
    }

    /// Use this state store (for instance one kept from an earlier registration) instead of a
    /// new empty one.
    pub fn state(mut self, state: PluginStateStore) -> Self {
        self.state = Some(state);
        self
    }

    /// The most the plugin's state may hold, in bytes of JSON text (default
    /// [`DEFAULT_MAX_STATE_BYTES`](bilayer_plugins::DEFAULT_MAX_STATE_BYTES), 64 MiB); a write
    /// past it fails with `PluginError::LimitExceeded` and leaves the state as it was.
    pub fn max_state_bytes(mut self, max_bytes: usize) -> Self {
        self.max_state_bytes = Some(max_bytes);
        self
    }

    /// How many calls and hops the plugin serves at once (default [`DEFAULT_CONCURRENCY`],
    /// 32; at least 1). Runs that would wait (a hop or call that awaits a model, a database or
    /// another plugin) go to siblings of the plugin
    /// ([`AgentPlugin::concurrent_instance`]) up to this many; past it, hops wait in the
    /// agent's inbox and calls in a queue, and none fails for it. A plugin that makes no
    /// siblings serves one at a time whatever this says; `1` gives strict one-at-a-time
    /// order. With more than one, an agent's outputs may complete in another order than its
    /// inputs came: see [`PluginOptions::order_by`].
    ///
    /// [`DEFAULT_CONCURRENCY`]: crate::DEFAULT_CONCURRENCY
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = Some(concurrency);
        self
    }

    /// These options with `concurrency` unless they set one already.
    pub(crate) fn concurrency_or(mut self, concurrency: usize) -> Self {
        self.concurrency.get_or_insert(concurrency);
        self
    }

    /// For an agent that serves several messages at once: messages whose top-level `field`
    /// holds equal JSON values (e.g. the same customer) are served one at a time, in the order
    /// they arrived, while messages of other values overlap. A message without the field
    /// counts as the value `null`. Ignored at a concurrency of 1 (everything is in order).
    pub fn order_by(mut self, field: impl Into<String>) -> Self {
        self.order_by = Some(field.into());
        self
    }

    /// Build a fresh instance from `factory` on every restart.
    pub fn factory<P, F>(mut self, factory: F) -> Self
    where
        P: AgentPlugin,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.factory = Some(Arc::new(move || {
            Box::new(factory()) as Box<dyn AgentPlugin>
        }));
        self
    }
}

impl PluginManager {
    /// A manager with the default strategy (one_for_one), restart intensity (3 in 5 s) and
    /// execute timeout (30 s). Nothing is spawned until the first registration.
    pub fn new(name: impl Into<String>) -> Self {
        Self::builder(name).build()
    }

    /// A builder for a manager named `name`, starting from the defaults of [`PluginManager::new`].
    pub fn builder(name: impl Into<String>) -> PluginManagerBuilder {
        PluginManagerBuilder {
            name: name.into(),
            strategy: SupervisionStrategy::default(),
            intensity: RestartIntensity::default(),
            execute_timeout: Some(DEFAULT_EXECUTE_TIMEOUT),
        }
    }

    /// The manager's name (in logs and metrics).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Subscribes to supervision events (started, failed, restarted, gave up, escalated).
    pub fn supervision_events(&self) -> broadcast::Receiver<SupervisorEvent> {
        self.inner.events.subscribe()
    }

    /// Registers a plugin instance in a new actor. On a restart, the same instance goes through
    /// its lifecycle again; use [`PluginManager::register_factory`] for a fresh instance.
    pub async fn register<P: AgentPlugin>(&self, plugin: P) -> PluginResult<()> {
        self.register_with(Box::new(plugin), PluginOptions::default())
            .await
    }

    /// Registers a plugin built by `factory`, which also builds a fresh instance on restart.
    pub async fn register_factory<P, F>(&self, factory: F) -> PluginResult<()>
    where
        P: AgentPlugin,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let options = PluginOptions::new().factory(factory);
        let first = (options.factory.as_ref().expect("factory was just set"))();
        self.register_with(first, options).await
    }

    /// Registers a boxed plugin with options.
    pub async fn register_with(
        &self,
        plugin: Box<dyn AgentPlugin>,
        options: PluginOptions,
    ) -> PluginResult<()> {
        let mut metadata = plugin.metadata().clone();
        if let Some(id) = options.id {
            metadata.id = id;
        }
        let id = metadata.id.clone();
        if self.inner.plugins.contains_key(&id) {
            return Err(PluginError::AlreadyRegistered(id));
        }
        let concurrency = options.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 {
            return Err(PluginError::Config(format!(
                "plugin `{id}`: concurrency must be at least 1 (1 serves one message at a \
                 time; PluginOptions::concurrency)"
            )));
        }
        let supervisor = self.supervisor().await?;
        let store = options.state.unwrap_or_default();
        if let Some(max_bytes) = options.max_state_bytes {
            store.set_max_bytes(max_bytes);
        }
        let order = self.inner.next_order.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(PluginShared::new(metadata, order, store.clone()));
        let ctx = PluginContext::new(id.clone())
            .with_manager_name(self.inner.name.clone())
            .with_config(options.config.unwrap_or(Value::Null))
            .with_state(store)
            .with_caller(Arc::new(ManagerCaller {
                manager: Arc::downgrade(&self.inner),
            }))
            .with_call_timeout(self.inner.execute_timeout);
        let args = PluginActorArgs {
            plugin,
            factory: options.factory,
            ctx,
            shared: shared.clone(),
            supervisor: supervisor.clone(),
            hop_timeout: self.inner.execute_timeout,
            concurrency,
            order_by: options.order_by.map(Arc::from),
        };
        let actor = supervisor
            .call(|reply| SupervisorMsg::Spawn { args, reply }, None)
            .await
            .map_err(|e| PluginError::execution(format!("supervisor unavailable: {e}")))?
            .success_or(PluginError::execution("supervisor did not answer"))??;

        match self.inner.plugins.entry(id.clone()) {
            dashmap::Entry::Occupied(_) => {
                // Lost a race with a concurrent registration of the same id.
                actor.stop(None);
                let _ = supervisor.send_message(SupervisorMsg::Forget { id: id.clone() });
                Err(PluginError::AlreadyRegistered(id))
            }
            dashmap::Entry::Vacant(slot) => {
                slot.insert(PluginSlot { actor, shared });
                Ok(())
            }
        }
    }

    /// Stops, unloads and removes a plugin, and stops its actor.
    pub async fn unregister(&self, id: &str) -> PluginResult<()> {
        let slot = self.slot(id)?;
        if let Some((dependent, _)) = self.dependent_in(id, |state| state != PluginState::Unloaded)
        {
            return Err(PluginError::InUse {
                id: id.to_string(),
                dependent,
            });
        }
        if slot.shared.state() == PluginState::Running {
            self.step(&slot, LifecycleStep::Stop).await?;
        }
        if slot.shared.state() == PluginState::Loaded {
            self.step(&slot, LifecycleStep::Unload).await?;
        }
        self.inner.plugins.remove(id);
        if let Some(supervisor) = self.inner.supervisor.get() {
            let _ = supervisor.send_message(SupervisorMsg::Forget { id: id.to_string() });
        }
        slot.actor.stop(None);
        Ok(())
    }

    /// Loads (and initialises) every unloaded plugin, dependencies first.
    pub async fn load_all(&self) -> PluginResult<()> {
        for slot in self.in_dependency_order()? {
            if slot.shared.state() == PluginState::Unloaded {
                self.step(&slot, LifecycleStep::Load).await?;
            }
        }
        Ok(())
    }

    /// Starts every loaded plugin, dependencies first.
    pub async fn start_all(&self) -> PluginResult<()> {
        for slot in self.in_dependency_order()? {
            if slot.shared.state() == PluginState::Loaded {
                self.start_slot(&slot).await?;
            }
        }
        Ok(())
    }

    /// Stops every running plugin, dependents first.
    pub async fn stop_all(&self) -> PluginResult<()> {
        for slot in self.in_dependency_order()?.into_iter().rev() {
            if slot.shared.state() == PluginState::Running {
                self.step(&slot, LifecycleStep::Stop).await?;
            }
        }
        Ok(())
    }

    /// Unloads every loaded plugin, dependents first.
    pub async fn unload_all(&self) -> PluginResult<()> {
        for slot in self.in_dependency_order()?.into_iter().rev() {
            if slot.shared.state() == PluginState::Loaded {
                self.step(&slot, LifecycleStep::Unload).await?;
            }
        }
        Ok(())
    }

    /// Loads one plugin; its dependencies must be loaded (or running).
    pub async fn load(&self, id: &str) -> PluginResult<()> {
        let slot = self.slot(id)?;
        let loaded = |state| matches!(state, PluginState::Loaded | PluginState::Running);
        if let Some((dependency, state)) = self.dependency_not_in(&slot, loaded)? {
            return Err(PluginError::DependencyOrder {
                plugin: id.to_string(),
                operation: "load",
                detail: format!(
                    "its dependency `{dependency}` is {state:?}; load `{dependency}` first"
                ),
            });
        }
        self.step(&slot, LifecycleStep::Load).await
    }

    /// Starts one plugin; its dependencies must be running.
    pub async fn start(&self, id: &str) -> PluginResult<()> {
        let slot = self.slot(id)?;
        self.start_slot(&slot).await
    }

    /// Stops one plugin; no running plugin may depend on it (stop dependents first, or use
    /// [`PluginManager::stop_all`], which orders the stops).
    pub async fn stop(&self, id: &str) -> PluginResult<()> {
        let slot = self.slot(id)?;
        self.refuse_if_needed(id, "stop", |state| state == PluginState::Running)?;
        self.step(&slot, LifecycleStep::Stop).await
    }

    /// Unloads one plugin; no loaded or running plugin may depend on it.
    pub async fn unload(&self, id: &str) -> PluginResult<()> {
        let slot = self.slot(id)?;
        self.refuse_if_needed(id, "unload", |state| {
            matches!(state, PluginState::Loaded | PluginState::Running)
        })?;
        self.step(&slot, LifecycleStep::Unload).await
    }

    /// A plugin that depends on `id` and is in a state `needs` accepts, with that state.
    fn dependent_in(
        &self,
        id: &str,
        needs: impl Fn(PluginState) -> bool,
    ) -> Option<(String, PluginState)> {
        self.inner.plugins.iter().find_map(|other| {
            let depends = other.shared.metadata().dependencies.iter().any(|d| d == id);
            let state = other.shared.state();
            (depends && needs(state)).then(|| (other.key().clone(), state))
        })
    }

    /// `DependencyOrder` when a plugin depending on `id` is in a state `needs` accepts.
    fn refuse_if_needed(
        &self,
        id: &str,
        operation: &'static str,
        needs: impl Fn(PluginState) -> bool,
    ) -> PluginResult<()> {
        match self.dependent_in(id, needs) {
            Some((dependent, state)) => Err(PluginError::DependencyOrder {
                plugin: id.to_string(),
                operation,
                detail: format!(
                    "`{dependent}`, which depends on it, is {state:?}; {operation} `{dependent}` \
                     first"
                ),
            }),
            None => Ok(()),
        }
    }

    /// Stops and unloads everything, then stops the actors and the supervisor, dependents
    /// first (never in the arbitrary order a dying ractor supervisor would use).
    pub async fn shutdown(&self) -> PluginResult<()> {
        let stopped = self.stop_all().await;
        let unloaded = self.unload_all().await;
        let order = self.in_dependency_order().unwrap_or_default();
        for slot in order.into_iter().rev() {
            self.inner.plugins.remove(&*slot.shared.id);
            slot.actor.stop(None);
        }
        stopped.and(unloaded)
    }

    /// Executes a plugin on one input through its actor, waiting at most the manager's execute
    /// timeout. The seed's entry point: its error is a [`PluginError`], whichever layer it
    /// comes from ([`PluginManager::call`] keeps the host's outcomes apart).
    pub async fn execute(&self, id: &str, input: String) -> PluginResult<String> {
        self.call(id, input).await.map_err(PluginError::from)
    }

    /// [`PluginManager::execute`], answering how the call ended as a [`CallError`]: the host's
    /// outcomes (not found, stopped, not running, timed out, panicked, a call cycle) apart from
    /// the plugin's own error ([`CallError::Plugin`]).
    pub async fn call(&self, id: &str, input: String) -> Result<String, CallError> {
        self.execute_in_chain(CallChain::current(), id, input, self.inner.execute_timeout)
            .await
    }

    /// [`PluginManager::execute`] with its own timeout. Scripts and modules still stop their own
    /// code at the manager's execute timeout when that is shorter than their limits
    /// (`PluginContext::call_timeout`, given at registration): a longer per-call timeout waits
    /// longer for other plugins, it does not let a guest run longer.
    pub async fn execute_with_timeout(
        &self,
        id: &str,
        input: String,
        timeout: Duration,
    ) -> PluginResult<String> {
        self.execute_in_chain(CallChain::current(), id, input, Some(timeout))
            .await
            .map_err(PluginError::from)
    }

    async fn execute_in_chain(
        &self,
        chain: CallChain,
        id: &str,
        input: String,
        timeout: Option<Duration>,
    ) -> Result<String, CallError> {
        chain.check_call(id)?;
        let (reply, answer) = oneshot::channel();
        // Sent under the registry's read guard rather than from a cloned slot: the hot path
        // then touches no reference count (the guard is released before any await).
        self.inner
            .plugins
            .get(id)
            .ok_or_else(|| CallError::NotFound(id.to_string()))?
            .actor
            .send_message(PluginMsg::Execute {
                input,
                chain,
                reply,
            })
            .map_err(|_| CallError::Stopped(id.to_string()))?;
        let answered = match timeout {
            None => answer.await,
            Some(limit) => match tokio::time::timeout(limit, answer).await {
                Ok(answered) => answered,
                Err(_) => {
                    if let Some(slot) = self.inner.plugins.get(id) {
                        slot.shared.stats.record_timeout();
                    }
                    return Err(CallError::Timeout {
                        id: id.to_string(),
                        after: limit,
                    });
                }
            },
        };
        answered.unwrap_or_else(|_| Err(CallError::Stopped(id.to_string())))
    }

    /// Every plugin with its metadata, state and call statistics, in registration order.
    pub fn list(&self) -> Vec<PluginInfo> {
        let mut shared: Vec<Arc<PluginShared>> = self
            .inner
            .plugins
            .iter()
            .map(|slot| slot.shared.clone())
            .collect();
        shared.sort_by_key(|s| s.order);
        shared.iter().map(|s| s.info()).collect()
    }

    /// One plugin's metadata, state and call statistics.
    pub fn info(&self, id: &str) -> Option<PluginInfo> {
        self.inner.plugins.get(id).map(|slot| slot.shared.info())
    }

    /// The lifecycle state of a plugin, as the host tracks it.
    pub fn state(&self, id: &str) -> Option<PluginState> {
        self.inner.plugins.get(id).map(|slot| slot.shared.state())
    }

    /// The host-owned state store of a plugin.
    pub fn state_store(&self, id: &str) -> Option<PluginStateStore> {
        self.inner.plugins.get(id).map(|slot| slot.shared.store())
    }

    /// The version serving a plugin's calls (from its metadata; a hot reload swap changes it).
    pub fn version(&self, id: &str) -> Option<String> {
        self.inner.plugins.get(id).map(|slot| slot.shared.version())
    }

    /// Replaces the version serving plugin `id` by `replacement`, between two of its messages:
    /// every message sent before the swap is answered by the old version, every one after it by
    /// the new one. The new instance is loaded and started (to the state the plugin is in)
    /// before the old one is stopped; if that or the state migration fails, the old version
    /// keeps serving and the error is returned. See `bilayer_plugins::hot_reload` for state
    /// and rollback.
    ///
    /// The swap waits behind the messages already queued, without a timeout; once sent it
    /// happens even if this future is dropped.
    pub async fn swap(&self, id: &str, replacement: Replacement) -> PluginResult<SwapReport> {
        let slot = self.slot(id)?;
        let (reply, answer) = oneshot::channel();
        slot.actor
            .send_message(PluginMsg::Swap { replacement, reply })
            .map_err(|_| PluginError::Stopped(id.to_string()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(PluginError::Stopped(id.to_string())))
    }

    /// Whether a plugin is registered under `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.inner.plugins.contains_key(id)
    }

    pub(crate) fn actor(&self, id: &str) -> Option<ActorRef<PluginMsg>> {
        self.inner.plugins.get(id).map(|slot| slot.actor.clone())
    }

    fn slot(&self, id: &str) -> PluginResult<PluginSlot> {
        self.inner
            .plugins
            .get(id)
            .map(|slot| slot.clone())
            .ok_or_else(|| PluginError::NotFound(id.to_string()))
    }

    async fn supervisor(&self) -> PluginResult<ActorRef<SupervisorMsg>> {
        self.inner
            .supervisor
            .get_or_try_init(|| async {
                self.start_timer_heartbeat();
                let config = SupervisorConfig {
                    name: self.inner.name.clone(),
                    strategy: self.inner.strategy,
                    intensity: self.inner.intensity,
                    events: self.inner.events.clone(),
                };
                Actor::spawn(None, PluginSupervisor, config)
                    .await
                    .map(|(actor, _join)| actor)
                    .map_err(|e| {
                        PluginError::execution(format!("could not start the supervisor: {e}"))
                    })
            })
            .await
            .cloned()
    }

    /// Keeps a short timer pending in the runtime so that arming an execute timeout never has
    /// to wake the parked time driver.
    ///
    /// tokio wakes its parked driver (an eventfd write, a syscall) whenever a new timer is due
    /// earlier than every pending one. With no other timers around, that is every call's
    /// timeout, a syscall on every `execute` (docs/benchmarks.md, section "Plugin call through
    /// its actor", has the figure). With a heartbeat due within 500 ms, a 30 s call deadline is
    /// never the earliest, and arming it is a plain wheel insert.
    fn start_timer_heartbeat(&self) {
        if self.inner.execute_timeout.is_none() {
            return;
        }
        self.inner.timer_heartbeat.get_or_init(|| {
            tokio::spawn(async {
                let mut ticks = tokio::time::interval(TIMER_HEARTBEAT);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                }
            })
        });
    }

    fn in_dependency_order(&self) -> PluginResult<Vec<PluginSlot>> {
        let slots: Vec<PluginSlot> = self.inner.plugins.iter().map(|s| s.clone()).collect();
        let nodes: Vec<Node> = slots
            .iter()
            .map(|s| Node {
                id: s.shared.id.to_string(),
                order: s.shared.order,
                dependencies: s.shared.metadata().dependencies,
            })
            .collect();
        let order = dependency_order(&nodes)?;
        let mut by_id: std::collections::HashMap<String, PluginSlot> = slots
            .into_iter()
            .map(|s| (s.shared.id.to_string(), s))
            .collect();
        Ok(order
            .into_iter()
            .filter_map(|id| by_id.remove(&id))
            .collect())
    }

    async fn start_slot(&self, slot: &PluginSlot) -> PluginResult<()> {
        let running = |state| state == PluginState::Running;
        if let Some((dependency, state)) = self.dependency_not_in(slot, running)? {
            return Err(PluginError::DependencyNotReady {
                plugin: slot.shared.id.to_string(),
                dependency,
                state,
            });
        }
        self.step(slot, LifecycleStep::Start).await
    }

    /// The first dependency of `slot` in a state `ready` refuses, with that state;
    /// `MissingDependency` when one is not registered.
    fn dependency_not_in(
        &self,
        slot: &PluginSlot,
        ready: impl Fn(PluginState) -> bool,
    ) -> PluginResult<Option<(String, PluginState)>> {
        for dependency in slot.shared.metadata().dependencies {
            let state = self
                .state(&dependency)
                .ok_or_else(|| PluginError::MissingDependency {
                    plugin: slot.shared.id.to_string(),
                    dependency: dependency.clone(),
                })?;
            if !ready(state) {
                return Ok(Some((dependency, state)));
            }
        }
        Ok(None)
    }

    async fn step(&self, slot: &PluginSlot, step: LifecycleStep) -> PluginResult<()> {
        let id = slot.shared.id.to_string();
        let (reply, answer) = oneshot::channel();
        slot.actor
            .send_message(PluginMsg::Lifecycle { step, reply })
            .map_err(|_| PluginError::Stopped(id.clone()))?;
        let answered = match self.inner.execute_timeout {
            None => answer.await,
            Some(limit) => {
                tokio::time::timeout(limit, answer)
                    .await
                    .map_err(|_| PluginError::Timeout {
                        id: id.clone(),
                        after: limit,
                    })?
            }
        };
        answered.unwrap_or_else(|_| Err(PluginError::Stopped(id.clone())))
    }
}

/// Lets a plugin call other plugins of its manager. Holds the manager weakly: a plugin must not
/// keep its own manager alive.
struct ManagerCaller {
    manager: Weak<ManagerInner>,
}

impl PluginCaller for ManagerCaller {
    fn call(
        &self,
        chain: CallChain,
        target: String,
        input: String,
    ) -> BoxFuture<'static, PluginResult<String>> {
        let manager = self.manager.upgrade();
        Box::pin(async move {
            let inner = manager.ok_or_else(|| PluginError::Stopped(target.clone()))?;
            let manager = PluginManager { inner };
            let timeout = manager.inner.execute_timeout;
            // In a durable run's hop, the call is the unit the journal records: answered from
            // it when the hop already made it, recorded when made now. The plugin called
            // does not see the hop's journal (what it does inside is part of the call).
            let Some(hop) = chain.hop().cloned() else {
                return manager
                    .execute_in_chain(chain, &target, input, timeout)
                    .await
                    .map_err(PluginError::from);
            };
            let key = hop.next_key(JournalKey::Call);
            if let Some(recorded) = hop.recorded(&key, &target) {
                return recorded.map_err(PluginError::execution);
            }
            let started = std::time::Instant::now();
            let result = manager
                .execute_in_chain(chain.without_hop(), &target, input, timeout)
                .await
                .map_err(PluginError::from);
            let outcome = match &result {
                Ok(answer) => Ok(answer.as_str()),
                Err(error) => Err(error.to_string()),
            };
            hop.record(
                key,
                &target,
                outcome.as_ref().map(|a| *a).map_err(String::as_str),
                started.elapsed(),
            );
            result
        })
    }
}
