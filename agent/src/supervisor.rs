//! # Supervising one task command
//!
//! Owns: running one task's shell command (`/bin/sh -c`) as a supervised child in its own
//! process group and its own cgroup (joined between fork and exec, so the task never runs
//! outside its limits), sending its output to `<sandbox>/stdout` and `<sandbox>/stderr`,
//! recording its pid in `<sandbox>/.task.pid`, killing it (SIGTERM, then SIGKILL after a
//! grace period), and turning its end into a [`TaskOutcome`] (exit code, signal, OOM kill, or
//! killed on request) before removing its cgroup. A task naming a user runs as that user
//! (groups, group, user switched after it joined its cgroups; HOME its sandbox, USER and
//! LOGNAME set). The sandbox may be the task's own: files created there are never opened
//! through a symlink.
//!
//! This is the library half of the agent's built-in command executor (a separate process
//! the agent starts in its own session so it outlives the agent). It must stay usable on its
//! own: no gRPC, no protobuf, no other workspace crate, no network.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use std::os::unix::process::ExitStatusExt;

use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::enforce::{self, Enforcement};
use crate::isolation::{join_cgroups_from_child, Isolation, IsolationError, Limits, TaskCgroup};
use crate::user::RunAs;
use crate::workdir::{STDERR_FILE, STDOUT_FILE};

/// File in the sandbox holding the task's pid (decimal, newline), for recovery tooling.
pub const PID_FILE: &str = ".task.pid";

const MIB: u64 = 1024 * 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Shell command, run as `/bin/sh -c <command>`.
    pub command: String,
    /// Added to the supervisor's own environment (which the task inherits).
    pub env: Vec<(String, String)>,
    /// Working directory (created if missing); holds `stdout`, `stderr` and `.task.pid`.
    pub sandbox: PathBuf,
    /// CPU and memory limits of the task's cgroup.
    pub limits: Limits,
    /// The user the task runs as (`None`: the supervisor's own).
    pub user: Option<RunAs>,
    /// Run a container under an OCI runtime instead of `command` on the host.
    pub container: Option<ContainerLaunch>,
    /// Processes, disk and ports checked while it runs.
    pub enforce: Enforcement,
    /// When `stdout` and `stderr` are rotated.
    pub output: OutputRotation,
}

/// Rotation of a task's `stdout` and `stderr` (Mesos' logrotate container logger): once a
/// file holds `max_bytes`, it becomes `stdout.1` (`.1` becomes `.2`, and so on; the oldest
/// beyond `keep` is dropped) and a new one starts. The output then reaches the files
/// through pipes the supervisor copies from. `max_bytes` 0: never rotated, the task writes
/// the files itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputRotation {
    pub max_bytes: u64,
    pub keep: u32,
}

impl OutputRotation {
    /// Never rotated.
    pub const NEVER: OutputRotation = OutputRotation {
        max_bytes: 0,
        keep: 0,
    };
}

impl Default for OutputRotation {
    /// 10 MiB per file, five rotated files kept.
    fn default() -> Self {
        OutputRotation {
            max_bytes: 10 * MIB,
            keep: 5,
        }
    }
}

/// How long the copiers of a rotated output may take to drain after the task ended (a
/// process that escaped the task's process group and cgroup may hold the pipe open).
const OUTPUT_DRAIN: Duration = Duration::from_secs(5);

/// Copies `from` to `path`, rotating as `rotation` says, until `from` ends.
async fn copy_rotating<R>(mut from: R, path: PathBuf, rotation: OutputRotation)
where
    R: tokio::io::AsyncRead + Unpin,
{
    use std::io::Write;
    use tokio::io::AsyncReadExt;
    let mut file = match open_append(&path) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the task's output; it is discarded");
            // Keep draining so the task never blocks on a full pipe.
            let _ = tokio::io::copy(&mut from, &mut tokio::io::sink()).await;
            return;
        }
    };
    let mut written = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            if written >= rotation.max_bytes {
                file = rotate(&path, rotation.keep, file);
                written = file.metadata().map(|m| m.len()).unwrap_or(0);
            }
            let room = (rotation.max_bytes.saturating_sub(written) as usize).max(1);
            let part = room.min(chunk.len());
            // The file is local and the writes small: blocking here is brief.
            if file.write_all(&chunk[..part]).is_err() {
                // Disk full or gone: drop this piece, keep the task running.
            }
            written += part as u64;
            chunk = &chunk[part..];
        }
    }
}

