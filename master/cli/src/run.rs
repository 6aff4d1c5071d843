//! `agora run`: run one command as a task (like mesos-execute). Subscribes a framework,
//! accepts the first offer with enough resources, prints each state as it arrives, tears
//! the framework down, and exits with the task's exit status.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use agora_driver::{scalar, Scheduler, SchedulerDriver, SchedulerHandle, TaskState, TaskStatus};
use agora_proto::v1 as pb;

use crate::clock;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// CPUs for the task.
    #[arg(long, default_value_t = 0.1)]
    cpus: f64,
    /// Memory for the task, in MB (also its hard limit).
    #[arg(long, default_value_t = 32.0)]
    mem: f64,
    /// Task name (also the framework's).
    #[arg(long, default_value = "agora-run")]
    name: String,
    /// The framework's role ("*": unreserved resources only).
    #[arg(long, default_value = "*")]
    role: String,
    /// Run in a container from this image ([REGISTRY[:PORT]/]NAME[:TAG|@sha256:DIGEST]);
    /// the command after `--` then replaces the image's cmd (its entrypoint stays), as
    /// `docker run IMAGE CMD...`; with no command the image's own runs.
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    /// Pull the image even when the agent has it.
    #[arg(long, requires = "image")]
    force_pull: bool,
    /// The user the task runs as (in a container: looked up in the image; default the
    /// image's user, else nobody).
    #[arg(long)]
    user: Option<String>,
    /// Disk for the task, in MB.
    #[arg(long, default_value_t = 0.0)]
    disk: f64,
    /// A host port for the task, from its offer (repeatable): NAME is how the task finds
    /// it, in PORT_<NAME> (and PORT0, PORT1, ... in order, as Marathon sets them); on the
    /// host's network it may listen on its ports and no others. NAME:CONTAINER_PORT
    /// forwards the host port to that port of a container with an isolated network
    /// (PORT_<NAME> is then the container's port, HOST_PORT_<NAME> the host's).
    #[arg(long = "port", value_name = "NAME[:CONTAINER_PORT]")]
    ports: Vec<String>,
    /// The container's network: `host` (the host's, the default) or `isolated` (a network
    /// namespace of its own, only its loopback, reached through --port NAME:PORT).
    #[arg(long, value_parser = ["host", "isolated"], requires = "image")]
    network: Option<String>,
    /// A host directory in the container, as `docker run -v` (repeatable; the agent must
    /// allow it with --allowed-host-volumes).
    #[arg(
        long = "volume",
        short = 'v',
        value_name = "HOST_PATH:CONTAINER_PATH[:ro]",
        requires = "image"
    )]
    volumes: Vec<String>,
    /// How long to wait for an offer that can hold the task before giving up (exit 1),
    /// e.g. "30s", "5m"; default: no limit. Once launched, the task runs to its end.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<std::time::Duration>,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required_unless_present = "image")]
    command: Vec<String>,
}

/// How long `agora run` waits, after its task ended, for the rest of its output.
const OUTPUT_DRAIN: std::time::Duration = std::time::Duration::from_secs(15);

fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

struct Run {
    /// Set once the task is launched (ends the --timeout wait).
    launched_flag: Arc<std::sync::atomic::AtomicBool>,
    task_id: String,
    command: String,
    container: Option<pb::ContainerInfo>,
    user: String,
    cpus: f64,
    mem: f64,
    disk: f64,
    /// Names of the host ports it asks for, with the container port each goes to.
    ports: Vec<(String, Option<u16>)>,
    launched: bool,
    last_state: Option<TaskState>,
    /// The terminal status, once it arrives.
    result: Arc<Mutex<Option<TaskStatus>>>,
}

impl Scheduler for Run {
    fn registered(&mut self, _h: &SchedulerHandle, framework_id: &str) {
        eprintln!("framework {framework_id} subscribed; waiting for an offer");
    }

