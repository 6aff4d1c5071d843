//! Raft peer transport: openraft's network traits over tonic gRPC (client side), and the
//! RaftPeer gRPC service that hands incoming RPCs to the local openraft (server side).

// openraft's RPC error types are large, and its network trait dictates them.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// tokio's clock (the system's monotonic clock, except under a paused test runtime, where
// the deterministic simulator runs the lease on virtual time).
use tokio::time::Instant;

use crate::store::{NodeId, Raft, TypeConfig};
use agora_proto::v1::raft_peer_client::RaftPeerClient;
use agora_proto::v1::raft_peer_server::RaftPeer;
use agora_proto::v1::{
    NodeStatusReply, NodeStatusRequest, RaftMessage, SnapshotChunk, TimeoutNowReply,
    TimeoutNowRequest,
};
use agora_security::client::ClientSecurity;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Largest gRPC message between replicas (a snapshot chunk plus framing).
pub const MAX_PEER_MESSAGE: usize = 64 * 1024 * 1024;

/// Most bytes of log entries in one AppendEntries call (one entry is always sent, and the
/// writer bounds an entry at 2 MiB). The log store already reads no more than this for
/// replication; the cut here is the guard for what it returned.
pub const MAX_APPEND_BYTES: usize = agora_raft_store::MAX_REPLICATION_READ_BYTES;

/// How many of `entries`, from the first, fit in `max` bytes of JSON (at least one).
fn bounded_prefix<T: Serialize>(entries: &[T], max: usize) -> usize {
    let mut total = 0;
    for (i, e) in entries.iter().enumerate() {
        total += serde_json::to_vec(e).map(|v| v.len()).unwrap_or(0);
        if total > max {
            return i.max(1);
        }
    }
    entries.len()
}

/// Opens a lazily connecting channel to `addr` (HOST:PORT): TLS with this replica's own
/// certificate (`master-<id>`) as its client identity when `security` has TLS. Connection
/// failures surface on the first call, quickly, so a dead peer is reported unreachable at
/// once.
pub fn channel(
    addr: &str,
    security: &ClientSecurity,
) -> Result<Channel, agora_security::SecurityError> {
    Ok(security
        .endpoint(addr)?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect_lazy())
}

/// When this replica last had an answer from each peer (to an append, heartbeats
/// included, a vote or a snapshot chunk): how `/state` shows the members' health. Only a
/// leader sends appends, so only a leader's is current.
///
/// Also what the leader's lease is made of: for each peer, the term and the *sending* time
/// of the newest append it accepted (a follower that accepts an append refuses to vote for
/// anyone else for openraft's leader lease, the election timeout's maximum, from when it
/// received it, which is after it was sent).
#[derive(Clone, Default)]
pub struct PeerContacts(Arc<Mutex<Contacts>>);

#[derive(Default)]
struct Contacts {
    heard: HashMap<NodeId, Instant>,
    /// Per peer: (the leader's term, when the accepted append was sent).
    accepted: HashMap<NodeId, (u64, Instant)>,
}

impl PeerContacts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Contacts> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `peer` answered a call just now.
    pub fn heard(&self, peer: NodeId) {
        self.lock().heard.insert(peer, Instant::now());
    }

    /// `peer` accepted (did not refuse with a higher vote) an append of `term` sent at
    /// `sent`.
    pub fn accepted(&self, peer: NodeId, term: u64, sent: Instant) {
        let mut c = self.lock();
        let newer = c
            .accepted
            .get(&peer)
            .is_none_or(|(t, at)| (term, sent) > (*t, *at));
        if newer {
            c.accepted.insert(peer, (term, sent));
        }
    }

    /// How long ago `peer` last answered; None if it never has.
    pub fn since(&self, peer: NodeId) -> Option<Duration> {
        self.lock().heard.get(&peer).map(Instant::elapsed)
    }

    /// How many of `peers` accepted an append of `term` sent less than `within` ago.
    pub fn accepted_within(
        &self,
        peers: impl Iterator<Item = NodeId>,
        term: u64,
        within: Duration,
    ) -> usize {
        let c = self.lock();
        peers
            .filter(|p| {
                c.accepted
                    .get(p)
                    .is_some_and(|(t, sent)| *t == term && sent.elapsed() < within)
            })
            .count()
    }
}

/// Creates one [`PeerClient`] per replication target.
#[derive(Clone, Default)]
pub struct PeerNetworkFactory {
    /// TLS to peers (this replica's certificate as client identity), or plaintext.
    pub security: ClientSecurity,
    /// How long replication to a peer that is down waits before it tries again. openraft
    /// sends heartbeats through the same replication stream, so this must stay well under
    /// the election timeout: its default (500 ms) let a follower campaign after one
    /// connection failure. The replica's heartbeat interval.
    pub backoff: Duration,
    /// Shared with the [`crate::quorum::Quorum`], which reports it.
    pub contacts: PeerContacts,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        let client = channel(&node.addr, &self.security).ok().map(|ch| {
            RaftPeerClient::new(ch)
                .max_decoding_message_size(MAX_PEER_MESSAGE)
                .max_encoding_message_size(MAX_PEER_MESSAGE)
        });
        PeerClient {
            target,
            addr: node.addr.clone(),
            client,
            backoff: self.backoff,
            contacts: self.contacts.clone(),
        }
    }
}