/// `path` becomes `path.1` (older ones move up; beyond `keep` they are dropped) and a new
/// `path` is opened. Where that fails (something in the way), the file is emptied instead.
fn rotate(path: &Path, keep: u32, current: fs::File) -> fs::File {
    let numbered = |i: u32| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{i}"));
        PathBuf::from(p)
    };
    let keep = keep.max(1);
    let _ = fs::remove_file(numbered(keep));
    for i in (1..keep).rev() {
        let _ = fs::rename(numbered(i), numbered(i + 1));
    }
    if fs::rename(path, numbered(1)).is_ok() {
        if let Ok(f) = open_append(path) {
            return f;
        }
    }
    let _ = current.set_len(0);
    current
}

/// A container to run: `RUNTIME --root STATE --cgroup-manager=disabled run --bundle
/// BUNDLE ID`, started in a mount namespace of its own (private propagation) where the
/// container's root filesystem (overlayfs) is mounted on `rootfs` first. The container
/// inherits the task's cgroups; its process runs as the bundle's user.
#[derive(Debug, Clone)]
pub struct ContainerLaunch {
    pub runtime: PathBuf,
    /// The runtime's state directory.
    pub state_root: PathBuf,
    pub bundle: PathBuf,
    pub id: String,
    pub rootfs: PathBuf,
    /// overlayfs options of its root; `None`: the root is a plain directory (copied
    /// layers), bind-mounted by the runtime.
    pub overlay_options: Option<String>,
}

/// The C strings of a container's mount, made before the fork (the child must not
/// allocate).
struct ContainerMount {
    overlay: std::ffi::CString,
    rootfs: std::ffi::CString,
    options: Option<std::ffi::CString>,
    root: std::ffi::CString,
    unified: std::ffi::CString,
}

impl ContainerMount {
    fn new(launch: &ContainerLaunch) -> io::Result<ContainerMount> {
        use std::os::unix::ffi::OsStrExt;
        let c = |b: &[u8]| {
            std::ffi::CString::new(b).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        };
        Ok(ContainerMount {
            overlay: c(b"overlay")?,
            rootfs: c(launch.rootfs.as_os_str().as_bytes())?,
            options: match &launch.overlay_options {
                Some(o) => Some(c(o.as_bytes())?),
                None => None,
            },
            root: c(b"/")?,
            unified: c(b"/sys/fs/cgroup/unified")?,
        })
    }

    /// In the forked child: a mount namespace of its own, nothing propagated to the host,
    /// the cgroup v2 mount of a hybrid host gone from it (the runtime would take the host
    /// for cgroup v2 and refuse controllers it cannot drop; the container's cgroups are
    /// the agent's v1 ones anyway), and the container's root filesystem mounted.
    fn set_up_in_child(&self) -> io::Result<()> {
        let check = |r: libc::c_int| {
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        // SAFETY: plain syscalls on C strings made before the fork; async-signal-safe.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                self.root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            // Absent on hosts that are all v1 or all v2: nothing to do there.
            libc::umount2(self.unified.as_ptr(), libc::MNT_DETACH);
            if let Some(options) = &self.options {
                check(libc::mount(
                    self.overlay.as_ptr(),
                    self.rootfs.as_ptr(),
                    self.overlay.as_ptr(),
                    0,
                    options.as_ptr().cast(),
                ))?;
            }
        }
        Ok(())
    }
}

