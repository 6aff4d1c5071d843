//! The agent process: one listen address serving the executor API (gRPC) and HTTP
//! (`/health`), its tasks, and its link to the leader, run until shutdown.

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

/// Runs the agent on `listener` until `shutdown` flips to true.
pub async fn run(
    config: Arc<AgentConfig>,
    isolation: Arc<crate::isolation::Isolation>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
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
    let app = Router::new()
        .route("/health", get(health))
        .with_state(status_rx)
        .merge(grpc);
    let mut http_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_shutdown.wait_for(|s| *s).await;
            })
            .await;
    });
    // Executors of recovered tasks either subscribe again or are found gone.
    tasks.check_recovered_executors();
    let resender = {
        let tasks = tasks.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
            loop {
                tick.tick().await;
                tasks.resend_unacknowledged();
            }
        })
    };
    let result = master_link::run(config, tasks, status_tx, shutdown).await;
    resender.abort();
    server.abort();
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
