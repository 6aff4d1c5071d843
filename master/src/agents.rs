//! Agents, on the leader: their sessions (AgentGateway/Connect), health checks, status
//! updates (acknowledged only once committed), and reconciliation when an agent registers
//! again.
//!
//! Health: the leader pings every connected agent each `--agent-ping-timeout`; an active
//! agent not heard from for `--agent-ping-timeout` x `--max-agent-ping-timeouts` is marked
//! unreachable in the registry (its live tasks become TASK_UNREACHABLE, its resources
//! leave the pool). A newly elected leader counts every agent as heard from at the moment
//! it became leader, so each gets a full timeout to find the new leader.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_proto::v1 as pb;
use agora_proto::v1::agent_gateway_server::AgentGateway;
use agora_registry::{AgentId, AgentStatus, Command, FrameworkId, TaskId, TaskState};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::convert::{invalid, task_state_from_name};
use crate::leader::WriteError;
use crate::Master;

type Outbound = mpsc::Sender<Result<pb::MasterMessage, Status>>;

/// A task's updates are handled one at a time: (framework id, task id).
type UpdateKey = (String, String);

/// Status updates of one agent session being recorded at once (more wait in the stream).
const MAX_UPDATES_IN_FLIGHT: usize = 256;

struct Session {
    /// Distinguishes a replaced session from its successor.
    serial: u64,
    tx: Outbound,
}

#[derive(Default)]
struct Inner {
    /// When this replica last became leader (None while it does not lead).
    leader_since: Option<Instant>,
    sessions: HashMap<AgentId, Session>,
    last_seen: HashMap<AgentId, Instant>,
    /// Messages for agents that are not connected yet (kills decided at re-registration).
    pending: HashMap<AgentId, Vec<pb::MasterMessage>>,
    next_serial: u64,
    ping_seq: u64,
}

/// The leader's table of agent sessions.
#[derive(Clone, Default)]
pub struct AgentSessions {
    inner: Arc<Mutex<Inner>>,
}

impl AgentSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `msg` to a connected agent, or queues it for its next session.
    pub fn send(&self, agent: &AgentId, msg: pb::MasterMessage) {
        let mut inner = self.lock();
        let sent = inner
            .sessions
            .get(agent)
            .is_some_and(|s| s.tx.try_send(Ok(msg.clone())).is_ok());
        if !sent {
            inner.pending.entry(agent.clone()).or_default().push(msg);
        }
    }

    /// Number of agents with a live session.
    pub fn connected(&self) -> usize {
        self.lock().sessions.len()
    }

    fn seen(&self, agent: &AgentId) {
        self.lock().last_seen.insert(agent.clone(), Instant::now());
    }
}

/// Serves `agora.v1.AgentGateway`.
pub struct AgentGatewayApi {
    master: Master,
}

impl AgentGatewayApi {
    pub fn new(master: Master) -> Self {
        AgentGatewayApi { master }
    }
}

