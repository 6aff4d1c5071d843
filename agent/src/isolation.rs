//! # Cgroup isolation for one task
//!
//! Owns: finding which cgroup hierarchies the host offers (cgroups v2 with the `cpu` and
//! `memory` controllers, or separate cgroups v1 `cpu` and `memory` hierarchies, discovered
//! from `/proc/self/mountinfo`), creating one cgroup per task under a single parent named by
//! the agent (`<hierarchy root>/<root_name>/<task_key>`), writing its CPU and memory limits,
//! putting processes into it, reading its OOM-kill counter and memory usage, tearing it
//! down (SIGKILL everything inside, then `rmdir`, cgroups nested inside it first), and
//! removing the stale cgroups under the parent that the agent names no task for
//! ([`Isolation::remove_stale`], at agent start), and making process moves between cgroups
//! cheap on the host (`favordynmods`, [`Isolation::favor_dynamic_moves`]).
//!
//! Does not: spawn processes (see [`crate::supervisor`]), know what a task or a framework
//! is, talk to the network, or persist anything outside cgroupfs. Every path it writes is
//! derived from validated names (letters, digits, `-`, `_`, `.`), so a task key can never
//! escape the agent's parent cgroup.
//!
//! [`IsolationMode::None`] gives an [`Isolation`] whose every operation is a no-op, for hosts
//! (or tests) without usable cgroups.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the kernel describes this process's mounts.
const MOUNTINFO: &str = "/proc/self/mountinfo";
/// CFS period written for every task, in microseconds.
pub const CFS_PERIOD_US: u64 = 100_000;
/// Smallest CFS quota the kernel accepts, in microseconds.
const MIN_CFS_QUOTA_US: u64 = 1_000;
/// Far above any real machine, far below the kernel's own maximum quota.
const MAX_CFS_QUOTA_US: u64 = 1_000_000_000_000;
/// cgroups v1 `cpu.shares` bounds (the kernel's MIN_SHARES / MAX_SHARES).
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
/// How long [`TaskCgroup::destroy`] waits for the processes inside to die.
pub const DESTROY_TIMEOUT: Duration = Duration::from_secs(2);
const DESTROY_POLL: Duration = Duration::from_millis(10);
/// Longest accepted root name or task key (cgroupfs names are limited to 255 bytes).
const MAX_NAME_LEN: usize = 200;

/// What isolation the agent was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationMode {
    /// Put every task in a cgroup with CPU and memory limits; fail if the host has none.
    Cgroups,
    /// No isolation at all: every operation is a no-op.
    None,
}

/// Resource limits of one task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// CPUs (fractional): becomes shares/weight and a CFS quota.
    pub cpus: f64,
    /// Memory limit in bytes (no swap on top when the kernel lets us say so).
    pub mem_bytes: u64,
    /// Most processes and threads at once (`pids.max`), where the host has the pids
    /// controller; `None`: no limit.
    pub pids_max: Option<u64>,
}

/// Why an isolation operation failed. Path-carrying variants name the file and the OS error.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    #[error("no usable cgroups (need cgroups v2 with the cpu and memory controllers, or cgroups v1 cpu and memory hierarchies): {reasons}")]
    Unavailable { reasons: String },
    #[error("invalid {what} {name:?}: use 1 to 200 ASCII letters, digits, '-', '_' or '.', and not \".\" or \"..\"")]
    InvalidName { what: &'static str, name: String },
    #[error("invalid limits: {0}")]
    InvalidLimits(String),
    #[error("invalid pid {0}")]
    InvalidPid(i32),
    #[error("cgroup {path} already exists (recover or destroy it first)")]
    AlreadyExists { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("cannot create cgroup {path}: {source}")]
    Mkdir { path: PathBuf, source: io::Error },
    #[error("cannot remove cgroup {path}: {source}")]
    Rmdir { path: PathBuf, source: io::Error },
    #[error("cgroup {path} still holds processes {pids:?} after {DESTROY_TIMEOUT:?}")]
    Busy { path: PathBuf, pids: Vec<i32> },
    #[error("cannot mount {what} at {path}: {source}")]
    Mount {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
}

/// Where the agent mounts a hierarchy of no controller with `favordynmods`
/// ([`Isolation::favor_dynamic_moves`]).
pub const FAVOR_DYNMODS_MOUNT: &str = "/run/agora/cgroup-favordynmods";
/// That hierarchy's name (`name=` of a cgroups v1 mount).
const FAVOR_DYNMODS_NAME: &str = "agora_favordynmods";

/// What [`Isolation::favor_dynamic_moves`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FavorDynmods {
    /// The host has it already (a cgroup mount with `favordynmods`, e.g. this agent's from
    /// an earlier run, or the kernel's `cgroup_favordynmods=1`): the mount named.
    AlreadyOn(PathBuf),
    /// The agent mounted its hierarchy here.
    TurnedOn(PathBuf),
}

/// Which cgroup flavour a [`TaskCgroup`] (or an [`Isolation`]) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    None,
    V1,
    V2,
}

