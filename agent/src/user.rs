//! The user a task runs as: looking a name up (`getpwnam_r`, `getgrouplist`), deciding
//! whether the process starting the task must switch to it, and switching in a forked child
//! (supplementary groups, then the group, then the user) after it has joined its cgroups.
//!
//! An empty name means the agent's own user (no switch, today's behaviour). An agent
//! running as root switches to any user the host knows; an agent that is not root can
//! only run tasks as itself, and a task naming any other user fails with
//! [`UserError::NotRoot`]. Used by the agent (to fail a task before anything starts) and by
//! `agora-executor` (to switch the task, or a framework's own executor).

use std::ffi::{CStr, CString};
use std::io;
use std::path::Path;

/// A resolved user to run a task as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// The user name (for USER and LOGNAME).
    pub name: String,
    pub uid: u32,
    /// The user's primary group.
    pub gid: u32,
    /// Every group of the user (the primary one included), for `setgroups`.
    pub groups: Vec<u32>,
    /// Whether the process must switch to the user: false when it already runs as it (an
    /// agent that is not root, asked for its own user).
    pub switch: bool,
}

/// Why a task cannot run as the user it names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("unknown user {0:?}")]
    Unknown(String),
    #[error("cannot look up user {name:?}: {error}")]
    Lookup { name: String, error: String },
    #[error(
        "cannot run the task as user {name:?}: the agent runs as uid {euid}, not as root, so it can run tasks only as its own user"
    )]
    NotRoot { name: String, euid: u32 },
}

/// A user as the passwd database has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passwd {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Looks `name` up in the passwd database (`getpwnam_r`). `Ok(None)`: no such user.
pub fn lookup(name: &str) -> io::Result<Option<Passwd>> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None);
    };
    // SAFETY: sysconf has no preconditions.
    let hint = unsafe { libc::sysconf(libc::_SC_GETPW_R_SIZE_MAX) };
    let mut buf = vec![0u8; usize::try_from(hint).unwrap_or(0).clamp(1024, 1 << 16)];
    loop {
        // SAFETY: passwd is a plain C struct; all-zero is a valid (empty) value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` outlives the use of `pwd`'s
        // string fields (none are read past this loop iteration).
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 22) {
            let len = buf.len() * 2;
            buf.resize(len, 0);
            continue;
        }
        if result.is_null() {
            // Not found is 0, or (depending on the implementation) one of these.
            return match rc {
                0 | libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => Ok(None),
                e => Err(io::Error::from_raw_os_error(e)),
            };
        }
        return Ok(Some(Passwd {
            name: name.to_string(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        }));
    }
}

/// Every group of user `name` whose primary group is `gid` (`getgrouplist`).
fn group_list(name: &CStr, gid: u32) -> Vec<u32> {
    let mut capacity: libc::c_int = 64;
    loop {
        let mut groups: Vec<libc::gid_t> = vec![0; capacity as usize];
        let mut count = capacity;
        // SAFETY: `groups` holds `count` elements; getgrouplist writes at most that many and
        // stores the number found (or needed) in `count`.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(usize::try_from(count).unwrap_or(0));
            if !groups.contains(&gid) {
                groups.insert(0, gid);
            }
            return groups;
        }
        if capacity >= 65_536 {
            return vec![gid];
        }
        capacity = count.max(capacity * 2).min(65_536);
    }
}

/// The user a task naming `requested` runs as, for an agent (or executor) running with
/// effective uid `geteuid()`: `None` for an empty name (the agent's own user).
pub fn plan(requested: &str) -> Result<Option<RunAs>, UserError> {
    // SAFETY: geteuid has no preconditions.
    plan_for(requested, unsafe { libc::geteuid() })
}