type MasterStream = Pin<Box<dyn Stream<Item = Result<pb::MasterMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentGateway for AgentGatewayApi {
    type ConnectStream = MasterStream;

    async fn connect(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<MasterStream>, Status> {
        let view = self.master.require_leader()?;
        let mut inbound = req.into_inner();
        let hello = match inbound.next().await {
            Some(Ok(pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Hello(h)),
            })) => h,
            Some(Err(e)) => return Err(e),
            _ => return Err(invalid("hello", "the first message must be hello")),
        };
        let agent_id = AgentId::new(hello.agent_id).map_err(|e| invalid("hello.agent_id", e))?;
        let registered = self.master.registry.read(|reg| {
            reg.agent(&agent_id)
                .map(|a| (a.info.address.clone(), a.status))
        });
        match registered {
            None => {
                return Err(Status::failed_precondition(format!(
                    "agent {agent_id} is not registered; register first"
                )))
            }
            Some((address, _)) if address != hello.address => {
                return Err(Status::failed_precondition(format!(
                    "agent {agent_id} is registered from {address}, not {}",
                    hello.address
                )))
            }
            Some((_, AgentStatus::Unreachable { .. })) => {
                return Err(Status::failed_precondition(format!(
                    "agent {agent_id} is marked unreachable; register again"
                )))
            }
            Some(_) => {}
        }

        let (tx, rx) = mpsc::channel(1024);
        let sessions = &self.master.agents;
        let serial = {
            let mut inner = sessions.lock();
            inner.next_serial += 1;
            let serial = inner.next_serial;
            for msg in inner.pending.remove(&agent_id).unwrap_or_default() {
                let _ = tx.try_send(Ok(msg));
            }
            inner.sessions.insert(
                agent_id.clone(),
                Session {
                    serial,
                    tx: tx.clone(),
                },
            );
            inner.last_seen.insert(agent_id.clone(), Instant::now());
            serial
        };
        self.master.metrics.agent_sessions.inc();
        let span = tracing::info_span!("agent_session", agent = %agent_id, term = view.term);
        span.in_scope(|| tracing::info!("agent connected"));
        let master = self.master.clone();
        tokio::spawn(
            async move {
                // Updates of different tasks are recorded concurrently: each waits for
                // its own commit, and the leader batches concurrent writes into shared log
                // entries. A task's own updates (a resent copy included) are handled one
                // after the other, in arrival order, so the framework gets them in order.
                let mut updates = tokio::task::JoinSet::new();
                let mut queued: HashMap<UpdateKey, VecDeque<pb::StatusUpdate>> = HashMap::new();
                let spawn = |updates: &mut tokio::task::JoinSet<_>, key: UpdateKey, u| {
                    let (master, agent_id, tx) = (master.clone(), agent_id.clone(), tx.clone());
                    updates.spawn(
                        async move { (key, handle_update(&master, &agent_id, u, &tx).await) }
                            .in_current_span(),
                    );
                };
                loop {
                    tokio::select! {
                        msg = inbound.next(), if updates.len() < MAX_UPDATES_IN_FLIGHT => {
                            let Some(Ok(msg)) = msg else { break };
                            master.agents.seen(&agent_id);
                            match msg.kind {
                                Some(pb::agent_message::Kind::Pong(_)) => {}
                                Some(pb::agent_message::Kind::Update(u)) => {
                                    let key = (u.framework_id.clone(), u.task_id.clone());
                                    match queued.get_mut(&key) {
                                        Some(waiting) => waiting.push_back(u),
                                        None => {
                                            queued.insert(key.clone(), VecDeque::new());
                                            spawn(&mut updates, key, u);
                                        }
                                    }
                                }
                                Some(pb::agent_message::Kind::ExecutorMessage(mut m)) => {
                                    // Best effort, as in Mesos: dropped if the framework is not subscribed.
                                    if let Ok(f) = FrameworkId::new(m.framework_id.clone()) {
                                        m.agent_id = agent_id.to_string();
                                        master.frameworks.send(&f, pb::event::Kind::Message(m));
                                    }
                                }
                                Some(pb::agent_message::Kind::Hello(_)) | None => {}
                            }
                        }
                        Some(done) = updates.join_next(), if !updates.is_empty() => {
                            match done {
                                Ok((key, Ok(()))) => {
                                    match queued.get_mut(&key).and_then(VecDeque::pop_front) {
                                        Some(next) => spawn(&mut updates, key, next),
                                        None => {
                                            queued.remove(&key);
                                        }
                                    }
                                }
                                Ok((_, Err(status))) => {
                                    let _ = tx.send(Err(status)).await;
                                    break;
                                }
                                // A handler that panicked: end the session; the agent
                                // connects again and resends what is unacknowledged.
                                Err(_) => break,
                            }
                        }
                    }
                }
                let mut inner = master.agents.lock();
                if inner
                    .sessions
                    .get(&agent_id)
                    .is_some_and(|s| s.serial == serial)
                {
                    inner.sessions.remove(&agent_id);
                }
                drop(inner);
                master.metrics.agent_sessions.dec();
                tracing::info!("agent session ended");
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Records a status update in the registry, then acknowledges it. An update that can never
/// apply (unknown task, or a different terminal state already recorded) is acknowledged
/// too, so the agent stops resending it; the registry keeps its first terminal state.
async fn handle_update(
    master: &Master,
    agent: &AgentId,
    u: pb::StatusUpdate,
    tx: &Outbound,
) -> Result<(), Status> {
    let framework_id =
        FrameworkId::new(u.framework_id.clone()).map_err(|e| invalid("update.framework_id", e))?;
    let task_id = TaskId::new(u.task_id.clone()).map_err(|e| invalid("update.task_id", e))?;
    let state = task_state_from_name(&u.state)
        .ok_or_else(|| invalid("update.state", format!("unknown state {:?}", u.state)))?;
    let latest = match u.latest_state.as_str() {
        "" => state,
        name => task_state_from_name(name).ok_or_else(|| {
            invalid(
                "update.latest_state",
                format!("unknown state {:?}", u.latest_state),
            )
        })?,
    };
    let span = tracing::debug_span!("status_update", framework = %framework_id, task = %task_id, state = %state);
    // The registry records the task's end as soon as the agent reports it (so its resources
    // are free), while the framework still gets every update in order.
    let (recorded, message, exit_code) = if latest != state && latest.is_terminal() {
        (latest, None, None)
    } else {
        (
            state,
            (!u.message.is_empty()).then(|| u.message.clone()),
            u.exit_code,
        )
    };
    // Already recorded (a terminal state learnt early from `latest_state`, or an update
    // sent again): nothing to commit, only to pass on.
    let recorded_already = master.registry.read(|reg| {
        reg.task(&framework_id, &task_id).is_some_and(|t| {
            t.state.is_terminal()
                && t.state == recorded
                && (message.is_none() || t.message.is_some())
                && (exit_code.is_none() || t.exit_code.is_some())
        })
    });
    let result = if recorded_already {
        Ok(0)
    } else {
        master
            .write(Command::UpdateTask {
                framework_id: framework_id.clone(),
                task_id: task_id.clone(),
                state: recorded,
                message,
                exit_code,
                now_ms: crate::api::now_ms(),
            })
            .instrument(span)
            .await
    };
    match result {
        Ok(_) => {
            if recorded.is_terminal() {
                master.frameworks.wake.notify_one();
            }
            if state == TaskState::TaskRunning || state.is_terminal() {
                if let Some(d) = master.frameworks.running(&framework_id, &task_id) {
                    if state == TaskState::TaskRunning {
                        master.metrics.launch_to_running.observe(d.as_secs_f64());
                    }
                }
            }
            // The framework acknowledges it (its ACKNOWLEDGE goes to the agent); only when
            // no framework will does the master acknowledge it itself.
            if !crate::frameworks::forward_update(master, &framework_id, &u, agent) {
                return Ok(());
            }
        }
        Err(WriteError::Rejected(r)) if crate::frameworks::ack_anyway(&r) => {
            tracing::warn!(agent = %agent, task = %task_id, reason = %r, "status update cannot apply; acknowledged");
        }
        Err(WriteError::Rejected(r)) => return Err(Status::failed_precondition(r.to_string())),
        Err(e) => return Err(e.into()),
    }
    let ack = pb::MasterMessage {
        kind: Some(pb::master_message::Kind::Ack(pb::StatusAck {
            framework_id: u.framework_id,
            task_id: u.task_id,
            uuid: u.uuid,
        })),
    };
    tx.send(Ok(ack))
        .await
        .map_err(|_| Status::cancelled("session closed"))
}

/// Reconciles an agent's report with the registry after it registered (again): registry
/// tasks still TASK_STAGING that it does not report are launched again (the launch never
/// reached it); other registry tasks on it that it does not report become TASK_LOST; tasks it reports that the
/// registry does not hold as live are killed; tasks the registry marked unreachable take
/// the state the agent reports.
pub async fn reconcile(
    master: &Master,
    agent: &AgentId,
    reported: &[pb::TaskReport],
) -> Result<(), Status> {
    let mut report: HashMap<(String, String), TaskState> = HashMap::new();
    for (i, t) in reported.iter().enumerate() {
        let state = task_state_from_name(&t.state).ok_or_else(|| {
            invalid(
                &format!("tasks[{i}].state"),
                format!("unknown state {:?}", t.state),
            )
        })?;
        report.insert((t.framework_id.clone(), t.task_id.clone()), state);
    }
    let (lost, to_relaunch, to_update, to_kill) = master.registry.read(|reg| {
        let mut lost = Vec::new();
        let mut to_relaunch: Vec<pb::LaunchTasks> = Vec::new();
        let mut to_update = Vec::new();
        for t in reg
            .tasks()
            .filter(|t| &t.agent_id == agent && !t.state.is_terminal())
        {
            match report.remove(&(t.framework_id.to_string(), t.id.to_string())) {
                // Committed but never delivered (the session or the leader went down in
                // between): the agent reports every task it ever received, so it never
                // ran, and the launch recorded in the registry is sent again.
                None if t.state == TaskState::TaskStaging => {
                    match pb::TaskInfo::decode(t.launch.as_slice()) {
                        Ok(info) => to_relaunch.push(pb::LaunchTasks {
                            framework_id: t.framework_id.to_string(),
                            tasks: vec![info],
                        }),
                        Err(_) => lost.push((t.framework_id.clone(), t.id.clone())),
                    }
                }
                None => lost.push((t.framework_id.clone(), t.id.clone())),
                Some(s) if s != t.state => {
                    to_update.push((t.framework_id.clone(), t.id.clone(), s))
                }
                Some(_) => {}
            }
        }
        // What is left in the report is not live in the registry.
        let to_kill: Vec<(String, String)> = report
            .into_iter()
            .filter(|(_, s)| !s.is_terminal())
            .map(|(k, _)| k)
            .collect();
        (lost, to_relaunch, to_update, to_kill)
    });
    for launch in to_relaunch {
        tracing::info!(agent = %agent, framework = %launch.framework_id, task = %launch.tasks[0].task_id, "launch never reached the agent: sending it again");
        master.agents.send(
            agent,
            pb::MasterMessage {
                kind: Some(pb::master_message::Kind::Launch(launch)),
            },
        );
    }
    let now = crate::api::now_ms();
    for (framework_id, task_id) in lost {
        tracing::info!(agent = %agent, task = %task_id, "task unknown to the agent after it registered again: TASK_LOST");
        let written = master
            .write(Command::UpdateTask {
                framework_id: framework_id.clone(),
                task_id: task_id.clone(),
                state: TaskState::TaskLost,
                message: Some(format!("agent {agent} registered again without this task")),
                exit_code: None,
                now_ms: now,
            })
            .await;
        if written.is_ok() {
            crate::frameworks::announce(master, &framework_id, &task_id);
        }
    }
    for (framework_id, task_id, state) in to_update {
        let written = master
            .write(Command::UpdateTask {
                framework_id: framework_id.clone(),
                task_id: task_id.clone(),
                state,
                message: Some("reported by the agent when it registered again".into()),
                exit_code: None,
                now_ms: now,
            })
            .await;
        if written.is_ok() {
            crate::frameworks::announce(master, &framework_id, &task_id);
        }
    }
    for (framework_id, task_id) in to_kill {
        tracing::info!(agent = %agent, task = %task_id, "task unknown to the registry: killing it");
        master.agents.send(
            agent,
            pb::MasterMessage {
                kind: Some(pb::master_message::Kind::Kill(pb::KillTask {
                    framework_id,
                    task_id,
                    grace_period_ms: 0,
                })),
            },
        );
    }
    Ok(())
}

/// The leader's health checks; runs on every replica and acts only while it leads.
pub async fn health_loop(master: Master) {
    let ping_every = master.config.agent_ping_timeout;
    let limit = ping_every * master.config.max_agent_ping_timeouts.max(1);
    let tick = (ping_every / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut last_ping = Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let view = master.leader_view();
        if !view.is_leader {
            let mut inner = master.agents.lock();
            if inner.leader_since.take().is_some() {
                // Stepped down: end every session so agents find the new leader.
                for (_, s) in inner.sessions.drain() {
                    let _ = s.tx.try_send(Err(crate::leader::not_leader(
                        view.leader_address.as_deref(),
                    )));
                }
                inner.last_seen.clear();
                inner.pending.clear();
            }
            continue;
        }
        let now = Instant::now();
        let (since, sessions) = {
            let mut inner = master.agents.lock();
            let since = *inner.leader_since.get_or_insert(now);
            let sessions: Vec<(AgentId, Outbound)> = inner
                .sessions
                .iter()
                .map(|(id, s)| (id.clone(), s.tx.clone()))
                .collect();
            (since, sessions)
        };
        if now.duration_since(last_ping) >= ping_every {
            last_ping = now;
            let seq = {
                let mut inner = master.agents.lock();
                inner.ping_seq += 1;
                inner.ping_seq
            };
            for (_, tx) in &sessions {
                let _ = tx.try_send(Ok(pb::MasterMessage {
                    kind: Some(pb::master_message::Kind::Ping(pb::Ping { seq })),
                }));
            }
        }
        let overdue: Vec<AgentId> = {
            let inner = master.agents.lock();
            master.registry.read(|reg| {
                reg.agents()
                    .filter(|a| a.status == AgentStatus::Active)
                    .filter(|a| {
                        let seen = inner
                            .last_seen
                            .get(&a.info.id)
                            .copied()
                            .unwrap_or(since)
                            .max(since);
                        now.duration_since(seen) > limit
                    })
                    .map(|a| a.info.id.clone())
                    .collect()
            })
        };
        for id in overdue {
            tracing::warn!(agent = %id, term = view.term, "agent missed its health checks: marking it unreachable");
            let offers: Vec<(FrameworkId, String)> = master.registry.read(|reg| {
                reg.offers()
                    .filter(|o| o.agent_id == id)
                    .map(|o| (o.framework_id.clone(), o.id.to_string()))
                    .collect()
            });
            match master
                .write(Command::MarkAgentUnreachable {
                    id: id.clone(),
                    now_ms: crate::api::now_ms(),
                })
                .await
            {
                Ok(_) => {
                    let affected: Vec<(FrameworkId, TaskId)> = master.registry.read(|reg| {
                        reg.tasks()
                            .filter(|t| t.agent_id == id && t.state == TaskState::TaskUnreachable)
                            .map(|t| (t.framework_id.clone(), t.id.clone()))
                            .collect()
                    });
                    for (f, offer_id) in offers {
                        master
                            .frameworks
                            .send(&f, pb::event::Kind::Rescind(pb::Rescind { offer_id }));
                    }
                    for (f, t) in affected {
                        crate::frameworks::announce(&master, &f, &t);
                    }
                    // Every framework hears of the loss (as Mesos' slaveLost).
                    master
                        .frameworks
                        .broadcast(pb::event::Kind::Failure(pb::Failure {
                            agent_id: id.to_string(),
                        }));
                    // End its session explicitly (its reader task holds another sender), so
                    // the agent, if it is alive after all, registers again.
                    let mut inner = master.agents.lock();
                    if let Some(s) = inner.sessions.remove(&id) {
                        let _ = s.tx.try_send(Err(Status::failed_precondition(
                            "agent marked unreachable; register again",
                        )));
                    }
                    inner.last_seen.remove(&id);
                }
                Err(e) => {
                    tracing::warn!(agent = %id, error = %e, "could not mark agent unreachable")
                }
            }
        }
    }
}
