//! `agora.v1.Master`: agent registration and the cluster's state and status.

use agora_proto::v1 as pb;
use agora_proto::v1::master_server::Master as MasterService;
use agora_registry::AgentId;
use tonic::{Request, Response, Status};

use super::{leader_status, principal};
use crate::convert;
use crate::leader::Leader;

pub struct MasterApi {
    leader: Leader,
}

impl MasterApi {
    pub fn new(leader: Leader) -> Self {
        MasterApi { leader }
    }
}

#[tonic::async_trait]
impl MasterService for MasterApi {
    async fn register_agent(
        &self,
        req: Request<pb::RegisterAgentRequest>,
    ) -> Result<Response<pb::RegisterAgentReply>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let mut info = convert::agent_info_from_proto(req.agent, || {
            AgentId::new(format!("{}-S", uuid::Uuid::new_v4())).expect("uuid ids are valid")
        })?;
        // The agent is bound to the principal that registers it: nobody else may
        // register it again, open its session or report its tasks.
        self.leader
            .authorize(
                who.as_deref(),
                &agora_acl::Action::RegisterAgent {
                    agent: info.id.as_str(),
                },
            )
            .map_err(leader_status)?;
        // No read first: `Registry::apply` refuses a registration by another principal
        // (PrincipalMismatch, answered PERMISSION_DENIED), atomically with the write.
        info.principal = who;
        convert::limits::count(
            "tasks",
            req.tasks.len(),
            convert::limits::MAX_REPORTED_TASKS,
        )?;
        let reported = convert::reported_tasks_from_proto(&req.tasks)?;
        let (agent_id, log_index) = self
            .leader
            .register_agent(info, reported)
            .await
            .map_err(leader_status)?;
        Ok(Response::new(pb::RegisterAgentReply {
            agent_id: agent_id.to_string(),
            log_index,
        }))
    }

    async fn get_state(
        &self,
        req: Request<pb::GetStateRequest>,
    ) -> Result<Response<pb::ClusterState>, Status> {
        let who = principal(&req);
        let view = self.leader.require_leader().map_err(leader_status)?;
        let leader = self.leader.clone();
        // Converting the whole registry is CPU work that grows with it: off the runtime.
        let state = tokio::task::spawn_blocking(move || {
            leader.read_visible(who.as_deref(), |v| {
                // Live tasks per agent, in one walk of the tasks.
                let mut live: std::collections::HashMap<&AgentId, usize> = Default::default();
                for t in v.registry().tasks().filter(|t| !t.state.is_terminal()) {
                    *live.entry(&t.agent_id).or_default() += 1;
                }
                pb::ClusterState {
                    leader: leader.quorum().advertise().to_string(),
                    term: view.term,
                    agents: v
                        .agents()
                        .map(|a| {
                            convert::agent_to_proto(
                                a,
                                &v.registry().agent_allocation(&a.info.id),
                                live.get(&a.info.id).copied().unwrap_or(0),
                            )
                        })
                        .collect(),
                    frameworks: v
                        .frameworks()
                        .map(|f| {
                            convert::framework_to_proto(
                                f,
                                &v.registry().framework_allocation(&f.info.id),
                            )
                        })
                        .collect(),
                    tasks: v.tasks().map(convert::task_to_proto).collect(),
                }
            })
        })
        .await
        .map_err(|e| Status::internal(format!("rendering the state failed: {e}")))?;
        Ok(Response::new(state))
    }

    async fn sandbox_access(
        &self,
        req: Request<pb::SandboxAccessRequest>,
    ) -> Result<Response<pb::SandboxAccessReply>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let task = convert::task_id(&req.task_id, "task_id")?;
        let framework = match req.framework_id.as_str() {
            "" => None,
            f => Some(convert::framework_id(f, "framework_id")?),
        };
        let access = self
            .leader
            .sandbox_access(who.as_deref(), &task, framework.as_ref())
            .map_err(leader_status)?;
        Ok(Response::new(convert::sandbox_access_to_proto(access)))
    }

    async fn get_status(
        &self,
        _req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        Ok(Response::new(status_reply(&self.leader)))
    }
}

/// This replica's view of the quorum, for `GetStatus` and `agora status`.
fn status_reply(leader: &Leader) -> pb::StatusReply {
    let q = leader.quorum().status();
    let (agents, frameworks, tasks) = leader.read(|reg| {
        (
            reg.agents().count() as u64,
            reg.frameworks().count() as u64,
            reg.tasks().filter(|t| !t.state.is_terminal()).count() as u64,
        )
    });
    pb::StatusReply {
        id: q.view.id,
        role: q.view.role.to_string(),
        leader_id: q.view.leader_id.unwrap_or(0),
        leader_address: q.view.leader_address.unwrap_or_default(),
        term: q.view.term,
        members: q
            .members
            .into_iter()
            .map(convert::member_to_proto)
            .collect(),
        last_log_index: q.last_log_index,
        last_applied: q.last_applied,
        agents,
        frameworks,
        tasks,
    }
}
