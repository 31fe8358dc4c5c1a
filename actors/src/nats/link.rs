//! One system's connection to NATS: the client, the JetStream context, the three streams, the
//! outbox that publishes and acknowledges, and the bookkeeping to stop cleanly.
//!
//! Streams (created if missing, shared by every process of the system):
//! - `<stream>`: work queue of agent messages on `<prefix>.agent.*`; a message is deleted
//!   when its agent's consumer acknowledges it;
//! - `<stream>_RESULTS`: ended branches on `<prefix>.result.<run>`, kept `results_max_age`;
//! - `<stream>_DEAD`: dead-letter records on `<prefix>.dead`, kept 7 days.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use super::config::{NatsCredentials, NatsStorage, NatsTransport};
use super::error::TransportError;
use super::outbox::{self, Job, OutboxMsg};
use super::wire::Names;
use super::Pending;

pub(crate) struct NatsLink {
    pub names: Names,
    pub config: NatsTransport,
    pub js: jetstream::Context,
    /// This process's run id: results of the inputs it submits come back on its own subject.
    pub run: Arc<str>,
    /// Sequence of the inputs this process submits (input numbers may repeat; this may not).
    pub next_seq: AtomicU64,
    outbox: mpsc::UnboundedSender<OutboxMsg>,
    /// Agent messages taken from JetStream and not yet acknowledged (or nak'ed) by this process.
    in_flight: AtomicUsize,
    idle: Notify,
    /// Inputs submitted by this process whose branches have not all ended, by sequence.
    pub pending: Mutex<HashMap<u64, Pending>>,
    pub collector: tokio::sync::OnceCell<Result<(), String>>,
    pub stop: watch::Sender<bool>,
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl NatsLink {
    /// Connects, makes sure the system's streams exist, and starts the outbox.
    pub(crate) async fn connect(
        config: &NatsTransport,
        system: &str,
    ) -> Result<Arc<NatsLink>, TransportError> {
        if config.duplicate_window <= config.ack_wait {
            return Err(TransportError::Config(format!(
                "NATS duplicate_window ({:?}) must be longer than ack_wait ({:?}): a redelivered \
                 message re-publishes its outputs, and only ids inside the window are dropped",
                config.duplicate_window, config.ack_wait
            )));
        }
        let url = &config.url;
        let mut options = async_nats::ConnectOptions::new().name(format!("bilayer {system}"));
        options = match &config.credentials {
            NatsCredentials::None => options,
            NatsCredentials::Token(token) => options.token(token.clone()),
            NatsCredentials::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.clone())
            }
            NatsCredentials::CredentialsFile(path) => {
                options.credentials_file(path).await.map_err(|e| {
                    TransportError::Server(format!(
                        "cannot read NATS credentials file {}: {e}",
                        path.display()
                    ))
                })?
            }
        };
        let client = options.connect(url.as_str()).await.map_err(|e| {
            let hint = match e.kind() {
                async_nats::ConnectErrorKind::AuthorizationViolation
                | async_nats::ConnectErrorKind::Authentication => {
                    "the server refused the credentials: check the [transport] token / \
                     token_env, user + password / password_env or credentials_file"
                }
                _ => {
                    "is nats-server running there (with -js for JetStream), and are the \
                     credentials right?"
                }
            };
            TransportError::Server(format!("cannot connect to NATS at {url}: {e}; {hint}"))
        })?;
        let js = jetstream::new(client);
        let names = Names::new(
            system,
            config.stream.as_deref(),
            config.subject_prefix.as_deref(),
        );
        let storage = match config.storage {
            NatsStorage::File => stream::StorageType::File,
            NatsStorage::Memory => stream::StorageType::Memory,
        };
        let streams = [
            stream::Config {
                name: names.work_stream.clone(),
                subjects: vec![names.agent_subjects()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage,
                duplicate_window: config.duplicate_window,
                ..Default::default()
            },
            stream::Config {
                name: names.results_stream.clone(),
                subjects: vec![names.result_subjects()],
                storage,
                duplicate_window: config.duplicate_window,
                max_age: config.results_max_age,
                ..Default::default()
            },
            stream::Config {
                name: names.dead_stream.clone(),
                subjects: vec![names.dead_subject()],
                storage,
                duplicate_window: config.duplicate_window,
                max_age: Duration::from_secs(7 * 24 * 3600),
                ..Default::default()
            },
        ];
        for config in streams {
            let name = config.name.clone();
            js.get_or_create_stream(config).await.map_err(|e| {
                TransportError::Server(format!(
                    "cannot create or open JetStream stream `{name}` at {url}: {e}; is JetStream \
                     enabled on the server (nats-server -js)?"
                ))
            })?;
        }
        let (outbox_tx, outbox_rx) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        let link = Arc::new(NatsLink {
            names,
            config: config.clone(),
            js: js.clone(),
            run: Arc::from(new_run_id().as_str()),
            next_seq: AtomicU64::new(1),
            outbox: outbox_tx,
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            pending: Mutex::new(HashMap::new()),
            collector: tokio::sync::OnceCell::new(),
            stop,
            tasks: Mutex::new(Vec::new()),
        });
        let outbox_task = tokio::spawn(outbox::run(js, outbox_rx, Arc::downgrade(&link)));
        link.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(outbox_task);
        Ok(link)
    }

    /// The durable pull consumer that every worker serving `agent` shares.
    pub(crate) async fn agent_consumer(
        &self,
        agent: &str,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, String> {
        let durable = self.names.consumer(agent);
        let stream = self
            .js
            .get_stream(&self.names.work_stream)
            .await
            .map_err(|e| format!("cannot open stream `{}`: {e}", self.names.work_stream))?;
        stream
            .get_or_create_consumer(
                &durable,
                consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: self.names.agent_subject(agent),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.config.ack_wait,
                    // Unlimited for the server: past `max_deliver` attempts the worker dead-letters
                    // the message itself. A server-side limit would leave a message whose last
                    // delivery also went unacknowledged in the stream, never delivered again.
                    max_deliver: -1,
                    max_ack_pending: i64::from(self.config.max_ack_pending),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("cannot create consumer `{durable}` for agent `{agent}`: {e}"))
    }

    /// Hands a job to the outbox (publish, then acknowledge).
    pub(crate) fn send(&self, job: Job) {
        if let Err(mpsc::error::SendError(OutboxMsg::Job(job))) =
            self.outbox.send(OutboxMsg::Job(job))
        {
            // The outbox is gone (shutdown): leave the message unacknowledged, JetStream
            // redelivers it to another worker after ack_wait.
            tracing::warn!(
                publications = job.publications.len(),
                "NATS outbox closed; the message will be redelivered"
            );
        }
    }

    /// A message was taken from JetStream by this process.
    pub(crate) fn took(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// A taken message was acknowledged or given back.
    pub(crate) fn settled(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Stops taking messages, lets the taken ones finish (up to `ack_wait`; past it JetStream
    /// redelivers them anyway), then flushes the outbox.
    pub(crate) async fn stop(&self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + self.config.ack_wait;
        while self.in_flight.load(Ordering::Acquire) > 0 {
            let idle = self.idle.notified();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                tracing::warn!(
                    in_flight = self.in_flight.load(Ordering::Acquire),
                    "NATS messages still in flight at shutdown; JetStream will redeliver them"
                );
                break;
            }
        }
        self.flush().await;
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            task.abort();
        }
    }

    /// Waits until every job handed to the outbox so far is published and acknowledged.
    pub(crate) async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.outbox.send(OutboxMsg::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

/// A run id unique across processes and restarts: time, process id and a counter.
fn new_run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{count:x}", std::process::id())
}
