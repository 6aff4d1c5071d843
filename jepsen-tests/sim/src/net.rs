//! The simulated network between replicas: openraft's `RaftNetworkFactory`/`RaftNetwork`
//! for the production type configuration, whose calls go to the target's `Raft` handle in
//! this process.
//!
//! Every request and every response is a message with a delay drawn from the run's
//! generator (so messages reorder), and may be lost at random. A partition is a set of cut
//! directed pairs, checked when a message is sent and again when it arrives: a message
//! across a cut made meanwhile is lost too. A lost message is what a dropped packet is to
//! the caller: nothing comes back, and openraft's timeout ends the call. A crashed target
//! (no incarnation running, or a newer one than the message was sent to) answers
//! `Unreachable`, as a refused connection does. A paused replica's messages, both ways,
//! wait until it resumes (its socket buffers hold them), then go.
//!
//! The request is delivered by a task of its own, so a caller that gives up (openraft's
//! timeout) does not take back a message already on the wire.

// openraft's RPC error types are large, and its network trait dictates them.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agora_master::raft_network::PeerContacts;
use agora_raft_store::{NodeId, Raft, StateMachine, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use tokio::sync::oneshot;

use crate::events::EventLog;
use crate::rng::SimRng;

/// Delays and loss of every message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conditions {
    /// One-way delay in milliseconds, drawn in `[min, max]` per message.
    pub delay_ms: (u64, u64),
    /// Probability that a message is lost.
    pub loss: f64,
}

impl Default for Conditions {
    fn default() -> Self {
        Conditions {
            delay_ms: (1, 5),
            loss: 0.0,
        }
    }
}

/// Messages counted since the last summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub refused: u64,
}

/// One replica as the network sees it.
struct Endpoint<M: StateMachine> {
    /// Its running incarnation, if any.
    raft: Option<(u64, Raft<M>)>,
}

struct NetInner<M: StateMachine> {
    nodes: BTreeMap<NodeId, Endpoint<M>>,
    /// Cut directed pairs (from, to).
    cuts: BTreeSet<(NodeId, NodeId)>,
    paused: BTreeSet<NodeId>,
    /// Waiting for a replica to resume, in the order they came (woken in that order: a
    /// watch channel wakes its waiters in an order a run cannot seed).
    resumed: Vec<oneshot::Sender<()>>,
    conditions: Conditions,
    stats: NetStats,
}

/// The network, shared by every replica of the run.
pub struct Net<M: StateMachine> {
    inner: Arc<Mutex<NetInner<M>>>,
    rng: SimRng,
    log: EventLog,
    /// openraft's backoff after `Unreachable` (the master's: one heartbeat interval).
    backoff: Duration,
}

impl<M: StateMachine> Clone for Net<M> {
    fn clone(&self) -> Self {
        Net {
            inner: self.inner.clone(),
            rng: self.rng.clone(),
            log: self.log.clone(),
            backoff: self.backoff,
        }
    }
}

