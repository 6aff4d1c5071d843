//! Inbound: the Mesos v1 scheduler calls (SUBSCRIBE, ACCEPT, DECLINE, KILL, ACKNOWLEDGE,
//! RECONCILE, MESSAGE, SHUTDOWN) converted to the `agora.v1` requests the gRPC scheduler
//! API takes, and the refusals of those requests renamed to the Mesos fields they name.
//! The tasks an ACCEPT launches are converted in [`super::tasks`].

use agora_mesos_proto::v1 as mesos;
use agora_mesos_proto::v1::scheduler as sched;
use agora_proto::v1 as pb;
use tonic::Status;

use super::tasks::task_from_mesos;
use super::uuid_from_mesos;
use super::{renamed, EventShape};
use crate::convert::{invalid, limits};
use crate::leader::SubscribeCall;

/// A Mesos SUBSCRIBE, converted.
#[derive(Clone, Debug)]
pub struct MesosSubscribe {
    pub call: SubscribeCall,
    /// The framework's role is in `suppressed_roles`: no offers until it revives.
    pub suppressed: bool,
    pub shape: EventShape,
}

/// A SUBSCRIBE's `framework_info`, validated as the gRPC API validates its FrameworkInfo.
#[allow(deprecated)] // FrameworkInfo.role: the one role of a framework without MULTI_ROLE.
pub fn subscribe_from_mesos(s: &sched::call::Subscribe) -> Result<MesosSubscribe, Status> {
    use mesos::framework_info::capability::Type as Capability;
    let info = &s.framework_info;
    let roles = if info.roles.is_empty() {
        vec![info.role().to_string()]
    } else {
        info.roles.clone()
    };
    let capabilities: Vec<Capability> = info
        .capabilities
        .iter()
        .filter_map(|c| c.r#type.and_then(|t| Capability::try_from(t).ok()))
        .collect();
    let request = pb::SubscribeRequest {
        framework: Some(pb::FrameworkInfo {
            id: info
                .id
                .as_ref()
                .map(|i| i.value.clone())
                .unwrap_or_default(),
            name: info.name.clone(),
            roles,
            principal: info.principal.clone().unwrap_or_default(),
            failover_timeout_seconds: info.failover_timeout(),
            capabilities: capabilities
                .iter()
                .map(|c| c.as_str_name().to_string())
                .collect(),
            user: info.user.clone(),
        }),
    };
    let call = crate::convert::subscribe_from_proto(request).map_err(subscribe_fields)?;
    let suppressed = s.suppressed_roles.contains(&call.role);
    let shape = EventShape {
        role: call.role.clone(),
        partition_aware: capabilities.contains(&Capability::PartitionAware),
        multi_role: capabilities.contains(&Capability::MultiRole),
        task_killing_state: capabilities.contains(&Capability::TaskKillingState),
        reservation_refinement: capabilities.contains(&Capability::ReservationRefinement),
        master: None,
    };
    Ok(MesosSubscribe {
        call,
        suppressed,
        shape,
    })
}

/// A refusal of a converted SUBSCRIBE, naming the Mesos field.
pub fn subscribe_fields(status: Status) -> Status {
    renamed(
        status,
        &[
            (
                "framework.failover_timeout_seconds",
                "subscribe.framework_info.failover_timeout",
            ),
            ("framework", "subscribe.framework_info"),
        ],
    )
}

/// What a Mesos ACCEPT asks: launches (an `agora.v1` accept) or, with no task to launch, a
/// decline of its offers (as Mesos reads an accept without operations).
#[derive(Clone, Debug)]
pub enum MesosAccept {
    Launch(MesosLaunch),
    Decline(pb::DeclineRequest),
}

/// An ACCEPT's launches as one `agora.v1` accept, with the Mesos path of each task.
#[derive(Clone, Debug)]
pub struct MesosLaunch {
    pub request: pb::AcceptRequest,
    task_paths: Vec<String>,
}

impl MesosLaunch {
    /// A refusal of [`Self::request`] naming the Mesos field (`tasks[3].command` is
    /// `accept.operations[1].launch.task_infos[0].command`).
    pub fn name_fields(&self, status: Status) -> Status {
        let message = status.message();
        if let Some(rest) = message.strip_prefix("tasks[") {
            if let Some((index, rest)) = rest.split_once(']') {
                if let Some(path) = index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.task_paths.get(i))
                {
                    return Status::new(status.code(), format!("{path}{rest}"));
                }
            }
        }
        renamed(status, ACCEPT_FIELDS)
    }
}

