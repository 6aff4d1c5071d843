//! What a task runs inside its image: the image's defaults and the task's own command and
//! environment combined as Docker and Mesos do, and the image's user looked up in the
//! image's own `/etc/passwd` and `/etc/group` (given as text: this module reads no file).
//!
//! The command:
//! - a shell command (`TaskInfo.command`, Mesos' `shell: true`) runs as `/bin/sh -c
//!   COMMAND` in the image, whatever its entrypoint (Mesos' rule);
//! - arguments (`agora run --image REF -- ARGS...`, Mesos' `shell: false`) replace the
//!   image's `Cmd` and follow its `Entrypoint` (`docker run IMAGE ARGS...`);
//! - neither: the image's `Entrypoint` then its `Cmd`; an image with neither cannot run.
//!
//! The environment: the image's, then `PATH` if the image sets none (Docker's default),
//! then the task's (a task's variable replaces the image's of the same name), then
//! `MESOS_SANDBOX` pointing at the sandbox inside the container. The working directory is
//! the image's, else `/`.

use crate::config::ImageConfig;

/// Docker's `PATH` for an image that sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where the task's sandbox appears inside its container, as in Mesos.
pub const SANDBOX_IN_CONTAINER: &str = "/mnt/mesos/sandbox";

/// What the task asks to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskCommand {
    /// Run with `/bin/sh -c`.
    Shell(String),
    /// Arguments after the image's entrypoint, replacing its `Cmd`.
    Args(Vec<String>),
    /// The image's own entrypoint and cmd.
    ImageDefault,
}

/// The process a container starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    #[error("the image has no entrypoint and no cmd, and the task gives no command")]
    NoCommand,
    #[error("image working directory {0:?} is not an absolute path")]
    WorkingDir(String),
    #[error("user {0:?} is not NAME, UID, NAME:GROUP or UID:GID")]
    UserSyntax(String),
    #[error("user {0:?} is not in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} is not in the image's /etc/group")]
    UnknownGroup(String),
}

/// The process for `command` in an image configured as `image`, with the task's `env`.
pub fn process_for(
    image: &ImageConfig,
    command: &TaskCommand,
    env: &[(String, String)],
) -> Result<Process, ProcessError> {
    let args = match command {
        TaskCommand::Shell(c) => vec!["/bin/sh".to_string(), "-c".to_string(), c.clone()],
        TaskCommand::Args(a) => image.entrypoint.iter().chain(a).cloned().collect(),
        TaskCommand::ImageDefault => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
    };
    if args.is_empty() {
        return Err(ProcessError::NoCommand);
    }
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match merged.iter_mut().find(|(key, _)| key == k) {
        Some(entry) => entry.1 = v.to_string(),
        None => merged.push((k.to_string(), v.to_string())),
    };
    for (k, v) in &image.env {
        set(k, v);
    }
    if !image.env.iter().any(|(k, _)| k == "PATH") {
        set("PATH", DEFAULT_PATH);
    }
    for (k, v) in env {
        set(k, v);
    }
    set("MESOS_SANDBOX", SANDBOX_IN_CONTAINER);
    let cwd = if image.working_dir.is_empty() {
        "/".to_string()
    } else if image.working_dir.starts_with('/') {
        image.working_dir.clone()
    } else {
        return Err(ProcessError::WorkingDir(image.working_dir.clone()));
    };
    Ok(Process {
        args,
        env: merged,
        cwd,
    })
}

/// A user as an image's `USER` names it: a name or a numeric id, optionally with a group
/// name or id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    pub user: IdOrName,
    pub group: Option<IdOrName>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdOrName {
    Id(u32),
    Name(String),
}

impl UserSpec {
    /// Parses `USER[:GROUP]` (empty: root, as Docker).
    pub fn parse(text: &str) -> Result<UserSpec, ProcessError> {
        let part = |p: &str| -> Result<IdOrName, ProcessError> {
            if p.is_empty() {
                return Err(ProcessError::UserSyntax(text.to_string()));
            }
            if p.bytes().all(|b| b.is_ascii_digit()) {
                return p
                    .parse()
                    .map(IdOrName::Id)
                    .map_err(|_| ProcessError::UserSyntax(text.to_string()));
            }
            if p.contains(['/', ' ', '\n']) {
                return Err(ProcessError::UserSyntax(text.to_string()));
            }
            Ok(IdOrName::Name(p.to_string()))
        };
        if text.is_empty() {
            return Ok(UserSpec {
                user: IdOrName::Id(0),
                group: None,
            });
        }
        let (user, group) = match text.split_once(':') {
            Some((u, g)) => (part(u)?, Some(part(g)?)),
            None => (part(text)?, None),
        };
        Ok(UserSpec { user, group })
    }