/// Why a task could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Isolation(#[from] IsolationError),
    #[error("invalid task spec: {0}")]
    InvalidSpec(String),
    #[error("cannot prepare sandbox {path}: {source}")]
    Sandbox { path: PathBuf, source: io::Error },
    #[error("cannot open task output file {path}: {source}")]
    Output { path: PathBuf, source: io::Error },
    #[error("cannot start `/bin/sh -c {command:?}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("cannot write pid file {path}: {source}")]
    PidFile { path: PathBuf, source: io::Error },
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// The command exited by itself with this status.
    Exited { code: i32 },
    /// The command was killed by a signal we did not send.
    Signaled { signal: i32 },
    /// The kernel OOM-killed a process of the task (takes precedence over any failure it
    /// caused: a SIGKILL, a shell's status 137, or a kill we sent afterwards).
    OomKilled { mem_limit_bytes: u64 },
    /// The task ended after [`RunningTask::kill`] or [`KillHandle::kill`].
    Killed,
    /// Waiting for the process failed (it was reaped by someone else): its end is unknown.
    WaitFailed { error: String },
    /// Killed for going past a limit besides memory ([`Enforcement`]): why.
    LimitExceeded { reason: String },
}

impl TaskOutcome {
    /// Exited with status 0.
    pub fn is_success(&self) -> bool {
        matches!(self, TaskOutcome::Exited { code: 0 })
    }

    /// One line for a status update, e.g. "exited with status 3", "killed by signal 15",
    /// "memory limit exceeded (32 MiB)".
    pub fn message(&self) -> String {
        match self {
            TaskOutcome::Exited { code } => format!("exited with status {code}"),
            TaskOutcome::Signaled { signal } => format!("killed by signal {signal}"),
            TaskOutcome::OomKilled { mem_limit_bytes } => {
                format!("memory limit exceeded ({})", Bytes(*mem_limit_bytes))
            }
            TaskOutcome::Killed => "killed on request".to_owned(),
            TaskOutcome::WaitFailed { error } => format!("lost track of the task: {error}"),
            TaskOutcome::LimitExceeded { reason } => reason.clone(),
        }
    }
}

impl fmt::Display for TaskOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// Human-readable byte count: whole MiB as "32 MiB", other sizes of at least 1 MiB with one
/// decimal, small ones in bytes.
pub(crate) struct Bytes(pub(crate) u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= MIB && b.is_multiple_of(MIB) {
            write!(f, "{} MiB", b / MIB)
        } else if b >= MIB {
            write!(f, "{:.1} MiB", b as f64 / MIB as f64)
        } else {
            write!(f, "{b} bytes")
        }
    }
}