/// The host's isolation, as detected once at agent start.
#[derive(Debug, Clone)]
pub struct Isolation {
    version: Version,
    root_name: String,
    /// The agent's parent cgroup in each hierarchy (deduplicated; empty for `None`).
    parents: Vec<PathBuf>,
    /// The parent in the hierarchy that has the memory controller (`None` for no isolation).
    memory_parent: Option<PathBuf>,
    /// The parent in the hierarchy that has the cpu controller (`None` for no isolation).
    cpu_parent: Option<PathBuf>,
    /// The parent in the hierarchy that has the pids controller (`None` where the host
    /// has none).
    pids_parent: Option<PathBuf>,
}

impl Isolation {
    /// Find what the host offers and create the agent's parent cgroup `root_name` under the
    /// root of each hierarchy used (enabling `cpu` and `memory` for children on v2).
    ///
    /// cgroups v2 is used when a cgroup2 mount lists both `cpu` and `memory` in
    /// `cgroup.controllers`; otherwise cgroups v1 when both a `cpu` and a `memory` hierarchy
    /// are mounted. With [`IsolationMode::Cgroups`] and neither usable this is an error.
    pub fn detect(mode: IsolationMode, root_name: &str) -> Result<Isolation, IsolationError> {
        validate_name("root name", root_name)?;
        match mode {
            IsolationMode::None => Ok(Isolation {
                version: Version::None,
                root_name: root_name.to_owned(),
                parents: Vec::new(),
                memory_parent: None,
                cpu_parent: None,
                pids_parent: None,
            }),
            IsolationMode::Cgroups => {
                let text =
                    fs::read_to_string(MOUNTINFO).map_err(|source| IsolationError::Read {
                        path: PathBuf::from(MOUNTINFO),
                        source,
                    })?;
                let mounts = parse_mountinfo(&text);
                let layout = choose_layout(&mounts, |dir| {
                    fs::read_to_string(dir.join("cgroup.controllers"))
                })
                .map_err(|reasons| IsolationError::Unavailable { reasons })?;
                Self::set_up(layout, root_name)
            }
        }
    }

    fn set_up(layout: Layout, root_name: &str) -> Result<Isolation, IsolationError> {
        match layout {
            Layout::V2 { mount } => {
                let parent = mount.join(root_name);
                enable_controllers(&mount)?;
                mkdir_existing_ok(&parent)?;
                enable_controllers(&parent)?;
                let pids = fs::read_to_string(parent.join("cgroup.subtree_control"))
                    .is_ok_and(|t| t.split_whitespace().any(|c| c == "pids"));
                tracing::debug!(parent = %parent.display(), pids, "cgroups v2 isolation ready");
                Ok(Isolation {
                    version: Version::V2,
                    root_name: root_name.to_owned(),
                    parents: vec![parent.clone()],
                    memory_parent: Some(parent.clone()),
                    pids_parent: pids.then(|| parent.clone()),
                    cpu_parent: Some(parent),
                })
            }
            Layout::V1 { cpu, memory, pids } => {
                let cpu_parent = cpu.join(root_name);
                let memory_parent = memory.join(root_name);
                let pids_parent = pids.map(|p| p.join(root_name));
                let mut parents = vec![cpu_parent.clone()];
                if memory_parent != cpu_parent {
                    parents.push(memory_parent.clone());
                }
                if let Some(p) = &pids_parent {
                    if !parents.contains(p) {
                        parents.push(p.clone());
                    }
                }
                for parent in &parents {
                    mkdir_existing_ok(parent)?;
                }
                tracing::debug!(cpu = %cpu_parent.display(), memory = %memory_parent.display(),
                    "cgroups v1 isolation ready");
                Ok(Isolation {
                    version: Version::V1,
                    root_name: root_name.to_owned(),
                    parents,
                    memory_parent: Some(memory_parent),
                    cpu_parent: Some(cpu_parent),
                    pids_parent,
                })
            }
        }
    }

