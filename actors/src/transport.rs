//! [`Transport`]: how an agent system's agents exchange messages. Always built, so a system
//! definition and the builder name their transport the same way in every build; the NATS
//! variant exists with the `nats` feature.

#[cfg(feature = "nats")]
use crate::nats::NatsTransport;

/// How an agent system's agents exchange messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Transport {
    /// Actor mailboxes in this process (the default).
    #[default]
    InProcess,
    /// JetStream subjects on a NATS server, across processes and machines (feature `nats`).
    #[cfg(feature = "nats")]
    Nats(NatsTransport),
}
