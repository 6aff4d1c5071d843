//! Apache Mesos' v1 scheduler API (`agora_mesos_proto`) to and from Agora.
//!
//! Inbound, a Mesos call becomes the request the gRPC scheduler API takes (`agora.v1`), so
//! both APIs share one validation ([`super::accept_from_proto`] and the rest) and one set of
//! leader calls; the field a refusal names is then renamed to its Mesos path
//! (`tasks[0].command` is `accept.operations[0].launch.task_infos[0].command`). A launch
//! record is an `agora.v1.TaskInfo` either way: it is what agents run. Outbound, the
//! leader's domain events become Mesos events, shaped as the framework's capabilities ask
//! (partition-aware task states, multi-role allocation info, reservation format).

use std::net::Ipv4Addr;

use agora_mesos_proto::v1 as mesos;
use agora_mesos_proto::v1::scheduler as sched;
use agora_proto::v1 as pb;
use agora_registry::{AgentId, Resources, TaskId, TaskState, Value};
use tonic::Status;

use super::{invalid, limits};
use crate::leader::messages::{FrameworkEvent, OfferView, SessionEnd, StatusReason, TaskStatus};
use crate::leader::SubscribeCall;

/// `status` with the field it names (the text before `": "`) renamed by the first of
/// `renames` that starts it: `(from, to)` replaces the prefix `from` by `to`.
fn renamed(status: Status, renames: &[(&str, &str)]) -> Status {
    let message = status.message();
    for (from, to) in renames {
        if let Some(rest) = message.strip_prefix(from) {
            // Only a whole field name or a path below it (`task_id` must not rename
            // `task_ids`).
            if rest.starts_with([':', '.', '[']) {
                return Status::new(status.code(), format!("{to}{rest}"));
            }
        }
    }
    status
}

/// What a Mesos framework's capabilities ask of the events it is sent.
#[derive(Clone, Debug, Default)]
pub struct EventShape {
    /// The framework's role (offered resources are allocated to it).
    pub role: String,
    /// PARTITION_AWARE: TASK_DROPPED, TASK_UNREACHABLE, TASK_GONE... as they are; else
    /// TASK_LOST, as Mesos tells frameworks without the capability.
    pub partition_aware: bool,
    /// MULTI_ROLE: offers and their resources carry `allocation_info`.
    pub multi_role: bool,
    /// TASK_KILLING_STATE: TASK_KILLING is sent; else a killing task is reported as
    /// TASK_RUNNING and the agent's TASK_KILLING update is not sent at all (see
    /// [`hidden_update`]).
    pub task_killing_state: bool,
    /// RESERVATION_REFINEMENT: reservations as `reservations`; else as the older `role`.
    pub reservation_refinement: bool,
    /// The leading master, in SUBSCRIBED.
    pub master: Option<mesos::MasterInfo>,
}

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
    let call = super::subscribe_from_proto(request).map_err(subscribe_fields)?;
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

