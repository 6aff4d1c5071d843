//! The operator API's answers and event stream: a synchronous answer of a kind, SUBSCRIBED
//! and HEARTBEAT, and the leader's [`ClusterEvent`]s as operator events.

use agora_mesos_proto::v1::master as op;
use agora_registry::Allocation;

use super::state::{
    agent_to_mesos, framework_info, framework_to_mesos, task_status, task_to_mesos,
};
use super::{agent_id, framework_id};
use crate::convert::mesos::task_state_to_mesos;
use crate::leader::events::ClusterEvent;

fn response(kind: op::response::Type) -> op::Response {
    let mut r = op::Response::default();
    r.set_type(kind);
    r
}

/// A synchronous answer of `kind` with `fill` setting its member.
pub fn answer(kind: op::response::Type, fill: impl FnOnce(&mut op::Response)) -> op::Response {
    let mut r = response(kind);
    fill(&mut r);
    r
}

fn event(kind: op::event::Type) -> op::Event {
    let mut e = op::Event::default();
    e.set_type(kind);
    e
}

/// The first event of an operator's stream.
pub fn subscribed(state: op::response::GetState, heartbeat: std::time::Duration) -> op::Event {
    op::Event {
        subscribed: Some(op::event::Subscribed {
            get_state: Some(state),
            heartbeat_interval_seconds: Some(heartbeat.as_secs_f64()),
        }),
        ..event(op::event::Type::Subscribed)
    }
}

pub fn heartbeat() -> op::Event {
    event(op::event::Type::Heartbeat)
}

/// One of the leader's cluster events as an operator event.
pub fn cluster_event_to_mesos(e: &ClusterEvent) -> op::Event {
    use op::event::Type;
    match e {
        ClusterEvent::TaskAdded(t) => op::Event {
            task_added: Some(op::event::TaskAdded {
                task: task_to_mesos(t),
            }),
            ..event(Type::TaskAdded)
        },
        ClusterEvent::TaskUpdated(t) => {
            let mut updated = op::event::TaskUpdated {
                framework_id: framework_id(&t.framework_id),
                status: task_status(t),
                ..Default::default()
            };
            updated.set_state(task_state_to_mesos(t.state, true));
            op::Event {
                task_updated: Some(updated),
                ..event(Type::TaskUpdated)
            }
        }
        ClusterEvent::AgentAdded(a) => op::Event {
            agent_added: Some(op::event::AgentAdded {
                agent: agent_to_mesos(a, &Allocation::default()),
            }),
            ..event(Type::AgentAdded)
        },
        ClusterEvent::AgentRemoved(id) => op::Event {
            agent_removed: Some(op::event::AgentRemoved {
                agent_id: agent_id(id),
            }),
            ..event(Type::AgentRemoved)
        },
        ClusterEvent::FrameworkAdded(f) => op::Event {
            framework_added: Some(op::event::FrameworkAdded {
                framework: framework_to_mesos(f, &Allocation::default(), vec![]),
            }),
            ..event(Type::FrameworkAdded)
        },
        ClusterEvent::FrameworkUpdated(f) => op::Event {
            framework_updated: Some(op::event::FrameworkUpdated {
                framework: framework_to_mesos(f, &Allocation::default(), vec![]),
            }),
            ..event(Type::FrameworkUpdated)
        },
        ClusterEvent::FrameworkRemoved(c) => op::Event {
            framework_removed: Some(op::event::FrameworkRemoved {
                framework_info: framework_info(&c.framework),
            }),
            ..event(Type::FrameworkRemoved)
        },
    }
}
