//! Group commit: every journal entry of the process goes through one writer task, which
//! writes whatever has queued up (up to
//! [`StoreOptions::max_batch`](super::StoreOptions::max_batch) entries) in one transaction,
//! then releases what waited on it.
//!
//! Why one task: a commit costs the same for one entry or thousands (a WAL append and, with
//! `power_loss_safe`, an fsync; a round trip to PostgreSQL), so throughput comes from batching,
//! and batching comes for free when appends queue while a commit is in flight. `append` never
//! waits: the hop path hands its entry and a callback over an unbounded channel and goes on.
//!
//! The callbacks are the hop's effects (the messages it sends on, its outcome), which must not
//! become visible before the entry is durable: each is called only after its batch's commit
//! returned, in append order, with `Ok` or with the error of a failed batch (every callback of
//! that batch gets it; failed entries are not retried).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::store::{Core, JournalStore, Tables};
use super::{Entry, JournalError};

/// What an append calls once its entry is committed (or its batch failed).
pub type Then = Box<dyn FnOnce(Result<(), JournalError>) + Send>;

/// The handle on a store's writer task: append entries, wait for them to be committed, stop
/// the task. Cloning is cheap; clones feed the same task. The task ends when it is
/// [closed](Self::close), or when every handle is dropped (after writing what was queued).
#[derive(Clone)]
pub struct JournalWriter {
    commands: mpsc::UnboundedSender<Command>,
    url: Arc<str>,
}

impl std::fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalWriter")
            .field("store", &self.url)
            .field("stopped", &self.commands.is_closed())
            .finish()
    }
}

enum Command {
    Append(Entry, Option<Then>),
    /// Answered once everything appended before it is committed.
    Flush(oneshot::Sender<Result<(), JournalError>>),
    /// A flush, after which the task stops.
    Close(oneshot::Sender<Result<(), JournalError>>),
}

/// One group commit's worth of work.
#[derive(Default)]
struct Batch {
    tables: Tables,
    /// In append order: the callbacks and the flushes waiting on this batch.
    waiters: Vec<Waiter>,
    entries: usize,
}

enum Waiter {
    Then(Then),
    Flush(oneshot::Sender<Result<(), JournalError>>),
}

impl JournalStore {
    /// Starts a writer task for this store, on the runtime the store was opened on, and
    /// returns its handle. Group commit works best with one writer per process (clone it
    /// rather than calling this again): two writers on one SQLite file take turns for its
    /// write lock.
    pub fn writer(&self) -> JournalWriter {
        let (commands, queue) = mpsc::unbounded_channel();
        let core = Arc::clone(self.core());
        let max_batch = self.options().max_batch.max(1);
        let url: Arc<str> = Arc::from(core.url.as_str());
        self.runtime().spawn(write_loop(core, queue, max_batch));
        JournalWriter { commands, url }
    }
}

impl JournalWriter {
    /// Queues `entry` for the next group commit and returns at once. `then`, if given, is
    /// called on the writer task once the entry is committed (`Ok`) or its batch failed
    /// (`Err`), after the callbacks of every entry appended before it; it should be quick
    /// (send a message, not wait), since the next batch waits for it. After the writer
    /// stopped, `then` is called at once, here, with [`JournalError::WriterStopped`].
    pub fn append(&self, entry: Entry, then: Option<Then>) {
        if let Err(mpsc::error::SendError(command)) =
            self.commands.send(Command::Append(entry, then))
        {
            refuse(command, &self.url);
        }
    }

