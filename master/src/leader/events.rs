//! The leader's cluster events: what changed in the registry, as domain values, for
//! anything that follows the cluster (Mesos' operator `SUBSCRIBE` stream first).
//!
//! Every change the leader makes goes through [`Leader::write`]; once a command is
//! committed, the events it caused are derived from the command and the registry
//! ([`touched`] before the write, [`events_of`] after it) and broadcast, each stamped with
//! its log index. A follower ([`EventStream`]) starts from a snapshot read together with
//! the applied index ([`Leader::subscribe_events`]) and skips events at or below it, so it
//! sees every later change once and none twice.
//!
//! Bounded: the broadcast keeps [`EVENT_BUFFER`] events; a follower that falls further
//! behind is ended ([`EventsEnd::Lagged`]) rather than buffered without end. A stream also
//! ends when this replica stops leading (its followers go to the new leader).

use agora_acl::Action;
use agora_registry::{
    Agent, AgentId, Command, CompletedFramework, Framework, FrameworkId, Registry, Task, TaskId,
};
use tokio::sync::{broadcast, watch};

use super::Leader;

/// Events kept for slow followers; one further behind is dropped.
pub const EVENT_BUFFER: usize = 4096;
/// Followers at once (Mesos' `--max_operator_event_stream_subscribers` default); more are
/// refused until one leaves.
pub const MAX_FOLLOWERS: usize = 1000;

/// One change in the cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterEvent {
    /// A task was launched (as it is now).
    TaskAdded(Task),
    /// A task's state changed (as it is now).
    TaskUpdated(Task),
    /// An agent registered, or registered again.
    AgentAdded(Agent),
    /// An agent left the pool (unreachable or removed).
    AgentRemoved(AgentId),
    /// A framework subscribed for the first time.
    FrameworkAdded(Framework),
    /// A framework subscribed again or disconnected.
    FrameworkUpdated(Framework),
    /// A framework was torn down or timed out.
    FrameworkRemoved(CompletedFramework),
}

/// An event and the log index of the entry that caused it.
#[derive(Clone, Debug)]
pub struct Indexed {
    pub index: u64,
    pub event: ClusterEvent,
}

/// Why an event stream ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventsEnd {
    #[error("this master no longer leads; the leader is {0:?}")]
    NotLeader(Option<String>),
    #[error("the subscriber fell {0} events behind and was dropped")]
    Lagged(u64),
    #[error("the master is shutting down")]
    Closed,
}

/// What a command is about, read before it is written: what [`events_of`] needs to say
/// what it changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Touched {
    agent_added: Option<AgentId>,
    agent_removed: Option<AgentId>,
    framework: Option<(FrameworkId, bool)>,
    framework_removed: Option<FrameworkId>,
    tasks_added: Vec<(FrameworkId, TaskId)>,
    /// Tasks whose state may change, with their state before.
    tasks_updated: Vec<(FrameworkId, TaskId, Option<agora_registry::TaskState>)>,
}

fn live_tasks(
    reg: &Registry,
    keep: impl Fn(&Task) -> bool,
) -> Vec<(FrameworkId, TaskId, Option<agora_registry::TaskState>)> {
    reg.tasks()
        .filter(|t| !t.state.is_terminal() && keep(t))
        .map(|t| (t.framework_id.clone(), t.id.clone(), Some(t.state)))
        .collect()
}

