//! Agent systems: named agents, each backed by one plugin in its own actor, exchanging
//! messages routed by the `next_agent` field of each output.
//!
//! ```text
//! AgentSystem::send(input) ─► admission (bounded in-flight) ─► entry agent's inbox
//!   ─► its actor, one turn per Drain: execute_json_in_place_now (answered at once), else
//!      execute_json_in_place under the hop timeout ─► SystemCore::forward: routing policy,
//!      else output.next_agent ─► next agent's inbox ─► … ─► no next_agent: terminal
//!   ─► the input's ticket completes;  unknown agent / hop limit / failure: dead letter
//! ```
//!
//! Supervision tree: the system's `PluginManager` supervisor → one actor per agent (its plugin)
//! and per support plugin (callable by agents through `call_plugin`).
//!
//! **Backpressure.** ractor mailboxes are unbounded, so the system bounds admission instead: at
//! most `max_in_flight` inputs (default 16 384) are between admission and outcome; `send` and
//! `submit` wait for a slot. For `submit`, a slot is freed only when the consumer *receives*
//! the outcome from the stream, so an unread stream slows producers down instead of growing
//! memory. Dropping the stream frees slots as outcomes are produced.
//!
//! ```
//! use bilayer_actors::AgentSystem;
//! # use bilayer_plugins::*;
//! # struct Step(PluginMetadata, Option<&'static str>);
//! # #[async_trait]
//! # impl AgentPlugin for Step {
//! #     fn metadata(&self) -> &PluginMetadata { &self.0 }
//! #     async fn execute(&mut self, _input: String) -> PluginResult<String> {
//! #         Ok(match self.1 { Some(next) => format!(r#"{{"next_agent":"{next}"}}"#), None => "{\"done\":true}".into() })
//! #     }
//! # }
//! # fn step(next: Option<&'static str>) -> Step { Step(PluginMetadata::new("step", "Step", PluginType::Tool), next) }
//! # #[tokio::main]
//! # async fn main() -> PluginResult<()> {
//! let system = AgentSystem::builder()
//!     .agent("intake", step(Some("manager")))
//!     .agent("manager", step(None))
//!     .build()
//!     .await?;
//! let outcome = system.send(serde_json::json!({"id": 1})).await;
//! assert!(outcome.is_ok());
//! assert_eq!(outcome.hops, ["intake", "manager"]);
//! system.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod carrier;
pub(crate) mod core;
mod dead_letter;
mod envelope;
mod inbox;
mod outcome;
#[cfg(feature = "rhai")]
mod rhai_routing;
mod routing;

#[cfg(feature = "nats")]
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bilayer_plugins::{AgentPlugin, PluginError, PluginResult};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

#[cfg(feature = "journal")]
pub(crate) use self::core::branch_of_fanout;
pub use dead_letter::DeadLetter;
pub(crate) use dead_letter::DeadLetterReason;
#[cfg(feature = "journal")]
pub(crate) use envelope::deliver_outcome;
pub(crate) use envelope::{Envelope, OutcomeSink, Ticket};
pub(crate) use inbox::{Inbox, MAX_PER_TURN};
pub use outcome::{Outcome, OutcomeStatus};
#[cfg(feature = "rhai")]
pub use rhai_routing::RhaiRoutingPolicy;
#[cfg(any(feature = "nats", feature = "journal"))]
pub(crate) use routing::Next;
pub use routing::RoutingPolicy;

use self::carrier::Carrier;
pub(crate) use self::core::SystemCore;
use self::core::Totals;
use self::dead_letter::DeadLetterQueue;
use self::routing::RoutingSlot;
#[cfg(feature = "nats")]
use crate::nats::NatsLink;
use crate::transport::Transport;
use crate::{PluginManager, PluginOptions, RestartIntensity, SupervisionStrategy};

/// Default bound on inputs between admission and outcome.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16_384;
/// Default bound on agents visited by one message (a routing loop ends here).
pub const DEFAULT_MAX_HOPS: usize = 32;

/// How many branches one input may end in by default (see
/// [`AgentSystemBuilder::max_branches`]).
pub const DEFAULT_MAX_BRANCHES: u32 = 1024;

