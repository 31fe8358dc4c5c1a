//! What the host hands a plugin at load time: its identity, config, state store, a way to
//! call other plugins, and how long it waits for one call (`call_timeout`, which scripts and
//! modules bound their own code by); and how synchronous plugin work leaves the async workers
//! ([`run_blocking`], [`run_detached`]).
//!
//! The plugin layer knows nothing about actors. Calling another plugin goes through the
//! [`PluginCaller`] trait object, which the actor layer implements on top of its manager. The
//! chain of plugins currently waiting on each other travels with every call ([`CallChain`]), so
//! a call that would re-enter a waiting plugin (A → B → A) is refused with
//! [`CallError::CallCycle`] instead of deadlocking A's mailbox.
//!
//! The host's side of a call speaks [`CallError`] (the host's outcomes around the plugin's own
//! error); what a plugin sees through [`PluginCaller`] and [`PluginContext::call_plugin`] is a
//! [`PluginResult`], as the seed's plugins expect (`?` inside their own `PluginResult`
//! functions), and as hosts written against this trait (tests' fakes among them) return.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

pub(crate) use crate::state_store::PluginStateStore;

use crate::durable::HopJournal;
use crate::{CallError, PluginError, PluginResult};

tokio::task_local! {
    static TASK_CALL_FRAME: CallFrame;
}

thread_local! {
    static THREAD_CALL_CHAIN: RefCell<Option<CallChain>> = const { RefCell::new(None) };
}

/// The ids of the plugins on the current call path, outermost first, and, in a durable run,
/// the journal of the agent hop they serve ([`HopJournal`]).
///
/// A linked list of shared links, so passing a chain along is a reference-count increment and a
/// top-level call allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct CallChain {
    links: Option<Arc<ChainLink>>,
    hop: Option<Arc<dyn HopJournal>>,
}

#[derive(Debug)]
struct ChainLink {
    id: Arc<str>,
    parent: CallChain,
}

/// What a plugin actor installs while its plugin executes: the caller's chain and the plugin's
/// own id, joined into a chain only if the plugin actually calls another plugin.
#[derive(Clone)]
struct CallFrame {
    parent: CallChain,
    current: Arc<str>,
}

impl CallChain {
    /// The chain of the plugin call being executed by this task or thread (empty outside one).
    pub fn current() -> CallChain {
        TASK_CALL_FRAME
            .try_with(|frame| frame.parent.clone().join(frame.current.clone()))
            .ok()
            .or_else(|| THREAD_CALL_CHAIN.with(|c| c.borrow().clone()))
            .unwrap_or_default()
    }

    /// The chain of an agent hop of a durable run: empty, with the hop's journal, which
    /// answers the calls the hop already made before a crash and records the ones it makes.
    pub fn for_hop(hop: Arc<dyn HopJournal>) -> CallChain {
        CallChain {
            links: None,
            hop: Some(hop),
        }
    }

    /// The journal of the durable run's hop this chain serves, if any.
    pub fn hop(&self) -> Option<&Arc<dyn HopJournal>> {
        self.hop.as_ref()
    }

    /// This chain without its hop's journal: what a journaled call hands the plugin it calls,
    /// since the call as a whole is the unit recorded (and answered on replay).
    pub fn without_hop(mut self) -> CallChain {
        self.hop = None;
        self
    }

    /// This chain with `id` appended.
    pub fn join(self, id: Arc<str>) -> CallChain {
        let hop = self.hop.clone();
        CallChain {
            links: Some(Arc::new(ChainLink { id, parent: self })),
            hop,
        }
    }

    /// Whether `id` is already on this chain.
    pub fn contains(&self, id: &str) -> bool {
        let mut link = self.links.as_deref();
        while let Some(l) = link {
            if &*l.id == id {
                return true;
            }
            link = l.parent.links.as_deref();
        }
        false
    }

    /// `Ok` when calling `id` from this chain cannot deadlock; otherwise the cycle it would
    /// close, in call order.
    pub fn check_call(&self, id: &str) -> Result<(), CallError> {
        if self.contains(id) {
            let mut ids = self.ids();
            ids.push(id.to_string());
            Err(CallError::CallCycle(ids))
        } else {
            Ok(())
        }
    }

