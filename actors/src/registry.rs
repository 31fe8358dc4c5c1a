//! What the manager knows about each plugin without asking its actor: the actor's address,
//! the metadata (with the version serving, which a hot reload swap replaces), a lock-free
//! mirror of the lifecycle state, call statistics, and the plugin's host-owned state store.
//!
//! Reading these never waits behind a busy plugin, so listing plugins stays instant even when
//! one of them is stuck in a long call.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bilayer_plugins::{PluginMetadata, PluginState, PluginStateStore};
use ractor::ActorRef;
use serde::Serialize;

use crate::plugin_actor::PluginMsg;

/// The lifecycle state's compact encoding, for the lock-free mirror in [`PluginShared`].
fn state_code(state: PluginState) -> u8 {
    match state {
        PluginState::Unloaded => 0,
        PluginState::Loading => 1,
        PluginState::Loaded => 2,
        PluginState::Running => 3,
        PluginState::Paused => 4,
        PluginState::Error => 5,
        PluginState::Untracked => 6,
    }
}

/// Inverse of [`state_code`]; unknown codes read as `Error`.
fn state_from_code(code: u8) -> PluginState {
    match code {
        0 => PluginState::Unloaded,
        1 => PluginState::Loading,
        2 => PluginState::Loaded,
        3 => PluginState::Running,
        4 => PluginState::Paused,
        6 => PluginState::Untracked,
        _ => PluginState::Error,
    }
}

/// The registry entry of one plugin.
#[derive(Clone)]
pub(crate) struct PluginSlot {
    pub actor: ActorRef<PluginMsg>,
    pub shared: Arc<PluginShared>,
}

/// State shared between a plugin's actor (writer) and the manager (reader).
pub(crate) struct PluginShared {
    pub id: Arc<str>,
    /// Registration order; `rest_for_one` restarts the plugins registered after the failed one.
    pub order: u64,
    pub metadata: RwLock<PluginMetadata>,
    state: AtomicU8,
    pub stats: PluginStats,
    /// The store the serving version uses (a swap without preserved state replaces it).
    store: RwLock<PluginStateStore>,
}

impl PluginShared {
    pub(crate) fn new(metadata: PluginMetadata, order: u64, store: PluginStateStore) -> Self {
        Self {
            id: metadata.id.as_str().into(),
            order,
            metadata: RwLock::new(metadata),
            state: AtomicU8::new(state_code(PluginState::Unloaded)),
            stats: PluginStats::default(),
            store: RwLock::new(store),
        }
    }

    pub(crate) fn state(&self) -> PluginState {
        state_from_code(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, state: PluginState) {
        self.state.store(state_code(state), Ordering::Release);
    }

    pub(crate) fn metadata(&self) -> PluginMetadata {
        self.metadata
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the metadata (a swap to another version), keeping the registered id.
    pub(crate) fn set_metadata(&self, mut metadata: PluginMetadata) {
        metadata.id = self.id.to_string();
        *self
            .metadata
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = metadata;
    }

    /// The version serving the plugin's calls.
    pub(crate) fn version(&self) -> String {
        self.metadata
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .version
            .clone()
    }

    pub(crate) fn store(&self) -> PluginStateStore {
        self.store
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(crate) fn set_store(&self, store: PluginStateStore) {
        *self
            .store
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = store;
    }

    pub(crate) fn info(&self) -> PluginInfo {
        PluginInfo {
            metadata: self.metadata(),
            state: self.state(),
            stats: self.stats.snapshot(),
        }
    }
}

/// Counters of one plugin's calls, updated with relaxed atomics on the hot path.
///
/// `calls`, `errors`, `busy_nanos` and `max_nanos` have one writer, the plugin's actor (it
/// handles one message at a time, and a restart or swap happens inside that same actor), so
/// [`PluginStats::record_call`] updates them with plain loads and stores rather than locked
/// read-modify-writes (cheaper on every call: docs/benchmarks.md, section "Costs behind
/// design choices in the code"); readers still see whole values. The counters callers write
/// (`timeouts`) and the rare ones use read-modify-writes.
#[derive(Default)]
pub(crate) struct PluginStats {
    calls: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
    timeouts: AtomicU64,
    restarts: AtomicU32,
    busy_nanos: AtomicU64,
    max_nanos: AtomicU64,
}

impl PluginStats {
    /// Counts one call; only the plugin's actor calls this (see the type's docs).
    pub(crate) fn record_call(&self, elapsed: Duration, ok: bool) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let add = |counter: &AtomicU64, n: u64| {
            counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            )
        };
        add(&self.calls, 1);
        if !ok {
            add(&self.errors, 1);
        }
        add(&self.busy_nanos, nanos);
        if nanos > self.max_nanos.load(Ordering::Relaxed) {
            self.max_nanos.store(nanos, Ordering::Relaxed);
        }
    }

    pub(crate) fn record_panic(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_timeout(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one restart and returns the total.
    pub(crate) fn record_restart(&self) -> u32 {
        self.restarts.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> PluginStatsSnapshot {
        let calls = self.calls.load(Ordering::Relaxed);
        let busy = self.busy_nanos.load(Ordering::Relaxed);
        PluginStatsSnapshot {
            calls,
            errors: self.errors.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            mean_latency: Duration::from_nanos(busy.checked_div(calls).unwrap_or(0)),
            max_latency: Duration::from_nanos(self.max_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// A point-in-time copy of a plugin's call statistics. Latencies are the plugin's own
/// execution time inside its actor (not the queueing before it), in nanosecond resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PluginStatsSnapshot {
    /// Executions that reached the plugin (successful or not).
    pub calls: u64,
    /// Executions that returned an error (panics included).
    pub errors: u64,
    /// Of those, the ones that panicked.
    pub panics: u64,
    /// Calls whose caller gave up waiting (the execute timeout).
    pub timeouts: u64,
    /// Times the supervisor restarted the plugin.
    pub restarts: u32,
    /// Mean execution time over `calls`.
    pub mean_latency: Duration,
    /// Longest execution time seen.
    pub max_latency: Duration,
}

/// One row of `PluginManager::list()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginInfo {
    /// The metadata of the version serving.
    pub metadata: PluginMetadata,
    /// Its lifecycle state, as the host tracks it.
    pub state: PluginState,
    /// Its call statistics.
    pub stats: PluginStatsSnapshot,
}

#[cfg(test)]
mod tests {
    use super::{state_code, state_from_code};
    use bilayer_plugins::PluginState;

    /// Every state survives the registry's compact encoding, the one a plugin reports of
    /// itself when it leaves its lifecycle to the host included.
    #[test]
    fn every_state_reads_back_from_its_code() {
        for state in [
            PluginState::Unloaded,
            PluginState::Loading,
            PluginState::Loaded,
            PluginState::Running,
            PluginState::Paused,
            PluginState::Error,
            PluginState::Untracked,
        ] {
            assert_eq!(state_from_code(state_code(state)), state);
        }
    }
}
