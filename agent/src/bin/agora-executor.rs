//! `agora-executor`: the agent's built-in command executor. The agent starts one per task,
//! in its own session; it subscribes to the agent through the executor API
//! (`agora_driver::ExecutorDriver`), runs the task's command under the supervisor (its own
//! process group and cgroup, output in the sandbox), reports TASK_STARTING, TASK_RUNNING and
//! the terminal state, removes the task's cgroup once the task has exited, and exits once
//! the agent has checkpointed the last update. It outlives the agent: if the agent is down
//! it keeps supervising and keeps trying, for `AGORA_RECOVERY_TIMEOUT_MS` at most; then it
//! kills the task (SIGTERM to its process group, SIGKILL after a short grace), removes its
//! cgroup and exits (status 1).
//!
//! `agora-executor --custom-executor COMMAND` instead runs a framework's own executor,
//! `/bin/sh -c COMMAND`, in the task's cgroup (which the agent created), with the same
//! environment. It stays outside the cgroup, waits for the executor to exit (the executor
//! dies with it: parent-death signal), then kills whatever is left in the cgroup, removes
//! it and exits with the executor's status.
//!
//! Users: both stay with the agent's user (they create and remove the task's cgroups) and
//! run the task, or the framework's executor, as the task's user (`TaskInfo.user`;
//! `AGORA_TASK_USER` for the wrapper), switched after it joined its cgroups. The built-in
//! executor keeps its executor token (`AGORA_EXECUTOR_TOKEN`) to itself: it is gone from
//! its environment before the task starts. A framework's own executor gets it (it talks
//! to the agent with it).

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_agent::fetch;
use agora_agent::isolation::{
    join_cgroups_from_child, Isolation, IsolationMode, Limits, TaskCgroup,
};
use agora_agent::supervisor::{self, KillHandle, TaskOutcome, TaskSpec};
use agora_agent::tasks::{
    cgroup_key, scalar, CUSTOM_EXECUTOR_FLAG, ENV_CHECKED_PORTS, ENV_FETCH_FAILURE, ENV_FETCH_URIS,
    ENV_MAX_TASK_PIDS, ENV_TASK_RESOURCES, ENV_TASK_USER,
};
use agora_driver::executor_driver::{
    Ended, ENV_EXECUTOR_ID, ENV_EXECUTOR_TOKEN, ENV_FRAMEWORK_ID, ENV_SANDBOX,
};
use agora_driver::{Executor, ExecutorDriver, ExecutorHandle, TaskState};
use agora_proto::v1 as pb;

/// Memory limit for a task that names no `mem` (it still runs in a cgroup).
const DEFAULT_MEM_MB: f64 = 32.0;

#[derive(Default)]
struct State {
    /// The task this executor runs, once launched.
    task_id: Option<String>,
    /// Kills the task while it runs (`None` before it starts and once it has ended).
    kill: Option<KillHandle>,
    /// Asked to kill (with this grace) before the task started.
    killed_early: Option<Duration>,
    /// The task's cgroup while the task runs, removed again here at exit if the task's
    /// waiter could not finish (the driver gave up on the agent).
    cgroup: Option<TaskCgroup>,
    /// The task's container directory (upper layer, bundle), removed at exit.
    container_dir: Option<std::path::PathBuf>,
    /// An isolated container's network namespace (removed when dropped) and the
    /// forwarder of its host ports (stopped when dropped).
    netns: Option<agora_agent::image::network::Netns>,
    forwarder: Option<agora_agent::image::network::Forwarder>,
}

