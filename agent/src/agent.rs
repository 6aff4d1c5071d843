//! The agent process: one listen address serving the executor API (gRPC) and HTTP
//! (`/health`, the sandbox API `/files/*`, and `crate::observe`'s `/state`, `/metrics`,
//! `/flags`, `/version`), a loopback-only plaintext listener serving Mesos' executor API
//! (`/api/v1/executor`, nothing else), its tasks, its link to the leader and the collection of finished
//! sandboxes, run until shutdown.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use agora_proto::v1::executor_server::ExecutorServer;

use crate::config::AgentConfig;
use crate::master_link::{self, LinkError, LinkStatus};
use crate::tasks::{ExecutorApi, Tasks};

/// How an agent stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stop {
    /// It is restarted later: its executors and tasks run on, to be recovered (SIGTERM).
    #[default]
    Restart,
    /// For good: its executors are shut down and their tasks killed first (SIGUSR1, as a
    /// Mesos agent's graceful shutdown; `agora dev` stopping).
    ForGood,
}

/// Runs the agent on `listener` until `shutdown` flips to true; its tasks run on.
pub async fn run(
    config: Arc<AgentConfig>,
    isolation: Arc<crate::isolation::Isolation>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let (_never, how) = watch::channel(Stop::Restart);
    run_until(config, isolation, listener, shutdown, how).await
}

/// Runs the agent on `listener` until `shutdown` flips to true, then stops as `how` says
/// at that moment.
pub async fn run_until(
    config: Arc<AgentConfig>,
    isolation: Arc<crate::isolation::Isolation>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
    how: watch::Receiver<Stop>,
) -> Result<(), LinkError> {
    let tasks = Tasks::recover(config.clone(), isolation)
        .map_err(|e| LinkError::Refused(format!("checkpoints: {e}")))?;
    let (status_tx, status_rx) = watch::channel(LinkStatus::default());
    tracing::info!(
        advertise = %config.advertise,
        resources = %config.resources,
        "agent starting"
    );
    let grpc = tonic::service::Routes::new(ExecutorServer::new(ExecutorApi {
        tasks: tasks.clone(),
    }))
    .into_axum_router();
    let files = crate::files::router(
        config.sandbox_key.clone(),
        config.work_dir.clone(),
        status_rx.clone(),
    );
    let listen = listener
        .local_addr()
        .map_or_else(|_| config.advertise.clone(), |a| a.to_string());
    let observe = crate::observe::router(tasks.clone(), status_rx.clone(), listen);
    let app = Router::new()
        .route("/health", get(health))
        .with_state(status_rx)
        .merge(files)
        .merge(observe)
        .merge(grpc)
        .fallback(agora_security::serve::unknown_path);
    let tls = match &config.security.tls {
        Some(files) => Some(
            agora_security::tls::ServerTls::load(files.clone())
                .map_err(|e| LinkError::Refused(format!("TLS: {e}")))?,
        ),
        None => None,
    };
    if tls.is_none() {
        tracing::warn!("INSECURE: --insecure given; the executor API and the link to the masters are plaintext");
    }
    let mut http_shutdown = shutdown.clone();
    let options = agora_security::serve::ServeOptions {
        tls: tls.clone(),
        allow_plaintext: false,
        ..Default::default()
    };
    let server = tokio::spawn(async move {
        let _ = agora_security::serve::serve(listener, app, options, async move {
            let _ = http_shutdown.wait_for(|s| *s).await;
        })
        .await;
    });
    // Mesos' executor API: plaintext, loopback only, this one path.
    let mesos_listener = crate::mesos_executor::bind(&config)
        .await
        .map_err(|e| LinkError::Refused(format!("the executor API's loopback listener: {e}")))?;
    let mesos_addr = mesos_listener
        .local_addr()
        .map_err(|e| LinkError::Refused(format!("the executor API's loopback listener: {e}")))?;
    tasks.set_executor_http(mesos_addr);
    tracing::info!(address = %mesos_addr, path = crate::mesos_executor::PATH, "Mesos executor API (plaintext, loopback only)");
    let mesos_server = {
        let app = crate::mesos_executor::router(tasks.clone(), mesos_addr);
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = agora_security::serve::serve(
                mesos_listener,
                app,
                agora_security::serve::ServeOptions {
                    // Every executor connects from 127.0.0.1, with a stream and a
                    // keep-alive connection for its calls (which Mesos' libraries expect
                    // to stay open, as a Mesos agent keeps them).
                    max_connections_per_client: crate::mesos_executor::MAX_CONNECTIONS,
                    idle_timeout: crate::mesos_executor::IDLE_TIMEOUT,
                    ..agora_security::serve::ServeOptions::plaintext()
                },
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )
            .await;
        })
    };
    // Certificates reload on SIGHUP (new connections use them; open ones keep theirs).
    let reloader = tokio::spawn(async move {
        let Some(tls) = tls else { return };
        let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hangup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: certificates reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "certificate reload failed; the previous ones stay in force")
                }
            }
        }
    });
    // Executors of recovered tasks either subscribe again or are found gone.
    tasks.check_recovered_executors();
    let resender = {
        let tasks = tasks.clone();
        tokio::spawn(async move {
            // Each update waits its own retry interval (tasks::RESEND_MIN doubling to
            // RESEND_MAX); the tick only checks which are due.
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                tasks.resend_unacknowledged();
            }
        })
    };
    // Finished sandboxes go `--gc-delay` after they finished, sooner when the disk fills.
    let collector = tokio::spawn(crate::gc::run(
        tasks.collector(),
        config.work_dir.clone(),
        config.gc,
        shutdown.clone(),
    ));
    // Image layers no container uses go once the store holds more than
    // --image-gc-threshold, checked every --disk-watch-interval.
    let image_collector = tokio::spawn(crate::image::collect_layers(
        config.images.clone(),
        config.gc.disk_watch_interval,
    ));
    let result = master_link::run(config, tasks.clone(), status_tx, shutdown).await;
    image_collector.abort();
    if let Err(LinkError::Gone(why)) = &result {
        // Marked gone by an operator: its tasks are over for the cluster; none may
        // outlive the agent.
        let killed = tasks.stop_all(crate::tasks::DEFAULT_KILL_GRACE).await;
        tracing::error!(killed, reason = %why, "marked gone: every executor was stopped; this agent may not register again (give it a new work dir to join as a new agent)");
    } else if *how.borrow() == Stop::ForGood {
        let killed = tasks.stop_all(crate::tasks::DEFAULT_KILL_GRACE).await;
        tracing::info!(
            killed,
            "stopped for good: no executor of this agent is left"
        );
    }
    collector.abort();
    resender.abort();
    reloader.abort();
    server.abort();
    mesos_server.abort();
    result
}

async fn health(State(status): State<watch::Receiver<LinkStatus>>) -> impl IntoResponse {
    let s = status.borrow().clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({
            "status": "ok",
            "agent_id": s.agent_id,
            "leader": s.leader,
        })
        .to_string(),
    )
}
