//! Forming the quorum exactly once, without ZooKeeper.
//!
//! A replica whose store is pristine (no vote, no log, no snapshot) asks every peer in
//! `--peers` about itself (RaftPeer.NodeStatus):
//! - if any peer is *established* (it has had a leader), a cluster exists: this replica
//!   must not initialize. It stays *quarantined* (refuses to vote, since it may have voted
//!   before its store was wiped, and does not campaign, since it cannot win with an empty
//!   log and would only disturb the quorum) and catches up from the leader like a new follower; the
//!   quarantine ends once it has accepted a leader (its vote is committed).
//! - if every peer answered and none is established, the cluster is new: the quarantine
//!   ends, and the replica with the lowest id calls `initialize` with the `--peers` set,
//!   only if all peers are still pristine. Nobody else ever initializes.
//! - a replica started with `--join` never initializes: it waits for an operator to add
//!   it as a learner (it has never voted, so it is not quarantined).
//! - if some peer does not answer, it waits and asks again: a replica never initializes
//!   a cluster alone, so a wiped replica can never form or split off a second cluster.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agora_proto::v1::raft_peer_client::RaftPeerClient;
use agora_proto::v1::NodeStatusRequest;
use openraft::BasicNode;

use crate::quorum::{is_established, Quorum};
use crate::raft_network::channel;

enum PeerView {
    Unreachable,
    Answered { pristine: bool, established: bool },
}

async fn ask(id: u64, addr: &str, security: &agora_security::client::ClientSecurity) -> PeerView {
    let Ok(ch) = channel(addr, security) else {
        return PeerView::Unreachable;
    };
    let mut req = tonic::Request::new(NodeStatusRequest { expected_id: id });
    req.set_timeout(Duration::from_millis(800));
    match RaftPeerClient::new(ch).node_status(req).await {
        Ok(r) => {
            let r = r.into_inner();
            PeerView::Answered {
                pristine: r.pristine,
                established: r.established,
            }
        }
        Err(status) => {
            tracing::debug!(peer = id, %addr, %status, "peer did not answer NodeStatus");
            PeerView::Unreachable
        }
    }
}

/// Runs the bootstrap decision for a replica that started pristine; returns at once for
/// one that did not.
pub async fn run(master: Quorum, pristine: bool) {
    if !pristine {
        return;
    }
    if master.config.join {
        tracing::info!("--join: waiting to be added to the quorum as a learner");
        return;
    }
    let me = master.config.id;
    let others: BTreeMap<u64, String> = master
        .config
        .peers
        .iter()
        .filter(|(id, _)| **id != me)
        .map(|(id, a)| (*id, a.clone()))
        .collect();
    let mut logged_wait = false;
    loop {
        let mut all_answered = true;
        let mut all_pristine = true;
        let mut established = false;
        for (id, addr) in &others {
            match ask(*id, addr, &master.peer_security).await {
                PeerView::Unreachable => all_answered = false,
                PeerView::Answered {
                    pristine,
                    established: e,
                } => {
                    all_pristine &= pristine;
                    established |= e;
                }
            }
        }
        if established {
            tracing::warn!(
                "store is empty but the quorum already exists: not initializing; \
                 catching up from the leader without voting until it has accepted one"
            );
            wait_until_established(&master).await;
            lift_quarantine(&master);
            tracing::info!("rejoined the quorum; voting again");
            return;
        }
        if all_answered {
            lift_quarantine(&master);
            let lowest = *master
                .config
                .peers
                .keys()
                .next()
                .expect("validated non-empty");
            if me == lowest && all_pristine {
                let members: BTreeMap<u64, BasicNode> = master
                    .config
                    .peers
                    .iter()
                    .map(|(id, addr)| (*id, BasicNode::new(addr)))
                    .collect();
                match master.raft.initialize(members).await {
                    Ok(()) => tracing::info!("initialized a new quorum"),
                    Err(e) => tracing::warn!(error = %e, "initialize refused"),
                }
            }
            return;
        }
        if !logged_wait {
            tracing::info!("store is empty; waiting for every peer in --peers to answer before deciding whether to initialize");
            logged_wait = true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn lift_quarantine(master: &Quorum) {
    master.quarantined.store(false, Ordering::Release);
    master.raft.runtime_config().elect(true);
}

async fn wait_until_established(master: &Quorum) {
    let mut rx = master.raft.metrics();
    loop {
        if is_established(&rx.borrow_and_update()) {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
