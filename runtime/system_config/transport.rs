//! The `[transport]` table turned into a [`Transport`]: in-process by default, or NATS
//! JetStream with its stream, subjects, credentials (read from the environment variables the
//! table names) and delivery settings, refused when `ack_wait_ms` would not outlast a hop.

#[cfg(feature = "nats")]
use std::time::Duration;

use bilayer_actors::Transport;
#[cfg(feature = "nats")]
use bilayer_actors::{
    NatsCredentials, NatsStorage, NatsTransport, DEFAULT_EXECUTE_TIMEOUT, DEFAULT_NATS_URL,
};

use super::SystemDefinition;

impl SystemDefinition {
    /// The transport the definition asks for (`[transport]`; in-process when absent), with
    /// credentials read from the environment variables it names.
    pub fn transport(&self) -> Result<Transport, String> {
        let Some(entry) = &self.raw.transport else {
            return Ok(Transport::InProcess);
        };
        match entry.kind.as_deref().unwrap_or("in-process") {
            "in-process" | "in_process" => Ok(Transport::InProcess),
            #[cfg(feature = "nats")]
            "nats" => self.nats_transport().map(Transport::Nats),
            #[cfg(not(feature = "nats"))]
            "nats" => Err(crate::features::missing(
                "nats",
                "[transport] kind = \"nats\"",
            )),
            other => Err(format!(
                "unknown transport kind `{other}`; use \"in-process\" or \"nats\""
            )),
        }
    }

    /// The NATS settings of `[transport]` (defaults where absent, or with no table at all):
    /// what `bilayer worker` and `bilayer run --transport nats` use (feature `nats`).
    #[cfg(feature = "nats")]
    pub fn nats_transport(&self) -> Result<NatsTransport, String> {
        let entry = self.raw.transport.clone().unwrap_or_default();
        let env = |name: &str| {
            std::env::var(name).map_err(|_| {
                format!("[transport] names environment variable {name}, which is not set")
            })
        };
        let url = match entry.url {
            Some(url) => url,
            None => {
                std::env::var("BILAYER_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_string())
            }
        };
        let mut nats = NatsTransport::new(url);
        let token = match (entry.token, entry.token_env) {
            (Some(_), Some(_)) => return Err("give token or token_env, not both".into()),
            (Some(token), None) => Some(token),
            (None, Some(var)) => Some(env(&var)?),
            (None, None) => None,
        };
        let password = match (entry.password, entry.password_env) {
            (Some(_), Some(_)) => return Err("give password or password_env, not both".into()),
            (Some(password), None) => Some(password),
            (None, Some(var)) => Some(env(&var)?),
            (None, None) => None,
        };
        let credentials = match (token, entry.user, password, entry.credentials_file) {
            (None, None, None, None) => NatsCredentials::None,
            (Some(token), None, None, None) => NatsCredentials::Token(token),
            (None, Some(user), Some(password), None) => {
                NatsCredentials::UserPassword { user, password }
            }
            (None, Some(_), None, None) | (None, None, Some(_), None) => {
                return Err("user and password go together; give both".into())
            }
            (None, None, None, Some(file)) => {
                let path = self.dir.join(file);
                if !path.is_file() {
                    return Err(format!(
                        "credentials_file {} does not exist",
                        path.display()
                    ));
                }
                NatsCredentials::CredentialsFile(path)
            }
            _ => {
                return Err(
                    "give one way to authenticate: token, user + password, or credentials_file"
                        .into(),
                )
            }
        };
        nats = nats.credentials(credentials);
        if let Some(stream) = entry.stream {
            nats = nats.stream(stream);
        }
        if let Some(prefix) = entry.subject_prefix {
            nats = nats.subject_prefix(prefix);
        }
        if let Some(ms) = entry.ack_wait_ms {
            nats = nats.ack_wait(Duration::from_millis(ms));
        }
        if let Some(attempts) = entry.max_deliver {
            nats = nats.max_deliver(attempts);
        }
        if let Some(pending) = entry.max_ack_pending {
            nats = nats.max_ack_pending(pending);
        }
        if let Some(batch) = entry.batch {
            nats = nats.batch(batch);
        }
        if let Some(ms) = entry.duplicate_window_ms {
            nats = nats.duplicate_window(Duration::from_millis(ms));
        }
        if let Some(ms) = entry.results_max_age_ms {
            nats = nats.results_max_age(Duration::from_millis(ms));
        }
        match entry.storage.as_deref() {
            None | Some("file") => {}
            Some("memory") => nats = nats.storage(NatsStorage::Memory),
            Some(other) => {
                return Err(format!(
                    "unknown storage `{other}`; use \"file\" or \"memory\""
                ))
            }
        }
        let hop_timeout = self
            .raw
            .hop_timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_EXECUTE_TIMEOUT);
        if nats.ack_wait_duration() <= hop_timeout {
            return Err(format!(
                "ack_wait_ms ({} ms) must exceed hop_timeout_ms ({} ms), or a slow hop is \
                 redelivered to another worker while it still runs",
                nats.ack_wait_duration().as_millis(),
                hop_timeout.as_millis()
            ));
        }
        Ok(nats)
    }
}
