//! Scale-out: one agent system across processes and machines, over NATS JetStream.
//!
//! The system definition does not change: each process builds the same system with
//! [`Transport::Nats`] and serves some of its agents (`bilayer worker SYSTEM.toml --agents
//! intake,manager`); the others are declared remote. The path of a message:
//!
//! ```text
//! submit ─► publish <prefix>.agent.<entry> ──► JetStream work stream (durable)
//!   worker: durable pull consumer `agent-<name>` ─► agent actor (as in process)
//!     ─► routing ─► outbox: publish <prefix>.agent.<next>  (or the result, or a dead letter)
//!                   ─► wait for JetStream's store ack ─► ack the message
//!   submitter: ordered consumer on <prefix>.result.<run> ─► join branches ─► Outcome
//! ```
//!
//! - **Load sharing.** Every worker serving an agent pulls from that agent's one durable
//!   consumer: the JetStream form of a queue group. Each message goes to one of them.
//! - **At least once.** A message is acknowledged only after everything its hop produced is
//!   stored. A worker killed mid-message leaves it unacknowledged; after `ack_wait` JetStream
//!   gives it to another worker.
//! - **Idempotence.** Every publication's `Nats-Msg-Id` is derived from the run, the input's
//!   sequence, its branch and its hop, so a redelivered message re-publishes under the same
//!   ids and JetStream drops the copies (inside `duplicate_window`); the submitter also drops
//!   a branch it has already seen. A terminal result is recorded once.
//! - **Nothing lost.** A message that has used `max_deliver` attempts is dead-lettered with
//!   that reason rather than dropped; dead letters go to `<stream>_DEAD` with their reason, and
//!   the submitter gets a `dead_letter` outcome as in process.
//!
//! Compiled with the crate's `nats` feature (on by default); without it the crate has no NATS
//! client and every system is in process.
//!
//! [`Transport::Nats`]: crate::Transport::Nats

mod client;
mod config;
mod error;
mod link;
mod outbox;
mod wire;
pub(crate) mod worker;

pub(crate) use client::Pending;
pub use config::{NatsCredentials, NatsStorage, NatsTransport, Transport, DEFAULT_NATS_URL};
pub use error::TransportError;
pub(crate) use link::NatsLink;
pub(crate) use wire::subject_token;
