//! This replica's place in the Raft quorum: who leads in which term, the membership, and
//! the membership changes an operator asks for. Knows openraft; knows nothing of agents,
//! frameworks or the wire.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};

use crate::config::Config;
use crate::raft_network::PeerContacts;
use crate::store::Raft;

/// This replica's view of the quorum.
#[derive(Clone, Debug)]
pub struct LeaderView {
    pub id: u64,
    pub role: &'static str,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub leader_address: Option<String>,
    pub is_leader: bool,
}

/// One member of the quorum.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub id: u64,
    pub address: String,
    pub voter: bool,
}

/// What `agora status` shows of the quorum.
#[derive(Clone, Debug)]
pub struct QuorumStatus {
    pub view: LeaderView,
    pub members: Vec<Member>,
    pub last_log_index: u64,
    pub last_applied: u64,
}

/// One member as the leader sees it: its role, and when it last answered the leader.
#[derive(Clone, Debug)]
pub struct MemberHealth {
    pub member: Member,
    /// "leader", "follower" (a voter) or "learner".
    pub role: &'static str,
    /// Since this replica last had an answer from it (zero for this replica itself);
    /// None if it never answered or this replica does not lead.
    pub last_contact: Option<std::time::Duration>,
    /// The last log index it is known to hold (the leader's replication state).
    pub matched_index: Option<u64>,
    /// Answered within the longest election timeout (a heartbeat is due every interval).
    pub healthy: bool,
}

/// A committed membership change.
#[derive(Clone, Debug)]
pub struct MembershipChange {
    pub members: Vec<Member>,
    pub log_index: u64,
}

/// Why a membership change did not happen.
#[derive(Clone, Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("not the leader")]
    NotLeader(Option<String>),
    /// A bad request, naming the field.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    Refused(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The part of openraft's leader lease (the time a follower that accepted an append
/// refuses to vote for another) a leader counts on: the rest covers clocks running at
/// different rates.
pub const LEASE_FRACTION: f64 = 0.9;

/// A handle on this replica's Raft node.
#[derive(Clone)]
pub struct Quorum {
    pub(crate) config: Arc<Config>,
    pub(crate) raft: Raft,
    /// Set while this replica must not vote (see [`crate::bootstrap`]).
    pub(crate) quarantined: Arc<AtomicBool>,
    /// How this replica reaches its peers (TLS with its own certificate, or plaintext).
    pub(crate) peer_security: agora_security::client::ClientSecurity,
    /// When each peer last answered this replica's Raft calls.
    pub(crate) contacts: PeerContacts,
    /// Set once this replica, stopping, hands leadership over ([`Quorum::hand_over`]):
    /// from then on it serves nothing as the leader's.
    pub(crate) handing_over: Arc<AtomicBool>,
}

/// Why a stopping replica did not hand leadership over.
#[derive(Debug, thiserror::Error)]
pub enum HandOverError {
    #[error("this replica does not lead")]
    NotLeader,
    #[error("no follower holds the whole log within {0:?}")]
    NoFollowerCaughtUp(std::time::Duration),
    #[error("follower {0} did not take the hand-over: {1}")]
    Refused(u64, String),
    #[error("no new leader within {0:?}")]
    NoNewLeader(std::time::Duration),
}

