//! The sandbox API through the leader, for the web UI (whose page may fetch only from the
//! master that served it): `GET /files/browse|read|download?task=ID[&framework=ID]&path=REL`
//! is authorized as `Master.SandboxAccess` is, then asked of the task's agent with a grant
//! and answered as the agent answered. `path` is relative to the task's sandbox; browse
//! entries come back relative to it too. A follower answers 307 to the leader. `/login`
//! is where the UI sends a browser to sign in for them.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agora_security::authenticate::Caller;
use agora_security::serve::ConnectionInfo;
use agora_security::tls::ClientTls;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::json;

use crate::convert;
use crate::leader::{Leader, LeaderError};

/// The largest file the leader relays whole (`/files/download`).
const MAX_RELAYED: usize = 64 * 1024 * 1024;
/// A relayed call's deadline (a read may wait up to 30 s for new output).
const AGENT_TIMEOUT: Duration = Duration::from_secs(40);

struct Proxy {
    leader: Leader,
    tls: OnceLock<Result<Option<ClientTls>, String>>,
}

impl Proxy {
    /// The client side of TLS towards agents: the cluster CA and this replica's certificate.
    fn tls(&self) -> Result<Option<&ClientTls>, String> {
        self.tls
            .get_or_init(|| match &self.leader.config().security.tls {
                Some(files) => ClientTls::load(&files.ca, Some((&files.cert, &files.key)))
                    .map(Some)
                    .map_err(|e| e.to_string()),
                None => Ok(None),
            })
            .as_ref()
            .map(Option::as_ref)
            .map_err(Clone::clone)
    }
}

pub fn router(leader: Leader) -> Router {
    let proxy = Arc::new(Proxy {
        leader,
        tls: OnceLock::new(),
    });
    Router::new()
        .route(
            "/files/browse",
            get(|s, c, n, u, q| relay(Kind::Browse, s, c, n, u, q)),
        )
        .route(
            "/files/read",
            get(|s, c, n, u, q| relay(Kind::Read, s, c, n, u, q)),
        )
        .route(
            "/files/download",
            get(|s, c, n, u, q| relay(Kind::Download, s, c, n, u, q)),
        )
        .route("/login", get(login))
        .with_state(proxy)
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// Where the web UI sends a browser to sign in (HTTP Basic, asked by the gate, which lets
/// no anonymous caller through here where principals exist): back to `next`, a path on
/// this master.
async fn login(
    conn: Option<Extension<ConnectionInfo>>,
    headers: axum::http::HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = q
        .next
        .filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/".to_string());
    // Absolute, so that a browser that came with credentials in its URL drops them (a
    // page whose address holds credentials may not fetch).
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', '@', '\\']));
    let location = match host {
        Some(host) => {
            let scheme = if conn.is_some_and(|c| c.0.tls) {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}{next}")
        }
        None => next,
    };
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Browse,
    Read,
    Download,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Browse => "/files/browse",
            Kind::Read => "/files/read",
            Kind::Download => "/files/download",
        }
    }
}

#[derive(Debug, Deserialize)]
struct FilesQuery {
    task: Option<String>,
    framework: Option<String>,
    path: Option<String>,
    offset: Option<i64>,
    length: Option<u64>,
    wait_ms: Option<u64>,
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": message.to_string() }).to_string(),
    )
        .into_response()
}

async fn relay(
    kind: Kind,
    State(proxy): State<Arc<Proxy>>,
    caller: Option<Extension<Caller>>,
    conn: Option<Extension<ConnectionInfo>>,
    uri: Uri,
    Query(q): Query<FilesQuery>,
) -> Response {
    let view = proxy.leader.view();
    if !view.is_leader {
        let scheme = if conn.is_some_and(|c| c.0.tls) {
            "https"
        } else {
            "http"
        };
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        return match view.leader_address {
            Some(addr) => (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, format!("{scheme}://{addr}{path}"))],
            )
                .into_response(),
            None => error(StatusCode::SERVICE_UNAVAILABLE, "no leader is known yet"),
        };
    }
    let principal = caller.and_then(|c| c.0.principal);
    let Some(task) = q.task.as_deref().filter(|t| !t.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "task: missing");
    };
    let task = match convert::task_id(task, "task") {
        Ok(t) => t,
        Err(s) => return error(StatusCode::BAD_REQUEST, s.message()),
    };
    let framework = match q.framework.as_deref().filter(|f| !f.is_empty()) {
        None => None,
        Some(f) => match convert::framework_id(f, "framework") {
            Ok(f) => Some(f),
            Err(s) => return error(StatusCode::BAD_REQUEST, s.message()),
        },
    };
    let access = match proxy
        .leader
        .sandbox_access(principal.as_deref(), &task, framework.as_ref())
    {
        Ok(a) => a,
        Err(e) => {
            let status = match &e {
                LeaderError::PermissionDenied(_) => StatusCode::FORBIDDEN,
                LeaderError::Invalid { .. } => StatusCode::NOT_FOUND,
                LeaderError::Precondition(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            return error(status, e);
        }
    };
    let relative = q.path.as_deref().unwrap_or("").trim_start_matches('/');
    let agent_path = if relative.is_empty() {
        access.path.clone()
    } else {
        format!("{}/{relative}", access.path)
    };
    let mut pairs: Vec<(&str, String)> = vec![("path", agent_path)];
    if kind == Kind::Read {
        if let Some(o) = q.offset {
            pairs.push(("offset", o.to_string()));
        }
        if let Some(l) = q.length {
            pairs.push(("length", l.to_string()));
        }
        if let Some(w) = q.wait_ms {
            pairs.push(("wait_ms", w.to_string()));
        }
    }
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let target = format!(
        "{}?{}",
        kind.path(),
        agora_security::http_client::query(&pairs)
    );
    let tls = match proxy.tls() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "TLS towards agents");
            return error(StatusCode::INTERNAL_SERVER_ERROR, format!("TLS: {e}"));
        }
    };
    let reply = match agora_security::http_client::get(
        tls,
        &access.agent_address,
        &target,
        Some(&format!("Bearer {}", access.token)),
        MAX_RELAYED,
        AGENT_TIMEOUT,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(agent = %access.agent_id, task = %task, error = %e, "sandbox relay failed");
            return error(
                StatusCode::BAD_GATEWAY,
                format!("agent {}: {e}", access.agent_id),
            );
        }
    };
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = if kind == Kind::Browse && status.is_success() {
        // Entries relative to the sandbox, as the request's path is.
        match serde_json::from_slice::<Vec<serde_json::Value>>(&reply.body) {
            Ok(mut entries) => {
                let root = format!("{}/", access.path);
                for e in &mut entries {
                    if let Some(p) = e.get("path").and_then(|p| p.as_str()) {
                        let rel = p.strip_prefix(&root).unwrap_or(p).to_string();
                        e["path"] = json!(rel);
                    }
                }
                json!(entries).to_string().into_bytes()
            }
            Err(_) => reply.body,
        }
    } else {
        reply.body
    };
    let content_type = reply
        .content_type
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut response = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    if kind == Kind::Download && status.is_success() {
        let name = relative
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("file")
            .replace(['"', '\\'], "_");
        if let Ok(v) = format!("attachment; filename=\"{name}\"").parse() {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, v);
        }
    }
    response
}
