//! The agent's tasks: launching each one through its own command-executor process, the
//! executor API (`agora.v1.Executor`) those processes talk to, and reliable delivery of
//! status updates to the leader.
//!
//! Reliability: an executor's update is appended to the task's journal and fsynced before
//! the executor hears it is checkpointed. Per task, updates go to the master strictly in
//! order and pipelined: each goes out as soon as it is checkpointed, up to
//! [`UPDATES_IN_FLIGHT`] unacknowledged ones per task (the master records a task's updates
//! one after the other in arrival order, so its framework hears them in order), so
//! TASK_RUNNING does not wait for TASK_STARTING's acknowledgement to come back from the
//! framework (Mesos' agent sends one at a time). A further update waits for a place in
//! that window, except a terminal one, which goes out at once as the `latest_state` of
//! the newest update in flight (sent again), so the master frees the task's resources. Acknowledgements are
//! cumulative: the framework hears a task's updates in order, so one acknowledgement
//! covers its update and every earlier one. When the in-flight updates have gone
//! unacknowledged for their retry interval ([`RESEND_MIN`], doubling to [`RESEND_MAX`],
//! as Mesos' agent retries updates; never on a tick just after they went out), and at
//! once on a new session, the newest of them is sent again, carrying the newest state
//! queued: the framework may have heard the older ones already, and one of them heard
//! again after it would take the task back to an earlier state, so an unacknowledged
//! update superseded by a later one may go unheard, never the newest (a task's end is
//! always its newest).
//!
//! Both transports of the executor API (gRPC [`ExecutorApi`] and Mesos'
//! [`crate::mesos_executor`]) authenticate a call, then make it through the same
//! functions here (`subscribe_executor`, `executor_update`, `executor_message`).
//! Executors run in their own session (setsid), so they and their tasks outlive the agent; a restarted agent recovers tasks
//! and unacknowledged updates from its checkpoints and waits for its executors to subscribe
//! again. An executor that is gone without having reported a terminal state gets one from
//! the agent (TASK_FAILED), so every task ends. An executor whose agent stays away for
//! `--executor-recovery-timeout` kills its task and exits (`agora_driver::ExecutorDriver`).
//!
//! Cgroups: the built-in executor runs its task in the task's cgroup and removes it when
//! the task has exited. A framework's own executor runs, with everything it starts, in the
//! task's cgroup (created here), under `agora-executor --custom-executor`, which stays
//! outside it and removes it once the executor has exited, so the cgroup goes even when
//! the agent is gone by then. When a recovering agent starts, every cgroup under its
//! `--cgroups-root` that belongs to no recovered task is removed.
//!
//! Executor tokens: every executor gets a random 256-bit token (OS randomness, 64 hex
//! digits) in `AGORA_EXECUTOR_TOKEN`, bound to its framework and executor id, kept in memory
//! and in its task's checkpoint (0600) while it runs, so a restarted agent still accepts it,
//! and forgotten when it exits. The executor API ([`ExecutorApi`]) answers only calls
//! carrying a known token (`authorization: Bearer <token>`, compared in constant time;
//! Mesos' loopback executor API also takes a caller whose socket belongs to processes in
//! the executor's task cgroup, [`Tasks::executor_by_pids`]), and only about that executor's framework, executor id and task: a task, or anything else
//! on the host that reaches the agent's port, cannot report, subscribe or send messages for
//! another executor. The built-in executor does not pass its token on to its task.
//!
//! Sandboxes: a task's sandbox is finished once its executor has exited, the task is
//! terminal and every one of its status updates has been acknowledged by the master; only
//! then is it scheduled for removal, `--gc-delay` later or sooner under disk pressure
//! ([`crate::gc`]). This is checked when an executor exits, when an acknowledgement
//! empties a task's queue, and, after a restart, for every recovered task (scheduled for
//! its checkpointed finish time, or its sandbox's modification time).
//!
//! Users: a task naming a user (`TaskInfo.user`, resolved by the master) runs as that
//! user, and so does a framework's own executor ([`crate::user`]); its sandbox is private
//! to that user ([`crate::workdir`]). The built-in executor and the custom-executor wrapper
//! stay with the agent's user (they manage the task's cgroups) and switch the task, or the
//! framework's executor, after it has joined its cgroups. An unknown user fails the task
//! (`unknown user "NAME"`); an agent that is not root runs tasks only as itself.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_proto::v1 as pb;
use agora_proto::v1::executor_server::Executor as ExecutorService;
use agora_registry::{Resources, TaskState, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::checkpoint::{Checkpoints, TaskRecord, Update};
use crate::config::AgentConfig;
use crate::gc::{self, policy::Sandbox};
use crate::isolation::{Isolation, Limits};
use crate::observe::{Observer, TaskView};
use crate::user::RunAs;
use crate::{clock, convert, user, workdir};

/// Default grace period between SIGTERM and SIGKILL.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);

/// `agora-executor --custom-executor COMMAND` runs a framework's own executor command
/// (`/bin/sh -c COMMAND`) in the task's cgroup and removes the cgroup once it has exited.
pub const CUSTOM_EXECUTOR_FLAG: &str = "--custom-executor";

/// The user `agora-executor --custom-executor` runs the framework's executor as (set only
/// when the task names one).
pub const ENV_TASK_USER: &str = "AGORA_TASK_USER";

/// `agora-executor --custom-executor` fetches these files (JSON, [`crate::fetch::FetchUri`]s)
/// into the sandbox before it starts the framework's executor.
pub const ENV_FETCH_URIS: &str = "AGORA_FETCH_URIS";

/// Where `agora-executor --custom-executor` writes why a fetch failed (in the task's
/// private meta dir; the agent fails the task with it).
pub const ENV_FETCH_FAILURE: &str = "AGORA_FETCH_FAILURE";

/// The port ranges whose ports are checked (JSON `[[begin, end], ...]`: the agent's own,
/// with `--check-agent-port-range-only`; unset: every port), for the built-in executor.
pub const ENV_CHECKED_PORTS: &str = "AGORA_CHECKED_PORTS";

/// A framework's executor's task's resources (Mesos text, the executor's own included),
/// for its wrapper's checks of disk and ports.
pub const ENV_TASK_RESOURCES: &str = "AGORA_TASK_RESOURCES";

/// The most processes a task may have (`--max-task-pids`; 0: no limit), for the built-in
/// executor.
pub const ENV_MAX_TASK_PIDS: &str = "AGORA_MAX_TASK_PIDS";
/// The size at which a task's stdout and stderr rotate (bytes; 0: never), for the executor.
pub const ENV_OUTPUT_MAX_SIZE: &str = "AGORA_OUTPUT_MAX_SIZE";
/// How many rotated files of each are kept, for the executor.
pub const ENV_OUTPUT_ROTATIONS: &str = "AGORA_OUTPUT_ROTATIONS";

/// The file name of [`ENV_FETCH_FAILURE`].
const FETCH_FAILURE_FILE: &str = "fetch.failure";

/// What every call to the executor API without a valid token is told (never which part
/// was wrong).
const TOKEN_REQUIRED: &str = "executor token required";

/// The agent's own secrets and identity in its environment (its flags and client
/// settings), which executors and tasks must not inherit.
const AGENT_ONLY_ENV: [&str; 11] = [
    "AGORA_SECRET",
    "AGORA_PRINCIPAL",
    "AGORA_CREDENTIAL",
    "AGORA_CONFIG",
    "AGORA_CERT",
    "AGORA_KEY",
    "AGORA_CA",
    "AGORA_TLS_CERT",
    "AGORA_TLS_KEY",
    "AGORA_TLS_CA",
    "AGORA_INSECURE",
];

type Key = (String, String);
type EventTx = mpsc::Sender<Result<pb::ExecutorEvent, Status>>;

/// A grace period from the wire: 0 means the agent's default.
fn grace_period(ms: u64) -> Duration {
    if ms > 0 {
        Duration::from_millis(ms)
    } else {
        DEFAULT_KILL_GRACE
    }
}

struct TaskEntry {
    record: TaskRecord,
    resources: Resources,
    /// Last state reported by its executor (or decided by the agent).
    state: TaskState,
    /// The executor's event stream, while it is subscribed.
    executor: Option<EventTx>,
    /// The executor process.
    executor_pid: Option<u32>,
    /// Whether the executor has been given the task (a restarted executor has it).
    launched: bool,
    /// A kill asked for before the executor subscribed.
    pending_kill: Option<Duration>,
    /// The executor's token, while it runs.
    token: Option<String>,
}

#[derive(Default)]
struct Inner {
    tasks: BTreeMap<Key, TaskEntry>,
    /// Unacknowledged updates per task, oldest first; the first [`UPDATES_IN_FLIGHT`] are
    /// in flight.
    outbox: BTreeMap<Key, VecDeque<Update>>,
    /// The current session's outbound channel to the leader.
    session: Option<mpsc::Sender<pb::AgentMessage>>,
    /// When each task's in-flight updates (from its outbox head) are due to be sent again.
    resend: BTreeMap<Key, Resend>,
}

/// Unacknowledged updates of one task sent to the master at once. A task has a handful
/// in a life (STARTING, RUNNING, its end); an executor reporting a stream of updates
/// (health checks) has its later ones wait for acknowledgements.
pub const UPDATES_IN_FLIGHT: usize = 8;

/// First wait before an unacknowledged update is sent again.
pub const RESEND_MIN: Duration = Duration::from_secs(2);
/// Longest wait between two sends of the same update.
pub const RESEND_MAX: Duration = Duration::from_secs(60);

/// The retry schedule of one task's in-flight update, as Mesos' agent retries status
/// updates (10 s doubling to 10 min there; [`RESEND_MIN`] doubling to [`RESEND_MAX`]
/// here): an update is sent again only once it has gone unacknowledged for the current
/// interval, so a framework does not see an update twice because it was sent just before
/// a periodic tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resend {
    sent_at: Instant,
    interval: Duration,
}

