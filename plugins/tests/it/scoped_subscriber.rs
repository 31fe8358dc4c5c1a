//! A tracing subscriber for the calling thread only, for the tests that read what a plugin logs
//! (`tracing::subscriber::with_default`, made safe for a binary whose tests share the process).
//!
//! tracing caches whether a callsite is wanted, process-wide, when the callsite is first
//! reached. While a single subscriber is registered it asks only the subscriber of the thread
//! reaching it, so a callsite first reached by another test (no subscriber on its thread) would
//! stay unwanted for good, and the test's subscriber would never see it. With a second
//! subscriber registered for the life of the process (one that wants nothing), tracing asks
//! every registered subscriber, and each thread's own decides.

use std::sync::OnceLock;

use tracing::dispatcher::Dispatch;
use tracing::subscriber::NoSubscriber;
use tracing::Subscriber;

/// Runs `f` with `subscriber` as this thread's subscriber.
pub fn with_default<T>(
    subscriber: impl Subscriber + Send + Sync + 'static,
    f: impl FnOnce() -> T,
) -> T {
    static BYSTANDER: OnceLock<Dispatch> = OnceLock::new();
    BYSTANDER.get_or_init(|| Dispatch::new(NoSubscriber::default()));
    tracing::subscriber::with_default(subscriber, f)
}
