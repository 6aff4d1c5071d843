//! A custom executor built on `ExecutorDriver`: runs each task's command with `/bin/sh -c`
//! in its own process group, reports TASK_RUNNING and the terminal state, and echoes
//! framework messages back. A kill (or a shutdown, also the driver's when the agent has
//! been unreachable for the recovery timeout) SIGTERMs the task's process group and
//! SIGKILLs it after the grace. A framework uses it by setting `TaskInfo.executor.command`
//! to this binary's path; the agent starts it (in the task's cgroup).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_driver::executor_driver::Ended;
use agora_driver::{Executor, ExecutorDriver, ExecutorHandle, TaskState};
use agora_proto::v1 as pb;

/// Task id -> process group of its shell, while it runs.
type Groups = Arc<Mutex<BTreeMap<String, i32>>>;

#[derive(Default)]
struct ShellExecutor {
    running: Groups,
}

/// Signals process group `pgid` (never our own, init's or a broadcast).
fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) on the process group of a task this executor started.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

impl Executor for ShellExecutor {
    fn launch_task(&mut self, handle: &ExecutorHandle, task: pb::TaskInfo) {
        let handle = handle.clone();
        let running = self.running.clone();
        tokio::spawn(async move {
            let mut cmd = tokio::process::Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(&task.command)
                .envs(task.env.iter())
                .env("AGORA_CUSTOM_EXECUTOR", "shell_executor")
                .process_group(0);
            match cmd.spawn() {
                Ok(mut child) => {
                    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
                    if let Some(pgid) = pgid {
                        running
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(task.task_id.clone(), pgid);
                    }
                    handle.send_status_update(
                        &task.task_id,
                        TaskState::TaskRunning,
                        "run by shell_executor",
                        None,
                    );
                    let status = child.wait().await;
                    // What is left of its process group (background jobs) goes with it.
                    if let Some(pgid) = running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&task.task_id)
                    {
                        signal_group(pgid, libc::SIGKILL);
                    }
                    let (state, code) = match status {
                        Ok(s) if s.success() => (TaskState::TaskFinished, Some(0)),
                        Ok(s) => (TaskState::TaskFailed, s.code()),
                        Err(_) => (TaskState::TaskFailed, None),
                    };
                    handle.send_status_update(&task.task_id, state, "run by shell_executor", code);
                }
                Err(e) => {
                    handle.send_status_update(
                        &task.task_id,
                        TaskState::TaskFailed,
                        &e.to_string(),
                        None,
                    );
                }
            }
            handle.stop();
        });
    }

    /// SIGTERMs the task's process group, and SIGKILLs it after `grace` if its shell has
    /// not ended by then; its waiter then reports TASK_FAILED (killed by a signal), so the
    /// task's end is reported exactly once.
    fn kill_task(&mut self, _handle: &ExecutorHandle, task_id: &str, grace: Duration) {
        let Some(pgid) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(task_id)
            .copied()
        else {
            return;
        };
        signal_group(pgid, libc::SIGTERM);
        let running = self.running.clone();
        let task_id = task_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            // Still registered: its shell has not been reaped, so the group is still its.
            if running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&task_id)
                == Some(&pgid)
            {
                signal_group(pgid, libc::SIGKILL);
            }
        });
    }

    fn shutdown(&mut self, handle: &ExecutorHandle, grace: Duration) {
        let ids: Vec<String> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for id in ids {
            self.kill_task(handle, &id, grace);
        }
    }

    /// Echoes every message back to the scheduler, prefixed with "echo:".
    fn framework_message(&mut self, handle: &ExecutorHandle, data: Vec<u8>) {
        let mut reply = b"echo:".to_vec();
        reply.extend(data);
        handle.send_framework_message(reply);
    }
}

fn main() -> std::process::ExitCode {
    let driver = match ExecutorDriver::from_env() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("shell_executor: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shell_executor: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(driver.run(ShellExecutor::default())) {
        Ended::Stopped => std::process::ExitCode::SUCCESS,
        Ended::AgentLost => {
            eprintln!("shell_executor: agent unreachable for the recovery timeout; exiting");
            std::process::ExitCode::from(1)
        }
    }
}
