//! # What an agent shows of itself
//!
//! Owns the agent's read-only HTTP on its listen address (TLS, as everything else there):
//! - `GET /state`: its id, host name, address, version, resources (total, used, reserved by
//!   role), attributes, isolation, flags, the leader of its session, and its tasks grouped
//!   as Mesos' agent `/state` groups them: `frameworks[].executors[].tasks` (executors
//!   whose process runs) and `completed_executors`, each executor with its sandbox's
//!   `directory` as the sandbox API (`crate::files`) names it,
//!   `/frameworks/FW/executors/TASK/runs/latest`;
//! - `GET /metrics`: Prometheus text (the names are listed in README.md): tasks by state,
//!   executors running, the launch latency (launch received to TASK_RUNNING first sent to
//!   the leader), status updates recorded and sent again (unacknowledged past their retry
//!   interval), unacknowledged updates, registrations and sessions
//!   with the leader, each live task's cgroup usage (cpu seconds, memory bytes) and
//!   sandbox bytes, the sandboxes on disk, collection, and the work dir's disk usage;
//! - `GET /flags` (`{"flags": {NAME: VALUE}}`, as Mesos; secrets never appear: the
//!   credential shows its principal, registry credentials their registries) and
//!   `GET /version` (Mesos' shape, as the master's).
//!
//! Nothing here is authenticated beyond TLS: an agent has no credentials file to check a
//! principal against, so whoever reaches its port reads these (docs/security.md). None of
//! them shows a task's command, environment or output (those stay behind the sandbox
//! API's grants).
//!
//! The [`Observer`] is the event half: [`crate::tasks`] and [`crate::master_link`] tell it
//! when a launch arrives, an update is recorded or sent, a registration or session
//! happens. The rest is read when scraped: tasks from [`crate::tasks::Tasks::views`],
//! cgroups through [`crate::isolation`], sandbox sizes with [`crate::gc::allocated_bytes`]
//! (walked at most every [`SANDBOX_MEASURE_EVERY`]), off the async runtime.
//!
//! What it must not do: change anything, or read a task's files beyond their sizes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_registry::{Resource, Resources, TaskState, Value};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use serde_json::{json, Map, Value as Json};
use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::isolation::Isolation;
use crate::master_link::LinkStatus;
use crate::tasks::{cgroup_key, Tasks};
use crate::{clock, gc, workdir};

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit this build was made from, when known at build time.
pub const GIT_SHA: &str = match option_env!("AGORA_GIT_SHA") {
    Some(sha) => sha,
    None => "unknown",
};

/// Sandbox sizes are walked again only once the last measure is this old.
pub const SANDBOX_MEASURE_EVERY: Duration = Duration::from_secs(10);

