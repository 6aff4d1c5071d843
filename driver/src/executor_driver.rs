//! The executor side of the executor API, for a framework's own executors and for the
//! agent's built-in command executor.
//!
//! [`ExecutorDriver::from_env`] reads what the agent put in the executor's environment;
//! [`ExecutorDriver::run`] subscribes and dispatches events to an [`Executor`] until the
//! executor stops it. Status updates sent through an [`ExecutorHandle`] are delivered in
//! order, each retried until the agent has checkpointed it, across agent restarts (the
//! driver subscribes again, with backoff, whenever the agent goes away).
//!
//! Every wait is bounded by the recovery timeout (`AGORA_RECOVERY_TIMEOUT_MS`, Mesos'
//! `MESOS_RECOVERY_TIMEOUT`): once the agent has not been reached for that long (no open
//! subscription, no update checkpointed), whatever the driver is waiting for (to subscribe,
//! to deliver updates), it asks the executor to shut down (kill its tasks within
//! [`AGENT_LOST_KILL_GRACE`]), waits at most a little longer for the tasks to end, and
//! returns [`Ended::AgentLost`]. An agent back within the timeout gets every update.
//!
//! Every call to the agent carries the executor's token (`AGORA_EXECUTOR_TOKEN`, which the
//! agent generated for this executor alone) as gRPC metadata `authorization: Bearer
//! <token>`; the agent refuses calls without it, and calls naming another executor's
//! framework, executor or task. The token is sent as a sensitive header value and never
//! logged. When the agent serves TLS, it gives its executors the CA that signs its
//! certificate (`AGORA_AGENT_CA_PEM`, the PEM text itself, so an executor running as
//! another user needs no access to the agent's files) and the driver speaks TLS to it.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_proto::v1 as pb;
use agora_proto::v1::executor_client::ExecutorClient;
use agora_security::client::ClientSecurity;
use agora_security::tls::ClientTls;
use tokio::sync::{watch, Notify};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::convert::{self, OutgoingUpdate};
use crate::{clock, TaskState};

/// Environment variables the agent sets for an executor.
pub const ENV_AGENT_ENDPOINT: &str = "AGORA_AGENT_ENDPOINT";
pub const ENV_FRAMEWORK_ID: &str = "AGORA_FRAMEWORK_ID";
pub const ENV_EXECUTOR_ID: &str = "AGORA_EXECUTOR_ID";
pub const ENV_SANDBOX: &str = "AGORA_SANDBOX";
/// The executor's secret for the executor API: 64 hex digits the agent generated for this
/// executor, sent on every call as `authorization: Bearer <token>`.
pub const ENV_EXECUTOR_TOKEN: &str = "AGORA_EXECUTOR_TOKEN";
/// The CA (PEM text) that signs the agent's certificate, set when the agent serves TLS:
/// the driver then speaks TLS to the agent and checks its certificate.
pub const ENV_AGENT_CA_PEM: &str = "AGORA_AGENT_CA_PEM";
/// How long an executor waits for its agent to come back, in milliseconds, before it
/// shuts down (Mesos' `MESOS_RECOVERY_TIMEOUT`).
pub const ENV_RECOVERY_TIMEOUT_MS: &str = "AGORA_RECOVERY_TIMEOUT_MS";
/// The default recovery timeout (15 minutes, as Mesos).
pub const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The grace between SIGTERM and SIGKILL an executor is given to kill its tasks when its
/// agent has been unreachable for the recovery timeout (no one is left to wait for).
pub const AGENT_LOST_KILL_GRACE: Duration = Duration::from_millis(500);
/// How much longer than [`AGENT_LOST_KILL_GRACE`] the driver waits for the executor's
/// tasks to end before it returns anyway: [`ExecutorDriver::run`] returns at most
/// `recovery timeout + 900 ms` after the agent was last reached.
const AGENT_LOST_MARGIN: Duration = Duration::from_millis(400);

/// How [`ExecutorDriver::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The executor called [`ExecutorHandle::stop`] and the agent checkpointed every update.
    Stopped,
    /// The agent was unreachable for the recovery timeout: the executor was asked to shut
    /// down, and updates not yet checkpointed are lost with the agent.
    AgentLost,
}

/// Why the executor driver cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorDriverError {
    #[error("environment variable {0} is not set (is this process started by an agent?)")]
    MissingEnv(&'static str),
    #[error("bad agent endpoint {0:?}")]
    BadEndpoint(String),
    #[error("AGORA_RECOVERY_TIMEOUT_MS: {0:?} is not a number of milliseconds")]
    BadRecoveryTimeout(String),
    /// The token is not a valid header value (its text is not repeated here).
    #[error("AGORA_EXECUTOR_TOKEN: not a valid token")]
    BadToken,
    #[error("AGORA_AGENT_CA_PEM: {0}")]
    BadAgentCa(String),
}

