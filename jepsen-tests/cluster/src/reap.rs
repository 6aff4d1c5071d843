//! Nothing a test starts outlives it: the processes it starts, what its agents start, and
//! the cgroups they make.
//!
//! - [`spawn`] starts a process in its own process group with a parent-death signal
//!   (SIGKILL), so it dies with the test process even when that is SIGKILLed or panics
//!   with `panic = "abort"`. Linux sends that signal when the *thread* that forked the child
//!   exits, so every fork happens on one thread that lives as long as the process, never on
//!   a test's thread or a runtime's worker; the child checks right after setting the signal
//!   that its parent is still the one that forked it.
//! - [`kill_group`] SIGKILLs a process group (a master or an agent and whatever it forked
//!   without leaving the group).
//! - [`kill_owned`] SIGKILLs every process whose environment carries [`OWNER_ENV`] with a
//!   matching value. Executors deliberately leave their agent's session (so they outlive
//!   it and a restarted agent recovers them), so no group signal reaches them; they and
//!   their tasks inherit the agent's environment, where the fixture puts [`OWNER_ENV`].
//! - [`remove_cgroup_root`] SIGKILLs every process in a cgroup root's subtree, in every
//!   mounted hierarchy (v1 and v2), and removes the cgroups bottom-up; [`cgroup_roots`]
//!   finds the roots a killed run left (by name prefix).
//!
//! What it must not do: touch a process or a cgroup it was not named (by owner value or
//! root name); its callers name only what they created.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable that marks every process started on behalf of one agent of a
/// test (the agent, its executors, their tasks). Its value names the owner.
pub const OWNER_ENV: &str = "AGORA_TEST_OWNER";

/// How long removal keeps killing what a cgroup or an owner still holds before it gives up.
const KILL_PATIENCE: Duration = Duration::from_secs(5);

/// How long an empty environment is read again before it is believed (see [`environ`]).
const EXEC_PATIENCE: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ReapError {
    #[error("invalid cgroup root name {0:?}: one path component, not . or ..")]
    InvalidRoot(String),
    #[error("cgroup {path} still holds processes {pids:?} after {KILL_PATIENCE:?}")]
    StillBusy { path: PathBuf, pids: Vec<i32> },
    #[error("cannot remove cgroup {path}: {source}")]
    Rmdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the spawner thread is gone")]
    SpawnerGone,
}

// ---------------------------------------------------------------------------------------
// Spawning

type Job = (Command, mpsc::Sender<io::Result<Child>>);

/// The one thread that forks every child: it lives as long as the process, so the
/// parent-death signal fires only when the process ends.
fn spawner() -> &'static mpsc::Sender<Job> {
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("agora-test-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the spawner thread");
        tx
    })
}

/// Starts `cmd` in its own process group, SIGKILLed by the kernel when this process ends
/// (however it ends). Add arguments, environment, stdio and any `pre_exec` hook first.
pub fn spawn(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: prctl and getppid are async-signal-safe and allocate nothing.
    unsafe {
        cmd.pre_exec(move || die_with_parent(parent));
    }
    let (tx, rx) = mpsc::channel();
    let gone = || io::Error::other(ReapError::SpawnerGone);
    spawner().send((cmd, tx)).map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
}