    /// The ids, outermost first.
    pub fn ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let mut link = self.links.as_deref();
        while let Some(l) = link {
            ids.push(l.id.to_string());
            link = l.parent.links.as_deref();
        }
        ids.reverse();
        ids
    }

    /// Whether the chain is empty (a call from outside any plugin).
    pub fn is_empty(&self) -> bool {
        self.links.is_none()
    }

    /// Runs `fut`, the execution of plugin `current` called from this chain, so that calls it
    /// makes see the chain extended by `current` (async plugins).
    pub async fn scope<F: std::future::Future>(self, current: Arc<str>, fut: F) -> F::Output {
        TASK_CALL_FRAME
            .scope(
                CallFrame {
                    parent: self,
                    current,
                },
                fut,
            )
            .await
    }

    /// Runs `f` with this chain as the thread's current chain (synchronous script and module
    /// execution, which runs off the async task).
    pub fn scope_blocking<R>(self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<CallChain>);
        impl Drop for Restore {
            fn drop(&mut self) {
                THREAD_CALL_CHAIN.with(|c| *c.borrow_mut() = self.0.take());
            }
        }
        let previous = THREAD_CALL_CHAIN.with(|c| c.borrow_mut().replace(self));
        let _restore = Restore(previous);
        f()
    }
}

impl PartialEq for CallChain {
    fn eq(&self, other: &Self) -> bool {
        self.ids() == other.ids()
    }
}

impl Eq for CallChain {}

/// Executes a plugin by id on behalf of another plugin. Implemented by the actor layer.
pub trait PluginCaller: Send + Sync + 'static {
    /// Executes `target` with `input`; `chain` is the caller's call chain (not yet including
    /// `target`). The error is what the plugin sees: a host builds it from the call's
    /// [`CallError`] (`PluginError::from`), so a plugin's `?` passes it on.
    fn call(
        &self,
        chain: CallChain,
        target: String,
        input: String,
    ) -> BoxFuture<'static, PluginResult<String>>;
}

/// Everything a plugin receives from its host at load time. Cheap to clone.
#[derive(Clone)]
pub struct PluginContext {
    plugin_id: String,
    manager_name: String,
    config: Arc<Value>,
    state: PluginStateStore,
    caller: Option<Arc<dyn PluginCaller>>,
    call_timeout: Option<Duration>,
}

impl std::fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginContext")
            .field("plugin_id", &self.plugin_id)
            .field("manager_name", &self.manager_name)
            .field("config", &self.config)
            .field("can_call_plugins", &self.caller.is_some())
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

impl PluginContext {
    /// A context for `plugin_id` with empty config, a fresh state store and no plugin caller.
    /// Hosts add those with the `with_*` methods; tests can use it as is.
    pub fn new(plugin_id: impl Into<String>) -> Self {
        Self {
            plugin_id: plugin_id.into(),
            manager_name: String::new(),
            config: Arc::new(Value::Null),
            state: PluginStateStore::new(),
            caller: None,
            call_timeout: None,
        }
    }

    /// The name of the manager (agent) hosting the plugin.
    pub fn with_manager_name(mut self, name: impl Into<String>) -> Self {
        self.manager_name = name.into();
        self
    }

    /// The plugin's configuration.
    pub fn with_config(mut self, config: Value) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// The plugin's host-owned state store (shared with the host, which keeps it across
    /// restarts and reloads).
    pub fn with_state(mut self, state: PluginStateStore) -> Self {
        self.state = state;
        self
    }

    /// What the plugin calls other plugins through (`call_plugin`).
    pub fn with_caller(mut self, caller: Arc<dyn PluginCaller>) -> Self {
        self.caller = Some(caller);
        self
    }

    /// The longest the host waits for one call of the plugin (a `PluginManager`'s execute
    /// timeout, which is an agent system's hop timeout). Plugins that run guest code bound it
    /// by this too, whatever their own limits say: a script or module still running at it is
    /// stopped, instead of running on after its caller has given up.
    pub fn with_call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The id of the plugin this context was made for.
    pub fn plugin_id(&self) -> &str {
        &self.plugin_id
    }

    /// The name of the manager (agent) hosting the plugin.
    pub fn manager_name(&self) -> &str {
        &self.manager_name
    }

    /// The plugin's configuration (JSON `null` when none was given).
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// The plugin's host-owned state store.
    pub fn state(&self) -> &PluginStateStore {
        &self.state
    }

    /// What the plugin calls other plugins through; `None` when the host gave none.
    pub fn caller(&self) -> Option<&Arc<dyn PluginCaller>> {
        self.caller.as_ref()
    }

    /// The host's bound on one call ([`PluginContext::with_call_timeout`]); `None` when the
    /// host waits as long as the plugin takes.
    pub fn call_timeout(&self) -> Option<Duration> {
        self.call_timeout
    }

    /// Executes another plugin by id from async code, through its actor.
    pub async fn call_plugin(&self, target: &str, input: String) -> PluginResult<String> {
        let caller = self.require_caller()?;
        caller
            .call(CallChain::current(), target.to_string(), input)
            .await
    }