/// Adds `authorization: Bearer <token>` to every call (nothing without a token).
pub type BearerToken = agora_security::client::Authorize;

fn bearer_token(token: Option<&str>) -> Result<BearerToken, ExecutorDriverError> {
    match token {
        None => Ok(BearerToken::default()),
        Some(t) => BearerToken::bearer(t).ok_or(ExecutorDriverError::BadToken),
    }
}

/// A client of the agent's executor API that authenticates every call.
type AgentClient = ExecutorClient<InterceptedService<Channel, BearerToken>>;

fn agent_client(channel: Channel, token: &BearerToken) -> AgentClient {
    ExecutorClient::with_interceptor(channel, token.clone())
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
    /// Kill every task within `grace` (SIGTERM, then SIGKILL), report their ends, then
    /// stop the driver. Also called when the agent has been unreachable for the recovery
    /// timeout: then the driver returns as soon as every task has reported its end (or
    /// shortly after `grace`), so the kill must not wait for anything but the tasks.
    fn shutdown(&mut self, handle: &ExecutorHandle, grace: Duration);
    /// The master has recorded the update `uuid` of `task_id`.
    fn acknowledged(&mut self, _handle: &ExecutorHandle, _task_id: &str, _uuid: &str) {}
    /// Data from the framework's scheduler.
    fn framework_message(&mut self, _handle: &ExecutorHandle, _data: Vec<u8>) {}
}

struct Shared {
    /// The agent's executor API (with TLS when the agent serves it).
    endpoint: Endpoint,
    framework_id: String,
    executor_id: String,
    /// Sent with every call.
    token: BearerToken,
    /// Updates not yet checkpointed by the agent, oldest first.
    outbox: Mutex<VecDeque<OutgoingUpdate>>,
    outbox_changed: Notify,
    /// Tasks launched and not yet terminal (reported when subscribing again).
    live: Mutex<BTreeSet<String>>,
    stop: watch::Sender<bool>,
    /// When the agent was last reached.
    contact: Mutex<Contact>,
}

/// The driver's last contact with its agent.
#[derive(Debug, Clone, Copy)]
struct Contact {
    /// The last time the agent answered (or a subscription to it ended).
    last: Instant,
    /// A subscription is open: the agent is reachable right now.
    subscribed: bool,
}

impl Shared {
    fn contact(&self) -> std::sync::MutexGuard<'_, Contact> {
        self.contact.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The agent answered just now.
    fn reached(&self) {
        self.contact().last = Instant::now();
    }

    /// A subscription opened (`true`) or ended (`false`); either way the agent was there
    /// until now.
    fn subscribed(&self, open: bool) {
        *self.contact() = Contact {
            last: Instant::now(),
            subscribed: open,
        };
    }

