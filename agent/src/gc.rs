//! Collection of finished sandboxes (Mesos' `--gc_delay`, `--gc_disk_headroom`,
//! `--disk_watch_interval`; see [`crate::config::GcConfig`]).
//!
//! A sandbox (`<work_dir>/sandboxes/<framework>/<executor>`) is scheduled once it is
//! finished: its executor has exited, its task is terminal and every status update of the
//! task has been acknowledged by the master ([`policy::collectable`], checked by
//! [`crate::tasks::Tasks`] when an executor exits, when an acknowledgement empties a task's
//! queue, and for every task it recovers). Its finish time is checkpointed
//! (`meta/.../tasks/<task>/sandbox.finished`), so an agent restarted later schedules it
//! again for the same moment; a finished sandbox without one (an agent that stopped
//! before writing it, or older than this) is scheduled from its directory's modification
//! time, as Mesos does.
//!
//! The decision (what goes at a given moment) is [`policy`], without I/O or clock reads.
//! This module is the thin rest: the schedule shared with the tasks ([`Collector`]), the
//! filesystem usage (`statvfs(2)` of the work dir, `(blocks - free) / blocks` as Mesos'
//! `fs::usage`), the removal (`remove_dir_all`, which never follows a symlink the task may
//! have planted), and the loop ([`run`]) that wakes when the next sandbox is due and every
//! `--disk-watch-interval`, until the agent shuts down. Each removal is logged at info in a
//! `gc` span naming the sandbox's path, framework, executor and task, with the bytes it
//! held; the agent has no metrics registry, so the running totals are in that line too
//! (and in [`Collector::totals`]).
//!
//! What it does not collect: the task's checkpoint (small; it keeps a re-delivered launch
//! of the task from running it again), a framework's directory once empty (a launch may be
//! creating a sandbox in it), and sandboxes no checkpoint names.

pub mod policy;

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::clock;
use crate::config::GcConfig;
use policy::{Policy, Reason, Sandbox, Schedule};

/// The schedule of finished sandboxes, shared by the tasks (which add to it) and the
/// collection loop. Cheap to clone.
#[derive(Clone, Default)]
pub struct Collector {
    schedule: Arc<Mutex<Schedule>>,
    wake: Arc<Notify>,
    removed: Arc<AtomicU64>,
    bytes_freed: Arc<AtomicU64>,
}

/// One sandbox removed.
#[derive(Clone, Debug, PartialEq)]
pub struct Removal {
    pub sandbox: Sandbox,
    pub reason: Reason,
    /// What it held on disk (allocated bytes, each inode once, as `du -s`), measured just
    /// before its removal.
    pub bytes: u64,
}

