//! # agora-mesos-driver
//!
//! A Rust client of Apache Mesos' v1 scheduler HTTP API: `POST /api/v1/scheduler` with a
//! SUBSCRIBE whose answer is an endless chunked body of RecordIO-framed events, and every
//! other call a `202` naming the `Mesos-Stream-Id`. It speaks to Agora masters as to Mesos
//! ones, which is what it is for: the fault-injection harness runs one of its frameworks
//! through it, and the benchmark compares it with the gRPC driver.
//!
//! - [`Driver::run`] subscribes to a master (the first of `--masters` that answers; a
//!   follower's `307` is followed to the leader), hands each event to the [`Scheduler`],
//!   acknowledges each update that carries a uuid once the scheduler has seen it (as
//!   Mesos' drivers do with implicit acknowledgements), and when the stream ends (leader
//!   lost, connection cut, no heartbeat for three intervals) subscribes again with its
//!   framework id, with capped backoff. An ERROR event ends the run.
//! - [`Handle`] makes the calls (accept, decline, kill, reconcile, ...) from the
//!   scheduler's callbacks or from anywhere else; each returns a task that completes with
//!   the master's answer.
//! - Bodies are Mesos' JSON or protobuf ([`Encoding`]); TLS and the credential come from
//!   Agora's client configuration ([`Settings::discover`]).
//!
//! What it must not do: know Agora's gRPC API or its domain types (it is a Mesos client;
//! the wire types are `agora-mesos-proto`'s), or retry a call by itself (a scheduler
//! decides, as with Mesos: a lost accept's tasks are reconciled).

mod http;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use agora_mesos_proto::v1 as mesos;
use agora_mesos_proto::{recordio, MesosJson};
use agora_security::client::{ClientOverrides, ClientSecurity, ClientSettings};
use bytes::Bytes;
use mesos::scheduler as sched;
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The endpoint.
pub const PATH: &str = "/api/v1/scheduler";
/// Backoff between subscription attempts: from this...
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// ...doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Redirects followed in a row before trying the next master.
const MAX_REDIRECTS: usize = 3;
/// The heartbeat interval assumed until SUBSCRIBED says.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("no master given (--masters, AGORA_MASTERS or the client configuration)")]
    NoMasters,
    #[error("client settings: {0}")]
    Settings(String),
    #[error("{addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("HTTP {code}: {body}")]
    Refused { code: u16, body: String },
    #[error("not subscribed")]
    NotSubscribed,
    #[error("event stream: {0}")]
    Stream(String),
    #[error("the master ended the subscription: {0}")]
    Error(String),
    #[error("the driver is stopped")]
    Stopped,
}

impl From<agora_security::SecurityError> for DriverError {
    fn from(e: agora_security::SecurityError) -> Self {
        DriverError::Settings(e.to_string())
    }
}

impl DriverError {
    /// Whether the master answered the call and refused it (nothing happened), rather
    /// than the call's fate being unknown.
    pub fn is_refusal(&self) -> bool {
        matches!(self, DriverError::Refused { code, .. } if (400..500).contains(code))
    }
}

/// How bodies are encoded (Mesos' media types, shared with the master and agent).
pub use agora_mesos_proto::Encoding;

/// A call in `encoding`.
fn encode(encoding: Encoding, call: &sched::Call) -> Result<Vec<u8>, DriverError> {
    match encoding {
        Encoding::Protobuf => Ok(call.encode_to_vec()),
        Encoding::Json => call
            .to_json_vec()
            .map_err(|e| DriverError::Settings(format!("call: {e}"))),
    }
}

/// One event record in `encoding`.
fn decode_event(encoding: Encoding, record: &[u8]) -> Result<sched::Event, DriverError> {
    match encoding {
        Encoding::Protobuf => {
            sched::Event::decode(record).map_err(|e| DriverError::Stream(e.to_string()))
        }
        Encoding::Json => {
            sched::Event::from_json(record).map_err(|e| DriverError::Stream(e.to_string()))
        }
    }
}

/// Where and how the driver connects.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Masters, `host:port`.
    pub masters: Vec<String>,
    pub security: ClientSecurity,
    pub encoding: Encoding,
    /// Over TLS, offer HTTP/2 as well as HTTP/1.1 (the master chooses; Mesos' own masters
    /// speak HTTP/1.1 only). On by default.
    pub http2: bool,
}