impl Quorum {
    pub fn new(
        config: Arc<Config>,
        raft: Raft,
        quarantined: bool,
        peer_security: agora_security::client::ClientSecurity,
        contacts: PeerContacts,
    ) -> Quorum {
        Quorum {
            config,
            raft,
            quarantined: Arc::new(AtomicBool::new(quarantined)),
            peer_security,
            contacts,
            handing_over: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A stopping leader hands leadership over instead of leaving its followers to find
    /// out by an election timeout: it stops serving as the leader, waits (up to half of
    /// `within`) until a voting follower holds its whole log, tells that follower to
    /// campaign now (`TimeoutNow`), and waits for a new leader. The follower wins at once:
    /// this replica grants it its vote (a leader's own lease does not refuse a candidate
    /// with the whole log) and the two are a majority of three; with five, the other
    /// followers still refuse it within their lease and it wins when that runs out. Returns
    /// the new leader's id.
    pub async fn hand_over(&self, within: std::time::Duration) -> Result<u64, HandOverError> {
        let started = tokio::time::Instant::now();
        let (term, voters) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            if m.state != ServerState::Leader || m.current_leader != Some(self.config.id) {
                return Err(HandOverError::NotLeader);
            }
            let voters: BTreeSet<u64> = m.membership_config.membership().voter_ids().collect();
            (m.current_term, voters)
        };
        self.handing_over.store(true, Ordering::Release);
        // The follower holding the most of the log, once it holds all of it.
        let target = loop {
            let (last, best) = {
                let m = self.raft.metrics();
                let m = m.borrow();
                let best = m.replication.as_ref().and_then(|r| {
                    r.iter()
                        .filter(|(id, _)| **id != self.config.id && voters.contains(*id))
                        .map(|(id, matched)| (matched.map(|l| l.index), *id))
                        .max()
                });
                (m.last_log_index, best)
            };
            if let Some((matched, id)) = best {
                if matched >= last {
                    break id;
                }
            }
            if started.elapsed() > within / 2 {
                return Err(HandOverError::NoFollowerCaughtUp(within / 2));
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        };
        let address = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&target)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        let ch = crate::raft_network::channel(&address, &self.peer_security)
            .map_err(|e| HandOverError::Refused(target, e.to_string()))?;
        let mut req = tonic::Request::new(agora_proto::v1::TimeoutNowRequest {
            leader_id: self.config.id,
            term,
        });
        req.set_timeout(within.saturating_sub(started.elapsed()));
        let started_election = agora_proto::v1::raft_peer_client::RaftPeerClient::new(ch)
            .timeout_now(req)
            .await
            .map_err(|e| HandOverError::Refused(target, e.message().to_string()))?
            .into_inner()
            .started;
        if !started_election {
            return Err(HandOverError::Refused(
                target,
                "it no longer follows this leader in this term".into(),
            ));
        }
        let mut metrics = self.raft.metrics();
        let waited = tokio::time::timeout(within.saturating_sub(started.elapsed()), async {
            loop {
                {
                    let m = metrics.borrow_and_update();
                    if m.current_term > term {
                        if let Some(l) = m.current_leader.filter(|l| *l != self.config.id) {
                            return Some(l);
                        }
                    }
                }
                if metrics.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match waited {
            Ok(Some(leader)) => Ok(leader),
            _ => Err(HandOverError::NoNewLeader(within)),
        }
    }

    pub fn id(&self) -> u64 {
        self.config.id
    }

    /// This replica's advertised HOST:PORT.
    pub fn advertise(&self) -> &str {
        &self.config.advertise
    }

    pub fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Acquire)
    }

    /// Reads this replica's current view from openraft's metrics.
    pub fn view(&self) -> LeaderView {
        self.view_with(true)
    }

    /// [`Quorum::view`], with a leader's lease checked or not. Only the self-test's
    /// `stale-reads` fault ([`crate::faults::Faults::stale_reads`]) passes `false`: a
    /// leader cut off from its majority then still says it leads.
    pub fn view_with(&self, check_lease: bool) -> LeaderView {
        // Read in place: a clone of openraft's metrics (membership, replication state) per
        // request showed in profiles.
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let mut view = view_of(
            &m,
            self.config.id,
            &self.contacts,
            self.config.raft.lease(),
            ServingChecks {
                lease: check_lease,
                ..ServingChecks::ALL
            },
        );
        if view.is_leader && self.handing_over.load(Ordering::Acquire) {
            // Stopping and handing over: nothing more is served as the leader's, and no
            // leader is named until the successor is known.
            view.is_leader = false;
            view.leader_id = None;
            view.leader_address = None;
        }
        view
    }

    /// Wakes when Raft's view may have changed (an election, a step-down).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, BasicNode>> {
        self.raft.metrics()
    }

    pub fn status(&self) -> QuorumStatus {
        let view = self.view();
        let m = self.raft.metrics().borrow().clone();
        QuorumStatus {
            view,
            members: members(m.membership_config.membership()),
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
        }
    }

    /// Every member with its health as this replica sees it (current on the leader only).
    pub fn members_health(&self) -> Vec<MemberHealth> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let leading = m.state == ServerState::Leader;
        // A follower that has not answered for the longest election timeout may be
        // campaigning, gone, or cut off.
        let timing = &self.config.raft;
        let patience = timing.longest_silence().max(timing.heartbeat_interval * 3);
        members(m.membership_config.membership())
            .into_iter()
            .map(|member| {
                let me = member.id == self.config.id;
                let role = if m.current_leader == Some(member.id) {
                    "leader"
                } else if member.voter {
                    "follower"
                } else {
                    "learner"
                };
                let last_contact = if me {
                    Some(std::time::Duration::ZERO)
                } else if leading {
                    self.contacts.since(member.id)
                } else {
                    None
                };
                let matched_index = if me {
                    m.last_log_index
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&member.id).copied().flatten())
                        .map(|log_id| log_id.index)
                };
                MemberHealth {
                    healthy: last_contact.is_some_and(|d| d <= patience),
                    member,
                    role,
                    last_contact,
                    matched_index,
                }
            })
            .collect()
    }

    /// The ids of every member (voters and learners).
    pub fn member_ids(&self) -> Vec<u64> {
        self.status().members.iter().map(|m| m.id).collect()
    }

    /// Adds a replica (started with `--join`) as a learner.
    pub async fn add_learner(
        &self,
        id: u64,
        address: &str,
    ) -> Result<MembershipChange, QuorumError> {
        if id == 0 {
            return Err(QuorumError::Invalid {
                field: "id",
                reason: "must be greater than 0".into(),
            });
        }
        if !crate::config::is_host_port(address) {
            return Err(QuorumError::Invalid {
                field: "address",
                reason: format!("{address:?} is not HOST:PORT"),
            });
        }
        self.require_leader()?;
        tracing::info!(learner = id, %address, "adding learner");
        let resp = self
            .raft
            .add_learner(id, BasicNode::new(address), true)
            .await
            .map_err(membership_error)?;
        Ok(MembershipChange {
            members: resp.membership.as_ref().map(members).unwrap_or_default(),
            log_index: resp.log_id.index,
        })
    }

    /// Makes `voter_ids` the voters (each a member or learner already).
    pub async fn change_membership(
        &self,
        voter_ids: &[u64],
        retain: bool,
    ) -> Result<MembershipChange, QuorumError> {
        let invalid = |reason: String| QuorumError::Invalid {
            field: "voter_ids",
            reason,
        };
        let voters: BTreeSet<u64> = voter_ids.iter().copied().collect();
        if voters.is_empty() {
            return Err(invalid("empty".into()));
        }
        if voters.len() != voter_ids.len() {
            return Err(invalid("an id is listed twice".into()));
        }
        if voters.contains(&0) {
            return Err(invalid("0 is not a node id".into()));
        }
        let m = self.raft.metrics().borrow().clone();
        let known: BTreeMap<u64, BasicNode> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.clone()))
            .collect();
        if let Some(unknown) = voters.iter().find(|id| !known.contains_key(id)) {
            return Err(invalid(format!(
                "{unknown} is not a member or learner; add it as a learner first"
            )));
        }
        self.require_leader()?;
        tracing::info!(?voters, retain, "changing membership");
        let resp = self
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), retain)
            .await
            .map_err(membership_error)?;
        Ok(MembershipChange {
            members: resp.membership.as_ref().map(members).unwrap_or_default(),
            log_index: resp.log_id.index,
        })
    }

    fn require_leader(&self) -> Result<LeaderView, QuorumError> {
        let view = self.view();
        if view.is_leader {
            Ok(view)
        } else {
            Err(QuorumError::NotLeader(view.leader_address))
        }
    }
}

