//! The work dir's layout and who may reach what in it.
//!
//! ```text
//! <work_dir>/                 0711  traverse only: nobody else lists it
//!   agent_id                  0600
//!   meta/                     0700  checkpoints (task records, journals, executor tokens)
//!     incarnation             0600  one more at each start (orders its registrations)
//!   sandboxes/                0711
//!     <framework>/            0711
//!       <task>/               0700  owned by the task's user
//!         executor.log stdout stderr   owned by the task's user
//! ```
//!
//! A sandbox stays after its task until it is collected: `--gc-delay` after it finished
//! (its executor exited, its task's updates all acknowledged), or sooner when the disk
//! fills ([`crate::gc`]). The task's checkpoint under `meta/` stays.
//!
//! A task running as another user can reach its own sandbox (its path, never a listing),
//! and nothing else of the agent's. Files the agent or the (root) executor create in a
//! sandbox are opened without following symlinks, and must be plain files with one link,
//! so that a task cannot point them at a file of the agent's (the sandbox is the task's).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The work dir, `sandboxes/` and each framework's directory under it: traverse, not list.
pub const TRAVERSE_ONLY: u32 = 0o711;
/// The agent's own directories (`meta/`, its checkpoints) and each sandbox.
pub const PRIVATE_DIR: u32 = 0o700;
/// The agent's own files.
pub const PRIVATE_FILE: u32 = 0o600;

/// Files the agent creates in every sandbox before the executor starts.
pub const EXECUTOR_LOG: &str = "executor.log";

/// File in the sandbox receiving the task's standard output (appended to).
pub const STDOUT_FILE: &str = "stdout";
/// File in the sandbox receiving the task's standard error (appended to).
pub const STDERR_FILE: &str = "stderr";

/// The task's output files in its sandbox (also created by the supervisor when missing).
pub const OUTPUT_FILES: [&str; 2] = [STDOUT_FILE, STDERR_FILE];

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// `path` (and missing parents) as a directory with exactly `mode`.
fn dir_with_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    set_mode(path, mode)
}

/// The work dir's checkpoint root, `<work_dir>/meta`.
pub fn meta_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("meta")
}

/// The directory of every sandbox, `<work_dir>/sandboxes`.
pub fn sandboxes_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("sandboxes")
}

/// The sandbox of one task (of its executor), `<work_dir>/sandboxes/<framework>/<task>`.
pub fn sandbox_dir(work_dir: &Path, framework_id: &str, task_id: &str) -> PathBuf {
    sandboxes_dir(work_dir).join(framework_id).join(task_id)
}

/// Sets the work dir's modes (see the module doc), also on a work dir an earlier version
/// left readable: the work dir itself, `sandboxes/` and each framework directory in it
/// traverse-only, `meta/` private, the agent id file private. Warns when a directory above
/// the work dir is not traversable by others (tasks running as another user could not reach
/// their sandboxes).
pub fn secure(work_dir: &Path) -> io::Result<()> {
    dir_with_mode(work_dir, TRAVERSE_ONLY)?;
    dir_with_mode(&meta_dir(work_dir), PRIVATE_DIR)?;
    let sandboxes = sandboxes_dir(work_dir);
    dir_with_mode(&sandboxes, TRAVERSE_ONLY)?;
    for entry in fs::read_dir(&sandboxes)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            set_mode(&entry.path(), TRAVERSE_ONLY)?;
        }
    }
    for name in ["agent_id", "agent_id.tmp"] {
        let path = work_dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => set_mode(&path, PRIVATE_FILE)?,
            _ => {}
        }
    }
    if let Ok(abs) = fs::canonicalize(work_dir) {
        for dir in abs.ancestors().skip(1) {
            if let Ok(m) = fs::metadata(dir) {
                if m.mode() & 0o001 == 0 {
                    tracing::warn!(
                        dir = %dir.display(),
                        "a directory above the work dir is not traversable by other users: tasks running as another user reach their sandboxes only as their working directory, not by path ($HOME)"
                    );
                }
            }
        }
    }
    Ok(())
}

/// Opens `path` for appending, creating it (mode `mode`) if missing, without following a
/// symlink, without blocking on a FIFO, and only if it is a plain file with one link: in a
/// sandbox a task owns, the task could otherwise point it at someone else's file.
pub fn open_append_no_follow(path: &Path, mode: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a plain file", path.display()),
        ));
    }
    // Plain files ignore O_NONBLOCK, but the task inherits the descriptor: clear it.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: fcntl on a descriptor this function owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(file)
}