/// Builds an [`AgentSystem`].
pub struct AgentSystemBuilder {
    name: String,
    agents: Vec<(String, Box<dyn AgentPlugin>, PluginOptions)>,
    plugins: Vec<(Box<dyn AgentPlugin>, PluginOptions)>,
    entry: Option<String>,
    routing: Option<Arc<dyn RoutingPolicy>>,
    max_hops: usize,
    max_branches: u32,
    max_in_flight: usize,
    strategy: SupervisionStrategy,
    intensity: RestartIntensity,
    hop_timeout: Option<Duration>,
    dead_letter_capacity: usize,
    dead_letter_payloads: bool,
    transport: Transport,
    remote_agents: Vec<String>,
    #[cfg(feature = "journal")]
    journal: Option<Arc<crate::journal::RunJournal>>,
}

/// The settings and the agents' names; plugins and the routing policy show as names or
/// whether they are set.
impl std::fmt::Debug for AgentSystemBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let agents: Vec<&str> = self
            .agents
            .iter()
            .map(|(name, _, _)| name.as_str())
            .collect();
        let plugins: Vec<&str> = self
            .plugins
            .iter()
            .map(|(plugin, _)| plugin.metadata().id.as_str())
            .collect();
        f.debug_struct("AgentSystemBuilder")
            .field("name", &self.name)
            .field("agents", &agents)
            .field("plugins", &plugins)
            .field("entry", &self.entry)
            .field("routing", &self.routing.is_some())
            .field("max_hops", &self.max_hops)
            .field("max_branches", &self.max_branches)
            .field("max_in_flight", &self.max_in_flight)
            .field("strategy", &self.strategy)
            .field("intensity", &self.intensity)
            .field("hop_timeout", &self.hop_timeout)
            .finish_non_exhaustive()
    }
}

impl AgentSystemBuilder {
    /// Names the system (its manager, in logs and metrics). Default `agents`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds an agent backed by `plugin`. The first agent added is the entry agent unless
    /// [`AgentSystemBuilder::entry`] says otherwise.
    pub fn agent<P: AgentPlugin>(self, name: impl Into<String>, plugin: P) -> Self {
        self.agent_with(name, Box::new(plugin), PluginOptions::new())
    }

    /// Adds an agent backed by a boxed plugin, with registration options (config, factory).
    pub fn agent_with(
        mut self,
        name: impl Into<String>,
        plugin: Box<dyn AgentPlugin>,
        options: PluginOptions,
    ) -> Self {
        self.agents.push((name.into(), plugin, options));
        self
    }

    /// Adds a support plugin that agents can call through `call_plugin` but that receives no
    /// routed messages. It serves up to [`DEFAULT_SUPPORT_CONCURRENCY`](crate::DEFAULT_SUPPORT_CONCURRENCY)
    /// calls at once unless its options set `concurrency`.
    pub fn plugin<P: AgentPlugin>(mut self, plugin: P) -> Self {
        self.plugins.push((Box::new(plugin), PluginOptions::new()));
        self
    }

    /// Adds a boxed support plugin with options.
    pub fn plugin_with(mut self, plugin: Box<dyn AgentPlugin>, options: PluginOptions) -> Self {
        self.plugins.push((plugin, options));
        self
    }

    /// The agent every input is delivered to first.
    pub fn entry(mut self, agent: impl Into<String>) -> Self {
        self.entry = Some(agent.into());
        self
    }

    /// A routing policy consulted after every agent (before the output's `next_agent`).
    pub fn routing_policy(mut self, policy: Arc<dyn RoutingPolicy>) -> Self {
        self.routing = Some(policy);
        self
    }

    /// How many agents one input may pass through (default [`DEFAULT_MAX_HOPS`], at least
    /// 1); a message past it is dead-lettered.
    pub fn max_hops(mut self, max_hops: usize) -> Self {
        self.max_hops = max_hops.max(1);
        self
    }

    /// How many branches one input may end in (default [`DEFAULT_MAX_BRANCHES`]). The hop
    /// limit bounds how deep an input travels; this bounds how wide: an agent that fans out
    /// to two copies of itself would otherwise double its branches every hop until memory
    /// runs out. Checked at each fan-out against the product of the fan-out widths on the
    /// branch's way (a bound on the branches the input can end in that every process of a
    /// distributed system computes alike): a fan-out that would pass it is not made, and its
    /// message is dead-lettered with a reason naming the limit.
    pub fn max_branches(mut self, max_branches: u32) -> Self {
        self.max_branches = max_branches.max(1);
        self
    }

