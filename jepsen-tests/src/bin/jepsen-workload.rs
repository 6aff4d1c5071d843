//! `jepsen-workload`: one framework of the fault-injection harness's workload. It keeps up
//! to `--max-live` tasks running, short ones (`--short-ms`) and every `--long-every`th a
//! long one (`--long-ms`), through the scheduler driver, and records every operation it
//! invokes and every answer it gets as JSON lines (see `jepsen_tests::history`).
//!
//! Each task appends its agent's id to `MARKER_DIR/TASK_ID` when it starts, so the
//! harness can count how often each task id really ran. Task ids carry the process's
//! incarnation, so a restarted workload (`--framework-id`, after the harness killed it)
//! never reuses one. SIGTERM stops launching; the process then waits up to
//! `--drain-timeout` for its live tasks to end and exits 0.
//!
//! `--api grpc` (the default) drives Agora's gRPC API through `agora-driver`; `--api
//! mesos` the same workload through Mesos' v1 scheduler HTTP API (`agora-mesos-driver`,
//! a partition-aware Mesos framework). The workload itself ([`Workload`]) sees neither: it
//! gets offers and updates in its own terms and calls an [`Api`].

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agora_driver::{scalar, DriverError, SchedulerDriver, SchedulerHandle, TaskState, TaskStatus};
use agora_mesos_driver::mesos;
use agora_proto::v1 as pb;
use clap::{Parser, ValueEnum};
use jepsen_tests::history::{op, Event, EventType, Recorder};

/// Records an event; a history that cannot be written is said on stderr (the run's
/// checkers will then miss it, which they report).
fn record(recorder: &Recorder, event: Event) {
    if let Err(e) = recorder.record(&event) {
        eprintln!("jepsen-workload: history: {e}");
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "jepsen-workload",
    about = "A framework of the fault-injection workload"
)]
struct Args {
    #[arg(long)]
    masters: String,
    /// Framework name; also the `process` of its history events and its task id prefix.
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "*")]
    role: String,
    /// History file (appended to).
    #[arg(long)]
    history: PathBuf,
    /// The run's start (ms since the Unix epoch): history times count from it.
    #[arg(long)]
    start_unix_ms: u64,
    /// Directory where each task appends its agent id to a file named after the task.
    #[arg(long)]
    marker_dir: PathBuf,
    /// Resume this framework (after a crash) instead of registering a new one.
    #[arg(long)]
    framework_id: Option<String>,
    #[arg(long, default_value_t = 3600.0)]
    failover_timeout: f64,
    #[arg(long, default_value_t = 8)]
    max_live: usize,
    #[arg(long, default_value_t = 200)]
    short_ms: u64,
    #[arg(long, default_value_t = 5000)]
    long_ms: u64,
    /// Every Nth task is a long one (0: none).
    #[arg(long, default_value_t = 5)]
    long_every: u64,
    #[arg(long, default_value_t = 0.1)]
    cpus: f64,
    #[arg(long, default_value_t = 32.0)]
    mem: f64,
    /// After SIGTERM, how long to wait for live tasks to end.
    #[arg(long, default_value_t = 15.0)]
    drain_timeout: f64,
    /// The API the framework speaks.
    #[arg(long, value_enum, default_value_t = ApiKind::Grpc)]
    api: ApiKind,
    /// Run each task in a container from this image, the marker directory mounted at
    /// /markers (the agents must allow it as a volume).
    #[arg(long)]
    image: Option<String>,
}

/// Where the marker directory is in an image task's container.
const MARKERS_IN_CONTAINER: &str = "/markers";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ApiKind {
    /// Agora's gRPC scheduler API.
    Grpc,
    /// Mesos' v1 scheduler HTTP API (JSON).
    Mesos,
}

/// An offer, as the workload judges it.
struct OfferView {
    id: String,
    agent_id: String,
    cpus: f64,
    mem: f64,
    /// The role its resources are allocated to.
    role: String,
}

/// A task to launch.
struct TaskSpec {
    id: String,
    command: String,
    role: String,
    /// The image it runs from, with the marker directory on the host (mounted at
    /// [`MARKERS_IN_CONTAINER`]).
    image: Option<(String, String)>,
}