const ACCEPT_FIELDS: &[(&str, &str)] = &[
    ("offer_ids", "accept.offer_ids"),
    ("filters", "accept.filters"),
    ("tasks", "accept.operations"),
];

/// A refusal of an ACCEPT without operations (made as a decline), naming the Mesos field.
pub fn accept_decline_fields(status: Status) -> Status {
    renamed(status, ACCEPT_FIELDS)
}

/// An ACCEPT: LAUNCH operations become tasks; any other operation is refused, naming it.
pub fn accept_from_mesos(
    framework_id: &str,
    a: &sched::call::Accept,
) -> Result<MesosAccept, Status> {
    use mesos::offer::operation::Type as Op;
    let offer_ids: Vec<String> = a.offer_ids.iter().map(|o| o.value.clone()).collect();
    let filters = filters_from_mesos(a.filters.as_ref());
    limits::count(
        "accept.operations",
        a.operations.len(),
        limits::MAX_TASKS_PER_ACCEPT,
    )?;
    let mut tasks = Vec::new();
    let mut task_paths = Vec::new();
    for (i, op) in a.operations.iter().enumerate() {
        let path = format!("accept.operations[{i}]");
        let kind = op.r#type.map(Op::try_from);
        match kind {
            Some(Ok(Op::Launch)) => {}
            Some(Ok(Op::Unknown)) | None => {
                return Err(invalid(&format!("{path}.type"), "missing"));
            }
            Some(Ok(other)) => {
                return Err(invalid(
                    &format!("{path}.type"),
                    format!(
                        "operation {} is not supported by Agora (only LAUNCH is)",
                        other.as_str_name()
                    ),
                ));
            }
            Some(Err(_)) => {
                return Err(invalid(
                    &format!("{path}.type"),
                    format!("{} is not an operation type", op.r#type.unwrap_or_default()),
                ));
            }
        }
        let launch = op
            .launch
            .as_ref()
            .ok_or_else(|| invalid(&format!("{path}.launch"), "missing"))?;
        limits::count(
            &format!("{path}.launch.task_infos"),
            tasks.len() + launch.task_infos.len(),
            limits::MAX_TASKS_PER_ACCEPT,
        )?;
        for (k, t) in launch.task_infos.iter().enumerate() {
            let task_path = format!("{path}.launch.task_infos[{k}]");
            tasks.push(task_from_mesos(t, &task_path)?);
            task_paths.push(task_path);
        }
    }
    if tasks.is_empty() {
        // Nothing to launch: the offers are declined, as Mesos reads it.
        return Ok(MesosAccept::Decline(pb::DeclineRequest {
            framework_id: framework_id.to_string(),
            offer_ids,
            filters,
        }));
    }
    Ok(MesosAccept::Launch(MesosLaunch {
        request: pb::AcceptRequest {
            framework_id: framework_id.to_string(),
            offer_ids,
            tasks,
            filters,
        },
        task_paths,
    }))
}

fn filters_from_mesos(filters: Option<&mesos::Filters>) -> Option<pb::Filters> {
    filters.map(|f| pb::Filters {
        refuse_seconds: f.refuse_seconds,
    })
}

/// A DECLINE.
pub fn decline_from_mesos(framework_id: &str, d: &sched::call::Decline) -> pb::DeclineRequest {
    pb::DeclineRequest {
        framework_id: framework_id.to_string(),
        offer_ids: d.offer_ids.iter().map(|o| o.value.clone()).collect(),
        filters: filters_from_mesos(d.filters.as_ref()),
    }
}

/// A refusal of a converted DECLINE, naming the Mesos field.
pub fn decline_fields(status: Status) -> Status {
    renamed(
        status,
        &[
            ("offer_ids", "decline.offer_ids"),
            ("filters", "decline.filters"),
        ],
    )
}

/// A KILL; the kill policy's grace period overrides the agent's default (none: the
/// default; zero: a grace of 1 ms, as close to Mesos' immediate kill as a grace goes).
pub fn kill_from_mesos(
    framework_id: &str,
    k: &sched::call::Kill,
) -> Result<pb::KillRequest, Status> {
    let field = "kill.kill_policy.grace_period.nanoseconds";
    let grace_period_ms = match k.kill_policy.as_ref().and_then(|p| p.grace_period.as_ref()) {
        None => 0,
        Some(d) if d.nanoseconds < 0 => {
            return Err(invalid(field, format!("{} is negative", d.nanoseconds)))
        }
        Some(d) => (d.nanoseconds as u64).div_ceil(1_000_000).max(1),
    };
    limits::grace_period_ms(field, grace_period_ms)?;
    Ok(pb::KillRequest {
        framework_id: framework_id.to_string(),
        task_id: k.task_id.value.clone(),
        grace_period_ms,
    })
}

/// A refusal of a converted KILL, naming the Mesos field.
pub fn kill_fields(status: Status) -> Status {
    renamed(
        status,
        &[
            ("task_id", "kill.task_id"),
            ("grace_period_ms", "kill.kill_policy.grace_period"),
        ],
    )
}

/// An ACKNOWLEDGE: the update's `uuid` as the agent sent it.
pub fn acknowledge_from_mesos(
    framework_id: &str,
    a: &sched::call::Acknowledge,
) -> Result<pb::AcknowledgeRequest, Status> {
    Ok(pb::AcknowledgeRequest {
        framework_id: framework_id.to_string(),
        task_id: a.task_id.value.clone(),
        uuid: uuid_from_mesos(&a.uuid, "acknowledge.uuid")?,
        agent_id: a.agent_id.value.clone(),
    })
}

/// A refusal of a converted ACKNOWLEDGE, naming the Mesos field.
pub fn acknowledge_fields(status: Status) -> Status {
    renamed(
        status,
        &[
            ("task_id", "acknowledge.task_id"),
            ("agent_id", "acknowledge.agent_id"),
            ("uuid", "acknowledge.uuid"),
        ],
    )
}

/// A RECONCILE: explicit with tasks, implicit without.
pub fn reconcile_from_mesos(
    framework_id: &str,
    r: &sched::call::Reconcile,
) -> pb::ReconcileRequest {
    pb::ReconcileRequest {
        framework_id: framework_id.to_string(),
        task_ids: r.tasks.iter().map(|t| t.task_id.value.clone()).collect(),
    }
}

/// A refusal of a converted RECONCILE, naming the Mesos field.
pub fn reconcile_fields(status: Status) -> Status {
    let message = status.message();
    if let Some(rest) = message.strip_prefix("task_ids[") {
        if let Some((index, rest)) = rest.split_once(']') {
            return Status::new(
                status.code(),
                format!("reconcile.tasks[{index}].task_id{rest}"),
            );
        }
    }
    renamed(status, &[("task_ids", "reconcile.tasks")])
}

/// A MESSAGE for one of the framework's executors.
pub fn message_from_mesos(framework_id: &str, m: &sched::call::Message) -> pb::FrameworkMessage {
    pb::FrameworkMessage {
        framework_id: framework_id.to_string(),
        agent_id: m.agent_id.value.clone(),
        executor_id: m.executor_id.value.clone(),
        data: m.data.clone(),
    }
}

/// A refusal of a converted MESSAGE or SHUTDOWN, naming the Mesos field under `member`.
pub fn executor_call_fields(status: Status, member: &str) -> Status {
    let fields = ["agent_id", "executor_id", "data"].map(|f| (f, format!("{member}.{f}")));
    let renames: Vec<(&str, &str)> = fields.iter().map(|(f, t)| (*f, t.as_str())).collect();
    renamed(status, &renames)
}

/// A SHUTDOWN of one of the framework's executors.
pub fn shutdown_from_mesos(framework_id: &str, s: &sched::call::Shutdown) -> pb::ShutdownRequest {
    pb::ShutdownRequest {
        framework_id: framework_id.to_string(),
        agent_id: s.agent_id.value.clone(),
        executor_id: s.executor_id.value.clone(),
    }
}
