//! The submitting side: an input becomes an agent message on the entry agent's subject, and
//! its ended branches come back on this run's result subject, where they are joined into the
//! input's one outcome (through the same [`Ticket`] as in process).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;

use super::link::NatsLink;
use super::outbox::{Done, Job, Publication};
use super::wire::{covers_tree, message_id, Fork, WireMessage, WireResult};
use super::worker::to_bytes;
use crate::system::{Outcome, SystemCore, Ticket};

/// An input waiting for its branches.
pub(crate) struct Pending {
    ticket: Arc<Ticket>,
    /// The submitting system, which the outcome is reported to.
    core: Arc<SystemCore>,
    ended: Vec<WireResult>,
}

impl NatsLink {
    /// Publishes `payload` to `entry` as the next input of this run; its outcome completes
    /// `ticket`.
    pub(crate) async fn submit(
        self: &Arc<Self>,
        entry: &str,
        core: &Arc<SystemCore>,
        ticket: Arc<Ticket>,
        payload: Value,
    ) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.start_collector().await {
            return ticket.finish_branch(core, error_outcome(&ticket, e));
        }
        let wire = WireMessage {
            run: self.run.to_string(),
            seq,
            input: ticket.input,
            trace: ticket.trace_id,
            path: Vec::new(),
            hops: Vec::new(),
            payload,
            run_id: ticket.run.as_deref().map(str::to_string),
        };
        let publication = Publication {
            subject: self.names.agent_subject(entry),
            id: message_id(&self.run, seq, &[], "0"),
            body: to_bytes(&wire),
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                seq,
                Pending {
                    ticket,
                    core: Arc::clone(core),
                    ended: Vec::with_capacity(1),
                },
            );
        self.send(Job {
            publications: vec![publication],
            done: Done::Submitted(seq),
            slot: None,
        });
    }

    /// Input `seq` could not be submitted: its outcome is an error.
    pub(crate) fn refuse(&self, seq: u64, error: String) {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&seq);
        if let Some(pending) = pending {
            let outcome = error_outcome(&pending.ticket, error);
            pending.ticket.finish_branch(&pending.core, outcome);
        }
    }

    /// Reads this run's results (once, before the first submission).
    async fn start_collector(self: &Arc<Self>) -> Result<(), String> {
        let started = self
            .collector
            .get_or_init(|| async {
                let subject = self.names.result_subject(&self.run);
                let stream = self
                    .js
                    .get_stream(&self.names.results_stream)
                    .await
                    .map_err(|e| format!("cannot open stream `{}`: {e}", self.names.results_stream))?;
                let consumer = stream
                    .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                        filter_subject: subject.clone(),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| format!("cannot read results on {subject}: {e}"))?;
                let mut results = consumer
                    .messages()
                    .await
                    .map_err(|e| format!("cannot read results on {subject}: {e}"))?;
                let link = Arc::downgrade(self);
                let task = tokio::spawn(async move {
                    while let Some(next) = results.next().await {
                        let Some(link) = link.upgrade() else { break };
                        match next {
                            Ok(message) => match serde_json::from_slice::<WireResult>(&message.payload) {
                                Ok(ended) => link.ended(ended),
                                Err(e) => tracing::warn!(error = %e, "unreadable result on NATS; ignored"),
                            },
                            Err(e) => tracing::warn!(error = %e, "reading NATS results"),
                        }
                    }
                });
                self.tasks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(task);
                Ok(())
            })
            .await;
        started.clone()
    }

    /// One branch of an input ended; the last one completes the input's ticket. Duplicates
    /// (a redelivered hop that re-published its result after the duplicate window) are
    /// dropped here.
    fn ended(&self, ended: WireResult) {
        let complete = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let Some(entry) = pending.get_mut(&ended.seq) else {
                return;
            };
            if entry.ended.iter().any(|e| e.path == ended.path) {
                return;
            }
            let seq = ended.seq;
            entry.ended.push(ended);
            let paths: Vec<&[Fork]> = entry.ended.iter().map(|e| e.path.as_slice()).collect();
            if !covers_tree(&paths) {
                return;
            }
            pending.remove(&seq)
        };
        let Some(Pending {
            ticket,
            core,
            ended,
        }) = complete
        else {
            return;
        };
        ticket.add_branches(ended.len() - 1);
        for branch in ended {
            let outcome = Outcome::branch_end(
                ticket.input,
                ticket.trace_id_hex(),
                branch.status,
                branch.agent,
                branch.hops,
                branch.output,
                branch.reason,
            );
            ticket.finish_branch(&core, outcome);
        }
    }
}

fn error_outcome(ticket: &Ticket, error: String) -> Outcome {
    Outcome::refused(ticket.input, ticket.trace_id_hex(), error)
}
