//! A custom executor built on `ExecutorDriver`: runs each task's command with `/bin/sh -c`,
//! reports TASK_RUNNING and the terminal state, and echoes framework messages back. A framework uses it by setting
//! `TaskInfo.executor.command` to this binary's path; the agent starts it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_driver::{Executor, ExecutorDriver, ExecutorHandle, TaskState};
use agora_proto::v1 as pb;

#[derive(Default)]
struct ShellExecutor {
    /// (task id, pid) of every task started.
    children: Arc<Mutex<Vec<(String, u32)>>>,
}

impl Executor for ShellExecutor {
    fn launch_task(&mut self, handle: &ExecutorHandle, task: pb::TaskInfo) {
        let handle = handle.clone();
        let children = self.children.clone();
        tokio::spawn(async move {
            let mut cmd = tokio::process::Command::new("/bin/sh");
            cmd.arg("-c").arg(&task.command).envs(task.env.iter());
            cmd.env("AGORA_CUSTOM_EXECUTOR", "shell_executor");
            match cmd.spawn() {
                Ok(mut child) => {
                    if let Some(pid) = child.id() {
                        children.lock().unwrap().push((task.task_id.clone(), pid));
                    }
                    handle.send_status_update(
                        &task.task_id,
                        TaskState::TaskRunning,
                        "run by shell_executor",
                        None,
                    );
                    let (state, code) = match child.wait().await {
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

    /// SIGKILLs the task's shell; its waiter then reports TASK_FAILED (killed by a
    /// signal), so the task's end is reported exactly once.
    fn kill_task(&mut self, _handle: &ExecutorHandle, task_id: &str, _grace: Duration) {
        for (id, pid) in self.children.lock().unwrap().iter() {
            if id == task_id {
                // SAFETY: kill(2) on a child this executor started.
                unsafe {
                    libc::kill(*pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
    }

    fn shutdown(&mut self, handle: &ExecutorHandle, grace: Duration) {
        let ids: Vec<String> = self
            .children
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
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

fn main() {
    let driver = match ExecutorDriver::from_env() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("shell_executor: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(driver.run(ShellExecutor::default()));
}
