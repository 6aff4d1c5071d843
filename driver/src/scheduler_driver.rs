//! The scheduler driver: how a Rust framework talks to Agora.
//!
//! [`SchedulerDriver::run`] subscribes the framework to the leading master, dispatches its
//! events to a [`Scheduler`], and when the connection drops (leader failover, network),
//! finds the leader again and subscribes again with the same framework id, so its tasks
//! survive within the framework's failover timeout. Calls go through a cloneable
//! [`SchedulerHandle`], each to the current leader.
//!
//! ```no_run
//! use agora_driver::{Scheduler, SchedulerDriver, SchedulerHandle, TaskState, TaskStatus};
//! use agora_proto::v1 as pb;
//!
//! struct Once;
//! impl Scheduler for Once {
//!     fn resource_offers(&mut self, h: &SchedulerHandle, offers: Vec<pb::Offer>) {
//!         let offer = &offers[0];
//!         let task = pb::TaskInfo {
//!             task_id: "hello".into(),
//!             name: "hello".into(),
//!             resources: offer.resources.clone(),
//!             command: "echo hello".into(),
//!             env: Default::default(),
//!             executor: None,
//!             user: String::new(), // the framework's user
//!             ..Default::default()
//!         };
//!         h.accept(vec![offer.id.clone()], vec![task], None);
//!     }
//!     fn status_update(&mut self, h: &SchedulerHandle, status: TaskStatus) {
//!         println!("{} {}", status.task_id, status.state);
//!         if status.state == TaskState::TaskFinished {
//!             h.stop();
//!         }
//!     }
//! }
//!
//! # async fn demo() -> Result<(), agora_driver::DriverError> {
//! let framework = pb::FrameworkInfo {
//!     name: "hello".into(),
//!     roles: vec!["*".into()],
//!     ..Default::default()
//! };
//! SchedulerDriver::new("127.0.0.1:5050", framework)?.run(Once).await
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_proto::v1 as pb;
use agora_proto::v1::scheduler_client::SchedulerClient;
use tokio::sync::watch;

use crate::convert;
use crate::master_client::{DriverError, MasterClient, RetryPolicy};
use crate::status::TaskStatus;

/// What a framework does with its events. Callbacks run on the driver's task and must not
/// block; calls on the handle are sent in the background.
pub trait Scheduler: Send + 'static {
    /// First subscription accepted: the framework's id.
    fn registered(&mut self, _handle: &SchedulerHandle, _framework_id: &str) {}
    /// Subscribed again (after a failover or reconnection).
    fn reregistered(&mut self, _handle: &SchedulerHandle) {}
    /// Resources offered.
    fn resource_offers(&mut self, handle: &SchedulerHandle, offers: Vec<pb::Offer>);
    /// An offer is no longer valid.
    fn offer_rescinded(&mut self, _handle: &SchedulerHandle, _offer_id: &str) {}
    /// A task's state changed.
    fn status_update(&mut self, handle: &SchedulerHandle, status: TaskStatus);
    /// An agent was lost.
    fn agent_lost(&mut self, _handle: &SchedulerHandle, _agent_id: &str) {}
    /// Data from one of the framework's executors.
    fn framework_message(
        &mut self,
        _handle: &SchedulerHandle,
        _agent_id: &str,
        _executor_id: &str,
        _data: Vec<u8>,
    ) {
    }
    /// The subscription dropped; the driver is reconnecting.
    fn disconnected(&mut self, _handle: &SchedulerHandle) {}
    /// The master reported an error about this framework.
    fn error(&mut self, _handle: &SchedulerHandle, _message: &str) {}
}

struct Shared {
    client: MasterClient,
    framework_id: Mutex<Option<String>>,
    stop: watch::Sender<bool>,
    /// Counts subscriptions; odd while one is live. Calls wait for a live one: after a
    /// failover the new leader refuses calls of a framework until it subscribes again.
    subscription: watch::Sender<u64>,
}

/// Cloneable handle for a framework's calls.
#[derive(Clone)]
pub struct SchedulerHandle {
    shared: Arc<Shared>,
}

impl SchedulerHandle {
    /// The optional check of a request before waiting for offers: an error naming what is
    /// short when no registered agent could ever hold `wanted` for `role` (all of each
    /// agent's resources counted, unreserved or reserved for the role); `Ok` when one
    /// could, or while no agent is registered.
    pub async fn check_feasible(
        &self,
        wanted: &crate::feasibility::Wanted,
        role: &str,
    ) -> Result<(), DriverError> {
        match self.shared.client.shortfall(wanted, role).await? {
            None => Ok(()),
            Some(why) => Err(DriverError::Infeasible(why)),
        }
    }

