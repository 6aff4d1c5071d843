//! `agora.v1.Scheduler`: frameworks' calls. Each call is a function of this module taking
//! the authenticated principal and the request, so Mesos' scheduler HTTP API
//! ([`super::mesos_scheduler`]), which converts its calls into these requests, makes the
//! very same checks and leader calls.

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
use crate::leader::{Leader, SubscribeCall, Subscription};

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

pub struct SchedulerApi {
    leader: Leader,
}

impl SchedulerApi {
    pub fn new(leader: Leader) -> Self {
        SchedulerApi { leader }
    }
}

/// The framework a call names: this replica leads, the id is valid, the framework is
/// subscribed to it, and it belongs to the caller's principal.
pub(super) fn caller(
    leader: &Leader,
    id: &str,
    principal: Option<&str>,
) -> Result<FrameworkId, Status> {
    let id = subscribed(leader, id)?;
    leader
        .require_framework_owner(principal, &id)
        .map_err(leader_status)?;
    Ok(id)
}

/// The framework a call names, whoever owns it.
fn subscribed(leader: &Leader, id: &str) -> Result<FrameworkId, Status> {
    leader.require_leader().map_err(leader_status)?;
    let id = convert::framework_id(id, "framework_id")?;
    leader.require_subscribed(&id).map_err(leader_status)?;
    Ok(id)
}

fn done(result: Result<(), crate::leader::LeaderError>) -> Result<(), Status> {
    result.map_err(leader_status)
}

fn reply(result: Result<(), Status>) -> Result<Response<pb::CallReply>, Status> {
    result.map(|()| Response::new(pb::CallReply {}))
}

/// Subscribes a framework as the principal `who` proved: a framework acts as that
/// principal, and declaring another is refused.
pub(super) async fn subscribe(
    leader: &Leader,
    who: Option<String>,
    mut call: SubscribeCall,
) -> Result<Subscription, Status> {
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
    leader.subscribe(call).await.map_err(leader_status)
}

pub(super) async fn accept(
    leader: &Leader,
    who: Option<&str>,
    req: &pb::AcceptRequest,
) -> Result<(), Status> {
    let framework = caller(leader, &req.framework_id, who)?;
    let call = convert::accept_from_proto(req, &leader.framework_user(&framework))?;
    done(leader.accept(&framework, call).await)
}

pub(super) async fn decline(
    leader: &Leader,
    who: Option<&str>,
    req: &pb::DeclineRequest,
) -> Result<(), Status> {
    let framework = caller(leader, &req.framework_id, who)?;
    let refuse = convert::refuse_from_proto(req.filters.as_ref())?;
    convert::limits::count(
        "offer_ids",
        req.offer_ids.len(),
        convert::limits::MAX_OFFERS_PER_CALL,
    )?;
    let ids = convert::offer_ids(&req.offer_ids, "offer_ids", false)?;
    done(leader.decline(&framework, &ids, refuse).await)
}

pub(super) fn revive(leader: &Leader, who: Option<&str>, framework_id: &str) -> Result<(), Status> {
    let framework = caller(leader, framework_id, who)?;
    done(leader.revive(&framework))
}

pub(super) fn suppress(
    leader: &Leader,
    who: Option<&str>,
    framework_id: &str,
) -> Result<(), Status> {
    let framework = caller(leader, framework_id, who)?;
    done(leader.suppress(&framework))
}

pub(super) fn kill(
    leader: &Leader,
    who: Option<&str>,
    req: &pb::KillRequest,
) -> Result<(), Status> {
    let framework = caller(leader, &req.framework_id, who)?;
    let task = convert::task_id(&req.task_id, "task_id")?;
    let grace = convert::limits::grace_period_ms("grace_period_ms", req.grace_period_ms)?;
    done(leader.kill(&framework, &task, grace))
}