    /// How many inputs may be between admission and outcome at once (default
    /// [`DEFAULT_MAX_IN_FLIGHT`], at least 1); `send` and `submit` wait for a free slot.
    pub fn max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// Which agents restart when one fails (default one_for_one).
    pub fn strategy(mut self, strategy: SupervisionStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// At most `max_restarts` restarts of an agent within `within` (default 3 in 5 s).
    pub fn restart_intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.intensity = RestartIntensity {
            max_restarts,
            within,
        };
        self
    }

    /// Bound on one agent's processing of one message (default 30 s); past it the message is
    /// dead-lettered.
    pub fn hop_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.hop_timeout = timeout;
        self
    }

    /// Whether a dead letter from a failed agent carries the message the agent received
    /// (default `true`). Keeping it costs a copy of every message before every hop, for
    /// plugins that cannot read a borrowed message (docs/benchmarks.md, section "W1 order
    /// routing", has the figure); `false` saves the copy and such dead letters carry `null`
    /// (routing failures always carry the message).
    pub fn dead_letter_payloads(mut self, keep: bool) -> Self {
        self.dead_letter_payloads = keep;
        self
    }

    /// How many recent dead letters `AgentSystem::dead_letters()` keeps (all are counted).
    pub fn dead_letter_capacity(mut self, capacity: usize) -> Self {
        self.dead_letter_capacity = capacity.max(1);
        self
    }

    /// How agents exchange messages: in this process (default), or over NATS JetStream
    /// across processes (`Transport::Nats`, feature `nats`).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Makes every input a durable run journaled in `journal`'s store (feature `journal`,
    /// through `sqlite` or `postgres`): each hop's output goes on only once the journal holds
    /// it, the calls hops make are recorded (and answered from the journal when a hop runs
    /// again), and each outcome carries its `run_id`. Without one, nothing is journaled and
    /// nothing slows down.
    #[cfg(feature = "journal")]
    pub fn journal(mut self, journal: impl Into<Arc<crate::journal::RunJournal>>) -> Self {
        self.journal = Some(journal.into());
        self
    }

    /// Declares an agent served by another process (NATS transport only): messages routed
    /// to it are published to its subject instead of being dead-lettered as unknown. Without
    /// the `nats` feature, `build` refuses a system that declares one.
    pub fn remote_agent(mut self, name: impl Into<String>) -> Self {
        self.remote_agents.push(name.into());
        self
    }

    /// Spawns every agent and plugin under the system's supervisor, loads and starts them.
    /// With the NATS transport, also connects, creates the streams if missing, and starts
    /// pulling the local agents' messages.
    pub async fn build(self) -> PluginResult<AgentSystem> {
        #[cfg(feature = "nats")]
        let nats_config = match &self.transport {
            Transport::InProcess => None,
            Transport::Nats(config) => Some(config.clone()),
        };
        #[cfg(not(feature = "nats"))]
        let nats_config: Option<std::convert::Infallible> = match self.transport {
            Transport::InProcess => None,
        };
        if nats_config.is_none() && !self.remote_agents.is_empty() {
            return Err(PluginError::Config(format!(
                "remote agents ({}) need the NATS transport; add .transport(Transport::Nats(..))",
                self.remote_agents.join(", ")
            )));
        }
        if self.agents.is_empty() && self.remote_agents.is_empty() {
            return Err(PluginError::Config(
                "an agent system needs at least one agent; add one with .agent(name, plugin)"
                    .into(),
            ));
        }
        let all_names: Vec<&str> = self
            .agents
            .iter()
            .map(|(name, _, _)| name.as_str())
            .chain(self.remote_agents.iter().map(String::as_str))
            .collect();
        let entry = self
            .entry
            .clone()
            .unwrap_or_else(|| all_names[0].to_string());
        if !all_names.contains(&entry.as_str()) {
            return Err(PluginError::Config(format!(
                "entry agent `{entry}` is not one of the agents ({})",
                all_names.join(", ")
            )));
        }
        #[cfg(feature = "nats")]
        if nats_config.is_some() {
            let mut subjects = HashMap::new();
            for name in &all_names {
                if let Some(other) = subjects.insert(crate::nats::subject_token(name), *name) {
                    return Err(PluginError::Config(format!(
                        "agents `{other}` and `{name}` map to the same NATS subject; rename one \
                         (subjects keep letters, digits, - and _)"
                    )));
                }
            }
        }
        #[cfg(feature = "nats")]
        let remote_agents: HashSet<Arc<str>> = self
            .remote_agents
            .iter()
            .map(|name| Arc::<str>::from(name.as_str()))
            .collect();
        let carrier = match &nats_config {
            #[cfg(feature = "nats")]
            Some(config) => Carrier::Nats(NatsLink::connect(config, &self.name).await?),
            #[cfg(not(feature = "nats"))]
            Some(never) => match *never {},
            None => Carrier::InProcess,
        };
        let manager = PluginManager::builder(self.name.clone())
            .strategy(self.strategy)
            .restart_intensity(self.intensity.max_restarts, self.intensity.within)
            .execute_timeout(self.hop_timeout)
            .build();
        for (plugin, options) in self.plugins {
            let options = options.concurrency_or(crate::DEFAULT_SUPPORT_CONCURRENCY);
            manager.register_with(plugin, options).await?;
        }
        let mut agent_names = Vec::with_capacity(self.agents.len());
        for (name, plugin, options) in self.agents {
            manager
                .register_with(plugin, options.id(name.clone()))
                .await?;
            agent_names.push(name);
        }
        manager.load_all().await?;
        manager.start_all().await?;

        let mut actors = Vec::with_capacity(agent_names.len());
        for name in &agent_names {
            let actor = manager
                .actor(name)
                .ok_or_else(|| PluginError::NotFound(name.clone()))?;
            actors.push((Arc::<str>::from(name.as_str()), actor));
        }
        let (stream_tx, stream_rx) = mpsc::unbounded_channel();
        let core = Arc::new_cyclic(|core| SystemCore {
            agents: actors
                .into_iter()
                .map(|(name, actor)| {
                    let inbox = Arc::new(inbox::Inbox::new(core.clone()));
                    (name, inbox::AgentAddress { actor, inbox })
                })
                .collect(),
            outcomes: stream_tx,
            #[cfg(feature = "nats")]
            remote_agents,
            carrier,
            routing: RoutingSlot::new(self.routing),
            max_hops: self.max_hops,
            max_branches: self.max_branches,
            keep_failed_payloads: self.dead_letter_payloads,
            dead_letters: DeadLetterQueue::new(self.dead_letter_capacity),
            totals: Totals::default(),
            #[cfg(feature = "journal")]
            journal: self.journal,
        });
        for (name, address) in &core.agents {
            // Each actor then owns the messages left in its inbox should it ever stop: they
            // become dead letters.
            address.introduce(name).await?;
        }
        core.carrier.serve(&core, &agent_names);
        Ok(AgentSystem {
            inner: Arc::new(SystemInner {
                manager,
                core,
                entry: entry.as_str().into(),
                agent_names,
                admission: Arc::new(Semaphore::new(self.max_in_flight)),
                max_in_flight: self.max_in_flight,
                next_input: AtomicU64::new(1),
                trace_seed: trace_seed(),
                closed: AtomicBool::new(false),
                stream_rx: Mutex::new(Some(stream_rx)),
            }),
        })
    }
}

