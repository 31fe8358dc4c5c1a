//! Speculative inline calls: a guest call runs first on the calling thread, for at most a short
//! slice, and moves to a blocking thread only when it turns out to need one.
//!
//! Why: handing every call to [`run_blocking`](crate::run_blocking) on a multi-thread runtime
//! (`block_in_place` moves the worker's queue to another thread and back) costs more than most
//! guest calls (docs/benchmarks.md, section "Costs behind design choices in the code"). But a guest
//! may spin until its deadline, and an async worker must never be held for a whole timeout. So the
//! first attempt runs inline under [`INLINE_SLICE`]: the engine's epoch callback ends it once the
//! slice is over, and any host import that could block or has an effect outside the instance
//! (`log`, `state_set`, `call_plugin`) ends it at that import, before the effect. An attempt that
//! ended that way has changed nothing outside its own instance, so the call is run again, whole, on
//! a blocking thread with the full deadline. Results, errors, traps and limits of an attempt that
//! ran to its end are final: those are deterministic.
//!
//! What a speculative attempt costs when it has to leave: up to one slice (plus one epoch
//! tick) of wasted guest time, and for [`InstanceMode::Reuse`](super::InstanceMode::Reuse) the
//! warm instance (it is rebuilt, as after any trap). [`InlinePolicy`] keeps that rare: after an
//! attempt leaves, the plugin's next calls go straight to a blocking thread, twice as many each
//! time (16 up to 4096), and the count halves again after each attempt that finishes inline.
//!
//! The state is thread-local: a guest call is synchronous, so the epoch callback and the host
//! imports it triggers run on the thread that started the attempt.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;

/// How long a guest may run on the calling thread before the call moves to a blocking thread.
/// The epoch ticker checks it, so the slice really ends within one tick after this.
pub(crate) const INLINE_SLICE: Duration = Duration::from_millis(2);

/// Calls sent straight to a blocking thread after the first attempt that had to leave.
const FIRST_PENALTY: u32 = 16;
/// The most calls sent straight to a blocking thread after an attempt that had to leave.
const MAX_PENALTY: u32 = 4096;

thread_local! {
    /// When the running attempt's slice ends; `None` when no attempt runs on this thread.
    static SLICE_ENDS: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Set when the running attempt had to leave (slice over, or a blocking import).
    static LEFT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `attempt` as a speculative inline call: `Some(result)` when it ran to its end on this
/// thread, `None` when it had to leave (its result is then meaningless and dropped).
pub(crate) fn attempt<R>(slice: Duration, attempt: impl FnOnce() -> R) -> Option<R> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SLICE_ENDS.with(|ends| ends.set(None));
        }
    }
    LEFT.with(|left| left.set(false));
    SLICE_ENDS.with(|ends| ends.set(Some(Instant::now() + slice)));
    let _reset = Reset;
    let result = attempt();
    if LEFT.with(|left| left.replace(false)) {
        None
    } else {
        Some(result)
    }
}

/// Whether the current thread runs a speculative attempt.
pub(crate) fn active() -> bool {
    SLICE_ENDS.with(|ends| ends.get().is_some())
}

/// For a host import that blocks or has an effect outside the instance, called before it does
/// anything: inside an attempt, ends it with the error the import traps with (the call then runs
/// again on a blocking thread); outside one, `Ok`.
pub(crate) fn leave_if_active() -> wasmtime::Result<()> {
    if !active() {
        return Ok(());
    }
    LEFT.with(|left| left.set(true));
    Err(wasmtime::Error::msg(
        "the call leaves the inline slice and runs again on a blocking thread",
    ))
}

/// The epoch callback of every store: outside an attempt the deadline is the call's timeout,
/// so it traps (what a store without a callback does); inside one it extends the deadline a
/// tick at a time until the slice is over, then ends the attempt.
pub(crate) fn on_deadline() -> wasmtime::Result<UpdateDeadline> {
    match SLICE_ENDS.with(Cell::get) {
        None => Ok(UpdateDeadline::Interrupt),
        Some(ends) if Instant::now() < ends => Ok(UpdateDeadline::Continue(1)),
        Some(_) => {
            LEFT.with(|left| left.set(true));
            Ok(UpdateDeadline::Interrupt)
        }
    }
}

/// When a plugin's calls try the inline path (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct InlinePolicy {
    /// Calls still to send straight to a blocking thread.
    skip: AtomicU32,
    /// What `skip` is set to the next time an attempt has to leave (0: [`FIRST_PENALTY`]).
    penalty: AtomicU32,
}

impl InlinePolicy {
    /// Whether this call should try the inline path; counts down a pending penalty.
    pub(super) fn should_try(&self) -> bool {
        let mut skip = self.skip.load(Ordering::Relaxed);
        while skip > 0 {
            match self.skip.compare_exchange_weak(
                skip,
                skip - 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return false,
                Err(now) => skip = now,
            }
        }
        true
    }

    /// An attempt had to leave: skip the inline path for the next calls, longer each time.
    pub(super) fn left(&self) {
        let penalty = match self.penalty.load(Ordering::Relaxed) {
            0 => FIRST_PENALTY,
            n => n.saturating_mul(2).min(MAX_PENALTY),
        };
        self.penalty.store(penalty, Ordering::Relaxed);
        self.skip.store(penalty, Ordering::Relaxed);
    }

    /// An attempt finished inline: forgive half of the penalty.
    pub(super) fn finished(&self) {
        let penalty = self.penalty.load(Ordering::Relaxed);
        if penalty > 0 {
            self.penalty.store(penalty / 2, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_that_does_not_leave_returns_its_result_and_clears_the_thread() {
        assert_eq!(attempt(INLINE_SLICE, || 7), Some(7));
        assert!(!active());
    }

    #[test]
    fn an_attempt_that_leaves_returns_none() {
        let result = attempt(INLINE_SLICE, || {
            assert!(active());
            assert!(leave_if_active().is_err());
            8
        });
        assert!(
            leave_if_active().is_ok(),
            "outside an attempt nothing leaves"
        );
        assert_eq!(result, None);
        assert!(!active());
        assert_eq!(
            attempt(INLINE_SLICE, || 9),
            Some(9),
            "the next attempt starts clean"
        );
    }

    #[test]
    fn the_deadline_callback_traps_outside_an_attempt_and_extends_inside_one() {
        assert!(matches!(on_deadline(), Ok(UpdateDeadline::Interrupt)));
        let inside = attempt(Duration::from_secs(60), on_deadline).unwrap();
        assert!(matches!(inside, Ok(UpdateDeadline::Continue(1))));
        let over = attempt(Duration::ZERO, on_deadline);
        assert!(over.is_none(), "a slice that is over ends the attempt");
    }

    #[test]
    fn the_policy_backs_off_longer_each_time_and_forgives_on_success() {
        let policy = InlinePolicy::default();
        assert!(policy.should_try());
        policy.left();
        let skipped = (0..100).take_while(|_| !policy.should_try()).count();
        assert_eq!(skipped, FIRST_PENALTY as usize);
        policy.left();
        let skipped = (0..100).take_while(|_| !policy.should_try()).count();
        assert_eq!(skipped, 2 * FIRST_PENALTY as usize);
        policy.finished();
        policy.finished();
        policy.left();
        let skipped = (0..100).take_while(|_| !policy.should_try()).count();
        assert_eq!(
            skipped, FIRST_PENALTY as usize,
            "32, halved twice to 8, doubled to 16"
        );
    }
}