/// A Mesos task as the launch record agents run: a command task (run by the agent's
/// built-in executor), or a task with its own executor (`executor`: a CUSTOM executor
/// with a command, started by the agent with Mesos' executor environment, which speaks
/// Mesos' executor API). The files of `command.uris` (of the executor's command, for a
/// task with its own executor) are fetched into the sandbox first. Secrets and the
/// DEFAULT executor (task groups) are refused, naming the field.
fn task_from_mesos(t: &mesos::TaskInfo, path: &str) -> Result<pb::TaskInfo, Status> {
    use prost::Message;
    let task_command = t.command.as_ref();
    let (command, uris, user, executor) = match &t.executor {
        Some(e) => {
            let epath = format!("{path}.executor");
            if e.r#type
                .and_then(|x| mesos::executor_info::Type::try_from(x).ok())
                == Some(mesos::executor_info::Type::Default)
            {
                return Err(invalid(
                    &format!("{epath}.type"),
                    "the DEFAULT executor (task groups) is not supported by Agora; give a CUSTOM executor with a command",
                ));
            }
            if e.executor_id.value.is_empty() {
                return Err(invalid(&format!("{epath}.executor_id.value"), "empty"));
            }
            let ecmd = e.command.as_ref().ok_or_else(|| {
                invalid(
                    &format!("{epath}.command"),
                    "missing: Agora starts a framework's executor from its command",
                )
            })?;
            let line = command_line(ecmd, &format!("{epath}.command"))?;
            let env = env_from_mesos(ecmd, &format!("{epath}.command"))?;
            let uris = uris_from_mesos(&ecmd.uris, &format!("{epath}.command.uris"))?;
            // The task's own command is the executor's business (it gets the whole
            // TaskInfo); the launch record still holds a line to show.
            let shown =
                match task_command.filter(|c| c.value.as_deref().is_some_and(|v| !v.is_empty())) {
                    Some(c) => command_line(c, &format!("{path}.command"))?,
                    None => format!("# run by executor {}", e.executor_id.value),
                };
            let user = ecmd
                .user
                .clone()
                .or_else(|| task_command.and_then(|c| c.user.clone()))
                .unwrap_or_default();
            let executor = pb::ExecutorInfo {
                command: line,
                executor_id: e.executor_id.value.clone(),
                env,
                mesos_executor_info: e.encode_to_vec(),
            };
            (shown, uris, user, Some(executor))
        }
        None => {
            let command =
                task_command.ok_or_else(|| invalid(&format!("{path}.command"), "missing"))?;
            let line = command_line(command, &format!("{path}.command"))?;
            let uris = uris_from_mesos(&command.uris, &format!("{path}.command.uris"))?;
            (line, uris, command.user.clone().unwrap_or_default(), None)
        }
    };
    let env = match task_command {
        Some(c) => env_from_mesos(c, &format!("{path}.command"))?,
        None => Default::default(),
    };
    Ok(pb::TaskInfo {
        task_id: t.task_id.value.clone(),
        name: t.name.clone(),
        resources: resources_from_mesos(&t.resources, &format!("{path}.resources"))?,
        command,
        env,
        // Only a framework's own executor reads the task in Mesos' shape.
        mesos_task_info: if executor.is_some() {
            t.encode_to_vec()
        } else {
            Vec::new()
        },
        executor,
        user,
        uris,
    })
}

/// A Mesos command as the line the agent runs with `/bin/sh -c`: the shell command, or
/// the program and its argv (argv[0] included, so it is skipped), quoted, after `exec` so
/// signals go to it.
fn command_line(command: &mesos::CommandInfo, path: &str) -> Result<String, Status> {
    let value = command.value.clone().unwrap_or_default();
    if command.shell() {
        return Ok(value);
    }
    if value.is_empty() {
        return Err(invalid(&format!("{path}.value"), "missing"));
    }
    let mut line = format!("exec {}", shell_quote(&value));
    for a in command.arguments.iter().skip(1) {
        line.push(' ');
        line.push_str(&shell_quote(a));
    }
    Ok(line)
}

/// A Mesos command's environment variables (SECRET ones refused).
fn env_from_mesos(
    command: &mesos::CommandInfo,
    path: &str,
) -> Result<std::collections::HashMap<String, String>, Status> {
    let mut env = std::collections::HashMap::new();
    if let Some(environment) = &command.environment {
        limits::count(
            &format!("{path}.environment.variables"),
            environment.variables.len(),
            limits::MAX_ENV_VARS,
        )?;
        for (i, v) in environment.variables.iter().enumerate() {
            use mesos::environment::variable::Type;
            if v.r#type.and_then(|t| Type::try_from(t).ok()) == Some(Type::Secret) {
                return Err(invalid(
                    &format!("{path}.environment.variables[{i}].type"),
                    "SECRET variables are not supported by Agora",
                ));
            }
            env.insert(v.name.clone(), v.value.clone().unwrap_or_default());
        }
    }
    Ok(env)
}