/// What `command` is about, read from the registry before it is written. Cheap for the
/// commands of the task path (ids only); walks the tasks only for the rare ones that
/// change many (an agent lost, a framework removed).
pub fn touched(command: &Command, reg: &Registry) -> Touched {
    let mut t = Touched::default();
    match command {
        Command::RegisterAgent { info, .. } => t.agent_added = Some(info.id.clone()),
        // Its state changed (in or out of the pool, draining): sent as the agent again.
        Command::DeactivateAgent { id }
        | Command::ReactivateAgent { id }
        | Command::DrainAgent { id, .. } => t.agent_added = Some(id.clone()),
        Command::MarkAgentUnreachable { id, .. }
        | Command::RemoveAgent { id, .. }
        | Command::MarkAgentGone { id, .. } => {
            t.agent_removed = Some(id.clone());
            t.tasks_updated = live_tasks(reg, |task| task.agent_id == *id);
        }
        Command::RegisterFramework { info, .. } => {
            t.framework = Some((info.id.clone(), reg.framework(&info.id).is_some()));
        }
        Command::DisconnectFramework { id, .. } => t.framework = Some((id.clone(), true)),
        Command::RemoveFramework { id, .. } => {
            t.framework_removed = Some(id.clone());
            t.tasks_updated = live_tasks(reg, |task| task.framework_id == *id);
        }
        Command::LaunchTasks {
            framework_id,
            tasks,
            ..
        } => {
            t.tasks_added = tasks
                .iter()
                .map(|s| (framework_id.clone(), s.id.clone()))
                .collect();
        }
        Command::UpdateTask {
            framework_id,
            task_id,
            ..
        } => t.tasks_updated = vec![(framework_id.clone(), task_id.clone(), None)],
        Command::AddOffers { .. }
        | Command::RemoveOffers { .. }
        | Command::SetWeight { .. }
        | Command::SetWeights { .. }
        | Command::SetRetention { .. } => {}
    }
    t
}

impl Touched {
    fn is_empty(&self) -> bool {
        *self == Touched::default()
    }
}

/// The events a committed command caused, from what it touched and the registry after it.
/// Tasks come before the agent or framework whose removal ended them, as Mesos sends them.
pub fn events_of(t: &Touched, reg: &Registry) -> Vec<ClusterEvent> {
    let mut out = Vec::new();
    if let Some((id, existed)) = &t.framework {
        if let Some(f) = reg.framework(id) {
            out.push(if *existed {
                ClusterEvent::FrameworkUpdated(f.clone())
            } else {
                ClusterEvent::FrameworkAdded(f.clone())
            });
        }
    }
    if let Some(id) = &t.agent_added {
        if let Some(a) = reg.agent(id) {
            out.push(ClusterEvent::AgentAdded(a.clone()));
        }
    }
    for (f, id) in &t.tasks_added {
        if let Some(task) = reg.task(f, id) {
            out.push(ClusterEvent::TaskAdded(task.clone()));
        }
    }
    for (f, id, before) in &t.tasks_updated {
        if let Some(task) = reg.task(f, id) {
            if *before != Some(task.state) {
                out.push(ClusterEvent::TaskUpdated(task.clone()));
            }
        }
    }
    if let Some(id) = &t.agent_removed {
        out.push(ClusterEvent::AgentRemoved(id.clone()));
    }
    if let Some(id) = &t.framework_removed {
        if let Some(c) = reg.completed_framework(id) {
            out.push(ClusterEvent::FrameworkRemoved(c.clone()));
        }
    }
    out
}

/// The sending side, one per leader.
pub(super) struct Broadcast {
    tx: broadcast::Sender<Indexed>,
}

impl Default for Broadcast {
    fn default() -> Self {
        Broadcast {
            tx: broadcast::channel(EVENT_BUFFER).0,
        }
    }
}

impl Broadcast {
    fn has_followers(&self) -> bool {
        self.tx.receiver_count() > 0
    }
}

/// A follower of the cluster's events: every event after its snapshot, those its principal
/// may see, until it falls behind or this replica stops leading.
pub struct EventStream {
    rx: broadcast::Receiver<Indexed>,
    /// Events at or below this index are in the snapshot.
    after: u64,
    principal: Option<String>,
    view: watch::Receiver<openraft::RaftMetrics<u64, openraft::BasicNode>>,
    leader: Leader,
}