impl Collector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Schedules a finished sandbox (again: the earlier finish time stays) and wakes the
    /// loop, whose next wake-up may now be sooner.
    pub fn schedule(&self, sandbox: Sandbox) {
        self.lock().insert(sandbox);
        self.wake.notify_one();
    }

    /// Every scheduled sandbox.
    pub fn scheduled(&self) -> Vec<Sandbox> {
        self.lock().iter().cloned().collect()
    }

    /// Sandboxes removed and the bytes they held, since the agent started.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.removed.load(Ordering::Relaxed),
            self.bytes_freed.load(Ordering::Relaxed),
        )
    }

    /// When the next scheduled sandbox is due.
    fn next_due_ms(&self, policy: &Policy) -> Option<u64> {
        self.lock().next_due_ms(policy)
    }

    /// Removes what `policy` says goes at `now_ms` with the filesystem `usage` full (when
    /// measured at this moment), oldest first, and unschedules it. Blocking.
    pub fn collect(&self, policy: &Policy, now_ms: u64, usage: Option<f64>) -> Vec<Removal> {
        let chosen = {
            let mut schedule = self.lock();
            let chosen = policy::decide(&schedule, policy, now_ms, usage);
            for (s, _) in &chosen {
                schedule.remove(&s.path);
            }
            chosen
        };
        let mut removed = Vec::new();
        for (sandbox, reason) in chosen {
            let span = tracing::info_span!(
                "gc",
                path = %sandbox.path.display(),
                framework = %sandbox.framework_id,
                executor = %sandbox.executor_id,
                task = %sandbox.executor_id,
            );
            let _entered = span.enter();
            let age = Duration::from_millis(now_ms.saturating_sub(sandbox.finished_at_ms));
            // Whole seconds, or milliseconds under a second.
            let age = if age.as_secs() > 0 {
                Duration::from_secs(age.as_secs())
            } else {
                age
            };
            let why = match reason {
                Reason::Delay => "gc delay".to_string(),
                Reason::DiskPressure { usage, max_age_ms } => format!(
                    "disk pressure: {:.1}% used, max age {}",
                    usage * 100.0,
                    humantime::format_duration(Duration::from_millis(max_age_ms))
                ),
            };
            let bytes = allocated_bytes(&sandbox.path);
            match std::fs::remove_dir_all(&sandbox.path) {
                Ok(()) => {
                    let total = self.removed.fetch_add(1, Ordering::Relaxed) + 1;
                    let total_bytes = self.bytes_freed.fetch_add(bytes, Ordering::Relaxed) + bytes;
                    tracing::info!(
                        bytes,
                        age = %humantime::format_duration(age),
                        reason = %why,
                        removed_total = total,
                        bytes_freed_total = total_bytes,
                        "removed a finished sandbox"
                    );
                    removed.push(Removal {
                        sandbox: sandbox.clone(),
                        reason,
                        bytes,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::info!("a finished sandbox was already gone");
                }
                // Not retried until the agent restarts: a sandbox that cannot go now
                // (e.g. a mount inside it) would only fill the log every interval.
                Err(e) => {
                    tracing::warn!(error = %e, reason = %why, "cannot remove a finished sandbox; it stays until the agent restarts")
                }
            }
        }
        removed
    }
}

/// The fraction of the filesystem holding `path` in use, as Mesos' `fs::usage`:
/// `(blocks - free) / blocks` of `statvfs(2)` (blocks reserved for root count as free).
pub fn disk_usage(path: &Path) -> std::io::Result<f64> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs only writes the struct it is given; all-zero bytes are a valid
    // `statvfs` (plain integers).
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid, writable struct.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if st.f_blocks == 0 {
        return Ok(0.0);
    }
    let blocks = st.f_blocks as f64;
    Ok(st.f_blocks.saturating_sub(st.f_bfree) as f64 / blocks)
}

/// What the tree at `path` holds on disk: allocated bytes of each inode once (as `du -s`),
/// never following a symlink. Best effort: what cannot be read counts nothing.
pub fn allocated_bytes(path: &Path) -> u64 {
    fn walk(path: &Path, depth: usize, seen: &mut HashSet<(u64, u64)>, total: &mut u64) {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        if seen.insert((meta.dev(), meta.ino())) {
            *total = total.saturating_add(meta.blocks().saturating_mul(512));
        }
        // The task owned this tree: no following links, and a bounded depth.
        if meta.file_type().is_dir() && depth < 256 {
            if let Ok(entries) = std::fs::read_dir(path) {
                for e in entries.flatten() {
                    walk(&e.path(), depth + 1, seen, total);
                }
            }
        }
    }
    let mut total = 0;
    walk(path, 0, &mut HashSet::new(), &mut total);
    total
}

