//! # What a running task may not exceed beyond cpu and memory
//!
//! Owns the checks the supervisor makes while a task runs (see
//! [`crate::supervisor::RunningTask::wait`]), each as Mesos' isolator of the same purpose:
//!
//! - **processes** (`pids.max` of the task's cgroup, `--max-task-pids`): a fork that
//!   failed at the limit (a fork bomb) ends the task;
//! - **disk** (Mesos' `disk/du`): the bytes the task's directories hold (its sandbox and a
//!   container's writable layer), measured by walking them, against its `disk` resource;
//! - **ports** (Mesos' `network/ports`): a TCP socket the task listens on whose port is
//!   outside the task's `ports` ranges.
//!
//! It reads `/proc` and walks directories; it never kills (the supervisor does, with the
//! reason this gives) and knows nothing of tasks beyond the limits handed to it.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::isolation::TaskCgroup;
use crate::supervisor::Bytes;

/// What is checked while a task runs.
#[derive(Debug, Clone, Default)]
pub struct Enforcement {
    /// The cgroup's `pids.max` (checked through its `pids.events`; reported in the reason).
    pub pids_max: Option<u64>,
    /// The most bytes `paths` may hold together.
    pub disk: Option<DiskLimit>,
    /// The TCP ports the task may listen on (inclusive ranges); `None`: not checked.
    pub ports: Option<Vec<(u64, u64)>>,
    /// Only ports in these ranges are checked (the agent's own `ports`, with
    /// `--check-agent-port-range-only`); `None`: every port.
    pub checked_ports: Option<Vec<(u64, u64)>>,
}

impl Enforcement {
    /// Whether anything is checked at all.
    pub fn is_empty(&self) -> bool {
        self.pids_max.is_none() && self.disk.is_none() && self.ports.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct DiskLimit {
    pub bytes: u64,
    pub paths: Vec<PathBuf>,
}

/// The first limit of `rules` the task in `cgroup` went past, if any (`disk`: its disk
/// usage is measured this time, a walk of its directories).
pub fn violation(rules: &Enforcement, cgroup: &TaskCgroup, disk: bool) -> Option<String> {
    if let Some(max) = rules.pids_max {
        if cgroup.pids_limit_hit() {
            return Some(format!(
                "process limit reached ({max} processes and threads, --max-task-pids)"
            ));
        }
    }
    if let Some(allowed) = &rules.ports {
        let ports = listening_ports(&cgroup.pids());
        if let Some(port) = port_outside(&ports, allowed, rules.checked_ports.as_deref()) {
            return Some(format!(
                "listening on port {port}, which is not among its ports {}",
                ranges_text(allowed)
            ));
        }
    }
    if let (true, Some(limit)) = (disk, &rules.disk) {
        let used = disk_usage(&limit.paths);
        if used > limit.bytes {
            return Some(format!(
                "disk limit exceeded ({} used, {} allowed)",
                Bytes(used),
                Bytes(limit.bytes)
            ));
        }
    }
    None
}

/// Bytes the trees under `paths` hold on disk (allocated blocks; a file linked twice
/// counted once; symlinks not followed; another filesystem mounted inside not entered).
pub fn disk_usage(paths: &[PathBuf]) -> u64 {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = 0u64;
    let mut stack: Vec<(PathBuf, Option<u64>)> = paths.iter().map(|p| (p.clone(), None)).collect();
    while let Some((path, dev)) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if dev.is_some_and(|d| d != meta.dev()) {
            continue;
        }
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total = total.saturating_add(meta.blocks().saturating_mul(512));
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&path) {
                for e in entries.flatten() {
                    stack.push((e.path(), Some(meta.dev())));
                }
            }
        }
    }
    total
}

