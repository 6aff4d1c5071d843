//! Frameworks, on the leader: subscriptions (Scheduler/Subscribe), their calls, the
//! allocation loop that turns the DRF allocator's proposals into committed offers, status
//! updates forwarded to frameworks (whose acknowledgements go back to the agents), and
//! failover timeouts.
//!
//! What is replicated: registrations, offers, launches and task states (in the registry),
//! so a new leader resumes offering at once and outstanding offers stay valid. What is not:
//! decline filters and suppression (soft state, as in Mesos), and live subscriptions
//! (frameworks subscribe again to the new leader).

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_allocator::{Allocator, AllocatorConfig};
use agora_proto::v1 as pb;
use agora_proto::v1::scheduler_server::Scheduler;
use agora_registry::{
    AgentId, AgentStatus, Command, FrameworkId, FrameworkInfo, FrameworkStatus, Offer, OfferId,
    Rejection, TaskId, TaskSpec, TaskState,
};
use prost::Message;
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api::now_ms;
use crate::convert::{self, invalid};
use crate::leader::WriteError;
use crate::Master;
use tracing::Instrument;

/// Seconds between heartbeats on a subscription.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The longest decline filter (longer `refuse_seconds` are capped to it).
pub const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default `refuse_seconds` of a decline.
pub const DEFAULT_REFUSE: Duration = Duration::from_secs(5);
/// How long a new leader waits for a registered framework to subscribe again before it
/// counts it as disconnected (and its failover timeout starts).
pub const RESUBSCRIBE_GRACE: Duration = Duration::from_secs(10);
/// Status updates kept for a framework that is not subscribed, until it is (oldest
/// dropped beyond this).
const MAX_UNDELIVERED: usize = 10_000;

type EventTx = mpsc::Sender<Result<pb::Event, Status>>;

struct Session {
    serial: u64,
    tx: EventTx,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<FrameworkId, Session>,
    next_serial: u64,
    /// Decline filters: (framework, agent) -> (refuse until (ms since epoch), the
    /// resources refused). Expired ones are dropped each allocation cycle.
    filters: HashMap<(FrameworkId, AgentId), Vec<(u64, agora_registry::Resources)>>,
    suppressed: std::collections::HashSet<FrameworkId>,
    /// Registered-as-active frameworks this leader has not seen subscribe, since when (ms).
    unsubscribed_since: HashMap<FrameworkId, u64>,
    /// Status updates the master generated (TASK_DROPPED, reconciliation answers) while
    /// the framework had no subscription, e.g. between a failover and its re-subscribing:
    /// nobody retries those, so they wait here and go out when it subscribes.
    undelivered: HashMap<FrameworkId, std::collections::VecDeque<pb::Event>>,
    /// When this leader committed each task's launch, until its TASK_RUNNING is committed.
    launched_at: HashMap<(FrameworkId, TaskId), Instant>,
}

/// The leader's framework subscriptions and allocation soft state.
#[derive(Clone, Default)]
pub struct Frameworks {
    inner: Arc<Mutex<Inner>>,
    /// Wakes the allocation loop early (new agent, freed resources, revive).
    pub wake: Arc<Notify>,
}