    /// Executes another plugin by id from synchronous code running off the async workers
    /// (inside `tokio::task::block_in_place` or `spawn_blocking`), blocking this thread until
    /// the answer arrives.
    pub fn call_plugin_blocking(&self, target: &str, input: String) -> PluginResult<String> {
        let caller = self.require_caller()?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            PluginError::execution("call_plugin needs a tokio runtime; run the plugin inside one")
        })?;
        let call = caller.call(CallChain::current(), target.to_string(), input);
        handle.block_on(call)
    }

    /// [`PluginContext::call_plugin_blocking`] waiting at most `limit` for the answer (a
    /// timeout error past it; the other plugin's call is abandoned, as a manager's timeout
    /// abandons it).
    pub fn call_plugin_blocking_within(
        &self,
        target: &str,
        input: String,
        limit: Option<Duration>,
    ) -> PluginResult<String> {
        let Some(limit) = limit else {
            return self.call_plugin_blocking(target, input);
        };
        let caller = self.require_caller()?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            PluginError::execution("call_plugin needs a tokio runtime; run the plugin inside one")
        })?;
        let call = caller.call(CallChain::current(), target.to_string(), input);
        handle
            .block_on(async { tokio::time::timeout(limit, call).await })
            .unwrap_or_else(|_| {
                Err(PluginError::Timeout {
                    id: target.to_string(),
                    after: limit,
                })
            })
    }

    fn require_caller(&self) -> PluginResult<&Arc<dyn PluginCaller>> {
        self.caller.as_ref().ok_or_else(|| {
            PluginError::execution(format!(
                "plugin `{}` cannot call other plugins: it is not hosted by a PluginManager",
                self.plugin_id
            ))
        })
    }
}

/// Runs synchronous, CPU-bound plugin work without stalling the async workers, keeping the
/// current call chain visible to `call_plugin_blocking`.
///
/// On a multi-thread runtime this is `block_in_place` (no hand-off: the worker's other tasks
/// move to another worker while this one runs the script). On a current-thread runtime, where
/// `block_in_place` is not allowed, it runs on the blocking pool via `spawn_blocking`.
///
/// Inside a [`HandOffBlocking`] scope (a host polling a call once before deciding whether it
/// waits) the work goes to the blocking pool in every runtime, so the poll returns at once.
pub async fn run_blocking<R, F>(f: F) -> PluginResult<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let chain = CallChain::current();
    match tokio::runtime::Handle::try_current() {
        Ok(handle)
            if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
                && !HAND_OFF_BLOCKING.get() =>
        {
            Ok(tokio::task::block_in_place(|| chain.scope_blocking(f)))
        }
        Ok(_) => on_blocking_pool(chain, f).await,
        Err(_) => Ok(chain.scope_blocking(f)),
    }
}

thread_local! {
    /// Set while a host polls a call that must not block its thread ([`HandOffBlocking`]).
    static HAND_OFF_BLOCKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While alive, [`run_blocking`] on this thread hands its work to the blocking pool instead of
/// running it in place (`block_in_place`), so that polling a plugin's call returns at once
/// even when the call runs a long script. A host that serves several calls of one plugin at
/// once polls each new call once in such a scope: a call that answers on that poll is done,
/// one that waits (on the blocking pool, a model, another plugin) moves to a task of its own
/// and the host goes on. Hold it only around a synchronous poll, never across an `.await`
/// that may suspend: it marks the thread, not the task.
#[derive(Debug)]
pub struct HandOffBlocking {
    was: bool,
}

impl HandOffBlocking {
    /// Marks this thread until the value is dropped.
    pub fn enter() -> Self {
        Self {
            was: HAND_OFF_BLOCKING.replace(true),
        }
    }
}

impl Drop for HandOffBlocking {
    fn drop(&mut self) {
        HAND_OFF_BLOCKING.set(self.was);
    }
}

/// Runs synchronous plugin work on a thread of the runtime's blocking pool and awaits it, so the
/// await can be abandoned: a caller whose timeout fires (an agent's hop timeout, a manager's
/// execute timeout) drops this future and moves on, while the thread finishes the work on its
/// own (a WASI call blocked on a read or a sleep cannot be interrupted, only left behind). The
/// current call chain stays visible to the work, as in [`run_blocking`]. Outside a tokio runtime
/// the work runs on the calling thread.
///
/// Unlike [`run_blocking`] on a multi-thread runtime (`block_in_place`, which holds the calling
/// task until the work returns), this hands the work to another thread; the hand-off costs about
/// as much as `block_in_place`'s.
pub async fn run_detached<R, F>(f: F) -> PluginResult<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let chain = CallChain::current();
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(chain.scope_blocking(f));
    }
    on_blocking_pool(chain, f).await
}

/// `f` on a thread of the runtime's blocking pool, inside `chain`; a panic in it goes on
/// unwinding in the caller, as if `f` had run there.
async fn on_blocking_pool<R, F>(chain: CallChain, f: F) -> PluginResult<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(move || chain.scope_blocking(f))
        .await
        .map_err(|e| {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic())
            } else {
                PluginError::execution("blocking plugin work was cancelled")
            }
        })
}