struct CommandExecutor {
    isolation: Arc<Isolation>,
    sandbox: std::path::PathBuf,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Executor for CommandExecutor {
    fn launch_task(&mut self, handle: &ExecutorHandle, task: pb::TaskInfo) {
        let handle = handle.clone();
        let isolation = self.isolation.clone();
        let sandbox = self.sandbox.clone();
        let state = self.state.clone();
        lock(&state).task_id = Some(task.task_id.clone());
        tokio::spawn(async move {
            let id = task.task_id.clone();
            handle.send_status_update(&id, TaskState::TaskStarting, "", None);
            let resources = match agora_agent::convert::resources_from_proto(&task.resources) {
                Ok(r) => r,
                Err(e) => {
                    handle.send_status_update(&id, TaskState::TaskError, &e, None);
                    handle.stop();
                    return;
                }
            };
            let mem_mb = match scalar(&resources, "mem") {
                m if m > 0.0 => m,
                _ => DEFAULT_MEM_MB,
            };
            // Mesos' environment of a command task first (what Mesos' command executor
            // gives its task), then the task's own variables, which may override them.
            let agent_id = std::env::var("AGORA_AGENT_ID").unwrap_or_default();
            let sandbox_text = sandbox.display().to_string();
            let mut env: Vec<(String, String)> = [
                ("MESOS_SANDBOX", sandbox_text.as_str()),
                ("MESOS_DIRECTORY", sandbox_text.as_str()),
                ("MESOS_TASK_ID", id.as_str()),
                ("MESOS_FRAMEWORK_ID", handle.framework_id()),
                ("MESOS_AGENT_ID", agent_id.as_str()),
                ("MESOS_SLAVE_ID", agent_id.as_str()),
                ("MESOS_EXECUTOR_ID", id.as_str()),
                ("MESOS_CHECKPOINT", "1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let mut task_env: Vec<(String, String)> = task.env.clone().into_iter().collect();
            task_env.sort();
            env.extend(task_env);
            env.extend([
                ("AGORA_TASK_ID".to_string(), id.clone()),
                (
                    "AGORA_FRAMEWORK_ID".to_string(),
                    handle.framework_id().to_string(),
                ),
                (
                    "AGORA_AGENT_ID".to_string(),
                    std::env::var("AGORA_AGENT_ID").unwrap_or_default(),
                ),
                (ENV_SANDBOX.to_string(), sandbox.display().to_string()),
            ]);
            let container = task
                .container
                .as_ref()
                .map(agora_agent::convert::container_from_proto);
            // The agent checked the user before it started this executor; it may have gone
            // since. A container's user is the image's business (looked up in it below).
            let user = match &container {
                Some(_) => None,
                None => match agora_agent::user::plan(&task.user) {
                    Ok(user) => user,
                    Err(e) => {
                        handle.send_status_update(&id, TaskState::TaskFailed, &e.to_string(), None);
                        handle.stop();
                        return;
                    }
                },
            };
            // The files the task needs, fetched as its user before it starts (a
            // container's are handed to its user with the sandbox).
            let uris = agora_agent::convert::fetch_uris_from_proto(&task.uris);
            if !uris.is_empty() {
                let (dir, as_user) = (sandbox.clone(), user.clone());
                let fetched = tokio::task::spawn_blocking(move || {
                    fetch::fetch_all(&uris, &dir, as_user.as_ref())
                })
                .await;
                match fetched {
                    Ok(Ok(files)) => tracing::info!(task = %id, files = files.len(), "fetched"),
                    Ok(Err(e)) => {
                        tracing::warn!(task = %id, error = %e, "fetch failed");
                        handle.send_status_update(&id, TaskState::TaskFailed, &e.to_string(), None);
                        handle.stop();
                        return;
                    }
                    Err(e) => {
                        handle.send_status_update(
                            &id,
                            TaskState::TaskFailed,
                            &format!("fetcher: {e}"),
                            None,
                        );
                        handle.stop();
                        return;
                    }
                }
            }
            let key = cgroup_key(handle.framework_id(), &id);
            let launch = match &container {
                None => None,
                Some(c) => {
                    let started = std::time::Instant::now();
                    match containers::prepare(&key, c, &task, &env, &sandbox).await {
                        Ok((launch, netns)) => {
                            tracing::info!(task = %id, image = %c.image,
                                elapsed_ms = started.elapsed().as_millis() as u64,
                                "container prepared");
                            let mut s = lock(&state);
                            s.container_dir = Some(launch.bundle.clone());
                            s.netns = netns;
                            Some(launch)
                        }
                        Err(e) => {
                            tracing::warn!(task = %id, image = %c.image, error = %e,
                                "container not started");
                            handle.send_status_update(&id, TaskState::TaskFailed, &e, None);
                            handle.stop();
                            return;
                        }
                    }
                }
            };
            let pids_max = std::env::var(ENV_MAX_TASK_PIDS)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|n| *n > 0);
            let isolated = container.as_ref().is_some_and(|c| c.isolated_network);
            let enforce = enforcement(&resources, pids_max, &sandbox, launch.as_ref(), isolated);
            let spec = TaskSpec {
                command: task.command.clone(),
                env,
                sandbox,
                limits: Limits {
                    cpus: scalar(&resources, "cpus").max(0.01),
                    mem_bytes: (mem_mb * 1024.0 * 1024.0) as u64,
                    pids_max,
                },
                user,
                container: launch,
                enforce,
                output: output_rotation(),
            };
            if lock(&state).killed_early.is_some() {
                handle.send_status_update(
                    &id,
                    TaskState::TaskKilled,
                    "killed before it started",
                    None,
                );
                handle.stop();
                return;
            }
            let running = match supervisor::start(&spec, &isolation, &key).await {
                Ok(r) => r,
                Err(e) => {
                    handle.send_status_update(
                        &id,
                        TaskState::TaskFailed,
                        &format!("cannot start the task: {e}"),
                        None,
                    );
                    handle.stop();
                    return;
                }
            };
            {
                let mut s = lock(&state);
                s.kill = Some(running.kill_handle());
                s.cgroup = running.cgroup().cloned();
                // A kill that came while the task was starting.
                if let Some(grace) = s.killed_early {
                    running.kill_handle().kill(grace);
                }
            }
            // An isolated container's host ports, forwarded into it while it runs.
            let mappings = container
                .as_ref()
                .map(|c| c.port_mappings.clone())
                .unwrap_or_default();
            if !mappings.is_empty() {
                let netns_path = lock(&state).netns.as_ref().map(|n| n.path());
                if let Some(path) = netns_path {
                    match agora_agent::image::network::Forwarder::start_in(path, &mappings).await {
                        Ok(f) => lock(&state).forwarder = Some(f),
                        Err(e) => {
                            running.kill_handle().kill(Duration::ZERO);
                            let _ = running.wait().await;
                            handle.send_status_update(
                                &id,
                                TaskState::TaskFailed,
                                &format!("cannot forward its ports: {e}"),
                                None,
                            );
                            handle.stop();
                            return;
                        }
                    }
                }
            }
            handle.send_status_update(&id, TaskState::TaskRunning, "", None);
            // Kills what is left of the task and removes its cgroup once it has exited.
            let outcome = running.wait().await;
            {
                // Ended: nothing left to kill or remove; its ports and network go.
                let mut s = lock(&state);
                s.cgroup = None;
                s.kill = None;
                s.forwarder = None;
                s.netns = None;
            }
            let (state_name, code) = match &outcome {
                TaskOutcome::Exited { code: 0 } => (TaskState::TaskFinished, Some(0)),
                TaskOutcome::Exited { code } => (TaskState::TaskFailed, Some(*code)),
                TaskOutcome::Killed => (TaskState::TaskKilled, None),
                _ => (TaskState::TaskFailed, None),
            };
            handle.send_status_update(&id, state_name, &outcome.message(), code);
            handle.stop();
        });
    }

    /// SIGTERM now, SIGKILL after `grace`; TASK_KILLING is reported meanwhile. A task
    /// that has ended is left alone; one not started yet never starts.
    fn kill_task(&mut self, handle: &ExecutorHandle, _task_id: &str, grace: Duration) {
        let mut s = lock(&self.state);
        match &s.kill {
            Some(k) => {
                if let Some(id) = &s.task_id {
                    handle.send_status_update(
                        id,
                        TaskState::TaskKilling,
                        &format!("SIGTERM, then SIGKILL after {grace:?}"),
                        None,
                    );
                }
                k.kill(grace)
            }
            None => s.killed_early = Some(grace),
        }
    }

    fn shutdown(&mut self, handle: &ExecutorHandle, grace: Duration) {
        self.kill_task(handle, "", grace);
    }
}

/// What the task may not go past besides cpu and memory: its processes, the disk its
/// sandbox (and its container's writable layer) hold against its `disk` resource, the
/// ports it listens on against its `ports` resource.
fn enforcement(
    resources: &agora_registry::Resources,
    pids_max: Option<u64>,
    sandbox: &std::path::Path,
    container: Option<&agora_agent::supervisor::ContainerLaunch>,
    isolated_network: bool,
) -> agora_agent::enforce::Enforcement {
    let disk_mb = scalar(resources, "disk");
    let disk = (disk_mb > 0.0).then(|| agora_agent::enforce::DiskLimit {
        bytes: (disk_mb * 1024.0 * 1024.0) as u64,
        paths: std::iter::once(sandbox.to_path_buf())
            .chain(
                container
                    .map(|c| c.bundle.join("upper"))
                    .filter(|upper| upper.is_dir()),
            )
            .collect(),
    });
    let ports = agora_agent::tasks::ranges(resources, "ports");
    // With --check-agent-port-range-only, the agent's own port ranges.
    let checked_ports = std::env::var(ENV_CHECKED_PORTS)
        .ok()
        .and_then(|v| serde_json::from_str::<Vec<(u64, u64)>>(&v).ok());
    agora_agent::enforce::Enforcement {
        pids_max,
        disk,
        // In a network of its own a task listens where it likes: only the host ports
        // forwarded to it reach it.
        ports: (!isolated_network).then_some(ports),
        checked_ports,
    }
}

fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

/// The rotation of tasks' output the agent named (`AGORA_OUTPUT_MAX_SIZE`,
/// `AGORA_OUTPUT_ROTATIONS`; absent: the default).
fn output_rotation() -> agora_agent::supervisor::OutputRotation {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let default = agora_agent::supervisor::OutputRotation::default();
    agora_agent::supervisor::OutputRotation {
        max_bytes: var(agora_agent::tasks::ENV_OUTPUT_MAX_SIZE).unwrap_or(default.max_bytes),
        keep: var(agora_agent::tasks::ENV_OUTPUT_ROTATIONS)
            .map(|k| k.min(1000) as u32)
            .unwrap_or(default.keep),
    }
}

/// The isolation the agent named (`AGORA_ISOLATION`, `AGORA_CGROUPS_ROOT`).
fn isolation_from_env() -> Result<Isolation, agora_agent::isolation::IsolationError> {
    let mode = match std::env::var("AGORA_ISOLATION").as_deref() {
        Ok("none") => IsolationMode::None,
        _ => IsolationMode::Cgroups,
    };
    // The agent's cgroup parent (its --cgroups-root), where this task's cgroup goes.
    let root = std::env::var("AGORA_CGROUPS_ROOT").unwrap_or_else(|_| "agora".into());
    Isolation::detect(mode, &root)
}

fn main() -> ExitCode {
    init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => run_command_executor(),
        [flag, command] if flag == CUSTOM_EXECUTOR_FLAG => run_custom_executor(command),
        _ => {
            eprintln!(
                "agora-executor: unexpected arguments {args:?} (none, or {CUSTOM_EXECUTOR_FLAG} COMMAND)"
            );
            ExitCode::from(2)
        }
    }
}

/// The built-in command executor.
fn run_command_executor() -> ExitCode {
    let driver = match ExecutorDriver::from_env() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("agora-executor: {e}");
            return ExitCode::from(2);
        }
    };
    // The driver has the token; the task, which inherits this environment, must not.
    // Nor the registry credentials among the image settings, read here once.
    // (Still one thread here: the runtime starts below.)
    std::env::remove_var(ENV_EXECUTOR_TOKEN);
    containers::read_settings();
    let isolation = match isolation_from_env() {
        Ok(i) => Arc::new(i),
        Err(e) => {
            eprintln!("agora-executor: isolation: {e}");
            return ExitCode::from(1);
        }
    };
    let sandbox = std::env::var(ENV_SANDBOX)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::current_dir().unwrap_or_default());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("agora-executor: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let state = Arc::new(Mutex::new(State::default()));
    let ended = runtime.block_on(driver.run(CommandExecutor {
        isolation,
        sandbox,
        state: state.clone(),
    }));
    // Dropping the runtime drops a task still being waited for, which SIGKILLs its
    // process group; its cgroup is removed here, before the process exits.
    drop(runtime);
    if let Some(cgroup) = lock(&state).cgroup.take() {
        match cgroup.destroy() {
            Ok(()) => tracing::info!(task_key = cgroup.key(), "removed the task's cgroup"),
            Err(e) => tracing::error!(error = %e, "cannot remove the task's cgroup"),
        }
    }
    if let Some(dir) = lock(&state).container_dir.take() {
        containers::remove(&dir);
    }
    let (forwarder, netns) = {
        let mut s = lock(&state);
        (s.forwarder.take(), s.netns.take())
    };
    drop(forwarder);
    drop(netns);
    match ended {
        Ended::Stopped => ExitCode::SUCCESS,
        Ended::AgentLost => ExitCode::from(1),
    }
}