    fn live_tasks(&self) -> Vec<String> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The tasks this executor holds, as it names them when it subscribes: those not
    /// ended, and those whose updates (their end among them) the agent has not taken yet.
    /// The agent launches a task it recovered as TASK_STAGING on an executor that does not
    /// name it (the agent died between starting the executor and giving it the task);
    /// a task that ended here must never be launched again.
    fn held_tasks(&self) -> Vec<String> {
        let mut held: BTreeSet<String> =
            self.live.lock().unwrap_or_else(|p| p.into_inner()).clone();
        held.extend(
            self.outbox
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|u| u.task_id.clone()),
        );
        held.into_iter().collect()
    }
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
        let token = self.shared.token.clone();
        tokio::spawn(async move {
            if let Err(status) = agent_client(endpoint.connect_lazy(), &token)
                .send_message(m)
                .await
            {
                tracing::debug!(%status, "framework message not delivered");
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

    /// Stops the driver once every queued update has been checkpointed by the agent (or
    /// the agent has been unreachable for the recovery timeout).
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
    handle: ExecutorHandle,
    recovery_timeout: Duration,
}

impl ExecutorDriver {
    /// From the environment the agent set (`AGORA_AGENT_ENDPOINT`, `AGORA_FRAMEWORK_ID`,
    /// `AGORA_EXECUTOR_ID`, `AGORA_EXECUTOR_TOKEN`, and `AGORA_AGENT_CA_PEM` when the
    /// agent serves TLS).
    pub fn from_env() -> Result<ExecutorDriver, ExecutorDriverError> {
        let var = |name: &'static str| {
            std::env::var(name).map_err(|_| ExecutorDriverError::MissingEnv(name))
        };
        let agent_ca = match std::env::var(ENV_AGENT_CA_PEM) {
            Ok(pem) => {
                let tls = ClientTls::from_pem(pem.into_bytes(), None);
                tls.rustls_config()
                    .map_err(|e| ExecutorDriverError::BadAgentCa(e.to_string()))?;
                Some(tls)
            }
            Err(_) => None,
        };
        let driver = Self::with_auth(
            &var(ENV_AGENT_ENDPOINT)?,
            &var(ENV_FRAMEWORK_ID)?,
            &var(ENV_EXECUTOR_ID)?,
            Some(&var(ENV_EXECUTOR_TOKEN)?),
            agent_ca,
        )?;
        Ok(match std::env::var(ENV_RECOVERY_TIMEOUT_MS) {
            Ok(ms) => driver.recovery_timeout(Duration::from_millis(
                ms.parse()
                    .map_err(|_| ExecutorDriverError::BadRecoveryTimeout(ms))?,
            )),
            Err(_) => driver,
        })
    }

    /// How long the agent may be unreachable (whatever the driver is waiting for) before
    /// the executor is shut down (its tasks are killed) and [`ExecutorDriver::run`]
    /// returns: the agent is gone for good, or its work dir was lost.
    pub fn recovery_timeout(mut self, timeout: Duration) -> Self {
        self.recovery_timeout = timeout;
        self
    }

    /// A plaintext driver that sends no token (an agent refuses its calls: use
    /// [`ExecutorDriver::from_env`] or [`ExecutorDriver::with_auth`]).
    pub fn new(
        agent_endpoint: &str,
        framework_id: &str,
        executor_id: &str,
    ) -> Result<ExecutorDriver, ExecutorDriverError> {
        Self::with_auth(agent_endpoint, framework_id, executor_id, None, None)
    }

    /// A driver that authenticates every call with `token` (the agent's
    /// `AGORA_EXECUTOR_TOKEN` for this executor), over TLS checked against `agent_ca`
    /// when given (plaintext otherwise).
    pub fn with_auth(
        agent_endpoint: &str,
        framework_id: &str,
        executor_id: &str,
        token: Option<&str>,
        agent_ca: Option<ClientTls>,
    ) -> Result<ExecutorDriver, ExecutorDriverError> {
        let tls = agent_ca.is_some();
        let endpoint = ClientSecurity {
            tls: agent_ca,
            credential: None,
        }
        .endpoint(agent_endpoint)
        .map_err(|e| {
            if tls {
                ExecutorDriverError::BadAgentCa(e.to_string())
            } else {
                ExecutorDriverError::BadEndpoint(agent_endpoint.to_string())
            }
        })?
        .connect_timeout(Duration::from_millis(500))
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2))
        .keep_alive_while_idle(true);
        let token = bearer_token(token)?;
        let (stop, _) = watch::channel(false);
        Ok(ExecutorDriver {
            recovery_timeout: DEFAULT_RECOVERY_TIMEOUT,
            handle: ExecutorHandle {
                shared: Arc::new(Shared {
                    endpoint,
                    framework_id: framework_id.to_string(),
                    executor_id: executor_id.to_string(),
                    token,
                    outbox: Mutex::new(VecDeque::new()),
                    outbox_changed: Notify::new(),
                    live: Mutex::new(BTreeSet::new()),
                    stop,
                    contact: Mutex::new(Contact {
                        last: Instant::now(),
                        subscribed: false,
                    }),
                }),
            },
        })
    }

    pub fn handle(&self) -> ExecutorHandle {
        self.handle.clone()
    }

    fn channel(&self) -> Channel {
        self.handle.shared.endpoint.connect_lazy()
    }

    /// Runs until the executor calls [`ExecutorHandle::stop`] and every update is
    /// checkpointed by the agent ([`Ended::Stopped`]), or until the agent has been
    /// unreachable for the recovery timeout ([`Ended::AgentLost`]): then the executor is
    /// asked to shut down with [`AGENT_LOST_KILL_GRACE`], and `run` returns once every
    /// task it was given has reported a terminal state, or at most
    /// [`AGENT_LOST_KILL_GRACE`] + 400 ms later.
    pub async fn run<E: Executor>(self, mut executor: E) -> Ended {
        let shared = self.handle.shared.clone();
        // Time to the first subscription counts too.
        shared.subscribed(false);
        let lost = {
            let work = async {
                // One connection carries the subscription and the updates: the first
                // update does not wait for a second connection (TCP and TLS handshakes).
                let channel = self.channel();
                tokio::join!(
                    self.subscribe_until_stopped(&mut executor, &channel),
                    deliver_updates(channel.clone(), self.handle.clone(), self.backoff_cap())
                )
            };
            tokio::select! {
                _ = work => false,
                () = agent_unreachable(&shared, self.recovery_timeout) => true,
            }
        };
        if !lost {
            return Ended::Stopped;
        }
        let live = shared.live_tasks();
        tracing::warn!(
            timeout = ?self.recovery_timeout,
            undelivered = self.handle.pending_updates(),
            tasks = ?live,
            "agent unreachable for the recovery timeout: killing the tasks and exiting"
        );
        executor.shutdown(&self.handle, AGENT_LOST_KILL_GRACE);
        let ended = tokio::time::timeout(AGENT_LOST_KILL_GRACE + AGENT_LOST_MARGIN, async {
            while !shared.live_tasks().is_empty() {
                // Every status update (a terminal one included) notifies this.
                shared.outbox_changed.notified().await;
            }
        })
        .await;
        if ended.is_err() {
            tracing::error!(tasks = ?shared.live_tasks(), "tasks did not report their end after the kill; exiting anyway");
        }
        Ended::AgentLost
    }

    /// The longest wait between two attempts to reach the agent: 2 s, or less with a short
    /// recovery timeout, so that an agent back within it is found in time.
    fn backoff_cap(&self) -> Duration {
        (self.recovery_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(2))
    }

    /// Subscribes (again, whenever the subscription ends) and dispatches events, until the
    /// executor asks to stop.
    async fn subscribe_until_stopped<E: Executor>(&self, executor: &mut E, channel: &Channel) {
        let shared = &self.handle.shared;
        let mut stop = shared.stop.subscribe();
        let mut backoff = Duration::from_millis(100);
        loop {
            if *stop.borrow() {
                return;
            }
            let req = pb::ExecutorSubscribe {
                framework_id: shared.framework_id.clone(),
                executor_id: shared.executor_id.clone(),
                task_ids: shared.held_tasks(),
            };
            match agent_client(channel.clone(), &shared.token)
                .subscribe(req)
                .await
            {
                Ok(resp) => {
                    shared.subscribed(true);
                    backoff = Duration::from_millis(100);
                    let mut events = resp.into_inner();
                    loop {
                        let event = tokio::select! {
                            e = events.message() => e,
                            _ = stop.wait_for(|s| *s) => break,
                        };
                        match event {
                            Ok(Some(e)) => self.dispatch(executor, e),
                            Ok(None) => break,
                            Err(status) => {
                                tracing::info!(%status, "agent stream ended; subscribing again");
                                break;
                            }
                        }
                    }
                    // Reached until now: the recovery timeout counts from here.
                    shared.subscribed(false);
                }
                Err(status) => tracing::debug!(%status, "agent not reachable yet"),
            }
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {},
                _ = stop.wait_for(|s| *s) => {},
            }
            backoff = (backoff * 2).min(self.backoff_cap());
        }
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