/// In a forked child: ask for SIGKILL when the forking thread ends, then make sure the
/// parent did not end before that (the signal would never come).
fn die_with_parent(parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: plain syscalls on the calling process.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Processes

/// SIGKILLs process group `pgid` (no-op for 0 or 1, which would mean "ours" or "all").
pub fn kill_group(pgid: u32) {
    if pgid > 1 {
        // SAFETY: kill(2) on a negative pid: the group of a child we started.
        unsafe {
            libc::kill(-(pgid as libc::pid_t), libc::SIGKILL);
        }
    }
}

fn sigkill(pid: i32) {
    if pid > 1 && pid as u32 != std::process::id() {
        // SAFETY: kill(2) on one positive pid (never 0, -1 or a group).
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The value of [`OWNER_ENV`] in process `pid`'s environment, if it has one.
pub fn owner_of(pid: i32) -> Option<String> {
    let env = environ(pid)?;
    let key = format!("{OWNER_ENV}=");
    env.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(key.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Process `pid`'s environment block. A process in the middle of an exec shows an empty
/// one for a moment (its new memory has no environment yet): an empty read is taken again
/// for up to [`EXEC_PATIENCE`], unless the process is a kernel thread (which has none).
fn environ(pid: i32) -> Option<Vec<u8>> {
    let start = Instant::now();
    loop {
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        if !env.is_empty() || start.elapsed() > EXEC_PATIENCE || is_kernel_thread(pid) {
            return Some(env);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether `pid` is a kernel thread (`PF_KTHREAD` in the flags of `/proc/PID/stat`).
fn is_kernel_thread(pid: i32) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // After "pid (comm)": state ppid pgrp session tty_nr tpgid flags.
            let (_, rest) = s.rsplit_once(')')?;
            rest.split_whitespace().nth(6)?.parse::<u64>().ok()
        })
        .is_some_and(|flags| flags & PF_KTHREAD != 0)
}

/// Live processes (zombies excluded) whose [`OWNER_ENV`] value satisfies `owned`.
pub fn owned_pids(owned: impl Fn(&str) -> bool) -> Vec<i32> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me && alive(pid))
        .filter(|&pid| owner_of(pid).is_some_and(|o| owned(&o)))
        .collect()
}

/// Whether `pid` still runs: it exists and is not a zombie whose threads have all ended.
/// (A killed process's main thread turns zombie while its other threads may still be
/// exiting, holding its files and ports.)
pub fn alive(pid: i32) -> bool {
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        });
    match state {
        None => false,
        Some('Z') | Some('X') => std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count() > 1)
            .unwrap_or(false),
        Some(_) => true,
    }
}

/// SIGKILLs every process whose [`OWNER_ENV`] value satisfies `owned`, again and again
/// until none is left (a dying executor may have forked); the pids it killed.
pub fn kill_owned(owned: impl Fn(&str) -> bool) -> Vec<i32> {
    let mut killed = BTreeSet::new();
    let deadline = Instant::now() + KILL_PATIENCE;
    loop {
        let pids = owned_pids(&owned);
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            sigkill(pid);
            killed.insert(pid);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    killed.into_iter().collect()
}

// ---------------------------------------------------------------------------------------
// Cgroups

/// Mount points of every cgroup hierarchy (v1 and v2), from `/proc/self/mountinfo`.
pub fn hierarchies() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            let mount_point = pre.split_whitespace().nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn validate_root(name: &str) -> Result<(), ReapError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(ReapError::InvalidRoot(name.to_string()));
    }
    Ok(())
}

/// Every directory under `dir` (itself included), children before parents.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(subtree(&e.path()));
            }
        }
    }
    if dir.is_dir() {
        out.push(dir.to_path_buf());
    }
    out
}

fn procs(dirs: &[PathBuf]) -> Vec<i32> {
    let mut pids: Vec<i32> = dirs
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Names of top-level cgroups starting with `prefix`, in any hierarchy.
pub fn cgroup_roots(prefix: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    for h in hierarchies() {
        if let Ok(entries) = std::fs::read_dir(&h) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(prefix) && e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.insert(name);
                }
            }
        }
    }
    out.into_iter().collect()
}

/// SIGKILLs every process in cgroup `root` and its descendants, in every hierarchy, until
/// none is left, then removes them bottom-up. A root that exists nowhere is fine.
pub fn remove_cgroup_root(root: &str) -> Result<(), ReapError> {
    validate_root(root)?;
    let tops: Vec<PathBuf> = hierarchies()
        .into_iter()
        .map(|h| h.join(root))
        .filter(|d| d.is_dir())
        .collect();
    if tops.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + KILL_PATIENCE;
    let mut last_err = None;
    loop {
        let dirs: Vec<PathBuf> = tops.iter().flat_map(|t| subtree(t)).collect();
        if dirs.is_empty() {
            return Ok(());
        }
        let pids = procs(&dirs);
        for &pid in &pids {
            sigkill(pid);
        }
        if pids.is_empty() {
            // Children first (subtree lists them before their parent).
            last_err = None;
            for d in &dirs {
                match std::fs::remove_dir(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => {
                        last_err = Some(ReapError::Rmdir {
                            path: d.clone(),
                            source,
                        })
                    }
                }
            }
            if last_err.is_none() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(match last_err {
                Some(e) if pids.is_empty() => e,
                _ => ReapError::StillBusy {
                    path: tops[0].clone(),
                    pids,
                },
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
