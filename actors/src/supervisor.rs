//! The supervisor of one manager's plugin actors: it spawns them linked to itself, decides
//! what a failure costs (restart the failed plugin, all of them, or the rest after it), counts
//! restarts against the intensity, and gives up and escalates when a plugin keeps failing.
//!
//! Plugin panics are caught inside the plugin actor, which then asks here what to do
//! ([`SupervisorMsg::ChildFailed`]) before it takes its next message: the restart happens in
//! place, with the mailbox intact. A hot reload swap or rollback tells it the plugin's version
//! changed ([`SupervisorMsg::VersionChanged`]): the restart history of the old version does not
//! count against the new one. ractor's own supervision events still arrive for actors that
//! die some other way; they are reported, never allowed to stop the supervisor (ractor's default
//! would stop it on the first child exit).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bilayer_plugins::{PluginError, PluginState};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::broadcast;

use crate::plugin_actor::{PluginActor, PluginActorArgs, PluginMsg};
use crate::registry::PluginShared;
use crate::supervision::{RestartIntensity, SupervisionStrategy, SupervisorEvent};

/// The supervisor's answer to a failed plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartDecision {
    Restart,
    GiveUp,
}

pub(crate) enum SupervisorMsg {
    /// Spawn a plugin actor linked to this supervisor.
    Spawn {
        args: PluginActorArgs,
        reply: RpcReplyPort<Result<ActorRef<PluginMsg>, PluginError>>,
    },
    /// A plugin failed; the supervisor answers whether it should restart.
    ChildFailed {
        id: String,
        reason: String,
        reply: RpcReplyPort<RestartDecision>,
    },
    /// A plugin was unregistered; forget it.
    Forget { id: String },
    /// A plugin now runs another version: swapped in by a hot reload, or rolled back to its
    /// last known-good one. Its restart history belongs to the old version and is dropped.
    VersionChanged {
        id: String,
        from: String,
        to: String,
        rolled_back: bool,
    },
}

pub(crate) struct SupervisorConfig {
    pub name: String,
    pub strategy: SupervisionStrategy,
    pub intensity: RestartIntensity,
    pub events: broadcast::Sender<SupervisorEvent>,
}

pub(crate) struct PluginSupervisor;

struct Child {
    actor: ActorRef<PluginMsg>,
    shared: Arc<PluginShared>,
}

pub(crate) struct SupervisorState {
    config: SupervisorConfig,
    /// Children keyed by registration order (rest_for_one needs the order).
    children: BTreeMap<u64, Child>,
    restart_times: HashMap<String, VecDeque<Instant>>,
}

impl SupervisorState {
    fn emit(&self, event: SupervisorEvent) {
        match &event {
            SupervisorEvent::Failed { plugin_id, reason } => {
                tracing::warn!(supervisor = %self.config.name, plugin = %plugin_id, %reason, "plugin failed")
            }
            SupervisorEvent::GaveUp {
                plugin_id,
                restarts,
            } => tracing::error!(
                supervisor = %self.config.name, plugin = %plugin_id, restarts,
                "restart intensity exceeded; plugin is now failed"
            ),
            SupervisorEvent::Escalated { reason, .. } => {
                tracing::error!(supervisor = %self.config.name, %reason, "escalated")
            }
            other => tracing::info!(supervisor = %self.config.name, event = ?other, "supervision"),
        }
        // Nobody listening is fine: events are for whoever subscribed.
        let _ = self.config.events.send(event);
    }

    fn child_by_id(&self, id: &str) -> Option<&Child> {
        self.children.values().find(|c| &*c.shared.id == id)
    }

