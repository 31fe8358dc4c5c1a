//! Exactly-once effects in durable runs, as the plugin kernel sees them.
//!
//! In an agent system with a journal (a store: `[durability]`, `--store`), every agent hop
//! runs with a [`HopJournal`] in its call chain. The host records through it each call the hop
//! makes to another plugin (`call_plugin` from Rhai or WASM, [`PluginContext::call_plugin`]
//! from native code) and each named [`step`]; when a hop runs again (a resume after a crash, a
//! NATS redelivery after a worker died), what the journal already holds is answered from it
//! instead of being done again. Outside a durable run there is no journal, and [`step`] just
//! runs its future.
//!
//! Calls and steps are keyed by their order within the hop (`call:0`, `call:1`,
//! `step:charge-card#0`), so a hop replays to the same keys only if it makes the same calls in
//! the same order: a script should not branch on the clock or on randomness before a call.
//! (Hops that completed are never run again, whatever they read: a resumed run continues from
//! its last recorded hop.) A recorded call whose target differs from the one now made is not
//! used: the call is made, and the mismatch logged.
//!
//! [`PluginContext::call_plugin`]: crate::PluginContext::call_plugin

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::CallChain;
use crate::{PluginError, PluginResult};

/// What a call or step of a hop is, for its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalKey<'a> {
    /// A call of another plugin (`call:N`, the hop's N-th).
    Call,
    /// A named step (`step:NAME#K`, the K-th step of that name in the hop).
    Step(&'a str),
}

/// The journal of one agent hop of a durable run, implemented by the host (the actor layer).
pub trait HopJournal: Send + Sync + std::fmt::Debug + 'static {
    /// The key of the hop's next call or step (counts them).
    fn next_key(&self, kind: JournalKey<'_>) -> String;

    /// What the journal holds for `key`, if the hop made that call (of `target`) before:
    /// `Ok` with the text it answered, or `Err` with why it failed.
    fn recorded(&self, key: &str, target: &str) -> Option<Result<String, String>>;

    /// Records what the call or step `key` of `target` ended in.
    fn record(&self, key: String, target: &str, result: Result<&str, &str>, elapsed: Duration);
}

/// Runs `effect` once per durable run, hop and step: in a durable run, the first time its
/// result (or error) is journaled under `name`; when the hop runs again after a crash, the
/// journaled result is returned and `effect` is not run. Outside a durable run it just runs
/// `effect`.
///
/// The result travels as JSON, so `T` is serialisable; an error comes back, on replay, as a
/// [`PluginError::Execution`] with the original error's text.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> bilayer_plugins::PluginResult<()> {
/// let receipt: String = bilayer_plugins::step("charge-card", async {
///     // ... call the payment provider once ...
///     Ok("rcpt-42".to_string())
/// })
/// .await?;
/// assert_eq!(receipt, "rcpt-42");
/// # Ok(())
/// # }
/// ```
pub async fn step<T, F>(name: &str, effect: F) -> PluginResult<T>
where
    T: Serialize + DeserializeOwned,
    F: std::future::Future<Output = PluginResult<T>>,
{
    let chain = CallChain::current();
    let Some(hop) = chain.hop() else {
        return effect.await;
    };
    let key = hop.next_key(JournalKey::Step(name));
    if let Some(recorded) = hop.recorded(&key, name) {
        return match recorded {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                PluginError::execution(format!(
                    "the journaled result of step `{name}` ({key}) does not read back as its \
                     type: {e}"
                ))
            }),
            Err(error) => Err(PluginError::execution(error)),
        };
    }
    let started = Instant::now();
    let result = effect.await;
    let elapsed = started.elapsed();
    match &result {
        Ok(value) => {
            let text = serde_json::to_string(value).map_err(|e| {
                PluginError::execution(format!(
                    "the result of step `{name}` cannot be journaled as JSON: {e}"
                ))
            })?;
            hop.record(key, name, Ok(&text), elapsed);
        }
        Err(error) => hop.record(key, name, Err(&error.to_string()), elapsed),
    }
    result
}