impl Frameworks {
    /// A task's TASK_RUNNING was committed: the time since its launch was committed, if
    /// this leader launched it.
    pub fn running(&self, framework: &FrameworkId, task: &TaskId) -> Option<Duration> {
        self.lock()
            .launched_at
            .remove(&(framework.clone(), task.clone()))
            .map(|t| t.elapsed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends an event to a subscribed framework; false if it has no live subscription.
    /// A status update the master generated itself (no uuid: the agent will not resend
    /// it) is kept for the framework's next subscription instead.
    pub fn send(&self, framework: &FrameworkId, event: pb::event::Kind) -> bool {
        let mut inner = self.lock();
        let event = pb::Event { kind: Some(event) };
        let sent = match inner.sessions.get(framework) {
            Some(s) => match s.tx.try_send(Ok(event)) {
                Ok(()) => return true,
                Err(e) => e.into_inner().ok(),
            },
            None => Some(event),
        };
        if let Some(event) = sent {
            if matches!(&event.kind, Some(pb::event::Kind::Update(u)) if u.uuid.is_empty()) {
                let queue = inner.undelivered.entry(framework.clone()).or_default();
                if queue.len() >= MAX_UNDELIVERED {
                    queue.pop_front();
                }
                queue.push_back(event);
            }
        }
        false
    }

    /// Sends an event to every subscribed framework.
    pub fn broadcast(&self, event: pb::event::Kind) {
        let inner = self.lock();
        for s in inner.sessions.values() {
            let _ = s.tx.try_send(Ok(pb::Event {
                kind: Some(event.clone()),
            }));
        }
    }

    pub fn is_subscribed(&self, framework: &FrameworkId) -> bool {
        self.lock().sessions.contains_key(framework)
    }

    /// Drops every subscription (this replica stopped leading).
    pub fn clear(&self, leader: Option<&str>) {
        let mut inner = self.lock();
        for (_, s) in inner.sessions.drain() {
            let _ = s.tx.try_send(Err(crate::leader::not_leader(leader)));
        }
        inner.filters.clear();
        inner.suppressed.clear();
        inner.unsubscribed_since.clear();
        inner.undelivered.clear();
        inner.launched_at.clear();
    }
}

fn parse_framework_id(s: &str, field: &str) -> Result<FrameworkId, Status> {
    FrameworkId::new(s).map_err(|e| invalid(field, e))
}

/// Serves `agora.v1.Scheduler`.
pub struct SchedulerApi {
    master: Master,
}

impl SchedulerApi {
    pub fn new(master: Master) -> Self {
        SchedulerApi { master }
    }

    /// The agent named for an executor call: a valid, registered agent and executor id.
    fn executor_agent(&self, agent_id: &str, executor_id: &str) -> Result<AgentId, Status> {
        let agent = AgentId::new(agent_id).map_err(|e| invalid("agent_id", e))?;
        agora_registry::ids::validate_id(executor_id).map_err(|e| invalid("executor_id", e))?;
        if self.master.registry.read(|reg| reg.agent(&agent).is_none()) {
            return Err(invalid("agent_id", format!("unknown agent {agent}")));
        }
        Ok(agent)
    }

    /// The framework named by a call: valid id, registered, with a live subscription.
    fn caller(&self, id: &str) -> Result<FrameworkId, Status> {
        self.master.require_leader()?;
        let id = parse_framework_id(id, "framework_id")?;
        if !self.master.frameworks.is_subscribed(&id) {
            return Err(Status::failed_precondition(format!(
                "framework_id: framework {id} is not subscribed to this master; subscribe first"
            )));
        }
        Ok(id)
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

fn refuse_until(filters: Option<&pb::Filters>) -> Result<u64, Status> {
    let secs = filters
        .and_then(|f| f.refuse_seconds)
        .unwrap_or(DEFAULT_REFUSE.as_secs_f64());
    if !secs.is_finite() || secs < 0.0 {
        return Err(invalid(
            "filters.refuse_seconds",
            format!("{secs} is not a finite, non-negative number"),
        ));
    }
    // Capped at a year, as Mesos does; a filter that long is a "never" in practice.
    let ms = (secs.min(MAX_REFUSE.as_secs_f64()) * 1000.0) as u64;
    Ok(now_ms().saturating_add(ms))
}

fn offer_to_proto(master: &Master, o: &Offer) -> pb::Offer {
    let (hostname, attributes) = master.registry.read(|reg| {
        reg.agent(&o.agent_id)
            .map(|a| (a.info.hostname.clone(), a.info.attributes.clone()))
            .unwrap_or_default()
    });
    pb::Offer {
        id: o.id.to_string(),
        framework_id: o.framework_id.to_string(),
        agent_id: o.agent_id.to_string(),
        hostname,
        resources: convert::resources_to_proto(&o.resources),
        attributes: attributes
            .into_iter()
            .map(|(key, value)| pb::Attribute { key, value })
            .collect(),
    }
}

#[tonic::async_trait]
impl Scheduler for SchedulerApi {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let view = self.master.require_leader()?;
        let info = req
            .into_inner()
            .framework
            .ok_or_else(|| invalid("framework", "missing"))?;
        if info.name.trim().is_empty() {
            return Err(invalid("framework.name", "empty"));
        }
        if info.roles.len() != 1 {
            return Err(invalid("framework.roles", "give exactly one role"));
        }
        let role = info.roles[0].clone();
        agora_registry::resources::validate_framework_role(&role)
            .map_err(|e| invalid("framework.roles[0]", e))?;
        let failover = info.failover_timeout_seconds;
        if !failover.is_finite() || failover < 0.0 {
            return Err(invalid(
                "framework.failover_timeout_seconds",
                format!("{failover} is not a finite, non-negative number"),
            ));
        }
        let id = if info.id.is_empty() {
            FrameworkId::new(format!("{}-0000", uuid::Uuid::new_v4())).expect("uuid ids are valid")
        } else {
            let id = parse_framework_id(&info.id, "framework.id")?;
            if self
                .master
                .registry
                .read(|reg| reg.framework(&id).is_none())
            {
                return Err(Status::failed_precondition(format!(
                    "framework.id: framework {id} is not registered (removed after its failover timeout or teardown?)"
                )));
            }
            id
        };
        // Never hold a span's enter guard across an await: the task may resume on another
        // thread, and a span left entered on the first one crashed tracing in a failover.
        let span = tracing::info_span!("subscribe", framework = %id, term = view.term);
        self.master
            .write(Command::RegisterFramework {
                info: FrameworkInfo {
                    id: id.clone(),
                    name: info.name.clone(),
                    role,
                    principal: (!info.principal.is_empty()).then(|| info.principal.clone()),
                    failover_timeout_ms: (failover * 1000.0) as u64,
                },
                now_ms: now_ms(),
            })
            .instrument(span.clone())
            .await?;
        let _e = span.enter();
        let (tx, rx) = mpsc::channel(4096);
        let serial = {
            let mut inner = self.master.frameworks.lock();
            inner.next_serial += 1;
            let serial = inner.next_serial;
            inner.unsubscribed_since.remove(&id);
            let _ = tx.try_send(Ok(pb::Event {
                kind: Some(pb::event::Kind::Subscribed(pb::Subscribed {
                    framework_id: id.to_string(),
                    heartbeat_interval_seconds: HEARTBEAT.as_secs_f64(),
                })),
            }));
            for event in inner.undelivered.remove(&id).unwrap_or_default() {
                let _ = tx.try_send(Ok(event));
            }
            if let Some(old) = inner.sessions.insert(
                id.clone(),
                Session {
                    serial,
                    tx: tx.clone(),
                },
            ) {
                let _ = old.tx.try_send(Err(Status::aborted(
                    "replaced by a new subscription of this framework",
                )));
            }
            serial
        };
        // Offers still outstanding (e.g. made before a failover) remain valid.
        let outstanding: Vec<Offer> = self.master.registry.read(|reg| {
            reg.offers()
                .filter(|o| o.framework_id == id)
                .cloned()
                .collect()
        });
        if !outstanding.is_empty() {
            let offers = outstanding
                .iter()
                .map(|o| offer_to_proto(&self.master, o))
                .collect();
            let _ = tx.try_send(Ok(pb::Event {
                kind: Some(pb::event::Kind::Offers(pb::Offers { offers })),
            }));
        }
        tracing::info!(name = %info.name, "framework subscribed");
        self.master.frameworks.wake.notify_one();
        // Watch the stream: heartbeats, and a disconnection starts the failover timeout.
        let master = self.master.clone();
        let watch_tx = tx.clone();
        drop(tx);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = watch_tx.closed() => break,
                    _ = tokio::time::sleep(HEARTBEAT) => {
                        let _ = watch_tx.try_send(Ok(pb::Event { kind: Some(pb::event::Kind::Heartbeat(pb::Heartbeat {})) }));
                    }
                }
            }
            let current = {
                let mut inner = master.frameworks.lock();
                let current = inner.sessions.get(&id).is_some_and(|s| s.serial == serial);
                if current {
                    inner.sessions.remove(&id);
                }
                current
            };
            if current && master.leader_view().is_leader {
                tracing::info!(framework = %id, "framework disconnected; failover timeout starts");
                if let Err(e) = master
                    .write(Command::DisconnectFramework {
                        id: id.clone(),
                        now_ms: now_ms(),
                    })
                    .await
                {
                    tracing::warn!(framework = %id, error = %e, "could not record the disconnection");
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn accept(
        &self,
        req: Request<pb::AcceptRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let req = req.into_inner();
        let framework = self.caller(&req.framework_id)?;
        if req.offer_ids.is_empty() {
            return Err(invalid("offer_ids", "empty"));
        }
        let offer_ids = req
            .offer_ids
            .iter()
            .enumerate()
            .map(|(i, o)| {
                OfferId::new(o.clone()).map_err(|e| invalid(&format!("offer_ids[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (i, o) in offer_ids.iter().enumerate() {
            if offer_ids[..i].contains(o) {
                return Err(invalid(
                    &format!("offer_ids[{i}]"),
                    format!("{o} is listed twice"),
                ));
            }
        }
        let until = refuse_until(req.filters.as_ref())?;
        let mut specs = Vec::with_capacity(req.tasks.len());
        let mut seen = std::collections::HashSet::new();
        for (i, t) in req.tasks.iter().enumerate() {
            let id = TaskId::new(t.task_id.clone())
                .map_err(|e| invalid(&format!("tasks[{i}].task_id"), e))?;
            if !seen.insert(id.clone()) {
                return Err(invalid(
                    &format!("tasks[{i}].task_id"),
                    format!("{id} is listed twice"),
                ));
            }
            if t.command.trim().is_empty() {
                return Err(invalid(&format!("tasks[{i}].command"), "empty"));
            }
            let resources =
                convert::resources_from_proto(&t.resources, &format!("tasks[{i}].resources"))?;
            specs.push(TaskSpec {
                id,
                name: if t.name.is_empty() {
                    t.task_id.clone()
                } else {
                    t.name.clone()
                },
                resources,
                launch: t.encode_to_vec(),
            });
        }
        let span = tracing::info_span!("accept", framework = %framework, tasks = specs.len());
        // What the offers hold, to return the unused part to the allocator's pool.
        let offers: Vec<Offer> = self.master.registry.read(|reg| {
            offer_ids
                .iter()
                .filter_map(|id| reg.offer(id).cloned())
                .collect()
        });
        let result = self
            .master
            .write(Command::LaunchTasks {
                framework_id: framework.clone(),
                offer_ids: offer_ids.clone(),
                tasks: specs.clone(),
                now_ms: now_ms(),
            })
            .instrument(span.clone())
            .await;
        let _e = span.enter();
        match result {
            Ok(_) => {
                let agent = offers[0].agent_id.clone();
                {
                    let mut inner = self.master.frameworks.lock();
                    // The unused part of the offers is declined (with the default 5 s
                    // unless the framework says otherwise), as in Mesos: it comes back to
                    // this framework only with more resources freed beside it.
                    let mut unused = agora_registry::Resources::new();
                    for o in &offers {
                        unused.add(&o.resources);
                    }
                    for t in &specs {
                        unused = unused.saturating_sub(&t.resources);
                    }
                    if until > now_ms() && !unused.is_empty() {
                        inner
                            .filters
                            .entry((framework.clone(), agent.clone()))
                            .or_default()
                            .push((until, unused));
                    }
                    let now = Instant::now();
                    // Bounded: entries of tasks that never run go with the leadership.
                    if inner.launched_at.len() < 100_000 {
                        for t in &specs {
                            inner
                                .launched_at
                                .insert((framework.clone(), t.id.clone()), now);
                        }
                    }
                }
                let launch = pb::MasterMessage {
                    kind: Some(pb::master_message::Kind::Launch(pb::LaunchTasks {
                        framework_id: framework.to_string(),
                        tasks: req.tasks,
                    })),
                };
                if self.master.config.faults.launch_twice {
                    let other = self.master.registry.read(|reg| {
                        reg.agents()
                            .map(|a| a.info.id.clone())
                            .find(|a| *a != agent)
                    });
                    if let Some(other) = other {
                        tracing::warn!(agent = %other, "FAULT launch-twice: sending the launch to a second agent");
                        self.master.agents.send(&other, launch.clone());
                    }
                }
                static ACCEPTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                if self.master.config.faults.drop_launches
                    && ACCEPTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 4 == 3
                {
                    tracing::warn!(agent = %agent, "FAULT drop-launches: the launch is never sent");
                } else {
                    self.master.agents.send(&agent, launch);
                }
                self.master
                    .metrics
                    .tasks_launched
                    .inc_by(specs.len() as u64);
                tracing::info!(agent = %agent, "tasks launched");
                self.master.frameworks.wake.notify_one();
                Ok(Response::new(pb::CallReply {}))
            }
            Err(WriteError::Rejected(reason)) => {
                // Never run: each task is dropped, with the reason. Except when the offer
                // is gone because this very accept was applied already (the driver retried
                // it after the leader died mid-call): those tasks exist and their state is
                // the answer, not a TASK_DROPPED for a task that runs.
                tracing::info!(%reason, "accept refused; tasks dropped");
                let applied_before: Vec<Option<pb::event::Kind>> =
                    self.master.registry.read(|reg| {
                        specs
                            .iter()
                            .map(|s| match reason {
                                Rejection::UnknownOffer(_) => reg
                                    .task(&framework, &s.id)
                                    .map(|t| status_of(t, String::new())),
                                _ => None,
                            })
                            .collect()
                    });
                for (s, existing) in specs.iter().zip(applied_before) {
                    if let Some(status) = existing {
                        self.master.frameworks.send(&framework, status);
                        continue;
                    }
                    self.master.frameworks.send(
                        &framework,
                        pb::event::Kind::Update(pb::TaskStatus {
                            task_id: s.id.to_string(),
                            state: TaskState::TaskDropped.name().into(),
                            message: format!("launch refused: {reason}"),
                            agent_id: offers
                                .first()
                                .map(|o| o.agent_id.to_string())
                                .unwrap_or_default(),
                            uuid: String::new(),
                            exit_code: None,
                            timestamp_ms: now_ms(),
                        }),
                    );
                }
                Ok(Response::new(pb::CallReply {}))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn decline(
        &self,
        req: Request<pb::DeclineRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let req = req.into_inner();
        let framework = self.caller(&req.framework_id)?;
        let until = refuse_until(req.filters.as_ref())?;
        let mut ids = Vec::new();
        for (i, o) in req.offer_ids.iter().enumerate() {
            ids.push(OfferId::new(o.clone()).map_err(|e| invalid(&format!("offer_ids[{i}]"), e))?);
        }
        // This framework's offers among those named, in one read.
        let mine: Vec<Offer> = self.master.registry.read(|reg| {
            ids.iter()
                .filter_map(|id| reg.offer(id))
                .filter(|o| o.framework_id == framework)
                .cloned()
                .collect()
        });
        self.master
            .write(Command::RemoveOffers {
                ids: mine.iter().map(|o| o.id.clone()).collect(),
            })
            .await?;
        if until > now_ms() {
            let mut inner = self.master.frameworks.lock();
            for o in mine {
                inner
                    .filters
                    .entry((framework.clone(), o.agent_id))
                    .or_default()
                    .push((until, o.resources));
            }
        }
        self.master.frameworks.wake.notify_one();
        Ok(Response::new(pb::CallReply {}))
    }

    async fn revive(
        &self,
        req: Request<pb::FrameworkCall>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let framework = self.caller(&req.into_inner().framework_id)?;
        {
            let mut inner = self.master.frameworks.lock();
            inner.suppressed.remove(&framework);
            inner.filters.retain(|(f, _), _| f != &framework);
            // (the allocator is rebuilt each cycle, so this clears its filters too)
        }
        self.master.frameworks.wake.notify_one();
        Ok(Response::new(pb::CallReply {}))
    }

    async fn suppress(
        &self,
        req: Request<pb::FrameworkCall>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let framework = self.caller(&req.into_inner().framework_id)?;
        self.master.frameworks.lock().suppressed.insert(framework);
        Ok(Response::new(pb::CallReply {}))
    }

    async fn kill(&self, req: Request<pb::KillRequest>) -> Result<Response<pb::CallReply>, Status> {
        let req = req.into_inner();
        let framework = self.caller(&req.framework_id)?;
        let task_id = TaskId::new(req.task_id.clone()).map_err(|e| invalid("task_id", e))?;
        let task = self
            .master
            .registry
            .read(|reg| reg.task(&framework, &task_id).cloned());
        match task {
            None => {
                self.master
                    .frameworks
                    .send(&framework, lost_status(&task_id, "unknown task"));
            }
            Some(t) if t.state.is_terminal() => {
                self.master
                    .frameworks
                    .send(&framework, status_of(&t, String::new()));
            }
            Some(t) => self.master.agents.send(
                &t.agent_id,
                pb::MasterMessage {
                    kind: Some(pb::master_message::Kind::Kill(pb::KillTask {
                        framework_id: framework.to_string(),
                        task_id: task_id.to_string(),
                        grace_period_ms: req.grace_period_ms,
                    })),
                },
            ),
        }
        Ok(Response::new(pb::CallReply {}))
    }

    async fn acknowledge(
        &self,
        req: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let req = req.into_inner();
        let framework = self.caller(&req.framework_id)?;
        let task_id = TaskId::new(req.task_id.clone()).map_err(|e| invalid("task_id", e))?;
        if req.uuid.is_empty() {
            return Err(invalid("uuid", "empty"));
        }
        let agent = self
            .master
            .registry
            .read(|reg| reg.task(&framework, &task_id).map(|t| t.agent_id.clone()))
            .ok_or_else(|| invalid("task_id", format!("unknown task {task_id}")))?;
        self.master.agents.send(
            &agent,
            pb::MasterMessage {
                kind: Some(pb::master_message::Kind::Ack(pb::StatusAck {
                    framework_id: framework.to_string(),
                    task_id: task_id.to_string(),
                    uuid: req.uuid,
                })),
            },
        );
        Ok(Response::new(pb::CallReply {}))
    }

    async fn reconcile(
        &self,
        req: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let req = req.into_inner();
        let framework = self.caller(&req.framework_id)?;
        let mut ids = Vec::new();
        for (i, t) in req.task_ids.iter().enumerate() {
            ids.push(TaskId::new(t.clone()).map_err(|e| invalid(&format!("task_ids[{i}]"), e))?);
        }
        let events: Vec<pb::event::Kind> = self.master.registry.read(|reg| {
            if ids.is_empty() {
                reg.tasks()
                    .filter(|t| t.framework_id == framework && !t.state.is_terminal())
                    .map(|t| status_of(t, String::new()))
                    .collect()
            } else {
                ids.iter()
                    .map(|id| match reg.task(&framework, id) {
                        Some(t) => status_of(t, String::new()),
                        None => lost_status(id, "unknown task"),
                    })
                    .collect()
            }
        });
        for e in events {
            self.master.frameworks.send(&framework, e);
        }
        Ok(Response::new(pb::CallReply {}))
    }

    async fn message(
        &self,
        req: Request<pb::FrameworkMessage>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let mut m = req.into_inner();
        let framework = self.caller(&m.framework_id)?;
        let agent = self.executor_agent(&m.agent_id, &m.executor_id)?;
        m.framework_id = framework.to_string();
        self.master.agents.send(
            &agent,
            pb::MasterMessage {
                kind: Some(pb::master_message::Kind::FrameworkMessage(m)),
            },
        );
        Ok(Response::new(pb::CallReply {}))
    }

    async fn shutdown(
        &self,
        req: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let req = req.into_inner();
        let framework = self.caller(&req.framework_id)?;
        let agent = self.executor_agent(&req.agent_id, &req.executor_id)?;
        self.master.agents.send(
            &agent,
            pb::MasterMessage {
                kind: Some(pb::master_message::Kind::ShutdownExecutor(
                    pb::ShutdownExecutor {
                        framework_id: framework.to_string(),
                        executor_id: req.executor_id,
                        grace_period_ms: 0,
                    },
                )),
            },
        );
        Ok(Response::new(pb::CallReply {}))
    }

    async fn teardown(
        &self,
        req: Request<pb::FrameworkCall>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let framework = self.caller(&req.into_inner().framework_id)?;
        remove_framework(&self.master, &framework, "framework torn down").await?;
        Ok(Response::new(pb::CallReply {}))
    }
}

/// Tells a task's framework the state the registry now holds for it: for changes the
/// master decides itself (agent unreachable, reconciliation), which no agent will
/// re-send, so they carry no uuid to acknowledge.
pub fn announce(master: &Master, framework: &FrameworkId, task: &TaskId) {
    if let Some(event) = master.registry.read(|reg| {
        reg.task(framework, task)
            .map(|t| status_of(t, String::new()))
    }) {
        master.frameworks.send(framework, event);
    }
}

fn status_of(t: &agora_registry::Task, uuid: String) -> pb::event::Kind {
    pb::event::Kind::Update(pb::TaskStatus {
        task_id: t.id.to_string(),
        state: t.state.name().into(),
        message: t.message.clone().unwrap_or_default(),
        agent_id: t.agent_id.to_string(),
        uuid,
        exit_code: t.exit_code,
        timestamp_ms: t.updated_at_ms,
    })
}

fn lost_status(task: &TaskId, why: &str) -> pb::event::Kind {
    pb::event::Kind::Update(pb::TaskStatus {
        task_id: task.to_string(),
        state: TaskState::TaskLost.name().into(),
        message: why.into(),
        agent_id: String::new(),
        uuid: String::new(),
        exit_code: None,
        timestamp_ms: now_ms(),
    })
}

/// Kills a framework's live tasks and removes it (teardown, or failover timeout).
async fn remove_framework(
    master: &Master,
    framework: &FrameworkId,
    why: &str,
) -> Result<(), Status> {
    let live: Vec<(AgentId, TaskId)> = master.registry.read(|reg| {
        reg.tasks()
            .filter(|t| &t.framework_id == framework && !t.state.is_terminal())
            .map(|t| (t.agent_id.clone(), t.id.clone()))
            .collect()
    });
    for (agent, task) in live {
        master.agents.send(
            &agent,
            pb::MasterMessage {
                kind: Some(pb::master_message::Kind::Kill(pb::KillTask {
                    framework_id: framework.to_string(),
                    task_id: task.to_string(),
                    grace_period_ms: 0,
                })),
            },
        );
    }
    tracing::info!(framework = %framework, why, "removing framework");
    master
        .write(Command::RemoveFramework {
            id: framework.clone(),
            now_ms: now_ms(),
        })
        .await?;
    let mut inner = master.frameworks.lock();
    inner.undelivered.remove(framework);
    if let Some(s) = inner.sessions.remove(framework) {
        let _ = s.tx.try_send(Err(Status::failed_precondition(format!(
            "framework removed: {why}"
        ))));
    }
    Ok(())
}

/// A status update the registry has recorded, forwarded to its framework. Returns whether
/// the agent should be acknowledged by the master itself: yes when the framework is gone
/// (nobody else will), no when the framework will acknowledge it (or will, once it
/// subscribes again).
pub fn forward_update(
    master: &Master,
    framework: &FrameworkId,
    update: &pb::StatusUpdate,
    agent: &AgentId,
) -> bool {
    let registered = master
        .registry
        .read(|reg| reg.framework(framework).is_some());
    if !registered {
        return true;
    }
    master.frameworks.send(
        framework,
        pb::event::Kind::Update(pb::TaskStatus {
            task_id: update.task_id.clone(),
            state: update.state.clone(),
            message: update.message.clone(),
            agent_id: agent.to_string(),
            uuid: update.uuid.clone(),
            exit_code: update.exit_code,
            timestamp_ms: update.timestamp_ms,
        }),
    );
    false
}

/// The leader's allocation loop: every `--allocation-interval` (or sooner when woken),
/// rebuild the allocator from the registry, apply the soft state (filters, suppression),
/// run one cycle, commit the offers as one command, and send them. Also rescinds offers
/// older than `--offer-timeout` and removes frameworks past their failover timeout.
pub async fn allocation_loop(master: Master) {
    let interval = master.config.allocation_interval;
    let mut was_leader = false;
    let mut seq: u64 = 0;
    let mut prefix = String::new();
    // Raft's view changes; while this replica does not lead, any change may be its
    // election, and a new leader offers at once rather than an interval later.
    let mut raft_view = master.raft.metrics();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {},
            _ = master.frameworks.wake.notified() => {
                // Coalesce a burst of wake-ups.
                tokio::time::sleep(Duration::from_millis(5)).await;
            },
            Ok(()) = raft_view.changed(), if !was_leader => {},
        }
        let view = master.leader_view();
        if !view.is_leader {
            if was_leader {
                master.frameworks.clear(view.leader_address.as_deref());
            }
            was_leader = false;
            continue;
        }
        if !was_leader && master.config.faults.slow_failover {
            tracing::warn!("FAULT slow-failover: waiting 8 s before the first allocation");
            tokio::time::sleep(Duration::from_secs(8)).await;
        }
        if !was_leader && master.config.faults.forget_frameworks {
            let all: Vec<FrameworkId> = master
                .registry
                .read(|reg| reg.frameworks().map(|f| f.info.id.clone()).collect());
            for f in all {
                tracing::warn!(framework = %f, "FAULT forget-frameworks: removing a registered framework");
                let _ = remove_framework(&master, &f, "FAULT forget-frameworks").await;
            }
        }
        if !was_leader {
            prefix = format!(
                "{}-{}",
                uuid::Uuid::new_v4().simple().to_string().split_at(8).0,
                view.term
            );
            seq = 0;
        }
        was_leader = true;
        let now = now_ms();
        expire(&master, now).await;
        let started = Instant::now();
        let mut allocator = rebuild(&master, now);
        let proposals = allocator.allocate(now);
        master
            .metrics
            .allocation_seconds
            .observe(started.elapsed().as_secs_f64());
        if proposals.is_empty() {
            continue;
        }
        // A random prefix per leadership and a sequence keep ids unique across leaders.
        let offers: Vec<Offer> = proposals
            .into_iter()
            .map(|p| {
                seq += 1;
                Offer {
                    id: OfferId::new(format!("{prefix}-O{seq}")).expect("valid id"),
                    framework_id: p.framework_id,
                    agent_id: p.agent_id,
                    resources: p.resources,
                    created_at_ms: now,
                }
            })
            .collect();
        match master
            .write(Command::AddOffers {
                offers: offers.clone(),
            })
            .await
        {
            Ok(_) => {
                master.metrics.offers_made.inc_by(offers.len() as u64);
                let mut by_framework: BTreeMap<FrameworkId, Vec<pb::Offer>> = BTreeMap::new();
                for o in &offers {
                    by_framework
                        .entry(o.framework_id.clone())
                        .or_default()
                        .push(offer_to_proto(&master, o));
                }
                for (f, offers) in by_framework {
                    master
                        .frameworks
                        .send(&f, pb::event::Kind::Offers(pb::Offers { offers }));
                }
            }
            Err(WriteError::Rejected(r)) => {
                tracing::debug!(reason = %r, "allocation raced a registry change; next cycle")
            }
            Err(e) => tracing::warn!(error = %e, "could not commit offers"),
        }
    }
}

/// A fresh allocator matching the registry, with this leader's soft state applied.
fn rebuild(master: &Master, now: u64) -> Allocator {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    let (filters, suppressed) = {
        let mut inner = master.frameworks.lock();
        inner.filters.retain(|_, list| {
            list.retain(|(until, _)| *until > now);
            !list.is_empty()
        });
        (inner.filters.clone(), inner.suppressed.clone())
    };
    master.registry.read(|reg| {
        for (role, w) in reg.weights() {
            alloc.set_weight(role, *w);
        }
        for a in reg.agents() {
            let held = reg.agent_allocation(&a.info.id);
            alloc.add_agent(
                a.info.id.clone(),
                a.info.resources.clone(),
                held.used.plus(&held.offered),
            );
            if a.status != AgentStatus::Active {
                alloc.set_agent_active(&a.info.id, false);
            }
        }
        for f in reg.frameworks() {
            // What it holds on each agent (live tasks and outstanding offers), for DRF.
            let held = reg.framework_holdings(&f.info.id);
            alloc.add_framework(f.info.id.clone(), f.info.role.clone(), held);
            let subscribed = master.frameworks.is_subscribed(&f.info.id);
            if f.status != FrameworkStatus::Active || !subscribed {
                alloc.set_framework_active(&f.info.id, false);
            }
            if suppressed.contains(&f.info.id) {
                alloc.suppress(&f.info.id);
            }
        }
    });
    for ((f, a), list) in filters {
        for (until, refused) in list {
            alloc.decline_resources(&f, &a, refused, until);
        }
    }
    alloc
}

/// Offer timeouts and framework failover timeouts.
async fn expire(master: &Master, now: u64) {
    if let Some(timeout) = master.config.offer_timeout {
        let old: Vec<(OfferId, FrameworkId)> = master.registry.read(|reg| {
            reg.offers()
                .filter(|o| now.saturating_sub(o.created_at_ms) > timeout.as_millis() as u64)
                .map(|o| (o.id.clone(), o.framework_id.clone()))
                .collect()
        });
        if !old.is_empty() {
            let ids: Vec<OfferId> = old.iter().map(|(o, _)| o.clone()).collect();
            if master.write(Command::RemoveOffers { ids }).await.is_ok() {
                for (o, f) in old {
                    master.frameworks.send(
                        &f,
                        pb::event::Kind::Rescind(pb::Rescind {
                            offer_id: o.to_string(),
                        }),
                    );
                }
            }
        }
    }
    // Frameworks recorded as connected that never subscribed to this leader (they were
    // connected to the previous one, or their disconnection was not recorded): after a
    // grace period they count as disconnected since they were first missed.
    let active: Vec<FrameworkId> = master.registry.read(|reg| {
        reg.frameworks()
            .filter(|f| f.status == FrameworkStatus::Active)
            .map(|f| f.info.id.clone())
            .collect()
    });
    let missing: Vec<(FrameworkId, u64)> = {
        let mut inner = master.frameworks.lock();
        let subscribed: std::collections::HashSet<FrameworkId> =
            inner.sessions.keys().cloned().collect();
        inner
            .unsubscribed_since
            .retain(|f, _| active.contains(f) && !subscribed.contains(f));
        active
            .iter()
            .filter(|f| !subscribed.contains(*f))
            .filter_map(|f| {
                let since = *inner.unsubscribed_since.entry(f.clone()).or_insert(now);
                (now.saturating_sub(since) > RESUBSCRIBE_GRACE.as_millis() as u64)
                    .then(|| (f.clone(), since))
            })
            .collect()
    };
    for (f, since) in missing {
        tracing::info!(framework = %f, "framework did not subscribe to this leader; failover timeout starts");
        if master
            .write(Command::DisconnectFramework {
                id: f.clone(),
                now_ms: since,
            })
            .await
            .is_ok()
        {
            master.frameworks.lock().unsubscribed_since.remove(&f);
        }
    }
    let expired: Vec<FrameworkId> = master.registry.read(|reg| {
        reg.frameworks()
            .filter(|f| match f.status {
                FrameworkStatus::Disconnected { since_ms } => {
                    now.saturating_sub(since_ms) > f.info.failover_timeout_ms
                }
                FrameworkStatus::Active => false,
            })
            .map(|f| f.info.id.clone())
            .collect()
    });
    for f in expired {
        if let Err(e) = remove_framework(master, &f, "failover timeout expired").await {
            tracing::warn!(framework = %f, error = %e, "could not remove an expired framework");
        }
    }
}

/// Checks that an update's rejection is one the master acknowledges anyway.
pub fn ack_anyway(r: &Rejection) -> bool {
    matches!(
        r,
        Rejection::UnknownTask(_) | Rejection::TaskAlreadyTerminal { .. }
    )
}
