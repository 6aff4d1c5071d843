//! Small and failing filesystems for disk-fault tests, mounted by the test itself (as
//! root) and unmounted by `Drop`, also when the test panics.
//!
//! - [`Tmpfs`]: a tmpfs of a given size. Writing past it fails with ENOSPC at `write`:
//!   a full disk.
//! - [`ThinDisk`]: ext4 on a loop device whose backing file is sparse, on a tmpfs smaller
//!   than the filesystem ("thin provisioning"). Once [`ThinDisk::exhaust`] has filled the
//!   backing store, `write` still succeeds (into the page cache) but writeback fails and
//!   `fsync` returns EIO; ext4 then aborts its journal and remounts read-only. A real
//!   failing fsync from the kernel, where device-mapper's `error` target is not available
//!   (this machine's kernel has no device-mapper and no fault injection; it has loop
//!   devices).

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn unmount(dir: &Path) {
    let d = dir.to_str().unwrap();
    if run("umount", &[d]).is_err() {
        // Busy (a process we failed to kill still has a file open): detach it anyway.
        let _ = run("umount", &["-l", d]);
    }
}

/// Bytes available to an unprivileged writer on the filesystem holding `dir`.
pub fn available_bytes(dir: &Path) -> u64 {
    let c = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: statvfs fills the struct we pass; the path is a valid C string.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut s), 0, "statvfs {dir:?}");
        s.f_bavail as u64 * s.f_frsize as u64
    }
}

/// Fills the filesystem of `dir` with the file `name` until `leave` bytes are left.
pub fn fill(dir: &Path, name: &str, leave: u64) -> PathBuf {
    let path = dir.join(name);
    let free = available_bytes(dir);
    let len = free.saturating_sub(leave);
    run(
        "fallocate",
        &["-l", &len.to_string(), path.to_str().unwrap()],
    )
    .expect("fallocate");
    path
}

/// A tmpfs of a given size, mounted on a directory of its own; unmounted on drop.
pub struct Tmpfs {
    _parent: tempfile::TempDir,
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: `8m`) on a new directory.
    pub fn mount(size: &str) -> Result<Tmpfs, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = parent.path().join("fs");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.to_str().unwrap(),
            ],
        )?;
        Ok(Tmpfs {
            _parent: parent,
            dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount(&self.dir);
    }
}

/// ext4 on a loop device over a sparse file on a smaller tmpfs (see the module's doc).
pub struct ThinDisk {
    backing: Tmpfs,
    loop_dev: String,
    dir: PathBuf,
    mounted: bool,
}

impl ThinDisk {
    /// A filesystem of `fs_size` (e.g. `64m`) backed by a tmpfs of `backing_size`
    /// (e.g. `32m`), mounted on a new directory.
    pub fn mount(fs_size: &str, backing_size: &str) -> Result<ThinDisk, String> {
        let backing = Tmpfs::mount(backing_size)?;
        let image = backing.path().join("image");
        let image = image.to_str().unwrap();
        run("truncate", &["-s", fs_size, image])?;
        run("mkfs.ext4", &["-q", "-F", image])?;
        let loop_dev = run("losetup", &["-f", "--show", image])?;
        let dir = backing._parent.path().join("ext4");
        let mut disk = ThinDisk {
            backing,
            loop_dev,
            dir: dir.clone(),
            mounted: false,
        };
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        run("mount", &[&disk.loop_dev, dir.to_str().unwrap()])?;
        disk.mounted = true;
        Ok(disk)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Fills the backing store until `leave` bytes are left: from then on, writeback of
    /// more than that fails, and so does the `fsync` waiting on it (EIO).
    pub fn exhaust(&self, leave: u64) {
        fill(self.backing.path(), "filler", leave);
    }
}

impl Drop for ThinDisk {
    fn drop(&mut self) {
        if self.mounted {
            unmount(&self.dir);
        }
        let _ = run("losetup", &["-d", &self.loop_dev]);
    }
}