/// A running agent system. Cheap to clone.
#[derive(Clone)]
pub struct AgentSystem {
    inner: Arc<SystemInner>,
}

/// The manager, the entry agent, the agents and the inputs in flight.
impl std::fmt::Debug for AgentSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &self.inner;
        let in_flight = inner
            .max_in_flight
            .saturating_sub(inner.admission.available_permits());
        f.debug_struct("AgentSystem")
            .field("manager", &inner.manager.name())
            .field("entry", &inner.entry)
            .field("agents", &inner.agent_names)
            .field("in_flight", &in_flight)
            .field("closed", &inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct SystemInner {
    manager: PluginManager,
    core: Arc<SystemCore>,
    entry: Arc<str>,
    agent_names: Vec<String>,
    admission: Arc<Semaphore>,
    max_in_flight: usize,
    next_input: AtomicU64,
    trace_seed: u64,
    closed: AtomicBool,
    stream_rx: Mutex<Option<mpsc::UnboundedReceiver<(Outcome, OwnedSemaphorePermit)>>>,
}

/// The last handle is gone without a `shutdown`. Inputs already admitted still end, each with
/// its outcome on the stream: their messages hold no reference to the system (an `Arc` per
/// input would cross cores on every input), so a task holds the core until every admitted
/// input's outcome has been received or the stream dropped. Agents keep serving meanwhile if
/// something else keeps the manager; otherwise the manager's drop stops them and what is left
/// in their inboxes becomes dead letters.
impl Drop for SystemInner {
    fn drop(&mut self) {
        if self.admission.is_closed() || self.admission.available_permits() >= self.max_in_flight {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let core = Arc::clone(&self.core);
        let admission = Arc::clone(&self.admission);
        let all = u32::try_from(self.max_in_flight).unwrap_or(u32::MAX);
        runtime.spawn(async move {
            let _accounted_for = admission.acquire_many(all).await;
            drop(core);
        });
    }
}

/// Totals of the outcomes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SystemTotals {
    /// Inputs a terminal agent answered.
    pub ok: u64,
    /// Inputs refused before any agent saw them.
    pub error: u64,
    /// Inputs that ended in the dead-letter queue.
    pub dead_letter: u64,
}

/// The outcomes of inputs given to [`AgentSystem::submit`], in completion order.
pub struct OutcomeStream {
    rx: mpsc::UnboundedReceiver<(Outcome, OwnedSemaphorePermit)>,
}

impl std::fmt::Debug for OutcomeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeStream")
            .field("waiting", &self.rx.len())
            .finish()
    }
}

