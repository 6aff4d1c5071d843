//! The client-facing gRPC services: Master (registry calls) and Operator (membership).

use std::collections::{BTreeMap, BTreeSet};

use agora_proto::v1 as pb;
use agora_proto::v1::master_server::Master as MasterService;
use agora_proto::v1::operator_server::Operator as OperatorService;
use agora_registry::{AgentId, Command};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::convert::{self, invalid};
use crate::leader::not_leader;
use crate::Master;

/// Wall-clock milliseconds since the Unix epoch, stamped on commands by the leader.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Serves `agora.v1.Master`.
pub struct MasterApi {
    master: Master,
}

impl MasterApi {
    pub fn new(master: Master) -> Self {
        MasterApi { master }
    }
}

#[tonic::async_trait]
impl MasterService for MasterApi {
    async fn register_agent(
        &self,
        req: Request<pb::RegisterAgentRequest>,
    ) -> Result<Response<pb::RegisterAgentReply>, Status> {
        let req = req.into_inner();
        let reported = req.tasks;
        let mut info = convert::agent_info_from_proto(req.agent, || {
            AgentId::new(format!("{}-S", uuid::Uuid::new_v4())).expect("uuid ids are valid")
        })?;
        if self.master.config.faults.inflate_resources {
            tracing::warn!(agent = %info.id, "FAULT inflate-resources: registering twice its resources");
            info.resources = info.resources.plus(&info.resources);
        }
        let span =
            tracing::info_span!("register_agent", agent = %info.id, term = tracing::field::Empty);
        async {
            let view = self.master.require_leader()?;
            tracing::Span::current().record("term", view.term);
            let id = info.id.clone();
            let log_index = self
                .master
                .write(Command::RegisterAgent {
                    info,
                    now_ms: now_ms(),
                })
                .await?;
            tracing::info!(log_index, "agent registered");
            crate::agents::reconcile(&self.master, &id, &reported).await?;
            self.master.frameworks.wake.notify_one();
            let agent_id = id.to_string();
            Ok(Response::new(pb::RegisterAgentReply {
                agent_id,
                log_index,
            }))
        }
        .instrument(span)
        .await
    }

    async fn get_state(
        &self,
        _req: Request<pb::GetStateRequest>,
    ) -> Result<Response<pb::ClusterState>, Status> {
        let view = self.master.require_leader()?;
        let state = self.master.registry.read(|reg| pb::ClusterState {
            leader: self.master.config.advertise.clone(),
            term: view.term,
            agents: reg
                .agents()
                .map(|a| convert::agent_to_proto(a, &reg.agent_allocation(&a.info.id)))
                .collect(),
            frameworks: reg
                .frameworks()
                .map(|f| convert::framework_to_proto(f, &reg.framework_allocation(&f.info.id)))
                .collect(),
            tasks: reg.tasks().map(convert::task_to_proto).collect(),
        });
        Ok(Response::new(state))
    }

    async fn get_status(
        &self,
        _req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        Ok(Response::new(status_reply(&self.master)))
    }
}

/// This replica's view of the quorum, for `GetStatus` and `agora status`.
pub fn status_reply(master: &Master) -> pb::StatusReply {
    let view = master.leader_view();
    let m = master.raft.metrics().borrow().clone();
    let (agents, frameworks, tasks) = master.registry.read(|reg| {
        (
            reg.agents().count() as u64,
            reg.frameworks().count() as u64,
            reg.tasks().filter(|t| !t.state.is_terminal()).count() as u64,
        )
    });
    pb::StatusReply {
        id: view.id,
        role: view.role.to_string(),
        leader_id: view.leader_id.unwrap_or(0),
        leader_address: view.leader_address.unwrap_or_default(),
        term: view.term,
        members: members(m.membership_config.membership()),
        last_log_index: m.last_log_index.unwrap_or(0),
        last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
        agents,
        frameworks,
        tasks,
    }
}