impl Settings {
    /// Masters (`masters`, else `AGORA_MASTERS` or the client configuration file), TLS and
    /// credential as Agora's own clients find them.
    pub fn discover(masters: Option<&str>) -> Result<Settings, DriverError> {
        let found = ClientSettings::discover(&ClientOverrides {
            masters: masters.map(str::to_string),
            ..Default::default()
        })?;
        let masters: Vec<String> = found
            .masters
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect();
        if masters.is_empty() {
            return Err(DriverError::NoMasters);
        }
        Ok(Settings {
            masters,
            security: found.security,
            encoding: Encoding::default(),
            http2: true,
        })
    }
}

/// A framework's scheduler: the driver calls it with each event, one at a time.
pub trait Scheduler: Send + 'static {
    /// SUBSCRIBED: `resubscribed` after the first time.
    fn subscribed(&mut self, h: &Handle, framework_id: &str, resubscribed: bool);
    fn offers(&mut self, h: &Handle, offers: Vec<mesos::Offer>);
    fn rescind(&mut self, _h: &Handle, _offer_id: &str) {}
    /// A status update; the driver acknowledges it (if it carries a uuid) afterwards.
    fn update(&mut self, h: &Handle, status: &mesos::TaskStatus);
    fn message(&mut self, _h: &Handle, _agent_id: &str, _executor_id: &str, _data: &[u8]) {}
    /// FAILURE: an agent (or one executor on it) is lost.
    fn failure(&mut self, _h: &Handle, _agent_id: Option<&str>, _executor_id: Option<&str>) {}
    /// The subscription ended; the driver subscribes again.
    fn disconnected(&mut self, _h: &Handle) {}
    /// ERROR: the master ended the subscription for good (the run then ends).
    fn error(&mut self, _h: &Handle, _message: &str) {}
}

struct Session {
    /// The master subscribed to (or being tried).
    master: Option<String>,
    stream_id: Option<String>,
}

struct Shared {
    http: http::Http,
    settings: Settings,
    framework: Mutex<mesos::FrameworkInfo>,
    session: Mutex<Session>,
    runtime: OnceLock<tokio::runtime::Handle>,
    stop: watch::Sender<bool>,
    /// TEARDOWN was called: the master's ERROR that follows ends the run normally.
    torn_down: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes calls for the framework; cheap to clone.
#[derive(Clone)]
pub struct Handle(Arc<Shared>);

impl Handle {
    /// The framework's id, once subscribed.
    pub fn framework_id(&self) -> Option<String> {
        lock(&self.0.framework).id.as_ref().map(|i| i.value.clone())
    }

    /// The master the driver is subscribed to (or trying).
    pub fn master(&self) -> Option<String> {
        lock(&self.0.session).master.clone()
    }

    /// Makes a call (its `framework_id` is filled in); the task ends with the answer.
    pub fn call(&self, mut call: sched::Call) -> JoinHandle<Result<(), DriverError>> {
        let shared = self.0.clone();
        let run = async move {
            let framework_id = lock(&shared.framework).id.clone();
            let (master, stream_id) = {
                let s = lock(&shared.session);
                (s.master.clone(), s.stream_id.clone())
            };
            let (Some(framework_id), Some(master), Some(stream_id)) =
                (framework_id, master, stream_id)
            else {
                return Err(DriverError::NotSubscribed);
            };
            call.framework_id = Some(framework_id);
            let body = encode(shared.settings.encoding, &call)?;
            let (code, _, body) = shared
                .http
                .call(http::Post {
                    addr: &master,
                    path: PATH,
                    encoding: shared.settings.encoding,
                    stream_id: Some(&stream_id),
                    body,
                })
                .await?;
            match code {
                200..=299 => Ok(()),
                _ => Err(DriverError::Refused {
                    code,
                    body: String::from_utf8_lossy(&body).into_owned(),
                }),
            }
        };
        match self.0.runtime.get() {
            Some(rt) => rt.spawn(run),
            None => tokio::spawn(run),
        }
    }