impl EventStream {
    /// The next event; an error ends the stream. Cancel-safe (a heartbeat timer may race
    /// it).
    pub async fn next(&mut self) -> Result<ClusterEvent, EventsEnd> {
        loop {
            let view = self.leader.view();
            if !view.is_leader {
                return Err(EventsEnd::NotLeader(view.leader_address));
            }
            tokio::select! {
                // In the order written: a deterministic simulation replays the same choice.
                biased;
                received = self.rx.recv() => match received {
                    Ok(e) if e.index <= self.after => {}
                    Ok(e) => {
                        if self.leader.may_see(self.principal.as_deref(), &e.event) {
                            return Ok(e.event);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => return Err(EventsEnd::Lagged(n)),
                    Err(broadcast::error::RecvError::Closed) => return Err(EventsEnd::Closed),
                },
                changed = self.view.changed() => {
                    if changed.is_err() {
                        return Err(EventsEnd::Closed);
                    }
                }
            }
        }
    }
}

impl Leader {
    /// What `command` touches. The registry is read only for the few commands that need
    /// it (not those of the task path), and whether or not anyone follows yet: one may
    /// subscribe while the command is in flight, its snapshot taken before it applies.
    pub(super) fn touched(&self, command: &Command) -> Touched {
        static EMPTY: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(Registry::new);
        let reads = matches!(
            command,
            Command::MarkAgentUnreachable { .. }
                | Command::RemoveAgent { .. }
                | Command::RegisterFramework { .. }
                | Command::RemoveFramework { .. }
        );
        if reads {
            self.read(|reg| touched(command, reg))
        } else {
            touched(command, &EMPTY)
        }
    }

    /// Broadcasts what a command committed at `index` changed.
    pub(super) fn publish(&self, index: u64, touched: &Touched) {
        let events = &self.shared.events;
        // A follower that subscribes after this check takes its snapshot after the command
        // was applied, so it misses nothing.
        if touched.is_empty() || !events.has_followers() {
            return;
        }
        for event in self.read(|reg| events_of(touched, reg)) {
            // No receiver left: nobody to tell.
            let _ = events.tx.send(Indexed { index, event });
        }
    }

    /// Whether `principal` may see what `event` shows.
    pub(super) fn may_see(&self, principal: Option<&str>, event: &ClusterEvent) -> bool {
        match event {
            ClusterEvent::TaskAdded(t) | ClusterEvent::TaskUpdated(t) => {
                self.may_see_task(principal, t)
            }
            ClusterEvent::AgentAdded(a) => self.may_see_agent(principal, a),
            ClusterEvent::AgentRemoved(id) => {
                self.may_view(principal, &Action::ViewAgent { agent: id.as_str() })
            }
            ClusterEvent::FrameworkAdded(f) | ClusterEvent::FrameworkUpdated(f) => {
                self.may_see_framework(principal, f)
            }
            ClusterEvent::FrameworkRemoved(c) => self.may_see_framework(principal, &c.framework),
        }
    }

    /// Follows the cluster from now on: a snapshot of what `principal` may see (read with
    /// `f`, on the registry as of the returned index) and the stream of later events.
    pub fn subscribe_events<T>(
        &self,
        principal: Option<&str>,
        f: impl FnOnce(&super::views::Visible<'_>) -> T,
    ) -> Result<(T, EventStream), super::LeaderError> {
        self.require_leader()?;
        if self.shared.events.tx.receiver_count() >= MAX_FOLLOWERS {
            return Err(super::LeaderError::Unavailable(format!(
                "{MAX_FOLLOWERS} subscribers already follow the cluster's events; try again later"
            )));
        }
        // Subscribed before the snapshot is read: nothing committed after it is missed.
        let rx = self.shared.events.tx.subscribe();
        let view = self.quorum().watch();
        let (snapshot, after) = self.read_visible(principal, |v| (f(v), v.applied));
        Ok((
            snapshot,
            EventStream {
                rx,
                after,
                principal: principal.map(str::to_string),
                view,
                leader: self.clone(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_registry::{
        AgentInfo, FrameworkInfo, Offer, OfferId, Resources, TaskSpec, TaskState,
    };

    fn apply(reg: &mut Registry, c: Command) -> Vec<ClusterEvent> {
        let t = touched(&c, reg);
        reg.apply(&c).expect("applied");
        events_of(&t, reg)
    }

    fn kinds(events: &[ClusterEvent]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match e {
                ClusterEvent::TaskAdded(_) => "task_added",
                ClusterEvent::TaskUpdated(_) => "task_updated",
                ClusterEvent::AgentAdded(_) => "agent_added",
                ClusterEvent::AgentRemoved(_) => "agent_removed",
                ClusterEvent::FrameworkAdded(_) => "framework_added",
                ClusterEvent::FrameworkUpdated(_) => "framework_updated",
                ClusterEvent::FrameworkRemoved(_) => "framework_removed",
            })
            .collect()
    }

    #[test]
    fn commands_say_what_they_changed() {
        let mut reg = Registry::new();
        let agent = AgentId::new("a1").unwrap();
        let fw = FrameworkId::new("f1").unwrap();
        let info = AgentInfo {
            id: agent.clone(),
            hostname: "h".into(),
            address: "h:5051".into(),
            resources: Resources::parse("cpus:4;mem:4096").unwrap(),
            attributes: vec![],
            principal: None,
            registration: None,
        };
        let register = Command::RegisterAgent {
            info: info.clone(),
            now_ms: 1,
        };
        assert_eq!(kinds(&apply(&mut reg, register.clone())), ["agent_added"]);
        let framework = Command::RegisterFramework {
            info: FrameworkInfo {
                id: fw.clone(),
                name: "fw".into(),
                role: "*".into(),
                principal: None,
                failover_timeout_ms: 60_000,
                user: "u".into(),
            },
            now_ms: 2,
        };
        assert_eq!(
            kinds(&apply(&mut reg, framework.clone())),
            ["framework_added"]
        );
        assert_eq!(kinds(&apply(&mut reg, framework)), ["framework_updated"]);
        let offer = OfferId::new("o1").unwrap();
        assert!(apply(
            &mut reg,
            Command::AddOffers {
                offers: vec![Offer {
                    id: offer.clone(),
                    framework_id: fw.clone(),
                    agent_id: agent.clone(),
                    resources: Resources::parse("cpus:4;mem:4096").unwrap(),
                    created_at_ms: 3,
                }],
            }
        )
        .is_empty());
        let spec = |id: &str| TaskSpec {
            id: TaskId::new(id).unwrap(),
            name: id.into(),
            resources: Resources::parse("cpus:1;mem:64").unwrap(),
            launch: vec![],
            user: "u".into(),
        };
        let e = apply(
            &mut reg,
            Command::LaunchTasks {
                framework_id: fw.clone(),
                offer_ids: vec![offer],
                tasks: vec![spec("t1"), spec("t2")],
                now_ms: 4,
            },
        );
        assert_eq!(kinds(&e), ["task_added", "task_added"]);
        let ClusterEvent::TaskAdded(t) = &e[0] else {
            unreachable!()
        };
        assert_eq!(t.state, TaskState::TaskStaging);
        let e = apply(
            &mut reg,
            Command::UpdateTask {
                framework_id: fw.clone(),
                task_id: TaskId::new("t1").unwrap(),
                state: TaskState::TaskFinished,
                message: None,
                exit_code: Some(0),
                now_ms: 5,
            },
        );
        assert_eq!(kinds(&e), ["task_updated"]);
        // The agent is lost: its one live task becomes unreachable (the finished one is
        // not touched), then the agent is gone.
        let e = apply(
            &mut reg,
            Command::MarkAgentUnreachable {
                id: agent.clone(),
                now_ms: 6,
            },
        );
        assert_eq!(kinds(&e), ["task_updated", "agent_removed"]);
        let ClusterEvent::TaskUpdated(t) = &e[0] else {
            unreachable!()
        };
        assert_eq!((t.id.as_str(), t.state), ("t2", TaskState::TaskUnreachable));
        let e = apply(
            &mut reg,
            Command::DisconnectFramework {
                id: fw.clone(),
                now_ms: 7,
            },
        );
        assert_eq!(kinds(&e), ["framework_updated"]);
        let e = apply(
            &mut reg,
            Command::RemoveFramework {
                id: fw.clone(),
                now_ms: 8,
            },
        );
        assert_eq!(kinds(&e), ["task_updated", "framework_removed"]);
        assert!(apply(
            &mut reg,
            Command::SetWeight {
                role: "r".into(),
                weight: 2.0
            }
        )
        .is_empty());
    }
}
