//! The agent process: its HTTP endpoint and its link to the leader, run until shutdown.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::master_link::{self, LinkError, LinkStatus};

/// Runs the agent on `listener` until `shutdown` flips to true.
pub async fn run(
    config: Arc<AgentConfig>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let (status_tx, status_rx) = watch::channel(LinkStatus::default());
    tracing::info!(
        advertise = %config.advertise,
        resources = %config.resources,
        "agent starting"
    );
    let app = Router::new()
        .route("/health", get(health))
        .with_state(status_rx);
    let mut http_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_shutdown.wait_for(|s| *s).await;
            })
            .await;
    });
    let result = master_link::run(config, status_tx, shutdown).await;
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
