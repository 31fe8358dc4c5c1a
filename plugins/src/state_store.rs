//! A plugin's host-owned state: a JSON object that outlives the plugin instance, so restarts
//! and hot reloads can hand it to the next instance, and that cannot grow without bound.
//!
//! A script that stores something per message (`state.seen.push(msg.id)`) would otherwise grow
//! the process until it dies. The store counts its size as the bytes of its JSON text (keys and
//! values) and refuses a write that would take it past its limit
//! ([`DEFAULT_MAX_STATE_BYTES`]; `max_state_bytes` in a system definition's `[limits]`,
//! `PluginOptions::max_state_bytes` from Rust) with [`PluginError::LimitExceeded`]; the state
//! stays as it was. Only writes are counted, so each costs one walk of the value written (and
//! of the value it replaces), never of the whole state.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value};

use crate::{PluginError, PluginResult};

/// The default limit of one plugin's state, in bytes of JSON text (64 MiB).
pub const DEFAULT_MAX_STATE_BYTES: usize = 64 * 1024 * 1024;

/// A plugin's host-owned state (see the module docs). Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct PluginStateStore(Arc<StateCell>);

#[derive(Debug)]
struct StateCell {
    entries: Mutex<Entries>,
    max_bytes: AtomicUsize,
}

impl Default for StateCell {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            max_bytes: AtomicUsize::new(DEFAULT_MAX_STATE_BYTES),
        }
    }
}

#[derive(Debug, Default)]
struct Entries {
    map: Map<String, Value>,
    /// The JSON text size of `map`'s entries, kept up to date by every write.
    bytes: usize,
}

/// Read access to a locked store, as its map (see [`PluginStateStore::lock`]); writes go
/// through the store's methods, which keep its size counted.
#[derive(Debug)]
pub struct StateGuard<'a>(MutexGuard<'a, Entries>);

impl std::ops::Deref for StateGuard<'_> {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Self::Target {
        &self.0.map
    }
}

impl PluginStateStore {
    /// An empty store with the default limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store holding at most `max_bytes` of JSON text.
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        let store = Self::new();
        store.set_max_bytes(max_bytes);
        store
    }

    /// The most JSON text (bytes) the store holds; writes past it are refused.
    pub fn max_bytes(&self) -> usize {
        self.0.max_bytes.load(Ordering::Relaxed)
    }

    /// Changes the limit. What is stored already stays, even above a lowered limit; the next
    /// write that grows it is refused.
    pub fn set_max_bytes(&self, max_bytes: usize) {
        self.0.max_bytes.store(max_bytes, Ordering::Relaxed);
    }

    /// The size of the state now, in bytes of JSON text.
    pub fn bytes(&self) -> usize {
        self.entries().bytes
    }

    /// An empty store with the same limit (a reload that does not carry the state over).
    pub fn fresh(&self) -> Self {
        Self::with_max_bytes(self.max_bytes())
    }

    /// Locks the store for reading. A plugin that panicked while holding the lock does not
    /// poison it for the next instance: the data is JSON and always structurally valid.
    pub fn lock(&self) -> StateGuard<'_> {
        StateGuard(self.entries())
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.0
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value under `key`, if any (a copy).
    pub fn get(&self, key: &str) -> Option<Value> {
        self.entries().map.get(key).cloned()
    }

    /// Stores `value` under `key`, or refuses it (the state unchanged) when the state would
    /// pass its limit.
    pub fn set(&self, key: impl Into<String>, value: Value) -> PluginResult<()> {
        let key = key.into();
        let added = entry_bytes(&key, &value);
        let max = self.max_bytes();
        let mut entries = self.entries();
        let replaced = entries
            .map
            .get(&key)
            .map_or(0, |old| entry_bytes(&key, old));
        let total = entries.bytes - replaced + added;
        if total > max && total > entries.bytes {
            return Err(over_limit(&key, total, max));
        }
        entries.bytes = total;
        entries.map.insert(key, value);
        Ok(())
    }

    /// Stores `new` under `key` only if the key holds `expected` now (a missing key holds
    /// `null`), in one step no other writer can come between: `Ok(true)` when it stored,
    /// `Ok(false)` (the state unchanged) when the key held something else. Plugins serving
    /// several messages at once (`PluginOptions::concurrency`) read, compute and write back
    /// with it, and read again when it answers `false`: a plain `get` then `set` loses the
    /// writes made in between.
    ///
    /// ```
    /// use bilayer_plugins::PluginStateStore;
    /// use serde_json::json;
    ///
    /// let store = PluginStateStore::new();
    /// assert!(store.compare_and_set("count", &json!(null), json!(1))?);
    /// assert!(!store.compare_and_set("count", &json!(0), json!(5))?);
    /// assert_eq!(store.get("count"), Some(json!(1)));
    /// # Ok::<(), bilayer_plugins::PluginError>(())
    /// ```
    pub fn compare_and_set(
        &self,
        key: impl Into<String>,
        expected: &Value,
        new: Value,
    ) -> PluginResult<bool> {
        let key = key.into();
        let added = entry_bytes(&key, &new);
        let max = self.max_bytes();
        let mut entries = self.entries();
        let current = entries.map.get(&key);
        if current.unwrap_or(&Value::Null) != expected {
            return Ok(false);
        }
        let replaced = current.map_or(0, |old| entry_bytes(&key, old));
        let total = entries.bytes - replaced + added;
        if total > max && total > entries.bytes {
            return Err(over_limit(&key, total, max));
        }
        entries.bytes = total;
        entries.map.insert(key, new);
        Ok(true)
    }

    /// Replaces the value under `key` by what `update` makes of it (`None` when missing), in
    /// one step no other writer can come between, and returns the value stored. `update` runs
    /// with the store locked: it must not use the store itself. Refused like
    /// [`set`](Self::set) past the limit.
    pub fn update(
        &self,
        key: impl Into<String>,
        update: impl FnOnce(Option<&Value>) -> Value,
    ) -> PluginResult<Value> {
        let key = key.into();
        let max = self.max_bytes();
        let mut entries = self.entries();
        let current = entries.map.get(&key);
        let new = update(current);
        let replaced = current.map_or(0, |old| entry_bytes(&key, old));
        let total = entries.bytes - replaced + entry_bytes(&key, &new);
        if total > max && total > entries.bytes {
            return Err(over_limit(&key, total, max));
        }
        entries.bytes = total;
        entries.map.insert(key, new.clone());
        Ok(new)
    }

    /// Removes `key`, returning what it held.
    pub fn remove(&self, key: &str) -> Option<Value> {
        let mut entries = self.entries();
        let removed = entries.map.remove(key)?;
        entries.bytes -= entry_bytes(key, &removed);
        Some(removed)
    }

    /// A copy of the whole state as a JSON object.
    pub fn snapshot(&self) -> Map<String, Value> {
        self.entries().map.clone()
    }

    /// Replaces the whole state, or refuses (the state unchanged) when the new one is over the
    /// limit.
    pub fn replace(&self, state: Map<String, Value>) -> PluginResult<()> {
        let total = state.iter().map(|(k, v)| entry_bytes(k, v)).sum();
        let max = self.max_bytes();
        if total > max {
            return Err(over_limit("", total, max));
        }
        *self.entries() = Entries {
            map: state,
            bytes: total,
        };
        Ok(())
    }

    /// Replaces the whole state whatever its size: for the host putting back a state it held
    /// before (a failed migration's rollback), which was within the limit when it was stored.
    pub fn restore(&self, state: Map<String, Value>) {
        let bytes = state.iter().map(|(k, v)| entry_bytes(k, v)).sum();
        *self.entries() = Entries { map: state, bytes };
    }

    /// Removes every entry.
    pub fn clear(&self) {
        *self.entries() = Entries::default();
    }

    /// True when both handles point at the same store.
    pub fn same_store(&self, other: &PluginStateStore) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What one entry counts: its key and value as JSON text.
