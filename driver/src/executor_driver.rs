//! The executor side of the executor API, for a framework's own executors and for the
//! agent's built-in command executor.
//!
//! [`ExecutorDriver::from_env`] reads what the agent put in the executor's environment;
//! [`ExecutorDriver::run`] subscribes and dispatches events to an [`Executor`] until the
//! executor stops it. Status updates sent through an [`ExecutorHandle`] are delivered in
//! order, each retried until the agent has checkpointed it, across agent restarts (the
//! driver subscribes again, with backoff, whenever the agent goes away).

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_proto::v1 as pb;
use agora_proto::v1::executor_client::ExecutorClient;
use tokio::sync::{watch, Notify};
use tonic::transport::{Channel, Endpoint};

use crate::convert::{self, OutgoingUpdate};
use crate::{clock, TaskState};

/// Environment variables the agent sets for an executor.
pub const ENV_AGENT_ENDPOINT: &str = "AGORA_AGENT_ENDPOINT";
pub const ENV_FRAMEWORK_ID: &str = "AGORA_FRAMEWORK_ID";
pub const ENV_EXECUTOR_ID: &str = "AGORA_EXECUTOR_ID";
pub const ENV_SANDBOX: &str = "AGORA_SANDBOX";
/// How long an executor waits for its agent to come back, in milliseconds, before it
/// shuts down (Mesos' `MESOS_RECOVERY_TIMEOUT`).
pub const ENV_RECOVERY_TIMEOUT_MS: &str = "AGORA_RECOVERY_TIMEOUT_MS";
/// The default recovery timeout (15 minutes, as Mesos).
pub const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Why the executor driver cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorDriverError {
    #[error("environment variable {0} is not set (is this process started by an agent?)")]
    MissingEnv(&'static str),
    #[error("bad agent endpoint {0:?}")]
    BadEndpoint(String),
    #[error("AGORA_RECOVERY_TIMEOUT_MS: {0:?} is not a number of milliseconds")]
    BadRecoveryTimeout(String),
}

/// What an executor does with the agent's events. Callbacks run on the driver's task and
/// must not block: start work with `tokio::spawn` and report through the handle.
pub trait Executor: Send + 'static {
    /// Subscribed to the agent (again, after an agent restart).
    fn registered(&mut self, _handle: &ExecutorHandle, _agent_id: &str) {}
    /// Run this task.
    fn launch_task(&mut self, handle: &ExecutorHandle, task: pb::TaskInfo);
    /// Kill this task: SIGTERM, then SIGKILL after `grace`.
    fn kill_task(&mut self, handle: &ExecutorHandle, task_id: &str, grace: Duration);
    /// Kill every task within `grace`, then stop the driver.
    fn shutdown(&mut self, handle: &ExecutorHandle, grace: Duration);
    /// The master has recorded the update `uuid` of `task_id`.
    fn acknowledged(&mut self, _handle: &ExecutorHandle, _task_id: &str, _uuid: &str) {}
    /// Data from the framework's scheduler.
    fn framework_message(&mut self, _handle: &ExecutorHandle, _data: Vec<u8>) {}
}

struct Shared {
    endpoint: String,
    framework_id: String,
    executor_id: String,
    /// Updates not yet checkpointed by the agent, oldest first.
    outbox: Mutex<VecDeque<OutgoingUpdate>>,
    outbox_changed: Notify,
    /// Tasks launched and not yet terminal (reported when subscribing again).
    live: Mutex<BTreeSet<String>>,
    stop: watch::Sender<bool>,
}

/// Cloneable handle to send status updates and stop the driver.
#[derive(Clone)]
pub struct ExecutorHandle {
    shared: Arc<Shared>,
}

impl ExecutorHandle {
    /// Queues a status update for `task_id`; returns its uuid. Updates are delivered in
    /// the order they are sent.
    pub fn send_status_update(
        &self,
        task_id: &str,
        state: TaskState,
        message: &str,
        exit_code: Option<i32>,
    ) -> String {
        let uuid = uuid::Uuid::new_v4().to_string();
        {
            let mut live = self.shared.live.lock().unwrap_or_else(|p| p.into_inner());
            if state.is_terminal() {
                live.remove(task_id);
            } else {
                live.insert(task_id.to_string());
            }
        }
        self.shared
            .outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(OutgoingUpdate {
                uuid: uuid.clone(),
                task_id: task_id.to_string(),
                state,
                message: message.to_string(),
                exit_code,
                timestamp_ms: clock::now_ms(),
            });
        self.shared.outbox_changed.notify_one();
        uuid
    }

