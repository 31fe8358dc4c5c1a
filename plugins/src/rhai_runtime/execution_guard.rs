//! Per-call limits enforced from Rhai's progress hook: wall clock, native stack, and the
//! call's total operation count.
//!
//! Rhai counts operations itself (`max_operations`), but knows neither time nor how much of
//! the thread's stack it has used, and its count restarts for every closure an array or map
//! method calls (`map`, `filter`, `reduce`...: each such call runs on a copy of the counter),
//! so `a.map(|x| b.map(|y| ...))` would escape both its own limit and a clock checked every
//! N operations. The progress hook runs once per operation wherever the operation happens, so
//! the call's own counter lives here, next to its deadline and the stack address it started at.
//! They are per call, while the `Engine` (and its `on_progress` callback) is shared by every
//! call of a plugin, so they live in thread-locals: a call runs start to finish on one thread.
//! [`ExecutionGuard::enter`] sets them around every entry into the engine and restores the
//! previous values on drop, so a script that synchronously runs another script on the same
//! thread (through `call_plugin` and an in-process caller) gets its own deadline and operation
//! budget while the stack budget keeps counting from the outermost call.
//!
//! The hook returns a termination token; the error mapper turns the token back into
//! `PluginError::LimitExceeded` with the limit's name.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::Dynamic;

/// Termination token for a call that ran past its deadline.
pub(crate) const TIMEOUT: &str = "timeout";
/// Termination token for a call that ran past its host's call timeout (a hop timeout, a
/// manager's execute timeout), which was shorter than its own `timeout`.
pub(crate) const HOST_TIMEOUT: &str = "call_timeout";
/// Termination token for a call that used up its native stack budget.
pub(crate) const NATIVE_STACK: &str = "max_native_stack";
/// Termination token for a call that ran more operations than `max_operations`, closures
/// called by array and map methods included.
pub(crate) const MAX_OPERATIONS: &str = "max_operations";

/// Reading the clock costs far more than an operation's check; reading it every 64 operations
/// keeps it a small share of each while still stopping a loop within microseconds of its
/// deadline (docs/benchmarks.md, section "Costs behind design choices in the code").
const CLOCK_CHECK_INTERVAL: u64 = 64;

/// The limits of the call running on this thread.
struct CallLimits {
    deadline: Cell<Option<Instant>>,
    /// What passing `deadline` reports: [`TIMEOUT`] or [`HOST_TIMEOUT`].
    deadline_token: Cell<&'static str>,
    /// 0 when no call is running.
    stack_base: Cell<usize>,
    operations: Cell<u64>,
    /// 0 when no call is running (no limit of ours; Rhai's own still applies).
    max_operations: Cell<u64>,
}

thread_local! {
    static LIMITS: CallLimits = const {
        CallLimits {
            deadline: Cell::new(None),
            deadline_token: Cell::new(TIMEOUT),
            stack_base: Cell::new(0),
            operations: Cell::new(0),
            max_operations: Cell::new(0),
        }
    };
}

/// Keeps the limits of one script call installed on this thread while it lives.
pub(crate) struct ExecutionGuard {
    previous_deadline: Option<Instant>,
    previous_deadline_token: &'static str,
    previous_operations: u64,
    previous_max_operations: u64,
    owns_stack_base: bool,
}

impl ExecutionGuard {
    /// Starts a call that may run for `timeout` from now and `max_operations` operations.
    pub(crate) fn enter(timeout: Duration, max_operations: u64) -> Self {
        Self::enter_bounded(timeout, None, max_operations)
    }

    /// [`ExecutionGuard::enter`] for a call whose host waits at most `host_timeout`: the
    /// deadline is the sooner of the two, and passing the host's reports [`HOST_TIMEOUT`].
    pub(crate) fn enter_bounded(
        timeout: Duration,
        host_timeout: Option<Duration>,
        max_operations: u64,
    ) -> Self {
        let (timeout, token) = match host_timeout {
            Some(host) if host < timeout => (host, HOST_TIMEOUT),
            _ => (timeout, TIMEOUT),
        };
        let deadline = Instant::now().checked_add(timeout);
        LIMITS.with(|limits| {
            let owns_stack_base = limits.stack_base.get() == 0;
            if owns_stack_base {
                limits.stack_base.set(stack_address());
            }
            Self {
                previous_deadline: limits.deadline.replace(deadline),
                previous_deadline_token: limits.deadline_token.replace(token),
                previous_operations: limits.operations.replace(0),
                previous_max_operations: limits.max_operations.replace(max_operations.max(1)),
                owns_stack_base,
            }
        })
    }
}

impl Drop for ExecutionGuard {
    fn drop(&mut self) {
        LIMITS.with(|limits| {
            limits.deadline.set(self.previous_deadline);
            limits.deadline_token.set(self.previous_deadline_token);
            limits.operations.set(self.previous_operations);
            limits.max_operations.set(self.previous_max_operations);
            if self.owns_stack_base {
                limits.stack_base.set(0);
            }
        });
    }
}

/// The body of the engine's `on_progress` callback, run once per operation: `Some(token)`
/// stops the script.
///
/// It runs about forty times in a small script call, so the path that lets the script go on
/// is kept to a few loads and compares that inline into the callback, and the token is built
/// out of line: with the token's allocation inside, the thread-local access stayed an
/// indirect call and the callback cost about two thirds more instructions an operation
/// (docs/benchmarks.md, section "Whole-program optimisation, a cheaper progress hook").
#[inline]
pub(crate) fn check_progress(native_stack_budget: usize) -> Option<Dynamic> {
    let stop = LIMITS.with(|limits| {
        let base = limits.stack_base.get();
        // Stacks grow downwards on every platform Rust's std supports threads on.
        if base != 0 && base.saturating_sub(stack_address()) > native_stack_budget {
            return Some(NATIVE_STACK);
        }
        let operations = limits.operations.get() + 1;
        limits.operations.set(operations);
        let max_operations = limits.max_operations.get();
        if max_operations != 0 && operations > max_operations {
            return Some(MAX_OPERATIONS);
        }
        if operations.is_multiple_of(CLOCK_CHECK_INTERVAL) {
            return past_deadline(limits);
        }
        None
    });
    stop.map(termination)
}

#[cold]
#[inline(never)]
fn past_deadline(limits: &CallLimits) -> Option<&'static str> {
    let deadline = limits.deadline.get()?;
    (Instant::now() >= deadline).then(|| limits.deadline_token.get())
}

/// The time left before the deadline of the call running on this thread (`None` outside a call
/// or without a deadline): how long a host function may block on the call's behalf.
pub(crate) fn time_left() -> Option<Duration> {
    LIMITS.with(|limits| {
        let deadline = limits.deadline.get()?;
        Some(deadline.saturating_duration_since(Instant::now()))
    })
}

#[cold]
#[inline(never)]
fn termination(token: &'static str) -> Dynamic {
    token.into()
}

/// An address inside the current stack frame.
#[inline(always)]
fn stack_address() -> usize {
    let probe = 0u8;
    std::hint::black_box(&probe) as *const u8 as usize
}
