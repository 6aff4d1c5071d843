//! # agora-master
//!
//! Owns one master replica: it joins the Raft quorum (openraft over gRPC, storage from
//! `agora-raft-store`), and serves on ONE listen address the Raft peer RPCs, the client and
//! operator gRPC API, and HTTP (`/health`, `/state`, `/metrics`, `/flags`, `/logging/level`,
//! the web UI). Only the leader accepts writes and answers state queries; followers point
//! callers at the leader. Each replica answers for itself about its flags, version and log
//! level ([`logging`], changed at run time).
//!
//! What it must not do: decide registry semantics (that is `agora-registry`'s pure apply),
//! touch sled (that is `agora-raft-store`'s), or let generated proto types past
//! [`convert`], its one conversion layer.

pub mod bootstrap;
pub mod cli;
pub mod clock;
pub mod config;
pub mod convert;
pub mod faults;
pub mod interleave;
pub mod leader;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod quorum;
pub mod raft_network;
pub mod store;
pub mod transport;

use std::future::Future;
use std::sync::Arc;

use agora_proto::v1::raft_peer_server::RaftPeerServer;
use store::{Raft, RegistryHandle};
use tokio::net::TcpListener;
use tracing::Instrument;

pub use config::{Config, ConfigError, RaftTiming};

/// Why a master replica could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("work dir {path} is held by another running process")]
    WorkDirLocked { path: String },
    #[error("work dir {path}: {source}")]
    WorkDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] agora_raft_store::OpenError),
    #[error("raft: {0}")]
    Raft(String),
    /// openraft's core stopped on a storage error (a failed write or fsync: a full or
    /// failing disk). The replica stops rather than linger: it can acknowledge nothing.
    #[error("storage failed, this replica stops (restart it once the disk is fixed; it catches up from the leader): {0}")]
    StorageFailed(String),
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Security(#[from] agora_security::SecurityError),
    #[error("{path}: {source}")]
    Acls {
        path: String,
        #[source]
        source: agora_acl::AclError,
    },
}

/// The replica's security, loaded from its files: TLS for its port and for its peers,
/// the authentication gate, and the ACLs.
struct LoadedSecurity {
    tls: Option<Arc<agora_security::tls::ServerTls>>,
    peers: agora_security::client::ClientSecurity,
    gate: Arc<transport::auth::Gate>,
    acls: agora_acl::Acls,
}

fn load_acls(path: &std::path::Path) -> Result<agora_acl::Acls, MasterError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| agora_security::SecurityError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    agora_acl::Acls::parse(&text).map_err(|source| MasterError::Acls {
        path: path.display().to_string(),
        source,
    })
}

fn load_security(config: &Config) -> Result<LoadedSecurity, MasterError> {
    use agora_security::authenticate::Authenticator;
    let sec = &config.security;
    let tls = sec
        .tls
        .clone()
        .map(agora_security::tls::ServerTls::load)
        .transpose()?;
    let peers = match &sec.tls {
        Some(files) => agora_security::client::ClientSecurity {
            tls: Some(agora_security::tls::ClientTls::load(
                &files.ca,
                Some((&files.cert, &files.key)),
            )?),
            credential: None,
        },
        None => agora_security::client::ClientSecurity::insecure(),
    };
    let authenticator = match &sec.credentials {
        Some(path) => Authenticator::from_file(path.clone())?,
        None => Authenticator::without_credentials(),
    };
    let acls = match &sec.acls {
        Some(path) => load_acls(path)?,
        None => agora_acl::Acls::permissive(),
    };
    if let Some(tls) = &tls {
        // A replica's certificate must name it, or its peers refuse its Raft calls.
        let names = agora_security::tls::load_certs(&tls.files().cert)?
            .first()
            .and_then(|c| agora_security::tls::common_name(c));
        let expected = agora_security::master_principal(config.id);
        if names.as_deref() != Some(expected.as_str()) {
            return Err(MasterError::Security(agora_security::SecurityError::Config(format!(
                "--tls-cert: its Common Name is {names:?}, but replica {} needs {expected:?} (peers accept Raft calls only from master-<id>)",
                config.id
            ))));
        }
    }
    let gate = Arc::new(transport::auth::Gate {
        authenticator,
        peers_need_certificates: tls.is_some(),
        authenticate_http_readonly: sec.authenticate_http_readonly,
    });
    Ok(LoadedSecurity {
        tls,
        peers,
        gate,
        acls,
    })
}