fn members(membership: &openraft::Membership<u64, BasicNode>) -> Vec<Member> {
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, node)| Member {
            id: *id,
            address: node.addr.clone(),
            voter: voters.contains(id),
        })
        .collect()
}

fn membership_error(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> QuorumError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            QuorumError::NotLeader(f.leader_node.map(|n| n.addr))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            QuorumError::Refused(e.to_string())
        }
        RaftError::Fatal(e) => QuorumError::Unavailable(e.to_string()),
    }
}

/// Whether a replica's Raft state shows it has had a leader: its vote is committed (granted
/// to an elected leader) or its log holds entries past the initial membership.
pub fn is_established(m: &openraft::RaftMetrics<u64, BasicNode>) -> bool {
    m.vote.is_committed() || m.last_log_index.is_some_and(|i| i > 0)
}

/// Whether a replica holds nothing at all yet.
pub fn is_pristine(m: &openraft::RaftMetrics<u64, BasicNode>) -> bool {
    m.last_log_index.is_none() && m.vote.leader_id().term == 0 && m.snapshot.is_none()
}

/// What a leader checks before it serves reads, offers and writes as the leader's. Both
/// always, but for the self-test's and the simulator's deliberate bugs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServingChecks {
    /// It holds its lease ([`holds_lease`]).
    pub lease: bool,
    /// It has applied an entry of its own term.
    pub own_term_applied: bool,
}