pub(super) fn acknowledge(
    leader: &Leader,
    who: Option<&str>,
    req: pb::AcknowledgeRequest,
) -> Result<(), Status> {
    let framework = caller(leader, &req.framework_id, who)?;
    let task = convert::task_id(&req.task_id, "task_id")?;
    if req.uuid.is_empty() {
        return Err(convert::invalid("uuid", "empty"));
    }
    let agent = if req.agent_id.is_empty() {
        None
    } else {
        Some(convert::agent_id(&req.agent_id, "agent_id")?)
    };
    done(leader.acknowledge(&framework, &task, req.uuid, agent))
}

pub(super) fn reconcile(
    leader: &Leader,
    who: Option<&str>,
    req: &pb::ReconcileRequest,
) -> Result<(), Status> {
    let framework = caller(leader, &req.framework_id, who)?;
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
    done(leader.reconcile(&framework, &tasks))
}

pub(super) fn message(
    leader: &Leader,
    who: Option<&str>,
    m: pb::FrameworkMessage,
) -> Result<(), Status> {
    let framework = caller(leader, &m.framework_id, who)?;
    let agent = convert::agent_id(&m.agent_id, "agent_id")?;
    agora_registry::ids::validate_id(&m.executor_id)
        .map_err(|e| convert::invalid("executor_id", e))?;
    convert::limits::bytes("data", &m.data, convert::limits::MAX_MESSAGE_BYTES)?;
    done(leader.message(FrameworkMessage {
        framework_id: framework,
        agent_id: agent,
        executor_id: m.executor_id,
        data: m.data,
    }))
}

pub(super) fn shutdown(
    leader: &Leader,
    who: Option<&str>,
    req: pb::ShutdownRequest,
) -> Result<(), Status> {
    let framework = caller(leader, &req.framework_id, who)?;
    let agent = convert::agent_id(&req.agent_id, "agent_id")?;
    agora_registry::ids::validate_id(&req.executor_id)
        .map_err(|e| convert::invalid("executor_id", e))?;
    done(leader.shutdown_executor(&framework, &agent, req.executor_id))
}

pub(super) async fn teardown(
    leader: &Leader,
    who: Option<&str>,
    framework_id: &str,
) -> Result<(), Status> {
    let framework = subscribed(leader, framework_id)?;
    leader
        .authorize_teardown(who, &framework)
        .map_err(leader_status)?;
    done(leader.teardown(&framework).await)
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
        let call = convert::subscribe_from_proto(req.into_inner())?;
        let subscription = subscribe(&self.leader, who, call).await?;
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
        reply(accept(&self.leader, who.as_deref(), req.get_ref()).await)
    }

    async fn decline(
        &self,
        req: Request<pb::DeclineRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        reply(decline(&self.leader, who.as_deref(), req.get_ref()).await)
    }

    async fn revive(
        &self,
        req: Request<pb::FrameworkCall>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        reply(revive(
            &self.leader,
            who.as_deref(),
            &req.get_ref().framework_id,
        ))
    }

    async fn suppress(
        &self,
        req: Request<pb::FrameworkCall>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        reply(suppress(
            &self.leader,
            who.as_deref(),
            &req.get_ref().framework_id,
        ))
    }

    async fn kill(&self, req: Request<pb::KillRequest>) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        reply(kill(&self.leader, who.as_deref(), req.get_ref()))
    }

    async fn acknowledge(
        &self,
        req: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        reply(acknowledge(&self.leader, who.as_deref(), req.into_inner()))
    }

    async fn reconcile(
        &self,
        req: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        reply(reconcile(&self.leader, who.as_deref(), req.get_ref()))
    }

    async fn message(
        &self,
        req: Request<pb::FrameworkMessage>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        reply(message(&self.leader, who.as_deref(), req.into_inner()))
    }

    async fn shutdown(
        &self,
        req: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        reply(shutdown(&self.leader, who.as_deref(), req.into_inner()))
    }

    async fn teardown(
        &self,
        req: Request<pb::FrameworkCall>,
    ) -> Result<Response<pb::CallReply>, Status> {
        let who = principal(&req);
        reply(teardown(&self.leader, who.as_deref(), &req.get_ref().framework_id).await)
    }
}
