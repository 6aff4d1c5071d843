//! `agora.v1.Scheduler`: frameworks' calls.

use std::pin::Pin;

use agora_proto::v1 as pb;
use agora_proto::v1::scheduler_server::Scheduler;
use agora_registry::FrameworkId;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::{leader_status, principal, session_status};
use crate::convert;
use crate::leader::messages::FrameworkMessage;
use crate::leader::Leader;

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

pub struct SchedulerApi {
    leader: Leader,
}

impl SchedulerApi {
    pub fn new(leader: Leader) -> Self {
        SchedulerApi { leader }
    }

    /// The framework a call names: this replica leads, the id is valid, the framework is
    /// subscribed to it, and it belongs to the caller's principal.
    fn caller(&self, id: &str, principal: Option<&str>) -> Result<FrameworkId, Status> {
        let id = self.subscribed(id)?;
        self.leader
            .require_framework_owner(principal, &id)
            .map_err(leader_status)?;
        Ok(id)
    }

    /// The framework a call names, whoever owns it.
    fn subscribed(&self, id: &str) -> Result<FrameworkId, Status> {
        self.leader.require_leader().map_err(leader_status)?;
        let id = convert::framework_id(id, "framework_id")?;
        self.leader.require_subscribed(&id).map_err(leader_status)?;
        Ok(id)
    }
}

fn done(result: Result<(), crate::leader::LeaderError>) -> Result<Response<pb::CallReply>, Status> {
    result
        .map(|()| Response::new(pb::CallReply {}))
        .map_err(leader_status)
}

#[tonic::async_trait]
impl Scheduler for SchedulerApi {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        self.leader.require_leader().map_err(leader_status)?;
        let who = principal(&req);
        let mut call = convert::subscribe_from_proto(req.into_inner())?;
        // A framework acts as the principal it proved; declaring another is refused.
        if let Some(who) = who {
            if call
                .principal
                .as_ref()
                .is_some_and(|declared| *declared != who)
            {
                return Err(Status::permission_denied(format!(
                    "framework.principal: {:?} is not the authenticated principal {who:?}",
                    call.principal.as_deref().unwrap_or_default()
                )));
            }
            call.principal = Some(who);
        }
        let subscription = self.leader.subscribe(call).await.map_err(leader_status)?;
        let events = ReceiverStream::new(subscription.events).map(|e| {
            e.map(convert::framework_event_to_proto)
                .map_err(session_status)
        });
        Ok(Response::new(Box::pin(events)))
    }

    async fn accept(
        &self,
        req: Request<pb::AcceptRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let framework = self.caller(&req.framework_id, who.as_deref())?;
        let call = convert::accept_from_proto(&req, &self.leader.framework_user(&framework))?;
        done(self.leader.accept(&framework, call).await)
    }

    async fn decline(
        &self,
        req: Request<pb::DeclineRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let framework = self.caller(&req.framework_id, who.as_deref())?;
        let refuse = convert::refuse_from_proto(req.filters.as_ref())?;
        convert::limits::count(
            "offer_ids",
            req.offer_ids.len(),
            convert::limits::MAX_OFFERS_PER_CALL,
        )?;
        let ids = convert::offer_ids(&req.offer_ids, "offer_ids", false)?;
        done(self.leader.decline(&framework, &ids, refuse).await)
    }

    async fn revive(
        &self,
        req: Request<pb::FrameworkCall>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        let framework = self.caller(&req.into_inner().framework_id, who.as_deref())?;
        done(self.leader.revive(&framework))
    }

    async fn suppress(
        &self,
        req: Request<pb::FrameworkCall>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        let framework = self.caller(&req.into_inner().framework_id, who.as_deref())?;
        done(self.leader.suppress(&framework))
    }

    async fn kill(&self, req: Request<pb::KillRequest>) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let framework = self.caller(&req.framework_id, who.as_deref())?;
        let task = convert::task_id(&req.task_id, "task_id")?;
        let grace = convert::limits::grace_period_ms("grace_period_ms", req.grace_period_ms)?;
        done(self.leader.kill(&framework, &task, grace))
    }

    async fn acknowledge(
        &self,
        req: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let framework = self.caller(&req.framework_id, who.as_deref())?;
        let task = convert::task_id(&req.task_id, "task_id")?;
        if req.uuid.is_empty() {
            return Err(convert::invalid("uuid", "empty"));
        }
        let agent = if req.agent_id.is_empty() {
            None
        } else {
            Some(convert::agent_id(&req.agent_id, "agent_id")?)
        };
        done(self.leader.acknowledge(&framework, &task, req.uuid, agent))
    }

    async fn reconcile(
        &self,
        req: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let framework = self.caller(&req.framework_id, who.as_deref())?;
        convert::limits::count(
            "task_ids",
            req.task_ids.len(),
            convert::limits::MAX_TASKS_PER_RECONCILE,
        )?;
        let tasks = req
            .task_ids
            .iter()
            .enumerate()
            .map(|(i, t)| convert::task_id(t, &format!("task_ids[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        done(self.leader.reconcile(&framework, &tasks))
    }

    async fn message(
        &self,
        req: Request<pb::FrameworkMessage>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        let m = req.into_inner();
        let framework = self.caller(&m.framework_id, who.as_deref())?;
        let agent = convert::agent_id(&m.agent_id, "agent_id")?;
        agora_registry::ids::validate_id(&m.executor_id)
            .map_err(|e| convert::invalid("executor_id", e))?;
        convert::limits::bytes("data", &m.data, convert::limits::MAX_MESSAGE_BYTES)?;
        done(self.leader.message(FrameworkMessage {
            framework_id: framework,
            agent_id: agent,
            executor_id: m.executor_id,
            data: m.data,
        }))
    }

    async fn shutdown(
        &self,
        req: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let framework = self.caller(&req.framework_id, who.as_deref())?;
        let agent = convert::agent_id(&req.agent_id, "agent_id")?;
        agora_registry::ids::validate_id(&req.executor_id)
            .map_err(|e| convert::invalid("executor_id", e))?;
        done(
            self.leader
                .shutdown_executor(&framework, &agent, req.executor_id),
        )
    }

    async fn teardown(
        &self,
        req: Request<pb::FrameworkCall>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        let framework = self.subscribed(&req.into_inner().framework_id)?;
        self.leader
            .authorize_teardown(who.as_deref(), &framework)
            .map_err(leader_status)?;
        done(self.leader.teardown(&framework).await)
    }
}
