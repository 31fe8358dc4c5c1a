//! Hot reload inside the plugin actor: a new version swapped in between two messages, the last
//! known-good version kept while the new one is on probation, and the rollback to it.
//!
//! The swap is a message like any other ([`PluginMsg::Swap`](super::PluginMsg::Swap)), so
//! every message before it is served by the old version and every message after it by the new
//! one. The new instance is loaded, initialised and started before the old one is touched; if
//! any of that fails (or the state migration does), the old version keeps serving as if
//! nothing happened. The old instance is then stopped and unloaded, and kept (with its factory,
//! metadata and state store) as the known-good version until the new one has served through
//! the failure window of its [`RollbackPolicy`] without more than `max_failures` faults.
//!
//! Which version is known-good: the rollback goes to the newest version that served. A version
//! replaced while still on probation becomes the known-good one if it answered at least one
//! message and had no fault; otherwise (it failed, or served nothing to judge it by) the
//! known-good version before it stays. Saves a second apart under load each prove themselves
//! this way, so a bad save after good ones goes back to the last good one, not to the version
//! the run started with. The messages the bad version failed are run again there (replay.rs).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bilayer_plugins::hot_reload::{
    ReloadEvent, ReloadEventSink, Replacement, RollbackPolicy, StateHandover, SwapReport,
};
use bilayer_plugins::{
    AgentPlugin, CallError, PluginContext, PluginError, PluginMetadata, PluginResult, PluginState,
    PluginStateStore,
};
use serde_json::{Map, Value};

use super::replay::Held;
use super::{guarded, panic_message, LifecycleStep, PluginActorState, PluginFactory};
use crate::registry::PluginStats;
use crate::supervisor::SupervisorMsg;

/// A new version on trial, and what to go back to.
pub(super) struct Probation {
    pub(super) since: Instant,
    pub(super) policy: RollbackPolicy,
    failures: u32,
    /// The plugin's successful answers before the swap: more at the next swap, and no fault,
    /// and this version served (see the module docs).
    answered_before: u64,
    known_good: Generation,
    events: Option<ReloadEventSink>,
    /// The messages this version failed, waiting for its verdict (replay.rs).
    pub(super) held: VecDeque<Held>,
}

impl Probation {
    pub(super) fn is_over(&self) -> bool {
        self.since.elapsed() > self.policy.window
    }

    /// Whether this version served without a fault: it answered messages and failed none.
    fn served_without_fault(&self, stats: &PluginStats) -> bool {
        self.failures == 0 && answered_ok(stats) > self.answered_before
    }
}

/// How many calls and hops the plugin has answered successfully, all versions together.
fn answered_ok(stats: &PluginStats) -> u64 {
    let stats = stats.snapshot();
    stats.calls.wrapping_sub(stats.errors)
}

/// A version the actor can go back to.
struct Generation {
    plugin: Box<dyn AgentPlugin>,
    factory: Option<PluginFactory>,
    metadata: PluginMetadata,
    store: PluginStateStore,
    /// The state to put back into `store`: set when a migration rewrote that store after this
    /// version left it.
    restore: Option<Map<String, Value>>,
}

