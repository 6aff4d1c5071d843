//! Outbound: this master's identity (`MasterInfo`, `VersionInfo`) and the leader's domain
//! events (task updates, offers, rescinds, messages, session ends) as Mesos v1 scheduler
//! events, shaped as the framework's [`EventShape`] asks.

use std::net::Ipv4Addr;

use agora_mesos_proto::v1 as mesos;
use agora_mesos_proto::v1::scheduler as sched;
use agora_registry::{AgentId, Resources, TaskId, TaskState, Value};

use super::{uuid_to_mesos, EventShape};
use crate::leader::messages::{FrameworkEvent, OfferView, SessionEnd, StatusReason, TaskStatus};

/// This master as SUBSCRIBED names it: replica `id` at `address` (HOST:PORT). `ip` is
/// the IPv4 address packed in network byte order, as Mesos does (0 for a name).
pub fn master_info(id: u64, address: &str) -> mesos::MasterInfo {
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "0"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u32 = port.parse().unwrap_or(0);
    let ip = host.parse::<Ipv4Addr>().ok();
    mesos::MasterInfo {
        id: format!("agora-master-{id}"),
        ip: ip.map_or(0, |ip| u32::from_le_bytes(ip.octets())),
        port,
        pid: Some(format!("master@{address}")),
        hostname: Some(host.to_string()),
        version: Some(env!("CARGO_PKG_VERSION").to_string()),
        address: Some(mesos::Address {
            hostname: Some(host.to_string()),
            ip: ip.map(|ip| ip.to_string()),
            port: port as i32,
        }),
    }
}

/// `GET /version` in Mesos' shape.
pub fn version_info() -> mesos::VersionInfo {
    mesos::VersionInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        build_date: None,
        build_time: Some(0.0),
        build_user: Some("agora".to_string()),
        git_sha: Some(
            option_env!("AGORA_GIT_SHA")
                .unwrap_or("unknown")
                .to_string(),
        ),
        git_branch: None,
        git_tag: None,
    }
}

/// A task state as a framework of `shape` is told it.
pub fn task_state_to_mesos(state: TaskState, partition_aware: bool) -> mesos::TaskState {
    use mesos::TaskState as M;
    let lost = |finer: M| if partition_aware { finer } else { M::TaskLost };
    match state {
        TaskState::TaskStaging => M::TaskStaging,
        TaskState::TaskStarting => M::TaskStarting,
        TaskState::TaskRunning => M::TaskRunning,
        TaskState::TaskKilling => M::TaskKilling,
        TaskState::TaskFinished => M::TaskFinished,
        TaskState::TaskFailed => M::TaskFailed,
        TaskState::TaskKilled => M::TaskKilled,
        TaskState::TaskError => M::TaskError,
        TaskState::TaskLost => M::TaskLost,
        TaskState::TaskDropped => lost(M::TaskDropped),
        TaskState::TaskUnreachable => lost(M::TaskUnreachable),
        TaskState::TaskGone => lost(M::TaskGone),
        TaskState::TaskGoneByOperator => lost(M::TaskGoneByOperator),
        TaskState::TaskUnknown => lost(M::TaskUnknown),
    }
}

/// An agent's update that a framework of `shape` is not sent, with what acknowledges it
/// on the framework's behalf (task, uuid, agent): TASK_KILLING to a framework without
/// TASK_KILLING_STATE, as a Mesos agent never sends it one.
pub fn hidden_update(
    event: &FrameworkEvent,
    shape: &EventShape,
) -> Option<(TaskId, String, Option<AgentId>)> {
    match event {
        FrameworkEvent::Update(s)
            if s.state == TaskState::TaskKilling && !shape.task_killing_state =>
        {
            s.uuid
                .clone()
                .map(|uuid| (s.task_id.clone(), uuid, s.agent_id.clone()))
        }
        _ => None,
    }
}

