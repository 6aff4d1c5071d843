//! The gate every request passes before a handler: who is calling (a certificate from the
//! cluster CA, or a principal's secret in `authorization`), and whether that is enough for
//! what it asks. What the caller may then do is the leader's to decide
//! ([`crate::leader::authz`]); this layer only authenticates:
//! - `RaftPeer` calls need a replica's certificate (`master-<id>`) once TLS is on: the
//!   Raft service is not part of the client API;
//! - every other gRPC call, and any HTTP request that is not a read, needs a principal
//!   when credentials are configured;
//! - read-only HTTP (`/state`, `/metrics`, the UI) needs one only with
//!   `--authenticate-http-readonly`; `/health` never does; sandboxes (`/files/*`) and
//!   `/login` (where the web UI sends a browser to sign in for them) always do.
//!
//! A wrong or missing credential is `UNAUTHENTICATED` (gRPC) or `401` (HTTP) with no
//! detail of which part was wrong; repeated failures from one address are slowed down.

use std::sync::Arc;

use agora_security::authenticate::{Authenticator, Caller};
use agora_security::serve::ConnectionInfo;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The gRPC service only replicas may call.
const RAFT_PEER_PREFIX: &str = "/agora.v1.RaftPeer/";

/// The replica a Raft peer call came from (its certificate's `master-<id>`); `None` when
/// TLS is off and peers are not authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerReplica(pub Option<u64>);

/// What the gate checks.
pub struct Gate {
    pub authenticator: Authenticator,
    /// TLS is on: Raft peers must prove they are replicas.
    pub peers_need_certificates: bool,
    /// Read-only HTTP needs credentials too.
    pub authenticate_http_readonly: bool,
}

fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn grpc_refusal(status: tonic::Status) -> Response {
    status.into_http::<axum::body::Body>().into_response()
}

fn http_refusal() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"agora\", charset=\"UTF-8\"",
        )],
        "authentication required\n",
    )
        .into_response()
}

/// The middleware: authenticates, refuses, or passes the request on with its [`Caller`]
/// (and, for Raft peer calls, its [`PeerReplica`]) in the extensions.
pub async fn gate(State(gate): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let conn = req.extensions().get::<ConnectionInfo>().cloned();
    let grpc = is_grpc(&req);
    let path = req.uri().path().to_string();
    // A gRPC method is not an HTTP page: a plain HTTP request for one is 404.
    if !grpc && path.starts_with("/agora.") {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    if path.starts_with(RAFT_PEER_PREFIX) {
        let replica = conn
            .as_ref()
            .and_then(|c| c.peer_principal.as_deref())
            .and_then(agora_security::master_id);
        if gate.peers_need_certificates && replica.is_none() {
            tracing::warn!(remote = ?conn.as_ref().map(|c| c.remote), %path, "Raft peer call without a replica certificate refused");
            return grpc_refusal(tonic::Status::unauthenticated(
                "the RaftPeer service is for replicas of this cluster (a master-<id> certificate)",
            ));
        }
        req.extensions_mut().insert(PeerReplica(replica));
        return next.run(req).await;
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let caller = match gate
        .authenticator
        .authenticate(conn.as_ref(), authorization.as_deref())
        .await
    {
        Ok(c) => c,
        Err(_) => {
            tracing::info!(remote = ?conn.as_ref().map(|c| c.remote), %path, "authentication failed");
            return refuse(grpc);
        }
    };
    let readonly_http =
        !grpc && matches!(*req.method(), Method::GET | Method::HEAD) && path != "/health";
    // Sandboxes hold tasks' output: never read anonymously where principals exist.
    let sandbox = path.starts_with("/files/") || path == "/login";
    let needs_principal = gate.authenticator.has_credentials()
        && path != "/health"
        && (grpc || !readonly_http || gate.authenticate_http_readonly || sandbox);
    if needs_principal && caller.is_anonymous() {
        return refuse(grpc);
    }
    req.extensions_mut().insert::<Caller>(caller);
    next.run(req).await
}

fn refuse(grpc: bool) -> Response {
    if grpc {
        grpc_refusal(tonic::Status::unauthenticated("authentication failed"))
    } else {
        http_refusal()
    }
}
