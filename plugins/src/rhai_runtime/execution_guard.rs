//! Wall-clock and native-stack limits of one script call, enforced from Rhai's progress hook.
//!
//! Rhai counts operations itself (`max_operations`), but knows neither time nor how much of
//! the thread's stack it has used. Both are per call, while the `Engine` (and its
//! `on_progress` callback) is shared by every call of a plugin, so the call's deadline and the
//! stack address it started at live in thread-locals: a call runs start to finish on one
//! thread. [`ExecutionGuard::enter`] sets them around every entry into the engine and restores
//! the previous values on drop, so a script that synchronously runs another script on the same
//! thread (through `call_plugin` and an in-process caller) gets its own deadline while the
//! stack budget keeps counting from the outermost call.
//!
//! The hook returns a termination token; the error mapper turns the token back into
//! `PluginError::LimitExceeded` with the limit's name.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::Dynamic;

/// Termination token for a call that ran past its deadline.
pub(crate) const TIMEOUT: &str = "timeout";
/// Termination token for a call that used up its native stack budget.
pub(crate) const NATIVE_STACK: &str = "max_native_stack";

/// Reading the clock costs ~20 ns; checking it every 64 operations keeps the overhead under a
/// nanosecond per operation while still stopping a loop within microseconds of its deadline.
const CLOCK_CHECK_INTERVAL: u64 = 64;

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static STACK_BASE: Cell<usize> = const { Cell::new(0) };
}

/// Keeps the limits of one script call installed on this thread while it lives.
pub(crate) struct ExecutionGuard {
    previous_deadline: Option<Instant>,
    owns_stack_base: bool,
}

impl ExecutionGuard {
    /// Starts a call that may run for `timeout` from now.
    pub(crate) fn enter(timeout: Duration) -> Self {
        let deadline = Instant::now().checked_add(timeout);
        let previous_deadline = DEADLINE.with(|d| d.replace(deadline));
        let owns_stack_base = STACK_BASE.with(|base| {
            if base.get() == 0 {
                base.set(stack_address());
                true
            } else {
                false
            }
        });
        Self {
            previous_deadline,
            owns_stack_base,
        }
    }
}

impl Drop for ExecutionGuard {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(self.previous_deadline));
        if self.owns_stack_base {
            STACK_BASE.with(|base| base.set(0));
        }
    }
}

/// The body of the engine's `on_progress` callback: `Some(token)` stops the script.
pub(crate) fn check_progress(operations: u64, native_stack_budget: usize) -> Option<Dynamic> {
    let base = STACK_BASE.with(Cell::get);
    // Stacks grow downwards on every platform Rust's std supports threads on.
    if base != 0 && base.saturating_sub(stack_address()) > native_stack_budget {
        return Some(NATIVE_STACK.into());
    }
    if operations.is_multiple_of(CLOCK_CHECK_INTERVAL) {
        if let Some(deadline) = DEADLINE.with(Cell::get) {
            if Instant::now() >= deadline {
                return Some(TIMEOUT.into());
            }
        }
    }
    None
}

/// An address inside the current stack frame.
#[inline(always)]
fn stack_address() -> usize {
    let probe = 0u8;
    std::hint::black_box(&probe) as *const u8 as usize
}