/// The TCP ports processes `pids` listen on (IPv4 and IPv6, in their network namespace).
pub fn listening_ports(pids: &[i32]) -> BTreeSet<u16> {
    let mut inodes: HashSet<u64> = HashSet::new();
    for pid in pids {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path()) {
                if let Some(inode) = socket_inode(&target) {
                    inodes.insert(inode);
                }
            }
        }
    }
    let mut ports = BTreeSet::new();
    if inodes.is_empty() {
        return ports;
    }
    // Every pid of a task shares one network namespace: the first that is still there
    // shows its sockets.
    for pid in pids {
        let dir = PathBuf::from(format!("/proc/{pid}/net"));
        let (Ok(v4), v6) = (
            fs::read_to_string(dir.join("tcp")),
            fs::read_to_string(dir.join("tcp6")).unwrap_or_default(),
        ) else {
            continue;
        };
        for (port, inode) in listeners(&v4).into_iter().chain(listeners(&v6)) {
            if inodes.contains(&inode) {
                ports.insert(port);
            }
        }
        break;
    }
    ports
}

/// The inode of `socket:[INODE]`, a socket's fd link.
fn socket_inode(target: &Path) -> Option<u64> {
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The listening sockets of a `/proc/net/tcp` or `tcp6` table: (local port, inode).
pub fn listeners(table: &str) -> Vec<(u16, u64)> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() < 10 || f[3] != LISTEN {
                return None;
            }
            let port = u16::from_str_radix(f[1].rsplit_once(':')?.1, 16).ok()?;
            Some((port, f[9].parse().ok()?))
        })
        .collect()
}

/// The first of `ports` outside `allowed` (among those in `checked`, when given).
pub fn port_outside(
    ports: &BTreeSet<u16>,
    allowed: &[(u64, u64)],
    checked: Option<&[(u64, u64)]>,
) -> Option<u16> {
    let within = |ranges: &[(u64, u64)], p: u16| {
        ranges
            .iter()
            .any(|(b, e)| (*b..=*e).contains(&u64::from(p)))
    };
    ports
        .iter()
        .copied()
        .filter(|p| checked.is_none_or(|c| within(c, *p)))
        .find(|p| !within(allowed, *p))
}

/// Ranges as Mesos writes them: `[31000-31005, 31010-31010]`.
pub fn ranges_text(ranges: &[(u64, u64)]) -> String {
    let parts: Vec<String> = ranges.iter().map(|(b, e)| format!("{b}-{e}")).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:7A69 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn only_listening_sockets_count_with_their_port_and_inode() {
        assert_eq!(listeners(TCP), vec![(8080, 4242)]);
        assert_eq!(listeners(TCP6), vec![(31337, 5555)]);
        assert!(listeners("header only\n").is_empty());
        assert!(listeners("h\n   0: garbage\n").is_empty());
    }

    #[test]
    fn socket_links_name_their_inode() {
        assert_eq!(socket_inode(Path::new("socket:[4242]")), Some(4242));
        assert_eq!(socket_inode(Path::new("pipe:[4242]")), None);
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
    }

    #[test]
    fn a_port_outside_every_range_is_named() {
        let ports: BTreeSet<u16> = [31000, 31005].into();
        assert_eq!(port_outside(&ports, &[(31000, 31010)], None), None);
        assert_eq!(port_outside(&ports, &[(31000, 31000)], None), Some(31005));
        assert_eq!(port_outside(&ports, &[], None), Some(31000));
        // Only the agent's range checked: a port outside it is the task's business.
        assert_eq!(
            port_outside(&ports, &[], Some(&[(31001, 31009)])),
            Some(31005)
        );
        assert_eq!(
            port_outside(&ports, &[(31005, 31005)], Some(&[(31001, 31009)])),
            None
        );
        assert_eq!(port_outside(&ports, &[], Some(&[(40000, 40010)])), None);
        assert_eq!(ranges_text(&[(1, 2), (5, 5)]), "[1-2, 5-5]");
    }

    #[test]
    fn disk_usage_counts_blocks_once_per_file_and_does_not_follow_links() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::write(&a, vec![1u8; 256 * 1024]).unwrap();
        fs::hard_link(&a, dir.path().join("b")).unwrap();
        std::os::unix::fs::symlink("/usr", dir.path().join("usr")).unwrap();
        let used = disk_usage(&[dir.path().to_path_buf()]);
        assert!((256 * 1024..2 * 256 * 1024).contains(&used), "{used}");
        assert_eq!(disk_usage(&[dir.path().join("missing")]), 0);
    }

    #[test]
    fn this_process_listening_is_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let ports = listening_ports(&[std::process::id() as i32]);
        assert!(ports.contains(&port), "{ports:?} lacks {port}");
    }
}
