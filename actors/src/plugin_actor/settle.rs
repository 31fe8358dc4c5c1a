//! How one run of the plugin ended, an `execute` call (call.rs) or an agent hop (hop.rs), and
//! the step both take once it has: counted in the plugin's statistics and metrics, and, for a
//! fault, reported to a version's probation (swap.rs) and, for a panic, to the supervisor.
//!
//! [`RunEnd`] is flat: done, failed, panicked or timed out, where the nested results it
//! replaces (`Result<Result<PluginResult<()>, Box<dyn Any>>, Duration>`) made every reader
//! unwrap three layers. It adds nothing to a hop: it is built on the stack, a hop's output
//! stays in its message (`RunEnd<()>`), and a panic's payload becomes its message where it is
//! caught, the only end that allocates.

use std::any::Any;
use std::time::Duration;

use bilayer_plugins::{CallError, PluginResult};

use super::replay::Held;
use super::PluginActorState;

/// How one run of the plugin ended.
pub(super) enum RunEnd<T> {
    /// It answered: a call's output, or `()` for a hop (whose output is in its message).
    Done(T),
    /// It answered with an error of its own.
    Failed(bilayer_plugins::PluginError),
    /// It panicked, with this message.
    Panicked(String),
    /// It did not answer in time: the hop timeout ran out, or a call's caller stopped waiting
    /// (after this long).
    TimedOut(Duration),
}

impl<T> RunEnd<T> {
    /// What a run under `catch_unwind` gave.
    #[inline]
    pub(super) fn caught(caught: std::thread::Result<PluginResult<T>>) -> Self {
        match caught {
            Ok(Ok(output)) => RunEnd::Done(output),
            Ok(Err(error)) => RunEnd::Failed(error),
            Err(panic) => RunEnd::Panicked(panic_message(panic.as_ref())),
        }
    }

    /// The end without its output, and the output: a run on a sibling answers its caller
    /// with the output and sends the actor the rest (`overlap.rs`).
    pub(super) fn take_output(self) -> (RunEnd<()>, Option<T>) {
        match self {
            RunEnd::Done(output) => (RunEnd::Done(()), Some(output)),
            RunEnd::Failed(error) => (RunEnd::Failed(error), None),
            RunEnd::Panicked(message) => (RunEnd::Panicked(message), None),
            RunEnd::TimedOut(after) => (RunEnd::TimedOut(after), None),
        }
    }

    /// The call's error, as [`into_result`](Self::into_result) reports it, without consuming
    /// the end; `None` when it answered.
    pub(super) fn error(&self, id: &str) -> Option<CallError> {
        match self {
            RunEnd::Done(_) => None,
            RunEnd::Failed(error) => Some(CallError::Plugin(error.clone())),
            RunEnd::Panicked(message) => Some(CallError::Panicked {
                id: id.to_string(),
                message: message.clone(),
            }),
            RunEnd::TimedOut(after) => Some(CallError::Timeout {
                id: id.to_string(),
                after: *after,
            }),
        }
    }

    /// The end as the host reports it: the output, or the call's error (the plugin's own
    /// error, a panic, a timeout) naming plugin `id`.
    pub(super) fn into_result(self, id: &str) -> Result<T, CallError> {
        match self {
            RunEnd::Done(output) => Ok(output),
            RunEnd::Failed(error) => Err(CallError::Plugin(error)),
            RunEnd::Panicked(message) => Err(CallError::Panicked {
                id: id.to_string(),
                message,
            }),
            RunEnd::TimedOut(after) => Err(CallError::Timeout {
                id: id.to_string(),
                after,
            }),
        }
    }
}

impl PluginActorState {
    /// Counts a finished run in the plugin's statistics and metrics, the same way for calls
    /// and hops (timeouts are counted where they are seen: by the caller that stopped waiting,
    /// or by the hop).
    #[inline]
    pub(super) fn settle<T>(&mut self, end: &RunEnd<T>, elapsed: Duration) {
        self.metrics.calls.increment(1);
        self.metrics.latency.record(elapsed.as_secs_f64());
        let ok = matches!(end, RunEnd::Done(_));
        self.shared.stats.record_call(elapsed, ok);
        if !ok {
            self.metrics.errors.increment(1);
        }
        if matches!(end, RunEnd::Panicked(_)) {
            self.shared.stats.record_panic();
        }
    }

    /// After a run that failed by the plugin's fault (`error`, a
    /// [`CallError::is_plugin_fault`]): counted against a version on probation, which holds
    /// `failed` for a replay or rolls back; then a panic goes to the supervisor, unless the
    /// rollback has replaced the instance already.
    pub(super) async fn after_fault(&mut self, failed: Option<Held>, error: &CallError) {
        let rolled_back = self.on_fault(failed, error).await;
        if let (false, CallError::Panicked { message, .. }) = (rolled_back, error) {
            self.recover(format!("panicked: {message}")).await;
        }
    }
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::time::Duration;

    use bilayer_plugins::PluginResult;

    use super::RunEnd;

    /// The flat end of a hop costs no more to return than the nested results it replaced.
    #[test]
    fn a_hops_end_is_no_bigger_than_the_nested_results_it_replaced() {
        type Nested = Result<Result<PluginResult<()>, Box<dyn Any + Send>>, Duration>;
        assert!(
            size_of::<RunEnd<()>>() <= size_of::<Nested>(),
            "{} > {}",
            size_of::<RunEnd<()>>(),
            size_of::<Nested>()
        );
    }
}
