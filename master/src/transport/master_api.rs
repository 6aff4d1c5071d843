//! `agora.v1.Master`: agent registration, the cluster's state and status, and notices of
//! who leads.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use agora_proto::v1 as pb;
use agora_proto::v1::master_server::Master as MasterService;
use agora_registry::AgentId;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::{leader_status, principal};
use crate::convert;
use crate::leader::Leader;

/// How often this replica's leader notice is refreshed from its view: the view changes
/// with Raft's metrics and with time (a leader's lease runs out), so it is sampled.
const NOTICE_REFRESH: Duration = Duration::from_millis(50);

type Notice = Option<pb::LeaderNotice>;
type NoticeStream = Pin<Box<dyn Stream<Item = Result<pb::LeaderNotice, Status>> + Send>>;

pub struct MasterApi {
    leader: Leader,
    /// Who leads as this replica knows it (none while it knows no leader): one sampler
    /// for all `WatchLeader` streams, which it outlives by at most one refresh.
    notices: Arc<watch::Sender<Notice>>,
}

impl MasterApi {
    /// Needs a Tokio runtime: starts the sampler of leader notices.
    pub fn new(leader: Leader) -> Self {
        let notices = Arc::new(watch::channel(None).0);
        tokio::spawn(sample_notices(leader.clone(), Arc::downgrade(&notices)));
        MasterApi { leader, notices }
    }
}

/// Publishes this replica's word of who leads whenever the leader or the term changes,
/// until the API is gone.
async fn sample_notices(leader: Leader, notices: Weak<watch::Sender<Notice>>) {
    let mut tick = tokio::time::interval(NOTICE_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(tx) = notices.upgrade() else { return };
        let view = leader.view();
        let notice = view
            .leader_id
            .zip(view.leader_address)
            .map(|(leader_id, leader_address)| pb::LeaderNotice {
                leader_id,
                leader_address,
                term: view.term,
                from: view.id,
            });
        tx.send_if_modified(|current| {
            let changed = *current != notice;
            if changed {
                *current = notice;
            }
            changed
        });
    }
}

/// Counts an open `WatchLeader` stream while it lives.
struct Watcher(prometheus::IntGauge);

impl Watcher {
    fn new(gauge: &prometheus::IntGauge) -> Watcher {
        gauge.inc();
        Watcher(gauge.clone())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.dec();
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
        info.registration = convert::registration_order(req.incarnation, req.attempt);
        convert::limits::count(
            "tasks",
            req.tasks.len(),
            convert::limits::MAX_REPORTED_TASKS,
        )?;
        let reported = convert::reported_tasks_from_proto(&req.tasks)?;
        let registered = self
            .leader
            .register_agent(info, reported)
            .await
            .map_err(leader_status)?;
        Ok(Response::new(pb::RegisterAgentReply {
            agent_id: registered.agent_id.to_string(),
            log_index: registered.log_index,
            term: registered.term,
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

    type WatchLeaderStream = NoticeStream;

    async fn watch_leader(
        &self,
        _req: Request<pb::WatchLeaderRequest>,
    ) -> Result<Response<NoticeStream>, Status> {
        let gauge = &self.leader.metrics().leader_watchers;
        if gauge.get() >= convert::limits::MAX_LEADER_WATCHERS {
            return Err(Status::resource_exhausted(format!(
                "{} WatchLeader streams are open on this replica, the most it serves",
                convert::limits::MAX_LEADER_WATCHERS
            )));
        }
        let watcher = Watcher::new(gauge);
        let notices = WatchStream::new(self.notices.subscribe()).filter_map(move |notice| {
            let _open = &watcher;
            notice.map(Ok)
        });
        Ok(Response::new(Box::pin(notices)))
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
    // The counts and the index they are as of, read together: openraft's metrics report an
    // applied index a moment after (or, while a snapshot is installed, well after) the
    // registry has moved past it.
    let (agents, frameworks, tasks, last_applied) = leader.read_applied(|reg, applied| {
        (
            reg.agents().count() as u64,
            reg.frameworks().count() as u64,
            reg.tasks().filter(|t| !t.state.is_terminal()).count() as u64,
            applied,
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
        last_applied,
        agents,
        frameworks,
        tasks,
    }
}