/// A status update. The source is the master for what it decided itself (no uuid), the
/// executor for what a running task reported, the agent for the rest.
pub fn task_status_to_mesos(s: TaskStatus, shape: &EventShape) -> mesos::TaskStatus {
    use mesos::task_status::Source;
    let source = match (&s.uuid, s.state) {
        (None, _) => Source::Master,
        (
            Some(_),
            TaskState::TaskStarting
            | TaskState::TaskRunning
            | TaskState::TaskKilling
            | TaskState::TaskFinished
            | TaskState::TaskFailed
            | TaskState::TaskKilled,
        ) => Source::Executor,
        (Some(_), _) => Source::Agent,
    };
    mesos::TaskStatus {
        task_id: mesos::TaskId {
            value: s.task_id.to_string(),
        },
        state: match s.state {
            TaskState::TaskKilling if !shape.task_killing_state => mesos::TaskState::TaskRunning,
            state => task_state_to_mesos(state, shape.partition_aware),
        } as i32,
        message: (!s.message.is_empty()).then_some(s.message),
        source: Some(source as i32),
        reason: s.reason.map(|r| reason_to_mesos(r) as i32),
        agent_id: s.agent_id.map(|a| mesos::AgentId {
            value: a.to_string(),
        }),
        timestamp: Some(s.timestamp_ms as f64 / 1000.0),
        uuid: s.uuid.as_deref().map(uuid_to_mesos),
        ..Default::default()
    }
}

/// The Mesos reason for one the master gives. An unreachable agent's tasks get
/// REASON_AGENT_REMOVED, as a Mesos master marking an agent unreachable gives them.
fn reason_to_mesos(reason: StatusReason) -> mesos::task_status::Reason {
    use mesos::task_status::Reason;
    match reason {
        StatusReason::Reconciliation => Reason::Reconciliation,
        StatusReason::AgentUnreachable => Reason::AgentRemoved,
        StatusReason::AgentGone => Reason::AgentRemovedByOperator,
        StatusReason::InvalidOffers => Reason::InvalidOffers,
        StatusReason::TaskInvalid => Reason::TaskInvalid,
    }
}

/// Resources as Mesos offers them to a framework of `shape`.
#[allow(deprecated)] // Resource.role: the pre-refinement reservation format.
pub fn resources_to_mesos(res: &Resources, shape: &EventShape) -> Vec<mesos::Resource> {
    use mesos::resource::reservation_info::Type as Reservation;
    use mesos::value::Type;
    res.iter()
        .map(|r| {
            let mut out = mesos::Resource {
                name: r.name.clone(),
                ..Default::default()
            };
            match &r.value {
                Value::Scalar(s) => {
                    out.set_type(Type::Scalar);
                    out.scalar = Some(mesos::value::Scalar { value: s.as_f64() });
                }
                Value::Ranges(rs) => {
                    out.set_type(Type::Ranges);
                    out.ranges = Some(mesos::value::Ranges {
                        range: rs
                            .pairs()
                            .iter()
                            .map(|&(begin, end)| mesos::value::Range { begin, end })
                            .collect(),
                    });
                }
            }
            if shape.reservation_refinement {
                if let Some(role) = &r.role {
                    out.reservations = vec![mesos::resource::ReservationInfo {
                        r#type: Some(Reservation::Static as i32),
                        role: Some(role.clone()),
                        ..Default::default()
                    }];
                }
            } else {
                out.role = Some(r.role.clone().unwrap_or_else(|| "*".to_string()));
            }
            if shape.multi_role {
                out.allocation_info = Some(mesos::resource::AllocationInfo {
                    role: Some(shape.role.clone()),
                });
            }
            out
        })
        .collect()
}

/// An agent attribute: a scalar if its value is a number, else text (as Mesos reads an
/// agent's `--attributes`).
pub fn attribute_to_mesos(key: String, value: String) -> mesos::Attribute {
    use mesos::value::Type;
    let mut out = mesos::Attribute {
        name: key,
        ..Default::default()
    };
    match value.parse::<f64>() {
        Ok(x) if x.is_finite() => {
            out.set_type(Type::Scalar);
            out.scalar = Some(mesos::value::Scalar { value: x });
        }
        _ => {
            out.set_type(Type::Text);
            out.text = Some(mesos::value::Text { value });
        }
    }
    out
}

