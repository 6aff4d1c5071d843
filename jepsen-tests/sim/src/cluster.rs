//! The replicas of a run: each one the production `Raft` (`agora_raft_store::Raft<M>`) on
//! a simulated [`Disk`] and the simulated [`Net`], started, crashed and restarted by the
//! nemesis, watched for leader changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agora_master::raft_network::PeerContacts;
use agora_raft_store::{NodeId, Raft, StateMachine};
use openraft::{BasicNode, ServerState};

use crate::check::Checker;
use crate::disk::{Disk, DiskSettings, MachineHandle};
use crate::events::EventLog;
use crate::net::Net;
use crate::rng::SimRng;

/// How long a crashed replica's Raft gets to stop before the run moves on.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Per replica, its running incarnation's id, state machine and peers' answers.
type Machines<M> = BTreeMap<NodeId, (u64, MachineHandle<M>, PeerContacts)>;

/// The replicas, shared by the run's tasks.
pub struct Cluster<M: StateMachine> {
    ids: Vec<NodeId>,
    disks: BTreeMap<NodeId, Disk<M>>,
    net: Net<M>,
    /// Each running incarnation's state machine (clients read it).
    machines: Arc<Mutex<Machines<M>>>,
    config: Arc<openraft::Config>,
    log: EventLog,
    checker: Checker,
}

impl<M: StateMachine> Clone for Cluster<M> {
    fn clone(&self) -> Self {
        Cluster {
            ids: self.ids.clone(),
            disks: self.disks.clone(),
            net: self.net.clone(),
            machines: self.machines.clone(),
            config: self.config.clone(),
            log: self.log.clone(),
            checker: self.checker.clone(),
        }
    }
}

/// `n3`.
pub fn name(node: NodeId) -> String {
    format!("n{node}")
}

impl<M: StateMachine> Cluster<M> {
    /// Replicas 1..=n, none started.
    pub fn new(
        n: usize,
        config: Arc<openraft::Config>,
        disk: DiskSettings,
        rng: SimRng,
        log: EventLog,
        checker: Checker,
    ) -> Cluster<M> {
        let ids: Vec<NodeId> = (1..=n as NodeId).collect();
        let net = Net::new(
            rng.clone(),
            log.clone(),
            Duration::from_millis(config.heartbeat_interval),
        );
        let disks = ids
            .iter()
            .map(|&id| {
                let observer: Arc<dyn crate::disk::DiskObserver<M>> = Arc::new(checker.clone());
                (id, Disk::new(id, rng.clone(), disk.clone(), observer))
            })
            .collect();
        Cluster {
            ids,
            disks,
            net,
            machines: Arc::default(),
            config,
            log,
            checker,
        }
    }

    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    pub fn net(&self) -> &Net<M> {
        &self.net
    }

    fn machines(&self) -> MutexGuard<'_, Machines<M>> {
        self.machines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a new incarnation of `node` from its disk.
    pub async fn start(&self, node: NodeId) {
        let (generation, log, sm, machine) = self.disks[&node].open();
        let contacts = PeerContacts::default();
        let raft = Raft::<M>::new(
            node,
            self.config.clone(),
            self.net.factory(node, generation, contacts.clone()),
            log,
            sm,
        )
        .await
        .expect("openraft starts on a disk it wrote");
        let incarnation = self.disks[&node].incarnations();
        self.log.line(
            &name(node),
            format_args!("start (incarnation {incarnation})"),
        );
        self.machines()
            .insert(node, (generation, machine, contacts));
        self.net.up(node, generation, raft.clone());
        tokio::spawn(self.clone().watch(node, generation, raft));
    }

    /// Whether `node` runs.
    pub fn is_up(&self, node: NodeId) -> bool {
        self.net.raft(node).is_some()
    }

    /// Crashes `node`: its unflushed writes are lost (but a random prefix), its Raft is
    /// stopped, messages to it are refused.
    pub async fn crash(&self, node: NodeId) {
        let Some((_, raft)) = self.net.raft(node) else {
            return;
        };
        self.log.line(&name(node), "crash");
        self.net.down(node);
        self.machines().remove(&node);
        self.disks[&node].crash();
        if tokio::time::timeout(SHUTDOWN_WAIT, raft.shutdown())
            .await
            .is_err()
        {
            self.log
                .line(&name(node), "its Raft did not stop within 5 s");
        }
    }

    /// The running incarnation of `node`: its number, Raft and state machine.
    pub fn node(&self, node: NodeId) -> Option<(u64, Raft<M>, MachineHandle<M>)> {
        let (generation, raft) = self.net.raft(node)?;
        let (g, machine, _) = self.machines().get(&node).cloned()?;
        (g == generation).then_some((generation, raft, machine))
    }

    /// What the running incarnation of `node` heard from its peers (its leader lease).
    pub fn contacts(&self, node: NodeId) -> Option<PeerContacts> {
        let (generation, _) = self.net.raft(node)?;
        let (g, _, contacts) = self.machines().get(&node).cloned()?;
        (g == generation).then_some(contacts)
    }

    /// The replica whose metrics say it leads in the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.ids
            .iter()
            .filter_map(|&id| {
                let (_, raft) = self.net.raft(id)?;
                let m = raft.metrics().borrow().clone();
                (m.state == ServerState::Leader).then_some((m.current_term, id))
            })
            .max()
            .map(|(_, id)| id)
    }

    /// Makes replica 1 initialize the cluster with every replica as a voter.
    pub async fn initialize(&self) {
        let members: BTreeMap<NodeId, BasicNode> = self
            .ids
            .iter()
            .map(|&id| (id, BasicNode::new(name(id))))
            .collect();
        let (_, raft) = self.net.raft(self.ids[0]).expect("replica 1 runs");
        raft.initialize(members)
            .await
            .expect("a pristine replica initializes");
        self.log.line("sim", "initialized by n1");
    }

    /// Logs `node`'s role changes and reports every leadership to the checker, for as
    /// long as incarnation `generation` runs.
    async fn watch(self, node: NodeId, generation: u64, raft: Raft<M>) {
        let mut rx = raft.metrics();
        let mut last = None;
        loop {
            let now = {
                let m = rx.borrow_and_update();
                (m.state, m.current_term, m.current_leader)
            };
            if self.net.raft(node).map(|(g, _)| g) != Some(generation) {
                return;
            }
            if last != Some(now) {
                last = Some(now);
                let (state, term, leader) = now;
                let what = match state {
                    ServerState::Leader => {
                        self.checker.leader(node, term);
                        format!("leader term={term}")
                    }
                    ServerState::Follower => match leader {
                        Some(l) => format!("follower term={term} leader=n{l}"),
                        None => format!("follower term={term}"),
                    },
                    ServerState::Candidate => format!("candidate term={term}"),
                    ServerState::Learner => format!("learner term={term}"),
                    ServerState::Shutdown => return,
                };
                self.log.line(&name(node), what);
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}
