//! One task's container, prepared for the OCI runtime: its directory under
//! `<work-dir>/containers/<task key>/` (readable by root only) with the overlayfs upper
//! and work directories, the mount point of its root filesystem and the runtime's
//! `config.json`; which user it runs as, looked up in the image's own passwd and group;
//! and the process it starts (agora-image's rules).
//!
//! The root filesystem is mounted by the supervisor's child in a mount namespace of its
//! own right before it executes the runtime (see [`crate::supervisor`]), so the mount
//! never outlives the container and is never seen on the host.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use agora_image::bundle::{self, BundleSpec, Network, RunUser};
use agora_image::{ProcessError, TaskCommand, UserSpec};

use super::store::Image;
use super::{ContainerSpec, RootfsBackend};

/// The user a container runs as when neither the task nor its image names one: nobody,
/// never root by default.
pub const NOBODY: &str = "65534:65534";

/// Open files a container's process may hold, at most.
const MAX_OPEN_FILES: u64 = 65536;

/// [`MAX_OPEN_FILES`], or this process's own hard limit when lower (a runtime cannot raise
/// it).
fn max_open_files() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        MAX_OPEN_FILES.min(limit.rlim_max)
    } else {
        1024
    }
}

/// overlayfs takes its options in one page.
const MAX_MOUNT_OPTIONS: usize = 4000;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("container {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("image {image}: {source}")]
    Process { image: String, source: ProcessError },
    #[error("image {image} has {layers} layers: too many for one overlayfs mount")]
    TooManyLayers { image: String, layers: usize },
    #[error("image {image} runs as root (USER {user:?}), which neither the task nor its framework asked for: give the task a user (agora run --user)")]
    RootByImage { image: String, user: String },
    #[error("volume {path}: {reason}")]
    Volume { path: String, reason: String },
}

/// A container ready for the runtime.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The runtime's id for it.
    pub id: String,
    /// Its bundle (holds `config.json`; `rootfs/` is where its root is mounted).
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// overlayfs options: the image's layers, top first, under the container's own upper;
    /// `None` with the copy backend (the root is a directory of its own).
    pub overlay_options: Option<String>,
    /// Who its process runs as.
    pub uid: u32,
    pub gid: u32,
}

/// The container directory of the task `key` (a cgroup key: framework and task).
pub fn container_dir(containers_dir: &Path, key: &str) -> PathBuf {
    containers_dir.join(key)
}