    /// Waits until everything appended before this call is committed. Returns the first
    /// error of a batch that failed since the previous flush, if any.
    pub async fn flush(&self) -> Result<(), JournalError> {
        let (done, answer) = oneshot::channel();
        self.commands
            .send(Command::Flush(done))
            .map_err(|_| self.stopped())?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Flushes, then stops the writer task (for every clone of this handle): later appends
    /// are refused with [`JournalError::WriterStopped`], as are those queued behind this call.
    pub async fn close(&self) -> Result<(), JournalError> {
        let (done, answer) = oneshot::channel();
        self.commands
            .send(Command::Close(done))
            .map_err(|_| self.stopped())?;
        answer.await.map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> JournalError {
        JournalError::WriterStopped {
            url: self.url.to_string(),
        }
    }
}

/// Answers a command the task will never see.
fn refuse(command: Command, url: &str) {
    let stopped = || JournalError::WriterStopped {
        url: url.to_string(),
    };
    match command {
        Command::Append(_, Some(then)) => call(then, Err(stopped())),
        Command::Append(_, None) => {}
        Command::Flush(done) | Command::Close(done) => {
            let _ = done.send(Err(stopped()));
        }
    }
}

/// Calls a callback; one that panics is logged and does not take the writer down with it.
fn call(then: Then, result: Result<(), JournalError>) {
    if std::panic::catch_unwind(AssertUnwindSafe(|| then(result))).is_err() {
        tracing::error!("journal: a commit callback panicked; the writer goes on");
    }
}

async fn write_loop(
    core: Arc<Core>,
    mut queue: mpsc::UnboundedReceiver<Command>,
    max_batch: usize,
) {
    // The callbacks run on a task of their own, in commit order: while they release one
    // batch's effects (routing, inbox pushes, outcomes), the next batch is already being
    // written. Inline, the two took turns and left a core idle.
    let (release, released) = mpsc::unbounded_channel();
    tokio::spawn(release_loop(released));
    let mut batch = Batch::default();
    while let Some(first) = queue.recv().await {
        let mut closing = batch.take(first);
        while closing.is_none() && batch.entries < max_batch {
            match queue.try_recv() {
                Ok(command) => closing = batch.take(command),
                Err(_) => break,
            }
        }
        let result = if batch.entries == 0 {
            Ok(())
        } else {
            core.insert(&mut batch.tables).await.map_err(|e| {
                core.query_error(format!("writing {} journal entries", batch.entries), &e)
            })
        };
        if let Err(e) = &result {
            tracing::error!("{e}");
        }
        batch.entries = 0;
        let waiters = std::mem::take(&mut batch.waiters);
        if let Err(mpsc::error::SendError(Release::Batch(waiters, result))) =
            release.send(Release::Batch(waiters, result))
        {
            // The releaser is gone only if a runtime is shutting down: release here.
            release_batch(waiters, result, &mut None);
        }
        if let Some(done) = closing {
            queue.close();
            while let Ok(command) = queue.try_recv() {
                refuse(command, &core.url);
            }
            if let Err(mpsc::error::SendError(Release::Closed(done))) =
                release.send(Release::Closed(done))
            {
                let _ = done.send(Ok(()));
            }
            return;
        }
    }
}

/// What the writer hands its releaser: a committed (or failed) batch's waiters, or the close
/// to answer once everything before it is released.
enum Release {
    Batch(Vec<Waiter>, Result<(), JournalError>),
    Closed(oneshot::Sender<Result<(), JournalError>>),
}

/// Runs the callbacks and answers the flushes of each batch, in commit order.
async fn release_loop(mut released: mpsc::UnboundedReceiver<Release>) {
    // The first failure since the last flush, which that flush reports.
    let mut failed: Option<JournalError> = None;
    while let Some(release) = released.recv().await {
        match release {
            Release::Batch(waiters, result) => release_batch(waiters, result, &mut failed),
            Release::Closed(done) => {
                let _ = done.send(failed.take().map_or(Ok(()), Err));
                return;
            }
        }
    }
}

fn release_batch(
    waiters: Vec<Waiter>,
    result: Result<(), JournalError>,
    failed: &mut Option<JournalError>,
) {
    if let Err(e) = &result {
        failed.get_or_insert_with(|| e.clone());
    }
    for waiter in waiters {
        match waiter {
            Waiter::Then(then) => call(then, result.clone()),
            Waiter::Flush(done) => {
                let _ = done.send(failed.take().map_or(Ok(()), Err));
            }
        }
    }
}

impl Batch {
    /// Adds a command to the batch; a close ends the batch and is returned.
    fn take(&mut self, command: Command) -> Option<oneshot::Sender<Result<(), JournalError>>> {
        match command {
            Command::Append(entry, then) => {
                self.tables.push(entry);
                self.entries += 1;
                if let Some(then) = then {
                    self.waiters.push(Waiter::Then(then));
                }
                None
            }
            Command::Flush(done) => {
                self.waiters.push(Waiter::Flush(done));
                None
            }
            Command::Close(done) => Some(done),
        }
    }
}
