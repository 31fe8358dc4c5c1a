//! The clock the hot path reads: every agent hop is timed (for its metrics and the plugin's
//! statistics) and every input carries its latency, so a message reads the clock four to six
//! times on its way.
//!
//! `std::time::Instant` asks the kernel's vDSO (`clock_gettime`), which was a tenth of W1's time
//! with native agents. quanta (already built for the Prometheus exporter) reads the CPU's
//! time-stamp counter, calibrated once against the monotonic clock, in under half the time
//! (docs/benchmarks.md, section "Transforming agents, synchronous hops, a cheaper clock"); where
//! the counter is not invariant it falls back to the monotonic clock itself. We keep our own
//! `quanta::Clock` rather than calling `quanta::Instant::now`, which first looks for a per-thread
//! mock clock on every read.

use std::sync::OnceLock;
use std::time::Duration;

pub(crate) use quanta::Instant;

static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();

/// The time now.
pub(crate) fn now() -> Instant {
    CLOCK.get_or_init(quanta::Clock::new).now()
}

/// The time since `start` (zero if the counter appears to have gone backwards).
pub(crate) fn since(start: Instant) -> Duration {
    now().saturating_duration_since(start)
}

/// Calibrates the clock now, so that the first message does not pay for it.
pub(crate) fn calibrate() {
    let _ = now();
}
