//! `agora-executor`: the agent's built-in command executor. The agent starts one per task,
//! in its own session; it subscribes to the agent through the executor API
//! (`agora_driver::ExecutorDriver`), runs the task's command under the supervisor (its own
//! process group and cgroup, output in the sandbox), reports TASK_STARTING, TASK_RUNNING and
//! the terminal state, and exits once the agent has checkpointed the last update. It
//! outlives the agent: if the agent is down it keeps supervising and keeps trying.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_agent::isolation::{Isolation, IsolationMode, Limits};
use agora_agent::supervisor::{self, KillHandle, TaskOutcome, TaskSpec};
use agora_agent::tasks::{cgroup_key, scalar};
use agora_driver::executor_driver::ENV_SANDBOX;
use agora_driver::{Executor, ExecutorDriver, ExecutorHandle, TaskState};
use agora_proto::v1 as pb;

/// Memory limit for a task that names no `mem` (it still runs in a cgroup).
const DEFAULT_MEM_MB: f64 = 32.0;

#[derive(Default)]
struct State {
    /// The task this executor runs, once launched.
    task_id: Option<String>,
    kill: Option<KillHandle>,
    /// Asked to kill before the task started.
    killed_early: bool,
}

struct CommandExecutor {
    isolation: Arc<Isolation>,
    sandbox: std::path::PathBuf,
    state: Arc<Mutex<State>>,
}

impl Executor for CommandExecutor {
    fn launch_task(&mut self, handle: &ExecutorHandle, task: pb::TaskInfo) {
        let handle = handle.clone();
        let isolation = self.isolation.clone();
        let sandbox = self.sandbox.clone();
        let state = self.state.clone();
        state.lock().unwrap_or_else(|p| p.into_inner()).task_id = Some(task.task_id.clone());
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
            let mut env: Vec<(String, String)> = task.env.clone().into_iter().collect();
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
            let spec = TaskSpec {
                command: task.command.clone(),
                env,
                sandbox,
                limits: Limits {
                    cpus: scalar(&resources, "cpus").max(0.01),
                    mem_bytes: (mem_mb * 1024.0 * 1024.0) as u64,
                },
            };
            if state.lock().unwrap_or_else(|p| p.into_inner()).killed_early {
                handle.send_status_update(
                    &id,
                    TaskState::TaskKilled,
                    "killed before it started",
                    None,
                );
                handle.stop();
                return;
            }
            let key = cgroup_key(handle.framework_id(), &id);
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
            state.lock().unwrap_or_else(|p| p.into_inner()).kill = Some(running.kill_handle());
            handle.send_status_update(&id, TaskState::TaskRunning, "", None);
            let outcome = running.wait().await;
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

    /// SIGTERM now, SIGKILL after `grace`; TASK_KILLING is reported meanwhile.
    fn kill_task(&mut self, handle: &ExecutorHandle, _task_id: &str, grace: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
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
            None => s.killed_early = true,
        }
    }

    fn shutdown(&mut self, handle: &ExecutorHandle, grace: Duration) {
        self.kill_task(handle, "", grace);
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let driver = match ExecutorDriver::from_env() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("agora-executor: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mode = match std::env::var("AGORA_ISOLATION").as_deref() {
        Ok("none") => IsolationMode::None,
        _ => IsolationMode::Cgroups,
    };
    // The agent's cgroup parent (its --cgroups-root), where this task's cgroup goes.
    let root = std::env::var("AGORA_CGROUPS_ROOT").unwrap_or_else(|_| "agora".into());
    let isolation = match Isolation::detect(mode, &root) {
        Ok(i) => Arc::new(i),
        Err(e) => {
            eprintln!("agora-executor: isolation: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let sandbox = std::env::var(ENV_SANDBOX)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::current_dir().unwrap_or_default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(driver.run(CommandExecutor {
        isolation,
        sandbox,
        state: Arc::new(Mutex::new(State::default())),
    }));
    std::process::ExitCode::SUCCESS
}
