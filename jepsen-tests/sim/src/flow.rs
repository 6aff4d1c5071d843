//! Task flow in the simulation: on every running replica the master's own leader layer
//! (`agora_master::leader::Leader`, its allocation, health and expiry loops, its agent and
//! framework sessions, on that replica's Raft and applied registry), and around it
//! simulated agents and one framework that talk to it over simulated links.
//!
//! The agents keep the real agent's status-update contract (`agent/src/tasks.rs`): per
//! task, updates go out strictly in order and pipelined (up to the agent's window
//! unacknowledged at once, each carrying the newest state queued); an acknowledgement is
//! cumulative; the newest in-flight update is sent again when they have gone
//! unacknowledged for their retry interval (doubling) and at once on every new session;
//! a launch is
//! de-duplicated by task id; a registration reports every task the agent holds, with an
//! incarnation and an attempt number. A launched task reports TASK_STARTING, TASK_RUNNING
//! and TASK_FINISHED at random moments. The retry interval is shorter than the agent's
//! (200 ms doubling to 2 s, against 2 s to 60 s) so that a short run resends often.
//!
//! The framework subscribes (and subscribes again after a failover or a cut session),
//! launches small tasks on the offers it gets, acknowledges every update that carries a
//! uuid, reconciles its unfinished tasks after each subscription, and records what it is
//! told.
//!
//! Links: every message between an agent or the framework and a replica is delayed 1-8 ms
//! and stays in order within its session (a TCP stream); a call waits while the replica is
//! paused; a crashed replica's leader layer is dropped with its sessions. Agents are cut
//! off from every replica and back (`cut_agents`), as the harness's agent-partition does.
//!
//! Checks at the end (after the final heal and a settling time): per task, the updates
//! the framework heard with a uuid come in order (never back to an earlier state, at most
//! one terminal state), and a task that ran or whose launch was acknowledged is told of
//! one end only (reconciliation answers included); no task
//! runs twice (on two agents, or twice on one); every launch the master acknowledged ends
//! (the framework hears a terminal state) and none of them is TASK_LOST: agents always
//! come back.
//!
//! What it must not do: change the leader layer (it is the master's code, configured as
//! the master configures it, with the simulation's clock); iterate a hash map (the run
//! must replay byte for byte).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agora_master::clock::Clock;
use agora_master::config::{Config, RaftTiming, Security};
use agora_master::faults::Faults as MasterFaults;
use agora_master::leader::messages::{AgentCommand, AgentReport, AgentUpdate, FrameworkEvent};
use agora_master::leader::{AcceptCall, Leader, LeaderError, ReportedTask, SubscribeCall, Writer};
use agora_master::metrics::Metrics;
use agora_master::quorum::Quorum;
use agora_master::store::{AppliedRegistry, RegistryHandle, RegistryMachine};
use agora_raft_store::NodeId;
use agora_registry::{
    AgentId, AgentInfo, FrameworkId, RegistrationOrder, Registry, Resources, TaskId, TaskSpec,
    TaskState,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::check::Checker;
use crate::cluster::{name, Cluster};
use crate::disk::MachineHandle;
use crate::events::EventLog;
use crate::rng::SimRng;

/// The virtual clock's reading at the start of a run (ms since the Unix epoch).
const EPOCH_MS: u64 = 1_790_000_000_000;
/// A call that takes longer fails (its outcome unknown).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Tasks the framework keeps unfinished at most.
const MAX_LIVE: u64 = 12;
/// An agent that hears nothing from its session for this long takes it for dead.
const SESSION_SILENCE: Duration = Duration::from_millis(1500);

/// What the task flow simulates.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    pub agents: usize,
    /// Cut agents off from every replica for a while, now and then.
    pub cut_agents: bool,
    /// The master's deliberate bugs (`agora_master::faults`), for the regression tests.
    pub faults: MasterFaults,
    /// An agent's first wait before it sends an unacknowledged update again (doubling, up
    /// to ten times this).
    pub resend_min: Duration,
    /// The framework waits this long (ms, drawn between the two) before it acknowledges
    /// an update: around `resend_min`, an agent's resent copy races the update behind it.
    pub ack_delay: (u64, u64),
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            agents: 3,
            cut_agents: true,
            faults: MasterFaults::default(),
            resend_min: Duration::from_millis(200),
            ack_delay: (0, 0),
        }
    }
}

