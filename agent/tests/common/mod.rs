//! Shared by the agent's integration tests: a cgroup root of its own for every agent a test
//! starts, the test's view of the host's cgroup hierarchies (read from /proc, not through
//! the code under test), and [`Sweep`], the guard that removes whatever a test started even
//! when it fails or panics.
#![allow(dead_code)]

pub mod instance;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A cgroup root no other test (or test run) uses: `agora-test-<pid>-<n>`.
pub fn unique_root() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "agora-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Every mounted cgroup hierarchy (v1, and the v2 mount), from /proc/self/mounts.
pub fn hierarchies() -> Vec<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, dir, "cgroup" | "cgroup2", ..] => Some(PathBuf::from(dir)),
                _ => None,
            }
        })
        .collect()
}

/// The cgroup `<root>/<key>` wherever it exists, in any hierarchy.
pub fn cgroup_dirs(root: &str, key: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|h| h.join(root).join(key))
        .filter(|p| p.exists())
        .collect()
}

/// Waits up to `within` for the cgroup `<root>/<key>` to be gone from every hierarchy.
pub fn assert_cgroup_gone(root: &str, key: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left = cgroup_dirs(root, key);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "cgroup left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is alive and not a zombie (an orphan may never be reaped here).
pub fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// A pid written in a file (e.g. `executor.pid`, `.task.pid`).
pub fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The process group of `pid`.
fn pgid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    // state ppid pgrp ...
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Live processes whose environment or command line names one of `dirs` (agents, executors
/// and tasks started for a test all do: work dir, sandbox).
fn processes_under(dirs: &[PathBuf]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let needles: Vec<Vec<u8>> = dirs
        .iter()
        .map(|d| d.as_os_str().as_encoded_bytes().to_vec())
        .collect();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && alive(pid))
        .filter(|pid| {
            ["environ", "cmdline"].iter().any(|file| {
                fs::read(format!("/proc/{pid}/{file}")).is_ok_and(|text| {
                    needles
                        .iter()
                        .any(|n| text.windows(n.len()).any(|w| w == n.as_slice()))
                })
            })
        })
        .collect()
}

/// Removes, on drop, everything a test started: first every process naming one of its
/// directories (killed with its process group, unless that group is the test's own), then
/// the cgroup roots, in every hierarchy, with whatever is nested and running inside. Declare
/// it after the temp dirs it names, so that it runs before they are deleted.
pub struct Sweep {
    roots: Vec<String>,
    dirs: Vec<PathBuf>,
}

impl Sweep {
    pub fn new(roots: &[&str], dirs: &[&Path]) -> Sweep {
        Sweep {
            roots: roots.iter().map(|r| r.to_string()).collect(),
            dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
        }
    }

    /// Kills the processes; returns those still alive after 3 s.
    fn kill_processes(&self) -> Vec<i32> {
        // SAFETY: getpgrp has no preconditions.
        let own_group = unsafe { libc::getpgrp() };
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let pids = processes_under(&self.dirs);
            if pids.is_empty() || Instant::now() > deadline {
                return pids;
            }
            for pid in pids {
                if let Some(group) = pgid(pid).filter(|&g| g > 1 && g != own_group) {
                    // SAFETY: kill(2) on the process group of a process this test started.
                    unsafe { libc::kill(-group, libc::SIGKILL) };
                }
                // SAFETY: kill(2) on a process this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Removes the cgroup roots; returns the directories still there after 3 s.
    fn remove_cgroups(&self) -> Vec<PathBuf> {
        let me = std::process::id() as i32;
        let tops: Vec<PathBuf> = hierarchies()
            .into_iter()
            .flat_map(|h| self.roots.iter().map(move |r| h.join(r)))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let dirs: Vec<PathBuf> = tops.iter().flat_map(|t| post_order(t)).collect();
            if dirs.is_empty() || Instant::now() > deadline {
                return dirs;
            }
            for dir in &dirs {
                let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    if pid > 1 && pid != me {
                        // SAFETY: kill(2) on a process inside this test's cgroup.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
                let _ = fs::remove_dir(dir);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The cgroup directories of the tree at `top`, deepest first.
fn post_order(top: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
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

impl Drop for Sweep {
    fn drop(&mut self) {
        let processes = self.kill_processes();
        let cgroups = self.remove_cgroups();
        if !std::thread::panicking() {
            assert!(processes.is_empty(), "processes survived: {processes:?}");
            assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
        }
    }
}