/// Reloads certificates, credentials and ACLs on SIGHUP. A file that fails to load keeps
/// the previous one in force (and says so in the log); open connections are not touched.
async fn reload_on_hangup(
    config: Arc<Config>,
    tls: Option<Arc<agora_security::tls::ServerTls>>,
    gate: Arc<transport::auth::Gate>,
    leader: leader::Leader,
) {
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot watch SIGHUP: certificates will not be reloaded");
        return;
    };
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading certificates, credentials and ACLs");
        if let Some(tls) = &tls {
            if let Err(e) = tls.reload() {
                tracing::error!(error = %e, "TLS reload failed; the previous certificates stay in force");
            }
        }
        if let Err(e) = gate.authenticator.reload() {
            tracing::error!(error = %e, "credentials reload failed; the previous credentials stay in force");
        }
        if let Some(path) = &config.security.acls {
            match load_acls(path) {
                Ok(acls) => leader.replace_acls(acls),
                Err(e) => {
                    tracing::error!(error = %e, "ACL reload failed; the previous ACLs stay in force")
                }
            }
        }
    }
}

/// Takes an exclusive lock on `work_dir/LOCK` for the life of the process.
fn lock_work_dir(config: &Config) -> Result<std::fs::File, MasterError> {
    let path = config.work_dir.display().to_string();
    let io = |source| MasterError::WorkDir {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&config.work_dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(config.work_dir.join("LOCK"))
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(MasterError::WorkDirLocked { path }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// How long a stopping replica waits for open connections to finish.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a stopping leader spends handing leadership over before it stops anyway.
const HAND_OVER_WITHIN: std::time::Duration = std::time::Duration::from_millis(1_000);

/// Runs one master replica on `listener` until `shutdown` completes, then ends every
/// session and stops within [`STOP_GRACE`] (plus Raft's own shutdown).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MasterError> {
    run_with_clock(config, listener, shutdown, clock::SystemClock::shared()).await
}

/// [`run`], with the leader reading time from `clock`.
pub async fn run_with_clock(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: clock::SharedClock,
) -> Result<(), MasterError> {
    let span = tracing::info_span!("master", node = config.id);
    run_replica(config, listener, shutdown, clock)
        .instrument(span)
        .await
}

async fn run_replica(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: clock::SharedClock,
) -> Result<(), MasterError> {
    config.validate()?;
    let security = load_security(&config)?;
    if config.security.is_insecure() {
        tracing::warn!(
            tls = config.security.tls.is_some(),
            credentials = config.security.credentials.is_some(),
            "INSECURE: --insecure given; anyone who can reach this port can act on the cluster"
        );
    }
    let _lock = lock_work_dir(&config)?;
    let (log, sm) = store::open(&config.work_dir.join("raft"))?;
    let pristine = store::is_pristine(&log, &sm);
    let registry = RegistryHandle::new(&sm);
    let snapshot_stats = sm.snapshot_stats();
    let raft_config = Arc::new(
        config
            .raft_config()
            .validate()
            .map_err(|e| MasterError::Raft(e.to_string()))?,
    );
    // Raft runs on a runtime of its own (one thread): its core, replication to the peers
    // and the peers' connections to this replica (served there by the accept loop's
    // priority lane), so a flood of client work on the main runtime slows clients, not
    // heartbeats and votes.
    let raft_runtime = OwnRuntime::raft(config.id)?;
    let bulk_runtime = OwnRuntime::bulk(config.id)?;
    let contacts = raft_network::PeerContacts::default();
    let network = raft_network::PeerNetworkFactory {
        security: security.peers.clone(),
        backoff: config.raft.heartbeat_interval,
        contacts: contacts.clone(),
    };
    let id = config.id;
    let raft = raft_runtime
        .handle()
        .spawn(async move { Raft::new(id, raft_config, network, log, sm).await })
        .await
        .map_err(|e| MasterError::Raft(e.to_string()))?
        .map_err(|e| MasterError::Raft(e.to_string()))?;

    let config = Arc::new(config);
    // A replica that starts with an empty store may have voted before it lost that store;
    // it does not vote until bootstrap decides it is safe.
    let quarantined = pristine && !config.join;
    let quorum = quorum::Quorum::new(
        config.clone(),
        raft.clone(),
        quarantined,
        security.peers.clone(),
        contacts,
    );
    let mut metrics = metrics::Metrics::new();
    metrics.snapshot_stats = Some(snapshot_stats);
    let writer = leader::Writer::start(raft.clone(), metrics.clone());
    let leader = leader::Leader::new(
        config.clone(),
        quorum.clone(),
        registry,
        writer,
        clock,
        metrics,
        leader::authz::Authz::new(security.acls, config.security.credentials.is_some()),
    );
    tracing::info!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        advertise = %config.advertise,
        pristine,
        "master replica starting"
    );
    if quarantined {
        // It cannot win with an empty log, and campaigning would only disturb the quorum.
        raft.runtime_config().elect(false);
    }
    let bootstrap =
        tokio::spawn(bootstrap::run(quorum.clone(), pristine).instrument(tracing::Span::current()));

    let peers = tonic::service::Routes::new(
        RaftPeerServer::new(raft_network::RaftPeerService {
            id: config.id,
            raft: raft.clone(),
            quarantined: quorum.quarantined.clone(),
        })
        .max_decoding_message_size(raft_network::MAX_PEER_MESSAGE)
        .max_encoding_message_size(raft_network::MAX_PEER_MESSAGE),
    );
    let app = transport::router(leader.clone(), peers, security.gate.clone());
    let reloader = tokio::spawn(reload_on_hangup(
        config.clone(),
        security.tls.clone(),
        security.gate.clone(),
        leader.clone(),
    ));

    let mut loops = leader.spawn_loops();
    loops.push(tokio::spawn(memory::trim_periodically(memory::TRIM_EVERY)));
    let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<()>();
    let closing = leader.clone();
    let handing = quorum.clone();
    let shutdown = async move {
        shutdown.await;
        // A leader that stops hands over first: its successor is elected in one vote
        // round instead of after an election timeout.
        let asked = tokio::time::Instant::now();
        match handing.hand_over(HAND_OVER_WITHIN).await {
            Ok(successor) => tracing::info!(
                successor,
                took_ms = asked.elapsed().as_millis() as u64,
                "stop requested: leadership handed over"
            ),
            Err(quorum::HandOverError::NotLeader) => {}
            Err(e) => {
                tracing::warn!(error = %e, "stop requested: leadership not handed over; the followers will elect after their timeout")
            }
        }
        tracing::info!("stop requested: ending sessions");
        closing.close_sessions();
        let _ = stopping_tx.send(());
    };
    let serve = agora_security::serve::serve(
        listener,
        app,
        agora_security::serve::ServeOptions {
            tls: security.tls.clone(),
            allow_plaintext: config.security.allow_plaintext,
            priority: Some(agora_security::serve::PriorityLane {
                runtime: raft_runtime.handle(),
                admits: Arc::new(|conn| {
                    conn.peer_principal
                        .as_deref()
                        .and_then(agora_security::master_id)
                        .is_some()
                }),
            }),
            bulk: Some(agora_security::serve::BulkLane {
                runtime: bulk_runtime.handle(),
                admits: Arc::new(is_bulk_read),
            }),
            ..Default::default()
        },
        shutdown,
    );
    let served = tokio::select! {
        served = serve => served.map_err(MasterError::Serve),
        failure = raft_failed(raft.clone()) => {
            tracing::error!(error = %failure, "storage failed: stopping this replica");
            leader.close_sessions();
            Err(MasterError::StorageFailed(failure))
        }
        // A client that keeps its connection open does not hold the stop up for long.
        Ok(()) = async {
            stopping.await?;
            tokio::time::sleep(STOP_GRACE).await;
            Ok::<(), tokio::sync::oneshot::error::RecvError>(())
        } => {
            tracing::warn!(grace = ?STOP_GRACE, "connections still open after the stop grace; closing them");
            Ok(())
        }
    };
    bootstrap.abort();
    reloader.abort();
    for l in loops {
        l.abort();
    }
    tracing::info!("master replica stopping");
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    raft_runtime.stop();
    bulk_runtime.stop();
    served
}

/// Resolves when openraft's core has stopped on an error (a storage error: its log or vote
/// could not be written or flushed), with that error; never if it runs or stops normally.
async fn raft_failed(raft: Raft) -> String {
    let mut metrics = raft.metrics();
    loop {
        if let Err(e) = &metrics.borrow_and_update().running_state {
            if !matches!(e, openraft::error::Fatal::Stopped) {
                return e.to_string();
            }
        }
        if metrics.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// A runtime of its own with one worker thread: Raft's (`raft-<id>`, raised priority) and
/// bulk HTTP reads' (`http-bulk-<id>`, lowered priority).
struct OwnRuntime(Option<tokio::runtime::Runtime>);

/// The nice value of the threads that serve bulk HTTP reads (`/state`, `/metrics`, the web
/// UI over HTTP/1): on a saturated host, the API and Raft's threads (nice 0 and
/// [`agora_raft_store::RAFT_THREAD_NICE`]) get the CPU first, readers what is left.
pub const BULK_THREAD_NICE: i32 = 10;

/// HTTP/1 paths served on the bulk lane: reads whose answers are large (Mesos' v0 state and
/// metrics included, which tooling polls).
fn is_bulk_read(path: &str) -> bool {
    matches!(
        path,
        "/state"
            | "/metrics"
            | "/"
            | "/ui.js"
            | "/ui.css"
            | "/master/state"
            | "/state.json"
            | "/master/state.json"
            | "/metrics/snapshot"
    )
}

impl OwnRuntime {
    /// Raft's runtime: heartbeats before client work, on a busy host too (50 /state
    /// readers on two cores cost the leader its leadership at the default priority).
    fn raft(id: u64) -> Result<Self, MasterError> {
        Self::start(format!("raft-{id}"), || {
            if let Err(e) = agora_raft_store::raise_thread_priority() {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    tracing::warn!(error = %e, "Raft's threads keep the default priority (raising it needs CAP_SYS_NICE)")
                });
            }
        })
    }

    /// The bulk readers' runtime; its blocking pool (where `/state` renders) is niced too.
    fn bulk(id: u64) -> Result<Self, MasterError> {
        Self::start(format!("http-bulk-{id}"), || {
            if let Err(e) = agora_raft_store::set_thread_nice(BULK_THREAD_NICE) {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    tracing::warn!(error = %e, "bulk readers' threads keep the default priority")
                });
            }
        })
    }

    fn start(name: String, on_start: fn()) -> Result<Self, MasterError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name.clone())
            .on_thread_start(on_start)
            .enable_all()
            .build()
            .map_err(|e| MasterError::Raft(format!("cannot start runtime {name}: {e}")))?;
        Ok(OwnRuntime(Some(runtime)))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.0.as_ref().expect("running").handle().clone()
    }

    /// Stops it without waiting for what is left on it (Raft has shut down by then).
    fn stop(mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for OwnRuntime {
    /// Dropping a runtime blocks, which an async caller must not do: an early return
    /// (an error after it started) stops it in the background too.
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod layering {
    /// The rule of the leader layer, checked on its source: it never names tonic or the
    /// generated proto types (the transport converts), nor reads the system clock.
    #[test]
    fn the_leader_layer_never_imports_tonic_proto_or_the_system_clock() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/leader");
        let mut checked = 0;
        // Its files, and those of its folder modules (`leader/frameworks/`).
        let mut paths = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(dir)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    paths.push(path);
                }
            }
        }
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for banned in ["tonic", "agora_proto", "SystemTime", "UNIX_EPOCH"] {
                    assert!(
                        !code.contains(banned),
                        "{}:{}: the leader layer names {banned}: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} files checked");
    }
}
