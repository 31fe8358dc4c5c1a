//! The outbox: publishes what a hop produced and only then acknowledges the message that
//! caused it. This ordering is the at-least-once guarantee: a worker that dies before the
//! acknowledgement leaves the message to be redelivered, and the re-published outputs carry
//! the same `Nats-Msg-Id`s, so JetStream keeps one copy of each.
//!
//! One task per process drives every job concurrently (a `FuturesUnordered`), so a hop waits
//! for the server's publish acknowledgement without holding its agent's mailbox.

use std::sync::Weak;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage, AckKind};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use super::link::NatsLink;

/// Attempts per publication before the job fails (the message is then nak'ed and redelivered
/// later, or the submitted input reported as an error).
const PUBLISH_ATTEMPTS: u32 = 3;

pub(crate) enum OutboxMsg {
    Job(Job),
    /// Answer once every job received before this one has finished.
    Flush(oneshot::Sender<()>),
}

/// What one hop (or one submission) must publish, and what to do once it is stored.
pub(crate) struct Job {
    pub publications: Vec<Publication>,
    pub done: Done,
    /// The agent's slot in its worker's local bound (see worker.rs), freed when the job ends.
    pub slot: Option<OwnedSemaphorePermit>,
}

pub(crate) struct Publication {
    pub subject: String,
    pub id: String,
    pub body: Bytes,
}

pub(crate) enum Done {
    /// Acknowledge this agent message (nak it if publishing failed).
    Ack(Box<jetstream::Message>),
    /// An input submitted by this process (sequence); on failure its outcome is an error.
    Submitted(u64),
}

pub(crate) async fn run(
    js: jetstream::Context,
    mut jobs: mpsc::UnboundedReceiver<OutboxMsg>,
    link: Weak<NatsLink>,
) {
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            msg = jobs.recv() => match msg {
                Some(OutboxMsg::Job(job)) => running.push(execute(js.clone(), job, link.clone())),
                Some(OutboxMsg::Flush(done)) => {
                    while running.next().await.is_some() {}
                    let _ = done.send(());
                }
                None => break,
            },
            Some(()) = running.next(), if !running.is_empty() => {}
        }
    }
    while running.next().await.is_some() {}
}

async fn execute(js: jetstream::Context, job: Job, link: Weak<NatsLink>) {
    let published = publish_all(&js, &job.publications).await;
    metrics::counter!("bilayer_nats_published_total").increment(job.publications.len() as u64);
    match job.done {
        Done::Ack(message) => {
            match &published {
                Ok(()) => {
                    if let Err(e) = message.ack().await {
                        // JetStream redelivers it; the outputs' ids make the retry harmless.
                        tracing::warn!(error = %e, "could not acknowledge a NATS message");
                    }
                    metrics::counter!("bilayer_nats_acked_total").increment(1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "publishing a hop's output failed; nak, redelivery in 1 s");
                    metrics::counter!("bilayer_nats_publish_failures_total").increment(1);
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                }
            }
            drop(job.slot);
            if let Some(link) = link.upgrade() {
                link.settled();
            }
        }
        Done::Submitted(seq) => {
            if let Err(e) = published {
                metrics::counter!("bilayer_nats_publish_failures_total").increment(1);
                if let Some(link) = link.upgrade() {
                    link.refuse(seq, format!("could not publish the input to NATS: {e}"));
                }
            }
        }
    }
}

/// Publishes every publication and waits for JetStream to store each; retries the whole set
/// (the message ids make a re-published copy a no-op).
async fn publish_all(js: &jetstream::Context, publications: &[Publication]) -> Result<(), String> {
    let mut last_error = String::new();
    for attempt in 0..PUBLISH_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(publications.len());
        let mut failed = false;
        for publication in publications {
            let message = PublishMessage::build()
                .payload(publication.body.clone())
                .message_id(&publication.id);
            match js.send_publish(publication.subject.clone(), message).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    last_error = format!("publish to {}: {e}", publication.subject);
                    failed = true;
                    break;
                }
            }
        }
        for ack in acks {
            if let Err(e) = ack.await {
                last_error = format!("JetStream did not store a message: {e}");
                failed = true;
            }
        }
        if !failed {
            return Ok(());
        }
    }
    Err(last_error)
}