impl Resend {
    /// Just sent for the first time.
    pub(crate) fn sent(now: Instant) -> Resend {
        Resend {
            sent_at: now,
            interval: RESEND_MIN,
        }
    }

    /// Whether it has gone unacknowledged long enough to be sent again.
    pub(crate) fn due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.sent_at) >= self.interval
    }

    /// Sent again at `now`: the next wait is twice as long, up to [`RESEND_MAX`].
    pub(crate) fn resent(&mut self, now: Instant) {
        self.sent_at = now;
        self.interval = (self.interval * 2).min(RESEND_MAX);
    }
}

impl Inner {
    /// The task whose executor a framework names: by the task's id (Agora's executors),
    /// else by the id the framework gave its own executor (Mesos'), the newest such task
    /// whose executor runs.
    fn executor_key(&self, framework_id: &str, executor_id: &str) -> Option<Key> {
        let key = (framework_id.to_string(), executor_id.to_string());
        if self.tasks.contains_key(&key) {
            return Some(key);
        }
        self.tasks
            .iter()
            .filter(|((f, _), t)| {
                f == framework_id
                    && t.record.executor_id.as_deref() == Some(executor_id)
                    && t.token.is_some()
            })
            .map(|(k, _)| k.clone())
            .next_back()
    }

    /// The head of `key`'s outbox went out (for the first time) at `now`.
    fn head_sent(&mut self, key: &Key, now: Instant) {
        if self.outbox.get(key).is_some_and(|q| !q.is_empty()) {
            self.resend.insert(key.clone(), Resend::sent(now));
        } else {
            self.resend.remove(key);
        }
    }

    /// The messages sending again the in-flight updates due at `now` (each task's then
    /// wait twice as long). Tasks with no schedule yet (recovered before any session) are
    /// due.
    fn due_for_resend(&mut self, now: Instant) -> Vec<pb::AgentMessage> {
        let mut out = Vec::new();
        for (key, q) in &self.outbox {
            if q.is_empty() {
                continue;
            }
            match self.resend.get_mut(key) {
                Some(r) if !r.due(now) => continue,
                Some(r) => r.resent(now),
                None => {
                    self.resend.insert(key.clone(), Resend::sent(now));
                }
            }
            out.extend(resend_msg(q));
        }
        out
    }
}

/// The agent's tasks. Cheap to clone.
#[derive(Clone)]
pub struct Tasks {
    inner: Arc<Mutex<Inner>>,
    checkpoints: Checkpoints,
    config: Arc<AgentConfig>,
    agent_id: Arc<Mutex<Option<String>>>,
    executor_binary: PathBuf,
    isolation: Arc<Isolation>,
    /// Finished sandboxes, scheduled for removal.
    gc: gc::Collector,
    /// The loopback address of the Mesos executor API (`MESOS_AGENT_ENDPOINT`), once bound.
    executor_http: Arc<Mutex<Option<std::net::SocketAddr>>>,
    /// What `/metrics` counts as it happens ([`crate::observe`]).
    observer: Arc<Observer>,
}

/// An executor's subscription: its events, and what it needs to know of its task.
pub struct Subscription {
    pub events: mpsc::Receiver<Result<pb::ExecutorEvent, Status>>,
    pub record: TaskRecord,
    pub agent_id: String,
}

/// The message that sends a task's in-flight updates again: the newest of them (the last
/// of its first [`UPDATES_IN_FLIGHT`]), carrying the newest state queued.
pub(crate) fn resend_msg(q: &VecDeque<Update>) -> Option<pb::AgentMessage> {
    let newest = q.get(q.len().min(UPDATES_IN_FLIGHT).checked_sub(1)?)?;
    let latest = q.back().map_or(newest.state, |u| u.state);
    Some(convert::update_message(newest, latest))
}

/// The messages of every update of a task sent at once, oldest first (a simulated agent's
/// task, all of whose updates are decided at once).
pub(crate) fn all_msgs(q: &VecDeque<Update>) -> Vec<pb::AgentMessage> {
    let latest = q.back().map(|u| u.state);
    q.iter()
        .map(|u| convert::update_message(u, latest.unwrap_or(u.state)))
        .collect()
}

/// The states a message for a task's outbox carries: its head's and the newest queued.
fn carried(q: &VecDeque<Update>) -> Option<(TaskState, TaskState)> {
    Some((q.front()?.state, q.back()?.state))
}

use agora_security::credentials::constant_time_eq;

/// A new executor token: 256 bits from the OS's randomness, as 64 hex digits.
fn new_token() -> Result<String, String> {
    Ok(agora_security::credentials::random_secret())
}

/// The token of an `authorization: Bearer <token>` header, if there is one.
fn bearer_token(metadata: &tonic::metadata::MetadataMap) -> Option<&[u8]> {
    let value = metadata.get("authorization")?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

/// Whether a process is alive and not a zombie.
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.chars().next()))
        .flatten()
        .is_some_and(|state| state != 'Z' && state != 'X')
}

