//! HTTP/JSON on the master's listen address: `/health`, `/state` (307 to the leader on a
//! follower), `/metrics` (Prometheus) and `/` (the web UI: `ui/index.html`, `/ui.js`,
//! `/ui.css`, embedded in the binary).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::leader::Leader;

pub fn router(leader: Leader) -> Router {
    let state_cache = std::sync::Arc::new(super::state_cache::StateCache::default());
    Router::new()
        .route(
            "/state",
            get(
                move |leader: axum::extract::State<Leader>,
                      caller: Option<axum::Extension<agora_security::authenticate::Caller>>,
                      conn: Option<axum::Extension<agora_security::serve::ConnectionInfo>>| {
                    let cache = state_cache.clone();
                    async move { state(leader, caller, conn, &cache).await }
                },
            ),
        )
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/", get(ui))
        .route("/ui.js", get(ui_js))
        .route("/ui.css", get(ui_css))
        .with_state(leader)
        .layer(axum::middleware::map_response(security_headers))
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn health(axum::extract::State(leader): axum::extract::State<Leader>) -> Response {
    let v = leader.view();
    let mut role = v.role;
    if leader.config().faults.stale_leader {
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
            // Started with --insecure and missing TLS or credentials.
            "insecure": leader.config().security.is_insecure(),
        }),
    )
}

async fn state(
    axum::extract::State(leader): axum::extract::State<Leader>,
    caller: Option<axum::Extension<agora_security::authenticate::Caller>>,
    conn: Option<axum::Extension<agora_security::serve::ConnectionInfo>>,
    cache: &super::state_cache::StateCache,
) -> Response {
    let v = leader.view();
    let principal = caller.and_then(|c| c.0.principal);
    if v.is_leader {
        return match cache.get(&leader, principal).await {
            Ok(body) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, "/state");
                json_response(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": e }))
            }
        };
    }
    let scheme = if conn.is_some_and(|c| c.0.tls) {
        "https"
    } else {
        "http"
    };
    match v.leader_address {
        Some(addr) => (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, format!("{scheme}://{addr}/state"))],
        )
            .into_response(),
        None => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "no leader is known yet"}),
        ),
    }
}

async fn metrics(axum::extract::State(leader): axum::extract::State<Leader>) -> Response {
    // Counting the registry walks every task: off the runtime.
    match tokio::task::spawn_blocking(move || render_metrics(&leader)).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "/metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn ui() -> Response {
    static_file("text/html; charset=utf-8", include_str!("ui/index.html"))
}

async fn ui_js() -> Response {
    static_file("text/javascript; charset=utf-8", include_str!("ui/ui.js"))
}

async fn ui_css() -> Response {
    static_file("text/css; charset=utf-8", include_str!("ui/ui.css"))
}

/// The UI's files, checked again on each load (`no-cache`) so an upgraded master's page
/// never runs with a stale script.
fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Headers on every HTTP answer: the page loads script, style and data only from this
/// address, may not be framed, and no answer is sniffed into another type.
pub(super) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    response
}

/// Renders the Prometheus text exposition, refreshing the gauges first.
fn render_metrics(leader: &Leader) -> String {
    let m = leader.metrics();
    let quorum = leader.quorum().status();
    m.term.set(quorum.view.term as i64);
    m.is_leader.set(quorum.view.is_leader as i64);
    m.last_log_index.set(quorum.last_log_index as i64);
    m.last_applied.set(quorum.last_applied as i64);
    let c = leader.counts();
    m.agents
        .set((c.agents_active + c.agents_unreachable) as i64);
    m.frameworks
        .set((c.frameworks_active + c.frameworks_disconnected) as i64);
    m.live_tasks.set(c.live_tasks() as i64);
    m.tasks_kept.set(c.tasks_kept() as i64);
    if let Some(s) = &m.snapshot_stats {
        m.snapshot_builds.set(s.builds() as i64);
        m.snapshot_build_seconds.set(s.build_seconds());
        m.snapshot_bytes.set(s.last_bytes() as i64);
        m.snapshot_tasks.set(s.last_items() as i64);
    }
    m.encode()
}