    fn resource_offers(&mut self, h: &SchedulerHandle, offers: Vec<pb::Offer>) {
        let mut decline = Vec::new();
        for offer in offers {
            if self.launched
                || scalar(&offer.resources, "cpus") < self.cpus
                || scalar(&offer.resources, "mem") < self.mem
                || scalar(&offer.resources, "disk") < self.disk
                || pick_ports(&offer.resources, self.ports.len()).is_none()
            {
                decline.push(offer.id);
                continue;
            }
            self.launched = true;
            self.launched_flag
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let mut resources = vec![
                pb::Resource {
                    name: "cpus".into(),
                    role: String::new(),
                    value: Some(pb::resource::Value::Scalar(self.cpus)),
                },
                pb::Resource {
                    name: "mem".into(),
                    role: String::new(),
                    value: Some(pb::resource::Value::Scalar(self.mem)),
                },
            ];
            let mut env = std::collections::HashMap::new();
            let mut container = self.container.clone();
            if let Some(ports) =
                pick_ports(&offer.resources, self.ports.len()).filter(|p| !p.is_empty())
            {
                for (i, ((name, inside), port)) in self.ports.iter().zip(&ports).enumerate() {
                    let upper = name.to_uppercase();
                    match (inside, container.as_mut()) {
                        (Some(inside), Some(c)) => {
                            c.port_mappings.push(pb::PortMapping {
                                host_port: *port as u32,
                                container_port: u32::from(*inside),
                            });
                            env.insert(format!("PORT_{upper}"), inside.to_string());
                            env.insert(format!("HOST_PORT_{upper}"), port.to_string());
                            env.insert(format!("PORT{i}"), inside.to_string());
                            eprintln!("port {name}: {port} -> {inside}");
                        }
                        _ => {
                            env.insert(format!("PORT_{upper}"), port.to_string());
                            env.insert(format!("PORT{i}"), port.to_string());
                            eprintln!("port {name}: {port}");
                        }
                    }
                }
                resources.push(pb::Resource {
                    name: "ports".into(),
                    role: String::new(),
                    value: Some(pb::resource::Value::Ranges(pb::Ranges {
                        range: ports
                            .iter()
                            .map(|p| pb::Range { begin: *p, end: *p })
                            .collect(),
                    })),
                });
            }
            if self.disk > 0.0 {
                resources.push(pb::Resource {
                    name: "disk".into(),
                    role: String::new(),
                    value: Some(pb::resource::Value::Scalar(self.disk)),
                });
            }
            eprintln!(
                "launching task {} on agent {} ({})",
                self.task_id, offer.agent_id, offer.hostname
            );
            h.accept(
                vec![offer.id],
                vec![pb::TaskInfo {
                    user: self.user.clone(),
                    task_id: self.task_id.clone(),
                    name: self.task_id.clone(),
                    resources,
                    command: self.command.clone(),
                    env,
                    executor: None,
                    container,
                    ..Default::default()
                }],
                Some(60.0),
            );
        }
        if !decline.is_empty() {
            h.decline(decline, Some(60.0));
        }
    }

    fn status_update(&mut self, h: &SchedulerHandle, status: TaskStatus) {
        // Updates are delivered at least once: print each state once.
        if status.task_id != self.task_id || self.last_state == Some(status.state) {
            return;
        }
        self.last_state = Some(status.state);
        // States go to stderr: stdout is the task's own output.
        if status.message.is_empty() {
            eprintln!("{} {}", status.task_id, status.state);
        } else {
            eprintln!("{} {}: {}", status.task_id, status.state, status.message);
        }
        if status.state.is_terminal() {
            *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
            h.stop();
        }
    }

    fn agent_lost(&mut self, _h: &SchedulerHandle, agent_id: &str) {
        eprintln!("agent {agent_id} lost");
    }

    fn error(&mut self, _h: &SchedulerHandle, message: &str) {
        eprintln!("agora: {message}");
    }
}