/// The connection to one peer replica.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    /// None when the address could not even be parsed as a URI.
    client: Option<RaftPeerClient<Channel>>,
    backoff: Duration,
    contacts: PeerContacts,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

/// Maps a transport failure: a peer that cannot be connected to is `Unreachable`, so
/// openraft backs off ([`PeerClient`]'s backoff) instead of retrying in a tight loop. A
/// call past its deadline (a slow peer, a busy host) is a plain network error: openraft
/// tries again with the next heartbeat, with no backoff (backing off on a timeout, which
/// tonic reports as `Cancelled`, stopped heartbeats for 500 ms under write load and cost
/// elections).
fn transport_error<E: std::error::Error>(
    status: Status,
) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    match status.code() {
        tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, NetworkError> {
    serde_json::to_vec(value).map_err(|e| NetworkError::new(&e))
}

fn decode_reply<T: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
    target: NodeId,
    bytes: &[u8],
) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
    let result: Result<T, RaftError<NodeId, E>> =
        serde_json::from_slice(bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
    result.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
}

impl PeerClient {
    fn client<E: std::error::Error>(
        &self,
    ) -> Result<RaftPeerClient<Channel>, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        self.client.clone().ok_or_else(|| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
                "bad peer address {}",
                self.addr
            ))))
        })
    }
}

fn with_deadline<T>(msg: T, option: &RPCOption) -> Request<T> {
    let mut req = Request::new(msg);
    req.set_timeout(option.hard_ttl());
    req
}

impl RaftNetwork<TypeConfig> for PeerClient {
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(self.backoff))
    }

    /// Sends at most [`MAX_APPEND_BYTES`] of entries (at least one) per call and reports a
    /// partial success for the rest: openraft gives the call one heartbeat interval, and a
    /// follower far behind must catch up in pieces that fit, not fail the whole batch for
    /// good.
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let mut json = encode(&rpc)?;
        let mut partial = false;
        if json.len() > MAX_APPEND_BYTES && rpc.entries.len() > 1 {
            let sent = bounded_prefix(&rpc.entries, MAX_APPEND_BYTES);
            if sent < rpc.entries.len() {
                partial = true;
                rpc.entries.truncate(sent);
                let last = rpc.entries.last().map(|e| e.log_id);
                // The follower must not learn of a commit beyond what it was sent.
                if rpc.leader_commit > last {
                    rpc.leader_commit = last;
                }
                json = encode(&rpc)?;
            }
        }
        let last_sent = rpc.entries.last().map(|e| e.log_id);
        let term = rpc.vote.leader_id().term;
        let sent = Instant::now();
        let reply = self
            .client()?
            .append_entries(with_deadline(RaftMessage { json }, &option))
            .await
            .map_err(transport_error)?;
        self.contacts.heard(self.target);
        let reply: AppendEntriesResponse<NodeId> =
            decode_reply(self.target, &reply.into_inner().json)?;
        // Only a higher vote refuses the leader; a log conflict still took its term.
        if !matches!(reply, AppendEntriesResponse::HigherVote(_)) {
            self.contacts.accepted(self.target, term, sent);
        }
        Ok(match reply {
            AppendEntriesResponse::Success if partial => {
                AppendEntriesResponse::PartialSuccess(last_sent)
            }
            other => other,
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let json = encode(&rpc)?;
        let reply = self
            .client()?
            .vote(with_deadline(RaftMessage { json }, &option))
            .await
            .map_err(transport_error)?;
        self.contacts.heard(self.target);
        decode_reply(self.target, &reply.into_inner().json)
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let data = std::mem::take(&mut rpc.data);
        let header_json = encode(&rpc)?;
        let reply = self
            .client()?
            .install_snapshot(with_deadline(SnapshotChunk { header_json, data }, &option))
            .await
            .map_err(transport_error)?;
        self.contacts.heard(self.target);
        decode_reply(self.target, &reply.into_inner().json)
    }
}