    /// Sends data to the framework's scheduler (best effort: not retried, may be lost).
    pub fn send_framework_message(&self, data: Vec<u8>) {
        let m = pb::FrameworkMessage {
            framework_id: self.shared.framework_id.clone(),
            agent_id: String::new(),
            executor_id: self.shared.executor_id.clone(),
            data,
        };
        let endpoint = self.shared.endpoint.clone();
        tokio::spawn(async move {
            if let Ok(ch) = Endpoint::from_shared(format!("http://{endpoint}")) {
                if let Err(status) = ExecutorClient::new(ch.connect_lazy()).send_message(m).await {
                    tracing::debug!(%status, "framework message not delivered");
                }
            }
        });
    }

    /// Updates not yet checkpointed by the agent.
    pub fn pending_updates(&self) -> usize {
        self.shared
            .outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Stops the driver once every queued update has been checkpointed by the agent.
    pub fn stop(&self) {
        let _ = self.shared.stop.send(true);
        self.shared.outbox_changed.notify_one();
    }

    pub fn framework_id(&self) -> &str {
        &self.shared.framework_id
    }

    pub fn executor_id(&self) -> &str {
        &self.shared.executor_id
    }
}

/// Connects an executor to its agent.
pub struct ExecutorDriver {
    endpoint: String,
    handle: ExecutorHandle,
    recovery_timeout: Duration,
}

impl ExecutorDriver {
    /// From the environment the agent set (`AGORA_AGENT_ENDPOINT`, `AGORA_FRAMEWORK_ID`,
    /// `AGORA_EXECUTOR_ID`).
    pub fn from_env() -> Result<ExecutorDriver, ExecutorDriverError> {
        let var = |name: &'static str| {
            std::env::var(name).map_err(|_| ExecutorDriverError::MissingEnv(name))
        };
        let driver = Self::new(
            &var(ENV_AGENT_ENDPOINT)?,
            &var(ENV_FRAMEWORK_ID)?,
            &var(ENV_EXECUTOR_ID)?,
        )?;
        Ok(match std::env::var(ENV_RECOVERY_TIMEOUT_MS) {
            Ok(ms) => driver.recovery_timeout(Duration::from_millis(
                ms.parse()
                    .map_err(|_| ExecutorDriverError::BadRecoveryTimeout(ms))?,
            )),
            Err(_) => driver,
        })
    }

    /// How long to wait for the agent to come back before shutting the executor down
    /// (its tasks are killed): the agent is gone for good, or its work dir was lost.
    pub fn recovery_timeout(mut self, timeout: Duration) -> Self {
        self.recovery_timeout = timeout;
        self
    }

    pub fn new(
        agent_endpoint: &str,
        framework_id: &str,
        executor_id: &str,
    ) -> Result<ExecutorDriver, ExecutorDriverError> {
        Endpoint::from_shared(format!("http://{agent_endpoint}"))
            .map_err(|_| ExecutorDriverError::BadEndpoint(agent_endpoint.to_string()))?;
        let (stop, _) = watch::channel(false);
        Ok(ExecutorDriver {
            recovery_timeout: DEFAULT_RECOVERY_TIMEOUT,
            endpoint: agent_endpoint.to_string(),
            handle: ExecutorHandle {
                shared: Arc::new(Shared {
                    endpoint: agent_endpoint.to_string(),
                    framework_id: framework_id.to_string(),
                    executor_id: executor_id.to_string(),
                    outbox: Mutex::new(VecDeque::new()),
                    outbox_changed: Notify::new(),
                    live: Mutex::new(BTreeSet::new()),
                    stop,
                }),
            },
        })
    }

    pub fn handle(&self) -> ExecutorHandle {
        self.handle.clone()
    }

    fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.endpoint))
            .expect("checked in new")
            .connect_timeout(Duration::from_millis(500))
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true)
            .connect_lazy()
    }

    /// Runs until the executor calls [`ExecutorHandle::stop`] and every update is
    /// checkpointed by the agent.
    pub async fn run<E: Executor>(self, mut executor: E) {
        let sender = tokio::spawn(deliver_updates(self.channel(), self.handle.clone()));
        let mut stop = self.handle.shared.stop.subscribe();
        let mut backoff = Duration::from_millis(100);
        let mut last_connected = std::time::Instant::now();
        loop {
            if *stop.borrow() {
                break;
            }
            if last_connected.elapsed() > self.recovery_timeout {
                tracing::warn!(
                    timeout = ?self.recovery_timeout,
                    "agent unreachable past the recovery timeout: shutting down"
                );
                executor.shutdown(&self.handle, Duration::ZERO);
                // Its updates can reach no one now.
                sender.abort();
                return;
            }
            let task_ids: Vec<String> = self
                .handle
                .shared
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect();
            let req = pb::ExecutorSubscribe {
                framework_id: self.handle.shared.framework_id.clone(),
                executor_id: self.handle.shared.executor_id.clone(),
                task_ids,
            };
            match ExecutorClient::new(self.channel()).subscribe(req).await {
                Ok(resp) => {
                    backoff = Duration::from_millis(100);
                    let mut events = resp.into_inner();
                    loop {
                        let event = tokio::select! {
                            e = events.message() => e,
                            _ = stop.wait_for(|s| *s) => break,
                        };
                        match event {
                            Ok(Some(e)) => self.dispatch(&mut executor, e),
                            Ok(None) => break,
                            Err(status) => {
                                tracing::info!(%status, "agent stream ended; subscribing again");
                                break;
                            }
                        }
                    }
                    // Connected until now: the recovery timeout counts from here.
                    last_connected = std::time::Instant::now();
                }
                Err(status) => tracing::debug!(%status, "agent not reachable yet"),
            }
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {},
                _ = stop.wait_for(|s| *s) => {},
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        let _ = sender.await;
    }

    fn dispatch<E: Executor>(&self, executor: &mut E, event: pb::ExecutorEvent) {
        let h = &self.handle;
        match event.kind {
            Some(pb::executor_event::Kind::Subscribed(s)) => executor.registered(h, &s.agent_id),
            Some(pb::executor_event::Kind::Launch(task)) => {
                h.shared
                    .live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(task.task_id.clone());
                executor.launch_task(h, task)
            }
            Some(pb::executor_event::Kind::Kill(k)) => {
                executor.kill_task(h, &k.task_id, Duration::from_millis(k.grace_period_ms))
            }
            Some(pb::executor_event::Kind::Shutdown(s)) => {
                executor.shutdown(h, Duration::from_millis(s.grace_period_ms))
            }
            Some(pb::executor_event::Kind::Acknowledged(a)) => {
                executor.acknowledged(h, &a.task_id, &a.uuid)
            }
            Some(pb::executor_event::Kind::Message(m)) => executor.framework_message(h, m.data),
            None => {}
        }
    }
}

/// Sends queued updates one at a time, oldest first, each retried until the agent
/// answers that it has checkpointed it; ends once stopped with an empty outbox.
async fn deliver_updates(channel: Channel, handle: ExecutorHandle) {
    let shared = handle.shared.clone();
    let mut client = ExecutorClient::new(channel);
    let mut backoff = Duration::from_millis(50);
    loop {
        let next = shared
            .outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .front()
            .cloned();
        let Some(update) = next else {
            if *shared.stop.borrow() {
                return;
            }
            shared.outbox_changed.notified().await;
            continue;
        };
        let req = pb::ExecutorUpdate {
            framework_id: shared.framework_id.clone(),
            executor_id: shared.executor_id.clone(),
            update: Some(convert::status_update_to_proto(
                &shared.framework_id,
                &update,
            )),
        };
        match client.update(req).await {
            Ok(_) => {
                let mut outbox = shared.outbox.lock().unwrap_or_else(|p| p.into_inner());
                if outbox.front().is_some_and(|u| u.uuid == update.uuid) {
                    outbox.pop_front();
                }
                backoff = Duration::from_millis(50);
            }
            Err(status) => {
                tracing::debug!(%status, task = %update.task_id, "update not checkpointed yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