impl ServingChecks {
    pub const ALL: ServingChecks = ServingChecks {
        lease: true,
        own_term_applied: true,
    };
    /// Leading by openraft's metrics alone (deliberate bugs only).
    pub const NONE: ServingChecks = ServingChecks {
        lease: false,
        own_term_applied: false,
    };
}

/// A replica's view of the quorum from its openraft metrics `m` and the answers of its
/// peers (`contacts`), with openraft's leader lease `lease` ([`crate::config::RaftTiming::lease`]): what
/// the replica serves as the leader's. Pure but for the clock `contacts` reads (tokio's,
/// so the simulator runs it on virtual time); the master and the simulator share it.
pub fn view_of(
    m: &openraft::RaftMetrics<u64, BasicNode>,
    id: u64,
    contacts: &PeerContacts,
    lease: std::time::Duration,
    checks: ServingChecks,
) -> LeaderView {
    // A leader without its lease (cut off from its majority) is no leader to anyone:
    // it names no leader (clients look elsewhere) and says `candidate`.
    let leading = m.state == ServerState::Leader && m.current_leader == Some(id);
    let has_lease = leading && (!checks.lease || holds_lease(m, id, contacts, lease));
    let current_leader = if leading && !has_lease {
        None
    } else {
        m.current_leader
    };
    let leader_address = current_leader.and_then(|l| {
        m.membership_config
            .membership()
            .get_node(&l)
            .map(|n| n.addr.clone())
    });
    let role = match m.state {
        ServerState::Leader if has_lease || !leading => "leader",
        ServerState::Leader | ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Follower | ServerState::Shutdown => "follower",
    };
    // A new leader serves nothing until it has applied an entry of its own term (the
    // blank one it commits when elected): before that its registry may lack entries the
    // previous leader committed, and a read (a reconciliation answering "unknown task" for
    // a task that was launched) would be stale.
    let own_term_applied = !checks.own_term_applied
        || m.last_applied
            .is_some_and(|applied| applied.leader_id.term == m.current_term);
    LeaderView {
        id,
        role,
        term: m.current_term,
        leader_id: current_leader,
        leader_address,
        is_leader: has_lease && own_term_applied,
    }
}

/// Whether leader `id` still holds its lease: a majority of the voters (itself counted)
/// accepted an append of its term sent less than `lease` ago ([`crate::config::RaftTiming::lease`]:
/// [`LEASE_FRACTION`] of openraft's leader lease). Each of them refuses to vote for another
/// candidate for that leader lease (the election timeout's maximum, 1.5 x the minimum) from
/// when it got the append, which is after it was sent, so no other leader can be elected
/// while this holds, as long as the replicas' clocks run at rates within 10% of each other
/// (monotonic clocks; real drift is in parts per million). A leader that lost its majority
/// (partitioned away) stops acting as one within that timeout: its reads, writes and offers
/// stop and clients go to the new leader. Every read it serves meanwhile is linearizable:
/// its registry holds every acknowledged write (writes are answered after they apply).
pub fn holds_lease(
    m: &openraft::RaftMetrics<u64, BasicNode>,
    id: u64,
    contacts: &PeerContacts,
    lease: std::time::Duration,
) -> bool {
    // During a membership change, a majority of each configuration.
    m.membership_config
        .membership()
        .get_joint_config()
        .iter()
        .all(|voters| {
            let me = usize::from(voters.contains(&id));
            let peers = voters.iter().copied().filter(|v| *v != id);
            let accepted = contacts.accepted_within(peers, m.current_term, lease);
            accepted + me > voters.len() / 2
        })
}