/// [`plan`] for a process whose effective uid is `euid`.
pub fn plan_for(requested: &str, euid: u32) -> Result<Option<RunAs>, UserError> {
    if requested.is_empty() {
        return Ok(None);
    }
    let pw = lookup(requested)
        .map_err(|e| UserError::Lookup {
            name: requested.to_string(),
            error: e.to_string(),
        })?
        .ok_or_else(|| UserError::Unknown(requested.to_string()))?;
    if euid == 0 {
        let cname = CString::new(requested).expect("looked up, so free of NUL");
        return Ok(Some(RunAs {
            groups: group_list(&cname, pw.gid),
            name: pw.name,
            uid: pw.uid,
            gid: pw.gid,
            switch: true,
        }));
    }
    if pw.uid == euid {
        return Ok(Some(RunAs {
            name: pw.name,
            uid: pw.uid,
            gid: pw.gid,
            groups: Vec::new(),
            switch: false,
        }));
    }
    Err(UserError::NotRoot {
        name: requested.to_string(),
        euid,
    })
}

impl RunAs {
    /// The environment a process running as this user gets: HOME (its sandbox), USER and
    /// LOGNAME.
    pub fn env(&self, home: &Path) -> [(&'static str, std::ffi::OsString); 3] {
        [
            ("HOME", home.as_os_str().to_owned()),
            ("USER", self.name.clone().into()),
            ("LOGNAME", self.name.clone().into()),
        ]
    }

    /// The owner a sandbox gets: the user, when the process switches to it (otherwise the
    /// agent's own user already owns it).
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.switch.then_some((self.uid, self.gid))
    }

    /// In a forked child, before exec (and after joining cgroups, which needs root):
    /// supplementary groups, then the group, then the user; then checks that root cannot be
    /// regained. A no-op when there is nothing to switch. Async-signal-safe: plain
    /// syscalls on memory allocated before the fork.
    pub fn switch_in_child(&self) -> io::Result<()> {
        if !self.switch {
            return Ok(());
        }
        // SAFETY: plain syscalls on the calling process; `groups` was allocated before the
        // fork and holds `len` elements.
        unsafe {
            if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setgid(self.gid) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setuid(self.uid) != 0 {
                return Err(io::Error::last_os_error());
            }
            if self.uid != 0 && (libc::setuid(0) == 0 || libc::geteuid() == 0) {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_name_is_the_agents_own_user() {
        assert_eq!(plan_for("", 0), Ok(None));
        assert_eq!(plan_for("", 1000), Ok(None));
    }

    #[test]
    fn an_unknown_user_is_named() {
        let e = plan_for("no-such-user-agora", 0).unwrap_err();
        assert_eq!(e.to_string(), r#"unknown user "no-such-user-agora""#);
        assert_eq!(
            plan_for("nul\0user", 0).unwrap_err(),
            UserError::Unknown("nul\0user".into())
        );
    }

    #[test]
    fn root_switches_to_any_known_user_with_its_groups() {
        let r = plan_for("root", 0).unwrap().unwrap();
        assert_eq!((r.uid, r.gid, r.switch), (0, 0, true));
        assert!(r.groups.contains(&0), "{r:?}");
        if let Some(pw) = lookup("nobody").unwrap() {
            let n = plan_for("nobody", 0).unwrap().unwrap();
            assert_eq!((n.uid, n.gid, n.switch), (pw.uid, pw.gid, true));
            assert!(n.groups.contains(&pw.gid), "{n:?}");
            assert_eq!(n.owner(), Some((pw.uid, pw.gid)));
        }
    }

    #[test]
    fn a_non_root_agent_runs_tasks_only_as_itself() {
        let Some(pw) = lookup("nobody").unwrap() else {
            return;
        };
        let same = plan_for("nobody", pw.uid).unwrap().unwrap();
        assert!(!same.switch);
        assert_eq!(same.owner(), None);
        let e = plan_for("root", pw.uid).unwrap_err();
        assert_eq!(
            e,
            UserError::NotRoot {
                name: "root".into(),
                euid: pw.uid
            }
        );
        assert!(e.to_string().contains("not as root"), "{e}");
        assert_eq!(plan_for("", pw.uid), Ok(None));
    }
}
