//! # agora-master
//!
//! Owns one master replica: it joins the Raft quorum (openraft over gRPC, storage from
//! `agora-raft-store`), and serves on ONE listen address the Raft peer RPCs, the client and
//! operator gRPC API, and HTTP (`/health`, `/state`, `/metrics`, the web UI). Only the leader
//! accepts writes and answers state queries; followers point callers at the leader.
//!
//! What it must not do: decide registry semantics (that is `agora-registry`'s pure apply),
//! touch sled (that is `agora-raft-store`'s), or let generated proto types past
//! [`convert`], its one conversion layer.

pub mod agents;
pub mod api;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod convert;
pub mod faults;
pub mod frameworks;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod raft_network;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use agora_proto::v1::agent_gateway_server::AgentGatewayServer;
use agora_proto::v1::master_server::MasterServer;
use agora_proto::v1::operator_server::OperatorServer;
use agora_proto::v1::raft_peer_server::RaftPeerServer;
use agora_proto::v1::scheduler_server::SchedulerServer;
use agora_raft_store::{Raft, RegistryHandle};
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
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// What every request handler of this replica shares.
#[derive(Clone)]
pub struct Master {
    pub config: Arc<Config>,
    pub raft: Raft,
    pub registry: RegistryHandle,
    pub metrics: metrics::Metrics,
    /// Agent sessions and health (acted on only while leading).
    pub agents: agents::AgentSessions,
    /// Framework subscriptions and allocation soft state (only while leading).
    pub frameworks: frameworks::Frameworks,
    /// The one path to the Raft log for registry commands.
    pub writer: leader::Writer,
    /// Set while this replica must not vote (see [`bootstrap`]).
    pub quarantined: Arc<AtomicBool>,
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

/// Runs one master replica on `listener` until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MasterError> {
    let span = tracing::info_span!("master", node = config.id);
    run_replica(config, listener, shutdown)
        .instrument(span)
        .await
}

async fn run_replica(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MasterError> {
    config.validate()?;
    let _lock = lock_work_dir(&config)?;
    let (log, sm) = agora_raft_store::open(&config.work_dir.join("raft"))?;
    let pristine = agora_raft_store::is_pristine(&log, &sm);
    let registry = sm.registry();
    let raft_config = Arc::new(
        config
            .raft_config()
            .validate()
            .map_err(|e| MasterError::Raft(e.to_string()))?,
    );
    let config_join = config.join;
    let raft = Raft::new(
        config.id,
        raft_config,
        raft_network::PeerNetworkFactory,
        log,
        sm,
    )
    .await
    .map_err(|e| MasterError::Raft(e.to_string()))?;

    let metrics = metrics::Metrics::new();
    let master = Master {
        config: Arc::new(config),
        raft: raft.clone(),
        registry,
        writer: leader::Writer::start(raft.clone(), metrics.clone()),
        agents: agents::AgentSessions::default(),
        frameworks: frameworks::Frameworks::default(),
        metrics,
        // A replica that starts with an empty store may have voted before it lost that
        // store; it does not vote until bootstrap decides it is safe.
        quarantined: Arc::new(AtomicBool::new(pristine && !config_join)),
    };
    tracing::info!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        advertise = %master.config.advertise,
        pristine,
        "master replica starting"
    );
    if master
        .quarantined
        .load(std::sync::atomic::Ordering::Acquire)
    {
        // It cannot win with an empty log, and campaigning would only disturb the quorum.
        raft.runtime_config().elect(false);
    }
    let bootstrap =
        tokio::spawn(bootstrap::run(master.clone(), pristine).instrument(tracing::Span::current()));

    let grpc = tonic::service::Routes::new(
        RaftPeerServer::new(raft_network::RaftPeerService {
            id: master.config.id,
            raft: raft.clone(),
            quarantined: master.quarantined.clone(),
        })
        .max_decoding_message_size(raft_network::MAX_PEER_MESSAGE)
        .max_encoding_message_size(raft_network::MAX_PEER_MESSAGE),
    )
    .add_service(MasterServer::new(api::MasterApi::new(master.clone())))
    .add_service(AgentGatewayServer::new(agents::AgentGatewayApi::new(
        master.clone(),
    )))
    .add_service(SchedulerServer::new(frameworks::SchedulerApi::new(
        master.clone(),
    )))
    .add_service(OperatorServer::new(api::OperatorApi::new(master.clone())))
    .into_axum_router();
    let app = http::router(master.clone()).merge(grpc);

    let health =
        tokio::spawn(agents::health_loop(master.clone()).instrument(tracing::Span::current()));
    let allocation = tokio::spawn(
        frameworks::allocation_loop(master.clone()).instrument(tracing::Span::current()),
    );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(MasterError::Serve);
    bootstrap.abort();
    health.abort();
    allocation.abort();
    tracing::info!("master replica stopping");
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    served
}
