//! Containers on the agent: the I/O around the pure [`agora_image`] crate. Images pulled
//! from registries and kept content-addressed ([`store`]), layers unpacked ([`unpack`]),
//! and a task's container prepared and described for the OCI runtime ([`container`]).
//!
//! Must not: know about frameworks or the master; reach the network except a registry.

pub mod container;
pub mod copy;
pub mod network;
pub mod store;
pub mod unpack;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A task's container as the agent keeps it (checkpointed with the task).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The image reference as the task gave it.
    pub image: String,
    /// Arguments after the image's entrypoint (with no shell command).
    #[serde(default)]
    pub args: Vec<String>,
    /// Pull even when the store has the image for this reference.
    #[serde(default)]
    pub force_pull: bool,
    /// The framework's user, for a task and an image that name none.
    #[serde(default)]
    pub framework_user: String,
    /// Host directories mounted into it.
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
    /// A network namespace of its own (only its loopback) instead of the host's.
    #[serde(default)]
    pub isolated_network: bool,
    /// With an isolated network: host port -> port on the container's loopback.
    #[serde(default)]
    pub port_mappings: Vec<(u16, u16)>,
}

/// A host directory in a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub host_path: PathBuf,
    pub container_path: String,
    #[serde(default)]
    pub read_only: bool,
}

/// The environment variable that carries [`ImageSettings`] from the agent to its
/// executors (removed from the executor's environment before any task starts).
pub const ENV_IMAGE_SETTINGS: &str = "AGORA_IMAGE_SETTINGS";

/// A registry's user name and password (`--registry-credentials`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCredential {
    pub username: String,
    pub password: String,
}

/// How the agent provides containers: its flags, as its executors need them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageSettings {
    /// The image store (`<work-dir>/images`).
    pub store_dir: PathBuf,
    /// Containers' root filesystems and bundles (`<work-dir>/containers`).
    pub containers_dir: PathBuf,
    /// The registry of references that name none (`--image-registry`).
    pub default_registry: String,
    /// Registries spoken to over plain HTTP besides loopback ones
    /// (`--insecure-registries`).
    pub insecure: Vec<String>,
    /// The OCI runtime (`--container-runtime`, default `crun` from PATH).
    pub runtime: PathBuf,
    /// Credentials by registry (`--registry-credentials FILE`).
    #[serde(default)]
    pub credentials: BTreeMap<String, RegistryCredential>,
    /// Unused layers are removed while the store holds more than this many bytes
    /// (`--image-gc-threshold`).
    pub gc_threshold_bytes: u64,
    /// Host directories (and what is under them) containers may mount
    /// (`--allowed-host-volumes`); none by default.
    #[serde(default)]
    pub allowed_host_volumes: Vec<PathBuf>,
    /// How a container's root filesystem is made (`--image-provisioner-backend`).
    #[serde(default)]
    pub rootfs_backend: RootfsBackend,
}

/// How a container's root filesystem is made from its image's layers (Mesos'
/// `--image_provisioner_backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsBackend {
    /// overlayfs over the shared layers, a writable upper layer of its own.
    #[default]
    Overlay,
    /// The layers copied into a directory of its own (where overlayfs is not available).
    Copy,
}

impl RootfsBackend {
    /// overlayfs where the kernel has it (`/proc/filesystems`), else copy.
    pub fn detect() -> RootfsBackend {
        let has_overlay = std::fs::read_to_string("/proc/filesystems").is_ok_and(|t| {
            t.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        });
        if has_overlay {
            RootfsBackend::Overlay
        } else {
            RootfsBackend::Copy
        }
    }
}

/// Removes unused layers from the store every `interval` while it holds more than the
/// threshold (runs until aborted).
pub async fn collect_layers(settings: ImageSettings, interval: std::time::Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !settings.store_dir.is_dir() {
            continue;
        }
        let s = settings.clone();
        let freed = tokio::task::spawn_blocking(move || {
            let store = store::Store::open(&s)?;
            let in_use = container::layers_in_use(&s.containers_dir);
            store.collect(s.gc_threshold_bytes, &in_use)
        })
        .await;
        match freed {
            Ok(Ok(0)) => {}
            Ok(Ok(bytes)) => tracing::info!(bytes, "removed unused image layers"),
            Ok(Err(e)) => tracing::warn!(error = %e, "image layer collection failed"),
            Err(e) => tracing::warn!(error = %e, "image layer collection failed"),
        }
    }
}

/// Removes what is left of the container of the task `key` (its directory and the
/// runtime's state of it), after its executor is gone.
pub fn remove_container(settings: &ImageSettings, key: &str) {
    let dir = container::container_dir(&settings.containers_dir, key);
    let state = settings.containers_dir.join(".runtime").join(key);
    for d in [dir, state] {
        if d.exists() {
            container::remove(&d);
            tracing::info!(path = %d.display(), "removed a container left by its executor");
        }
    }
}

/// Keys of every container directory in `settings.containers_dir`.
pub fn container_keys(settings: &ImageSettings) -> Vec<String> {
    std::fs::read_dir(&settings.containers_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// `--image-gc-threshold`'s default: 10 GiB.
pub const DEFAULT_IMAGE_GC_THRESHOLD_BYTES: u64 = 10 << 30;

impl ImageSettings {
    /// The defaults for an agent whose work dir is `work_dir`.
    pub fn defaults(work_dir: &std::path::Path) -> ImageSettings {
        ImageSettings {
            store_dir: work_dir.join("images"),
            containers_dir: work_dir.join("containers"),
            default_registry: agora_image::reference::DOCKER_HUB.to_string(),
            insecure: Vec::new(),
            runtime: PathBuf::from("crun"),
            credentials: BTreeMap::new(),
            gc_threshold_bytes: DEFAULT_IMAGE_GC_THRESHOLD_BYTES,
            allowed_host_volumes: Vec::new(),
            rootfs_backend: RootfsBackend::detect(),
        }
    }

    /// What a pull from `registry` presents.
    pub fn auth_for(&self, registry: &str) -> oci_client::secrets::RegistryAuth {
        match self.credentials.get(registry) {
            Some(c) => {
                oci_client::secrets::RegistryAuth::Basic(c.username.clone(), c.password.clone())
            }
            None => oci_client::secrets::RegistryAuth::Anonymous,
        }
    }

    /// As the executor's environment carries it.
    pub fn to_env(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// From the executor's environment.
    pub fn from_env() -> Result<ImageSettings, String> {
        let text = std::env::var(ENV_IMAGE_SETTINGS).map_err(|_| {
            format!("{ENV_IMAGE_SETTINGS} is not set: the agent runs no containers")
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{ENV_IMAGE_SETTINGS}: {e}"))
    }
}