/// Prepares the container of the task `key` from `image`: `command` (a shell line; empty:
/// the image's entrypoint with `spec.args`, or its cmd), the task's `env`, the task's own
/// `user` (empty: the image's, else the framework's, else [`NOBODY`]) and its `sandbox`
/// (handed to that user).
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    containers_dir: &Path,
    allowed_volumes: &[PathBuf],
    backend: RootfsBackend,
    network: Network,
    key: &str,
    image: &Image,
    spec: &ContainerSpec,
    command: &str,
    env: &[(String, String)],
    user: &str,
    sandbox: &Path,
) -> Result<Prepared, ContainerError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ContainerError::Io { path, source }
    };
    let process_error = |source| ContainerError::Process {
        image: image.reference.clone(),
        source,
    };
    let task_command = if !command.trim().is_empty() {
        TaskCommand::Shell(command.to_string())
    } else if !spec.args.is_empty() {
        TaskCommand::Args(spec.args.clone())
    } else {
        TaskCommand::ImageDefault
    };
    let process = agora_image::process::process_for(&image.config, &task_command, env)
        .map_err(process_error)?;
    let passwd = read_from_layers(&image.layers, "etc/passwd");
    let group = read_from_layers(&image.layers, "etc/group");
    let in_image = |text: &str| {
        UserSpec::parse(text)
            .and_then(|u| u.resolve(&passwd, &group))
            .map_err(process_error)
    };
    let (uid, gid, groups) = if !user.is_empty() {
        in_image(user)?
    } else if !image.config.user.is_empty() {
        let ids = in_image(&image.config.user)?;
        // Root only when asked for (by the task or its framework, which the master's
        // run_tasks ACL allowed), never because an image says so.
        if ids.0 == 0 && !names_root(&spec.framework_user) {
            return Err(ContainerError::RootByImage {
                image: image.reference.clone(),
                user: image.config.user.clone(),
            });
        }
        ids
    } else if !spec.framework_user.is_empty() {
        // The framework's user: the image's if it has one by that name, else the host's.
        match in_image(&spec.framework_user) {
            Ok(ids) => ids,
            Err(e) => match crate::user::lookup(&spec.framework_user) {
                Ok(Some(p)) => (p.uid, p.gid, vec![p.gid]),
                _ => return Err(e),
            },
        }
    } else {
        in_image(NOBODY)?
    };

    let dir = container_dir(containers_dir, key);
    remove(&dir);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(containers_dir)
        .map_err(io(containers_dir))?;
    for sub in ["", "upper", "work", "rootfs"] {
        let d = dir.join(sub);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&d)
            .map_err(io(&d))?;
    }
    // The container's root directory is the upper layer's: as the image has it, else
    // open to all as a root directory is.
    let root_mode = image
        .layers
        .iter()
        .rev()
        .find_map(|l| fs::metadata(l).ok())
        .map_or(0o755, |m| m.mode() & 0o7777);
    let upper = dir.join("upper");
    fs::set_permissions(
        &upper,
        std::os::unix::fs::PermissionsExt::from_mode(root_mode),
    )
    .map_err(io(&upper))?;
    let overlay_options = match backend {
        RootfsBackend::Overlay => {
            let lower: Vec<String> = image
                .layers
                .iter()
                .rev()
                .map(|l| l.display().to_string())
                .collect();
            let options = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.join(":"),
                upper.display(),
                dir.join("work").display()
            );
            if options.len() > MAX_MOUNT_OPTIONS {
                return Err(ContainerError::TooManyLayers {
                    image: image.reference.clone(),
                    layers: image.layers.len(),
                });
            }
            Some(options)
        }
        RootfsBackend::Copy => {
            let rootfs = dir.join("rootfs");
            super::copy::build_rootfs(&image.layers, &rootfs).map_err(io(&rootfs))?;
            fs::set_permissions(
                &rootfs,
                std::os::unix::fs::PermissionsExt::from_mode(root_mode),
            )
            .map_err(io(&rootfs))?;
            None
        }
    };
    // The sandbox is the container user's to write in.
    std::os::unix::fs::chown(sandbox, Some(uid), Some(gid)).map_err(io(sandbox))?;
    for f in [crate::workdir::STDOUT_FILE, crate::workdir::STDERR_FILE] {
        let _ = std::os::unix::fs::lchown(sandbox.join(f), Some(uid), Some(gid));
    }
    let volumes = checked_volumes(&spec.volumes, allowed_volumes)?;
    let sandbox_text = sandbox.display().to_string();
    // The task's id (after the framework's in the key), as a host name allows it.
    let task_id = key.split_once('.').map_or(key, |(_, t)| t);
    let hostname: String = task_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    let hostname = hostname.trim_matches('-');
    let config = bundle::oci_config(&BundleSpec {
        process: &process,
        user: RunUser { uid, gid, groups },
        rootfs: "rootfs",
        sandbox: &sandbox_text,
        hostname,
        network,
        max_open_files: max_open_files(),
        volumes: &volumes,
    });
    let config_path = dir.join("config.json");
    fs::write(&config_path, config.to_string()).map_err(io(&config_path))?;
    // Which layers it uses, so that the store's collection leaves them alone.
    let layers_path = dir.join("layers");
    fs::write(&layers_path, image.layer_digests.join("\n")).map_err(io(&layers_path))?;
    Ok(Prepared {
        id: key.to_string(),
        rootfs: dir.join("rootfs"),
        bundle: dir,
        overlay_options,
        uid,
        gid,
    })
}

/// Whether a user name or id is root's.
fn names_root(user: &str) -> bool {
    matches!(user.split(':').next(), Some("root" | "0"))
}

/// The task's volumes, each host path resolved (symlinks followed) and under one of
/// `allowed` (the agent's `--allowed-host-volumes`), each container path absolute without
/// `..`.
fn checked_volumes(
    volumes: &[super::VolumeSpec],
    allowed: &[PathBuf],
) -> Result<Vec<bundle::Volume>, ContainerError> {
    volumes
        .iter()
        .map(|v| {
            let refuse = |reason: String| ContainerError::Volume {
                path: v.host_path.display().to_string(),
                reason,
            };
            let c = &v.container_path;
            if !c.starts_with('/') || c.split('/').any(|p| p == "..") {
                return Err(refuse(format!(
                    "container path {c:?} is not absolute without '..'"
                )));
            }
            let real = fs::canonicalize(&v.host_path).map_err(|e| refuse(e.to_string()))?;
            let permitted = allowed
                .iter()
                .any(|a| fs::canonicalize(a).is_ok_and(|a| real.starts_with(&a)));
            if !permitted {
                return Err(refuse(
                    "not under the agent's --allowed-host-volumes".to_string(),
                ));
            }
            Ok(bundle::Volume {
                host_path: real.display().to_string(),
                container_path: c.clone(),
                read_only: v.read_only,
            })
        })
        .collect()
}

/// The layers' digests every container in `containers_dir` uses.
pub fn layers_in_use(containers_dir: &Path) -> std::collections::BTreeSet<String> {
    let mut used = std::collections::BTreeSet::new();
    if let Ok(entries) = fs::read_dir(containers_dir) {
        for e in entries.flatten() {
            if let Ok(text) = fs::read_to_string(e.path().join("layers")) {
                used.extend(text.lines().map(str::to_string));
            }
        }
    }
    used
}

/// Removes a container's directory (its upper layer may hold files of any mode).
pub fn remove(dir: &Path) {
    if dir.exists() && fs::remove_dir_all(dir).is_err() {
        let _ = std::process::Command::new("rm")
            .arg("-rf")
            .arg(dir)
            .status();
    }
}

