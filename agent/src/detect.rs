//! Detecting the host's resources (cpus, memory, disk) as Mesos does, leaving headroom for
//! the host itself.

use std::path::Path;

use crate::config::HostResources;

/// cpus: every online CPU; mem: total minus min(1 GiB, half); disk: the work dir's
/// filesystem size minus min(5 GiB, half).
pub fn host_resources(work_dir: &Path) -> HostResources {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0);
    let mem_total = meminfo_total_mb().unwrap_or(0.0);
    let disk_total = fs_total_mb(work_dir).unwrap_or(0.0);
    HostResources {
        cpus,
        mem_mb: (mem_total - (mem_total / 2.0).min(1024.0)).floor(),
        disk_mb: (disk_total - (disk_total / 2.0).min(5120.0)).floor(),
    }
}

fn meminfo_total_mb() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn fs_total_mb(path: &Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_blocks as f64 * st.f_frsize as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn detects_something_plausible() {
        let h = super::host_resources(std::path::Path::new("/"));
        assert!(h.cpus >= 1.0);
        assert!(h.mem_mb > 0.0);
        assert!(h.disk_mb > 0.0);
    }
}