/// Start `spec.command` in the cgroup `task_key` of `isolation`.
///
/// The cgroup is created first (and removed again if anything below fails); the child joins
/// it itself in a `pre_exec` hook, puts itself in a new process group, gets `stdin` from
/// `/dev/null` and appends its output to the sandbox files.
pub async fn start(
    spec: &TaskSpec,
    isolation: &Isolation,
    task_key: &str,
) -> Result<RunningTask, SupervisorError> {
    validate_spec(spec)?;
    let sandbox = &spec.sandbox;
    fs::create_dir_all(sandbox).map_err(|source| SupervisorError::Sandbox {
        path: sandbox.clone(),
        source,
    })?;
    let rotated = spec.output.max_bytes > 0;
    let (stdout, stderr) = if rotated {
        // Created now, so a reader finds them from the start.
        open_append(&sandbox.join(STDOUT_FILE))?;
        open_append(&sandbox.join(STDERR_FILE))?;
        (Stdio::piped(), Stdio::piped())
    } else {
        (
            Stdio::from(open_append(&sandbox.join(STDOUT_FILE))?),
            Stdio::from(open_append(&sandbox.join(STDERR_FILE))?),
        )
    };

    let cgroup = isolation.create(task_key, &spec.limits)?;
    let procs_paths = cgroup.procs_paths();

    let (mut command, mount) = match &spec.container {
        None => {
            let mut command = Command::new("/bin/sh");
            command.arg("-c").arg(&spec.command);
            if let Some(user) = &spec.user {
                command.envs(user.env(sandbox));
            }
            command.envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            (command, None)
        }
        Some(launch) => {
            let mount = match ContainerMount::new(launch) {
                Ok(m) => m,
                Err(source) => {
                    destroy_cgroup(cgroup).await;
                    return Err(SupervisorError::Spawn {
                        command: launch.runtime.display().to_string(),
                        source,
                    });
                }
            };
            let mut command = Command::new(&launch.runtime);
            command
                .arg("--root")
                .arg(&launch.state_root)
                .arg("--cgroup-manager=disabled")
                .arg("run")
                .arg("--bundle")
                .arg(&launch.bundle)
                .arg(&launch.id);
            (command, Some(mount))
        }
    };
    command
        .current_dir(sandbox)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    let user = spec.user.clone();
    // SAFETY: the hook runs in the forked child before exec and only calls
    // `join_cgroups_from_child` (getpid/open/write/close), `ContainerMount::set_up_in_child`
    // (unshare/mount/umount2) and `RunAs::switch_in_child` (setgroups/setgid/setuid), which
    // are async-signal-safe (no allocation, no locks); the paths, mount options and groups
    // were allocated before the fork. The cgroups are joined first: that needs the
    // supervisor's privileges, which the switch gives up.
    unsafe {
        command.pre_exec(move || {
            join_cgroups_from_child(&procs_paths)?;
            if let Some(mount) = &mount {
                mount.set_up_in_child()?;
            }
            match &user {
                Some(user) => user.switch_in_child(),
                None => Ok(()),
            }
        });
    }

    // The fork waits for the child's exec, and the child first joins the task's cgroups:
    // off the runtime's thread, so an executor's one-thread runtime sends its updates
    // meanwhile.
    let spawned = tokio::task::spawn_blocking(move || command.spawn())
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("the spawning thread failed: {e}"))));
    let mut child = match spawned {
        Ok(child) => child,
        Err(source) => {
            destroy_cgroup(cgroup).await;
            return Err(SupervisorError::Spawn {
                command: spec.command.clone(),
                source,
            });
        }
    };
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .unwrap_or(0);

    let mut copiers = Vec::new();
    if rotated {
        if let Some(out) = child.stdout.take() {
            copiers.push(tokio::spawn(copy_rotating(
                out,
                sandbox.join(STDOUT_FILE),
                spec.output,
            )));
        }
        if let Some(err) = child.stderr.take() {
            copiers.push(tokio::spawn(copy_rotating(
                err,
                sandbox.join(STDERR_FILE),
                spec.output,
            )));
        }
    }
    let (kill_tx, kill_rx) = mpsc::unbounded_channel();
    let mut task = RunningTask {
        copiers,
        child,
        pid,
        cgroup: Some(cgroup),
        mem_limit_bytes: spec.limits.mem_bytes,
        kill_tx,
        kill_rx,
        kill_requested: false,
        exit: None,
        reaped: false,
        enforce: spec.enforce.clone(),
        violation: None,
    };

    let pid_file = sandbox.join(PID_FILE);
    if let Err(source) = write_pid_file(&pid_file, pid) {
        task.kill(Duration::ZERO).await;
        let _ = task.wait().await;
        return Err(SupervisorError::PidFile {
            path: pid_file,
            source,
        });
    }
    tracing::info!(task_key, pid, isolation = isolation.kind(), "task started");
    Ok(task)
}

/// A started task. Call [`RunningTask::wait`] to learn how it ended (and to remove its
/// cgroup). Dropping it unfinished SIGKILLs the task and removes its cgroup in the
/// background.
#[derive(Debug)]
pub struct RunningTask {
    child: Child,
    pid: i32,
    cgroup: Option<TaskCgroup>,
    mem_limit_bytes: u64,
    kill_tx: mpsc::UnboundedSender<Duration>,
    kill_rx: mpsc::UnboundedReceiver<Duration>,
    kill_requested: bool,
    /// Set by `kill` when it already reaped the process.
    exit: Option<io::Result<ExitStatus>>,
    /// The process has been waited for: its pid (and group id) may be reused.
    reaped: bool,
    /// Checked every [`ENFORCE_INTERVAL`] while it runs.
    enforce: Enforcement,
    /// The limit it went past, once it has.
    violation: Option<String>,
    /// Copiers of its rotated output, drained before its end is reported.
    copiers: Vec<tokio::task::JoinHandle<()>>,
}