    fn simple(
        &self,
        kind: sched::call::Type,
        f: impl FnOnce(&mut sched::Call),
    ) -> JoinHandle<Result<(), DriverError>> {
        let mut call = sched::Call {
            r#type: Some(kind as i32),
            ..Default::default()
        };
        f(&mut call);
        self.call(call)
    }

    /// Launches `tasks` on the offers (one LAUNCH operation).
    pub fn accept(
        &self,
        offer_ids: Vec<String>,
        tasks: Vec<mesos::TaskInfo>,
        refuse_seconds: Option<f64>,
    ) -> JoinHandle<Result<(), DriverError>> {
        use mesos::offer::operation::{Launch, Type};
        self.simple(sched::call::Type::Accept, |c| {
            c.accept = Some(sched::call::Accept {
                offer_ids: offer_ids.into_iter().map(offer_id).collect(),
                operations: vec![mesos::offer::Operation {
                    r#type: Some(Type::Launch as i32),
                    launch: Some(Launch { task_infos: tasks }),
                    ..Default::default()
                }],
                filters: refuse_seconds.map(filters),
            })
        })
    }

    pub fn decline(
        &self,
        offer_ids: Vec<String>,
        refuse_seconds: Option<f64>,
    ) -> JoinHandle<Result<(), DriverError>> {
        self.simple(sched::call::Type::Decline, |c| {
            c.decline = Some(sched::call::Decline {
                offer_ids: offer_ids.into_iter().map(offer_id).collect(),
                filters: refuse_seconds.map(filters),
            })
        })
    }

    pub fn revive(&self) -> JoinHandle<Result<(), DriverError>> {
        self.simple(sched::call::Type::Revive, |_| {})
    }

    pub fn suppress(&self) -> JoinHandle<Result<(), DriverError>> {
        self.simple(sched::call::Type::Suppress, |_| {})
    }

    pub fn kill(
        &self,
        task_id: &str,
        agent_id: Option<&str>,
    ) -> JoinHandle<Result<(), DriverError>> {
        let (task_id, agent_id) = (task_id.to_string(), agent_id.map(str::to_string));
        self.simple(sched::call::Type::Kill, |c| {
            c.kill = Some(sched::call::Kill {
                task_id: mesos::TaskId { value: task_id },
                agent_id: agent_id.map(|value| mesos::AgentId { value }),
                ..Default::default()
            })
        })
    }

    /// Asks for the state of `tasks` (none: of every task the framework has).
    pub fn reconcile(&self, tasks: Vec<String>) -> JoinHandle<Result<(), DriverError>> {
        self.simple(sched::call::Type::Reconcile, |c| {
            c.reconcile = Some(sched::call::Reconcile {
                tasks: tasks
                    .into_iter()
                    .map(|value| sched::call::reconcile::Task {
                        task_id: mesos::TaskId { value },
                        agent_id: None,
                    })
                    .collect(),
            })
        })
    }

    /// Acknowledges an update (the driver does this for every update it delivers).
    pub fn acknowledge(
        &self,
        status: &mesos::TaskStatus,
    ) -> Option<JoinHandle<Result<(), DriverError>>> {
        let uuid = status.uuid.clone()?;
        let agent_id = status.agent_id.clone()?;
        let task_id = status.task_id.clone();
        Some(self.simple(sched::call::Type::Acknowledge, |c| {
            c.acknowledge = Some(sched::call::Acknowledge {
                agent_id,
                task_id,
                uuid,
            })
        }))
    }

    /// Ends the framework: its tasks are killed and it is removed (and the run ends).
    pub fn teardown(&self) -> JoinHandle<Result<(), DriverError>> {
        self.0
            .torn_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.simple(sched::call::Type::Teardown, |_| {})
    }