/// The simulation's clock: the virtual time since the run began, from [`EPOCH_MS`].
struct SimClock {
    start: Instant,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        EPOCH_MS + self.start.elapsed().as_millis() as u64
    }
}

/// A replica's applied registry, as the simulated disk's state machine holds it.
struct SimRegistry(MachineHandle<RegistryMachine>);

impl AppliedRegistry for SimRegistry {
    fn with(&self, f: &mut dyn FnMut(&Registry, Option<u64>)) {
        self.0.read(|m, index| f(&m.0, index))
    }
}

/// One replica incarnation's leader layer.
struct Hosted {
    generation: u64,
    leader: Leader,
    loops: Vec<JoinHandle<()>>,
}

impl Hosted {
    fn stop(self) {
        for l in self.loops {
            l.abort();
        }
        self.leader.close_sessions();
    }
}

/// What the framework and the agents saw.
#[derive(Default)]
struct Record {
    /// Per task: whether its launch was acknowledged (Some(true)), refused (Some(false)),
    /// or its outcome is unknown (None).
    launches: BTreeMap<String, Option<bool>>,
    /// Per task, the updates the framework heard: (virtual ms, state, carried a uuid).
    updates: BTreeMap<String, Vec<(u64, TaskState, bool)>>,
    /// Per task, the agents that started it (once per start).
    ran: BTreeMap<String, Vec<String>>,
}

/// Figures of the task flow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowFigures {
    pub launches_acked: u64,
    pub tasks_finished: u64,
    pub updates: u64,
}

struct Shared {
    cluster: Cluster<RegistryMachine>,
    rng: SimRng,
    log: EventLog,
    checker: Checker,
    config: FlowConfig,
    start: Instant,
    hosted: Mutex<BTreeMap<NodeId, Hosted>>,
    record: Mutex<Record>,
    /// Agents cut off from every replica.
    cut: Mutex<BTreeSet<String>>,
}

/// The task flow of a run.
#[derive(Clone)]
pub struct Flow(Arc<Shared>);

/// Why a call did not reach a leader's answer.
#[derive(Debug)]
enum CallError {
    /// The replica is down or the caller is cut off: nothing was sent.
    NotSent,
    TimedOut,
    Leader(LeaderError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NotSent => f.write_str("not sent"),
            CallError::TimedOut => f.write_str("timed out"),
            CallError::Leader(e) => write!(f, "{e}"),
        }
    }
}

/// Messages of one session in one direction: each delayed, in order.
struct Link<T> {
    tx: mpsc::UnboundedSender<(Instant, T)>,
    last: Instant,
}

impl<T: Send + 'static> Link<T> {
    /// A link into `out`, delivering each message at its time, while `open` says so;
    /// waiting while `node` is paused.
    fn new(flow: &Flow, node: NodeId, out: mpsc::Sender<T>) -> Link<T> {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, T)>();
        let net = flow.0.cluster.net().clone();
        tokio::spawn(async move {
            while let Some((at, msg)) = rx.recv().await {
                tokio::time::sleep_until(at).await;
                net.wait_resumed(node).await;
                if out.send(msg).await.is_err() {
                    return;
                }
            }
        });
        Link {
            tx,
            last: Instant::now(),
        }
    }

    fn send(&mut self, rng: &SimRng, msg: T) -> bool {
        let at = (Instant::now() + rng.millis(1, 8)).max(self.last);
        self.last = at;
        self.tx.send((at, msg)).is_ok()
    }
}

impl Flow {
    pub fn new(
        cluster: Cluster<RegistryMachine>,
        rng: SimRng,
        log: EventLog,
        checker: Checker,
        config: FlowConfig,
    ) -> Flow {
        Flow(Arc::new(Shared {
            cluster,
            rng,
            log,
            checker,
            config,
            start: Instant::now(),
            hosted: Mutex::default(),
            record: Mutex::default(),
            cut: Mutex::default(),
        }))
    }