/// Serves RaftPeer: decodes openraft requests and hands them to the local Raft.
pub struct RaftPeerService {
    pub id: NodeId,
    pub raft: Raft,
    /// While set, this replica refuses to vote (it restarted with a wiped store and has not
    /// yet heard from a leader, so it may have forgotten a vote it cast).
    pub quarantined: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn bad_request(e: serde_json::Error) -> Status {
    Status::invalid_argument(format!("json: undecodable Raft message: {e}"))
}

/// A peer call must come from the replica its vote names: with TLS on, the certificate
/// (`master-<id>`) proves which replica is calling, and a vote or append naming another
/// one is refused (a replica's key cannot be used to speak for its peers).
fn require_sender<T>(req: &Request<T>, vote: &openraft::Vote<NodeId>) -> Result<(), Status> {
    let proven = req
        .extensions()
        .get::<crate::transport::auth::PeerReplica>()
        .and_then(|p| p.0);
    match proven {
        Some(id) if vote.leader_id().voted_for() != Some(id) => {
            tracing::warn!(certificate = id, vote = %vote, "Raft call naming another replica refused");
            Err(Status::permission_denied(format!(
                "vote: names replica {:?}, but the caller's certificate is master-{id}",
                vote.leader_id().voted_for()
            )))
        }
        _ => Ok(()),
    }
}

fn reply<T: Serialize, E: Serialize>(
    result: Result<T, E>,
) -> Result<Response<RaftMessage>, Status> {
    let json = serde_json::to_vec(&result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage { json }))
}

#[tonic::async_trait]
impl RaftPeer for RaftPeerService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            serde_json::from_slice(&req.get_ref().json).map_err(bad_request)?;
        require_sender(&req, &rpc.vote)?;
        reply(self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        use std::sync::atomic::Ordering;
        let rpc: VoteRequest<NodeId> =
            serde_json::from_slice(&req.get_ref().json).map_err(bad_request)?;
        require_sender(&req, &rpc.vote)?;
        if self.quarantined.load(Ordering::Acquire) {
            tracing::info!(vote = %rpc.vote, "vote refused: this replica's store was wiped and it has not rejoined yet");
            return Err(Status::unavailable(
                "replica is rejoining after losing its store; it does not vote yet",
            ));
        }
        reply(self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<SnapshotChunk>,
    ) -> Result<Response<RaftMessage>, Status> {
        let mut rpc: InstallSnapshotRequest<TypeConfig> =
            serde_json::from_slice(&req.get_ref().header_json).map_err(bad_request)?;
        require_sender(&req, &rpc.vote)?;
        let chunk = req.into_inner();
        rpc.data = chunk.data;
        reply(self.raft.install_snapshot(rpc).await)
    }

    async fn timeout_now(
        &self,
        req: Request<TimeoutNowRequest>,
    ) -> Result<Response<TimeoutNowReply>, Status> {
        use std::sync::atomic::Ordering;
        let proven = req
            .extensions()
            .get::<crate::transport::auth::PeerReplica>()
            .and_then(|p| p.0);
        let r = req.into_inner();
        if proven.is_some_and(|id| id != r.leader_id) {
            return Err(Status::permission_denied(format!(
                "leader_id: names replica {}, but the caller's certificate is master-{}",
                r.leader_id,
                proven.unwrap_or_default()
            )));
        }
        let (leader, term) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.current_leader, m.current_term)
        };
        if leader != Some(r.leader_id) || term != r.term || self.quarantined.load(Ordering::Acquire)
        {
            tracing::info!(
                from = r.leader_id,
                term = r.term,
                ?leader,
                current_term = term,
                "hand-over request ignored"
            );
            return Ok(Response::new(TimeoutNowReply { started: false }));
        }
        tracing::info!(
            from = r.leader_id,
            term,
            "the leader hands over: campaigning now"
        );
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(TimeoutNowReply { started: true }))
    }

    async fn node_status(
        &self,
        req: Request<NodeStatusRequest>,
    ) -> Result<Response<NodeStatusReply>, Status> {
        let expected = req.into_inner().expected_id;
        if expected != 0 && expected != self.id {
            return Err(Status::failed_precondition(format!(
                "expected_id: this replica is id {}, not {expected}",
                self.id
            )));
        }
        let m = self.raft.metrics().borrow().clone();
        Ok(Response::new(NodeStatusReply {
            id: self.id,
            pristine: crate::quorum::is_pristine(&m),
            established: crate::quorum::is_established(&m),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{bounded_prefix, transport_error};
    use openraft::error::{Infallible, RPCError};

    #[test]
    fn only_a_peer_that_cannot_be_reached_is_backed_off_from() {
        let e = |code| transport_error::<Infallible>(tonic::Status::new(code, "x"));
        assert!(matches!(
            e(tonic::Code::Unavailable),
            RPCError::Unreachable(_)
        ));
        // tonic's own deadline ("Timeout expired") and a deadline the peer reports: a slow
        // peer, tried again with the next heartbeat.
        assert!(matches!(e(tonic::Code::Cancelled), RPCError::Network(_)));
        assert!(matches!(
            e(tonic::Code::DeadlineExceeded),
            RPCError::Network(_)
        ));
    }

    #[test]
    fn appends_are_cut_to_the_byte_bound_but_always_carry_one_entry() {
        let entries: Vec<String> = (0..10).map(|_| "x".repeat(98)).collect(); // 100 B each
        assert_eq!(bounded_prefix(&entries, 1_000), 10);
        assert_eq!(bounded_prefix(&entries, 450), 4);
        assert_eq!(bounded_prefix(&entries, 10), 1);
        assert_eq!(bounded_prefix::<String>(&[], 10), 0);
    }
}
