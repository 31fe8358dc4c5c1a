//! A tokio runtime whose every thread reports metrics to one recorder and traces to one
//! subscriber, for the tests that read what the runtime reports.
//!
//! The tests share one process (tests/it is one binary): a process-wide recorder or subscriber
//! could be installed only once and would see every other test's plugins and agents, whose
//! names (`intake`, `p`, ...) they reuse. Scoped to the runtime of one test, it sees that test's
//! alone. The runtime is the one `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`
//! builds; its workers and blocking threads, and the test's thread that polls the test, all
//! report to the test's recorder and subscriber.

use std::cell::RefCell;
use std::future::Future;
use std::sync::OnceLock;

use metrics::{LocalRecorderGuard, Recorder};
use tracing::dispatcher::{DefaultGuard, Dispatch};
use tracing::subscriber::NoSubscriber;

thread_local! {
    /// What this runtime thread reports to, until the thread stops.
    static REPORTING: RefCell<Option<Reporting>> = const { RefCell::new(None) };
}

/// A thread's scoped recorder and subscriber; dropping it ends the scope.
struct Reporting {
    _traces: DefaultGuard,
    _metrics: LocalRecorderGuard<'static>,
}

impl Reporting {
    fn start(recorder: &'static (dyn Recorder + Sync), dispatch: &Dispatch) -> Self {
        Self {
            _traces: tracing::dispatcher::set_default(dispatch),
            _metrics: metrics::set_default_local_recorder(recorder),
        }
    }
}

/// Runs `test` to completion on a runtime of its own whose threads report metrics to
/// `recorder` and traces to `dispatch` (`Dispatch::none()` for none).
pub fn block_on<F: Future>(
    recorder: &'static (dyn Recorder + Sync),
    dispatch: Dispatch,
    test: F,
) -> F::Output {
    ask_every_dispatcher();
    let _scope = Reporting::start(recorder, &dispatch);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            let reporting = Reporting::start(recorder, &dispatch);
            REPORTING.with(|slot| *slot.borrow_mut() = Some(reporting));
        })
        .on_thread_stop(|| {
            REPORTING.with(|slot| slot.borrow_mut().take());
        })
        .build()
        .expect("a tokio runtime for the test");
    runtime.block_on(test)
}

/// tracing caches whether a callsite is wanted, process-wide, when the callsite is first
/// reached. While a single subscriber is registered it asks only the subscriber of the thread
/// reaching it, so a callsite first reached by another test (no subscriber on its thread) would
/// stay unwanted for good, and this test's subscriber would never see its spans. With a second
/// subscriber registered for the life of the process (one that wants nothing), tracing asks every
/// registered subscriber, and each thread's own decides.
fn ask_every_dispatcher() {
    static BYSTANDER: OnceLock<Dispatch> = OnceLock::new();
    BYSTANDER.get_or_init(|| Dispatch::new(NoSubscriber::default()));
}