impl Tasks {
    /// Loads the checkpoints of a (re)started agent. `isolation` is "cgroups" or "none",
    /// passed on to executors.
    pub fn recover(
        config: Arc<AgentConfig>,
        isolation: Arc<Isolation>,
    ) -> Result<Tasks, crate::checkpoint::CheckpointError> {
        workdir::secure(&config.work_dir).map_err(|e| crate::checkpoint::CheckpointError {
            path: config.work_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let checkpoints = Checkpoints::new(&config.work_dir);
        let executor_binary = config.executor_binary.clone();
        let tasks = Tasks {
            inner: Arc::new(Mutex::new(Inner::default())),
            checkpoints: checkpoints.clone(),
            config,
            agent_id: Arc::new(Mutex::new(None)),
            executor_binary,
            isolation,
            gc: gc::Collector::default(),
            executor_http: Arc::new(Mutex::new(None)),
            observer: Arc::new(Observer::new()),
        };
        let mut inner = tasks.lock();
        // Tasks whose record is lost: failed once recovery is done.
        let mut lost = Vec::new();
        for (record, journal) in checkpoints.tasks()? {
            let key = (record.framework_id.clone(), record.task_id.clone());
            let state = journal.last_state().unwrap_or(TaskState::TaskStaging);
            let mut executor_pid: Option<u32> =
                std::fs::read_to_string(tasks.meta_dir(&key).join("executor.pid"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
            for damage in &journal.damage {
                tracing::error!(framework = %key.0, task = %key.1, %damage, "damaged checkpoint");
            }
            if journal.record_lost && !state.is_terminal() {
                // Without its record the agent cannot account for the task or supervise
                // it: its executor is stopped and the task failed, saying why, rather
                // than left running unaccounted for (or the agent refusing to start).
                if let Some(pid) = executor_pid.take().filter(|p| process_alive(*p)) {
                    // SAFETY: kill(2) on the executor's own process group (it called setsid).
                    unsafe {
                        libc::kill(-(pid as i32), libc::SIGKILL);
                    }
                }
                lost.push((key.clone(), journal.damage.join("; ")));
            }
            if !journal.unacknowledged.is_empty() {
                inner
                    .outbox
                    .insert(key.clone(), journal.unacknowledged.into_iter().collect());
            }
            // Its executor may still run and subscribe again with it.
            let token = checkpoints.executor_token(&key.0, &key.1);
            inner.tasks.insert(
                key,
                TaskEntry {
                    resources: Resources::parse(&record.resources).unwrap_or_default(),
                    record,
                    state,
                    executor: None,
                    executor_pid,
                    // Still TASK_STAGING: its executor reported nothing, and may not have
                    // it (this agent died between starting it and giving it the task). It
                    // gets the task when it subscribes unless it names it as its own.
                    launched: state != TaskState::TaskStaging,
                    pending_kill: None,
                    token,
                },
            );
        }
        drop(inner);
        // Failed before the cgroups still needed are counted: a failed task's go.
        for (key, damage) in lost {
            tasks.agent_update(
                &key,
                TaskState::TaskFailed,
                format!("the agent's checkpoint of this task is damaged ({damage}); its executor was stopped"),
            );
        }
        let inner = tasks.lock();
        let live = inner
            .tasks
            .values()
            .filter(|t| !t.state.is_terminal())
            .count();
        // The cgroups still needed: of tasks not ended, and of ended tasks whose executor
        // still runs (it removes its task's cgroup itself).
        let keep: std::collections::BTreeSet<String> = inner
            .tasks
            .iter()
            .filter(|(_, t)| !t.state.is_terminal() || t.executor_pid.is_some_and(process_alive))
            .map(|((f, t), _)| cgroup_key(f, t))
            .collect();
        let finished: Vec<Key> = inner
            .tasks
            .keys()
            .filter(|key| sandbox_finished(&inner, key))
            .cloned()
            .collect();
        drop(inner);
        if live > 0 {
            tracing::info!(live, "recovered tasks from checkpoints");
        }
        tasks.remove_stale_cgroups(&keep);
        for key in crate::image::container_keys(&tasks.config.images) {
            if !keep.contains(&key) {
                crate::image::remove_container(&tasks.config.images, &key);
            }
        }
        // Network namespaces of containers of no live task: this agent's tasks, or
        // another agent's on this host whose executors are gone (no live task key of
        // this agent names them, and no process is in them).
        let live_netns: std::collections::BTreeSet<String> = keep
            .iter()
            .map(|k| crate::image::network::netns_name(k))
            .collect();
        for name in crate::image::network::namespaces() {
            if !live_netns.contains(&name) && crate::image::network::is_unused(&name) {
                crate::image::network::remove_namespace(&name);
            }
        }
        tasks.schedule_recovered_sandboxes(&finished);
        Ok(tasks)
    }

    /// Schedules again the finished sandboxes still on disk of the tasks a restarted agent
    /// recovered, for their checkpointed finish time (else their modification time).
    fn schedule_recovered_sandboxes(&self, finished: &[Key]) {
        let mut scheduled = 0;
        for key in finished {
            let path = workdir::sandbox_dir(&self.config.work_dir, &key.0, &key.1);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue; // collected already, or never created
            };
            if !meta.is_dir() {
                continue;
            }
            let finished_at_ms = self
                .checkpoints
                .sandbox_finished(&key.0, &key.1)
                .or_else(|| {
                    let mtime = meta.modified().ok()?;
                    clock::ms_since_epoch(mtime)
                })
                .unwrap_or_else(clock::now_ms);
            tracing::debug!(framework = %key.0, task = %key.1, path = %path.display(), finished_at_ms, "finished sandbox scheduled again");
            self.gc.schedule(Sandbox {
                path,
                framework_id: key.0.clone(),
                executor_id: key.1.clone(),
                finished_at_ms,
            });
            scheduled += 1;
        }
        if scheduled > 0 {
            tracing::info!(
                scheduled,
                "finished sandboxes found on disk scheduled for removal again"
            );
        }
    }

    /// The schedule of finished sandboxes (the agent runs [`gc::run`] on it).
    pub fn collector(&self) -> gc::Collector {
        self.gc.clone()
    }

    /// Schedules the sandbox of a task for removal if it is finished (see
    /// [`sandbox_finished`]) and still there, checkpointing when it finished.
    fn schedule_if_finished(&self, key: &Key) {
        if !sandbox_finished(&self.lock(), key) {
            return;
        }
        let path = workdir::sandbox_dir(&self.config.work_dir, &key.0, &key.1);
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            return; // it never got one (its launch failed before)
        }
        let now = clock::now_ms();
        if let Err(e) = self.checkpoints.save_sandbox_finished(&key.0, &key.1, now) {
            tracing::warn!(framework = %key.0, task = %key.1, error = %e, "cannot checkpoint when the sandbox finished; after a restart its modification time stands in");
        }
        tracing::info!(
            framework = %key.0,
            task = %key.1,
            path = %path.display(),
            delay = %humantime::format_duration(self.config.gc.delay),
            "sandbox finished; scheduled for removal"
        );
        self.gc.schedule(Sandbox {
            path,
            framework_id: key.0.clone(),
            executor_id: key.1.clone(),
            finished_at_ms: now,
        });
    }

    /// Removes every cgroup under the agent's cgroup root but those in `keep` (left by
    /// tasks this agent no longer knows, or knows ended), saying each in the log.
    fn remove_stale_cgroups(&self, keep: &std::collections::BTreeSet<String>) {
        for outcome in self.isolation.remove_stale(|key| keep.contains(key)) {
            match outcome {
                Ok(path) => {
                    tracing::info!(path = %path.display(), "removed a stale cgroup (no recovered task)")
                }
                Err(e) => tracing::warn!(error = %e, "cannot remove a stale cgroup"),
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn meta_dir(&self, key: &Key) -> PathBuf {
        self.config
            .work_dir
            .join("meta/frameworks")
            .join(&key.0)
            .join("tasks")
            .join(&key.1)
    }

    pub fn set_agent_id(&self, id: &str) {
        *self.agent_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.to_string());
    }

    /// Every task with its last state, for re-registration.
    pub fn report(&self) -> Vec<pb::TaskReport> {
        self.lock()
            .tasks
            .iter()
            .map(|((f, t), e)| convert::task_report(f, t, e.state))
            .collect()
    }

    /// A new session with the leader: every task's in-flight updates go out on it again
    /// (as their newest, [`resend_msg`]).
    pub fn session_opened(&self, tx: mpsc::Sender<pb::AgentMessage>) {
        let mut inner = self.lock();
        let now = Instant::now();
        let keys: Vec<Key> = inner.outbox.keys().cloned().collect();
        for key in keys {
            if let Some(msg) = inner.outbox.get(&key).and_then(resend_msg) {
                let _ = tx.try_send(msg);
                self.observe_sent(&key, inner.outbox.get(&key).and_then(carried));
                inner.head_sent(&key, now);
            }
        }
        inner.session = Some(tx);
    }

    pub fn session_closed(&self) {
        self.lock().session = None;
    }

    /// Checkpoints `update` and queues it for the master. Returns once it is on disk.
    fn record(&self, update: Update) -> Result<(), Status> {
        self.checkpoints
            .record_update(&update)
            .map_err(|e| Status::internal(e.to_string()))?;
        let key = (update.framework_id.clone(), update.task_id.clone());
        self.observer.update_recorded(update.state);
        let mut inner = self.lock();
        if let Some(t) = inner.tasks.get_mut(&key) {
            t.state = update.state;
        }
        let terminal = update.state.is_terminal();
        let q = inner.outbox.entry(key.clone()).or_default();
        let state = update.state;
        q.push_back(update);
        let first = q.len() == 1;
        // An update with a place in the window goes out now. A terminal one beyond it goes
        // out at once as the `latest_state` of the newest in flight (sent again), so the
        // master frees the task's resources without waiting for acknowledgements.
        let msg = if q.len() <= UPDATES_IN_FLIGHT {
            q.back().map(|u| convert::update_message(u, state))
        } else if terminal {
            resend_msg(q)
        } else {
            None
        };
        let carried = carried(q);
        if let (Some(msg), Some(tx)) = (msg, &inner.session) {
            let _ = tx.try_send(msg);
            self.observe_sent(&key, carried);
        }
        if first {
            inner.head_sent(&key, Instant::now());
        }
        Ok(())
    }

    /// An update decided by the agent itself (dropped launch, executor gone).
    fn agent_update(&self, key: &Key, state: TaskState, message: String) {
        let update = Update {
            uuid: uuid::Uuid::new_v4().to_string(),
            framework_id: key.0.clone(),
            task_id: key.1.clone(),
            state,
            message,
            exit_code: None,
            timestamp_ms: clock::now_ms(),
        };
        if let Err(e) = self.record(update) {
            tracing::error!(framework = %key.0, task = %key.1, error = %e, "cannot checkpoint an update");
        }
    }

    /// An update was acknowledged: drop it and every earlier one (acknowledgements are
    /// cumulative), and send the updates that take their places in the window.
    pub fn acknowledged(&self, ack: &pb::StatusAck) {
        let key = (ack.framework_id.clone(), ack.task_id.clone());
        let mut inner = self.lock();
        let Some(q) = inner.outbox.get_mut(&key) else {
            return;
        };
        // Only an in-flight update can be acknowledged; anything else is a duplicate.
        let Some(at) = q
            .iter()
            .take(UPDATES_IN_FLIGHT)
            .position(|u| u.uuid == ack.uuid)
        else {
            return;
        };
        if let Err(e) = self.checkpoints.record_ack(&key.0, &key.1, &ack.uuid) {
            tracing::error!(task = %key.1, error = %e, "cannot checkpoint an acknowledgement");
            return;
        }
        let covered: Vec<String> = q.drain(..=at).map(|u| u.uuid).collect();
        // The window's last `at + 1` places are new to it.
        let latest = q.back().map(|u| u.state);
        let window = q.len().min(UPDATES_IN_FLIGHT);
        let next: Vec<pb::AgentMessage> = q
            .range(window.min(UPDATES_IN_FLIGHT.saturating_sub(at + 1))..window)
            .map(|u| convert::update_message(u, latest.unwrap_or(u.state)))
            .collect();
        let next_carried = carried(q);
        let delivered = q.is_empty();
        if delivered {
            inner.outbox.remove(&key);
        }
        if let Some(tx) = &inner.session {
            if !next.is_empty() {
                for msg in next {
                    let _ = tx.try_send(msg);
                }
                self.observe_sent(&key, next_carried);
            }
        }
        inner.head_sent(&key, Instant::now());
        // The executor hears of each update the acknowledgement covers.
        if let Some(exec) = inner.tasks.get(&key).and_then(|t| t.executor.clone()) {
            for uuid in covered {
                let _ = exec.try_send(Ok(convert::acknowledged_event(pb::StatusAck {
                    uuid,
                    ..ack.clone()
                })));
            }
        }
        drop(inner);
        if delivered {
            self.schedule_if_finished(&key);
        }
    }

    /// Re-sends each task's oldest unacknowledged update once it has gone unacknowledged
    /// for its retry interval (`Resend`; called periodically: the leader may have lost
    /// one in a failover).
    pub fn resend_unacknowledged(&self) {
        let mut inner = self.lock();
        let Some(tx) = inner.session.clone() else {
            return;
        };
        let due = inner.due_for_resend(Instant::now());
        self.observer.updates_resent(due.len());
        for head in due {
            let _ = tx.try_send(head);
        }
    }

    /// Unacknowledged updates in total.
    pub fn unacknowledged(&self) -> usize {
        self.lock().outbox.values().map(VecDeque::len).sum()
    }

    /// Tells the observer what an update message sent for `key` carried.
    fn observe_sent(&self, key: &Key, carried: Option<(TaskState, TaskState)>) {
        if let Some((head, latest)) = carried {
            self.observer.update_sent(&key.0, &key.1, head, latest);
        }
    }

    /// The agent's event metrics.
    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    /// The agent's configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// The host's isolation as the agent uses it.
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// Every task this agent knows, as `/state` and `/metrics` show them.
    pub fn views(&self) -> Vec<TaskView> {
        let inner = self.lock();
        inner
            .tasks
            .iter()
            .map(|(key, t)| TaskView {
                framework_id: key.0.clone(),
                task_id: key.1.clone(),
                name: t.record.name.clone(),
                executor_id: t.record.executor_id().to_string(),
                custom_executor: t.record.executor_command.is_some(),
                user: t.record.user.clone(),
                image: t.record.container.as_ref().map(|c| c.image.clone()),
                state: t.state,
                resources: t.resources.clone(),
                executor_pid: t.executor_pid,
                executor_running: t.token.is_some(),
                executor_subscribed: t.executor.is_some(),
                unacknowledged: inner.outbox.get(key).map_or(0, VecDeque::len),
            })
            .collect()
    }

    fn free(&self, inner: &Inner) -> Resources {
        let mut used = Resources::new();
        for t in inner.tasks.values().filter(|t| !t.state.is_terminal()) {
            used.add(&t.resources);
        }
        self.config.resources.saturating_sub(&used)
    }

    /// Launches the tasks of one framework. A task whose resources the agent does not
    /// have free is never run: it gets TASK_DROPPED with the reason.
    pub fn launch(&self, launch: pb::LaunchTasks) {
        for task in launch.tasks {
            let key = (launch.framework_id.clone(), task.task_id.clone());
            if let Err(reason) = self.launch_one(&key, &task) {
                tracing::warn!(framework = %key.0, task = %key.1, %reason, "launch refused");
                self.agent_update(&key, TaskState::TaskDropped, reason);
            }
        }
    }

    fn launch_one(&self, key: &Key, task: &pb::TaskInfo) -> Result<(), String> {
        for (what, id) in [("framework id", &key.0), ("task id", &key.1)] {
            agora_registry::ids::validate_id(id).map_err(|e| format!("bad {what}: {e}"))?;
        }
        let (record, resources) = convert::task_record(&key.0, task)?;
        {
            let mut inner = self.lock();
            if inner.tasks.contains_key(key) {
                // Delivered again (e.g. after a failover): already running or done.
                return Ok(());
            }
            let free = self.free(&inner);
            if !free.contains(&resources) {
                return Err(format!(
                    "insufficient resources on this agent: the task needs {resources}, free is {free}"
                ));
            }
            inner.tasks.insert(
                key.clone(),
                TaskEntry {
                    record: record.clone(),
                    resources,
                    state: TaskState::TaskStaging,
                    executor: None,
                    executor_pid: None,
                    launched: false,
                    pending_kill: None,
                    token: None,
                },
            );
        }
        self.observer.launch_received(&key.0, &key.1);
        if let Err(e) = self.checkpoints.save_task(&record) {
            // Known from here on, so the failure is reported like any other end.
            self.agent_update(
                key,
                TaskState::TaskFailed,
                format!("cannot start the executor: {e}"),
            );
            return Ok(());
        }
        // The user it runs as: a task the agent cannot run as its user fails (saying why),
        // and nothing starts.
        // A container's user is looked up in its image, by its executor.
        let planned = match &record.container {
            Some(_) => Ok(None),
            None => user::plan(&record.user),
        };
        let run_as = match planned {
            Ok(run_as) => run_as,
            Err(e) => {
                tracing::warn!(framework = %key.0, task = %key.1, error = %e, "task not started");
                self.agent_update(key, TaskState::TaskFailed, e.to_string());
                return Ok(());
            }
        };
        match self.spawn_executor(key, run_as.as_ref()) {
            Ok(pid) => {
                if let Some(t) = self.lock().tasks.get_mut(key) {
                    t.executor_pid = Some(pid);
                }
                tracing::info!(framework = %key.0, task = %key.1, executor_pid = pid, "task launched");
                Ok(())
            }
            Err(e) => {
                // Checkpointed as known, so the failure is reported like any other end.
                self.agent_update(
                    key,
                    TaskState::TaskFailed,
                    format!("cannot start the executor: {e}"),
                );
                Ok(())
            }
        }
    }

    /// Starts the executor for one task (the built-in command executor, or the
    /// framework's own under `agora-executor --custom-executor`, in the task's cgroup), in
    /// its own session so that it survives the agent, and watches it. Its sandbox goes to
    /// the task's user (`run_as`), and it gets a token of its own.
    fn spawn_executor(&self, key: &Key, run_as: Option<&RunAs>) -> Result<u32, String> {
        use std::os::unix::process::CommandExt;
        let (custom, resources, record) = {
            let inner = self.lock();
            let t = inner.tasks.get(key).ok_or("task vanished")?;
            (
                t.record.executor_command.clone(),
                t.resources.clone(),
                t.record.clone(),
            )
        };
        let (sandbox, log) = workdir::prepare_sandbox(
            &self.config.work_dir,
            &key.0,
            &key.1,
            run_as.and_then(RunAs::owner),
        )
        .map_err(|e| format!("sandbox: {e}"))?;
        let log_out = log.try_clone().map_err(|e| e.to_string())?;
        // When the agent serves TLS, its executors check its certificate against the CA.
        let agent_ca = match &self.config.security.tls {
            Some(files) => Some(
                std::fs::read_to_string(&files.ca)
                    .map_err(|e| format!("--tls-ca {}: {e}", files.ca.display()))?,
            ),
            None => None,
        };
        // Checkpointed before the executor can use it, so a restarted agent accepts it.
        let token = new_token()?;
        self.checkpoints
            .save_executor_token(&key.0, &key.1, &token)
            .map_err(|e| e.to_string())?;
        if let Some(t) = self.lock().tasks.get_mut(key) {
            t.token = Some(token.clone());
        }
        let agent_id = self
            .agent_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        let isolation_mode = if self.isolation.kind() == "none" {
            "none"
        } else {
            "cgroups"
        };
        // A custom executor runs, with everything it starts, in the task's cgroup, under
        // `agora-executor --custom-executor`, which removes the cgroup once it has exited.
        let custom_cgroup = match &custom {
            Some(_) => {
                let mem = match scalar(&resources, "mem") {
                    m if m > 0.0 => m,
                    _ => 32.0,
                };
                let limits = Limits {
                    cpus: scalar(&resources, "cpus").max(0.01),
                    mem_bytes: (mem * 1024.0 * 1024.0) as u64,
                    pids_max: self.config.max_task_pids,
                };
                let cg_key = cgroup_key(&key.0, &key.1);
                // Left over by an agent that crashed while this task's executor started.
                if let Some(stale) = self.isolation.recover(&cg_key) {
                    if let Err(e) = stale.destroy() {
                        tracing::warn!(task = %key.1, error = %e, "cannot remove the task's stale cgroup");
                    }
                }
                match self.isolation.create(&cg_key, &limits) {
                    Ok(cg) => Some(cg),
                    Err(e) => {
                        self.forget_token(key);
                        return Err(e.to_string());
                    }
                }
            }
            None => None,
        };
        let mut cmd = std::process::Command::new(&self.executor_binary);
        for name in AGENT_ONLY_ENV {
            cmd.env_remove(name);
        }
        if custom.is_some() {
            // The framework's own environment for its executor first: what the agent
            // sets below wins.
            cmd.envs(record.executor_env.iter().cloned());
            cmd.envs(self.mesos_executor_env(key, &record, &sandbox, &token));
            // The wrapper fetches the executor's files before it starts it, and leaves
            // the reason here if it cannot (the agent fails the task with it).
            if !record.uris.is_empty() {
                let uris = serde_json::to_string(&record.uris).map_err(|e| e.to_string())?;
                cmd.env(ENV_FETCH_URIS, uris);
            }
            let failure = self.meta_dir(key).join(FETCH_FAILURE_FILE);
            let _ = std::fs::remove_file(&failure);
            cmd.env(ENV_FETCH_FAILURE, failure);
        }
        if self.config.check_agent_port_range_only {
            let ranges = ranges(&self.config.resources, "ports");
            cmd.env(
                ENV_CHECKED_PORTS,
                serde_json::to_string(&ranges).unwrap_or_default(),
            );
        }
        if record.container.is_some() {
            cmd.env(
                crate::image::ENV_IMAGE_SETTINGS,
                self.config.images.to_env(),
            );
        }
        if let Some(pem) = &agent_ca {
            cmd.env(agora_driver::executor_driver::ENV_AGENT_CA_PEM, pem);
        }
        if let Some(command) = &custom {
            cmd.arg(CUSTOM_EXECUTOR_FLAG).arg(command);
            // The wrapper runs the framework's executor as the task's user.
            if let Some(run_as) = run_as {
                cmd.env(ENV_TASK_USER, &run_as.name);
            }
            cmd.env(ENV_TASK_RESOURCES, resources.to_string());
        }
        cmd.env(agora_driver::executor_driver::ENV_EXECUTOR_TOKEN, &token)
            .env(
                agora_driver::executor_driver::ENV_AGENT_ENDPOINT,
                &self.config.advertise,
            )
            .env(
                agora_driver::executor_driver::ENV_RECOVERY_TIMEOUT_MS,
                self.config
                    .executor_recovery_timeout
                    .as_millis()
                    .to_string(),
            )
            .env(agora_driver::executor_driver::ENV_FRAMEWORK_ID, &key.0)
            .env(agora_driver::executor_driver::ENV_EXECUTOR_ID, &key.1)
            .env(agora_driver::executor_driver::ENV_SANDBOX, &sandbox)
            .env("AGORA_AGENT_ID", agent_id)
            .env("AGORA_ISOLATION", isolation_mode)
            .env(
                ENV_MAX_TASK_PIDS,
                self.config.max_task_pids.unwrap_or(0).to_string(),
            )
            .env("AGORA_CGROUPS_ROOT", self.isolation.root_name())
            .env(
                ENV_OUTPUT_MAX_SIZE,
                self.config.output.max_bytes.to_string(),
            )
            .env(ENV_OUTPUT_ROTATIONS, self.config.output.keep.to_string())
            .current_dir(&sandbox)
            .stdin(std::process::Stdio::null())
            .stdout(log_out)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe; it detaches the executor from the agent's
        // session and process group so that signals to the agent do not reach it.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                self.forget_token(key);
                if let Some(cg) = custom_cgroup {
                    if let Err(e) = cg.destroy() {
                        tracing::warn!(task = %key.1, error = %e, "cannot remove the task's cgroup");
                    }
                }
                return Err(format!("{}: {e}", self.executor_binary.display()));
            }
        };
        let pid = child.id();
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(workdir::PRIVATE_FILE)
                .open(self.meta_dir(key).join("executor.pid"))
                .and_then(|mut f| f.write_all(pid.to_string().as_bytes()));
        }
        // Reap it when it exits, so it never lingers as a zombie of ours.
        let this = self.clone();
        let key = key.clone();
        std::thread::spawn(move || {
            let status = child.wait();
            this.executor_exited(&key, status.ok().map(|s| s.to_string()));
        });
        Ok(pid)
    }

    /// Mesos' environment of a framework's own executor (as a Mesos agent gives it),
    /// so an executor written on a Mesos library finds the executor API
    /// (`MESOS_AGENT_ENDPOINT`: the loopback listener, `host:port` with no scheme).
    fn mesos_executor_env(
        &self,
        key: &Key,
        record: &TaskRecord,
        sandbox: &std::path::Path,
        token: &str,
    ) -> Vec<(String, String)> {
        let endpoint = self
            .executor_http
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|a| a.to_string())
            .unwrap_or_default();
        let agent_id = self.current_agent_id();
        let sandbox = sandbox.display().to_string();
        let secs = |d: Duration| format!("{}secs", d.as_secs().max(1));
        [
            ("MESOS_AGENT_ENDPOINT", endpoint),
            ("MESOS_FRAMEWORK_ID", key.0.clone()),
            ("MESOS_EXECUTOR_ID", record.executor_id().to_string()),
            ("MESOS_AGENT_ID", agent_id.clone()),
            ("MESOS_SLAVE_ID", agent_id),
            ("MESOS_DIRECTORY", sandbox.clone()),
            ("MESOS_SANDBOX", sandbox),
            ("MESOS_CHECKPOINT", "1".to_string()),
            (
                "MESOS_RECOVERY_TIMEOUT",
                secs(self.config.executor_recovery_timeout),
            ),
            ("MESOS_SUBSCRIPTION_BACKOFF_MAX", "2secs".to_string()),
            ("MESOS_HTTP_COMMAND_EXECUTOR", "0".to_string()),
            (
                "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
                secs(DEFAULT_KILL_GRACE + Duration::from_secs(2)),
            ),
            ("MESOS_EXECUTOR_AUTHENTICATION_TOKEN", token.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Forgets the token of a task's executor, in memory and in its checkpoint.
    fn forget_token(&self, key: &Key) {
        if let Some(t) = self.lock().tasks.get_mut(key) {
            t.token = None;
        }
        if let Err(e) = self.checkpoints.remove_executor_token(&key.0, &key.1) {
            tracing::warn!(framework = %key.0, task = %key.1, error = %e, "cannot remove the executor's token");
        }
    }

    /// The executor (framework id, executor id) whose token `token` is, if any. Every
    /// token is compared, each in constant time.
    fn executor_of(&self, token: &[u8]) -> Option<Key> {
        let inner = self.lock();
        let mut found = None;
        for (key, t) in &inner.tasks {
            if let Some(known) = &t.token {
                if constant_time_eq(known.as_bytes(), token) && found.is_none() {
                    found = Some(key.clone());
                }
            }
        }
        found
    }

    /// The executor a call comes from, by its token, checked against the framework and
    /// executor ids the call names: UNAUTHENTICATED without a known token (whatever was
    /// wrong), PERMISSION_DENIED naming the field that is not the token's own.
    fn authorize(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        framework_id: &str,
        executor_id: &str,
    ) -> Result<Key, Status> {
        let key = bearer_token(metadata)
            .and_then(|token| self.executor_of(token))
            .ok_or_else(|| Status::unauthenticated(TOKEN_REQUIRED))?;
        self.check_executor(key, framework_id, executor_id)
    }

    /// The executor whose token `token` is (the Mesos transport's `Authorization: Bearer`).
    pub fn executor_by_token(&self, token: &[u8]) -> Option<Key> {
        self.executor_of(token)
    }

    /// Checks the framework and executor ids a call of executor `key` names:
    /// PERMISSION_DENIED naming the field that is not its own. The executor id may be the
    /// task's (Agora's executors) or the one its framework gave it (Mesos' executors).
    pub fn check_executor(
        &self,
        key: Key,
        framework_id: &str,
        executor_id: &str,
    ) -> Result<Key, Status> {
        if key.0 != framework_id {
            return Err(Status::permission_denied(
                "framework_id: not the framework of this executor",
            ));
        }
        let own = self.executor_id_of(&key);
        if key.1 != executor_id && own.as_deref() != Some(executor_id) {
            return Err(Status::permission_denied("executor_id: not this executor"));
        }
        Ok(key)
    }

    /// The executor's id as its framework knows it.
    pub fn executor_id_of(&self, key: &Key) -> Option<String> {
        self.lock()
            .tasks
            .get(key)
            .map(|t| t.record.executor_id().to_string())
    }

    /// The running executor whose task cgroup holds every one of `pids` (the processes
    /// holding a caller's socket), if there is exactly one. Executors run, with all they
    /// start, in their task's cgroup, which neither they nor their tasks can leave.
    pub fn executor_by_pids(&self, pids: &[u32]) -> Option<Key> {
        if pids.is_empty() || self.isolation.kind() == "none" {
            return None;
        }
        let candidates: Vec<Key> = self
            .lock()
            .tasks
            .iter()
            .filter(|(_, t)| t.token.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        let mut found: Option<Key> = None;
        for pid in pids {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
                return None;
            };
            let key = candidates.iter().find(|k| {
                crate::isolation::in_task_cgroup(
                    &text,
                    self.isolation.root_name(),
                    &cgroup_key(&k.0, &k.1),
                )
            })?;
            match &found {
                Some(f) if f != key => return None,
                _ => found = Some(key.clone()),
            }
        }
        found
    }

    /// An executor process is gone: its token with it. If its task never reached a
    /// terminal state, the agent reports TASK_FAILED, so the task still ends.
    fn executor_exited(&self, key: &Key, how: Option<String>) {
        self.forget_token(key);
        // The executor removes the task's cgroup itself; if it was killed before it could,
        // this kills what is left of the task and removes it.
        if let Some(cg) = self.isolation.recover(&cgroup_key(&key.0, &key.1)) {
            if let Err(e) = cg.destroy() {
                tracing::warn!(task = %key.1, error = %e, "cannot remove the task's cgroup");
            }
        }
        crate::image::remove_container(&self.config.images, &cgroup_key(&key.0, &key.1));
        crate::image::network::remove(&cgroup_key(&key.0, &key.1));
        let unfinished = {
            let mut inner = self.lock();
            match inner.tasks.get_mut(key) {
                Some(t) => {
                    t.executor = None;
                    t.executor_pid = None;
                    !t.state.is_terminal()
                }
                None => false,
            }
        };
        let fetch_failure = std::fs::read_to_string(self.meta_dir(key).join(FETCH_FAILURE_FILE))
            .ok()
            .filter(|m| !m.trim().is_empty());
        if let (true, Some(reason)) = (unfinished, fetch_failure) {
            tracing::warn!(framework = %key.0, task = %key.1, %reason, "the executor's wrapper left a reason (a fetch failure, a limit)");
            self.agent_update(key, TaskState::TaskFailed, reason.trim().to_string());
        } else if unfinished {
            let how = how.unwrap_or_else(|| "gone".into());
            tracing::warn!(framework = %key.0, task = %key.1, %how, "executor exited before its task ended");
            self.agent_update(
                key,
                TaskState::TaskFailed,
                format!("executor exited ({how}) before the task ended"),
            );
        }
        self.schedule_if_finished(key);
    }

    /// After a restart: executors of unfinished tasks that are no longer running will
    /// never report; their tasks fail. Those still running (also of ended tasks, still
    /// delivering their last updates) are watched until they exit, when their tokens go.
    pub fn check_recovered_executors(&self) {
        let keys: Vec<(Key, Option<u32>)> = self
            .lock()
            .tasks
            .iter()
            .filter(|(_, t)| !t.state.is_terminal() || t.token.is_some())
            .map(|(k, t)| (k.clone(), t.executor_pid))
            .collect();
        for (key, pid) in keys {
            match pid {
                Some(pid) if process_alive(pid) => {
                    let this = self.clone();
                    std::thread::spawn(move || {
                        while process_alive(pid) {
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        // Give a final update in flight a moment to be checkpointed.
                        std::thread::sleep(Duration::from_millis(500));
                        this.executor_exited(&key, Some(format!("pid {pid} exited")));
                    });
                }
                _ => {
                    self.executor_exited(&key, Some("not running after the agent restarted".into()))
                }
            }
        }
    }

    /// A scheduler's message for an executor (best effort: dropped when the executor is
    /// not subscribed).
    pub fn framework_message(&self, m: pb::FrameworkMessage) {
        let exec = {
            let inner = self.lock();
            inner
                .executor_key(&m.framework_id, &m.executor_id)
                .and_then(|k| inner.tasks.get(&k))
                .and_then(|t| t.executor.clone())
        };
        let key = (m.framework_id.clone(), m.executor_id.clone());
        match exec {
            Some(exec) => {
                let _ = exec.try_send(Ok(convert::message_event(m)));
            }
            None => {
                tracing::info!(framework = %key.0, executor = %key.1, "framework message for an executor not subscribed: dropped")
            }
        }
    }

    /// Shuts an executor down: it kills its tasks within the grace period and exits.
    pub fn shutdown_executor(&self, s: &pb::ShutdownExecutor) {
        let grace = grace_period(s.grace_period_ms);
        let mut inner = self.lock();
        let Some(key) = inner.executor_key(&s.framework_id, &s.executor_id) else {
            return;
        };
        let Some(t) = inner.tasks.get_mut(&key) else {
            return;
        };
        if t.state.is_terminal() {
            return;
        }
        match &t.executor {
            Some(exec) => {
                let _ = exec.try_send(Ok(convert::shutdown_event(grace)));
            }
            None => t.pending_kill = Some(grace),
        }
    }

    /// The agent stops for good (SIGUSR1, `agora dev` stopping): every executor is told to
    /// shut down (its task killed with `grace`), then, `grace` plus 2 s later, whatever is
    /// left is killed outright: executors' process groups with SIGKILL, tasks' cgroups
    /// destroyed. Returns how many executors had to be killed that way. An agent that
    /// merely restarts (SIGTERM) never calls this: its executors run on and are recovered.
    pub async fn stop_all(&self, grace: Duration) -> usize {
        let running: Vec<Key> = {
            let mut inner = self.lock();
            let mut keys = Vec::new();
            for (key, t) in inner.tasks.iter_mut() {
                if t.token.is_none() && t.state.is_terminal() {
                    continue;
                }
                keys.push(key.clone());
                match &t.executor {
                    Some(exec) => {
                        let _ = exec.try_send(Ok(convert::shutdown_event(grace)));
                    }
                    None => t.pending_kill = Some(grace),
                }
            }
            keys
        };
        if running.is_empty() {
            return 0;
        }
        tracing::info!(
            executors = running.len(),
            ?grace,
            "stopping for good: shutting down every executor"
        );
        let alive = |this: &Tasks| -> Vec<(Key, Option<u32>)> {
            let inner = this.lock();
            running
                .iter()
                .filter_map(|k| inner.tasks.get(k).map(|t| (k, t)))
                .filter(|(_, t)| t.token.is_some() && t.executor_pid.is_none_or(process_alive))
                .map(|(k, t)| (k.clone(), t.executor_pid))
                .collect()
        };
        let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(2);
        while tokio::time::Instant::now() < deadline && !alive(self).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = alive(self);
        for (key, pid) in &left {
            tracing::warn!(framework = %key.0, task = %key.1, ?pid, "executor still running after the grace; killed");
            if let Some(pid) = pid {
                // SAFETY: kill(2) on the executor's own process group (it called setsid).
                unsafe {
                    libc::kill(-(*pid as i32), libc::SIGKILL);
                }
            }
        }
        // Whatever a task left in its cgroup (or an executor killed before it could clean
        // up) goes with it.
        for key in &running {
            if let Some(cg) = self.isolation.recover(&cgroup_key(&key.0, &key.1)) {
                if let Err(e) = cg.destroy() {
                    tracing::warn!(task = %key.1, error = %e, "cannot remove the task's cgroup");
                }
            }
        }
        left.len()
    }

    /// Kills a task through its executor. An unknown task is reported TASK_LOST.
    pub fn kill(&self, kill: &pb::KillTask) {
        let key = (kill.framework_id.clone(), kill.task_id.clone());
        let grace = grace_period(kill.grace_period_ms);
        let mut inner = self.lock();
        let Some(t) = inner.tasks.get_mut(&key) else {
            drop(inner);
            if agora_registry::ids::validate_id(&key.0).is_ok()
                && agora_registry::ids::validate_id(&key.1).is_ok()
            {
                self.agent_update(
                    &key,
                    TaskState::TaskLost,
                    "kill of a task this agent does not know".into(),
                );
            }
            return;
        };
        if t.state.is_terminal() {
            return;
        }
        match &t.executor {
            Some(exec) => {
                let _ = exec.try_send(Ok(convert::kill_event(&key.0, &key.1, grace)));
            }
            None => t.pending_kill = Some(grace),
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ExecutorEvent, Status>> + Send>>;

/// What an executor may do on both transports of the executor API (gRPC
/// `agora.v1.Executor` and Mesos' `POST /api/v1/executor`): each call is authenticated
/// by its transport (to the executor `Key` it comes from), then made here, once.
impl Tasks {
    /// The loopback address of the Mesos executor API, once bound.
    pub fn set_executor_http(&self, addr: std::net::SocketAddr) {
        *self.executor_http.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
    }

    fn current_agent_id(&self) -> String {
        self.agent_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }

    /// The agent's host name.
    pub fn hostname(&self) -> &str {
        &self.config.hostname
    }

    /// Subscribes the executor `key`: its task is launched on it unless it had it already
    /// (`resubscribed`: it names the task as its own), and a kill asked for meanwhile is
    /// passed on. A newer subscription replaces an older one.
    pub fn subscribe_executor(
        &self,
        key: &Key,
        resubscribed: bool,
    ) -> Result<Subscription, Status> {
        let (tx, rx) = mpsc::channel(64);
        let agent_id = self.current_agent_id();
        let record = {
            let mut inner = self.lock();
            let Some(t) = inner.tasks.get_mut(key) else {
                return Err(Status::not_found(format!(
                    "executor_id: no task {} of framework {} on this agent",
                    key.1, key.0
                )));
            };
            let _ = tx.try_send(Ok(convert::subscribed_event(agent_id.clone())));
            if !t.launched && !resubscribed {
                let _ = tx.try_send(Ok(convert::launch_event(&t.record, &t.resources)));
                t.launched = true;
            }
            if let Some(grace) = t.pending_kill.take() {
                let _ = tx.try_send(Ok(convert::kill_event(&key.0, &key.1, grace)));
            }
            t.executor = Some(tx);
            t.record.clone()
        };
        tracing::info!(framework = %key.0, task = %key.1, "executor subscribed");
        Ok(Subscription {
            events: rx,
            record,
            agent_id,
        })
    }

    /// A status update from the executor `executor`: checkpointed (once: an update
    /// already queued, by its uuid, is accepted again and not recorded twice), then
    /// delivered to the master reliably. Returns once it is on disk.
    pub fn executor_update(
        &self,
        executor: &Key,
        framework_id: String,
        update: Option<pb::StatusUpdate>,
    ) -> Result<(), Status> {
        if let Some(u) = &update {
            // An executor reports only its own tasks: the built-in executor, and a
            // framework's own, each run the one task their executor id names.
            if !u.framework_id.is_empty() && u.framework_id != executor.0 {
                return Err(Status::permission_denied(
                    "update.framework_id: not the framework of this executor",
                ));
            }
            if u.task_id != executor.1 {
                return Err(Status::permission_denied(
                    "update.task_id: not a task of this executor",
                ));
            }
        }
        let update = convert::update_from_executor(framework_id, update)
            .map_err(Status::invalid_argument)?;
        let key = (update.framework_id.clone(), update.task_id.clone());
        {
            let inner = self.lock();
            if !inner.tasks.contains_key(&key) {
                return Err(Status::not_found(format!(
                    "update.task_id: no task {} of framework {}",
                    key.1, key.0
                )));
            }
            // A re-sent update already checkpointed is acknowledged again.
            if inner
                .outbox
                .get(&key)
                .is_some_and(|q| q.iter().any(|x| x.uuid == update.uuid))
            {
                return Ok(());
            }
        }
        tracing::info!(framework = %update.framework_id, task = %update.task_id, state = %update.state, "status update");
        self.record(update)
    }

    /// An executor's message to its framework's scheduler (best effort, as in Mesos:
    /// dropped while there is no session with the leader).
    pub fn executor_message(&self, key: &Key, mut m: pb::FrameworkMessage) -> Result<(), Status> {
        let agent_id = self.current_agent_id();
        let inner = self.lock();
        if !inner.tasks.contains_key(key) {
            return Err(Status::not_found(format!(
                "executor_id: no executor {} of framework {} on this agent",
                key.1, key.0
            )));
        }
        m.agent_id = agent_id;
        if let Some(tx) = &inner.session {
            let _ = tx.try_send(convert::executor_message(m));
        }
        Ok(())
    }
}

/// Serves `agora.v1.Executor` for this agent's executors.
pub struct ExecutorApi {
    pub tasks: Tasks,
}

#[tonic::async_trait]
impl ExecutorService for ExecutorApi {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        req: Request<pb::ExecutorSubscribe>,
    ) -> Result<Response<EventStream>, Status> {
        let key = self.tasks.authorize(
            req.metadata(),
            &req.get_ref().framework_id,
            &req.get_ref().executor_id,
        )?;
        let req = req.into_inner();
        // The command executor runs exactly one task, named by its executor id.
        let resubscribed = req.task_ids.contains(&key.1);
        let sub = self.tasks.subscribe_executor(&key, resubscribed)?;
        Ok(Response::new(Box::pin(ReceiverStream::new(sub.events))))
    }

    async fn send_message(
        &self,
        req: Request<pb::FrameworkMessage>,
    ) -> Result<Response<pb::ExecutorUpdateReply>, Status> {
        let key = self.tasks.authorize(
            req.metadata(),
            &req.get_ref().framework_id,
            &req.get_ref().executor_id,
        )?;
        let mut m = req.into_inner();
        // The executor's id as the framework's scheduler knows it.
        m.executor_id = self.tasks.executor_id_of(&key).unwrap_or(m.executor_id);
        self.tasks.executor_message(&key, m)?;
        Ok(Response::new(pb::ExecutorUpdateReply {}))
    }

    async fn update(
        &self,
        req: Request<pb::ExecutorUpdate>,
    ) -> Result<Response<pb::ExecutorUpdateReply>, Status> {
        let executor = self.tasks.authorize(
            req.metadata(),
            &req.get_ref().framework_id,
            &req.get_ref().executor_id,
        )?;
        let req = req.into_inner();
        self.tasks
            .executor_update(&executor, req.framework_id, req.update)?;
        Ok(Response::new(pb::ExecutorUpdateReply {}))
    }
}

/// Whether a task's sandbox is finished ([`gc::policy::collectable`]): the task is
/// terminal, its executor has exited (its token is forgotten exactly then, and a task whose
/// launch failed never had one) and none of its updates awaits the master's
/// acknowledgement (its queue is empty, so its journal has nothing left to deliver).
fn sandbox_finished(inner: &Inner, key: &Key) -> bool {
    inner.tasks.get(key).is_some_and(|t| {
        gc::policy::collectable(
            t.state.is_terminal(),
            t.token.is_some(),
            inner.outbox.get(key).map_or(0, VecDeque::len),
        )
    })
}

/// The cgroup name of a task: unique per framework and task, in the characters cgroup
/// names allow here (ids may also hold ':').
pub fn cgroup_key(framework_id: &str, task_id: &str) -> String {
    format!("{framework_id}.{task_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Scalar amount of `name` in `res` (for cgroup limits).
/// The ranges of resources named `name` (e.g. `ports`), as they are listed.
pub fn ranges(res: &Resources, name: &str) -> Vec<(u64, u64)> {
    res.iter()
        .filter(|r| r.name == name)
        .flat_map(|r| match &r.value {
            Value::Ranges(ranges) => ranges.pairs().to_vec(),
            Value::Scalar(_) => Vec::new(),
        })
        .collect()
}

pub fn scalar(res: &Resources, name: &str) -> f64 {
    res.iter()
        .filter(|r| r.name == name)
        .filter_map(|r| match &r.value {
            Value::Scalar(s) => Some(s.as_f64()),
            Value::Ranges(_) => None,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(task: &str, state: TaskState) -> Update {
        Update {
            uuid: uuid::Uuid::new_v4().to_string(),
            framework_id: "f".into(),
            task_id: task.into(),
            state,
            message: String::new(),
            exit_code: None,
            timestamp_ms: 1,
        }
    }

    #[test]
    fn an_update_is_resent_only_after_its_interval_which_doubles_to_a_cap() {
        let t0 = Instant::now();
        let mut r = Resend::sent(t0);
        assert!(!r.due(t0));
        assert!(!r.due(t0 + Duration::from_millis(10)));
        assert!(!r.due(t0 + RESEND_MIN - Duration::from_millis(1)));
        assert!(r.due(t0 + RESEND_MIN));
        let mut at = t0 + RESEND_MIN;
        let mut waits = Vec::new();
        for _ in 0..8 {
            r.resent(at);
            waits.push(r.interval);
            assert!(!r.due(at + r.interval - Duration::from_millis(1)));
            assert!(r.due(at + r.interval));
            at += r.interval;
        }
        let s = Duration::from_secs;
        assert_eq!(
            waits,
            [s(4), s(8), s(16), s(32), s(60), s(60), s(60), s(60)]
        );
    }

    #[test]
    fn a_tick_resends_only_tasks_unacknowledged_for_their_interval() {
        let mut inner = Inner::default();
        let t0 = Instant::now();
        let old = ("f".to_string(), "old".to_string());
        let new = ("f".to_string(), "new".to_string());
        inner.outbox.insert(
            old.clone(),
            VecDeque::from([update("old", TaskState::TaskRunning)]),
        );
        inner.head_sent(&old, t0);
        // Sent 10 ms before the tick: not again.
        let t1 = t0 + RESEND_MIN;
        inner.outbox.insert(
            new.clone(),
            VecDeque::from([update("new", TaskState::TaskStarting)]),
        );
        inner.head_sent(&new, t1 - Duration::from_millis(10));
        let sent = inner.due_for_resend(t1);
        let tasks = |m: &[pb::AgentMessage]| -> Vec<String> {
            m.iter()
                .filter_map(|m| match &m.kind {
                    Some(pb::agent_message::Kind::Update(u)) => Some(u.task_id.clone()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(tasks(&sent), ["old"]);
        // The next tick, a second later: nothing is due (old waits 4 s now, new 2 s).
        assert!(inner.due_for_resend(t1 + Duration::from_secs(1)).is_empty());
        assert_eq!(
            tasks(&inner.due_for_resend(t1 + Duration::from_secs(2))),
            ["new"]
        );
        assert_eq!(
            tasks(&inner.due_for_resend(t1 + Duration::from_secs(4))),
            ["old"]
        );
        // Acknowledged and gone: its schedule goes with it.
        inner.outbox.remove(&old);
        inner.head_sent(&old, t1);
        assert!(!inner.resend.contains_key(&old));
    }

    #[test]
    fn a_resend_is_the_newest_update_in_the_window_carrying_the_newest_queued() {
        let sent = |m: Option<pb::AgentMessage>| match m.and_then(|m| m.kind) {
            Some(pb::agent_message::Kind::Update(u)) => Some((u.uuid, u.latest_state)),
            _ => None,
        };
        let mut q = VecDeque::new();
        assert_eq!(sent(resend_msg(&q)), None);
        q.push_back(update("t", TaskState::TaskStarting));
        q.push_back(update("t", TaskState::TaskRunning));
        let running = q[1].uuid.clone();
        // (Its own state: no news behind it.)
        assert_eq!(
            sent(resend_msg(&q)),
            Some((running, pb::TaskState::Unspecified as i32))
        );
        // Beyond the window: its last update goes again, carrying the task's end.
        while q.len() < UPDATES_IN_FLIGHT + 3 {
            q.push_back(update("t", TaskState::TaskRunning));
        }
        q.push_back(update("t", TaskState::TaskFinished));
        let last_in_window = q[UPDATES_IN_FLIGHT - 1].uuid.clone();
        assert_eq!(
            sent(resend_msg(&q)),
            Some((last_in_window, pb::TaskState::TaskFinished as i32))
        );
        let all = all_msgs(&q);
        assert_eq!(all.len(), q.len());
    }

    #[test]
    fn tokens_are_256_random_bits_in_hex() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_token_is_read_from_a_bearer_header_only() {
        let with = |v: &str| {
            let mut m = tonic::metadata::MetadataMap::new();
            m.insert("authorization", v.parse().unwrap());
            m
        };
        assert_eq!(bearer_token(&with("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer_token(&with("bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer_token(&with("Bearer ")), None);
        assert_eq!(bearer_token(&with("Basic abc")), None);
        assert_eq!(bearer_token(&with("abc")), None);
        assert_eq!(bearer_token(&tonic::metadata::MetadataMap::new()), None);
    }
}