fn members(membership: &openraft::Membership<u64, BasicNode>) -> Vec<pb::Member> {
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, node)| pb::Member {
            id: *id,
            address: node.addr.clone(),
            voter: voters.contains(id),
        })
        .collect()
}

/// Serves `agora.v1.Operator`.
pub struct OperatorApi {
    master: Master,
}

impl OperatorApi {
    pub fn new(master: Master) -> Self {
        OperatorApi { master }
    }
}

fn membership_error(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            not_leader(f.leader_node.as_ref().map(|n| n.addr.as_str()))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Status::failed_precondition(e.to_string())
        }
        RaftError::Fatal(e) => Status::unavailable(e.to_string()),
    }
}

fn weights_reply(master: &Master) -> pb::WeightsReply {
    pb::WeightsReply {
        weights: master.registry.read(|reg| {
            reg.weights()
                .iter()
                .map(|(role, weight)| pb::RoleWeight {
                    role: role.clone(),
                    weight: *weight,
                })
                .collect()
        }),
    }
}

#[tonic::async_trait]
impl OperatorService for OperatorApi {
    async fn set_weight(
        &self,
        req: Request<pb::SetWeightRequest>,
    ) -> Result<Response<pb::WeightsReply>, Status> {
        let req = req.into_inner();
        agora_registry::resources::validate_framework_role(&req.role)
            .map_err(|e| invalid("role", e))?;
        if !(req.weight.is_finite() && req.weight > 0.0) {
            return Err(invalid(
                "weight",
                format!("{} is not a positive, finite number", req.weight),
            ));
        }
        self.master.require_leader()?;
        self.master
            .write(Command::SetWeight {
                role: req.role,
                weight: req.weight,
            })
            .await?;
        self.master.frameworks.wake.notify_one();
        Ok(Response::new(weights_reply(&self.master)))
    }

    async fn get_weights(
        &self,
        _req: Request<pb::GetWeightsRequest>,
    ) -> Result<Response<pb::WeightsReply>, Status> {
        self.master.require_leader()?;
        Ok(Response::new(weights_reply(&self.master)))
    }

    async fn add_learner(
        &self,
        req: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let req = req.into_inner();
        if req.id == 0 {
            return Err(invalid("id", "must be greater than 0"));
        }
        if !crate::config::is_host_port(&req.address) {
            return Err(invalid(
                "address",
                format!("{:?} is not HOST:PORT", req.address),
            ));
        }
        self.master.require_leader()?;
        tracing::info!(learner = req.id, address = %req.address, "adding learner");
        let resp = self
            .master
            .raft
            .add_learner(req.id, BasicNode::new(&req.address), true)
            .await
            .map_err(membership_error)?;
        Ok(Response::new(pb::MembershipReply {
            members: resp.membership.as_ref().map(members).unwrap_or_default(),
            log_index: resp.log_id.index,
        }))
    }

    async fn change_membership(
        &self,
        req: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let req = req.into_inner();
        let voters: BTreeSet<u64> = req.voter_ids.iter().copied().collect();
        if voters.is_empty() {
            return Err(invalid("voter_ids", "empty"));
        }
        if voters.len() != req.voter_ids.len() {
            return Err(invalid("voter_ids", "an id is listed twice"));
        }
        if voters.contains(&0) {
            return Err(invalid("voter_ids", "0 is not a node id"));
        }
        let m = self.master.raft.metrics().borrow().clone();
        let known: BTreeMap<u64, BasicNode> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.clone()))
            .collect();
        if let Some(unknown) = voters.iter().find(|id| !known.contains_key(id)) {
            return Err(invalid(
                "voter_ids",
                format!("{unknown} is not a member or learner; add it as a learner first"),
            ));
        }
        self.master.require_leader()?;
        tracing::info!(?voters, retain = req.retain, "changing membership");
        let resp = self
            .master
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), req.retain)
            .await
            .map_err(membership_error)?;
        Ok(Response::new(pb::MembershipReply {
            members: resp.membership.as_ref().map(members).unwrap_or_default(),
            log_index: resp.log_id.index,
        }))
    }
}