fn entry_bytes(key: &str, value: &Value) -> usize {
    key.len() + json_len(value)
}

/// The length of `value`'s compact JSON text, counted without building it.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // A `Value` always serializes; the writer cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

fn over_limit(key: &str, total: usize, max: usize) -> PluginError {
    let what = if key.is_empty() {
        "the new state".to_string()
    } else {
        format!("state.{key}")
    };
    PluginError::LimitExceeded {
        limit: format!("max_state_bytes = {max}"),
        detail: format!(
            "{what} would take the plugin's state to {total} bytes of JSON; remove what it no \
             longer needs, or raise max_state_bytes ([limits] or the agent's [agents.limits] \
             in a system definition; PluginOptions::max_state_bytes from Rust)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_set_past_the_limit_is_refused_and_changes_nothing() {
        let store = PluginStateStore::with_max_bytes(100);
        store.set("a", json!("x".repeat(50))).unwrap();
        let before = store.bytes();
        let error = store.set("b", json!("y".repeat(60))).unwrap_err();
        assert!(
            error.to_string().contains("max_state_bytes = 100"),
            "{error}"
        );
        assert_eq!(store.bytes(), before);
        assert_eq!(store.get("b"), None);
        // Replacing a value by a smaller one, and removing, make room again.
        store.set("a", json!(1)).unwrap();
        store.set("b", json!("y".repeat(60))).unwrap();
        assert_eq!(store.remove("b"), Some(json!("y".repeat(60))));
        assert_eq!(store.bytes(), "a".len() + "1".len());
    }

    #[test]
    fn the_count_matches_the_json_text() {
        let store = PluginStateStore::new();
        store
            .set("k", json!({"list": [1, 2.5, "three"], "no": null}))
            .unwrap();
        store.set("k", json!([true])).unwrap();
        assert_eq!(store.bytes(), "k".len() + "[true]".len());
        store.replace(Map::new()).unwrap();
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn a_store_already_over_a_lowered_limit_may_still_shrink() {
        let store = PluginStateStore::new();
        store.set("big", json!("z".repeat(1000))).unwrap();
        store.set_max_bytes(10);
        store.set("big", json!("z".repeat(500))).unwrap();
        assert!(store.set("more", json!(1)).is_err());
    }
}