impl OutcomeStream {
    /// The next outcome; `None` once the system is gone. Receiving frees the input's
    /// admission slot.
    pub async fn recv(&mut self) -> Option<Outcome> {
        self.rx.recv().await.map(|(outcome, _permit)| outcome)
    }

    /// The next outcome if one is already waiting, without waiting for one (e.g. to write
    /// every finished outcome out before an interrupted process exits).
    pub fn try_recv(&mut self) -> Option<Outcome> {
        self.rx.try_recv().ok().map(|(outcome, _permit)| outcome)
    }
}

impl AgentSystem {
    /// A builder with the defaults: named `agents`, in-process transport, hop limit
    /// [`DEFAULT_MAX_HOPS`], [`DEFAULT_MAX_IN_FLIGHT`] inputs in flight, 30 s hop timeout.
    pub fn builder() -> AgentSystemBuilder {
        AgentSystemBuilder {
            name: "agents".to_string(),
            agents: Vec::new(),
            plugins: Vec::new(),
            entry: None,
            routing: None,
            max_hops: DEFAULT_MAX_HOPS,
            max_branches: DEFAULT_MAX_BRANCHES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            strategy: SupervisionStrategy::default(),
            intensity: RestartIntensity::default(),
            hop_timeout: Some(crate::DEFAULT_EXECUTE_TIMEOUT),
            dead_letter_capacity: 10_000,
            dead_letter_payloads: true,
            transport: Transport::InProcess,
            remote_agents: Vec::new(),
            #[cfg(feature = "journal")]
            journal: None,
        }
    }

    /// The manager hosting the agents' plugins (for listing, statistics, supervision events).
    pub fn manager(&self) -> &PluginManager {
        &self.inner.manager
    }

    /// The agent every input is delivered to first.
    pub fn entry(&self) -> &str {
        &self.inner.entry
    }

    /// The agents' names, in the order they were added.
    pub fn agents(&self) -> &[String] {
        &self.inner.agent_names
    }

    /// Sends one input to the entry agent and waits for its outcome.
    pub async fn send(&self, input: Value) -> Outcome {
        let number = self.inner.next_input.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        if let Err(refused) = self
            .admit(number, input, |_| OutcomeSink::Reply(reply))
            .await
        {
            return refused;
        }
        answer.await.unwrap_or_else(|_| {
            self.refusal(
                number,
                "the system stopped before the input finished".into(),
            )
        })
    }