/// How often the [`Enforcement`] of a running task is checked (its disk usage every
/// [`DISK_CHECK_EVERY`]th time: a walk of its directories costs more).
pub const ENFORCE_INTERVAL: Duration = Duration::from_millis(500);
pub const DISK_CHECK_EVERY: u32 = 4;

/// Asks a [`RunningTask`] that is being waited for (possibly in another tokio task) to kill
/// itself: SIGTERM at once, SIGKILL after the grace period.
#[derive(Debug, Clone)]
pub struct KillHandle {
    tx: mpsc::UnboundedSender<Duration>,
}

impl KillHandle {
    /// Request the kill; the escalation is carried out by the pending or next
    /// [`RunningTask::wait`]. A no-op once the task has finished.
    pub fn kill(&self, grace: Duration) {
        let _ = self.tx.send(grace);
    }
}

impl RunningTask {
    /// The pid of the task's shell (also its process group id).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The task's cgroup (e.g. for [`TaskCgroup::memory_usage`]).
    pub fn cgroup(&self) -> Option<&TaskCgroup> {
        self.cgroup.as_ref()
    }

    /// A handle to kill the task while another tokio task is in [`RunningTask::wait`].
    pub fn kill_handle(&self) -> KillHandle {
        KillHandle {
            tx: self.kill_tx.clone(),
        }
    }

    /// SIGTERM the task's process group; if it has not exited after `grace`, SIGKILL the
    /// group and everything in the cgroup. Returns once the main process has exited; then
    /// [`RunningTask::wait`] reports [`TaskOutcome::Killed`] (or the OOM kill).
    pub async fn kill(&mut self, grace: Duration) {
        if self.exit.is_none() && !self.reaped {
            let status = self.escalate(grace).await;
            self.exit = Some(status);
        }
    }

    async fn escalate(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.kill_requested = true;
        tracing::info!(pid = self.pid, ?grace, "killing task");
        // The child is not reaped yet, so its pid is still our process group.
        signal_group(self.pid, libc::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::info!(pid = self.pid, "grace period over, sending SIGKILL");
                signal_group(self.pid, libc::SIGKILL);
                if let Some(cgroup) = &self.cgroup {
                    cgroup.kill_all();
                }
                self.child.wait().await
            }
        }
    }

    /// The first limit of its [`Enforcement`] the task went past, if any (`disk`: its
    /// disk usage is measured this time).
    async fn check(&self, disk: bool) -> Option<String> {
        let cgroup = self.cgroup.clone()?;
        let rules = self.enforce.clone();
        tokio::task::spawn_blocking(move || enforce::violation(&rules, &cgroup, disk))
            .await
            .ok()
            .flatten()
    }

    /// Wait for the task to end (carrying out kill requests from [`KillHandle`]s meanwhile),
    /// SIGKILL what is left of its process group, classify the end, and destroy its cgroup.
    pub async fn wait(mut self) -> TaskOutcome {
        let status = match self.exit.take() {
            Some(status) => status,
            None => {
                let mut tick = tokio::time::interval(ENFORCE_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let checking = !self.enforce.is_empty();
                let mut ticks = 0u32;
                let grace = loop {
                    tokio::select! {
                        biased;
                        status = self.child.wait() => break Err(status),
                        Some(grace) = self.kill_rx.recv() => break Ok(grace),
                        _ = tick.tick(), if checking => {
                            ticks = ticks.wrapping_add(1);
                            if let Some(reason) = self.check(ticks.is_multiple_of(DISK_CHECK_EVERY)).await {
                                tracing::warn!(pid = self.pid, %reason, "task over a limit: killing it");
                                self.violation = Some(reason);
                                break Ok(Duration::ZERO);
                            }
                        }
                    }
                };
                match grace {
                    Err(status) => status,
                    Ok(grace) => self.escalate(grace).await,
                }
            }
        };
        self.reaped = true;
        // Leftovers (background jobs) of the task's process group. The group id cannot have
        // been handed to anyone else while members are alive.
        signal_group(self.pid, libc::SIGKILL);

        let oom = self.cgroup.as_ref().is_some_and(TaskCgroup::oom_killed);
        let outcome = match self.violation.take() {
            Some(reason) => TaskOutcome::LimitExceeded { reason },
            None => classify(status, oom, self.kill_requested, self.mem_limit_bytes),
        };
        if let Some(cgroup) = self.cgroup.take() {
            destroy_cgroup(cgroup).await;
        }
        // Everything the task wrote is in its files before its end is reported.
        for copier in std::mem::take(&mut self.copiers) {
            let abort = copier.abort_handle();
            if tokio::time::timeout(OUTPUT_DRAIN, copier).await.is_err() {
                tracing::warn!(pid = self.pid, "the task's output is still held open by a process outside it; no longer copied");
                abort.abort();
            }
        }
        tracing::info!(pid = self.pid, outcome = %outcome, "task ended");
        outcome
    }
}