/// Collects finished sandboxes until `shutdown` flips to true: whenever the next one is
/// due, and every `disk_watch_interval` (the first at once) with the usage of `work_dir`'s
/// filesystem, pruning early under pressure.
pub async fn run(
    collector: Collector,
    work_dir: PathBuf,
    config: GcConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let policy = config.policy();
    let mut next_disk_check = tokio::time::Instant::now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let usage = if tokio::time::Instant::now() >= next_disk_check {
            next_disk_check = tokio::time::Instant::now() + config.disk_watch_interval;
            let dir = work_dir.clone();
            match tokio::task::spawn_blocking(move || disk_usage(&dir)).await {
                Ok(Ok(usage)) => {
                    tracing::debug!(
                        usage = format!("{:.1}%", usage * 100.0),
                        max_age = %humantime::format_duration(Duration::from_millis(policy.max_age_ms(usage))),
                        "work dir disk usage"
                    );
                    Some(usage)
                }
                Ok(Err(e)) => {
                    tracing::warn!(work_dir = %work_dir.display(), error = %e, "cannot measure the work dir's disk usage");
                    None
                }
                Err(_) => None,
            }
        } else {
            None
        };
        let c = collector.clone();
        let _ =
            tokio::task::spawn_blocking(move || c.collect(&policy, clock::now_ms(), usage)).await;
        let until_disk = next_disk_check.saturating_duration_since(tokio::time::Instant::now());
        let wait = match collector.next_due_ms(&policy) {
            Some(due) => until_disk.min(Duration::from_millis(due.saturating_sub(clock::now_ms()))),
            None => until_disk,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = collector.wake.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(path: &Path, finished_at_ms: u64) -> Sandbox {
        Sandbox {
            path: path.to_path_buf(),
            framework_id: "fw-1".into(),
            executor_id: path.file_name().unwrap().to_string_lossy().into_owned(),
            finished_at_ms,
        }
    }

    #[test]
    fn the_disk_usage_is_a_fraction() {
        let dir = tempfile::tempdir().unwrap();
        let usage = disk_usage(dir.path()).unwrap();
        assert!((0.0..=1.0).contains(&usage), "{usage}");
        assert!(disk_usage(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn due_sandboxes_are_removed_and_counted_and_the_rest_stay() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        let young = dir.path().join("young");
        for d in [&old, &young] {
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("sub/data"), vec![7u8; 64 * 1024]).unwrap();
        }
        // A link out of the sandbox: removed as a link, its target untouched.
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "keep").unwrap();
        std::os::unix::fs::symlink(&outside, old.join("link")).unwrap();
        let c = Collector::default();
        c.schedule(sandbox(&old, 1_000));
        c.schedule(sandbox(&young, 5_000));
        c.schedule(sandbox(&dir.path().join("gone"), 1_000));
        let policy = Policy {
            delay: Duration::from_secs(2),
            disk_headroom: 0.1,
        };
        let removed = c.collect(&policy, 3_000, None);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].sandbox.path, old);
        assert!(removed[0].bytes >= 64 * 1024, "{}", removed[0].bytes);
        assert!(!old.exists());
        assert!(young.join("sub/data").exists());
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        assert_eq!(c.totals(), (1, removed[0].bytes));
        // The vanished one is unscheduled too; the young one waits for its time.
        assert_eq!(c.scheduled().len(), 1);
        assert!(c.collect(&policy, 3_000, None).is_empty());
        // A disk past its headroom takes it now.
        assert_eq!(c.collect(&policy, 3_000, Some(0.95)).len(), 1);
        assert!(!young.exists());
        assert!(c.scheduled().is_empty());
    }

    #[tokio::test]
    async fn the_loop_removes_a_sandbox_when_due_and_stops_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let sb = dir.path().join("sandboxes/fw-1/t1");
        std::fs::create_dir_all(&sb).unwrap();
        let c = Collector::default();
        let config = GcConfig {
            delay: Duration::from_millis(200),
            disk_headroom: 0.0,
            disk_watch_interval: Duration::from_secs(3600),
        };
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run(c.clone(), dir.path().to_path_buf(), config, rx));
        // Scheduled after the loop went to sleep: the schedule wakes it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.schedule(sandbox(&sb, clock::now_ms()));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sb.exists() {
            assert!(std::time::Instant::now() < deadline, "not removed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the loop stops on shutdown")
            .unwrap();
    }
}