    /// Parses `input` as JSON and sends it; malformed JSON is an `error` outcome.
    pub async fn send_str(&self, input: &str) -> Outcome {
        match serde_json::from_str(input) {
            Ok(value) => self.send(value).await,
            Err(e) => {
                let number = self.inner.next_input.fetch_add(1, Ordering::Relaxed);
                self.refusal(number, format!("input is not valid JSON: {e}"))
            }
        }
    }

    /// Takes the stream on which the outcomes of [`AgentSystem::submit`] arrive. There is one
    /// stream per system; a second call returns `None`.
    pub fn outcome_stream(&self) -> Option<OutcomeStream> {
        self.inner
            .stream_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map(|rx| OutcomeStream { rx })
    }

    /// Submits one input without waiting for its outcome (which arrives on the outcome
    /// stream). Waits only for an admission slot. Returns the input's number.
    pub async fn submit(&self, input: Value) -> u64 {
        let number = self.inner.next_input.fetch_add(1, Ordering::Relaxed);
        self.submit_numbered(number, input).await;
        number
    }

    /// [`AgentSystem::submit`] with a caller-chosen input number (e.g. a line number).
    pub async fn submit_numbered(&self, number: u64, input: Value) {
        if let Err(refused) = self.admit(number, input, |_| OutcomeSink::Stream).await {
            self.report_refusal(refused).await;
        }
    }

    /// Reports an input that never entered the system (e.g. a malformed line) on the outcome
    /// stream, so a consumer counting outcomes sees every input.
    pub async fn submit_refused(&self, number: u64, error: String) {
        let refused = self.refusal(number, error);
        self.report_refusal(refused).await;
    }

    /// Totals of the outcomes so far.
    pub fn totals(&self) -> SystemTotals {
        let t = &self.inner.core.totals;
        SystemTotals {
            ok: t.ok.load(Ordering::Relaxed),
            error: t.error.load(Ordering::Relaxed),
            dead_letter: t.dead_letter.load(Ordering::Relaxed),
        }
    }