    fn hosted(&self) -> MutexGuard<'_, BTreeMap<NodeId, Hosted>> {
        self.0.hosted.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self) -> MutexGuard<'_, Record> {
        self.0.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_cut(&self, agent: &str) -> bool {
        self.0
            .cut
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(agent)
    }

    /// Starts everything: the hosting of leader layers, the agents, the framework, and
    /// (if configured) the agent cuts until `end`.
    pub fn start(&self, end: Instant) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(self.clone().host())];
        for a in 1..=self.0.config.agents {
            tasks.push(tokio::spawn(self.clone().agent(format!("a{a}"))));
        }
        tasks.push(tokio::spawn(self.clone().framework(end)));
        if self.0.config.cut_agents {
            tasks.push(tokio::spawn(self.clone().cut_agents(end)));
        }
        tasks
    }

    /// Stops every leader layer.
    pub fn stop(&self, tasks: Vec<JoinHandle<()>>) {
        for t in tasks {
            t.abort();
        }
        let hosted = std::mem::take(&mut *self.hosted());
        for (_, h) in hosted {
            h.stop();
        }
    }

    /// Keeps one leader layer on each running replica incarnation.
    async fn host(self) {
        loop {
            for &id in self.0.cluster.ids() {
                let node = self.0.cluster.node(id);
                let contacts = self.0.cluster.contacts(id);
                let mut hosted = self.hosted();
                if let (Some(h), Some((g, _, _))) = (hosted.get(&id), &node) {
                    if h.generation == *g {
                        continue;
                    }
                }
                if let Some(old) = hosted.remove(&id) {
                    old.stop();
                }
                if let (Some((generation, raft, machine)), Some(contacts)) = (node, contacts) {
                    let leader = self.leader_layer(id, raft, machine, contacts);
                    let loops = leader.spawn_loops();
                    hosted.insert(
                        id,
                        Hosted {
                            generation,
                            leader,
                            loops,
                        },
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn leader_layer(
        &self,
        id: NodeId,
        raft: agora_master::store::Raft,
        machine: MachineHandle<RegistryMachine>,
        contacts: agora_master::raft_network::PeerContacts,
    ) -> Leader {
        let config = Arc::new(Config {
            id,
            advertise: name(id),
            peers: self.0.cluster.ids().iter().map(|&n| (n, name(n))).collect(),
            work_dir: std::path::PathBuf::from("/nonexistent"),
            allocation_interval: Duration::from_millis(200),
            offer_timeout: None,
            agent_ping_timeout: Duration::from_millis(300),
            max_agent_ping_timeouts: 3,
            retention: agora_registry::Retention::default(),
            raft: RaftTiming::default(),
            join: false,
            faults: self.0.config.faults.clone(),
            security: Security {
                insecure: true,
                ..Security::default()
            },
        });
        let metrics = Metrics::new();
        let quorum = Quorum::new(
            config.clone(),
            raft.clone(),
            false,
            agora_security::client::ClientSecurity::insecure(),
            contacts,
        );
        Leader::new(
            config,
            quorum,
            RegistryHandle::of(Arc::new(SimRegistry(machine))),
            Writer::start(raft, metrics.clone()),
            Arc::new(SimClock {
                start: self.0.start,
            }),
            metrics,
            agora_master::leader::authz::Authz::new(Default::default(), false),
        )
    }

    /// What a session of `node`'s leader layer sends, passed on over a delayed link: the
    /// receiving end, and the task that relays (abort it when the session is over).
    fn relay<T: Send + 'static>(
        &self,
        node: NodeId,
        mut from: mpsc::Receiver<T>,
    ) -> (mpsc::Receiver<T>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(1024);
        let mut link = Link::new(self, node, tx);
        let rng = self.0.rng.clone();
        let relay = tokio::spawn(async move {
            while let Some(m) = from.recv().await {
                if !link.send(&rng, m) {
                    return;
                }
            }
        });
        (rx, relay)
    }

    /// The leader layer of `node`'s running incarnation.
    fn leader(&self, node: NodeId) -> Option<Leader> {
        self.hosted().get(&node).map(|h| h.leader.clone())
    }

    /// `f` on `node`'s leader layer, a link delay away, from `who` (cut agents reach
    /// nothing). The answer comes back a link delay later.
    async fn call<T, F, Fut>(&self, who: &str, node: NodeId, f: F) -> Result<T, CallError>
    where
        F: FnOnce(Leader) -> Fut,
        Fut: std::future::Future<Output = Result<T, LeaderError>>,
    {
        let rng = &self.0.rng;
        tokio::time::sleep(rng.millis(1, 8)).await;
        if self.is_cut(who) {
            tokio::time::sleep(CALL_TIMEOUT).await;
            return Err(CallError::TimedOut);
        }
        let Some(leader) = self.leader(node) else {
            return Err(CallError::NotSent);
        };
        let net = self.0.cluster.net().clone();
        let call = async {
            net.wait_resumed(node).await;
            f(leader).await
        };
        let out = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CallError::Leader(e)),
            Err(_) => Err(CallError::TimedOut),
        };
        tokio::time::sleep(rng.millis(1, 8)).await;
        if self.is_cut(who) {
            return Err(CallError::TimedOut);
        }
        out
    }

    /// The replica to try next: the one a refusal named, else a random one.
    fn next_node(&self, e: &CallError) -> NodeId {
        if let CallError::Leader(LeaderError::NotLeader(Some(addr))) = e {
            if let Some(&id) = self.0.cluster.ids().iter().find(|&&id| name(id) == *addr) {
                return id;
            }
        }
        *self.0.rng.pick(self.0.cluster.ids())
    }

    /// Cuts a random agent off from every replica for 0.5-4 s, every 2-6 s, until `end`.
    async fn cut_agents(self, end: Instant) {
        let agents: Vec<String> = (1..=self.0.config.agents)
            .map(|a| format!("a{a}"))
            .collect();
        loop {
            tokio::time::sleep(self.0.rng.millis(2000, 6000)).await;
            if Instant::now() >= end {
                return;
            }
            let agent = self.0.rng.pick(&agents).clone();
            let lasts = self.0.rng.millis(500, 4000);
            self.0.log.line(
                "nemesis",
                format_args!("cut {agent} off for {} ms", lasts.as_millis()),
            );
            self.0
                .cut
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(agent.clone());
            tokio::time::sleep(lasts).await;
            self.0
                .cut
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&agent);
            self.0.log.line("nemesis", format_args!("{agent} back"));
        }
    }

    /// Heals the agents' cuts.
    pub fn heal(&self) {
        self.0.cut.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A task on a simulated agent.
struct AgentTask {
    framework_id: FrameworkId,
    state: TaskState,
    /// Unacknowledged updates, oldest first; the first [`UPDATES_IN_FLIGHT`] are in flight.
    outbox: VecDeque<AgentUpdate>,
    /// When the head was last sent, and the wait before it is sent again.
    sent: Option<(Instant, Duration)>,
    /// How many of the outbox's first updates went out on this session since.
    in_flight: usize,
}

/// The real agent's window of unacknowledged updates per task
/// (`agora_agent::tasks::UPDATES_IN_FLIGHT`; the simulation does not link the agent).
const UPDATES_IN_FLIGHT: usize = 8;

/// What happens to an agent's tasks, from their timers.
enum TaskEvent {
    State(FrameworkId, TaskId, TaskState),
}

impl Flow {
    /// A simulated agent: registers with whoever leads, holds a session, runs what it is
    /// given, reports in order, and starts over when the session ends.
    async fn agent(self, who: String) {
        let id = AgentId::new(format!("{who}-S")).expect("valid id");
        let address = format!("{who}:5051");
        let resources = Resources::parse("cpus:2;mem:1024").expect("valid resources");
        let mut tasks: BTreeMap<TaskId, AgentTask> = BTreeMap::new();
        let (events_tx, mut events) = mpsc::unbounded_channel::<TaskEvent>();
        let mut attempt = 0;
        let mut uuids = 0u64;
        let mut node = *self.0.rng.pick(self.0.cluster.ids());
        loop {
            attempt += 1;
            let reported: Vec<ReportedTask> = tasks
                .iter()
                .map(|(t, task)| ReportedTask {
                    framework_id: task.framework_id.clone(),
                    task_id: t.clone(),
                    state: task.state,
                })
                .collect();
            let info = AgentInfo {
                principal: None,
                registration: Some(RegistrationOrder {
                    incarnation: 1,
                    attempt,
                }),
                id: id.clone(),
                hostname: who.clone(),
                address: address.clone(),
                resources: resources.clone(),
                attributes: vec![],
            };
            let registered = self
                .call(&who, node, |l| async move {
                    l.register_agent(info, reported).await
                })
                .await;
            if let Err(e) = registered {
                self.0
                    .log
                    .line(&who, format_args!("registration via n{node}: {e}"));
                node = self.next_node(&e);
                tokio::time::sleep(self.0.rng.millis(50, 200)).await;
                continue;
            }
            let (aid, address) = (id.clone(), address.clone());
            let session = self
                .call(&who, node, |l| async move {
                    l.open_agent_session(&aid, &address)
                })
                .await;
            let session = match session {
                Ok(s) => s,
                Err(e) => {
                    self.0
                        .log
                        .line(&who, format_args!("session via n{node}: {e}"));
                    node = self.next_node(&e);
                    tokio::time::sleep(self.0.rng.millis(50, 200)).await;
                    continue;
                }
            };
            self.0.log.line(&who, format_args!("session with n{node}"));
            // Reports to the leader, and its commands back, each over a delayed link.
            let (inbound_tx, inbound_rx) = mpsc::channel::<AgentReport>(1024);
            let mut up = Link::new(&self, node, inbound_tx);
            let reader = tokio::spawn(
                session
                    .reader
                    .run(tokio_stream::wrappers::ReceiverStream::new(inbound_rx)),
            );
            let (mut down, forward) = self.relay(node, session.outbound);
            // Every unacknowledged update goes out again on the new session.
            for task in tasks.values_mut() {
                task.sent = None;
                task.in_flight = 0;
            }
            let mut heard = Instant::now();
            let resend_min = self.0.config.resend_min;
            let ended = loop {
                // Updates due: the newest in the window again when they were never sent
                // on this session or went unacknowledged too long; those new to it.
                let now = Instant::now();
                if !self.is_cut(&who) {
                    for task in tasks.values_mut() {
                        if task.outbox.is_empty() {
                            continue;
                        }
                        let due = match task.sent {
                            None => Some(resend_min),
                            Some((at, wait)) if now >= at + wait => {
                                Some((wait * 2).min(resend_min * 10))
                            }
                            Some(_) => None,
                        };
                        let window = task.outbox.len().min(UPDATES_IN_FLIGHT);
                        if let Some(wait) = due {
                            task.in_flight = window - 1;
                            task.sent = Some((now, wait));
                        }
                        let latest = task.outbox.back().map(|u| u.state);
                        for u in task.outbox.range(task.in_flight.min(window)..window) {
                            let mut msg = u.clone();
                            msg.latest_state = latest;
                            up.send(&self.0.rng, AgentReport::Update(msg));
                        }
                        task.in_flight = window;
                    }
                }
                tokio::select! {
                    biased;
                    m = down.recv() => {
                        let Some(m) = m else { break "the session closed".to_string() };
                        // A cut delays what a live session carries, as TCP retransmits it
                        // once the path is back; a cut that outlasts the session's silence
                        // limit ends the session, and what was in flight with it. (Dropping
                        // messages from a session that goes on lost a launch for good: the
                        // agent never re-registered, so nothing sent it again.)
                        let mut silent = false;
                        while self.is_cut(&who) {
                            if heard.elapsed() > SESSION_SILENCE {
                                silent = true;
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        if silent {
                            break "nothing heard".to_string();
                        }
                        heard = Instant::now();
                        match m {
                            Err(end) => break format!("ended: {end}"),
                            Ok(AgentCommand::Ping { .. }) => {
                                up.send(&self.0.rng, AgentReport::Pong);
                            }
                            Ok(AgentCommand::Launch { framework_id, tasks: specs }) => {
                                for spec in specs {
                                    if tasks.contains_key(&spec.id) {
                                        self.0.log.line(&who, format_args!("launch of {} again: ignored", spec.id));
                                        continue;
                                    }
                                    self.0.log.line(&who, format_args!("launch {}", spec.id));
                                    self.record()
                                        .ran
                                        .entry(spec.id.to_string())
                                        .or_default()
                                        .push(who.clone());
                                    tasks.insert(spec.id.clone(), AgentTask {
                                        framework_id: framework_id.clone(),
                                        state: TaskState::TaskStaging,
                                        outbox: VecDeque::new(),
                                        sent: None,
                                        in_flight: 0,
                                    });
                                    tokio::spawn(run_task(
                                        self.0.rng.clone(),
                                        events_tx.clone(),
                                        framework_id.clone(),
                                        spec.id.clone(),
                                    ));
                                }
                            }
                            Ok(AgentCommand::Kill { framework_id, task_id, .. }) => {
                                let _ = events_tx.send(TaskEvent::State(framework_id, task_id, TaskState::TaskKilled));
                            }
                            Ok(AgentCommand::Ack { task_id, uuid, .. }) => {
                                if let Some(task) = tasks.get_mut(&task_id) {
                                    let at = task.outbox.iter().take(task.in_flight).position(|u| u.uuid == uuid);
                                    if let Some(at) = at {
                                        task.outbox.drain(..=at);
                                        task.in_flight -= at + 1;
                                        if task.outbox.is_empty() {
                                            task.sent = None;
                                        } else if at == 0 {
                                            task.sent = Some((Instant::now(), resend_min));
                                        }
                                    }
                                }
                            }
                            Ok(_) => {}
                        }
                    }
                    Some(TaskEvent::State(framework_id, task_id, state)) = events.recv() => {
                        let Some(task) = tasks.get_mut(&task_id) else { continue };
                        if task.state.is_terminal() {
                            continue;
                        }
                        task.state = state;
                        uuids += 1;
                        task.outbox.push_back(AgentUpdate {
                            uuid: format!("{who}-u{uuids}"),
                            framework_id,
                            task_id,
                            state,
                            latest_state: None,
                            message: String::new(),
                            exit_code: state.is_terminal().then_some(0),
                            timestamp_ms: EPOCH_MS + self.0.start.elapsed().as_millis() as u64,
                        });
                    }
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {
                        if heard.elapsed() > SESSION_SILENCE {
                            break "nothing heard".to_string();
                        }
                    }
                }
            };
            self.0
                .log
                .line(&who, format_args!("session with n{node} over: {ended}"));
            reader.abort();
            forward.abort();
            tokio::time::sleep(self.0.rng.millis(50, 200)).await;
        }
    }
}

/// A launched task's life: TASK_STARTING, TASK_RUNNING, TASK_FINISHED at random moments.
async fn run_task(
    rng: SimRng,
    events: mpsc::UnboundedSender<TaskEvent>,
    framework_id: FrameworkId,
    task_id: TaskId,
) {
    for (state, lo, hi) in [
        (TaskState::TaskStarting, 1, 20),
        (TaskState::TaskRunning, 1, 50),
        (TaskState::TaskFinished, 100, 1500),
    ] {
        tokio::time::sleep(rng.millis(lo, hi)).await;
        if events
            .send(TaskEvent::State(
                framework_id.clone(),
                task_id.clone(),
                state,
            ))
            .is_err()
        {
            return;
        }
    }
}

impl Flow {
    /// The framework: subscribes with whoever leads, launches on its offers, acknowledges
    /// and records updates, and subscribes again when its subscription ends.
    async fn framework(self, end: Instant) {
        let who = "fw";
        let mut framework_id: Option<FrameworkId> = None;
        let mut node = *self.0.rng.pick(self.0.cluster.ids());
        let mut launched = 0u64;
        loop {
            let call = SubscribeCall {
                id: framework_id.clone(),
                name: "sim".into(),
                role: "*".into(),
                principal: None,
                failover_timeout_ms: 3_600_000,
                user: String::new(),
            };
            let subscription = match self
                .call(who, node, |l| async move { l.subscribe(call).await })
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    node = self.next_node(&e);
                    tokio::time::sleep(self.0.rng.millis(50, 200)).await;
                    continue;
                }
            };
            let fid = subscription.framework_id.clone();
            framework_id = Some(fid.clone());
            self.0
                .log
                .line(who, format_args!("subscribed with n{node}"));
            let (mut events, forward) = self.relay(node, subscription.events);
            let unfinished = self.unfinished();
            if !unfinished.is_empty() {
                let f = fid.clone();
                let _ = self
                    .call(who, node, |l| async move { l.reconcile(&f, &unfinished) })
                    .await;
            }
            let ended = loop {
                let event = tokio::select! {
                    biased;
                    e = events.recv() => e,
                    _ = tokio::time::sleep(Duration::from_secs(3)) => {
                        break "nothing heard for 3 s".to_string();
                    }
                };
                let Some(event) = event else {
                    break "the subscription closed".to_string();
                };
                match event {
                    Err(end) => break format!("ended: {end}"),
                    Ok(FrameworkEvent::Offers(offers)) => {
                        for view in offers {
                            let offer = view.offer;
                            // Launches stop at the end of the run (the rest is declined
                            // by leaving it), and at most MAX_LIVE are unfinished.
                            let live = self.unfinished().len() as u64;
                            if Instant::now() >= end || live >= MAX_LIVE {
                                continue;
                            }
                            let fits = offer.resources.scalar_total("cpus").millis() / 250;
                            let count = self.0.rng.range(1, 2).min(MAX_LIVE - live).min(fits);
                            if count == 0 {
                                continue;
                            }
                            let tasks: Vec<TaskSpec> = (0..count)
                                .map(|_| {
                                    launched += 1;
                                    TaskSpec {
                                        id: TaskId::new(format!("t{launched}")).expect("valid id"),
                                        name: format!("t{launched}"),
                                        resources: Resources::parse("cpus:0.25;mem:64")
                                            .expect("valid resources"),
                                        launch: vec![],
                                        user: String::new(),
                                    }
                                })
                                .collect();
                            let ids: Vec<String> = tasks.iter().map(|t| t.id.to_string()).collect();
                            self.0.log.line(
                                who,
                                format_args!("launch {} on {}", ids.join(","), offer.agent_id),
                            );
                            for t in &ids {
                                self.record().launches.insert(t.clone(), None);
                            }
                            let (f, accept) = (
                                fid.clone(),
                                AcceptCall {
                                    offer_ids: vec![offer.id.clone()],
                                    tasks,
                                    refuse: Duration::ZERO,
                                },
                            );
                            let flow = self.clone();
                            // Accepts run beside the event loop, as a driver's calls do.
                            tokio::spawn(async move {
                                let out = flow
                                    .call(who, node, |l| async move { l.accept(&f, accept).await })
                                    .await;
                                let verdict = match &out {
                                    Ok(()) => Some(true),
                                    Err(CallError::Leader(
                                        LeaderError::Precondition(_)
                                        | LeaderError::Invalid { .. }
                                        | LeaderError::Rejected(_),
                                    )) => Some(false),
                                    Err(_) => None,
                                };
                                flow.0.log.line(
                                    who,
                                    format_args!(
                                        "launch {}: {}",
                                        ids.join(","),
                                        match &out {
                                            Ok(()) => "ok".to_string(),
                                            Err(e) => e.to_string(),
                                        }
                                    ),
                                );
                                let mut record = flow.record();
                                for t in ids {
                                    record.launches.insert(t, verdict);
                                }
                            });
                        }
                    }
                    Ok(FrameworkEvent::Update(status)) => {
                        let task = status.task_id.to_string();
                        self.0.log.line(
                            who,
                            format_args!(
                                "update {task} {}{}",
                                status.state,
                                if status.uuid.is_some() {
                                    ""
                                } else {
                                    " (no uuid)"
                                }
                            ),
                        );
                        let now = self.0.log.now_ms();
                        self.record().updates.entry(task).or_default().push((
                            now,
                            status.state,
                            status.uuid.is_some(),
                        ));
                        if let Some(uuid) = status.uuid {
                            let (f, t, agent) =
                                (fid.clone(), status.task_id.clone(), status.agent_id.clone());
                            let (lo, hi) = self.0.config.ack_delay;
                            if hi == 0 {
                                let _ = self
                                    .call(who, node, |l| async move {
                                        l.acknowledge(&f, &t, uuid, agent)
                                    })
                                    .await;
                            } else {
                                let (flow, wait) = (self.clone(), self.0.rng.millis(lo, hi));
                                tokio::spawn(async move {
                                    tokio::time::sleep(wait).await;
                                    let _ = flow
                                        .call(who, node, |l| async move {
                                            l.acknowledge(&f, &t, uuid, agent)
                                        })
                                        .await;
                                });
                            }
                        }
                    }
                    Ok(_) => {}
                }
            };
            self.0
                .log
                .line(who, format_args!("subscription with n{node} over: {ended}"));
            forward.abort();
            node = *self.0.rng.pick(self.0.cluster.ids());
            tokio::time::sleep(self.0.rng.millis(50, 200)).await;
        }
    }

    /// Waits until the framework has heard every launch end whose outcome it knows (at
    /// most `bound`), and a little more (updates still in flight): whether they all did.
    pub async fn settle(&self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            let unfinished = self.unfinished();
            let waiting = {
                let record = self.record();
                unfinished
                    .iter()
                    .any(|t| record.launches.get(t.as_str()) == Some(&Some(true)))
            };
            if !waiting {
                tokio::time::sleep(Duration::from_millis(500)).await;
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The tasks the framework launched (or tried to) and has not heard end.
    fn unfinished(&self) -> Vec<TaskId> {
        let record = self.record();
        record
            .launches
            .iter()
            .filter(|(t, verdict)| {
                **verdict != Some(false)
                    && !record
                        .updates
                        .get(*t)
                        .is_some_and(|u| u.iter().any(|(_, s, _)| s.is_terminal()))
            })
            .filter_map(|(t, _)| TaskId::new(t.clone()).ok())
            .collect()
    }

    /// Checks what the framework and the agents saw (module docs); its figures.
    pub fn check(&self) -> FlowFigures {
        let record = self.record();
        let checker = &self.0.checker;
        let mut figures = FlowFigures::default();
        let rank = |s: TaskState| match s {
            TaskState::TaskStaging => 0,
            TaskState::TaskStarting => 1,
            TaskState::TaskRunning => 2,
            _ if s.is_terminal() => 4,
            _ => 3,
        };
        for (task, updates) in &record.updates {
            figures.updates += updates.len() as u64;
            let mut highest: Option<(u64, TaskState)> = None;
            for &(at, state, with_uuid) in updates {
                if !with_uuid {
                    continue;
                }
                if let Some((seen_at, seen)) = highest {
                    let terminal_twice = seen.is_terminal() && state.is_terminal() && seen != state;
                    if rank(state) < rank(seen) || terminal_twice {
                        checker.violation(format!(
                            "task {task}: updates out of order: {state} at {at} ms after {seen} at {seen_at} ms"
                        ));
                    }
                    if rank(state) < rank(seen) {
                        continue;
                    }
                }
                highest = Some((at, state));
            }
            let terminal: BTreeSet<TaskState> = updates
                .iter()
                .map(|&(_, s, _)| s)
                .filter(|s| s.is_terminal())
                .collect();
            // A launch whose call failed and that never ran may be answered "unknown"
            // (TASK_LOST) by a reconciliation and refused (TASK_DROPPED) later: both are
            // true. A task that ran, or whose launch was acknowledged, has one end.
            let launched =
                record.launches.get(task) == Some(&Some(true)) || record.ran.contains_key(task);
            if launched && terminal.len() > 1 {
                checker.violation(format!("task {task}: told of different ends: {terminal:?}"));
            }
            if terminal.contains(&TaskState::TaskFinished) {
                figures.tasks_finished += 1;
            }
        }
        for (task, agents) in &record.ran {
            if agents.len() > 1 {
                checker.violation(format!(
                    "task {task} ran {} times: on {agents:?}",
                    agents.len()
                ));
            }
        }
        for (task, verdict) in &record.launches {
            let ends: Vec<TaskState> = record
                .updates
                .get(task)
                .map(|u| {
                    u.iter()
                        .map(|&(_, s, _)| s)
                        .filter(|s| s.is_terminal())
                        .collect()
                })
                .unwrap_or_default();
            match verdict {
                Some(true) => {
                    figures.launches_acked += 1;
                    if ends.is_empty() {
                        checker.violation(format!(
                            "task {task}: launch acknowledged, but its framework never heard it end"
                        ));
                    }
                    if ends.contains(&TaskState::TaskLost) {
                        checker.violation(format!(
                            "task {task}: launch acknowledged, then TASK_LOST though every agent came back"
                        ));
                    }
                    if ends.contains(&TaskState::TaskFinished) && !record.ran.contains_key(task) {
                        checker
                            .violation(format!("task {task}: TASK_FINISHED but no agent ran it"));
                    }
                }
                Some(false) if record.ran.contains_key(task) => {
                    checker.violation(format!("task {task}: its launch was refused, but it ran"));
                }
                Some(false) | None => {}
            }
        }
        figures
    }
}
