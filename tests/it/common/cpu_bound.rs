//! One timing test at a time: the tests that measure how long something takes (a workload that
//! should finish in about its ideal time, a bound on a wait) take this lock, so that no two of
//! them share the machine's two cores and each one's bound is about its own work. The kernel's
//! integration tests have the same lock (plugins/tests/it/cpu_bound.rs), for the same reason:
//! in one test binary any two tests may run side by side.

use tokio::sync::{Mutex, MutexGuard};

static CPU: Mutex<()> = Mutex::const_new(());

/// Holds the lock for an async test.
pub async fn one_at_a_time() -> MutexGuard<'static, ()> {
    CPU.lock().await
}