impl PluginActorState {
    /// Replaces the serving version by `replacement` (see the module docs).
    pub(super) async fn swap(&mut self, replacement: Replacement) -> PluginResult<SwapReport> {
        let Replacement {
            mut plugin,
            preserve_state,
            migration,
            rollback,
            events,
        } = replacement;
        let id = self.shared.id.clone();
        let previous_version = self.version.to_string();
        let metadata = plugin.metadata().clone();
        let version = metadata.version.clone();

        let old_store = self.ctx.state().clone();
        let store = if preserve_state {
            old_store.clone()
        } else {
            old_store.fresh()
        };
        let mut handover = if preserve_state {
            StateHandover::Preserved
        } else {
            StateHandover::Fresh
        };
        let mut restore = None;
        if let Some(migrate) = migration.filter(|_| preserve_state) {
            let old = store.snapshot();
            let migrated = std::panic::catch_unwind(AssertUnwindSafe(|| {
                migrate(plugin.as_ref(), old.clone())
            }))
            .unwrap_or_else(|panic| {
                Err(PluginError::Panicked {
                    id: id.to_string(),
                    message: panic_message(panic.as_ref()),
                })
            })
            .map_err(|e| {
                PluginError::execution(format!(
                    "the state migration of version {version} of plugin `{id}` failed ({e}); \
                     version {previous_version} keeps serving with its state unchanged"
                ))
            })?;
            store.replace(migrated).map_err(|e| {
                PluginError::execution(format!(
                    "the state migration of version {version} of plugin `{id}` produced a \
                     state over its limit ({e}); version {previous_version} keeps serving"
                ))
            })?;
            restore = Some(old);
            handover = StateHandover::Migrated;
        }

        let ctx = self.ctx.clone().with_state(store.clone());
        let goal = self.target;
        if let Err(error) = bring_up(&id, plugin.as_mut(), &ctx, goal).await {
            if let Some(old) = restore {
                store.restore(old);
            }
            tracing::warn!(plugin = %id, %version, %error, "new version failed to start; the old one keeps serving");
            return Err(error);
        }

        let mut old_plugin = std::mem::replace(&mut self.plugin, plugin);
        let old_factory = self.factory.take();
        let old_metadata = self.shared.metadata();
        // Hops and calls of the old version still running on its siblings finish on it: what
        // they share is released when the last returns, through a sibling of their own
        // (overlap.rs), and the old instance is kept for a rollback as it is.
        match old_plugin
            .concurrent_instance()
            .filter(|_| self.overlap.current_generation_running())
        {
            Some(handle) => self.overlap.retire(handle, self.lifecycle),
            None => tear_down(&id, old_plugin.as_mut(), self.lifecycle).await,
        }
        self.overlap.renew();
        self.ctx = ctx;
        self.shared.set_store(store.clone());
        self.shared.set_metadata(metadata);
        self.version = Arc::from(version.as_str());
        self.set_lifecycle(goal);

        // Whatever the replaced version still held is answered with its failures here: it is
        // not rolled back, so nothing would run those messages again.
        let known_good = match self.probation.take() {
            // The version just replaced never proved itself: keep the one before it.
            Some(probation)
                if !probation.is_over() && !probation.served_without_fault(&self.shared.stats) =>
            {
                let mut known_good = probation.known_good;
                if known_good.restore.is_none() && known_good.store.same_store(&old_store) {
                    known_good.restore = restore;
                }
                known_good
            }
            _ => Generation {
                plugin: old_plugin,
                factory: old_factory,
                metadata: old_metadata,
                store: old_store,
                restore,
            },
        };
        self.probation = rollback.map(|policy| Probation {
            since: Instant::now(),
            policy,
            failures: 0,
            answered_before: answered_ok(&self.shared.stats),
            known_good,
            events,
            held: VecDeque::new(),
        });
        if let Some(probation) = &self.probation {
            // Ends the probation when its window has passed, so that the hot path stops
            // keeping copies of messages for a replay.
            let _armed = self.review_after(
                probation
                    .policy
                    .window
                    .saturating_add(Duration::from_millis(1)),
            );
        }
        let _ = self.supervisor.send_message(SupervisorMsg::VersionChanged {
            id: id.to_string(),
            from: previous_version.clone(),
            to: version.clone(),
            rolled_back: false,
        });
        tracing::info!(plugin = %id, from = %previous_version, to = %version, state = ?handover, "swapped");
        Ok(SwapReport {
            plugin_id: id.to_string(),
            previous_version,
            version,
            state: handover,
        })
    }

    /// Counts a fault (panic, trap, limit, runtime error, timeout) of a version on probation,
    /// and rolls it back once it has more than its policy allows. True when it was rolled back.
    ///
    /// `failed` is the message that failed, when it can be run again (it came in during the
    /// probation): it is held for the verdict, or run again on the version rolled back to.
    /// Otherwise (no probation, or its window has passed) it drops, answered with its failure.
    pub(super) async fn on_fault(&mut self, failed: Option<Held>, error: &CallError) -> bool {
        let Some(probation) = self.probation.as_mut() else {
            return false;
        };
        if probation.is_over() {
            // Served through its window: the new version is the known-good one now.
            self.probation = None;
            return false;
        }
        probation.failures += 1;
        let failures = probation.failures;
        let allowed = probation.policy.max_failures;
        let window = probation.policy.window;
        if let Some(events) = &probation.events {
            events.emit(ReloadEvent::ReloadFailed {
                plugin_id: self.shared.id.to_string(),
                error: PluginError::from(error.clone()),
                attempt: failures,
            });
        }
        if failures <= allowed {
            if let Some(failed) = failed {
                self.hold(failed);
            }
            return false;
        }
        if let Some(failed) = failed {
            // Run again right after the rollback, with those held before it.
            probation.held.push_back(failed);
        }
        let reason = format!(
            "version {} failed {failures} times within {window:?} of its swap (at most {allowed} \
             allowed); last failure: {error}",
            self.version
        );
        self.roll_back(reason).await
    }

