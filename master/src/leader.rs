//! Who leads, and the one write path: a command goes through the Raft log and is answered
//! only once committed and applied.

use agora_proto::LEADER_METADATA_KEY;
use agora_registry::{Command, Rejection};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use tonic::Status;

use crate::Master;

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

impl Master {
    /// Reads this replica's current view from openraft's metrics.
    pub fn leader_view(&self) -> LeaderView {
        let m = self.raft.metrics().borrow().clone();
        let leader_address = m.current_leader.and_then(|l| {
            m.membership_config
                .membership()
                .get_node(&l)
                .map(|n| n.addr.clone())
        });
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Follower | ServerState::Shutdown => "follower",
        };
        LeaderView {
            id: self.config.id,
            role,
            term: m.current_term,
            leader_id: m.current_leader,
            leader_address,
            is_leader: m.state == ServerState::Leader && m.current_leader == Some(self.config.id),
        }
    }

    /// `Ok` on the leader; otherwise the status a client must get to re-dial the leader.
    pub fn require_leader(&self) -> Result<LeaderView, Status> {
        let view = self.leader_view();
        if view.is_leader {
            Ok(view)
        } else {
            Err(not_leader(view.leader_address.as_deref()))
        }
    }

    /// Proposes `command` and waits until it is committed and applied. Returns its log
    /// index; a command the registry rejects is answered FAILED_PRECONDITION with the
    /// reason, and changed nothing.
    pub async fn write(&self, command: Command) -> Result<u64, WriteError> {
        let kind = command.kind();
        let timer = self.metrics.write_seconds.start_timer();
        let result = self.raft.client_write(command).await;
        timer.observe_duration();
        let outcome = match result {
            Ok(resp) => match resp.data {
                Ok(()) => Ok(resp.log_id.index),
                Err(rejection) => Err(WriteError::Rejected(rejection)),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(WriteError::NotLeader(f.leader_node.map(|n| n.addr)))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(WriteError::Unavailable(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(WriteError::Unavailable(e.to_string())),
        };
        let label = match &outcome {
            Ok(_) => "committed",
            Err(WriteError::Rejected(_)) => "rejected",
            Err(WriteError::NotLeader(_)) => "not_leader",
            Err(WriteError::Unavailable(_)) => "unavailable",
        };
        self.metrics
            .commands
            .with_label_values(&[kind, label])
            .inc();
        outcome
    }
}

/// Why a write did not commit.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("rejected: {0}")]
    Rejected(Rejection),
    #[error("not the leader")]
    NotLeader(Option<String>),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<WriteError> for Status {
    fn from(e: WriteError) -> Status {
        match e {
            WriteError::Rejected(r) => Status::failed_precondition(r.to_string()),
            WriteError::NotLeader(addr) => not_leader(addr.as_deref()),
            WriteError::Unavailable(msg) => Status::unavailable(msg),
        }
    }
}

/// The refusal a follower gives: UNAVAILABLE, naming the leader in the message and in the
/// `agora-leader` metadata.
pub fn not_leader(leader: Option<&str>) -> Status {
    match leader {
        Some(addr) => {
            let mut status = Status::unavailable(format!("not the leader; the leader is {addr}"));
            if let Ok(v) = addr.parse() {
                status.metadata_mut().insert(LEADER_METADATA_KEY, v);
            }
            status
        }
        None => Status::unavailable("not the leader; no leader is known yet"),
    }
}