    /// Resolves the user in the image's `passwd` and `group` files (their text): uid, gid
    /// and supplementary groups. A numeric uid absent from passwd runs with gid 0 unless a
    /// group is named, as Docker does; a name must be there.
    pub fn resolve(&self, passwd: &str, group: &str) -> Result<(u32, u32, Vec<u32>), ProcessError> {
        let UserSpec { user, group: grp } = self;
        let entries = passwd
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 4).then_some(())?;
                Some((f[0], f[2].parse::<u32>().ok()?, f[3].parse::<u32>().ok()?))
            })
            .collect::<Vec<_>>();
        let (name, uid, mut gid) = match user {
            IdOrName::Id(uid) => match entries.iter().find(|e| e.1 == *uid) {
                Some(e) => (Some(e.0), e.1, e.2),
                None => (None, *uid, 0),
            },
            IdOrName::Name(n) => match entries.iter().find(|e| e.0 == n) {
                Some(e) => (Some(e.0), e.1, e.2),
                None => return Err(ProcessError::UnknownUser(n.clone())),
            },
        };
        let groups_file = group
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 4).then_some(())?;
                Some((f[0], f[2].parse::<u32>().ok()?, f[3]))
            })
            .collect::<Vec<_>>();
        if let Some(g) = grp {
            gid = match g {
                IdOrName::Id(id) => *id,
                IdOrName::Name(n) => match groups_file.iter().find(|e| e.0 == n) {
                    Some(e) => e.1,
                    None => return Err(ProcessError::UnknownGroup(n.clone())),
                },
            };
        }
        let mut groups = vec![gid];
        if let Some(name) = name {
            for (_, id, members) in &groups_file {
                if members.split(',').any(|m| m == name) && !groups.contains(id) {
                    groups.push(*id);
                }
            }
        }
        Ok((uid, gid, groups))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            env: vec![("LANG".into(), "C".into())],
            ..ImageConfig::default()
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_command_follows_docker_and_mesos() {
        let img = image(&["/entry", "-v"], &["serve"]);
        let run = |c: TaskCommand| process_for(&img, &c, &[]).unwrap().args;
        assert_eq!(
            run(TaskCommand::ImageDefault),
            s(&["/entry", "-v", "serve"])
        );
        assert_eq!(
            run(TaskCommand::Args(s(&["check"]))),
            s(&["/entry", "-v", "check"])
        );
        assert_eq!(
            run(TaskCommand::Shell("echo hi".into())),
            s(&["/bin/sh", "-c", "echo hi"])
        );
        let bare = image(&[], &[]);
        assert_eq!(
            process_for(&bare, &TaskCommand::ImageDefault, &[]),
            Err(ProcessError::NoCommand)
        );
        let cmd_only = image(&[], &["sh"]);
        assert_eq!(
            process_for(&cmd_only, &TaskCommand::Args(s(&["ls"])), &[])
                .unwrap()
                .args,
            s(&["ls"])
        );
    }

    #[test]
    fn the_environment_is_the_images_then_the_tasks_then_the_sandbox() {
        let img = image(&["/entry"], &[]);
        let p = process_for(
            &img,
            &TaskCommand::ImageDefault,
            &[("LANG".into(), "en".into()), ("X".into(), "1".into())],
        )
        .unwrap();
        assert_eq!(
            p.env,
            vec![
                ("LANG".to_string(), "en".to_string()),
                ("PATH".to_string(), DEFAULT_PATH.to_string()),
                ("X".to_string(), "1".to_string()),
                (
                    "MESOS_SANDBOX".to_string(),
                    SANDBOX_IN_CONTAINER.to_string()
                ),
            ]
        );
        assert_eq!(p.cwd, "/");
        let mut img = img;
        img.env.push(("PATH".into(), "/bin".into()));
        img.working_dir = "/srv".into();
        let p = process_for(&img, &TaskCommand::ImageDefault, &[]).unwrap();
        assert!(p.env.contains(&("PATH".to_string(), "/bin".to_string())));
        assert_eq!(p.cwd, "/srv");
        img.working_dir = "srv".into();
        assert_eq!(
            process_for(&img, &TaskCommand::ImageDefault, &[]),
            Err(ProcessError::WorkingDir("srv".into()))
        );
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\napp:x:1000:\nlogs:x:4:app,www\n";

    #[test]
    fn the_images_user_is_looked_up_in_its_own_files() {
        let r = |t: &str| UserSpec::parse(t).and_then(|u| u.resolve(PASSWD, GROUP));
        assert_eq!(r(""), Ok((0, 0, vec![0])));
        assert_eq!(r("app"), Ok((1000, 1000, vec![1000, 4])));
        assert_eq!(r("1000"), Ok((1000, 1000, vec![1000, 4])));
        assert_eq!(r("www:logs"), Ok((33, 4, vec![4])));
        assert_eq!(r("4242"), Ok((4242, 0, vec![0])));
        assert_eq!(r("4242:7"), Ok((4242, 7, vec![7])));
        assert_eq!(r("nobody"), Err(ProcessError::UnknownUser("nobody".into())));
        assert_eq!(
            r("app:staff"),
            Err(ProcessError::UnknownGroup("staff".into()))
        );
        assert_eq!(r("app:"), Err(ProcessError::UserSyntax("app:".into())));
        assert_eq!(
            r("99999999999"),
            Err(ProcessError::UserSyntax("99999999999".into()))
        );
    }
}