/// Returns once the agent has been unreachable for `timeout`: no subscription open, and
/// none open nor any update checkpointed for `timeout`.
async fn agent_unreachable(shared: &Shared, timeout: Duration) {
    loop {
        let contact = *shared.contact();
        let wait = if contact.subscribed {
            timeout
        } else {
            match timeout.checked_sub(contact.last.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => return,
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Sends queued updates one at a time, oldest first, each retried (waiting at most
/// `backoff_cap` in between) until the agent answers that it has checkpointed it; ends once
/// stopped with an empty outbox.
async fn deliver_updates(channel: Channel, handle: ExecutorHandle, backoff_cap: Duration) {
    let shared = handle.shared.clone();
    let mut client = agent_client(channel, &shared.token);
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
                shared.reached();
                let mut outbox = shared.outbox.lock().unwrap_or_else(|p| p.into_inner());
                if outbox.front().is_some_and(|u| u.uuid == update.uuid) {
                    outbox.pop_front();
                }
                backoff = Duration::from_millis(50);
            }
            Err(status) => {
                tracing::debug!(%status, task = %update.task_id, "update not checkpointed yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(backoff_cap);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records shutdowns; reports its task killed on shutdown when `reports_end`.
    struct Recorder {
        shutdowns: Arc<Mutex<Vec<Duration>>>,
        reports_end: bool,
    }

    impl Executor for Recorder {
        fn launch_task(&mut self, _handle: &ExecutorHandle, _task: pb::TaskInfo) {}
        fn kill_task(&mut self, _handle: &ExecutorHandle, _task_id: &str, _grace: Duration) {}
        fn shutdown(&mut self, handle: &ExecutorHandle, grace: Duration) {
            self.shutdowns.lock().unwrap().push(grace);
            if self.reports_end {
                handle.send_status_update("t1", TaskState::TaskKilled, "killed", None);
                handle.stop();
            }
        }
    }

    /// Nothing listens on port 1 of loopback: the agent is gone for good.
    fn driver_without_agent(timeout: Duration) -> ExecutorDriver {
        ExecutorDriver::new("127.0.0.1:1", "fw-1", "t1")
            .unwrap()
            .recovery_timeout(timeout)
    }

    #[tokio::test]
    async fn a_lost_agent_ends_the_run_after_the_recovery_timeout_with_updates_pending() {
        let timeout = Duration::from_millis(300);
        let driver = driver_without_agent(timeout);
        let handle = driver.handle();
        handle.send_status_update("t1", TaskState::TaskRunning, "", None);
        let shutdowns = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let ended = driver
            .run(Recorder {
                shutdowns: shutdowns.clone(),
                reports_end: true,
            })
            .await;
        let took = started.elapsed();
        assert_eq!(ended, Ended::AgentLost);
        assert_eq!(*shutdowns.lock().unwrap(), vec![AGENT_LOST_KILL_GRACE]);
        assert!(took >= timeout, "gave up early: {took:?}");
        // The task reported its end at once: no waiting for the grace.
        assert!(took < timeout + Duration::from_millis(300), "{took:?}");
        assert_eq!(
            handle.pending_updates(),
            2,
            "undelivered, lost with the agent"
        );
    }

    #[tokio::test]
    async fn a_stopped_executor_waiting_to_deliver_gives_up_too() {
        let timeout = Duration::from_millis(300);
        let driver = driver_without_agent(timeout);
        let handle = driver.handle();
        handle.send_status_update("t1", TaskState::TaskFinished, "", Some(0));
        handle.stop();
        let started = Instant::now();
        let shutdowns = Arc::new(Mutex::new(Vec::new()));
        let ended = driver
            .run(Recorder {
                shutdowns: shutdowns.clone(),
                reports_end: false,
            })
            .await;
        assert_eq!(ended, Ended::AgentLost);
        // No live task to wait for.
        let took = started.elapsed();
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(300),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn tasks_that_never_report_their_end_do_not_hold_the_run() {
        let timeout = Duration::from_millis(200);
        let driver = driver_without_agent(timeout);
        driver
            .handle()
            .send_status_update("t1", TaskState::TaskRunning, "", None);
        let started = Instant::now();
        let ended = driver
            .run(Recorder {
                shutdowns: Arc::new(Mutex::new(Vec::new())),
                reports_end: false,
            })
            .await;
        assert_eq!(ended, Ended::AgentLost);
        let took = started.elapsed();
        let bound = timeout + AGENT_LOST_KILL_GRACE + AGENT_LOST_MARGIN;
        assert!(took >= bound - Duration::from_millis(50), "{took:?}");
        assert!(took < bound + Duration::from_millis(300), "{took:?}");
    }

    #[test]
    fn every_call_carries_the_token_as_a_sensitive_bearer_header() {
        use tonic::service::Interceptor;
        let mut token = bearer_token(Some("0123abcd")).unwrap();
        let req = token.call(tonic::Request::new(())).unwrap();
        let value = req.metadata().get("authorization").expect("the header");
        assert_eq!(value, "Bearer 0123abcd");
        assert!(value.is_sensitive());
        assert!(!format!("{token:?}").contains("0123abcd"));
        let mut none = bearer_token(None).unwrap();
        let req = none.call(tonic::Request::new(())).unwrap();
        assert!(req.metadata().get("authorization").is_none());
        let bad = ExecutorDriver::with_auth("127.0.0.1:1", "fw-1", "t1", Some("a\nb"), None);
        assert!(matches!(bad, Err(ExecutorDriverError::BadToken)));
        let message = ExecutorDriverError::BadToken.to_string();
        assert!(!message.contains("a\nb"), "{message}");
    }

    #[test]
    fn backoff_fits_short_recovery_timeouts() {
        let cap = |ms| driver_without_agent(Duration::from_millis(ms)).backoff_cap();
        assert_eq!(cap(2_000), Duration::from_millis(500));
        assert_eq!(cap(100), Duration::from_millis(100));
        assert_eq!(cap(900_000), Duration::from_secs(2));
    }
}
