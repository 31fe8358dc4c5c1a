//! One CPU-bound test at a time: the tests that keep a core busy for a while (spinning guests and
//! scripts, bombs, the import fuzzer) and the tests that measure how long something takes on a
//! busy core (slices, stalls, wall-clock limits) take this lock, so no two of them share the
//! machine's two cores.
//!
//! Why: they were written as files of their own, each run beside its own siblings only. In one
//! binary any two tests may run side by side, and a timing test beside a spinning one from
//! another area misses its bound (shown with the old per-file binaries too, when a CPU-bound
//! one ran beside them). The lock keeps every timing test as it was: never beside a hog.

use tokio::sync::{Mutex, MutexGuard};

static CPU: Mutex<()> = Mutex::const_new(());

/// Holds the lock for a synchronous test (not inside a runtime).
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    CPU.blocking_lock()
}

/// Holds the lock for an async test.
pub async fn one_at_a_time_async() -> MutexGuard<'static, ()> {
    CPU.lock().await
}