impl Drop for RunningTask {
    fn drop(&mut self) {
        for copier in &self.copiers {
            copier.abort();
        }
        if !self.reaped && self.exit.is_none() {
            // Unreaped, so the group id is still ours. tokio reaps the dropped child.
            signal_group(self.pid, libc::SIGKILL);
        }
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.kill_all();
            let spawned = std::thread::Builder::new()
                .name("agora-cgroup-destroy".to_owned())
                .spawn(move || {
                    if let Err(err) = cgroup.destroy() {
                        tracing::warn!(%err, "cannot destroy cgroup of dropped task");
                    }
                });
            if let Err(err) = spawned {
                tracing::warn!(%err, "cannot start cgroup cleanup thread");
            }
        }
    }
}

fn classify(
    status: io::Result<ExitStatus>,
    oom: bool,
    kill_requested: bool,
    mem_limit_bytes: u64,
) -> TaskOutcome {
    let status = match status {
        Ok(status) => status,
        Err(err) => {
            return if oom {
                TaskOutcome::OomKilled { mem_limit_bytes }
            } else {
                TaskOutcome::WaitFailed {
                    error: err.to_string(),
                }
            }
        }
    };
    if oom && !status.success() {
        return TaskOutcome::OomKilled { mem_limit_bytes };
    }
    if kill_requested {
        return TaskOutcome::Killed;
    }
    match (status.code(), status.signal()) {
        (Some(code), _) => TaskOutcome::Exited { code },
        (None, Some(signal)) => TaskOutcome::Signaled { signal },
        (None, None) => TaskOutcome::WaitFailed {
            error: format!("unrecognised wait status {status:?}"),
        },
    }
}

/// Send `signal` to process group `pgid`. Never to group 0 or 1 (our own group / init), and
/// never as kill(-1).
fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: plain syscall; `-pgid` is a specific group (< -1), not a broadcast.
        let rc = unsafe { libc::kill(-pgid, signal) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                tracing::warn!(pgid, signal, %err, "cannot signal task process group");
            }
        }
    }
}

async fn destroy_cgroup(cgroup: TaskCgroup) {
    let key = cgroup.key().to_owned();
    match tokio::task::spawn_blocking(move || cgroup.destroy()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(task_key = %key, %err, "cannot destroy task cgroup"),
        Err(err) => tracing::warn!(task_key = %key, %err, "cgroup destroy panicked"),
    }
}

fn validate_spec(spec: &TaskSpec) -> Result<(), SupervisorError> {
    if spec.command.contains('\0') {
        return Err(SupervisorError::InvalidSpec(
            "command contains a NUL byte".to_owned(),
        ));
    }
    for (key, value) in &spec.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            return Err(SupervisorError::InvalidSpec(format!(
                "bad environment variable {key:?}"
            )));
        }
    }
    Ok(())
}

/// Opens an output file of the sandbox (which may be the task's: never through a symlink,
/// never a FIFO or a hard link to another file).
fn open_append(path: &Path) -> Result<fs::File, SupervisorError> {
    crate::workdir::open_append_no_follow(path, 0o644).map_err(|source| SupervisorError::Output {
        path: path.to_path_buf(),
        source,
    })
}