    /// Ends [`Driver::run`] (the framework stays registered until its failover timeout).
    pub fn stop(&self) {
        let _ = self.0.stop.send(true);
    }
}

fn offer_id(value: String) -> mesos::OfferId {
    mesos::OfferId { value }
}

fn filters(refuse_seconds: f64) -> mesos::Filters {
    mesos::Filters {
        refuse_seconds: Some(refuse_seconds),
    }
}

/// One framework's connection to the masters.
pub struct Driver {
    shared: Arc<Shared>,
}

/// How one subscription ended.
enum End {
    /// A follower named the leader.
    Redirect(String),
    /// The stream ended or broke (after SUBSCRIBED if `subscribed`).
    Closed {
        subscribed: bool,
        why: String,
    },
    Stopped,
}

impl Driver {
    /// A driver for `framework` (with its `id` set, it subscribes as that framework).
    pub fn new(settings: Settings, framework: mesos::FrameworkInfo) -> Result<Driver, DriverError> {
        if settings.masters.is_empty() {
            return Err(DriverError::NoMasters);
        }
        let http = http::Http::new(&settings.security, settings.http2)?;
        let (stop, _) = watch::channel(false);
        Ok(Driver {
            shared: Arc::new(Shared {
                http,
                settings,
                framework: Mutex::new(framework),
                session: Mutex::new(Session {
                    master: None,
                    stream_id: None,
                }),
                runtime: OnceLock::new(),
                stop,
                torn_down: Default::default(),
            }),
        })
    }

    pub fn handle(&self) -> Handle {
        Handle(self.shared.clone())
    }