/// What happens to a message at a checkpoint.
enum Fate<M: StateMachine> {
    /// Through, to this incarnation.
    Go(u64, Raft<M>),
    Lost(&'static str),
    Refused,
}

type RpcError<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl<M: StateMachine> Net<M> {
    pub fn new(rng: SimRng, log: EventLog, backoff: Duration) -> Net<M> {
        Net {
            inner: Arc::new(Mutex::new(NetInner {
                nodes: BTreeMap::new(),
                cuts: BTreeSet::new(),
                paused: BTreeSet::new(),
                resumed: Vec::new(),
                conditions: Conditions::default(),
                stats: NetStats::default(),
            })),
            rng,
            log,
            backoff,
        }
    }

    fn lock(&self) -> MutexGuard<'_, NetInner<M>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Incarnation `generation` of `node` is up and reachable through `raft`.
    pub fn up(&self, node: NodeId, generation: u64, raft: Raft<M>) {
        self.lock().nodes.insert(
            node,
            Endpoint {
                raft: Some((generation, raft)),
            },
        );
    }

    /// `node` is down (crashed): messages to it are refused.
    pub fn down(&self, node: NodeId) {
        self.lock().nodes.insert(node, Endpoint { raft: None });
    }

    /// The running incarnation of `node`, if any.
    pub fn raft(&self, node: NodeId) -> Option<(u64, Raft<M>)> {
        self.lock().nodes.get(&node).and_then(|e| e.raft.clone())
    }

    /// Cuts every pair in `pairs` (directed).
    pub fn cut(&self, pairs: impl IntoIterator<Item = (NodeId, NodeId)>) {
        self.lock().cuts.extend(pairs);
    }

    /// Heals every cut.
    pub fn heal(&self) {
        self.lock().cuts.clear();
    }

    pub fn cuts(&self) -> BTreeSet<(NodeId, NodeId)> {
        self.lock().cuts.clone()
    }

    pub fn set_conditions(&self, c: Conditions) {
        self.lock().conditions = c;
    }

    pub fn pause(&self, node: NodeId) {
        self.lock().paused.insert(node);
    }

    pub fn resume_all(&self) {
        let waiting = {
            let mut inner = self.lock();
            inner.paused.clear();
            std::mem::take(&mut inner.resumed)
        };
        for tx in waiting {
            let _ = tx.send(());
        }
    }

    pub fn is_paused(&self, node: NodeId) -> bool {
        self.lock().paused.contains(&node)
    }

    /// The counts since the last call, reset.
    pub fn take_stats(&self) -> NetStats {
        std::mem::take(&mut self.lock().stats)
    }

    /// Waits while `node` is paused (a client's call to it).
    pub async fn wait_resumed(&self, node: NodeId) {
        self.while_paused(node, node).await
    }

    /// Waits while `a` or `b` is paused.
    async fn while_paused(&self, a: NodeId, b: NodeId) {
        loop {
            let rx = {
                let mut inner = self.lock();
                if !inner.paused.contains(&a) && !inner.paused.contains(&b) {
                    return;
                }
                let (tx, rx) = oneshot::channel();
                inner.resumed.push(tx);
                rx
            };
            let _ = rx.await;
        }
    }

    fn delay(&self) -> Duration {
        let (lo, hi) = self.lock().conditions.delay_ms;
        self.rng.millis(lo, hi)
    }

    /// Whether a message `from` -> `to` gets through now; `to_generation`: the incarnation
    /// it must reach (None: whichever runs, for a message being sent).
    fn fate(&self, from: NodeId, to: NodeId, to_generation: Option<u64>) -> Fate<M> {
        let (cut, loss, target) = {
            let inner = self.lock();
            (
                inner.cuts.contains(&(from, to)),
                inner.conditions.loss,
                inner.nodes.get(&to).and_then(|e| e.raft.clone()),
            )
        };
        if cut {
            return Fate::Lost("cut");
        }
        if self.rng.chance(loss) {
            return Fate::Lost("lost");
        }
        match target {
            Some((g, raft)) if to_generation.is_none_or(|want| want == g) => Fate::Go(g, raft),
            _ => Fate::Refused,
        }
    }

    fn count(&self, f: impl FnOnce(&mut NetStats)) {
        f(&mut self.lock().stats)
    }

    fn note(&self, from: NodeId, to: NodeId, what: &str, how: &str) {
        if self.log.verbose() {
            self.log
                .line("net", format_args!("n{from}->n{to} {what} {how}"));
        }
    }

    /// One call from incarnation `from_generation` of `from` to `to`: the request travels,
    /// `deliver` runs it on the target, the response travels back.
    async fn call<T, E, F, Fut>(
        &self,
        from: NodeId,
        from_generation: u64,
        to: NodeId,
        what: String,
        option: &RPCOption,
        deliver: F,
    ) -> Result<T, RpcError<E>>
    where
        T: Send + 'static,
        E: std::error::Error + Send + 'static,
        F: FnOnce(Raft<M>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, RaftError<NodeId, E>>> + Send,
    {
        let (tx, rx) = oneshot::channel::<Result<T, RpcError<E>>>();
        let net = self.clone();
        self.count(|s| s.sent += 1);
        let to_generation = match self.fate(from, to, None) {
            Fate::Lost(how) => {
                self.count(|s| s.lost += 1);
                self.note(from, to, &what, how);
                None
            }
            Fate::Refused => Some(None),
            Fate::Go(g, _) => Some(Some(g)),
        };
        if let Some(to_generation) = to_generation {
            let what = what.clone();
            tokio::spawn(async move {
                tokio::time::sleep(net.delay()).await;
                net.while_paused(from, to).await;
                let raft = match to_generation.map(|g| net.fate(from, to, Some(g))) {
                    Some(Fate::Go(_, raft)) => raft,
                    Some(Fate::Lost(how)) => {
                        net.count(|s| s.lost += 1);
                        net.note(from, to, &what, how);
                        return;
                    }
                    None | Some(Fate::Refused) => {
                        net.count(|s| s.refused += 1);
                        net.note(from, to, &what, "refused");
                        let refused = std::io::Error::other(format!("n{to} is down"));
                        let _ = tx.send(Err(RPCError::Unreachable(Unreachable::new(&refused))));
                        return;
                    }
                };
                net.count(|s| s.delivered += 1);
                net.note(from, to, &what, "delivered");
                let result = deliver(raft).await;
                // The response: a message of its own, back to the incarnation that asked.
                tokio::time::sleep(net.delay()).await;
                net.while_paused(to, from).await;
                match net.fate(to, from, Some(from_generation)) {
                    Fate::Go(..) => {}
                    Fate::Lost(how) => {
                        net.count(|s| s.lost += 1);
                        net.note(to, from, &format!("reply to {what}"), how);
                        return;
                    }
                    Fate::Refused => return,
                }
                let _ = tx.send(result.map_err(|e| RPCError::RemoteError(RemoteError::new(to, e))));
            });
        }
        match rx.await {
            Ok(result) => result,
            Err(_) => {
                // Nothing will come back: the caller waits out its deadline, as for a
                // dropped packet (openraft's own timeout usually ends the call first).
                tokio::time::sleep(option.hard_ttl()).await;
                let timeout = std::io::Error::other(format!("{what} to n{to}: timed out"));
                Err(RPCError::Network(NetworkError::new(&timeout)))
            }
        }
    }

    /// The network factory for incarnation `generation` of `node`, which records its
    /// peers' answers in `contacts` (as the master's peer transport does: its leader lease
    /// is made of them).
    pub fn factory(&self, node: NodeId, generation: u64, contacts: PeerContacts) -> NetFactory<M> {
        NetFactory {
            net: self.clone(),
            node,
            generation,
            contacts,
        }
    }
}

/// Creates one [`Peer`] per replication target of one incarnation.
pub struct NetFactory<M: StateMachine> {
    net: Net<M>,
    node: NodeId,
    generation: u64,
    contacts: PeerContacts,
}

impl<M: StateMachine> RaftNetworkFactory<TypeConfig<M>> for NetFactory<M> {
    type Network = Peer<M>;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Peer<M> {
        Peer {
            net: self.net.clone(),
            from: self.node,
            generation: self.generation,
            to: target,
            contacts: self.contacts.clone(),
        }
    }
}

/// One incarnation's link to one peer.
pub struct Peer<M: StateMachine> {
    net: Net<M>,
    from: NodeId,
    generation: u64,
    to: NodeId,
    contacts: PeerContacts,
}

impl<M: StateMachine> RaftNetwork<TypeConfig<M>> for Peer<M> {
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.net.backoff))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig<M>>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError<openraft::error::Infallible>> {
        let what = format!(
            "append[{}+{} commit {}]",
            rpc.prev_log_id.map_or(0, |l| l.index),
            rpc.entries.len(),
            rpc.leader_commit.map_or(0, |l| l.index)
        );
        let term = rpc.vote.leader_id().term;
        let sent = tokio::time::Instant::now();
        let reply = self
            .net
            .call(
                self.from,
                self.generation,
                self.to,
                what,
                &option,
                |raft| async move { raft.append_entries(rpc).await },
            )
            .await;
        // What the master's peer transport records: an answer, and (but for a higher
        // vote) an accepted append of this term, by when it was sent.
        if let Ok(reply) = &reply {
            self.contacts.heard(self.to);
            if !matches!(reply, AppendEntriesResponse::HigherVote(_)) {
                self.contacts.accepted(self.to, term, sent);
            }
        }
        reply
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError<openraft::error::Infallible>> {
        let what = format!("vote[term {}]", rpc.vote.leader_id().term);
        self.net
            .call(
                self.from,
                self.generation,
                self.to,
                what,
                &option,
                |raft| async move { raft.vote(rpc).await },
            )
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig<M>>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        let what = format!(
            "snapshot[{} at {}{}]",
            rpc.meta.snapshot_id,
            rpc.offset,
            if rpc.done { " done" } else { "" }
        );
        self.net
            .call(
                self.from,
                self.generation,
                self.to,
                what,
                &option,
                |raft| async move { raft.install_snapshot(rpc).await },
            )
            .await
    }
}
