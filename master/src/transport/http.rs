//! HTTP/JSON on the master's listen address: `/health`, `/state` (307 to the leader on a
//! follower), `/metrics` (Prometheus) and `/` (the web UI).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::convert::resources_json;
use crate::Master;

pub fn router(master: Master) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/state", get(state))
        .route("/metrics", get(metrics))
        .route("/", get(ui))
        .with_state(master)
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn health(axum::extract::State(master): axum::extract::State<Master>) -> Response {
    let v = master.leader_view();
    let mut role = v.role;
    if master.config.faults.stale_leader {
        // Self-test only: one process runs one master, so a static will do.
        static LED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if v.is_leader {
            LED.store(true, std::sync::atomic::Ordering::Relaxed);
        } else if LED.load(std::sync::atomic::Ordering::Relaxed) {
            role = "leader";
        }
    }
    json_response(
        StatusCode::OK,
        json!({
            "status": "ok",
            "id": v.id,
            "role": role,
            "leader": v.leader_address,
            "term": v.term,
        }),
    )
}

/// The cluster state as JSON, from the leader's registry.
pub fn state_json(master: &Master, term: u64) -> serde_json::Value {
    master.registry.read(|reg| {
        let agents: Vec<_> = reg
            .agents()
            .map(|a| {
                let alloc = reg.agent_allocation(&a.info.id);
                json!({
                    "id": a.info.id,
                    "hostname": a.info.hostname,
                    "address": a.info.address,
                    "active": a.status == agora_registry::AgentStatus::Active,
                    "resources": resources_json(&a.info.resources),
                    "used": resources_json(&alloc.used),
                    "offered": resources_json(&alloc.offered),
                    "attributes": a.info.attributes.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        let frameworks: Vec<_> = reg
            .frameworks()
            .map(|f| {
                let alloc = reg.framework_allocation(&f.info.id);
                json!({
                    "id": f.info.id,
                    "name": f.info.name,
                    "role": f.info.role,
                    "active": f.status == agora_registry::FrameworkStatus::Active,
                    "used": resources_json(&alloc.used),
                    "offered": resources_json(&alloc.offered),
                })
            })
            .collect();
        let tasks: Vec<_> = reg
            .tasks()
            .map(|t| {
                json!({
                    "id": t.id,
                    "framework_id": t.framework_id,
                    "agent_id": t.agent_id,
                    "name": t.name,
                    "state": t.state.name(),
                    "resources": resources_json(&t.resources),
                    "message": t.message,
                })
            })
            .collect();
        json!({
            "leader": master.config.advertise,
            "term": term,
            "agents": agents,
            "frameworks": frameworks,
            "tasks": tasks,
        })
    })
}

async fn state(axum::extract::State(master): axum::extract::State<Master>) -> Response {
    let v = master.leader_view();
    if v.is_leader {
        return json_response(StatusCode::OK, state_json(&master, v.term));
    }
    match v.leader_address {
        Some(addr) => (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, format!("http://{addr}/state"))],
        )
            .into_response(),
        None => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "no leader is known yet"}),
        ),
    }
}

async fn metrics(axum::extract::State(master): axum::extract::State<Master>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(&master),
    )
        .into_response()
}

async fn ui() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("ui.html"),
    )
        .into_response()
}