/// The files a command fetches: `file://`, absolute paths, `http://` and `https://`
/// (others refused, naming the URI's field); `extract` as Mesos defaults it (on), which
/// the agent applies to archives only (and refuses for them: it does not extract).
fn uris_from_mesos(
    uris: &[mesos::command_info::Uri],
    path: &str,
) -> Result<Vec<pb::FetchUri>, Status> {
    limits::count(path, uris.len(), limits::MAX_URIS)?;
    uris.iter()
        .enumerate()
        .map(|(i, u)| {
            let field = format!("{path}[{i}].value");
            limits::bytes(&field, u.value.as_bytes(), limits::MAX_URI_BYTES)?;
            let lower = u.value.to_ascii_lowercase();
            if !(lower.starts_with("file://")
                || lower.starts_with("http://")
                || lower.starts_with("https://")
                || u.value.starts_with('/'))
            {
                return Err(invalid(
                    &field,
                    format!(
                        "{:?}: Agora fetches file://, absolute paths, http:// and https:// only",
                        u.value.chars().take(80).collect::<String>()
                    ),
                ));
            }
            Ok(pb::FetchUri {
                value: u.value.clone(),
                executable: u.executable(),
                extract: u.extract(),
                output_file: u.output_file.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// `text` as one shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Mesos resources as the scheduler API's: scalars and ranges, unreserved or statically
/// reserved (the role of the innermost reservation, or the older `role`).
#[allow(deprecated)] // Resource.role: the pre-refinement reservation role.
pub fn resources_from_mesos(
    items: &[mesos::Resource],
    field: &str,
) -> Result<Vec<pb::Resource>, Status> {
    use mesos::value::Type;
    limits::count(field, items.len(), agora_registry::resources::MAX_RESOURCES)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, r) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let value = match Type::try_from(r.r#type) {
            Ok(Type::Scalar) => pb::resource::Value::Scalar(
                r.scalar
                    .as_ref()
                    .ok_or_else(|| invalid(&format!("{f}.scalar"), "missing"))?
                    .value,
            ),
            Ok(Type::Ranges) => {
                let ranges = r
                    .ranges
                    .as_ref()
                    .map(|x| x.range.as_slice())
                    .unwrap_or_default();
                limits::count(
                    &format!("{f}.ranges.range"),
                    ranges.len(),
                    agora_registry::resources::MAX_RANGES_PER_RESOURCE,
                )?;
                pb::resource::Value::Ranges(pb::Ranges {
                    range: ranges
                        .iter()
                        .map(|x| pb::Range {
                            begin: x.begin,
                            end: x.end,
                        })
                        .collect(),
                })
            }
            Ok(other) => {
                return Err(invalid(
                    &format!("{f}.type"),
                    format!(
                        "{} resources are not supported by Agora (scalars and ranges are)",
                        other.as_str_name()
                    ),
                ))
            }
            Err(_) => {
                return Err(invalid(
                    &format!("{f}.type"),
                    format!("{} is not a value type", r.r#type),
                ))
            }
        };
        for (present, what) in [
            (r.disk.is_some(), "disk"),
            (r.revocable.is_some(), "revocable"),
            (r.shared.is_some(), "shared"),
        ] {
            if present {
                return Err(invalid(
                    &format!("{f}.{what}"),
                    "not supported by Agora (no volumes, revocable or shared resources)",
                ));
            }
        }
        let role = r
            .reservations
            .last()
            .and_then(|x| x.role.clone())
            .or_else(|| r.role.clone())
            .filter(|role| role != "*")
            .unwrap_or_default();
        out.push(pb::Resource {
            name: r.name.clone(),
            role,
            value: Some(value),
        });
    }
    Ok(out)
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

/// A status update's uuid on Mesos' wire: the 16 bytes of the agent's UUID (its text
/// otherwise).
pub fn uuid_to_mesos(uuid: &str) -> Vec<u8> {
    match uuid::Uuid::parse_str(uuid) {
        Ok(u) => u.as_bytes().to_vec(),
        Err(_) => uuid.as_bytes().to_vec(),
    }
}

/// The agent's uuid of an update from Mesos' bytes ([`uuid_to_mesos`] reversed).
pub fn uuid_from_mesos(bytes: &[u8], field: &str) -> Result<String, Status> {
    if bytes.is_empty() {
        return Err(invalid(field, "empty"));
    }
    if let Ok(u) = uuid::Uuid::from_slice(bytes) {
        return Ok(u.to_string());
    }
    limits::bytes(field, bytes, 64)?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| invalid(field, "not the uuid of an update this master sent"))
}

// ---- outbound ----

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
        FrameworkEvent::Subscribed {
            framework_id,
            heartbeat_interval,
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

#[cfg(test)]
mod tests {
    use super::*;
    use agora_mesos_proto::MesosJson;
    use agora_registry::{FrameworkId, Offer, OfferId};

    fn call(json: &str) -> sched::Call {
        sched::Call::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn subscribe_is_validated_as_grpc_and_names_mesos_fields() {
        let c = call(
            r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"root","name":"fw",
                "failover_timeout":60,"capabilities":[{"type":"PARTITION_AWARE"}]},
                "suppressed_roles":["*"]}}"#,
        );
        let s = subscribe_from_mesos(c.subscribe.as_ref().unwrap()).unwrap();
        assert_eq!(s.call.role, "*");
        assert_eq!(s.call.failover_timeout_ms, 60_000);
        assert!(s.suppressed && s.shape.partition_aware && !s.shape.multi_role);
        let c = call(
            r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"fw",
                "failover_timeout":-1}}}"#,
        );
        let e = subscribe_from_mesos(c.subscribe.as_ref().unwrap()).unwrap_err();
        assert!(
            e.message()
                .starts_with("subscribe.framework_info.failover_timeout: "),
            "{e:?}"
        );
        let c =
            call(r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":""}}}"#);
        let e = subscribe_from_mesos(c.subscribe.as_ref().unwrap()).unwrap_err();
        assert!(
            e.message().starts_with("subscribe.framework_info.name: "),
            "{e:?}"
        );
    }

    #[test]
    fn accept_maps_launches_and_refuses_other_operations() {
        let c = call(
            r#"{"type":"ACCEPT","accept":{"offer_ids":[{"value":"o1"}],"operations":[
                {"type":"LAUNCH","launch":{"task_infos":[{"name":"t","task_id":{"value":"t1"},
                 "agent_id":{"value":"a"},"resources":[
                   {"name":"cpus","type":"SCALAR","scalar":{"value":0.5},"role":"*"},
                   {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":31001}]}}],
                 "command":{"value":"echo hi","environment":{"variables":[{"name":"A","value":"1"}]}}}]}}],
                "filters":{"refuse_seconds":1}}}"#,
        );
        let MesosAccept::Launch(l) = accept_from_mesos("f", c.accept.as_ref().unwrap()).unwrap()
        else {
            panic!("not a launch")
        };
        let t = &l.request.tasks[0];
        assert_eq!((t.task_id.as_str(), t.command.as_str()), ("t1", "echo hi"));
        assert_eq!(t.env["A"], "1");
        assert_eq!(t.resources.len(), 2);
        assert_eq!(t.resources[0].role, "");
        assert_eq!(l.request.filters.unwrap().refuse_seconds, Some(1.0));
        let e = l.name_fields(invalid("tasks[0].resources", "too small"));
        assert_eq!(
            e.message(),
            "accept.operations[0].launch.task_infos[0].resources: too small"
        );

        let c = call(
            r#"{"type":"ACCEPT","accept":{"offer_ids":[{"value":"o1"}],"operations":[
                {"type":"LAUNCH","launch":{"task_infos":[]}},{"type":"RESERVE","reserve":{}}]}}"#,
        );
        let e = accept_from_mesos("f", c.accept.as_ref().unwrap()).unwrap_err();
        assert!(
            e.message()
                .starts_with("accept.operations[1].type: operation RESERVE"),
            "{e:?}"
        );
        let c = call(r#"{"type":"ACCEPT","accept":{"offer_ids":[{"value":"o1"}]}}"#);
        assert!(matches!(
            accept_from_mesos("f", c.accept.as_ref().unwrap()).unwrap(),
            MesosAccept::Decline(_)
        ));
    }

    #[test]
    fn uris_and_custom_executors_reach_the_launch_record() {
        let c = call(
            r#"{"type":"ACCEPT","accept":{"offer_ids":[{"value":"o1"}],"operations":[
                {"type":"LAUNCH","launch":{"task_infos":[{"name":"t","task_id":{"value":"t1"},
                 "agent_id":{"value":"a"},"command":{"value":"./run.sh",
                 "uris":[{"value":"http://h:1/run.sh","executable":true},
                         {"value":"/tmp/x.tgz","extract":false,"output_file":"y.tgz"}]}},
                 {"name":"e","task_id":{"value":"t2"},"agent_id":{"value":"a"},"data":"aGk=",
                  "executor":{"executor_id":{"value":"ex"},"command":{"value":"python3 exec.py",
                   "environment":{"variables":[{"name":"E","value":"1"}]},
                   "uris":[{"value":"file:///tmp/exec.py"}]}}}]}}]}}"#,
        );
        let MesosAccept::Launch(l) = accept_from_mesos("f", c.accept.as_ref().unwrap()).unwrap()
        else {
            panic!("not a launch")
        };
        let t = &l.request.tasks[0];
        assert_eq!(t.uris.len(), 2);
        assert!(t.uris[0].executable && t.uris[0].extract, "{:?}", t.uris[0]);
        assert!(!t.uris[1].extract);
        assert_eq!(t.uris[1].output_file, "y.tgz");
        assert!(t.executor.is_none() && t.mesos_task_info.is_empty());
        let t = &l.request.tasks[1];
        let e = t.executor.as_ref().unwrap();
        assert_eq!(
            (e.command.as_str(), e.executor_id.as_str()),
            ("python3 exec.py", "ex")
        );
        assert_eq!(e.env["E"], "1");
        assert_eq!(t.uris[0].value, "file:///tmp/exec.py");
        use prost::Message;
        let back = mesos::TaskInfo::decode(t.mesos_task_info.as_slice()).unwrap();
        assert_eq!(back.data.as_deref(), Some(&b"hi"[..]));
        let back = mesos::ExecutorInfo::decode(e.mesos_executor_info.as_slice()).unwrap();
        assert_eq!(back.executor_id.value, "ex");

        let c = call(
            r#"{"type":"ACCEPT","accept":{"offer_ids":[{"value":"o1"}],"operations":[
                {"type":"LAUNCH","launch":{"task_infos":[{"name":"t","task_id":{"value":"t1"},
                 "agent_id":{"value":"a"},"command":{"value":"x",
                 "uris":[{"value":"hdfs://nn/x"}]}}]}}]}}"#,
        );
        let e = accept_from_mesos("f", c.accept.as_ref().unwrap()).unwrap_err();
        assert!(
            e.message()
                .starts_with("accept.operations[0].launch.task_infos[0].command.uris[0].value"),
            "{e:?}"
        );
    }

    #[test]
    fn argv_commands_are_quoted() {
        let c = call(
            r#"{"type":"ACCEPT","accept":{"offer_ids":[{"value":"o1"}],"operations":[
                {"type":"LAUNCH","launch":{"task_infos":[{"name":"t","task_id":{"value":"t1"},
                 "agent_id":{"value":"a"},"command":{"shell":false,"value":"/bin/echo",
                 "arguments":["echo","it's"]}}]}}]}}"#,
        );
        let MesosAccept::Launch(l) = accept_from_mesos("f", c.accept.as_ref().unwrap()).unwrap()
        else {
            panic!("not a launch")
        };
        assert_eq!(l.request.tasks[0].command, r"exec '/bin/echo' 'it'\''s'");
    }

    #[test]
    fn uuids_round_trip_as_16_bytes() {
        let u = uuid::Uuid::new_v4().to_string();
        let bytes = uuid_to_mesos(&u);
        assert_eq!(bytes.len(), 16);
        assert_eq!(uuid_from_mesos(&bytes, "uuid").unwrap(), u);
        assert_eq!(uuid_from_mesos(b"u1", "uuid").unwrap(), "u1");
        assert!(uuid_from_mesos(b"", "uuid").is_err());
    }

    #[test]
    fn events_carry_what_mesos_frameworks_read() {
        let shape = EventShape {
            role: "web".into(),
            multi_role: true,
            master: Some(master_info(2, "127.0.0.1:5050")),
            ..Default::default()
        };
        let m = shape.master.as_ref().unwrap();
        assert_eq!((m.ip, m.port), (0x0100_007f, 5050));
        let offer = OfferView {
            offer: Offer {
                id: OfferId::new("o1").unwrap(),
                framework_id: FrameworkId::new("f").unwrap(),
                agent_id: AgentId::new("a").unwrap(),
                resources: Resources::parse("cpus:2;cpus(web):1;ports:[31000-31005]").unwrap(),
                created_at_ms: 0,
            },
            hostname: "h".into(),
            attributes: vec![("rack".into(), "3".into()), ("os".into(), "linux".into())],
        };
        let e = framework_event_to_mesos(FrameworkEvent::Offers(vec![offer]), &shape);
        let json = e.to_json().unwrap();
        assert!(
            json.starts_with(r#"{"type":"OFFERS","offers":{"offers":[{"id":{"value":"o1"}"#),
            "{json}"
        );
        assert!(json.contains(r#""name":"ports","type":"RANGES""#), "{json}");
        assert!(json.contains(r#""role":"web""#), "{json}");
        assert!(
            json.contains(r#""allocation_info":{"role":"web"}"#),
            "{json}"
        );
        assert!(
            json.contains(r#"{"name":"rack","type":"SCALAR","scalar":{"value":3.0}}"#),
            "{json}"
        );

        let u = uuid::Uuid::new_v4().to_string();
        let status = TaskStatus {
            task_id: TaskId::new("t").unwrap(),
            state: TaskState::TaskDropped,
            message: "m".into(),
            agent_id: None,
            uuid: Some(u),
            exit_code: None,
            timestamp_ms: 1_500,
            reason: Some(StatusReason::InvalidOffers),
        };
        let e = framework_event_to_mesos(FrameworkEvent::Update(status.clone()), &shape);
        let s = &e.update.as_ref().unwrap().status;
        assert_eq!(s.state(), mesos::TaskState::TaskLost);
        assert_eq!(
            s.reason(),
            mesos::task_status::Reason::InvalidOffers,
            "the master's reason crosses"
        );
        assert_eq!(s.timestamp, Some(1.5));
        assert_eq!(s.uuid.as_ref().unwrap().len(), 16);
        let aware = EventShape {
            partition_aware: true,
            ..shape
        };
        let e = framework_event_to_mesos(FrameworkEvent::Update(status), &aware);
        assert_eq!(
            e.update.unwrap().status.state(),
            mesos::TaskState::TaskDropped
        );

        let e = framework_event_to_mesos(FrameworkEvent::Heartbeat, &aware);
        assert_eq!(e.to_json().unwrap(), r#"{"type":"HEARTBEAT"}"#);
        assert!(session_end_to_mesos(&SessionEnd::NotLeader(None)).is_none());
        let e = session_end_to_mesos(&SessionEnd::Replaced).unwrap();
        assert_eq!(e.r#type(), sched::event::Type::Error);
    }

    #[test]
    fn task_killing_only_for_frameworks_that_ask_for_it() {
        let killing = |uuid: Option<&str>| TaskStatus {
            task_id: TaskId::new("t").unwrap(),
            state: TaskState::TaskKilling,
            message: String::new(),
            agent_id: Some(AgentId::new("a").unwrap()),
            uuid: uuid.map(str::to_string),
            exit_code: None,
            timestamp_ms: 1,
            reason: None,
        };
        let plain = EventShape::default();
        let capable = EventShape {
            task_killing_state: true,
            ..EventShape::default()
        };
        let u = uuid::Uuid::new_v4().to_string();
        let update = FrameworkEvent::Update(killing(Some(&u)));
        // The agent's update is acknowledged for a framework that may not see it...
        let (task, uuid, agent) = hidden_update(&update, &plain).unwrap();
        assert_eq!((task.as_str(), uuid.as_str()), ("t", u.as_str()));
        assert_eq!(agent.unwrap().as_str(), "a");
        // ...and sent to one that asked for it.
        assert!(hidden_update(&update, &capable).is_none());
        let e = framework_event_to_mesos(update, &capable);
        assert_eq!(
            e.update.unwrap().status.state(),
            mesos::TaskState::TaskKilling
        );
        // The master's own answer (reconciliation) says TASK_RUNNING instead.
        let answer = FrameworkEvent::Update(killing(None));
        assert!(hidden_update(&answer, &plain).is_none());
        let e = framework_event_to_mesos(answer, &plain);
        assert_eq!(
            e.update.unwrap().status.state(),
            mesos::TaskState::TaskRunning
        );
    }
}
