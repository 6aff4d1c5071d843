//! Inbound: a Mesos `TaskInfo` as the `agora.v1.TaskInfo` launch record agents run (its
//! command line, environment and fetched URIs), and Mesos resources as the scheduler
//! API's, each refusal naming the Mesos field.

use agora_mesos_proto::v1 as mesos;
use agora_proto::v1 as pb;
use tonic::Status;

use crate::convert::{invalid, limits};

/// A Mesos task as the launch record agents run: a command task (run by the agent's
/// built-in executor), or a task with its own executor (`executor`: a CUSTOM executor
/// with a command, started by the agent with Mesos' executor environment, which speaks
/// Mesos' executor API). The files of `command.uris` (of the executor's command, for a
/// task with its own executor) are fetched into the sandbox first. Secrets and the
/// DEFAULT executor (task groups) are refused, naming the field.
pub(super) fn task_from_mesos(t: &mesos::TaskInfo, path: &str) -> Result<pb::TaskInfo, Status> {
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
                resources: resources_from_mesos(&e.resources, &format!("{epath}.resources"))?,
            };
            (shown, uris, user, Some(executor))
        }
        None => {
            let command =
                task_command.ok_or_else(|| invalid(&format!("{path}.command"), "missing"))?;
            // In an image, a command with neither shell nor value runs the image's
            // entrypoint with its arguments (Mesos' docker runtime isolator).
            let line = if t.container.is_some()
                && !command.shell()
                && command.value.as_deref().unwrap_or("").is_empty()
            {
                String::new()
            } else {
                command_line(command, &format!("{path}.command"))?
            };
            let uris = uris_from_mesos(&command.uris, &format!("{path}.command.uris"))?;
            (line, uris, command.user.clone().unwrap_or_default(), None)
        }
    };
    let container = match &t.container {
        Some(c) => Some(container_from_mesos(
            c,
            task_command,
            executor.is_some(),
            &format!("{path}.container"),
        )?),
        None => None,
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
        container,
    })
}

/// A Mesos container of type MESOS with a DOCKER image; with an empty command, the
/// arguments of a non-shell command go after the image's entrypoint.
fn container_from_mesos(
    c: &mesos::ContainerInfo,
    command: Option<&mesos::CommandInfo>,
    has_executor: bool,
    path: &str,
) -> Result<pb::ContainerInfo, Status> {
    use mesos::container_info::Type;
    if c.r#type() != Type::Mesos {
        return Err(invalid(
            &format!("{path}.type"),
            "only MESOS containers (Mesos' unified containerizer) are supported by Agora",
        ));
    }
    if has_executor {
        return Err(invalid(
            path,
            "a container runs under the built-in command executor: not with an executor",
        ));
    }
    let image = c
        .mesos
        .as_ref()
        .and_then(|m| m.image.as_ref())
        .ok_or_else(|| invalid(&format!("{path}.mesos.image"), "missing"))?;
    if image.r#type() != mesos::image::Type::Docker {
        return Err(invalid(
            &format!("{path}.mesos.image.type"),
            "only DOCKER images are supported by Agora",
        ));
    }
    let name = image
        .docker
        .as_ref()
        .map(|d| d.name.clone())
        .ok_or_else(|| invalid(&format!("{path}.mesos.image.docker"), "missing"))?;
    let args = match command {
        Some(cmd) if !cmd.shell() && cmd.value.as_deref().unwrap_or("").is_empty() => {
            cmd.arguments.clone()
        }
        _ => Vec::new(),
    };
    let volumes = c
        .volumes
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let host_path = v.host_path.clone().ok_or_else(|| {
                invalid(
                    &format!("{path}.volumes[{i}].host_path"),
                    "missing: only host_path volumes are supported by Agora",
                )
            })?;
            Ok(pb::Volume {
                host_path,
                container_path: v.container_path.clone(),
                read_only: v.mode() == mesos::volume::Mode::Ro,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    // Any network of Mesos' (a CNI network, mesos-bridge) is a network of the
    // container's own here, reached through its port mappings.
    let mut port_mappings = Vec::new();
    for (i, n) in c.network_infos.iter().enumerate() {
        for (j, m) in n.port_mappings.iter().enumerate() {
            if m.protocol
                .as_deref()
                .is_some_and(|p| !p.eq_ignore_ascii_case("tcp"))
            {
                return Err(invalid(
                    &format!("{path}.network_infos[{i}].port_mappings[{j}].protocol"),
                    "only tcp ports are forwarded by Agora",
                ));
            }
            port_mappings.push(pb::PortMapping {
                host_port: m.host_port,
                container_port: m.container_port,
            });
        }
    }
    Ok(pb::ContainerInfo {
        image: name,
        args,
        force_pull: !image.cached(),
        framework_user: String::new(),
        volumes,
        network: if c.network_infos.is_empty() {
            pb::ContainerNetwork::Host as i32
        } else {
            pb::ContainerNetwork::Isolated as i32
        },
        port_mappings,
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