/// A file of the image (`path` relative to its root), from the topmost layer that has it
/// as a regular file (never through a symlink, which could point anywhere on the host);
/// empty when none does.
fn read_from_layers(layers: &[PathBuf], path: &str) -> String {
    for layer in layers.iter().rev() {
        let p = layer.join(path);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => return fs::read_to_string(&p).unwrap_or_default(),
            // A whiteout (0/0 character device) hides it from the layers below.
            Ok(m) if m.file_type().is_char_device() => return String::new(),
            _ => {}
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_image::ImageConfig;

    /// An image of one layer with a passwd of root, app (1000) and nobody.
    fn image(dir: &Path, user: &str) -> Image {
        let layer = dir.join("layer");
        fs::create_dir_all(layer.join("etc")).unwrap();
        fs::write(
            layer.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            layer.join("etc/group"),
            "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n",
        )
        .unwrap();
        Image {
            reference: "127.0.0.1:5000/t:v1".into(),
            manifest_digest: "sha256:m".into(),
            config: ImageConfig {
                os: "linux".into(),
                architecture: "amd64".into(),
                entrypoint: vec![],
                cmd: vec!["true".into()],
                env: vec![],
                working_dir: String::new(),
                user: user.into(),
                diff_ids: vec![],
            },
            layers: vec![layer],
            layer_digests: vec!["aa".into()],
            pulled: false,
        }
    }

    fn prepare_as(
        dir: &Path,
        image: &Image,
        task_user: &str,
        framework_user: &str,
        volumes: Vec<super::super::VolumeSpec>,
        allowed: &[PathBuf],
    ) -> Result<Prepared, ContainerError> {
        let sandbox = dir.join("sandbox");
        fs::create_dir_all(&sandbox).unwrap();
        let spec = ContainerSpec {
            image: image.reference.clone(),
            args: vec![],
            force_pull: false,
            framework_user: framework_user.into(),
            volumes,
            isolated_network: false,
            port_mappings: vec![],
        };
        prepare(
            &dir.join("containers"),
            allowed,
            RootfsBackend::Overlay,
            Network::Host,
            "fw.task-1",
            image,
            &spec,
            "",
            &[],
            task_user,
            &sandbox,
        )
    }

    #[test]
    fn the_user_is_the_tasks_else_the_images_else_the_frameworks_else_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let ids = |task: &str, img: &str, fw: &str| {
            let p = prepare_as(dir.path(), &image(dir.path(), img), task, fw, vec![], &[]).unwrap();
            (p.uid, p.gid)
        };
        assert_eq!(ids("app", "nobody", "root"), (1000, 1000));
        assert_eq!(ids("", "app", "root"), (1000, 1000));
        assert_eq!(ids("", "", "app"), (1000, 1000));
        assert_eq!(ids("", "", "root"), (0, 0));
        assert_eq!(ids("", "", ""), (65534, 65534));
        // The task asked for root by name: the master's ACL allowed it.
        assert_eq!(ids("root", "app", ""), (0, 0));
    }

    #[test]
    fn an_image_that_says_root_runs_only_if_the_framework_asked_for_root() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(dir.path(), "root");
        let e = prepare_as(dir.path(), &img, "", "alice", vec![], &[]).unwrap_err();
        assert!(e.to_string().contains("runs as root"), "{e}");
        assert_eq!(
            prepare_as(dir.path(), &img, "", "root", vec![], &[])
                .unwrap()
                .uid,
            0
        );
        let img = image(dir.path(), "0:0");
        assert!(prepare_as(dir.path(), &img, "", "", vec![], &[]).is_err());
    }

    #[test]
    fn volumes_must_be_under_an_allowed_directory_even_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(dir.path(), "app");
        let allowed = dir.path().join("shared");
        fs::create_dir_all(allowed.join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc", allowed.join("escape")).unwrap();
        let vol = |host: PathBuf, inside: &str| super::super::VolumeSpec {
            host_path: host,
            container_path: inside.into(),
            read_only: false,
        };
        let ok = prepare_as(
            dir.path(),
            &img,
            "",
            "",
            vec![vol(allowed.join("sub"), "/data")],
            std::slice::from_ref(&allowed),
        );
        assert!(ok.is_ok(), "{ok:?}");
        let config = fs::read_to_string(ok.unwrap().bundle.join("config.json")).unwrap();
        assert!(config.contains("\"/data\""), "{config}");
        for (host, inside) in [
            (allowed.join("escape"), "/data"),
            (PathBuf::from("/etc"), "/data"),
            (allowed.join("sub"), "relative"),
            (allowed.join("sub"), "/a/../b"),
            (allowed.join("missing"), "/data"),
        ] {
            let e = prepare_as(
                dir.path(),
                &img,
                "",
                "",
                vec![vol(host.clone(), inside)],
                std::slice::from_ref(&allowed),
            );
            assert!(e.is_err(), "{host:?} at {inside} was accepted");
        }
    }
}