    /// Whether a version on probation could be rolled back (the supervisor gave up on it).
    pub(super) fn on_probation(&self) -> bool {
        self.probation
            .as_ref()
            .is_some_and(|probation| !probation.is_over())
    }

    /// Puts the known-good version back in service and runs the messages the failing version
    /// failed again on it. True when it serves again (if it does not, the held messages are
    /// answered with their failures).
    pub(super) async fn roll_back(&mut self, reason: String) -> bool {
        let Some(mut probation) = self.probation.take() else {
            return false;
        };
        let held = std::mem::take(&mut probation.held);
        let id = self.shared.id.clone();
        let from = self.version.to_string();
        let Generation {
            plugin,
            factory,
            metadata,
            store,
            restore,
        } = probation.known_good;
        tear_down(&id, self.plugin.as_mut(), self.lifecycle).await;
        // The known-good version comes back and takes its resources again: a release still
        // pending for siblings of it or of the failed one must not undo that (overlap.rs).
        self.overlap.forget_retiring();
        self.overlap.mark_rolled_back();
        if let Some(state) = restore {
            store.restore(state);
        }
        self.plugin = match &factory {
            Some(factory) => factory(),
            None => plugin,
        };
        self.factory = factory;
        self.ctx = self.ctx.clone().with_state(store.clone());
        self.shared.set_store(store);
        let to = metadata.version.clone();
        self.shared.set_metadata(metadata);
        self.version = Arc::from(to.as_str());
        self.set_lifecycle(PluginState::Unloaded);
        let goal = self.target;
        let mut result = Ok(());
        for step in [LifecycleStep::Load, LifecycleStep::Start] {
            if self.lifecycle == goal {
                break;
            }
            result = self.step(step).await;
            if result.is_err() {
                break;
            }
        }
        if let Err(error) = result {
            tracing::error!(plugin = %id, %to, %error, "rollback failed: the known-good version did not start");
            self.set_lifecycle(PluginState::Error);
            if let Some(events) = &probation.events {
                events.emit(ReloadEvent::ReloadFailed {
                    plugin_id: id.to_string(),
                    error,
                    attempt: probation.failures,
                });
            }
            // `held` drops here: each message is answered with the failure it had.
            return false;
        }
        let replayed = u32::try_from(held.len()).unwrap_or(u32::MAX);
        tracing::warn!(plugin = %id, %from, %to, %reason, replayed, "rolled back");
        let _ = self.supervisor.send_message(SupervisorMsg::VersionChanged {
            id: id.to_string(),
            from: from.clone(),
            to: to.clone(),
            rolled_back: true,
        });
        if let Some(events) = &probation.events {
            events.emit(ReloadEvent::RolledBack {
                plugin_id: id.to_string(),
                from_version: from,
                to_version: to,
                reason,
                replayed,
            });
        }
        self.replay(held).await;
        true
    }
}

/// Brings a new instance to `goal` (Unloaded, Loaded or Running) on `ctx`; on failure, unloads
/// what was loaded.
async fn bring_up(
    id: &str,
    plugin: &mut dyn AgentPlugin,
    ctx: &PluginContext,
    goal: PluginState,
) -> PluginResult<()> {
    if goal == PluginState::Unloaded {
        return Ok(());
    }
    guarded(id, plugin.load(ctx)).await?;
    let mut started = guarded(id, plugin.init_plugin()).await;
    if started.is_ok() && goal == PluginState::Running {
        started = guarded(id, plugin.start()).await;
    }
    if started.is_err() {
        let _ = guarded(id, plugin.unload()).await;
    }
    started
}

/// Stops and unloads an instance going out of service, as far as its state calls for; its
/// failures are logged, never passed on (the instance is leaving either way).
pub(super) async fn tear_down(id: &str, plugin: &mut dyn AgentPlugin, state: PluginState) {
    if state == PluginState::Running {
        if let Err(error) = guarded(id, plugin.stop()).await {
            tracing::warn!(plugin = %id, %error, "stopping the replaced version failed");
        }
    }
    if matches!(state, PluginState::Running | PluginState::Loaded) {
        if let Err(error) = guarded(id, plugin.unload()).await {
            tracing::warn!(plugin = %id, %error, "unloading the replaced version failed");
        }
    }
}