    /// The framework's id, once subscribed.
    pub fn framework_id(&self) -> Option<String> {
        self.shared
            .framework_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn id(&self) -> String {
        self.framework_id().unwrap_or_default()
    }

    fn spawn<F, Fut>(
        &self,
        what: &'static str,
        f: F,
    ) -> tokio::task::JoinHandle<Result<(), DriverError>>
    where
        F: FnMut(crate::MasterChannel) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<tonic::Response<pb::CallReply>, tonic::Status>>
            + Send,
    {
        let shared = self.shared.clone();
        let mut f = f;
        tokio::spawn(async move {
            let mut subscription = shared.subscription.subscribe();
            let mut refused_as_unsubscribed = 0;
            let r = loop {
                // Wait (a while) for a live subscription; then call anyway, so that a
                // framework that cannot subscribe gets the master's reason.
                // (Not once the driver is stopped: then no subscription will come.)
                let stopped = *shared.stop.borrow();
                let deadline = shared.client.policy().deadline;
                if !stopped {
                    let live = subscription.wait_for(|n| n % 2 == 1);
                    let _ = tokio::time::timeout(deadline, live).await;
                }
                let seen = *subscription.borrow();
                match shared.client.call(&mut f).await {
                    // The master dropped the subscription before the driver noticed
                    // (a failover): retry once the driver has subscribed again.
                    Err(DriverError::Rejected(status))
                        if status.code() == tonic::Code::FailedPrecondition
                            && status.message().contains("not subscribed")
                            && refused_as_unsubscribed < 3
                            && !stopped =>
                    {
                        refused_as_unsubscribed += 1;
                        let next = subscription.wait_for(|n| *n > seen && n % 2 == 1);
                        let _ = tokio::time::timeout(shared.client.policy().deadline, next).await;
                    }
                    r => break r.map(|_| ()),
                }
            };
            if let Err(e) = &r {
                tracing::warn!(call = what, error = %e, "scheduler call failed");
            }
            r
        })
    }

    /// Accepts offers (all on one agent) and launches `tasks` on them.
    pub fn accept(
        &self,
        offer_ids: Vec<String>,
        tasks: Vec<pb::TaskInfo>,
        refuse_seconds: Option<f64>,
    ) -> tokio::task::JoinHandle<Result<(), DriverError>> {
        let req = pb::AcceptRequest {
            framework_id: self.id(),
            offer_ids,
            tasks,
            filters: Some(pb::Filters { refuse_seconds }),
        };
        self.spawn("accept", move |ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).accept(req).await }
        })
    }

    /// Declines offers for `refuse_seconds` (default 5).
    pub fn decline(
        &self,
        offer_ids: Vec<String>,
        refuse_seconds: Option<f64>,
    ) -> tokio::task::JoinHandle<Result<(), DriverError>> {
        let req = pb::DeclineRequest {
            framework_id: self.id(),
            offer_ids,
            filters: Some(pb::Filters { refuse_seconds }),
        };
        self.spawn("decline", move |ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).decline(req).await }
        })
    }

    pub fn kill(
        &self,
        task_id: &str,
        grace: Option<Duration>,
    ) -> tokio::task::JoinHandle<Result<(), DriverError>> {
        let req = pb::KillRequest {
            framework_id: self.id(),
            task_id: task_id.to_string(),
            grace_period_ms: grace.map(|g| g.as_millis() as u64).unwrap_or(0),
        };
        self.spawn("kill", move |ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).kill(req).await }
        })
    }

    /// Acknowledges a status update.
    pub fn acknowledge(
        &self,
        status: &TaskStatus,
    ) -> tokio::task::JoinHandle<Result<(), DriverError>> {
        let req = pb::AcknowledgeRequest {
            framework_id: self.id(),
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone(),
            agent_id: status.agent_id.clone(),
        };
        self.spawn("acknowledge", move |ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).acknowledge(req).await }
        })
    }

    /// Asks for the state of `task_ids` (all tasks when empty).
    pub fn reconcile(
        &self,
        task_ids: Vec<String>,
    ) -> tokio::task::JoinHandle<Result<(), DriverError>> {
        let req = pb::ReconcileRequest {
            framework_id: self.id(),
            task_ids,
        };
        self.spawn("reconcile", move |ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).reconcile(req).await }
        })
    }

    pub fn revive(&self) -> tokio::task::JoinHandle<Result<(), DriverError>> {
        let req = pb::FrameworkCall {
            framework_id: self.id(),
        };
        self.spawn("revive", move |ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).revive(req).await }
        })
    }

    pub fn suppress(&self) -> tokio::task::JoinHandle<Result<(), DriverError>> {
        let req = pb::FrameworkCall {
            framework_id: self.id(),
        };
        self.spawn("suppress", move |ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).suppress(req).await }
        })
    }

    /// Sends data to one of the framework's executors (best effort: not retried).
    pub fn send_framework_message(
        &self,
        agent_id: &str,
        executor_id: &str,
        data: Vec<u8>,
    ) -> tokio::task::JoinHandle<Result<(), DriverError>> {
        let req = pb::FrameworkMessage {
            framework_id: self.id(),
            agent_id: agent_id.to_string(),
            executor_id: executor_id.to_string(),
            data,
        };
        self.spawn("message", move |ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).message(req).await }
        })
    }

    /// Shuts one of the framework's executors down (its tasks are killed).
    pub fn shutdown_executor(
        &self,
        agent_id: &str,
        executor_id: &str,
    ) -> tokio::task::JoinHandle<Result<(), DriverError>> {
        let req = pb::ShutdownRequest {
            framework_id: self.id(),
            agent_id: agent_id.to_string(),
            executor_id: executor_id.to_string(),
        };
        self.spawn("shutdown", move |ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).shutdown(req).await }
        })
    }

    /// Tears the framework down (kills its tasks, removes it).
    pub fn teardown(&self) -> tokio::task::JoinHandle<Result<(), DriverError>> {
        let req = pb::FrameworkCall {
            framework_id: self.id(),
        };
        self.spawn("teardown", move |ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).teardown(req).await }
        })
    }

    /// Stops the driver (the framework stays registered until its failover timeout).
    pub fn stop(&self) {
        let _ = self.shared.stop.send(true);
    }
}

