//! The OCI runtime configuration (`config.json` of a bundle, runtime-spec 1.0) a task's
//! container is started from by an OCI runtime (`crun`): its process, root filesystem,
//! mounts and namespaces. Built as data here; the agent writes it and runs the runtime.
//!
//! What every container gets, as Docker and Mesos give it: new mount, PID, IPC and UTS
//! namespaces (and a network namespace unless the task uses the host's network), a private
//! `/proc`, a minimal `/dev` (the runtime adds the standard device nodes), `/dev/pts`,
//! `/dev/shm`, a read-only `/sys`, a fresh `/tmp`, the task's sandbox at
//! `/mnt/mesos/sandbox`, Docker's default capabilities and no new privileges. Cgroups are
//! not in it: the agent keeps its own per task, which the container inherits.

use serde_json::{json, Value};

use crate::process::{Process, SANDBOX_IN_CONTAINER};

/// Docker's default capabilities for a container.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// How the container reaches the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Network {
    /// The host's network namespace.
    Host,
    /// A namespace the agent prepared (its path, e.g. `/var/run/netns/NAME`).
    Joined(String),
}

/// Who the process runs as inside the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Everything the configuration depends on.
#[derive(Clone, Debug)]
pub struct BundleSpec<'a> {
    pub process: &'a Process,
    pub user: RunUser,
    /// The root filesystem, relative to the bundle or absolute.
    pub rootfs: &'a str,
    /// The task's sandbox on the host, bind-mounted at `/mnt/mesos/sandbox`.
    pub sandbox: &'a str,
    pub hostname: &'a str,
    pub network: Network,
    /// Open files allowed (RLIMIT_NOFILE, soft and hard).
    pub max_open_files: u64,
    /// Host directories bind-mounted into the container (checked by the agent first).
    pub volumes: &'a [Volume],
}

/// A host directory bind-mounted into a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub host_path: String,
    /// Absolute, within the container.
    pub container_path: String,
    pub read_only: bool,
}

/// The `config.json` for `spec`.
pub fn oci_config(spec: &BundleSpec<'_>) -> Value {
    let caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if let Network::Joined(path) = &spec.network {
        namespaces.push(json!({"type": "network", "path": path}));
    }
    let env: Vec<String> = spec
        .process
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777"]}),
        json!({"destination": SANDBOX_IN_CONTAINER, "type": "bind", "source": spec.sandbox,
         "options": ["rbind", "rw", "nosuid", "nodev"]}),
    ];
    for v in spec.volumes {
        let mode = if v.read_only { "ro" } else { "rw" };
        mounts.push(json!({"destination": v.container_path, "type": "bind",
            "source": v.host_path, "options": ["rbind", mode, "nosuid", "nodev"]}));
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {
                "uid": spec.user.uid,
                "gid": spec.user.gid,
                "additionalGids": spec.user.groups,
            },
            "args": spec.process.args,
            "env": env,
            "cwd": spec.process.cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "rlimits": [{
                "type": "RLIMIT_NOFILE",
                "hard": spec.max_open_files,
                "soft": spec.max_open_files,
            }],
            "noNewPrivileges": true,
        },
        "root": {"path": spec.rootfs, "readonly": false},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                "/proc/scsi", "/sys/firmware",
            ],
            "readonlyPaths": [
                "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process() -> Process {
        Process {
            args: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
            env: vec![("A".into(), "1".into())],
            cwd: "/srv".into(),
        }
    }

    fn spec(p: &Process, network: Network) -> BundleSpec<'_> {
        BundleSpec {
            process: p,
            user: RunUser {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 4],
            },
            rootfs: "rootfs",
            sandbox: "/var/lib/agora/sandboxes/f/t",
            hostname: "task-t",
            network,
            max_open_files: 1024,
            volumes: &[],
        }
    }

    #[test]
    fn the_process_user_and_sandbox_are_in_the_configuration() {
        let p = process();
        let c = oci_config(&spec(&p, Network::Host));
        assert_eq!(c["process"]["args"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(c["process"]["env"], json!(["A=1"]));
        assert_eq!(c["process"]["cwd"], "/srv");
        assert_eq!(
            c["process"]["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [1000, 4]})
        );
        assert_eq!(c["process"]["noNewPrivileges"], true);
        let sandbox = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == SANDBOX_IN_CONTAINER)
            .unwrap();
        assert_eq!(sandbox["source"], "/var/lib/agora/sandboxes/f/t");
        assert!(
            c.get("linux").unwrap().get("resources").is_none(),
            "cgroups are the agent's"
        );
    }

    #[test]
    fn a_host_network_task_shares_the_hosts_namespace_and_another_joins_its_own() {
        let p = process();
        let types = |c: &Value| -> Vec<String> {
            c["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["type"].as_str().unwrap().to_string())
                .collect()
        };
        let host = oci_config(&spec(&p, Network::Host));
        assert_eq!(types(&host), vec!["pid", "ipc", "uts", "mount"]);
        let own = oci_config(&spec(&p, Network::Joined("/var/run/netns/t".into())));
        assert_eq!(types(&own), vec!["pid", "ipc", "uts", "mount", "network"]);
        assert_eq!(own["linux"]["namespaces"][4]["path"], "/var/run/netns/t");
    }
}