/// Runs the command as a task through `client`'s cluster.
pub async fn run(client: agora_driver::MasterClient, args: RunArgs) -> anyhow::Result<ExitCode> {
    for (flag, v) in [("--cpus", args.cpus), ("--mem", args.mem)] {
        if !v.is_finite() || v <= 0.0 {
            eprintln!("agora: {flag} must be a positive number, not {v}");
            return Ok(ExitCode::from(2));
        }
    }
    let mut ports = Vec::new();
    for text in &args.ports {
        let (name, inside) = match text.split_once(':') {
            Some((n, p)) => match p.parse::<u16>() {
                Ok(p) if p > 0 => (n, Some(p)),
                _ => {
                    eprintln!("agora: --port {text:?}: the container port is 1 to 65535");
                    return Ok(ExitCode::from(2));
                }
            },
            None => (text.as_str(), None),
        };
        if name.is_empty()
            || name.len() > 32
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            eprintln!("agora: --port {text:?}: a name of 1 to 32 letters, digits or '_'");
            return Ok(ExitCode::from(2));
        }
        ports.push((name.to_string(), inside));
    }
    let forwards = ports.iter().any(|(_, inside)| inside.is_some());
    let isolated = match args.network.as_deref() {
        Some("isolated") => true,
        Some(_) if forwards => {
            eprintln!("agora: --port NAME:CONTAINER_PORT needs --network isolated");
            return Ok(ExitCode::from(2));
        }
        Some(_) => false,
        None => forwards,
    };
    if forwards && args.image.is_none() {
        eprintln!("agora: --port NAME:CONTAINER_PORT needs --image");
        return Ok(ExitCode::from(2));
    }
    if isolated && ports.iter().any(|(_, inside)| inside.is_none()) {
        eprintln!("agora: with --network isolated every --port is NAME:CONTAINER_PORT");
        return Ok(ExitCode::from(2));
    }
    if !args.disk.is_finite() || args.disk < 0.0 {
        eprintln!("agora: --disk must be a number of MB, not {}", args.disk);
        return Ok(ExitCode::from(2));
    }
    // Say at once when no registered agent could ever hold the task.
    let wanted = agora_driver::feasibility::Wanted {
        cpus: args.cpus,
        mem: args.mem,
        disk: args.disk,
        ports: args.ports.len() as u64,
    };
    if let Ok(Some(why)) = client.shortfall(&wanted, &args.role).await {
        eprintln!("agora: no agent can ever hold this task: {why}");
        return Ok(ExitCode::from(2));
    }
    let framework = pb::FrameworkInfo {
        user: String::new(),
        id: String::new(),
        name: args.name.clone(),
        roles: vec![args.role.clone()],
        principal: String::new(),
        failover_timeout_seconds: 0.0,
        capabilities: vec![],
    };
    let sandbox_client = crate::logs::like(&client);
    let client = match agora_driver::MasterClient::with_security(
        client.masters().to_vec(),
        SchedulerDriver::retry_policy(),
        client.security().clone(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agora: --masters: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let driver = SchedulerDriver::with_client(client, framework);
    let handle = driver.handle();
    let result = Arc::new(Mutex::new(None));
    let task_id = format!("{}-{}", args.name, &uuid_suffix());
    let mut volumes = Vec::new();
    for v in &args.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (host, inside, read_only) = match parts.as_slice() {
            [h, c] => (h, c, false),
            [h, c, "ro"] => (h, c, true),
            [h, c, "rw"] => (h, c, false),
            _ => {
                eprintln!("agora: --volume {v:?}: HOST_PATH:CONTAINER_PATH[:ro]");
                return Ok(ExitCode::from(2));
            }
        };
        volumes.push(pb::Volume {
            host_path: host.to_string(),
            container_path: inside.to_string(),
            read_only,
        });
    }
    let (command, container) = match &args.image {
        Some(image) => (
            String::new(),
            Some(pb::ContainerInfo {
                image: image.clone(),
                args: args.command.clone(),
                force_pull: args.force_pull,
                framework_user: String::new(),
                volumes: volumes.clone(),
                network: if isolated {
                    pb::ContainerNetwork::Isolated as i32
                } else {
                    pb::ContainerNetwork::Host as i32
                },
                ..Default::default()
            }),
        ),
        None => (
            args.command
                .iter()
                .map(|a| quote(a))
                .collect::<Vec<_>>()
                .join(" "),
            None,
        ),
    };
    let launched = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(limit) = args.timeout {
        // No offer held it in time: the framework goes, and with it the wait.
        let (launched, handle) = (launched.clone(), handle.clone());
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            if !launched.load(std::sync::atomic::Ordering::SeqCst) {
                eprintln!(
                    "agora: no offer could hold the task within {}",
                    humantime::format_duration(limit)
                );
                handle.stop();
            }
        });
    }
    // The task's stdout and stderr, printed as it writes them (once it is launched).
    let streamer = {
        let (launched, handle, task_id) = (launched.clone(), handle.clone(), task_id.clone());
        let client = sandbox_client;
        tokio::spawn(async move {
            let framework = loop {
                if launched.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Some(f) = handle.framework_id() {
                        break f;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            };
            crate::logs::stream_task(client, task_id, framework.to_string()).await;
        })
    };
    let outcome = driver
        .run(Run {
            launched_flag: launched.clone(),
            task_id,
            command,
            container,
            user: args.user.clone().unwrap_or_default(),
            cpus: args.cpus,
            mem: args.mem,
            disk: args.disk,
            ports,
            launched: false,
            last_state: None,
            result: result.clone(),
        })
        .await;
    let status = result.lock().unwrap_or_else(|p| p.into_inner()).take();
    if status.is_some() && launched.load(std::sync::atomic::Ordering::SeqCst) {
        // What it wrote last, before its end was reported.
        if tokio::time::timeout(OUTPUT_DRAIN, streamer).await.is_err() {
            eprintln!("agora: the task's output was not all shown within {OUTPUT_DRAIN:?}");
        }
    } else {
        streamer.abort();
    }
    // The framework is done: remove it (its task is already terminal).
    if handle.framework_id().is_some() {
        let _ = handle.teardown().await;
    }
    if let Err(e) = outcome {
        return Err(e.into());
    }
    let code = match status {
        Some(s) if s.state == TaskState::TaskFinished => 0,
        Some(s) => s.exit_code.filter(|c| *c > 0 && *c < 256).unwrap_or(1),
        None => 1,
    };
    Ok(ExitCode::from(code as u8))
}

/// The `n` lowest ports of an offer, if it has that many.
fn pick_ports(resources: &[pb::Resource], n: usize) -> Option<Vec<u64>> {
    let mut out = Vec::with_capacity(n);
    for r in resources.iter().filter(|r| r.name == "ports") {
        if let Some(pb::resource::Value::Ranges(ranges)) = &r.value {
            for range in &ranges.range {
                let mut p = range.begin;
                while out.len() < n && p <= range.end {
                    out.push(p);
                    p += 1;
                }
            }
        }
    }
    out.sort_unstable();
    (out.len() == n).then_some(out)
}

fn uuid_suffix() -> String {
    let nanos = clock::since_epoch().subsec_nanos();
    format!("{:08x}{:04x}", nanos, std::process::id() & 0xffff)
}