/// Runs a framework's own executor in the task's cgroup and removes the cgroup once it
/// has exited.
fn run_custom_executor(command: &str) -> ExitCode {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let key = cgroup_key(&var(ENV_FRAMEWORK_ID), &var(ENV_EXECUTOR_ID));
    let isolation = match isolation_from_env() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("agora-executor: isolation: {e}");
            return ExitCode::from(1);
        }
    };
    let cgroup = isolation.recover(&key);
    if isolation.kind() != "none" && cgroup.is_none() {
        eprintln!(
            "agora-executor: the task's cgroup {key} does not exist under {}",
            isolation.root_name()
        );
        return ExitCode::from(1);
    }
    let procs = cgroup
        .as_ref()
        .map(TaskCgroup::procs_paths)
        .unwrap_or_default();
    // The user the framework's executor runs as (the agent checked it before it started
    // this wrapper; it may have gone since).
    let user = match agora_agent::user::plan(&var(ENV_TASK_USER)) {
        Ok(user) => user,
        Err(e) => {
            eprintln!("agora-executor: {e}");
            if let Some(cgroup) = cgroup {
                if let Err(e) = cgroup.destroy() {
                    tracing::error!(error = %e, "cannot remove the task's cgroup");
                }
            }
            return ExitCode::from(1);
        }
    };
    // The executor's files, fetched as its user before it starts; a failure is left for
    // the agent, which fails the task with it.
    if let Ok(json) = std::env::var(ENV_FETCH_URIS) {
        let sandbox = std::env::var_os(ENV_SANDBOX)
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
        let fetched = serde_json::from_str::<Vec<fetch::FetchUri>>(&json)
            .map_err(|e| format!("{ENV_FETCH_URIS}: {e}"))
            .and_then(|uris| {
                fetch::fetch_all(&uris, &sandbox, user.as_ref()).map_err(|e| e.to_string())
            });
        if let Err(reason) = fetched {
            eprintln!("agora-executor: {reason}");
            if let Some(path) = std::env::var_os(ENV_FETCH_FAILURE) {
                if let Err(e) = std::fs::write(&path, &reason) {
                    tracing::error!(error = %e, "cannot leave the fetch failure for the agent");
                }
            }
            if let Some(cgroup) = cgroup {
                if let Err(e) = cgroup.destroy() {
                    tracing::error!(error = %e, "cannot remove the task's cgroup");
                }
            }
            return ExitCode::from(1);
        }
    }
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(command);
    if let Some(user) = &user {
        let home = std::env::var_os(ENV_SANDBOX)
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
        cmd.envs(user.env(&home));
    }
    // SAFETY: the hook runs in the forked child before exec and only makes
    // async-signal-safe calls (join_cgroups_from_child's getpid/open/write/close, on paths
    // allocated before the fork; setgroups/setgid/setuid on groups allocated before it;
    // prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            // Joining the cgroups needs this process's privileges, which the switch to the
            // task's user gives up.
            join_cgroups_from_child(&procs)?;
            if let Some(user) = &user {
                user.switch_in_child()?;
            }
            // The executor dies with this process, so it never runs unwatched. (Set after
            // the switch: a change of user clears it.)
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    // Watched while it runs as a task of the built-in executor is: an executor (or its
    // task) past its pids limit, its disk or its ports is killed, and the reason left for
    // the agent, which fails the task with it.
    let pids_max = std::env::var(ENV_MAX_TASK_PIDS)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|n| *n > 0);
    let sandbox = std::env::var_os(ENV_SANDBOX)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
    let resources = agora_registry::Resources::parse(&var(ENV_TASK_RESOURCES)).unwrap_or_default();
    let rules = enforcement(&resources, pids_max, &sandbox, None, false);
    let status = cmd.spawn().and_then(|mut child| {
        tracing::info!(pid = child.id(), task_key = %key, "custom executor started");
        let mut ticks = 0u32;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            ticks = ticks.wrapping_add(1);
            let disk = ticks.is_multiple_of(agora_agent::supervisor::DISK_CHECK_EVERY);
            if let Some(cg) = &cgroup {
                if let Some(reason) = agora_agent::enforce::violation(&rules, cg, disk) {
                    tracing::warn!(task_key = %key, %reason, "killing the custom executor");
                    if let Some(path) = std::env::var_os(ENV_FETCH_FAILURE) {
                        let _ = std::fs::write(&path, &reason);
                    }
                    cg.kill_all();
                    let _ = child.kill();
                    return child.wait();
                }
            }
            std::thread::sleep(agora_agent::supervisor::ENFORCE_INTERVAL);
        }
    });
    let code = match &status {
        Ok(s) => {
            tracing::info!(status = %s, "custom executor exited");
            s.code()
                .or_else(|| s.signal().map(|sig| 128 + sig))
                .unwrap_or(1)
        }
        Err(e) => {
            tracing::error!(error = %e, command, "cannot run the custom executor");
            1
        }
    };
    if let Some(cgroup) = cgroup {
        match cgroup.destroy() {
            Ok(()) => tracing::info!(task_key = %key, "removed the task's cgroup"),
            Err(e) => tracing::error!(error = %e, "cannot remove the task's cgroup"),
        }
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The built-in executor's containers: the image provided from the agent's store, the
/// container prepared in the agent's containers directory, handed to the supervisor.
mod containers {
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    use agora_agent::image::container;
    use agora_agent::image::network::Netns;
    use agora_agent::image::store::Store;
    use agora_agent::image::{ContainerSpec, ImageSettings};
    use agora_agent::supervisor::ContainerLaunch;
    use agora_proto::v1 as pb;

    static SETTINGS: OnceLock<Result<ImageSettings, String>> = OnceLock::new();

    /// Reads the agent's image settings from the environment and removes them from it
    /// (they may hold registry credentials). Call while the process has one thread.
    pub fn read_settings() {
        let _ = SETTINGS.set(ImageSettings::from_env());
        std::env::remove_var(agora_agent::image::ENV_IMAGE_SETTINGS);
    }

    /// The task's container, ready to start: its image provided (pulled unless the store
    /// has it), its root filesystem and bundle prepared, its sandbox its user's.
    pub async fn prepare(
        key: &str,
        spec: &ContainerSpec,
        task: &pb::TaskInfo,
        env: &[(String, String)],
        sandbox: &Path,
    ) -> Result<(ContainerLaunch, Option<Netns>), String> {
        let settings = SETTINGS
            .get()
            .cloned()
            .unwrap_or_else(|| Err("image settings not read".into()))?;
        let store = Store::open(&settings).map_err(|e| e.to_string())?;
        let image = store
            .provide(&spec.image, spec.force_pull)
            .await
            .map_err(|e| e.to_string())?;
        for hex in &image.layer_digests {
            store.touch(hex);
        }
        // Paths of the host mean nothing inside: the sandbox is at /mnt/mesos/sandbox.
        let inside = agora_image::process::SANDBOX_IN_CONTAINER;
        let host_sandbox = sandbox.display().to_string();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| {
                let v = if *v == host_sandbox {
                    inside.to_string()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect();
        let allowed = settings.allowed_host_volumes.clone();
        let backend = settings.rootfs_backend;
        let netns = if spec.isolated_network {
            let key = key.to_string();
            Some(
                tokio::task::spawn_blocking(move || Netns::create(&key))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        let network = match &netns {
            Some(n) => agora_image::bundle::Network::Joined(n.path().display().to_string()),
            None => agora_image::bundle::Network::Host,
        };
        let (dir, key_owned, spec_owned, command, user, sandbox_owned) = (
            settings.containers_dir.clone(),
            key.to_string(),
            spec.clone(),
            task.command.clone(),
            task.user.clone(),
            sandbox.to_path_buf(),
        );
        let prepared = tokio::task::spawn_blocking(move || {
            let p = container::prepare(
                &dir,
                &allowed,
                backend,
                network,
                &key_owned,
                &image,
                &spec_owned,
                &command,
                &env,
                &user,
                &sandbox_owned,
            )?;
            hand_over(&sandbox_owned, p.uid, p.gid);
            Ok::<_, container::ContainerError>(p)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let state_root = settings.containers_dir.join(".runtime");
        // Left by an executor that died with its container: the runtime refuses the id.
        if state_root.join(&prepared.id).exists() {
            let _ = tokio::process::Command::new(&settings.runtime)
                .arg("--root")
                .arg(&state_root)
                .args(["delete", "-f", &prepared.id])
                .status()
                .await;
        }
        Ok((
            ContainerLaunch {
                runtime: settings.runtime.clone(),
                state_root,
                bundle: prepared.bundle,
                id: prepared.id,
                rootfs: prepared.rootfs,
                overlay_options: prepared.overlay_options,
            },
            netns,
        ))
    }

    /// Everything in the sandbox (fetched files) is the container user's.
    fn hand_over(dir: &Path, uid: u32, gid: u32) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path: PathBuf = e.path();
            let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                hand_over(&path, uid, gid);
            }
        }
    }

    /// Removes a container's directory once its task has ended.
    pub fn remove(dir: &Path) {
        container::remove(dir);
    }
}
