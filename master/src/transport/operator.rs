//! `agora.v1.Operator`: role weights and quorum membership.

use agora_proto::v1 as pb;
use agora_proto::v1::operator_server::Operator as OperatorService;
use tonic::{Request, Response, Status};

use super::{leader_status, principal, quorum_status};
use crate::convert::{self, invalid};
use crate::leader::Leader;
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
}