/// Creates the sandbox of one task, `<work_dir>/sandboxes/<framework>/<task>` (mode 0700,
/// the directories above it traverse-only), with its `executor.log`, `stdout` and `stderr`,
/// and hands it all to `owner` (uid, gid) when given, files first, so the task never owns
/// the directory before the files the agent creates exist. Returns the sandbox and
/// `executor.log` opened for appending (for the executor's output).
pub fn prepare_sandbox(
    work_dir: &Path,
    framework_id: &str,
    task_id: &str,
    owner: Option<(u32, u32)>,
) -> io::Result<(PathBuf, File)> {
    let sandboxes = sandboxes_dir(work_dir);
    let framework = sandboxes.join(framework_id);
    let sandbox = sandbox_dir(work_dir, framework_id, task_id);
    dir_with_mode(&sandboxes, TRAVERSE_ONLY)?;
    dir_with_mode(&framework, TRAVERSE_ONLY)?;
    dir_with_mode(&sandbox, PRIVATE_DIR)?;
    let open = |name: &str| {
        let path = sandbox.join(name);
        open_append_no_follow(&path, PRIVATE_FILE)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    };
    let log = open(EXECUTOR_LOG)?;
    let outputs = OUTPUT_FILES
        .iter()
        .map(|name| open(name))
        .collect::<io::Result<Vec<File>>>()?;
    if let Some((uid, gid)) = owner {
        for f in outputs.iter().chain([&log]) {
            std::os::unix::fs::fchown(f, Some(uid), Some(gid))?;
        }
        std::os::unix::fs::chown(&sandbox, Some(uid), Some(gid))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", sandbox.display())))?;
    }
    Ok((sandbox, log))
}

/// Writes a small private file durably (0600; write, fsync, rename, fsync the directory).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE_FILE)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn the_work_dir_is_traverse_only_and_the_agents_state_private() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        // As an earlier version left it: everything readable.
        fs::create_dir_all(work.join("sandboxes/fw-1/t1")).unwrap();
        fs::create_dir_all(work.join("meta/frameworks")).unwrap();
        fs::write(work.join("agent_id"), "a1").unwrap();
        for p in ["", "sandboxes", "sandboxes/fw-1", "meta"] {
            set_mode(&work.join(p), 0o755).unwrap();
        }
        set_mode(&work.join("agent_id"), 0o644).unwrap();
        secure(&work).unwrap();
        assert_eq!(mode(&work), 0o711);
        assert_eq!(mode(&work.join("meta")), 0o700);
        assert_eq!(mode(&work.join("sandboxes")), 0o711);
        assert_eq!(mode(&work.join("sandboxes/fw-1")), 0o711);
        assert_eq!(mode(&work.join("agent_id")), 0o600);
    }

    #[test]
    fn a_sandbox_is_private_and_its_files_are_never_followed_links() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        let (sandbox, _log) = prepare_sandbox(work, "fw-1", "t1", None).unwrap();
        assert_eq!(mode(&sandbox), 0o700);
        assert_eq!(mode(&work.join("sandboxes/fw-1")), 0o711);
        for f in ["executor.log", "stdout", "stderr"] {
            assert!(sandbox.join(f).is_file(), "{f}");
        }
        // A symlink planted where an output file goes is refused, and its target untouched.
        let target = dir.path().join("secret");
        fs::write(&target, "secret").unwrap();
        let (other, _) = prepare_sandbox(work, "fw-1", "t2", None).unwrap();
        fs::remove_file(other.join("stdout")).unwrap();
        std::os::unix::fs::symlink(&target, other.join("stdout")).unwrap();
        assert!(open_append_no_follow(&other.join("stdout"), 0o600).is_err());
        assert!(prepare_sandbox(work, "fw-1", "t2", None).is_err());
        // So is a hard link to someone else's file, and a FIFO (without blocking).
        fs::remove_file(other.join("stdout")).unwrap();
        fs::hard_link(&target, other.join("stdout")).unwrap();
        assert!(open_append_no_follow(&other.join("stdout"), 0o600).is_err());
        let fifo =
            std::ffi::CString::new(other.join("fifo").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo on a path in a temp dir.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(open_append_no_follow(&other.join("fifo"), 0o600).is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "secret");
    }

    #[test]
    fn a_sandbox_is_handed_to_its_owner() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (sandbox, _log) =
            prepare_sandbox(dir.path(), "fw-1", "t1", Some((65534, 65534))).unwrap();
        for p in [
            sandbox.clone(),
            sandbox.join("stdout"),
            sandbox.join("stderr"),
            sandbox.join("executor.log"),
        ] {
            let m = fs::metadata(&p).unwrap();
            assert_eq!((m.uid(), m.gid()), (65534, 65534), "{}", p.display());
        }
        let fw = fs::metadata(dir.path().join("sandboxes/fw-1")).unwrap();
        assert_eq!(fw.uid(), 0);
    }

    #[test]
    fn private_files_are_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write_private(&path, b"x").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"x");
    }
}