    /// Applies the restart intensity and the strategy to a failure of `id`.
    fn on_child_failed(&mut self, id: &str, reason: String) -> RestartDecision {
        self.emit(SupervisorEvent::Failed {
            plugin_id: id.to_string(),
            reason: reason.clone(),
        });
        let Some(failed) = self.child_by_id(id) else {
            return RestartDecision::GiveUp;
        };
        let failed_order = failed.shared.order;
        let failed_shared = failed.shared.clone();

        let now = Instant::now();
        let window = self.config.intensity.within;
        let times = self.restart_times.entry(id.to_string()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            times.pop_front();
        }
        if times.len() as u32 >= self.config.intensity.max_restarts {
            failed_shared.set_state(PluginState::Error);
            let restarts = failed_shared.stats.restarts();
            self.emit(SupervisorEvent::GaveUp {
                plugin_id: id.to_string(),
                restarts,
            });
            self.emit(SupervisorEvent::Escalated {
                supervisor: self.config.name.clone(),
                reason: format!(
                    "plugin `{id}` exceeded {} restarts within {:?}: {reason}",
                    self.config.intensity.max_restarts, window
                ),
            });
            return RestartDecision::GiveUp;
        }
        times.push_back(now);

        let restarts = failed_shared.stats.record_restart();
        self.emit(SupervisorEvent::Restarted {
            plugin_id: id.to_string(),
            cause: id.to_string(),
            restarts,
        });
        let siblings: Vec<&Child> = match self.config.strategy {
            SupervisionStrategy::OneForOne => Vec::new(),
            SupervisionStrategy::OneForAll => self
                .children
                .values()
                .filter(|c| c.shared.order != failed_order)
                .collect(),
            SupervisionStrategy::RestForOne => self
                .children
                .range(failed_order + 1..)
                .map(|(_, c)| c)
                .collect(),
        };
        let mut restarted = Vec::new();
        for sibling in siblings {
            if sibling
                .actor
                .send_message(PluginMsg::Restart {
                    cause: id.to_string(),
                })
                .is_ok()
            {
                restarted.push((
                    sibling.shared.id.to_string(),
                    sibling.shared.stats.record_restart(),
                ));
            }
        }
        for (plugin_id, restarts) in restarted {
            self.emit(SupervisorEvent::Restarted {
                plugin_id,
                cause: id.to_string(),
                restarts,
            });
        }
        RestartDecision::Restart
    }
}

impl Actor for PluginSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorConfig;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        config: SupervisorConfig,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            config,
            children: BTreeMap::new(),
            restart_times: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Spawn { args, reply } => {
                let shared = args.shared.clone();
                let spawned = Actor::spawn_linked(None, PluginActor, args, myself.get_cell()).await;
                let answer = match spawned {
                    Ok((actor, _join)) => {
                        state.children.insert(
                            shared.order,
                            Child {
                                actor: actor.clone(),
                                shared: shared.clone(),
                            },
                        );
                        state.emit(SupervisorEvent::Started {
                            plugin_id: shared.id.to_string(),
                        });
                        Ok(actor)
                    }
                    Err(e) => Err(PluginError::execution(format!(
                        "could not start the actor of plugin `{}`: {e}",
                        shared.id
                    ))),
                };
                let _ = reply.send(answer);
            }
            SupervisorMsg::ChildFailed { id, reason, reply } => {
                let decision = state.on_child_failed(&id, reason);
                let _ = reply.send(decision);
            }
            SupervisorMsg::Forget { id } => {
                state.children.retain(|_, c| *c.shared.id != *id);
                state.restart_times.remove(&id);
            }
            SupervisorMsg::VersionChanged {
                id,
                from,
                to,
                rolled_back,
            } => {
                state.restart_times.remove(&id);
                state.emit(if rolled_back {
                    SupervisorEvent::RolledBack {
                        plugin_id: id,
                        from_version: from,
                        to_version: to,
                    }
                } else {
                    SupervisorEvent::Swapped {
                        plugin_id: id,
                        from_version: from,
                        to_version: to,
                    }
                });
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(order) = state.order_of(cell.get_id()) {
                    let child = state.children.remove(&order).expect("order was just found");
                    state.emit(SupervisorEvent::Stopped {
                        plugin_id: child.shared.id.to_string(),
                    });
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                // Plugin panics are caught inside the actor; reaching here means the actor
                // itself died. Its instance is gone with it, so the plugin is marked failed.
                if let Some(order) = state.order_of(cell.get_id()) {
                    let child = state.children.remove(&order).expect("order was just found");
                    child.shared.set_state(PluginState::Error);
                    let plugin_id = child.shared.id.to_string();
                    state.emit(SupervisorEvent::Failed {
                        plugin_id: plugin_id.clone(),
                        reason: error.to_string(),
                    });
                    state.emit(SupervisorEvent::GaveUp {
                        restarts: child.shared.stats.restarts(),
                        plugin_id,
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl SupervisorState {
    fn order_of(&self, actor: ractor::ActorId) -> Option<u64> {
        self.children
            .iter()
            .find(|(_, c)| c.actor.get_id() == actor)
            .map(|(order, _)| *order)
    }
}