    /// Subscribes and delivers events to `scheduler` until [`Handle::stop`] or an ERROR.
    pub async fn run<S: Scheduler>(self, mut scheduler: S) -> Result<(), DriverError> {
        let _ = self.shared.runtime.set(tokio::runtime::Handle::current());
        let handle = self.handle();
        let masters = self.shared.settings.masters.clone();
        let mut stop = self.shared.stop.subscribe();
        let mut next = 0usize;
        let mut redirects = 0usize;
        let mut backoff = MIN_BACKOFF;
        let mut subscribed_once = false;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let master = lock(&self.shared.session)
                .master
                .clone()
                .unwrap_or_else(|| {
                    next += 1;
                    masters[(next - 1) % masters.len()].clone()
                });
            lock(&self.shared.session).master = Some(master.clone());
            let end = self
                .subscribe_once(
                    &master,
                    &mut scheduler,
                    &handle,
                    &mut subscribed_once,
                    &mut stop,
                )
                .await;
            match end {
                Ok(End::Stopped) => return Ok(()),
                Ok(End::Redirect(leader)) if redirects < MAX_REDIRECTS => {
                    tracing::debug!(from = %master, to = %leader, "redirected to the leader");
                    redirects += 1;
                    lock(&self.shared.session).master = Some(leader);
                    continue;
                }
                Ok(End::Redirect(_)) => {}
                Ok(End::Closed { subscribed, why }) => {
                    tracing::warn!(master = %master, %why, "subscription ended");
                    if subscribed {
                        backoff = MIN_BACKOFF;
                        scheduler.disconnected(&handle);
                    }
                }
                Err(DriverError::Error(_))
                    if self
                        .shared
                        .torn_down
                        .load(std::sync::atomic::Ordering::Relaxed) =>
                {
                    return Ok(());
                }
                Err(DriverError::Error(message)) => {
                    scheduler.error(&handle, &message);
                    return Err(DriverError::Error(message));
                }
                Err(e @ DriverError::Refused { code, .. }) if code != 503 && code < 500 => {
                    scheduler.error(&handle, &e.to_string());
                    return Err(e);
                }
                Err(e) => tracing::warn!(master = %master, error = %e, "subscription failed"),
            }
            redirects = 0;
            {
                let mut s = lock(&self.shared.session);
                s.master = None;
                s.stream_id = None;
            }
            self.shared.http.forget(&master);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn subscribe_once<S: Scheduler>(
        &self,
        master: &str,
        scheduler: &mut S,
        handle: &Handle,
        subscribed_once: &mut bool,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<End, DriverError> {
        use http_body_util::BodyExt;
        let encoding = self.shared.settings.encoding;
        let framework = lock(&self.shared.framework).clone();
        let call = sched::Call {
            framework_id: framework.id.clone(),
            r#type: Some(sched::call::Type::Subscribe as i32),
            subscribe: Some(sched::call::Subscribe {
                framework_info: framework,
                ..Default::default()
            }),
            ..Default::default()
        };
        let response = self
            .shared
            .http
            .open(http::Post {
                addr: master,
                path: PATH,
                encoding,
                stream_id: None,
                body: encode(encoding, &call)?,
            })
            .await?;
        let code = response.status().as_u16();
        if code == 307 {
            let location = http::HeaderValueMap::of(&response)
                .location
                .unwrap_or_default();
            return match http::redirect_target(&location) {
                Some(to) => Ok(End::Redirect(to)),
                None => Ok(End::Closed {
                    subscribed: false,
                    why: format!("a redirect without a leader ({location:?})"),
                }),
            };
        }
        if code != 200 {
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_else(|_| Bytes::new());
            return Err(DriverError::Refused {
                code,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        let stream_id = response
            .headers()
            .get("mesos-stream-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| DriverError::Stream("no Mesos-Stream-Id".into()))?;
        lock(&self.shared.session).stream_id = Some(stream_id);
        let mut body = response.into_body();
        let mut decoder = recordio::Decoder::default();
        let mut records = Vec::new();
        let mut heartbeat = DEFAULT_HEARTBEAT;
        let mut subscribed = false;
        loop {
            let frame = tokio::select! {
                f = tokio::time::timeout(heartbeat * 3, body.frame()) => f,
                _ = stop.wait_for(|s| *s) => return Ok(End::Stopped),
            };
            let data = match frame {
                Err(_) => {
                    return Ok(End::Closed {
                        subscribed,
                        why: "no heartbeat".into(),
                    })
                }
                Ok(None) => {
                    return Ok(End::Closed {
                        subscribed,
                        why: "the stream ended".into(),
                    })
                }
                Ok(Some(Err(e))) => {
                    return Ok(End::Closed {
                        subscribed,
                        why: e.to_string(),
                    })
                }
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
            };
            records.clear();
            decoder
                .decode_into(&data, &mut records)
                .map_err(|e| DriverError::Stream(e.to_string()))?;
            for record in records.drain(..) {
                let event = decode_event(encoding, &record)?;
                if let Some(interval) = self.deliver(event, scheduler, handle, subscribed_once)? {
                    subscribed = true;
                    heartbeat = interval;
                }
            }
        }
    }

    /// Hands one event to the scheduler. Returns the heartbeat interval on SUBSCRIBED.
    fn deliver<S: Scheduler>(
        &self,
        event: sched::Event,
        scheduler: &mut S,
        handle: &Handle,
        subscribed_once: &mut bool,
    ) -> Result<Option<Duration>, DriverError> {
        use sched::event::Type;
        match event.r#type() {
            Type::Subscribed => {
                let Some(s) = event.subscribed else {
                    return Err(DriverError::Stream(
                        "SUBSCRIBED without `subscribed`".into(),
                    ));
                };
                let id = s.framework_id.value.clone();
                lock(&self.shared.framework).id = Some(s.framework_id);
                scheduler.subscribed(handle, &id, *subscribed_once);
                *subscribed_once = true;
                let interval = s
                    .heartbeat_interval_seconds
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(Duration::from_secs_f64)
                    .unwrap_or(DEFAULT_HEARTBEAT);
                return Ok(Some(interval));
            }
            Type::Offers => {
                if let Some(o) = event.offers {
                    scheduler.offers(handle, o.offers);
                }
            }
            Type::Rescind => {
                if let Some(r) = event.rescind {
                    scheduler.rescind(handle, &r.offer_id.value);
                }
            }
            Type::Update => {
                if let Some(u) = event.update {
                    scheduler.update(handle, &u.status);
                    if let Some(ack) = handle.acknowledge(&u.status) {
                        drop(ack);
                    }
                }
            }
            Type::Message => {
                if let Some(m) = event.message {
                    scheduler.message(handle, &m.agent_id.value, &m.executor_id.value, &m.data);
                }
            }
            Type::Failure => {
                if let Some(f) = event.failure {
                    scheduler.failure(
                        handle,
                        f.agent_id.as_ref().map(|a| a.value.as_str()),
                        f.executor_id.as_ref().map(|e| e.value.as_str()),
                    );
                }
            }
            Type::Error => {
                let message = event.error.map(|e| e.message).unwrap_or_default();
                return Err(DriverError::Error(message));
            }
            _ => {}
        }
        Ok(None)
    }
}