    /// The most recent dead letters (see `dead_letter_capacity`).
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.inner.core.dead_letters.recent()
    }

    /// How many messages were dead-lettered in total.
    pub fn dead_letter_count(&self) -> u64 {
        self.inner.core.dead_letters.total()
    }

    /// Replaces the routing policy (hot reload); `None` removes it.
    pub fn set_routing_policy(&self, policy: Option<Arc<dyn RoutingPolicy>>) {
        self.inner.core.routing.set(policy);
    }

    /// Stops admitting inputs, waits until every accepted input has its outcome delivered
    /// (outcomes on the stream must be received, or the stream dropped), then stops the
    /// agents and plugins in reverse dependency order.
    pub async fn shutdown(&self) -> PluginResult<()> {
        self.inner.closed.store(true, Ordering::SeqCst);
        let all = u32::try_from(self.inner.max_in_flight).unwrap_or(u32::MAX);
        let drained = self
            .inner
            .admission
            .acquire_many(all)
            .await
            .map_err(|_| PluginError::execution("the system is already shut down"))?;
        self.inner.admission.close();
        drop(drained);
        // Stop taking messages in (over NATS: pulling), let those already taken finish.
        self.inner.core.carrier.stop().await;
        self.inner.manager.shutdown().await
    }

    /// Goes on with a run of an earlier process, from the journal (this system's journal,
    /// resumed): `record` is the run as the store holds it, `input` the input it is for now
    /// (the same line of the same file). Its outcome arrives on the outcome stream, as a
    /// submitted input's does: read back (`replayed`) if the run had ended; otherwise the run
    /// continues from its last recorded hop (the calls of a hop that was running are answered
    /// from the journal when it runs again). A journal that cannot be read, or an input that
    /// is not the one journaled, is that run's `error` outcome.
    #[cfg(feature = "journal")]
    pub async fn resume_run(&self, record: crate::journal::RunRecord, input: Value) {
        use crate::journal::resume::{plan, Resume};
        let number = record.run.input_no;
        let core = &self.inner.core;
        let Some(journal) = core.journal() else {
            return self.submit_numbered(number, input).await;
        };
        let run_id = Arc::clone(&record.run.run_id);
        let trace_id = self.trace_id(number);
        match plan(record, &input, &envelope::trace_id_hex(trace_id)) {
            Err(reason) => self.report_refusal(self.refusal(number, reason)).await,
            Ok(Resume::Ended(outcome)) => self.report_refusal(outcome).await,
            Ok(Resume::Fresh(input, calls)) => {
                journal.expect_replay(calls);
                if let Err(refused) = self
                    .admit_run(number, input, |_| OutcomeSink::Stream, Some(run_id))
                    .await
                {
                    self.report_refusal(refused).await;
                }
            }
            Ok(Resume::Continue(plan)) => {
                let Ok(permit) = self.inner.admission.clone().acquire_owned().await else {
                    let refused = self.refusal(number, "the system is shut down".into());
                    return self.report_refusal(refused).await;
                };
                journal.expect_replay(plan.interrupted_calls);
                let remaining = plan.frontier.len();
                let ticket = Ticket::resumed(
                    number,
                    trace_id,
                    permit,
                    run_id,
                    remaining,
                    plan.fanned_out,
                    plan.finished,
                );
                if remaining == 0 {
                    // Every branch had ended; only the outcome was not recorded yet.
                    return ticket.finish_resumed(core);
                }
                for resumed in plan.frontier {
                    let envelope = Envelope {
                        payload: resumed.payload,
                        hops: resumed.hops,
                        breadth: resumed.breadth,
                        ticket: Arc::clone(&ticket),
                        branch: resumed.branch,
                    };
                    core.deliver(envelope, &resumed.target);
                }
            }
        }
    }

    async fn admit(
        &self,
        number: u64,
        input: Value,
        sink: impl FnOnce(u64) -> OutcomeSink,
    ) -> Result<(), Outcome> {
        self.admit_run(number, input, sink, None).await
    }

    /// Admits an input; `resumed` is the id of its run when the journal already holds the
    /// run (it is not recorded again).
    async fn admit_run(
        &self,
        number: u64,
        input: Value,
        sink: impl FnOnce(u64) -> OutcomeSink,
        resumed: Option<Arc<str>>,
    ) -> Result<(), Outcome> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(self.refusal(number, "the system is shutting down".into()));
        }
        // Always through the async acquire, even when a slot is free: it spends tokio's
        // cooperative budget, so a producer submitting in a loop yields every 128 inputs and the
        // agents keep up in small batches (`try_acquire` first cost a third of W1's throughput).
        let permit = self
            .inner
            .admission
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.refusal(number, "the system is shut down".into()))?;
        let core = &self.inner.core;
        #[cfg(feature = "journal")]
        let run = match (core.journal(), resumed) {
            (Some(_), Some(run_id)) => Some(run_id),
            (Some(journal), None) => {
                let run_id = journal.run_id(number);
                journal.record_run(&run_id, number, &input);
                Some(run_id)
            }
            (None, _) => None,
        };
        #[cfg(not(feature = "journal"))]
        let run: Option<Arc<str>> = {
            let _ = resumed;
            None
        };
        let ticket = Ticket::new(number, self.trace_id(number), sink(number), permit, run);
        core.carrier
            .admit(core, &self.inner.entry, ticket, input)
            .await;
        Ok(())
    }

    /// Reports an outcome that no agent produces now (a refusal, or one read back from the
    /// journal) on the outcome stream.
    async fn report_refusal(&self, refused: Outcome) {
        self.inner.core.record_outcome(&refused);
        // Refusals hold a slot like any outcome, so the stream stays bounded.
        if let Ok(permit) = self.inner.admission.clone().acquire_owned().await {
            let _ = self.inner.core.outcomes.send((refused, permit));
        }
    }

    fn refusal(&self, number: u64, error: String) -> Outcome {
        let refused = Outcome::refused(number, format!("{:016x}", self.trace_id(number)), error);
        #[cfg(feature = "journal")]
        if let Some(journal) = self.inner.core.journal() {
            // A refused input is a run too, with nothing to journal: it is refused again on
            // a resume.
            return Outcome {
                run_id: Some(journal.run_id(number).to_string()),
                ..refused
            };
        }
        refused
    }

    fn trace_id(&self, number: u64) -> u64 {
        // Distinct per input and per run: a splitmix of the input number and a run seed.
        let mut z = self.inner.trace_seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn trace_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}
