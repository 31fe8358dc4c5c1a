//! How a system reaches NATS: the server, credentials, stream and subject names, and the
//! delivery knobs of JetStream (ack wait, redelivery attempts, in-flight bound, storage).
//!
//! Defaults fit one NATS server on the same machine: `nats://127.0.0.1:4222`, file storage,
//! 60 s ack wait, 5 delivery attempts, 2 min duplicate window.

use std::path::PathBuf;
use std::time::Duration;

/// Default server when neither the definition nor `BILAYER_NATS_URL` names one.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// How to authenticate to the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NatsCredentials {
    /// No authentication (a local development server).
    #[default]
    None,
    /// A token the server was configured with.
    Token(String),
    /// A user name and password.
    UserPassword {
        /// The user name.
        user: String,
        /// Its password.
        password: String,
    },
    /// A `.creds` file (JWT and NKey seed), as `nsc` writes them.
    CredentialsFile(PathBuf),
}

/// Where JetStream keeps the messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NatsStorage {
    /// On disk: messages survive a server restart.
    #[default]
    File,
    /// In memory: faster, lost if the server restarts.
    Memory,
}

/// The NATS transport of an agent system: agents consume from durable JetStream subjects and
/// several processes serving the same agent share its load (see the `nats` module docs).
///
/// ```
/// use std::time::Duration;
/// use bilayer_actors::{NatsTransport, Transport};
///
/// let transport = Transport::Nats(
///     NatsTransport::new("nats://127.0.0.1:4222")
///         .ack_wait(Duration::from_secs(10))
///         .max_deliver(3),
/// );
/// # let _ = transport;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsTransport {
    pub(crate) url: String,
    pub(crate) credentials: NatsCredentials,
    pub(crate) stream: Option<String>,
    pub(crate) subject_prefix: Option<String>,
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: u32,
    pub(crate) max_ack_pending: u32,
    pub(crate) batch: usize,
    pub(crate) storage: NatsStorage,
    pub(crate) duplicate_window: Duration,
    pub(crate) results_max_age: Duration,
}

impl Default for NatsTransport {
    fn default() -> Self {
        Self::new(DEFAULT_NATS_URL)
    }
}

impl NatsTransport {
    /// A transport to the server at `url` (`nats://host:port`, or several, comma-separated).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            credentials: NatsCredentials::None,
            stream: None,
            subject_prefix: None,
            ack_wait: Duration::from_secs(60),
            max_deliver: 5,
            max_ack_pending: 4096,
            batch: 256,
            storage: NatsStorage::File,
            duplicate_window: Duration::from_secs(120),
            results_max_age: Duration::from_secs(3600),
        }
    }

    /// The server to connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same settings for another server (e.g. `--nats-url` over the definition's `url`).
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// The configured ack wait (see [`NatsTransport::ack_wait`]).
    pub fn ack_wait_duration(&self) -> Duration {
        self.ack_wait
    }

    /// The work stream's name, or `None` for the default derived from the system's name.
    pub fn stream_name(&self) -> Option<&str> {
        self.stream.as_deref()
    }

    /// How to authenticate (default: none).
    pub fn credentials(mut self, credentials: NatsCredentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// The work stream's name (default `BILAYER_<SYSTEM NAME>`); results and dead letters
    /// go to `<stream>_RESULTS` and `<stream>_DEAD`.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = Some(name.into());
        self
    }

    /// The subjects' prefix (default `bilayer.<system name>`): agent `a` consumes from
    /// `<prefix>.agent.a`.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = Some(prefix.into());
        self
    }

    /// How long a delivered message may stay unacknowledged before JetStream gives it to
    /// another worker (default 60 s). Must be longer than the system's hop timeout (30 s by
    /// default), or a slow hop runs twice.
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// Delivery attempts per message (default 5); a message that has used them all (its
    /// workers crashed on it or never acknowledged it) is dead-lettered with that reason.
    pub fn max_deliver(mut self, attempts: u32) -> Self {
        self.max_deliver = attempts.max(1);
        self
    }

    /// Bound on messages delivered to an agent's workers and not yet acknowledged (default
    /// 4096): the distributed form of the in-process admission bound.
    pub fn max_ack_pending(mut self, pending: u32) -> Self {
        self.max_ack_pending = pending.max(1);
        self
    }

    /// Messages pulled per request by each worker (default 256).
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Where JetStream keeps the messages (default: file).
    pub fn storage(mut self, storage: NatsStorage) -> Self {
        self.storage = storage;
        self
    }

    /// Window in which JetStream drops a re-published message id (default 2 min). A
    /// redelivered message re-publishes its outputs under the same ids, so this must exceed
    /// `ack_wait` (checked at build).
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// How long terminal results stay in the results stream (default 1 h).
    pub fn results_max_age(mut self, age: Duration) -> Self {
        self.results_max_age = age;
        self
    }
}