    /// Makes moving a process into a cgroup cheap, host-wide. Writing a pid to
    /// `cgroup.procs` takes the kernel's `cgroup_threadgroup_rwsem` for writing, which by
    /// default waits for an RCU grace period first: 11-20 ms per task start on this
    /// project's machine, most of a launch. Since Linux 6.0 a cgroup hierarchy mounted with
    /// `favordynmods` keeps that lock in the mode where a writer does not wait (forks and
    /// exits pay an atomic operation instead); it holds for every hierarchy while any such
    /// mount exists. The agent mounts a hierarchy of no controller, named
    /// `agora_favordynmods`, at [`FAVOR_DYNMODS_MOUNT`] unless a cgroup mount already has
    /// the option; the mount stays after the agent exits (it changes nothing else), and the
    /// next agent finds it. `None` without cgroup isolation.
    pub fn favor_dynamic_moves(&self) -> Result<Option<FavorDynmods>, IsolationError> {
        if self.version == Version::None {
            return Ok(None);
        }
        let text = fs::read_to_string(MOUNTINFO).map_err(|source| IsolationError::Read {
            path: PathBuf::from(MOUNTINFO),
            source,
        })?;
        if let Some(m) = parse_mountinfo(&text).into_iter().find(|m| {
            (m.fs_type == "cgroup" || m.fs_type == "cgroup2")
                && m.super_options.iter().any(|o| o == "favordynmods")
        }) {
            return Ok(Some(FavorDynmods::AlreadyOn(m.mount_point)));
        }
        let path = PathBuf::from(FAVOR_DYNMODS_MOUNT);
        fs::create_dir_all(&path).map_err(|source| IsolationError::Mkdir {
            path: path.clone(),
            source,
        })?;
        let options = format!("none,name={FAVOR_DYNMODS_NAME},favordynmods");
        let mount_error = |source| IsolationError::Mount {
            what: format!("cgroup ({options})"),
            path: path.clone(),
            source,
        };
        let (source, target, fs_type, data) = (
            CString::new("cgroup").expect("no NUL"),
            CString::new(path.as_os_str().as_bytes())
                .map_err(|_| mount_error(io::Error::from(io::ErrorKind::InvalidInput)))?,
            CString::new("cgroup").expect("no NUL"),
            CString::new(options.as_str()).expect("no NUL"),
        );
        // SAFETY: every pointer is a NUL-terminated string alive for the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fs_type.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(mount_error(io::Error::last_os_error()));
        }
        Ok(Some(FavorDynmods::TurnedOn(path)))
    }

    /// "cgroups-v1", "cgroups-v2" or "none".
    pub fn kind(&self) -> &'static str {
        match self.version {
            Version::None => "none",
            Version::V1 => "cgroups-v1",
            Version::V2 => "cgroups-v2",
        }
    }

    /// The name of the agent's parent cgroup.
    pub fn root_name(&self) -> &str {
        &self.root_name
    }

    /// The agent's parent cgroup in each hierarchy used (empty without isolation).
    pub fn parent_paths(&self) -> &[PathBuf] {
        &self.parents
    }

    /// Create the cgroup of task `task_key` with `limits`. Fails with
    /// [`IsolationError::AlreadyExists`] if it is already there (see [`Isolation::recover`]);
    /// on any failure nothing is left behind.
    pub fn create(&self, task_key: &str, limits: &Limits) -> Result<TaskCgroup, IsolationError> {
        validate_name("task key", task_key)?;
        validate_limits(limits)?;
        let cgroup = self.task_cgroup(task_key);
        let mut made: Vec<&PathBuf> = Vec::new();
        for dir in &cgroup.dirs {
            if let Err(err) = fs::create_dir(dir) {
                rmdir_quietly(&made);
                return Err(if err.kind() == io::ErrorKind::AlreadyExists {
                    IsolationError::AlreadyExists { path: dir.clone() }
                } else {
                    IsolationError::Mkdir {
                        path: dir.clone(),
                        source: err,
                    }
                });
            }
            made.push(dir);
        }
        if let Err(err) = self.write_limits(&cgroup, limits) {
            rmdir_quietly(&made);
            return Err(err);
        }
        tracing::debug!(
            task_key,
            kind = self.kind(),
            cpus = limits.cpus,
            mem_bytes = limits.mem_bytes,
            "created task cgroup"
        );
        Ok(cgroup)
    }

    /// The cgroup of `task_key` if it exists (e.g. after an agent restart). When only some
    /// hierarchies still have it (a crash in the middle of create or destroy), the returned
    /// handle covers those. Always `None` without isolation or for an invalid key.
    pub fn recover(&self, task_key: &str) -> Option<TaskCgroup> {
        if self.version == Version::None || validate_name("task key", task_key).is_err() {
            return None;
        }
        let mut cgroup = self.task_cgroup(task_key);
        cgroup.dirs.retain(|dir| dir.is_dir());
        if cgroup
            .memory_dir
            .as_ref()
            .is_some_and(|dir| !cgroup.dirs.contains(dir))
        {
            cgroup.memory_dir = None;
        }
        (!cgroup.dirs.is_empty()).then_some(cgroup)
    }

    /// Keys of every task cgroup currently under the agent's parent, sorted (for recovery).
    pub fn task_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for parent in &self.parents {
            let Ok(entries) = fs::read_dir(parent) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if let Some(name) = entry.file_name().to_str() {
                    if validate_name("task key", name).is_ok() {
                        keys.push(name.to_owned());
                    }
                }
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Remove the agent's (empty) parent cgroup from every hierarchy. Fails if task cgroups
    /// are still inside; a parent already gone is fine.
    pub fn remove_root(&self) -> Result<(), IsolationError> {
        for parent in &self.parents {
            match fs::remove_dir(parent) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(IsolationError::Rmdir {
                        path: parent.clone(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Remove every cgroup under the agent's parent, in every hierarchy, whose name `keep`
    /// does not accept (with whatever is nested under it, killing the processes inside):
    /// at agent start, the cgroups of tasks it no longer knows. Returns each cgroup
    /// removed, or why it could not be; names that are not task keys are never kept.
    pub fn remove_stale(
        &self,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<Result<PathBuf, IsolationError>> {
        let mut outcomes = Vec::new();
        for parent in &self.parents {
            let Ok(entries) = fs::read_dir(parent) else {
                continue;
            };
            let mut stale: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| {
                    !e.file_name()
                        .to_str()
                        .is_some_and(|name| validate_name("task key", name).is_ok() && keep(name))
                })
                .map(|e| e.path())
                .collect();
            stale.sort();
            for dir in stale {
                let deadline = Instant::now() + DESTROY_TIMEOUT;
                outcomes.push(remove_tree(&dir, deadline).map(|()| dir));
            }
        }
        outcomes
    }

    fn task_cgroup(&self, task_key: &str) -> TaskCgroup {
        TaskCgroup {
            key: task_key.to_owned(),
            version: self.version,
            dirs: self.parents.iter().map(|p| p.join(task_key)).collect(),
            memory_dir: self.memory_parent.as_ref().map(|p| p.join(task_key)),
            cpu_dir: self.cpu_parent.as_ref().map(|p| p.join(task_key)),
            pids_dir: self.pids_parent.as_ref().map(|p| p.join(task_key)),
        }
    }

    fn write_limits(&self, cgroup: &TaskCgroup, limits: &Limits) -> Result<(), IsolationError> {
        let shares = cpu_shares(limits.cpus);
        let quota = cfs_quota_us(limits.cpus);
        let (Some(cpu), Some(memory)) = (&cgroup.cpu_dir, &cgroup.memory_dir) else {
            return Ok(());
        };
        if let (Some(pids), Some(max)) = (&cgroup.pids_dir, limits.pids_max) {
            write_file(&pids.join("pids.max"), &max.to_string())?;
        }
        match self.version {
            Version::None => {}
            Version::V1 => {
                write_file(&cpu.join("cpu.shares"), &shares.to_string())?;
                write_file(&cpu.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
                write_file(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
                let mem = limits.mem_bytes.to_string();
                write_file(&memory.join("memory.limit_in_bytes"), &mem)?;
                // Memory+swap: only with swap accounting (absent or read-only on many hosts).
                let memsw = memory.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    if let Err(err) = write_file(&memsw, &mem) {
                        tracing::debug!(%err, "memory+swap limit not set");
                    }
                }
            }
            Version::V2 => {
                write_file(&cpu.join("cpu.weight"), &cpu_weight(shares).to_string())?;
                write_file(&cpu.join("cpu.max"), &format!("{quota} {CFS_PERIOD_US}"))?;
                write_file(&memory.join("memory.max"), &limits.mem_bytes.to_string())?;
                let swap = memory.join("memory.swap.max");
                if swap.exists() {
                    write_file(&swap, "0")?;
                }
                let group = memory.join("memory.oom.group");
                if group.exists() {
                    write_file(&group, "1")?;
                }
            }
        }
        Ok(())
    }
}

/// The cgroup of one task, in every hierarchy the [`Isolation`] uses. Without isolation every
/// method is a no-op.
#[derive(Debug, Clone)]
pub struct TaskCgroup {
    key: String,
    version: Version,
    dirs: Vec<PathBuf>,
    memory_dir: Option<PathBuf>,
    cpu_dir: Option<PathBuf>,
    pids_dir: Option<PathBuf>,
}

impl TaskCgroup {
    /// The task key this cgroup was created for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The task's cgroup directory in each hierarchy (empty without isolation).
    pub fn paths(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Move process `pid` (with all its threads) into the cgroup in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<(), IsolationError> {
        if pid <= 0 {
            // "0" would mean "the writer itself", a negative pid is meaningless.
            return Err(IsolationError::InvalidPid(pid));
        }
        for dir in &self.dirs {
            write_file(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Every process in the cgroup and in any cgroup nested under it (union over
    /// hierarchies, sorted). A hierarchy whose directory is gone counts as empty.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for dir in &self.dirs {
            pids.extend(tree_pids(dir));
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Whether the kernel OOM-killed a process of this cgroup (the `oom_kill` counter of
    /// `memory.oom_control` on v1, `memory.events` on v2).
    pub fn oom_killed(&self) -> bool {
        let Some(memory) = &self.memory_dir else {
            return false;
        };
        let file = match self.version {
            Version::None => return false,
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        fs::read_to_string(memory.join(file))
            .ok()
            .and_then(|text| keyed_value(&text, "oom_kill"))
            .is_some_and(|n| n > 0)
    }

    /// Whether a fork of this cgroup failed at its `pids.max` (the `max` counter of
    /// `pids.events`).
    pub fn pids_limit_hit(&self) -> bool {
        let Some(pids) = &self.pids_dir else {
            return false;
        };
        fs::read_to_string(pids.join("pids.events"))
            .ok()
            .and_then(|text| keyed_value(&text, "max"))
            .is_some_and(|n| n > 0)
    }

    /// Current memory usage in bytes, if known.
    pub fn memory_usage(&self) -> Option<u64> {
        let memory = self.memory_dir.as_ref()?;
        let file = match self.version {
            Version::None => return None,
            Version::V1 => "memory.usage_in_bytes",
            Version::V2 => "memory.current",
        };
        fs::read_to_string(memory.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// CPU time used by the cgroup's processes, in seconds, if known: `usage_usec` of
    /// `cpu.stat` on v2, `cpuacct.usage` on v1 where cpuacct shares the cpu hierarchy.
    /// Where cpuacct is a hierarchy of its own (the agent makes no task cgroups there), it
    /// is the user and system time of the processes in the cgroup now, with that of the
    /// children they reaped (`/proc/PID/stat`): processes that exited unreaped by the
    /// cgroup are then not counted, so it may go down.
    pub fn cpu_usage_seconds(&self) -> Option<f64> {
        let cpu = self.cpu_dir.as_ref()?;
        match self.version {
            Version::None => None,
            Version::V2 => fs::read_to_string(cpu.join("cpu.stat"))
                .ok()
                .and_then(|text| keyed_value(&text, "usage_usec"))
                .map(|us| us as f64 / 1e6),
            Version::V1 => match fs::read_to_string(cpu.join("cpuacct.usage")) {
                Ok(text) => text.trim().parse::<u64>().ok().map(|ns| ns as f64 / 1e9),
                Err(_) if cpu.is_dir() => Some(
                    self.pids()
                        .into_iter()
                        .filter_map(process_cpu_seconds)
                        .sum(),
                ),
                Err(_) => None,
            },
        }
    }

    /// SIGKILL every process in the cgroup and in the cgroups nested under it (through
    /// `cgroup.kill` on v2 when the kernel has it). Best effort: processes forked meanwhile
    /// are caught by [`TaskCgroup::destroy`]'s retries.
    pub fn kill_all(&self) {
        for dir in &self.dirs {
            kill_tree(dir);
        }
    }

    /// Kill everything inside, wait (up to [`DESTROY_TIMEOUT`]) for it to be empty, and
    /// remove the cgroup, and any cgroup nested under it (deepest first), from every
    /// hierarchy. Already removed directories are fine.
    pub fn destroy(&self) -> Result<(), IsolationError> {
        let deadline = Instant::now() + DESTROY_TIMEOUT;
        for dir in &self.dirs {
            remove_tree(dir, deadline)?;
        }
        tracing::debug!(task_key = %self.key, "destroyed task cgroup");
        Ok(())
    }

    /// The `cgroup.procs` file of every hierarchy, for [`join_cgroups_from_child`] in a
    /// `pre_exec` hook (prepared before fork: the child must not allocate).
    pub fn procs_paths(&self) -> Vec<CString> {
        self.dirs
            .iter()
            .filter_map(|dir| CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).ok())
            .collect()
    }
}

/// Write the calling process's pid into each `cgroup.procs` path. Async-signal-safe (only
/// `getpid`, `open`, `write` and `close`; no allocation), so it may run in a `pre_exec` hook
/// between fork and exec: the task then never runs a single instruction of its own outside
/// its limits.
pub fn join_cgroups_from_child(procs_paths: &[CString]) -> io::Result<()> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut buf = [0u8; 12];
    let digits = format_pid(pid, &mut buf);
    for path in procs_paths {
        // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened by us; `digits` is a valid buffer of that length.
        let written = unsafe { libc::write(fd, digits.as_ptr().cast(), digits.len()) };
        let err = (written < 0).then(io::Error::last_os_error);
        // SAFETY: closes the descriptor we opened above, exactly once.
        unsafe { libc::close(fd) };
        if let Some(err) = err {
            return Err(err);
        }
    }
    Ok(())
}

/// Every cgroup directory of the tree rooted at `top`, deepest first (`top` last); empty
/// when `top` is gone.
fn subtree_post_order(top: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&entry.path(), out);
                }
            }
        }
        out.push(dir.to_path_buf());
    }
    let mut out = Vec::new();
    if top.is_dir() {
        walk(top, &mut out);
    }
    out
}

/// The processes of every cgroup in the tree rooted at `top`.
fn tree_pids(top: &Path) -> Vec<i32> {
    subtree_post_order(top)
        .iter()
        .filter_map(|dir| fs::read_to_string(dir.join("cgroup.procs")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// SIGKILL every process in the tree rooted at `top` (v2: through `cgroup.kill`, which
/// covers the subtree, when the kernel has it). Never the calling process.
fn kill_tree(top: &Path) {
    let kill = top.join("cgroup.kill");
    if kill.exists() && write_file(&kill, "1").is_ok() {
        return;
    }
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    for pid in tree_pids(top) {
        if pid > 0 && pid != me {
            // SAFETY: plain syscall on a positive pid read from cgroup.procs (never 0,
            // -1 or a group), so it cannot reach processes outside the cgroup except
            // through pid reuse in the instant since the read.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Kill everything in the tree rooted at `top` and remove its cgroups, deepest first,
/// retrying while they are busy (processes still dying) until `deadline`. A tree already
/// gone is fine.
fn remove_tree(top: &Path, deadline: Instant) -> Result<(), IsolationError> {
    loop {
        let dirs = subtree_post_order(top);
        if dirs.is_empty() {
            return Ok(());
        }
        kill_tree(top);
        let mut busy = None;
        for dir in dirs {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
                    busy.get_or_insert(dir);
                }
                Err(source) => return Err(IsolationError::Rmdir { path: dir, source }),
            }
        }
        let Some(path) = busy else {
            continue; // all removed: the next round finds the tree gone
        };
        if Instant::now() >= deadline {
            return Err(IsolationError::Busy {
                path,
                pids: tree_pids(top),
            });
        }
        std::thread::sleep(DESTROY_POLL);
    }
}

/// Decimal digits of a positive pid, without allocating.
fn format_pid(pid: i32, buf: &mut [u8; 12]) -> &[u8] {
    let mut n = pid.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

/// `cpu.shares` for `cpus` (1024 per CPU, within the kernel's bounds).
pub fn cpu_shares(cpus: f64) -> u64 {
    ((cpus * 1024.0).round() as u64).clamp(MIN_SHARES, MAX_SHARES)
}

/// CFS quota in microseconds per [`CFS_PERIOD_US`] for `cpus`.
pub fn cfs_quota_us(cpus: f64) -> u64 {
    ((cpus * CFS_PERIOD_US as f64).round() as u64).clamp(MIN_CFS_QUOTA_US, MAX_CFS_QUOTA_US)
}

/// v2 `cpu.weight` (1..=10000) for v1 `cpu.shares` (2..=262144), the mapping runc and
/// systemd use.
pub fn cpu_weight(shares: u64) -> u64 {
    let shares = shares.clamp(MIN_SHARES, MAX_SHARES);
    (1 + ((shares - MIN_SHARES) * 9_999) / (MAX_SHARES - MIN_SHARES)).clamp(1, 10_000)
}

/// Whether a process whose `/proc/PID/cgroup` reads `proc_cgroup` is in the task cgroup
/// `task_key` under the agent's parent `root_name` (or a cgroup below it), in every
/// hierarchy that places it under the agent's parent at all (and in at least one).
pub fn in_task_cgroup(proc_cgroup: &str, root_name: &str, task_key: &str) -> bool {
    let mut under_root = 0;
    for line in proc_cgroup.lines() {
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some(i) = parts.iter().position(|p| *p == root_name) else {
            continue;
        };
        under_root += 1;
        if parts.get(i + 1) != Some(&task_key) {
            return false;
        }
    }
    under_root > 0
}

fn validate_name(what: &'static str, name: &str) -> Result<(), IsolationError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(IsolationError::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

fn validate_limits(limits: &Limits) -> Result<(), IsolationError> {
    if !limits.cpus.is_finite() || limits.cpus <= 0.0 {
        return Err(IsolationError::InvalidLimits(format!(
            "cpus must be a positive number, got {}",
            limits.cpus
        )));
    }
    if limits.mem_bytes == 0 || limits.mem_bytes > i64::MAX as u64 {
        return Err(IsolationError::InvalidLimits(format!(
            "mem_bytes must be between 1 and {}, got {}",
            i64::MAX,
            limits.mem_bytes
        )));
    }
    Ok(())
}

/// Write `value` to an existing cgroupfs file in one `write` call.
fn write_file(path: &Path, value: &str) -> Result<(), IsolationError> {
    let err = |source| IsolationError::Write {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source,
    };
    let mut file = fs::OpenOptions::new().write(true).open(path).map_err(err)?;
    file.write_all(value.as_bytes()).map_err(err)
}

fn mkdir_existing_ok(dir: &Path) -> Result<(), IsolationError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(IsolationError::Mkdir {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

fn rmdir_quietly(dirs: &[&PathBuf]) {
    for dir in dirs {
        if let Err(err) = fs::remove_dir(dir) {
            tracing::warn!(dir = %dir.display(), %err, "cannot roll back cgroup");
        }
    }
}

/// v2: make `cpu` and `memory` available to the children of `dir`.
fn enable_controllers(dir: &Path) -> Result<(), IsolationError> {
    let path = dir.join("cgroup.subtree_control");
    let current = fs::read_to_string(&path).map_err(|source| IsolationError::Read {
        path: path.clone(),
        source,
    })?;
    for controller in ["cpu", "memory"] {
        if !current.split_whitespace().any(|c| c == controller) {
            write_file(&path, &format!("+{controller}"))?;
        }
    }
    // The pids controller where the host has it (limits are best effort without it).
    let available = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    if available.split_whitespace().any(|c| c == "pids")
        && !current.split_whitespace().any(|c| c == "pids")
    {
        if let Err(e) = write_file(&path, "+pids") {
            tracing::debug!(error = %e, "pids controller not enabled");
        }
    }
    Ok(())
}

/// The number after `key` in a "key value" per line file.
/// User and system time of process `pid` and of the children it reaped, in seconds
/// (fields 14 to 17 of `/proc/PID/stat`, in clock ticks).
fn process_cpu_seconds(pid: i32) -> Option<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = proc_stat_ticks(&text)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

/// utime + stime + cutime + cstime of one `/proc/PID/stat` line (the command name, in
/// parentheses, may hold spaces and parentheses: fields are counted after its last `)`).
fn proc_stat_ticks(line: &str) -> Option<u64> {
    let (_, rest) = line.rsplit_once(") ")?;
    // `rest` starts at field 3 (state): utime is field 14.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<i64>().ok().map(|v| v.max(0) as u64))
        .sum()
}

fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(key))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// One line of `/proc/self/mountinfo`, the parts we need.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    root: String,
    mount_point: PathBuf,
    fs_type: String,
    super_options: Vec<String>,
}

/// Parse mountinfo (proc(5)), whose lines read
/// `id parent major:minor root mount-point options [optional...] - fstype source super-options`
/// with octal escapes (`\040`) in paths. Bad lines are skipped.
fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            if fields.len() < 6 {
                return None;
            }
            let mut right = right.split(' ');
            let fs_type = right.next()?.to_owned();
            let _source = right.next()?;
            let super_options = right
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::to_owned)
                .collect();
            Some(MountEntry {
                root: String::from_utf8_lossy(&unescape(fields[3])).into_owned(),
                mount_point: PathBuf::from(OsStr::from_bytes(&unescape(fields[4]))),
                fs_type,
                super_options,
            })
        })
        .collect()
}

/// Undo mountinfo's `\ooo` octal escapes.
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The hierarchies to use.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    V2 {
        mount: PathBuf,
    },
    V1 {
        cpu: PathBuf,
        memory: PathBuf,
        pids: Option<PathBuf>,
    },
}

/// Pick cgroups v2 if a cgroup2 mount has both controllers, else v1 if both hierarchies
/// are mounted; otherwise say why not. `controllers_of` reads a v2 mount's
/// `cgroup.controllers`.
fn choose_layout(
    mounts: &[MountEntry],
    controllers_of: impl Fn(&Path) -> io::Result<String>,
) -> Result<Layout, String> {
    let mut reasons = Vec::new();
    for mount in mounts.iter().filter(|m| m.fs_type == "cgroup2") {
        match controllers_of(&mount.mount_point) {
            Ok(text) => {
                let has = |c: &str| text.split_whitespace().any(|x| x == c);
                if has("cpu") && has("memory") {
                    return Ok(Layout::V2 {
                        mount: mount.mount_point.clone(),
                    });
                }
                reasons.push(format!(
                    "cgroup2 at {} lacks the cpu and/or memory controller (has: {:?})",
                    mount.mount_point.display(),
                    text.trim()
                ));
            }
            Err(err) => reasons.push(format!(
                "cannot read {}/cgroup.controllers: {err}",
                mount.mount_point.display()
            )),
        }
    }
    let v1 = |controller: &str| {
        let mut candidates = mounts
            .iter()
            .filter(|m| m.fs_type == "cgroup" && m.super_options.iter().any(|o| o == controller));
        let first = candidates.next()?;
        Some(
            std::iter::once(first)
                .chain(candidates)
                .find(|m| m.root == "/")
                .unwrap_or(first)
                .mount_point
                .clone(),
        )
    };
    match (v1("cpu"), v1("memory")) {
        (Some(cpu), Some(memory)) => Ok(Layout::V1 {
            cpu,
            memory,
            pids: v1("pids"),
        }),
        (cpu, memory) => {
            if cpu.is_none() {
                reasons.push("no cgroups v1 cpu hierarchy is mounted".to_owned());
            }
            if memory.is_none() {
                reasons.push("no cgroups v1 memory hierarchy is mounted".to_owned());
            }
            Err(reasons.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_process_is_in_a_task_cgroup_only_in_every_hierarchy_under_the_agent() {
        let v2 = "0::/agora-t/fw.task-1\n";
        assert!(in_task_cgroup(v2, "agora-t", "fw.task-1"));
        assert!(in_task_cgroup(
            "0::/agora-t/fw.task-1/nested\n",
            "agora-t",
            "fw.task-1"
        ));
        assert!(!in_task_cgroup(v2, "agora-t", "fw.task-2"));
        assert!(!in_task_cgroup(v2, "other", "fw.task-1"));
        assert!(!in_task_cgroup(
            "0::/user.slice/session-1.scope\n",
            "agora-t",
            "fw.task-1"
        ));
        assert!(!in_task_cgroup("0::/agora-t\n", "agora-t", "fw.task-1"));
        let v1 =
            "12:memory:/agora-t/fw.task-1\n11:cpu,cpuacct:/agora-t/fw.task-1\n3:pids:/user.slice\n";
        assert!(in_task_cgroup(v1, "agora-t", "fw.task-1"));
        let moved = "12:memory:/agora-t/fw.task-1\n11:cpu,cpuacct:/agora-t/fw.task-2\n";
        assert!(!in_task_cgroup(moved, "agora-t", "fw.task-1"));
    }
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn no_controllers(_: &Path) -> io::Result<String> {
        Ok(String::new())
    }

    #[test]
    fn parses_mountinfo_with_optional_fields_and_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\ngarbage line\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].root, "/mnt1");
        assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(mounts[0].fs_type, "ext3");
        assert_eq!(mounts[0].super_options, vec!["rw", "errors=continue"]);
    }

    #[test]
    fn hybrid_host_without_v2_controllers_uses_v1() {
        let layout = choose_layout(&parse_mountinfo(HYBRID), no_controllers).unwrap();
        assert_eq!(
            layout,
            Layout::V1 {
                cpu: "/sys/fs/cgroup/cpu".into(),
                memory: "/sys/fs/cgroup/memory".into(),
                pids: Some("/sys/fs/cgroup/pids".into()),
            }
        );
    }

    #[test]
    fn v2_with_both_controllers_wins() {
        let text = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let layout = choose_layout(&parse_mountinfo(text), |_| {
            Ok("cpuset cpu io memory pids\n".to_owned())
        })
        .unwrap();
        assert_eq!(
            layout,
            Layout::V2 {
                mount: "/sys/fs/cgroup".into()
            }
        );
    }

    #[test]
    fn v2_without_memory_and_no_v1_is_unavailable() {
        let text = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let err = choose_layout(&parse_mountinfo(text), |_| Ok("cpu pids".to_owned())).unwrap_err();
        assert!(err.contains("lacks"), "{err}");
        assert!(err.contains("no cgroups v1 memory hierarchy"), "{err}");
    }

    #[test]
    fn co_mounted_v1_controllers_and_cpuset_is_not_cpu() {
        let text = "\
34 31 0:31 / /cg/cpuset rw - cgroup cgroup rw,cpuset
35 31 0:32 /nested /cg/both rw - cgroup cgroup rw,cpu,cpuacct,memory
36 31 0:32 / /cg/both2 rw - cgroup cgroup rw,cpu,cpuacct,memory
";
        let layout = choose_layout(&parse_mountinfo(text), no_controllers).unwrap();
        assert_eq!(
            layout,
            Layout::V1 {
                cpu: "/cg/both2".into(),
                memory: "/cg/both2".into(),
                pids: None,
            }
        );
        let only_cpuset = "34 31 0:31 / /cg/cpuset rw - cgroup cgroup rw,cpuset\n";
        assert!(choose_layout(&parse_mountinfo(only_cpuset), no_controllers).is_err());
    }

    #[test]
    fn cpu_values() {
        assert_eq!(cpu_shares(1.0), 1024);
        assert_eq!(cpu_shares(0.5), 512);
        assert_eq!(cpu_shares(0.001), 2);
        assert_eq!(cpu_shares(1e12), MAX_SHARES);
        assert_eq!(cfs_quota_us(0.5), 50_000);
        assert_eq!(cfs_quota_us(0.29), 29_000);
        assert_eq!(cfs_quota_us(0.001), 1_000);
        assert_eq!(cfs_quota_us(4.0), 400_000);
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(1024), 39);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(0), 1);
    }

    #[test]
    fn names_are_validated() {
        for good in ["a", "task-1_x.y", "A9", &"x".repeat(MAX_NAME_LEN)] {
            assert!(validate_name("task key", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a b",
            "tâche",
            "x\0y",
            "a\n",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(validate_name("task key", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits_are_validated() {
        let ok = Limits {
            cpus: 0.1,
            mem_bytes: 1,
            pids_max: None,
        };
        assert!(validate_limits(&ok).is_ok());
        for cpus in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(validate_limits(&Limits { cpus, ..ok }).is_err(), "{cpus}");
        }
        for mem_bytes in [0, u64::MAX] {
            assert!(validate_limits(&Limits { mem_bytes, ..ok }).is_err());
        }
    }

    #[test]
    fn pid_digits_and_keyed_values() {
        let mut buf = [0u8; 12];
        assert_eq!(format_pid(0, &mut buf), b"0");
        assert_eq!(format_pid(4_194_304, &mut buf), b"4194304");
        assert_eq!(format_pid(i32::MAX, &mut buf), b"2147483647");
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_value(text, "oom_kill"), Some(3));
        assert_eq!(keyed_value(text, "oom"), None);
        assert_eq!(keyed_value("oom_kill x", "oom_kill"), None);
    }

    #[test]
    fn none_isolation_is_a_no_op() {
        let iso = Isolation::detect(IsolationMode::None, "agora-unit-none").unwrap();
        assert_eq!(iso.kind(), "none");
        let cg = iso
            .create(
                "t1",
                &Limits {
                    cpus: 1.0,
                    mem_bytes: 1 << 20,
                    pids_max: None,
                },
            )
            .unwrap();
        assert!(cg.paths().is_empty());
        assert!(cg.procs_paths().is_empty());
        assert!(cg.pids().is_empty());
        assert!(!cg.oom_killed());
        assert_eq!(cg.memory_usage(), None);
        assert_eq!(cg.cpu_usage_seconds(), None);
        cg.add_pid(1).unwrap();
        cg.kill_all();
        cg.destroy().unwrap();
        assert!(iso.recover("t1").is_none());
        assert!(iso.task_keys().is_empty());
        assert!(iso.remove_stale(|_| false).is_empty());
        iso.remove_root().unwrap();
        assert!(Isolation::detect(IsolationMode::None, "../x").is_err());
    }

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime ...
        let line = "42 (a) b) c) S 1 42 42 0 -1 4194560 10 0 0 0 7 3 20 5 20 0 1 0 99\n";
        assert_eq!(proc_stat_ticks(line), Some(35));
        assert_eq!(proc_stat_ticks("42 (short) S 1 2"), None);
        let me = std::process::id() as i32;
        assert!(process_cpu_seconds(me).is_some_and(|s| s >= 0.0));
    }
}