pub fn offer_to_mesos(o: OfferView, shape: &EventShape) -> mesos::Offer {
    mesos::Offer {
        id: mesos::OfferId {
            value: o.offer.id.to_string(),
        },
        framework_id: mesos::FrameworkId {
            value: o.offer.framework_id.to_string(),
        },
        agent_id: mesos::AgentId {
            value: o.offer.agent_id.to_string(),
        },
        hostname: o.hostname,
        resources: resources_to_mesos(&o.offer.resources, shape),
        attributes: o
            .attributes
            .into_iter()
            .map(|(k, v)| attribute_to_mesos(k, v))
            .collect(),
        allocation_info: shape.multi_role.then(|| mesos::resource::AllocationInfo {
            role: Some(shape.role.clone()),
        }),
        ..Default::default()
    }
}

fn event(kind: sched::event::Type) -> sched::Event {
    let mut e = sched::Event::default();
    e.set_type(kind);
    e
}

/// One of the leader's events for a framework, as a Mesos event.
pub fn framework_event_to_mesos(e: FrameworkEvent, shape: &EventShape) -> sched::Event {
    use sched::event::Type;
    match e {
        // Mesos' SUBSCRIBED has no term (its schedulers follow the leader by ZooKeeper's
        // word, or here by the stream's end).
        FrameworkEvent::Subscribed {
            framework_id,
            heartbeat_interval,
            term: _,
        } => sched::Event {
            subscribed: Some(sched::event::Subscribed {
                framework_id: mesos::FrameworkId {
                    value: framework_id.to_string(),
                },
                heartbeat_interval_seconds: Some(heartbeat_interval.as_secs_f64()),
                master_info: shape.master.clone(),
            }),
            ..event(Type::Subscribed)
        },
        FrameworkEvent::Offers(offers) => sched::Event {
            offers: Some(sched::event::Offers {
                offers: offers
                    .into_iter()
                    .map(|o| offer_to_mesos(o, shape))
                    .collect(),
            }),
            ..event(Type::Offers)
        },
        FrameworkEvent::Rescind(offer_id) => sched::Event {
            rescind: Some(sched::event::Rescind {
                offer_id: mesos::OfferId {
                    value: offer_id.to_string(),
                },
            }),
            ..event(Type::Rescind)
        },
        FrameworkEvent::Update(status) => sched::Event {
            update: Some(sched::event::Update {
                status: task_status_to_mesos(status, shape),
            }),
            ..event(Type::Update)
        },
        FrameworkEvent::Message(m) => sched::Event {
            message: Some(sched::event::Message {
                agent_id: mesos::AgentId {
                    value: m.agent_id.to_string(),
                },
                executor_id: mesos::ExecutorId {
                    value: m.executor_id,
                },
                data: m.data,
            }),
            ..event(Type::Message)
        },
        FrameworkEvent::Failure(agent) => sched::Event {
            failure: Some(sched::event::Failure {
                agent_id: Some(mesos::AgentId {
                    value: agent.to_string(),
                }),
                ..Default::default()
            }),
            ..event(Type::Failure)
        },
        FrameworkEvent::Heartbeat => event(Type::Heartbeat),
    }
}

/// The last event of a subscription the leader ended: ERROR for a framework that must not
/// carry on (failed over to a newer subscription, removed); none when it should subscribe
/// again (this master no longer leads, or is stopping), where the stream just ends.
pub fn session_end_to_mesos(end: &SessionEnd) -> Option<sched::Event> {
    let message = match end {
        SessionEnd::NotLeader(_) | SessionEnd::Unavailable(_) => return None,
        SessionEnd::Replaced => "Framework failed over".to_string(),
        SessionEnd::FrameworkRemoved(why) => format!("Framework has been removed: {why}"),
        other => other.to_string(),
    };
    Some(sched::Event {
        error: Some(sched::event::Error { message }),
        ..event(sched::event::Type::Error)
    })
}