/// Buckets of the launch latency, in seconds (a container's pull can take minutes).
const LAUNCH_BUCKETS: [f64; 13] = [
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The agent's event metrics, told by the tasks and the link to the leader.
pub struct Observer {
    registry: Registry,
    started_ms: u64,
    /// When each task's launch arrived, until its TASK_RUNNING (or its end) is sent.
    launches: Mutex<HashMap<(String, String), Instant>>,
    launch_to_running: Histogram,
    tasks_launched: IntCounter,
    status_updates: IntCounterVec,
    status_update_retries: IntCounter,
    registrations: IntCounter,
    sessions: IntCounter,
    session_connected: IntGauge,
}

impl Default for Observer {
    fn default() -> Self {
        Self::new()
    }
}

impl Observer {
    pub fn new() -> Observer {
        let registry = Registry::new();
        fn register<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
            r.register(Box::new(m.clone())).expect("unique metric");
            m
        }
        let counter = |name: &str, help: &str| {
            register(
                &registry,
                IntCounter::new(name, help).expect("valid metric"),
            )
        };
        Observer {
            started_ms: clock::now_ms(),
            launches: Mutex::new(HashMap::new()),
            launch_to_running: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "agora_agent_launch_to_running_seconds",
                        "From a task's launch arriving at this agent to its TASK_RUNNING first sent to the leader",
                    )
                    .buckets(LAUNCH_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            tasks_launched: counter(
                "agora_agent_tasks_launched_total",
                "Tasks whose launch this agent accepted",
            ),
            status_updates: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "agora_agent_status_updates_total",
                        "Status updates checkpointed for the leader (from executors or decided by the agent), by state",
                    ),
                    &["state"],
                )
                .expect("valid metric"),
            ),
            status_update_retries: counter(
                "agora_agent_status_update_retries_total",
                "Status updates sent again because the leader had not acknowledged them within their retry interval (2 s doubling to 60 s)",
            ),
            registrations: counter(
                "agora_agent_registrations_total",
                "Registrations with the leader that succeeded (first and again after a lost session)",
            ),
            sessions: counter(
                "agora_agent_leader_sessions_total",
                "Sessions opened with the leader",
            ),
            session_connected: register(
                &registry,
                IntGauge::new(
                    "agora_agent_leader_session_connected",
                    "1 while a session with the leader is open",
                )
                .expect("valid metric"),
            ),
            registry,
        }
    }

    fn launches(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Instant>> {
        self.launches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A task's launch arrived and was accepted.
    pub fn launch_received(&self, framework_id: &str, task_id: &str) {
        self.tasks_launched.inc();
        self.launches().insert(
            (framework_id.to_string(), task_id.to_string()),
            Instant::now(),
        );
    }

    /// A status update was checkpointed for the leader.
    pub fn update_recorded(&self, state: TaskState) {
        self.status_updates.with_label_values(&[state.name()]).inc();
    }

    /// An update message went to the leader carrying `head` (the oldest unacknowledged
    /// state) and `latest` (the newest): the first carrying TASK_RUNNING ends the task's
    /// launch latency; a terminal one forgets a launch that never ran.
    pub fn update_sent(
        &self,
        framework_id: &str,
        task_id: &str,
        head: TaskState,
        latest: TaskState,
    ) {
        let running = head == TaskState::TaskRunning || latest == TaskState::TaskRunning;
        if !running && !latest.is_terminal() {
            return;
        }
        let key = (framework_id.to_string(), task_id.to_string());
        if let Some(at) = self.launches().remove(&key) {
            if running {
                self.launch_to_running.observe(at.elapsed().as_secs_f64());
            }
        }
    }

    /// `n` unacknowledged updates were sent again.
    pub fn updates_resent(&self, n: usize) {
        self.status_update_retries.inc_by(n as u64);
    }

    /// A registration with the leader succeeded.
    pub fn registered(&self) {
        self.registrations.inc();
    }

    /// A session with the leader opened.
    pub fn session_opened(&self) {
        self.sessions.inc();
        self.session_connected.set(1);
    }

    /// The session with the leader ended.
    pub fn session_ended(&self) {
        self.session_connected.set(0);
    }

    /// Launches observed so far (count, sum of seconds), for tests.
    pub fn launch_latency(&self) -> (u64, f64) {
        (
            self.launch_to_running.get_sample_count(),
            self.launch_to_running.get_sample_sum(),
        )
    }

    fn encode(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding never fails");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

/// One task as the agent knows it, for `/state` and `/metrics`.
#[derive(Clone, Debug)]
pub struct TaskView {
    pub framework_id: String,
    pub task_id: String,
    pub name: String,
    /// Its executor's id as the framework knows it (the task's own for the built-in one).
    pub executor_id: String,
    /// Whether the framework brought its own executor.
    pub custom_executor: bool,
    /// The user it runs as (empty: the agent's).
    pub user: String,
    /// The image it runs from, if any.
    pub image: Option<String>,
    /// Its last state reported by its executor (or decided by the agent).
    pub state: TaskState,
    pub resources: Resources,
    /// Its executor process, while known.
    pub executor_pid: Option<u32>,
    /// Whether its executor runs (from its start until it exits).
    pub executor_running: bool,
    /// Whether its executor is subscribed to the executor API now.
    pub executor_subscribed: bool,
    /// Its status updates the leader has not acknowledged yet.
    pub unacknowledged: usize,
}

impl TaskView {
    /// Whether it still holds resources or a process here.
    pub fn live(&self) -> bool {
        !self.state.is_terminal() || self.executor_running
    }
}

/// The virtual path of a task's sandbox in the sandbox API (`/files/*`).
pub fn sandbox_path(framework_id: &str, task_id: &str) -> String {
    crate::files::sandbox_path(framework_id, task_id)
}

/// What the handlers share.
struct Observe {
    tasks: Tasks,
    status: watch::Receiver<LinkStatus>,
    /// The address the agent listens on.
    listen: String,
    /// The last sandbox sizes measured; also serializes `/metrics` renders.
    sandboxes: Mutex<SandboxSizes>,
}

#[derive(Default)]
struct SandboxSizes {
    measured_at: Option<Instant>,
    /// Allocated bytes of each sandbox on disk, by (framework, task).
    bytes: BTreeMap<(String, String), u64>,
}

/// The routes (`/state`, `/metrics`, `/flags`, `/version`), for the agent's router.
pub fn router(tasks: Tasks, status: watch::Receiver<LinkStatus>, listen: String) -> Router {
    let state = Arc::new(Observe {
        tasks,
        status,
        listen,
        sandboxes: Mutex::new(SandboxSizes::default()),
    });
    Router::new()
        .route("/state", get(state_json))
        .route("/metrics", get(metrics))
        .route("/flags", get(flags_json))
        .route("/version", get(version))
        .with_state(state)
        .layer(axum::middleware::map_response(no_sniff))
}

async fn no_sniff(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

fn json_response(body: &Json) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /version`, in Mesos' shape (as the master's).
pub fn version_json() -> Json {
    json!({
        "version": VERSION,
        "git_sha": GIT_SHA,
        "build_user": "agora",
        "build_time": 0.0,
    })
}

async fn version() -> Response {
    json_response(&version_json())
}

async fn flags_json(State(o): State<Arc<Observe>>) -> Response {
    json_response(&json!({ "flags": flags_map(&flags(
        o.tasks.config(),
        o.tasks.isolation(),
        &o.listen,
    )) }))
}

fn flags_map(flags: &[(String, String)]) -> Json {
    Json::Object(
        flags
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect(),
    )
}

/// The agent's effective flags by name (underscores, as Mesos spells flags). Paths are
/// shown; secrets never: the credential by its principal, registry credentials by their
/// registries.
pub fn flags(config: &AgentConfig, isolation: &Isolation, listen: &str) -> Vec<(String, String)> {
    let path = |p: &std::path::Path| p.display().to_string();
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let images = &config.images;
    let mut out: Vec<(String, String)> = vec![
        ("masters".into(), config.masters.join(",")),
        ("listen".into(), listen.to_string()),
        ("advertise".into(), config.advertise.clone()),
        ("hostname".into(), config.hostname.clone()),
        ("work_dir".into(), path(&config.work_dir)),
        ("resources".into(), config.resources.to_string()),
        (
            "attributes".into(),
            config
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(";"),
        ),
        ("isolation".into(), isolation.kind().to_string()),
        ("cgroups_root".into(), isolation.root_name().to_string()),
        (
            "executor_recovery_timeout".into(),
            d(config.executor_recovery_timeout),
        ),
        (
            "executor_http_port".into(),
            config.executor_http_port.to_string(),
        ),
        ("gc_delay".into(), d(config.gc.delay)),
        (
            "gc_disk_headroom".into(),
            config.gc.disk_headroom.to_string(),
        ),
        (
            "disk_watch_interval".into(),
            d(config.gc.disk_watch_interval),
        ),
        (
            "max_task_pids".into(),
            config.max_task_pids.unwrap_or(0).to_string(),
        ),
        (
            "check_agent_port_range_only".into(),
            config.check_agent_port_range_only.to_string(),
        ),
        (
            "output_max_size".into(),
            config.output.max_bytes.to_string(),
        ),
        ("output_rotations".into(), config.output.keep.to_string()),
        ("image_registry".into(), images.default_registry.clone()),
        ("insecure_registries".into(), images.insecure.join(",")),
        (
            "registry_credentials".into(),
            images
                .credentials
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("container_runtime".into(), path(&images.runtime)),
        (
            "image_gc_threshold".into(),
            images.gc_threshold_bytes.to_string(),
        ),
        (
            "image_provisioner_backend".into(),
            match images.rootfs_backend {
                crate::image::RootfsBackend::Overlay => "overlay",
                crate::image::RootfsBackend::Copy => "copy",
            }
            .to_string(),
        ),
        (
            "allowed_host_volumes".into(),
            images
                .allowed_host_volumes
                .iter()
                .map(|p| path(p))
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("insecure".into(), config.security.insecure.to_string()),
        ("log_level".into(), config.log_level.clone()),
    ];
    if let Some(tls) = &config.security.tls {
        out.push(("tls_cert".into(), path(&tls.cert)));
        out.push(("tls_key".into(), path(&tls.key)));
        out.push(("tls_ca".into(), path(&tls.ca)));
    }
    if let Some(c) = &config.security.credential {
        out.push(("credential_principal".into(), c.principal.clone()));
    }
    out
}

/// Resources as Mesos' JSON shows them: each scalar summed by name, ranges as
/// `"[31000-32000, 33000-33010]"`.
pub fn resources_json(resources: &Resources) -> Json {
    let mut scalars: BTreeMap<String, f64> = BTreeMap::new();
    let mut ranges: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for r in resources.iter() {
        match &r.value {
            Value::Scalar(s) => *scalars.entry(r.name.clone()).or_default() += s.as_f64(),
            Value::Ranges(rs) => ranges
                .entry(r.name.clone())
                .or_default()
                .extend_from_slice(rs.pairs()),
        }
    }
    let mut out = Map::new();
    for (name, amount) in scalars {
        out.insert(name, json!(amount));
    }
    for (name, mut pairs) in ranges {
        pairs.sort_unstable();
        let text = pairs
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect::<Vec<_>>()
            .join(", ");
        out.insert(name, json!(format!("[{text}]")));
    }
    Json::Object(out)
}

/// Reserved resources by role, as Mesos' `reserved_resources`.
fn reserved_json(resources: &Resources) -> Json {
    let mut by_role: BTreeMap<String, Vec<Resource>> = BTreeMap::new();
    for r in resources.iter() {
        if let Some(role) = &r.role {
            by_role.entry(role.clone()).or_default().push(r.clone());
        }
    }
    Json::Object(
        by_role
            .into_iter()
            .map(|(role, rs)| (role, resources_json(&Resources::from(rs))))
            .collect(),
    )
}

fn used(views: &[TaskView]) -> Resources {
    let mut used = Resources::new();
    for t in views.iter().filter(|t| !t.state.is_terminal()) {
        used.add(&t.resources);
    }
    used
}

fn task_json(t: &TaskView, agent_id: &str) -> Json {
    let mut task = json!({
        "id": t.task_id,
        "name": t.name,
        "framework_id": t.framework_id,
        "executor_id": t.executor_id,
        "slave_id": agent_id,
        "agent_id": agent_id,
        "state": t.state.name(),
        "resources": resources_json(&t.resources),
        "user": t.user,
        "unacknowledged_updates": t.unacknowledged,
    });
    if let Some(image) = &t.image {
        task["container"] = json!({
            "type": "MESOS",
            "mesos": {"image": {"type": "DOCKER", "docker": {"name": image}}},
        });
    }
    task
}

fn executor_json(t: &TaskView, agent_id: &str) -> Json {
    let task = task_json(t, agent_id);
    let (tasks, completed) = if t.state.is_terminal() {
        (vec![], vec![task])
    } else {
        (vec![task], vec![])
    };
    json!({
        "id": t.executor_id,
        "name": if t.custom_executor {
            format!("Executor of task {}", t.task_id)
        } else {
            format!("Command Executor (Task: {})", t.task_id)
        },
        "type": if t.custom_executor { "CUSTOM" } else { "DEFAULT" },
        "source": t.task_id,
        "framework_id": t.framework_id,
        "directory": sandbox_path(&t.framework_id, &t.task_id),
        "resources": resources_json(&t.resources),
        "pid": t.executor_pid,
        "subscribed": t.executor_subscribed,
        "tasks": tasks,
        "queued_tasks": [],
        "completed_tasks": completed,
    })
}

/// The `/state` document of an agent with `views` for tasks.
pub fn state_document(
    tasks: &Tasks,
    status: &LinkStatus,
    listen: &str,
    views: &[TaskView],
    observer: &Observer,
) -> Json {
    let config = tasks.config();
    let agent_id = status.agent_id.clone().unwrap_or_default();
    let mut frameworks: BTreeMap<&str, (Vec<Json>, Vec<Json>)> = BTreeMap::new();
    for t in views {
        let entry = frameworks.entry(t.framework_id.as_str()).or_default();
        let executor = executor_json(t, &agent_id);
        if t.executor_running || !t.state.is_terminal() {
            entry.0.push(executor);
        } else {
            entry.1.push(executor);
        }
    }
    let frameworks: Vec<Json> = frameworks
        .into_iter()
        .map(|(id, (executors, completed))| {
            json!({
                "id": id,
                "executors": executors,
                "completed_executors": completed,
            })
        })
        .collect();
    let attributes: Map<String, Json> = config
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let unacknowledged: usize = views.iter().map(|t| t.unacknowledged).sum();
    json!({
        "version": VERSION,
        "git_sha": GIT_SHA,
        "start_time": observer.started_ms as f64 / 1000.0,
        "id": agent_id,
        "pid": format!("slave(1)@{}", config.advertise),
        "hostname": config.hostname,
        "address": config.advertise,
        "leader": status.leader,
        "master_hostname": status.leader.as_deref().and_then(|l| l.rsplit_once(':')).map(|(h, _)| h),
        "resources": resources_json(&config.resources),
        "reserved_resources": reserved_json(&config.resources),
        "used_resources": resources_json(&used(views)),
        "attributes": attributes,
        "isolation": {
            "kind": tasks.isolation().kind(),
            "cgroups_root": tasks.isolation().root_name(),
        },
        "unacknowledged_updates": unacknowledged,
        "flags": flags_map(&flags(config, tasks.isolation(), listen)),
        "frameworks": frameworks,
        "completed_frameworks": [],
    })
}

async fn state_json(State(o): State<Arc<Observe>>) -> Response {
    let views = o.tasks.views();
    let status = o.status.borrow().clone();
    json_response(&state_document(
        &o.tasks,
        &status,
        &o.listen,
        &views,
        o.tasks.observer(),
    ))
}

async fn metrics(State(o): State<Arc<Observe>>) -> Response {
    // cgroup files and sandbox walks: off the runtime.
    match tokio::task::spawn_blocking(move || render_metrics(&o)).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "/metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Prometheus text for what is read when scraped.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", help.replace('\\', "\\\\"));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let value = if value.is_nan() {
            "NaN".to_string()
        } else if value.is_infinite() {
            if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
        } else {
            value.to_string()
        };
        let _ = writeln!(self.0, " {value}");
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Allocated bytes of every sandbox under `work_dir`, by (framework, task).
fn measure_sandboxes(work_dir: &std::path::Path) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    let Ok(frameworks) = std::fs::read_dir(workdir::sandboxes_dir(work_dir)) else {
        return out;
    };
    for fw in frameworks.flatten() {
        if !fw.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(sandboxes) = std::fs::read_dir(fw.path()) else {
            continue;
        };
        for sb in sandboxes.flatten() {
            if !sb.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            out.insert(
                (
                    fw.file_name().to_string_lossy().into_owned(),
                    sb.file_name().to_string_lossy().into_owned(),
                ),
                gc::allocated_bytes(&sb.path()),
            );
        }
    }
    out
}

fn render_metrics(o: &Observe) -> String {
    let mut sizes = o.sandboxes.lock().unwrap_or_else(|p| p.into_inner());
    let config = o.tasks.config();
    if sizes
        .measured_at
        .is_none_or(|at| at.elapsed() >= SANDBOX_MEASURE_EVERY)
    {
        sizes.bytes = measure_sandboxes(&config.work_dir);
        sizes.measured_at = Some(Instant::now());
    }
    let views = o.tasks.views();
    let isolation = o.tasks.isolation();
    let mut text = Text::default();

    text.family(
        "agora_agent_tasks",
        "gauge",
        "Tasks this agent knows (it keeps every task it received), by their last state",
    );
    let mut by_state: BTreeMap<&'static str, usize> = TaskState::ALL
        .iter()
        .filter(|s| **s != TaskState::TaskUnknown)
        .map(|s| (s.name(), 0))
        .collect();
    for t in &views {
        *by_state.entry(t.state.name()).or_default() += 1;
    }
    for (state, n) in &by_state {
        text.sample("agora_agent_tasks", &[("state", state)], *n as f64);
    }
    text.single(
        "agora_agent_executors_running",
        "gauge",
        "Executor processes running (from their start until they exit)",
        views.iter().filter(|t| t.executor_running).count() as f64,
    );
    text.single(
        "agora_agent_executors_subscribed",
        "gauge",
        "Executors subscribed to the executor API now",
        views.iter().filter(|t| t.executor_subscribed).count() as f64,
    );
    text.single(
        "agora_agent_unacknowledged_updates",
        "gauge",
        "Status updates checkpointed and not yet acknowledged by the leader",
        views.iter().map(|t| t.unacknowledged).sum::<usize>() as f64,
    );
    let status = o.status.borrow().clone();
    text.single(
        "agora_agent_registered",
        "gauge",
        "1 once this agent has an id from the leader",
        if status.agent_id.is_some() { 1.0 } else { 0.0 },
    );

    // Resources: what it offers and what its live tasks hold.
    let used = used(&views);
    let scalar_names: Vec<String> = {
        let mut names: Vec<String> = config
            .resources
            .iter()
            .filter(|r| matches!(r.value, Value::Scalar(_)))
            .map(|r| r.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    text.family(
        "agora_agent_resources",
        "gauge",
        "Scalar resources this agent offers (cpus, mem in MB, disk in MB, ...)",
    );
    for name in &scalar_names {
        text.sample(
            "agora_agent_resources",
            &[("resource", name)],
            config.resources.scalar_total(name).as_f64(),
        );
    }
    text.family(
        "agora_agent_resources_used",
        "gauge",
        "Scalar resources held by this agent's tasks that have not ended",
    );
    for name in &scalar_names {
        text.sample(
            "agora_agent_resources_used",
            &[("resource", name)],
            used.scalar_total(name).as_f64(),
        );
    }

    // Each live task's cgroup and sandbox.
    let live: Vec<&TaskView> = views.iter().filter(|t| t.live()).collect();
    let mut cpu = Text::default();
    let mut mem = Text::default();
    let mut sandbox = Text::default();
    let mut cpus_limit = Text::default();
    let mut mem_limit = Text::default();
    for t in &live {
        let labels = [
            ("framework_id", t.framework_id.as_str()),
            ("task_id", t.task_id.as_str()),
        ];
        if let Some(cg) = isolation.recover(&cgroup_key(&t.framework_id, &t.task_id)) {
            if let Some(s) = cg.cpu_usage_seconds() {
                cpu.sample("agora_agent_task_cpu_seconds_total", &labels, s);
            }
            if let Some(b) = cg.memory_usage() {
                mem.sample("agora_agent_task_memory_bytes", &labels, b as f64);
            }
        }
        let cpus = crate::tasks::scalar(&t.resources, "cpus");
        if cpus > 0.0 {
            cpus_limit.sample("agora_agent_task_cpus_limit", &labels, cpus);
        }
        let mb = crate::tasks::scalar(&t.resources, "mem");
        if mb > 0.0 {
            mem_limit.sample(
                "agora_agent_task_memory_limit_bytes",
                &labels,
                mb * 1024.0 * 1024.0,
            );
        }
        if let Some(b) = sizes
            .bytes
            .get(&(t.framework_id.clone(), t.task_id.clone()))
        {
            sandbox.sample("agora_agent_task_sandbox_bytes", &labels, *b as f64);
        }
    }
    for (name, kind, help, samples) in [
        (
            "agora_agent_task_cpu_seconds_total",
            "counter",
            "CPU time used by a live task's cgroup (its executor's too, for a framework's own executor)",
            cpu,
        ),
        (
            "agora_agent_task_memory_bytes",
            "gauge",
            "Memory used by a live task's cgroup (page cache included, as the kernel counts it)",
            mem,
        ),
        (
            "agora_agent_task_memory_limit_bytes",
            "gauge",
            "A live task's mem resource, in bytes",
            mem_limit,
        ),
        (
            "agora_agent_task_cpus_limit",
            "gauge",
            "A live task's cpus resource",
            cpus_limit,
        ),
        (
            "agora_agent_task_sandbox_bytes",
            "gauge",
            "Bytes a live task's sandbox holds on disk (measured at most every 10 s)",
            sandbox,
        ),
    ] {
        text.family(name, kind, help);
        text.0.push_str(&samples.0);
    }

    // Sandboxes on disk, their collection, the work dir's disk.
    text.single(
        "agora_agent_sandboxes",
        "gauge",
        "Sandboxes on disk (of live and finished tasks)",
        sizes.bytes.len() as f64,
    );
    text.single(
        "agora_agent_sandboxes_bytes",
        "gauge",
        "Bytes every sandbox on disk holds (measured at most every 10 s)",
        sizes.bytes.values().sum::<u64>() as f64,
    );
    drop(sizes);
    let collector = o.tasks.collector();
    let (removed, freed) = collector.totals();
    text.single(
        "agora_agent_gc_sandboxes_scheduled",
        "gauge",
        "Finished sandboxes scheduled for removal",
        collector.scheduled().len() as f64,
    );
    text.single(
        "agora_agent_gc_sandboxes_removed_total",
        "counter",
        "Finished sandboxes removed since the agent started",
        removed as f64,
    );
    text.single(
        "agora_agent_gc_bytes_freed_total",
        "counter",
        "Bytes the removed sandboxes held",
        freed as f64,
    );
    if let Ok(usage) = gc::disk_usage(&config.work_dir) {
        text.single(
            "agora_agent_work_dir_disk_usage_ratio",
            "gauge",
            "Fraction of the work dir's filesystem in use",
            usage,
        );
    }
    let observer = o.tasks.observer();
    text.single(
        "agora_agent_start_time_seconds",
        "gauge",
        "When this agent process started, seconds since the Unix epoch",
        observer.started_ms as f64 / 1000.0,
    );
    text.family(
        "agora_agent_info",
        "gauge",
        "This agent's version, commit and isolation",
    );
    text.sample(
        "agora_agent_info",
        &[
            ("version", VERSION),
            ("git_sha", GIT_SHA),
            ("isolation", isolation.kind()),
        ],
        1.0,
    );
    let mut out = observer.encode();
    out.push_str(&text.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_latency_ends_at_the_first_running_sent_and_a_task_that_never_ran_is_forgotten() {
        let o = Observer::new();
        o.launch_received("f", "a");
        o.launch_received("f", "b");
        o.update_sent("f", "a", TaskState::TaskStarting, TaskState::TaskStarting);
        assert_eq!(o.launch_latency().0, 0);
        // TASK_RUNNING as the newest state behind an unacknowledged TASK_STARTING counts.
        o.update_sent("f", "a", TaskState::TaskStarting, TaskState::TaskRunning);
        assert_eq!(o.launch_latency().0, 1);
        o.update_sent("f", "a", TaskState::TaskRunning, TaskState::TaskRunning);
        assert_eq!(o.launch_latency().0, 1, "observed once");
        o.update_sent("f", "b", TaskState::TaskStarting, TaskState::TaskFailed);
        o.update_sent("f", "b", TaskState::TaskRunning, TaskState::TaskFailed);
        assert_eq!(
            o.launch_latency().0,
            1,
            "b ended before it was seen running"
        );
        assert!(o.launches().is_empty());
        o.updates_resent(3);
        o.update_recorded(TaskState::TaskRunning);
        let text = o.encode();
        assert!(
            text.contains("agora_agent_status_update_retries_total 3"),
            "{text}"
        );
        assert!(
            text.contains("agora_agent_status_updates_total{state=\"TASK_RUNNING\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("agora_agent_launch_to_running_seconds_count 1"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped_and_values_spelled_as_prometheus_reads_them() {
        let mut t = Text::default();
        t.sample("m", &[("a", "x\"y\\z\nw")], 1.5);
        t.sample("m", &[], f64::INFINITY);
        t.sample("m", &[], f64::NAN);
        assert_eq!(t.0, "m{a=\"x\\\"y\\\\z\\nw\"} 1.5\nm +Inf\nm NaN\n");
    }

    #[test]
    fn resources_show_as_mesos_json_does() {
        let r =
            Resources::parse("cpus:2;cpus(web):1;mem:512;ports:[31000-31005,32000-32000]").unwrap();
        assert_eq!(
            resources_json(&r),
            json!({"cpus": 3.0, "mem": 512.0, "ports": "[31000-31005, 32000-32000]"})
        );
        assert_eq!(reserved_json(&r), json!({"web": {"cpus": 1.0}}));
    }
}