/// Write the pid atomically (a new temporary file, then rename). The sandbox may be the
/// task's, which runs by now: whatever it put at the temporary path is removed (never
/// followed), and the file is created anew (`O_EXCL`, so never through a symlink).
fn write_pid_file(path: &Path, pid: i32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("pid.tmp");
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(format!("{pid}\n").as_bytes())?;
    drop(f);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32) -> io::Result<ExitStatus> {
        Ok(ExitStatus::from_raw(code << 8))
    }
    fn signaled(signal: i32) -> io::Result<ExitStatus> {
        Ok(ExitStatus::from_raw(signal))
    }

    #[test]
    fn classification() {
        let m = 32 * MIB;
        assert_eq!(
            classify(exit(0), false, false, m),
            TaskOutcome::Exited { code: 0 }
        );
        assert_eq!(
            classify(exit(3), false, false, m),
            TaskOutcome::Exited { code: 3 }
        );
        assert_eq!(
            classify(signaled(15), false, false, m),
            TaskOutcome::Signaled { signal: 15 }
        );
        assert_eq!(
            classify(signaled(9), true, false, m),
            TaskOutcome::OomKilled { mem_limit_bytes: m }
        );
        assert_eq!(
            classify(exit(137), true, false, m),
            TaskOutcome::OomKilled { mem_limit_bytes: m }
        );
        assert_eq!(
            classify(signaled(9), true, true, m),
            TaskOutcome::OomKilled { mem_limit_bytes: m }
        );
        assert_eq!(
            classify(exit(0), true, false, m),
            TaskOutcome::Exited { code: 0 }
        );
        assert_eq!(classify(signaled(15), false, true, m), TaskOutcome::Killed);
        assert_eq!(classify(exit(0), false, true, m), TaskOutcome::Killed);
        assert!(matches!(
            classify(
                Err(io::Error::from_raw_os_error(libc::ECHILD)),
                false,
                false,
                m
            ),
            TaskOutcome::WaitFailed { .. }
        ));
    }

    #[test]
    fn messages() {
        assert_eq!(
            TaskOutcome::Exited { code: 3 }.message(),
            "exited with status 3"
        );
        assert_eq!(
            TaskOutcome::Signaled { signal: 15 }.message(),
            "killed by signal 15"
        );
        assert_eq!(
            TaskOutcome::OomKilled {
                mem_limit_bytes: 32 * MIB
            }
            .message(),
            "memory limit exceeded (32 MiB)"
        );
        assert_eq!(
            TaskOutcome::OomKilled {
                mem_limit_bytes: 3 * MIB / 2
            }
            .message(),
            "memory limit exceeded (1.5 MiB)"
        );
        assert_eq!(
            TaskOutcome::OomKilled {
                mem_limit_bytes: 4096
            }
            .message(),
            "memory limit exceeded (4096 bytes)"
        );
        assert!(TaskOutcome::Exited { code: 0 }.is_success());
        assert!(!TaskOutcome::Exited { code: 1 }.is_success());
        assert!(!TaskOutcome::Killed.is_success());
    }

    #[test]
    fn specs_are_validated() {
        let spec = TaskSpec {
            command: "true".to_owned(),
            env: vec![("A".to_owned(), "1".to_owned())],
            sandbox: PathBuf::from("/nonexistent"),
            limits: Limits {
                cpus: 1.0,
                mem_bytes: MIB,
                pids_max: None,
            },
            user: None,
            container: None,
            enforce: Default::default(),
            output: Default::default(),
        };
        assert!(validate_spec(&spec).is_ok());
        for env in [("", "x"), ("A=B", "x"), ("A", "x\0")] {
            let bad = TaskSpec {
                env: vec![(env.0.to_owned(), env.1.to_owned())],
                ..spec.clone()
            };
            assert!(validate_spec(&bad).is_err(), "{env:?}");
        }
        let bad = TaskSpec {
            command: "a\0b".to_owned(),
            ..spec
        };
        assert!(validate_spec(&bad).is_err());
    }
}
