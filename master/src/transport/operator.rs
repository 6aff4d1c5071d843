//! `agora.v1.Operator`: role weights, quorum membership, agents' maintenance, and this
//! replica's log level ([`super::replica`]).

use agora_proto::v1 as pb;
use agora_proto::v1::operator_server::Operator as OperatorService;
use tonic::{Request, Response, Status};

use super::{leader_status, principal, quorum_status};
use crate::convert::{self, invalid};
use crate::leader::{Leader, Maintenance};
use crate::quorum::MembershipChange;

pub struct OperatorApi {
    leader: Leader,
}

impl OperatorApi {
    pub fn new(leader: Leader) -> Self {
        OperatorApi { leader }
    }

    fn weights_reply(&self) -> pb::WeightsReply {
        pb::WeightsReply {
            weights: self
                .leader
                .weights()
                .into_iter()
                .map(|(role, weight)| pb::RoleWeight { role, weight })
                .collect(),
        }
    }
}

/// Carries out `what` on `agent_id` (named as `field` in errors) once the ACLs allow it,
/// for the gRPC calls and Mesos' DRAIN_AGENT, DEACTIVATE_AGENT, REACTIVATE_AGENT and
/// MARK_AGENT_GONE; returns the log index of the committed change.
pub(super) async fn maintain(
    leader: &Leader,
    caller: Option<&str>,
    agent_id: &str,
    field: &str,
    what: Maintenance,
) -> Result<u64, Status> {
    let agent = convert::agent_id(agent_id, field)?;
    let name = agent.as_str();
    let action = match what {
        Maintenance::Drain { .. } => agora_acl::Action::DrainAgent { agent: name },
        Maintenance::Deactivate => agora_acl::Action::DeactivateAgent { agent: name },
        Maintenance::Reactivate => agora_acl::Action::ReactivateAgent { agent: name },
        Maintenance::MarkGone => agora_acl::Action::MarkAgentGone { agent: name },
    };
    leader.authorize(caller, &action).map_err(leader_status)?;
    match what {
        Maintenance::Drain { grace, mark_gone } => {
            leader.drain_agent(&agent, grace, mark_gone).await
        }
        Maintenance::Deactivate => leader.deactivate_agent(&agent).await,
        Maintenance::Reactivate => leader.reactivate_agent(&agent).await,
        Maintenance::MarkGone => leader.mark_agent_gone(&agent).await,
    }
    .map_err(leader_status)
}

/// Sets role weights, for the gRPC `SetWeight` (one) and Mesos' `UPDATE_WEIGHTS` (any
/// number): every role and weight is validated and authorized (`update_weights`) before
/// the first is written, so a refused one changes nothing.
pub(super) async fn set_weights(
    leader: &Leader,
    caller: Option<&str>,
    weights: &[pb::SetWeightRequest],
) -> Result<(), Status> {
    for (i, w) in weights.iter().enumerate() {
        let field = |name: &str| {
            if weights.len() == 1 {
                name.to_string()
            } else {
                format!("weights[{i}].{name}")
            }
        };
        agora_registry::resources::validate_framework_role(&w.role)
            .map_err(|e| invalid(&field("role"), e))?;
        leader
            .authorize(caller, &agora_acl::Action::UpdateWeight { role: &w.role })
            .map_err(leader_status)?;
        crate::convert::limits::weight(&field("weight"), w.weight)?;
    }
    // One command for all of them: a failed write leaves none set.
    match weights {
        [w] => leader.set_weight(w.role.clone(), w.weight).await,
        _ => {
            leader
                .set_weights(weights.iter().map(|w| (w.role.clone(), w.weight)).collect())
                .await
        }
    }
    .map_err(leader_status)
}

fn membership_reply(change: MembershipChange) -> pb::MembershipReply {
    pb::MembershipReply {
        members: change
            .members
            .into_iter()
            .map(convert::member_to_proto)
            .collect(),
        log_index: change.log_index,
    }
}

#[tonic::async_trait]
impl OperatorService for OperatorApi {
    async fn set_weight(
        &self,
        req: Request<pb::SetWeightRequest>,
    ) -> Result<Response<pb::WeightsReply>, Status> {
        let caller = principal(&req);
        set_weights(&self.leader, caller.as_deref(), &[req.into_inner()]).await?;
        Ok(Response::new(self.weights_reply()))
    }