/// Connects a framework to the cluster.
pub struct SchedulerDriver {
    framework: pb::FrameworkInfo,
    implicit_acknowledgements: bool,
    handle: SchedulerHandle,
}

impl SchedulerDriver {
    /// A driver for `framework` over `masters` (HOST:PORT,...; any or all of the quorum),
    /// with the TLS and credential settings of the environment (see [`MasterClient::new`]).
    pub fn new(
        masters: &str,
        framework: pb::FrameworkInfo,
    ) -> Result<SchedulerDriver, DriverError> {
        let client = MasterClient::from_list(masters)?;
        let client = MasterClient::with_policy(client.masters().to_vec(), Self::retry_policy())?;
        Ok(Self::with_client(client, framework))
    }

    /// How the driver's client retries by default.
    pub fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            deadline: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            // A leader cut off by a partition swallows calls: give up on it soon and
            // try the others (an accept retried this way is answered, not run twice).
            call_timeout: Duration::from_secs(3),
        }
    }

    /// A driver over a client built by the caller (explicit TLS and credentials). An
    /// empty `framework.user` becomes the user running this process, as in Mesos.
    pub fn with_client(client: MasterClient, mut framework: pb::FrameworkInfo) -> SchedulerDriver {
        if framework.user.is_empty() {
            framework.user = current_user().unwrap_or_default();
        }
        let (stop, _) = watch::channel(false);
        let (subscription, _) = watch::channel(0);
        let framework_id = (!framework.id.is_empty()).then(|| framework.id.clone());
        SchedulerDriver {
            framework,
            implicit_acknowledgements: true,
            handle: SchedulerHandle {
                shared: Arc::new(Shared {
                    client,
                    framework_id: Mutex::new(framework_id),
                    stop,
                    subscription,
                }),
            },
        }
    }

    /// Whether the driver acknowledges each status update after the `status_update`
    /// callback returns (default true). With false, the scheduler calls
    /// [`SchedulerHandle::acknowledge`] itself.
    pub fn implicit_acknowledgements(mut self, on: bool) -> Self {
        self.implicit_acknowledgements = on;
        self
    }

    pub fn handle(&self) -> SchedulerHandle {
        self.handle.clone()
    }

    /// Runs until [`SchedulerHandle::stop`], or until the master refuses the framework
    /// (returned as an error).
    pub async fn run<S: Scheduler>(self, mut scheduler: S) -> Result<(), DriverError> {
        let h = self.handle.clone();
        let mut stop = h.shared.stop.subscribe();
        let mut subscribed_before = false;
        loop {
            if *stop.borrow() {
                break;
            }
            let mut framework = self.framework.clone();
            framework.id = h.framework_id().unwrap_or_default();
            let req = pb::SubscribeRequest {
                framework: Some(framework),
            };
            let stream = tokio::select! {
                r = h.shared.client.stream(|ch| {
                    let req = req.clone();
                    async move { SchedulerClient::new(ch).subscribe(req).await }
                }) => r,
                _ = stop.wait_for(|s| *s) => break,
            };
            let mut events = match stream {
                Ok(s) => s,
                Err(DriverError::Rejected(status)) => {
                    scheduler.error(&h, status.message());
                    return Err(DriverError::Rejected(status));
                }
                Err(e) => {
                    tracing::info!(error = %e, "no leader yet; retrying");
                    continue;
                }
            };
            // Set once subscribed: a master's notice that a leader of a later term leads
            // (this session's leader was deposed; its stream may take seconds to fail).
            let mut moved: Pin<Box<dyn Future<Output = String> + Send + '_>> =
                Box::pin(std::future::pending());
            loop {
                let event = tokio::select! {
                    e = events.message() => e,
                    new = &mut moved => {
                        tracing::info!(leader = %new, "a new leader was elected; subscribing with it");
                        break;
                    }
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                };
                let kind = match event {
                    Ok(Some(pb::Event { kind: Some(k) })) => k,
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(status) => {
                        if status.code() == tonic::Code::FailedPrecondition {
                            scheduler.error(&h, status.message());
                            return Err(DriverError::Rejected(status));
                        }
                        tracing::info!(%status, "subscription lost; subscribing again");
                        break;
                    }
                };
                match kind {
                    pb::event::Kind::Subscribed(s) => {
                        if let Some(leader) = h.shared.client.leader().filter(|_| s.term > 0) {
                            moved = Box::pin(h.shared.client.leader_moved(leader, s.term));
                        }
                        *h.shared
                            .framework_id
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(s.framework_id.clone());
                        h.shared.subscription.send_modify(|n| {
                            if *n % 2 == 0 {
                                *n += 1
                            }
                        });
                        if subscribed_before {
                            scheduler.reregistered(&h);
                        } else {
                            subscribed_before = true;
                            scheduler.registered(&h, &s.framework_id);
                        }
                    }
                    pb::event::Kind::Offers(o) => scheduler.resource_offers(&h, o.offers),
                    pb::event::Kind::Rescind(r) => scheduler.offer_rescinded(&h, &r.offer_id),
                    pb::event::Kind::Update(status) => {
                        let task_id = status.task_id.clone();
                        let status = match convert::task_status_from_proto(status) {
                            Ok(s) => s,
                            Err(e) => {
                                // A master newer than this driver, or a bug: nothing a
                                // scheduler can act on. Left unacknowledged.
                                tracing::warn!(task = %task_id, error = %e, "status update with a bad state: ignored");
                                continue;
                            }
                        };
                        let needs_ack = !status.uuid.is_empty();
                        scheduler.status_update(&h, status.clone());
                        if self.implicit_acknowledgements && needs_ack {
                            h.acknowledge(&status);
                        }
                    }
                    pb::event::Kind::Failure(f) => scheduler.agent_lost(&h, &f.agent_id),
                    pb::event::Kind::Error(e) => scheduler.error(&h, &e.message),
                    pb::event::Kind::Heartbeat(_) => {}
                    pb::event::Kind::Message(m) => {
                        scheduler.framework_message(&h, &m.agent_id, &m.executor_id, m.data)
                    }
                }
            }
            h.shared.subscription.send_modify(|n| {
                if *n % 2 == 1 {
                    *n += 1
                }
            });
            scheduler.disconnected(&h);
            // A moment, not more: a new leader is usually elected by now, and a failing
            // subscribe call backs off by itself.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// The name of the user this process runs as.
fn current_user() -> Option<String> {
    // SAFETY: getpwuid_r writes into the buffers given and nothing else.
    unsafe {
        let uid = libc::geteuid();
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 || result.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(pwd.pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}