/// What became of an accept call.
enum Accepted {
    Ok,
    /// The master answered and refused it: nothing was launched.
    Refused(String),
    /// Unknown (the call failed on the way, or its answer was lost).
    Unknown(String),
}

/// The calls the workload makes, over either API.
trait Api: Clone + Send + 'static {
    fn framework_id(&self) -> Option<String>;
    fn accept(
        &self,
        offer: &OfferView,
        tasks: Vec<TaskSpec>,
        cpus: f64,
        mem: f64,
    ) -> Pin<Box<dyn Future<Output = Accepted> + Send>>;
    fn decline(&self, offer_id: &str);
    fn reconcile(&self, task_ids: Vec<String>);
    fn revive(&self);
}

/// The leader term an offer was made in: offer ids are `PREFIX-TERM-O<seq>`.
fn offer_term(offer_id: &str) -> Option<u64> {
    offer_id.split('-').nth(1)?.parse().ok()
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

struct Workload {
    args: Args,
    recorder: Arc<Recorder>,
    incarnation: u64,
    next_seq: u64,
    /// Tasks launched (or maybe launched) and not yet seen terminal.
    live: BTreeSet<String>,
    /// Live tasks whose agent is unreachable: they may come back, but they do not hold
    /// this framework's capacity (or one partitioned agent would stall it).
    unreachable: BTreeSet<String>,
    /// Tasks whose accept call has not returned: the master may not know them yet, so
    /// asking about them would get "unknown task" for a launch still under way.
    accepting: Arc<std::sync::Mutex<BTreeSet<String>>>,
    /// Set by SIGTERM: launch nothing more.
    draining: Arc<AtomicBool>,
    /// `live.len()`, for main to see.
    live_count: Arc<AtomicUsize>,
}

impl Workload {
    fn event(&self, kind: EventType, f: &str) -> Event {
        self.recorder.event(kind, f)
    }

    fn record(&self, event: Event) {
        record(&self.recorder, event);
    }

    fn task_spec(&self, id: &str, role: &str, duration_ms: u64) -> TaskSpec {
        let host_markers = self.args.marker_dir.to_string_lossy().to_string();
        let markers = match &self.args.image {
            Some(_) => MARKERS_IN_CONTAINER.to_string(),
            None => host_markers.clone(),
        };
        let command = format!(
            "echo \"$AGORA_AGENT_ID\" >> {}/\"$AGORA_TASK_ID\"; sleep {:.3}",
            quote(&markers),
            duration_ms as f64 / 1000.0
        );
        TaskSpec {
            id: id.to_string(),
            command,
            role: role.to_string(),
            image: self.args.image.clone().map(|i| (i, host_markers)),
        }
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

impl Workload {
    fn subscribed(&mut self, api: &impl Api, framework_id: &str, resubscribed: bool) {
        self.record(
            self.event(EventType::Ok, op::SUBSCRIBE)
                .framework(framework_id),
        );
        if !resubscribed {
            println!("framework {framework_id} subscribed");
            if self.args.framework_id.is_some() {
                // Resumed after a crash: learn the state of every task the cluster holds.
                api.reconcile(Vec::new());
            }
            return;
        }
        // The live tasks' states, in case an update was lost with the old leader (not
        // those still being accepted: their call reports, or reconciles them if it fails).
        let accepting = self.accepting.lock().unwrap_or_else(|p| p.into_inner());
        let settled: Vec<String> = self.live.difference(&accepting).cloned().collect();
        drop(accepting);
        if !settled.is_empty() {
            api.reconcile(settled);
        }
    }

    fn offers(&mut self, api: &impl Api, offers: Vec<OfferView>) {
        let framework = api.framework_id().unwrap_or_default();
        for offer in offers {
            let mut e = self
                .event(EventType::Info, op::OFFER)
                .offer(&offer.id)
                .agent(&offer.agent_id)
                .framework(&framework);
            if let Some(term) = offer_term(&offer.id) {
                e = e.term(term);
            }
            self.record(e);
            let (mut cpus, mut mem) = (offer.cpus, offer.mem);
            let mut tasks = Vec::new();
            while !self.draining()
                && self.live.len() - self.unreachable.len() < self.args.max_live
                && cpus + 1e-9 >= self.args.cpus
                && mem + 1e-9 >= self.args.mem
            {
                self.next_seq += 1;
                let seq = self.next_seq;
                let id = format!("{}-{}-{seq}", self.args.name, self.incarnation);
                let long = self.args.long_every > 0 && seq.is_multiple_of(self.args.long_every);
                let duration = if long {
                    self.args.long_ms
                } else {
                    self.args.short_ms
                };
                self.record(
                    self.event(EventType::Invoke, op::LAUNCH)
                        .task(&id)
                        .agent(&offer.agent_id)
                        .offer(&offer.id)
                        .framework(&framework),
                );
                tasks.push(self.task_spec(&id, &offer.role, duration));
                self.live.insert(id);
                self.live_count.store(self.live.len(), Ordering::Relaxed);
                cpus -= self.args.cpus;
                mem -= self.args.mem;
            }
            if tasks.is_empty() {
                api.decline(&offer.id);
                continue;
            }
            let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
            self.accepting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(ids.iter().cloned());
            let accepted = api.accept(&offer, tasks, self.args.cpus, self.args.mem);
            let accepting = self.accepting.clone();
            let recorder = self.recorder.clone();
            let (agent, offer_id) = (offer.agent_id.clone(), offer.id.clone());
            let api = api.clone();
            tokio::spawn(async move {
                let outcome = accepted.await;
                {
                    let mut a = accepting.lock().unwrap_or_else(|p| p.into_inner());
                    for id in &ids {
                        a.remove(id);
                    }
                }
                let (kind, error) = match outcome {
                    Accepted::Ok => (EventType::Ok, None),
                    Accepted::Refused(why) => (EventType::Fail, Some(why)),
                    Accepted::Unknown(why) => (EventType::Info, Some(why)),
                };
                for id in &ids {
                    let mut e = recorder
                        .event(kind, op::LAUNCH)
                        .task(id)
                        .agent(&agent)
                        .offer(&offer_id);
                    e.error = error.clone();
                    record(&recorder, e);
                }
                if kind != EventType::Ok {
                    // Whatever became of them, the cluster will say.
                    api.reconcile(ids);
                }
            });
        }
    }

    /// A status update; `reconcile`: an answer to reconciliation (nothing to acknowledge).
    fn update(&mut self, api: &impl Api, status: &TaskStatus, reconcile: bool) {
        let mut e = self
            .event(EventType::Info, op::UPDATE)
            .task(&status.task_id)
            .agent(&status.agent_id)
            .state(status.state);
        e.reconcile = reconcile;
        if !status.message.is_empty() {
            e.error = Some(status.message.clone());
        }
        self.record(e);
        let terminal = status.state.is_terminal();
        // "unknown task" answers a reconciliation of a launch that never happened.
        if status.state == TaskState::TaskUnreachable && self.live.contains(&status.task_id) {
            self.unreachable.insert(status.task_id.clone());
            if !self.draining() {
                api.revive();
            }
        } else {
            self.unreachable.remove(&status.task_id);
        }
        if terminal || (reconcile && status.message == "unknown task") {
            self.live.remove(&status.task_id);
            self.live_count.store(self.live.len(), Ordering::Relaxed);
            if !self.draining() {
                api.revive();
            }
        }
    }

    fn disconnected(&mut self) {
        self.record(self.event(EventType::Info, "disconnected"));
    }

    fn error(&mut self, message: &str) {
        let mut e = self.event(EventType::Info, "error");
        e.error = Some(message.to_string());
        self.record(e);
    }
}

// ---- Agora's gRPC API (agora-driver) ----

impl Api for SchedulerHandle {
    fn framework_id(&self) -> Option<String> {
        SchedulerHandle::framework_id(self)
    }

    fn accept(
        &self,
        offer: &OfferView,
        tasks: Vec<TaskSpec>,
        cpus: f64,
        mem: f64,
    ) -> Pin<Box<dyn Future<Output = Accepted> + Send>> {
        let res = |name: &str, v: f64, role: &str| pb::Resource {
            name: name.into(),
            role: role.to_string(),
            value: Some(pb::resource::Value::Scalar(v)),
        };
        let tasks = tasks
            .into_iter()
            .map(|t| pb::TaskInfo {
                user: String::new(),
                name: t.id.clone(),
                resources: vec![res("cpus", cpus, &t.role), res("mem", mem, &t.role)],
                task_id: t.id,
                command: t.command,
                container: t.image.map(|(image, markers)| pb::ContainerInfo {
                    image,
                    volumes: vec![pb::Volume {
                        host_path: markers,
                        container_path: MARKERS_IN_CONTAINER.into(),
                        read_only: false,
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        let accepted = SchedulerHandle::accept(self, vec![offer.id.clone()], tasks, Some(1.0));
        Box::pin(async move {
            match accepted.await {
                Ok(Ok(())) => Accepted::Ok,
                // The master refused the call itself: nothing was launched.
                Ok(Err(DriverError::Rejected(s))) if s.code() != tonic::Code::Unknown => {
                    Accepted::Refused(s.message().to_string())
                }
                Ok(Err(e)) => Accepted::Unknown(e.to_string()),
                Err(e) => Accepted::Unknown(e.to_string()),
            }
        })
    }

    fn decline(&self, offer_id: &str) {
        SchedulerHandle::decline(self, vec![offer_id.to_string()], Some(1.0));
    }

    fn reconcile(&self, task_ids: Vec<String>) {
        SchedulerHandle::reconcile(self, task_ids);
    }

    fn revive(&self) {
        SchedulerHandle::revive(self);
    }
}

/// The workload as an `agora-driver` scheduler.
struct Grpc(Workload);

impl agora_driver::Scheduler for Grpc {
    fn registered(&mut self, h: &SchedulerHandle, framework_id: &str) {
        self.0.subscribed(h, framework_id, false);
    }

    fn reregistered(&mut self, h: &SchedulerHandle) {
        let id = h.framework_id().unwrap_or_default();
        self.0.subscribed(h, &id, true);
    }

    fn resource_offers(&mut self, h: &SchedulerHandle, offers: Vec<pb::Offer>) {
        let offers = offers
            .into_iter()
            .map(|o| OfferView {
                cpus: scalar(&o.resources, "cpus"),
                mem: scalar(&o.resources, "mem"),
                role: o
                    .resources
                    .iter()
                    .find(|r| r.name == "cpus")
                    .map(|r| r.role.clone())
                    .unwrap_or_default(),
                id: o.id,
                agent_id: o.agent_id,
            })
            .collect();
        self.0.offers(h, offers);
    }

    fn status_update(&mut self, h: &SchedulerHandle, status: TaskStatus) {
        let reconcile = status.uuid.is_empty();
        self.0.update(h, &status, reconcile);
    }

    fn disconnected(&mut self, _h: &SchedulerHandle) {
        self.0.disconnected();
    }

    fn error(&mut self, _h: &SchedulerHandle, message: &str) {
        self.0.error(message);
    }
}

// ---- Mesos' v1 scheduler HTTP API (agora-mesos-driver) ----

impl Api for agora_mesos_driver::Handle {
    fn framework_id(&self) -> Option<String> {
        agora_mesos_driver::Handle::framework_id(self)
    }

    fn accept(
        &self,
        offer: &OfferView,
        tasks: Vec<TaskSpec>,
        cpus: f64,
        mem: f64,
    ) -> Pin<Box<dyn Future<Output = Accepted> + Send>> {
        let scalar = |name: &str, value: f64, role: &str| mesos::Resource {
            name: name.into(),
            r#type: mesos::value::Type::Scalar as i32,
            scalar: Some(mesos::value::Scalar { value }),
            allocation_info: Some(mesos::resource::AllocationInfo {
                role: Some(role.to_string()),
            }),
            ..Default::default()
        };
        let tasks = tasks
            .into_iter()
            .map(|t| mesos::TaskInfo {
                name: t.id.clone(),
                task_id: mesos::TaskId { value: t.id },
                agent_id: mesos::AgentId {
                    value: offer.agent_id.clone(),
                },
                resources: vec![scalar("cpus", cpus, &t.role), scalar("mem", mem, &t.role)],
                command: Some(mesos::CommandInfo {
                    shell: Some(true),
                    value: Some(t.command),
                    ..Default::default()
                }),
                container: t.image.map(|(image, markers)| mesos::ContainerInfo {
                    r#type: mesos::container_info::Type::Mesos as i32,
                    volumes: vec![mesos::Volume {
                        mode: mesos::volume::Mode::Rw as i32,
                        container_path: MARKERS_IN_CONTAINER.into(),
                        host_path: Some(markers),
                    }],
                    mesos: Some(mesos::container_info::MesosInfo {
                        image: Some(mesos::Image {
                            r#type: mesos::image::Type::Docker as i32,
                            docker: Some(mesos::image::Docker { name: image }),
                            cached: None,
                        }),
                    }),
                    hostname: None,
                    network_infos: Vec::new(),
                }),
                ..Default::default()
            })
            .collect();
        let accepted =
            agora_mesos_driver::Handle::accept(self, vec![offer.id.clone()], tasks, Some(1.0));
        Box::pin(async move {
            match accepted.await {
                Ok(Ok(())) => Accepted::Ok,
                Ok(Err(e)) if e.is_refusal() => Accepted::Refused(e.to_string()),
                Ok(Err(e)) => Accepted::Unknown(e.to_string()),
                Err(e) => Accepted::Unknown(e.to_string()),
            }
        })
    }

    fn decline(&self, offer_id: &str) {
        agora_mesos_driver::Handle::decline(self, vec![offer_id.to_string()], Some(1.0));
    }

    fn reconcile(&self, task_ids: Vec<String>) {
        agora_mesos_driver::Handle::reconcile(self, task_ids);
    }

    fn revive(&self) {
        agora_mesos_driver::Handle::revive(self);
    }
}

/// The workload as a Mesos scheduler.
struct Mesos(Workload);

impl agora_mesos_driver::Scheduler for Mesos {
    fn subscribed(&mut self, h: &agora_mesos_driver::Handle, framework_id: &str, again: bool) {
        self.0.subscribed(h, framework_id, again);
    }

    fn offers(&mut self, h: &agora_mesos_driver::Handle, offers: Vec<mesos::Offer>) {
        let scalar = |o: &mesos::Offer, name: &str| -> f64 {
            o.resources
                .iter()
                .filter(|r| r.name == name)
                .filter_map(|r| r.scalar.as_ref())
                .map(|s| s.value)
                .sum()
        };
        let offers = offers
            .into_iter()
            .map(|o| OfferView {
                cpus: scalar(&o, "cpus"),
                mem: scalar(&o, "mem"),
                role: o
                    .allocation_info
                    .as_ref()
                    .and_then(|a| a.role.clone())
                    .unwrap_or_else(|| "*".into()),
                id: o.id.value,
                agent_id: o.agent_id.value,
            })
            .collect();
        self.0.offers(h, offers);
    }

    fn update(&mut self, h: &agora_mesos_driver::Handle, s: &mesos::TaskStatus) {
        let Some(state) = TaskState::from_name(s.state().as_str_name()) else {
            self.0
                .error(&format!("an update in an unknown state {:?}", s.state));
            return;
        };
        let status = TaskStatus {
            task_id: s.task_id.value.clone(),
            state,
            message: s.message.clone().unwrap_or_default(),
            agent_id: s
                .agent_id
                .as_ref()
                .map(|a| a.value.clone())
                .unwrap_or_default(),
            uuid: String::new(),
            exit_code: None,
            timestamp_ms: s.timestamp.map_or(0, |t| (t * 1000.0) as u64),
        };
        self.0.update(h, &status, s.uuid.is_none());
    }

    fn disconnected(&mut self, _h: &agora_mesos_driver::Handle) {
        self.0.disconnected();
    }

    fn error(&mut self, _h: &agora_mesos_driver::Handle, message: &str) {
        self.0.error(message);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!(
                "jepsen-workload: {}",
                e.to_string().lines().next().unwrap_or("")
            );
            return ExitCode::from(2);
        }
    };
    let recorder = match Recorder::create(&args.history, &args.name, args.start_unix_ms) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("jepsen-workload: --history: {e}");
            return ExitCode::from(2);
        }
    };
    record(&recorder, recorder.event(EventType::Invoke, op::SUBSCRIBE));
    let drain = Duration::from_secs_f64(args.drain_timeout.max(0.0));
    let draining = Arc::new(AtomicBool::new(false));
    let live_count = Arc::new(AtomicUsize::new(0));
    let (api, masters, framework_id, name, role, failover_timeout) = (
        args.api,
        args.masters.clone(),
        args.framework_id.clone(),
        args.name.clone(),
        args.role.clone(),
        args.failover_timeout,
    );
    let workload = Workload {
        incarnation: recorder.now_ms(),
        args,
        recorder: recorder.clone(),
        next_seq: 0,
        live: BTreeSet::new(),
        unreachable: BTreeSet::new(),
        accepting: Default::default(),
        draining: draining.clone(),
        live_count: live_count.clone(),
    };
    // SIGTERM: launch nothing more, wait for the live tasks to end, then stop.
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("jepsen-workload: cannot catch SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    let framework = FrameworkSettings {
        id: framework_id,
        name,
        role,
        failover_timeout,
    };
    let started = match api {
        ApiKind::Grpc => start_grpc(&masters, framework, workload),
        ApiKind::Mesos => start_mesos(&masters, framework, workload),
    };
    let (run, control) = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("jepsen-workload: --masters: {e}");
            return ExitCode::from(2);
        }
    };
    tokio::select! {
        r = run => {
            return match r {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => { eprintln!("jepsen-workload: {e}"); ExitCode::FAILURE }
                Err(e) => { eprintln!("jepsen-workload: {e}"); ExitCode::FAILURE }
            };
        }
        _ = term.recv() => {}
    }
    draining.store(true, Ordering::Relaxed);
    control.suppress().await;
    let deadline = tokio::time::Instant::now() + drain;
    while live_count.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    control.stop();
    ExitCode::SUCCESS
}

/// The framework to subscribe as.
struct FrameworkSettings {
    /// Resume this framework (after a crash).
    id: Option<String>,
    name: String,
    role: String,
    failover_timeout: f64,
}

/// A driver's run, and what drains and stops it.
type Started = (tokio::task::JoinHandle<Result<(), String>>, Control);

/// The workload on Agora's gRPC API.
fn start_grpc(masters: &str, f: FrameworkSettings, workload: Workload) -> Result<Started, String> {
    let framework = pb::FrameworkInfo {
        id: f.id.unwrap_or_default(),
        name: f.name,
        roles: vec![f.role],
        failover_timeout_seconds: f.failover_timeout,
        ..Default::default()
    };
    let driver = SchedulerDriver::new(masters, framework).map_err(|e| e.to_string())?;
    let handle = driver.handle();
    let run = driver.run(Grpc(workload));
    Ok((
        tokio::spawn(async move { run.await.map_err(|e| e.to_string()) }),
        Control::Grpc(handle),
    ))
}

/// The workload as a partition-aware, multi-role Mesos framework.
fn start_mesos(masters: &str, f: FrameworkSettings, workload: Workload) -> Result<Started, String> {
    use mesos::framework_info::capability::Type as Capability;
    let settings =
        agora_mesos_driver::Settings::discover(Some(masters)).map_err(|e| e.to_string())?;
    let framework = mesos::FrameworkInfo {
        id: f.id.map(|value| mesos::FrameworkId { value }),
        name: f.name,
        user: String::new(),
        roles: vec![f.role],
        failover_timeout: Some(f.failover_timeout),
        capabilities: [Capability::MultiRole, Capability::PartitionAware]
            .into_iter()
            .map(|c| mesos::framework_info::Capability {
                r#type: Some(c as i32),
            })
            .collect(),
        ..Default::default()
    };
    let driver = agora_mesos_driver::Driver::new(settings, framework).map_err(|e| e.to_string())?;
    let handle = driver.handle();
    let run = driver.run(Mesos(workload));
    Ok((
        tokio::spawn(async move { run.await.map_err(|e| e.to_string()) }),
        Control::Mesos(handle),
    ))
}

/// Draining and stopping the driver of either API.
enum Control {
    Grpc(SchedulerHandle),
    Mesos(agora_mesos_driver::Handle),
}

impl Control {
    async fn suppress(&self) {
        match self {
            Control::Grpc(h) => {
                let _ = h.suppress().await;
            }
            Control::Mesos(h) => {
                let _ = h.suppress().await;
            }
        }
    }

    fn stop(&self) {
        match self {
            Control::Grpc(h) => h.stop(),
            Control::Mesos(h) => h.stop(),
        }
    }
}
