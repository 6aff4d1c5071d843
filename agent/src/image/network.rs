//! A container's isolated network: a network namespace of its own (`ip netns add`, so the
//! runtime joins it by path; only its loopback, brought up), and a user-space forwarder
//! from the task's host ports to ports on that loopback (as `docker-proxy` does): each
//! accepted connection is matched by one the forwarder opens from inside the namespace (a
//! thread of its own entered it with `setns`), and bytes are copied both ways.
//!
//! Names: `agora-ct-<16 hex digits of the task key's hash>`, so the agent can remove what
//! an executor killed before its cleanup left ([`remove`]).

use std::hash::{Hash, Hasher};
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Prefix of the namespaces the agent makes.
pub const NETNS_PREFIX: &str = "agora-ct-";

/// Where `ip netns` keeps named namespaces.
const NETNS_DIR: &str = "/var/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("`ip {args}`: {reason}")]
    Ip { args: String, reason: String },
    #[error("host port {port}: {source}")]
    Bind { port: u16, source: io::Error },
    #[error("network namespace {name}: {source}")]
    Enter { name: String, source: io::Error },
}

/// The namespace name of the task `key`.
pub fn netns_name(key: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    format!("{NETNS_PREFIX}{:016x}", h.finish())
}

fn ip(args: &[&str]) -> Result<(), NetworkError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetworkError::Ip {
            args: args.join(" "),
            reason: format!("{e} (install iproute2)"),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Ip {
            args: args.join(" "),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// A container's network namespace, removed when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace of the task `key` (a stale one of the same name goes first)
    /// with its loopback up.
    pub fn create(key: &str) -> Result<Netns, NetworkError> {
        let name = netns_name(key);
        remove_named(&name);
        ip(&["netns", "add", &name])?;
        let netns = Netns { name };
        ip(&["-n", &netns.name, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Its path, for the runtime to join.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove_named(&self.name);
    }
}

fn remove_named(name: &str) {
    if PathBuf::from(NETNS_DIR).join(name).exists() {
        if let Err(e) = ip(&["netns", "del", name]) {
            tracing::warn!(netns = name, error = %e, "cannot remove a container's network namespace");
        }
    }
}

/// Removes the namespace of the task `key` if it is there (its executor died first).
pub fn remove(key: &str) {
    remove_named(&netns_name(key));
}

/// Names of every container namespace on this host.
pub fn namespaces() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(NETNS_PREFIX))
        .collect()
}

/// Whether no process is in the namespace `name` (a container's that outlived its
/// executor holds none: the executor's death took its container down).
pub fn is_unused(name: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(PathBuf::from(NETNS_DIR).join(name)) else {
        return true;
    };
    let wanted = format!("net:[{}]", meta.ino());
    !std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .any(|e| {
            std::fs::read_link(e.path().join("ns/net")).is_ok_and(|l| l.to_string_lossy() == wanted)
        })
}

/// Removes the namespace `name` (one of [`namespaces`]).
pub fn remove_namespace(name: &str) {
    if name.starts_with(NETNS_PREFIX) {
        remove_named(name);
    }
}

/// Forwards the host ports into the namespace while it lives; stops when dropped.
pub struct Forwarder {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A connection to open from inside the namespace.
type Dial = (u16, oneshot::Sender<io::Result<std::net::TcpStream>>);

impl Forwarder {
    /// Binds every host port (all addresses) of `mappings` (host port, container port) and
    /// forwards what connects to the container's loopback in `netns`.
    pub async fn start(netns: &Netns, mappings: &[(u16, u16)]) -> Result<Forwarder, NetworkError> {
        Forwarder::start_in(netns.path(), mappings).await
    }

    /// [`Forwarder::start`] for the namespace at `path`.
    pub async fn start_in(
        path: PathBuf,
        mappings: &[(u16, u16)],
    ) -> Result<Forwarder, NetworkError> {
        let name = path.display().to_string();
        let file = std::fs::File::open(&path).map_err(|source| NetworkError::Enter {
            name: name.clone(),
            source,
        })?;
        let (dial_tx, mut dial_rx) = mpsc::unbounded_channel::<Dial>();
        // One thread in the namespace opens every connection into it.
        let (entered_tx, entered_rx) = oneshot::channel();
        std::thread::spawn(move || {
            // SAFETY: setns on this thread only, with a descriptor this thread owns.
            let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            let ok = entered == 0;
            let _ = entered_tx.send(if ok {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            });
            if !ok {
                return;
            }
            while let Some((port, reply)) = dial_rx.blocking_recv() {
                let _ = reply.send(std::net::TcpStream::connect(("127.0.0.1", port)));
            }
        });
        entered_rx
            .await
            .unwrap_or_else(|_| Err(io::Error::other("thread ended")))
            .map_err(|source| NetworkError::Enter {
                name: name.clone(),
                source,
            })?;
        let mut tasks = Vec::new();
        for &(host_port, container_port) in mappings {
            let listener = TcpListener::bind(("0.0.0.0", host_port))
                .await
                .map_err(|source| NetworkError::Bind {
                    port: host_port,
                    source,
                })?;
            let dial = dial_tx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((inbound, peer)) = listener.accept().await else {
                        continue;
                    };
                    let dial = dial.clone();
                    tokio::spawn(async move {
                        let (tx, rx) = oneshot::channel();
                        if dial.send((container_port, tx)).is_err() {
                            return;
                        }
                        let outbound = match rx.await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, container_port, error = %e, "nothing listens in the container");
                                return;
                            }
                            Err(_) => return,
                        };
                        if outbound.set_nonblocking(true).is_err() {
                            return;
                        }
                        let (Ok(mut outbound), mut inbound) =
                            (TcpStream::from_std(outbound), inbound)
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    });
                }
            }));
        }
        Ok(Forwarder { tasks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_enough_and_stable() {
        let a = netns_name("fw-0000.task-1");
        assert_eq!(a, netns_name("fw-0000.task-1"));
        assert_ne!(a, netns_name("fw-0000.task-2"));
        assert!(a.starts_with(NETNS_PREFIX) && a.len() == NETNS_PREFIX.len() + 16);
    }
}