    async fn get_weights(
        &self,
        _req: Request<pb::GetWeightsRequest>,
    ) -> Result<Response<pb::WeightsReply>, Status> {
        self.leader.require_leader().map_err(leader_status)?;
        Ok(Response::new(self.weights_reply()))
    }

    async fn add_learner(
        &self,
        req: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let caller = principal(&req);
        let req = req.into_inner();
        self.leader
            .authorize(
                caller.as_deref(),
                &agora_acl::Action::UpdateMembership {
                    member: &req.id.to_string(),
                },
            )
            .map_err(leader_status)?;
        let change = self
            .leader
            .quorum()
            .add_learner(req.id, &req.address)
            .await
            .map_err(quorum_status)?;
        Ok(Response::new(membership_reply(change)))
    }

    async fn change_membership(
        &self,
        req: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let caller = principal(&req);
        let req = req.into_inner();
        // Every replica whose role changes is an object of the call: the new voters, and
        // the old ones that are dropped.
        let current: Vec<u64> = self.leader.quorum().member_ids();
        for id in req.voter_ids.iter().chain(current.iter()) {
            self.leader
                .authorize(
                    caller.as_deref(),
                    &agora_acl::Action::UpdateMembership {
                        member: &id.to_string(),
                    },
                )
                .map_err(leader_status)?;
        }
        let change = self
            .leader
            .quorum()
            .change_membership(&req.voter_ids, req.retain)
            .await
            .map_err(quorum_status)?;
        Ok(Response::new(membership_reply(change)))
    }

    async fn drain_agent(
        &self,
        req: Request<pb::DrainAgentRequest>,
    ) -> Result<Response<pb::AgentMaintenanceReply>, Status> {
        let caller = principal(&req);
        let req = req.into_inner();
        let what = Maintenance::Drain {
            grace: std::time::Duration::from_millis(req.grace_period_ms),
            mark_gone: req.mark_gone,
        };
        let log_index = maintain(
            &self.leader,
            caller.as_deref(),
            &req.agent_id,
            "agent_id",
            what,
        )
        .await?;
        Ok(Response::new(pb::AgentMaintenanceReply { log_index }))
    }

    async fn deactivate_agent(
        &self,
        req: Request<pb::AgentMaintenanceRequest>,
    ) -> Result<Response<pb::AgentMaintenanceReply>, Status> {
        self.maintenance(req, Maintenance::Deactivate).await
    }

    async fn reactivate_agent(
        &self,
        req: Request<pb::AgentMaintenanceRequest>,
    ) -> Result<Response<pb::AgentMaintenanceReply>, Status> {
        self.maintenance(req, Maintenance::Reactivate).await
    }

    async fn mark_agent_gone(
        &self,
        req: Request<pb::AgentMaintenanceRequest>,
    ) -> Result<Response<pb::AgentMaintenanceReply>, Status> {
        self.maintenance(req, Maintenance::MarkGone).await
    }

    async fn set_log_level(
        &self,
        req: Request<pb::SetLogLevelRequest>,
    ) -> Result<Response<pb::LogLevelReply>, Status> {
        let caller = principal(&req);
        super::replica::grpc_set(&self.leader, caller.as_deref(), req.get_ref()).map(Response::new)
    }

    async fn get_log_level(
        &self,
        _req: Request<pb::GetLogLevelRequest>,
    ) -> Result<Response<pb::LogLevelReply>, Status> {
        super::replica::grpc_get(&self.leader).map(Response::new)
    }
}

impl OperatorApi {
    async fn maintenance(
        &self,
        req: Request<pb::AgentMaintenanceRequest>,
        what: Maintenance,
    ) -> Result<Response<pb::AgentMaintenanceReply>, Status> {
        let caller = principal(&req);
        let req = req.into_inner();
        let log_index = maintain(
            &self.leader,
            caller.as_deref(),
            &req.agent_id,
            "agent_id",
            what,
        )
        .await?;
        Ok(Response::new(pb::AgentMaintenanceReply { log_index }))
    }
}
